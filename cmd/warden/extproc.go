package main

import (
	"context"
	"log/slog"

	extprocv3 "github.com/envoyproxy/go-control-plane/envoy/service/ext_proc/v3"
	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/grpc"

	"github.com/warden-mcp/warden/authz"
	"github.com/warden-mcp/warden/extproc"
	"github.com/warden-mcp/warden/internal/audit"
	"github.com/warden-mcp/warden/internal/mcptask"
	"github.com/warden-mcp/warden/internal/store"
	"github.com/warden-mcp/warden/internal/toolpin"
	"github.com/warden-mcp/warden/policy"
)

// toolPins is tool pinning, with each server's mode from the catalog.
func toolPins(st store.Store, trail *audit.Trail, catalog *authz.Catalog, reg prometheus.Registerer, log *slog.Logger) (*toolpin.Pins, error) {
	return toolpin.New(toolpin.Options{
		Store: st, Audit: trail, Registerer: reg, Logger: log,
		Setting: func(ctx context.Context, server string) (toolpin.Setting, error) {
			srv, err := catalog.Server(ctx, server)
			if err != nil {
				return toolpin.Setting{}, err
			}
			return toolpin.ParseSetting(srv.Pinning, srv.PinNewTools)
		},
	})
}

// registerExtProc serves the response path on the ext_authz listener.
func registerExtProc(grpcSrv *grpc.Server, svc *authz.Service, engine *policy.Engine, pins *toolpin.Pins, tasks *mcptask.Store, reg prometheus.Registerer, log *slog.Logger) error {
	ep, err := extproc.New(extproc.Options{Callers: svc, Policy: engine, Pins: pins, Tasks: tasks, Registerer: reg, Logger: log})
	if err != nil {
		return err
	}
	extprocv3.RegisterExternalProcessorServer(grpcSrv, ep)
	return nil
}
