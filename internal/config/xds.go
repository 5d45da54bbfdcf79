package config

import (
	"fmt"
	"net"
	"strconv"
	"time"
)

// XDS configures the Envoy resources Warden publishes over ADS.
type XDS struct {
	// NodeIDs limits which Envoy node ids get a snapshot; empty serves any
	// node that connects. A node not in a non-empty list is refused.
	NodeIDs []string `json:"node_ids,omitempty"`
	// ListenerAddress and ListenerPort are where Envoy's MCP listener binds.
	ListenerAddress string `json:"listener_address"`
	ListenerPort    int    `json:"listener_port"`
	// MaxRequestBytes is ext_authz with_request_body.max_request_bytes: the
	// largest MCP request body Envoy buffers for Check (413 beyond it). Keep
	// it equal to authz.max_body_bytes.
	MaxRequestBytes int `json:"max_request_bytes"`
	// AuthzTimeout is the ext_authz gRPC call timeout in Envoy. Past it Envoy
	// answers 503 (status_on_error). It should exceed authz.timeout so that
	// Warden's own deadline answers first with a proper body.
	AuthzTimeout Duration `json:"authz_timeout"`
	// ExtProcTimeout is the ext_proc filter's message_timeout: how long
	// Envoy waits for Warden's answer to one response-path message (a
	// list to filter, which may record tool pins). Past it Envoy fails
	// the response (failure_mode_allow false: 500, or a reset stream).
	ExtProcTimeout Duration `json:"extproc_timeout"`
	// WardenAuthzAddress and WardenHTTPAddress are host:port where Envoy
	// reaches Warden's ext_authz gRPC listener and HTTP (OAuth) listener;
	// they become the clusters warden_authz and warden_http. Unset, they
	// are listen.authz and listen.http (an unspecified host as 127.0.0.1).
	WardenAuthzAddress string `json:"warden_authz_address"`
	WardenHTTPAddress  string `json:"warden_http_address"`
	// WardenAuthzTLS is how Envoy authenticates to Warden's ext_authz
	// listener when listen.tls.authz is on: the client certificate and key
	// Envoy presents and the CA it verifies Warden's certificate with, as
	// paths inside the Envoy container. Empty: plain gRPC.
	WardenAuthzTLS UpstreamTLS `json:"warden_authz_tls"`
	// StreamIdleTimeout closes downstream streams with no activity (HTTP
	// connection manager); MCP routes override it with RouteIdleTimeout.
	StreamIdleTimeout Duration `json:"stream_idle_timeout"`
	// RouteIdleTimeout is the idle timeout of MCP routes (long-lived SSE
	// streams) unless a server sets its own idle_timeout.
	RouteIdleTimeout Duration `json:"route_idle_timeout"`
	// MaxStreamDuration ends any MCP stream (an SSE GET or a streamed POST
	// response) after this long, so the client reconnects and the new
	// request is authorized again: ext_authz decides when a request starts,
	// and this bounds how long a revoked caller keeps a stream open. 0 means
	// no limit.
	MaxStreamDuration Duration `json:"max_stream_duration"`
	// ConnectTimeout is the upstream connect timeout unless a server sets
	// its own connect_timeout.
	ConnectTimeout Duration `json:"connect_timeout"`
	// UpstreamCAFile is the CA bundle, as a path inside the Envoy container,
	// that https upstreams are verified against.
	UpstreamCAFile string `json:"upstream_ca_file"`
}

// UpstreamTLS is Envoy's side of a mutual TLS connection to Warden.
type UpstreamTLS struct {
	CertFile string `json:"cert_file"`
	KeyFile  string `json:"key_file"`
	CAFile   string `json:"ca_file"`
	// ServerName is the name Warden's certificate must carry (and the SNI);
	// empty uses the host of the address.
	ServerName string `json:"server_name"`
}

// Enabled reports whether any field is set.
func (u UpstreamTLS) Enabled() bool {
	return u.CertFile != "" || u.KeyFile != "" || u.CAFile != "" || u.ServerName != ""
}

