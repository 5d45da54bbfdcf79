package main

import (
	"github.com/warden-mcp/warden/internal/config"
	"github.com/warden-mcp/warden/internal/registry"
	"github.com/warden-mcp/warden/policy"
	"github.com/warden-mcp/warden/xds/translate"
)

// This file is where the YAML configuration becomes each package's typed
// options: no package below cmd/warden reads internal/config.

// xdsSettings maps the xds section (and the listen addresses it derives
// from) to the translation settings.
func xdsSettings(cfg config.Config) translate.Settings {
	x := cfg.XDS
	var authzTLS *translate.ClientTLS
	if t := x.WardenAuthzTLS; t.Enabled() {
		authzTLS = &translate.ClientTLS{CertFile: t.CertFile, KeyFile: t.KeyFile, CAFile: t.CAFile, ServerName: t.ServerName}
	}
	return translate.Settings{
		ListenerAddress:    x.ListenerAddress,
		ListenerPort:       uint32(x.ListenerPort),
		StreamIdleTimeout:  x.StreamIdleTimeout.D(),
		RouteIdleTimeout:   x.RouteIdleTimeout.D(),
		MaxStreamDuration:  x.MaxStreamDuration.D(),
		ConnectTimeout:     x.ConnectTimeout.D(),
		AuthzTimeout:       x.AuthzTimeout.D(),
		ExtProcTimeout:     x.ExtProcTimeout.D(),
		MaxRequestBytes:    uint32(min(x.MaxRequestBytes, 1<<31)),
		WardenAuthzAddress: x.WardenAuthzAddress,
		WardenHTTPAddress:  x.WardenHTTPAddress,
		WardenAuthzTLS:     authzTLS,
		UpstreamCAFile:     x.UpstreamCAFile,
	}
}

// serverSpecs maps the servers section to registry specs.
func serverSpecs(servers []config.Server) []registry.Spec {
	out := make([]registry.Spec, 0, len(servers))
	for _, s := range servers {
		out = append(out, registry.Spec{
			Name: s.Name, URL: s.URL, Credential: s.Credential, Scopes: s.Scopes, StepUpScopes: s.StepUpScopes,
			Labels: s.Labels, Description: s.Description,
			IdPAudience: s.IdPAudience, IdPScopes: s.IdPScopes, Provider: s.Provider, Unconnected: s.Unconnected,
			Pinning: s.Pinning, PinNewTools: s.PinNewTools,
		})
	}
	return out
}

// redaction maps audit.redact to the rules the recorded decision inputs
// follow.
func redaction(rules []config.AuditRedact) *policy.Redaction {
	out := make([]policy.RedactRule, len(rules))
	for i, r := range rules {
		out[i] = policy.RedactRule{Server: r.Server, Arguments: r.Arguments}
	}
	return policy.NewRedaction(out)
}
