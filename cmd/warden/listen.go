package main

import (
	"log/slog"
	"net"
	"net/http"

	"golang.org/x/net/netutil"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"

	"github.com/warden-mcp/warden/internal/config"
	"github.com/warden-mcp/warden/internal/mtls"
)

// listenHTTP opens an HTTP listener with the limits of listen.limits: every
// phase of a connection has a deadline, so a slow or idle client cannot
// hold a connection (and a file descriptor) forever, and at most
// MaxConnections are served at once; the next ones wait in the accept queue
// until one closes.
func listenHTTP(addr string, h http.Handler, lim config.HTTPLimits, log *slog.Logger) (*http.Server, net.Listener, error) {
	lis, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, nil, err
	}
	srv := &http.Server{
		Handler:           h,
		ReadHeaderTimeout: lim.ReadHeaderTimeout.D(),
		ReadTimeout:       lim.ReadTimeout.D(),
		WriteTimeout:      lim.WriteTimeout.D(),
		IdleTimeout:       lim.IdleTimeout.D(),
		ErrorLog:          slog.NewLogLogger(log.Handler(), slog.LevelWarn),
	}
	return srv, netutil.LimitListener(lis, lim.MaxConnections), nil
}

// withTLS adds mutual TLS to a gRPC server's options when t is set.
func withTLS(opts []grpc.ServerOption, t config.TLS, log *slog.Logger) ([]grpc.ServerOption, error) {
	if !t.Enabled() {
		return opts, nil
	}
	tc, err := mtls.ServerConfig(mtls.Files{CertFile: t.CertFile, KeyFile: t.KeyFile, ClientCAFile: t.ClientCAFile}, log)
	if err != nil {
		return nil, err
	}
	return append(opts, grpc.Creds(credentials.NewTLS(tc))), nil
}