// maxExtProcTimeout bounds xds.extproc_timeout: Envoy holds a response for
// up to this long per message.
const maxExtProcTimeout = time.Minute

func defaultXDS() XDS {
	return XDS{
		ListenerAddress:   "0.0.0.0",
		ListenerPort:      10000,
		MaxRequestBytes:   1 << 20,
		AuthzTimeout:      Duration(3 * time.Second),
		ExtProcTimeout:    Duration(2 * time.Second),
		StreamIdleTimeout: Duration(5 * time.Minute),
		RouteIdleTimeout:  Duration(time.Hour),
		MaxStreamDuration: Duration(time.Hour),
		ConnectTimeout:    Duration(5 * time.Second),
		UpstreamCAFile:    "/etc/ssl/certs/ca-certificates.crt",
	}
}

func (x XDS) validate() []error {
	var errs []error
	bad := func(field, f string, a ...any) {
		errs = append(errs, fmt.Errorf("xds.%s: "+f, append([]any{field}, a...)...))
	}
	if x.ListenerPort <= 0 || x.ListenerPort > 65535 {
		bad("listener_port", "must be 1-65535, got %d", x.ListenerPort)
	}
	if net.ParseIP(x.ListenerAddress) == nil {
		bad("listener_address", "must be an IP address, got %q", x.ListenerAddress)
	}
	if x.MaxRequestBytes <= 0 {
		bad("max_request_bytes", "must be positive")
	}
	// Slices, not maps, so errors come out in a stable order.
	for _, d := range []struct {
		field string
		v     Duration
	}{
		{"authz_timeout", x.AuthzTimeout}, {"stream_idle_timeout", x.StreamIdleTimeout},
		{"route_idle_timeout", x.RouteIdleTimeout}, {"connect_timeout", x.ConnectTimeout},
	} {
		if d.v <= 0 {
			bad(d.field, "must be positive")
		}
	}
	// Envoy's ext_proc.proto bounds message_timeout at 3600s; a message
	// waited on that long holds the response anyway, so Warden asks for
	// far less.
	if x.ExtProcTimeout <= 0 || x.ExtProcTimeout.D() > maxExtProcTimeout {
		bad("extproc_timeout", "must be positive and at most %s, got %s", maxExtProcTimeout, x.ExtProcTimeout.D())
	}
	if x.MaxStreamDuration < 0 {
		bad("max_stream_duration", "must be 0 (no limit) or positive")
	}
	for _, a := range []struct{ field, addr string }{
		{"warden_authz_address", x.WardenAuthzAddress}, {"warden_http_address", x.WardenHTTPAddress},
	} {
		// Empty only when derived from a listen address that does not
		// parse, which is reported there.
		if a.addr == "" {
			continue
		}
		if err := checkHostPort(a.addr); err != nil {
			bad(a.field, "%v", err)
		}
	}
	if t := x.WardenAuthzTLS; t.Enabled() && (t.CertFile == "" || t.KeyFile == "" || t.CAFile == "") {
		bad("warden_authz_tls", "cert_file, key_file and ca_file are all required")
	}
	if x.UpstreamCAFile == "" {
		bad("upstream_ca_file", "must be set")
	}
	seen := map[string]bool{}
	for i, id := range x.NodeIDs {
		if id == "" || seen[id] {
			bad(fmt.Sprintf("node_ids[%d]", i), "must be non-empty and unique, got %q", id)
		}
		seen[id] = true
	}
	return errs
}

// checkHostPort accepts host:port with a non-empty host and a port 1-65535.
func checkHostPort(addr string) error {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return fmt.Errorf("invalid address %q: %v", addr, err)
	}
	if host == "" {
		return fmt.Errorf("address %q: host must be set (Envoy dials it)", addr)
	}
	if n, err := strconv.Atoi(port); err != nil || n <= 0 || n > 65535 {
		return fmt.Errorf("address %q: port must be 1-65535", addr)
	}
	return nil
}
