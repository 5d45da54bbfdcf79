package translate

import (
	"fmt"
	"time"

	core "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	listener "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	extauthz "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/ext_authz/v3"
	router "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/router/v3"
	hcm "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	typev3 "github.com/envoyproxy/go-control-plane/envoy/type/v3"
	"github.com/envoyproxy/go-control-plane/pkg/wellknown"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/wrapperspb"

	"github.com/warden-mcp/warden/xds/ir"
)

// Names that form the resource contract with Envoy and with test/envoysim;
// docs/envoy.md lists them. Changing one is a breaking change.
const (
	ListenerName    = "warden_mcp"
	RouteConfigName = "warden_mcp_routes"
	VirtualHostName = "mcp"
	StatPrefix      = "mcp"
	// AuthzCluster is Warden's ext_authz gRPC service, HTTPCluster its HTTP
	// listener (OAuth, discovery metadata).
	AuthzCluster = "warden_authz"
	HTTPCluster  = "warden_http"
	// ClusterPrefix + server name is an upstream MCP server's cluster.
	ClusterPrefix = "mcp_"
	// ContextExtensionServer carries the server name to Warden's Check.
	ContextExtensionServer = "server"
	// ExtAuthzFilter is the ext_authz filter's name, also the key of its
	// per-route config.
	ExtAuthzFilter = wellknown.HTTPExternalAuthorization
	// ExtProcFilter is the ext_proc filter's name (the response path), also
	// the key of its per-route config.
	ExtProcFilter = "envoy.filters.http.ext_proc"
	// ExtAuthzMetadataNamespace is where Envoy puts the dynamic metadata of
	// a CheckResponse (the ext_authz filter's name), and what the ext_proc
	// filter forwards to Warden (authz.MetadataNamespace).
	ExtAuthzMetadataNamespace = wellknown.HTTPExternalAuthorization
)

// httpFilter is one entry of the filter chain.
type httpFilter struct {
	name  string
	build func(ir.Config) (validator, error)
}

// httpFilters is the MCP listener's HTTP filter chain, in order:
//
//	| # | filter                       | why here                                              |
//	|---|------------------------------|-------------------------------------------------------|
//	| 1 | envoy.filters.http.ext_authz | every MCP request is checked by Warden before routing |
//	|   |                              | upstream; Warden swaps the handle for the credential  |
//	| 2 | envoy.filters.http.ext_proc  | the response path: Warden filters list results; after |
//	|   |                              | ext_authz, whose dynamic metadata it forwards         |
//	| 3 | envoy.filters.http.router    | forwards to the route's cluster; must be last         |
//
// Any filter that changes what is forwarded (headers, body) must come after
// ext_authz, or Warden would authorize something other than what is sent.
var httpFilters = []httpFilter{
	{name: ExtAuthzFilter, build: func(c ir.Config) (validator, error) { return extAuthz(c.ExtAuthz), nil }},
	{name: ExtProcFilter, build: func(c ir.Config) (validator, error) { return extProc(c.ExtProc), nil }},
	{name: wellknown.Router, build: func(ir.Config) (validator, error) { return &router.Router{}, nil }},
}

// extAuthz is the filter's listener-level config. It fails closed: an
// unreachable or slow Warden denies with 503, never allows.
func extAuthz(a ir.ExtAuthz) *extauthz.ExtAuthz {
	return &extauthz.ExtAuthz{
		Services: &extauthz.ExtAuthz_GrpcService{GrpcService: &core.GrpcService{
			TargetSpecifier: &core.GrpcService_EnvoyGrpc_{EnvoyGrpc: &core.GrpcService_EnvoyGrpc{ClusterName: AuthzCluster}},
			Timeout:         durationpb.New(a.Timeout),
		}},
		TransportApiVersion: core.ApiVersion_V3,
		FailureModeAllow:    false,
		StatusOnError:       &typev3.HttpStatus{Code: typev3.StatusCode_ServiceUnavailable},
		// Warden classifies the JSON-RPC body (method, tool, arguments), so
		// it needs all of it: a partial body could hide a second message of
		// a batch. pack_as_bytes keeps it byte-exact (raw_body).
		WithRequestBody: &extauthz.BufferSettings{
			MaxRequestBytes:     a.MaxRequestBytes,
			AllowPartialMessage: false,
			PackAsBytes:         true,
		},
		IncludePeerCertificate: false,
	}
}

// httpConnectionManager builds the HCM of the MCP listener.
func httpConnectionManager(c ir.Config) (*hcm.HttpConnectionManager, error) {
	filters := make([]*hcm.HttpFilter, 0, len(httpFilters))
	for _, f := range httpFilters {
		cfg, err := f.build(c)
		if err != nil {
			return nil, fmt.Errorf("http filter %s: %w", f.name, err)
		}
		a, err := pack(cfg)
		if err != nil {
			return nil, fmt.Errorf("http filter %s: %w", f.name, err)
		}
		filters = append(filters, &hcm.HttpFilter{Name: f.name, ConfigType: &hcm.HttpFilter_TypedConfig{TypedConfig: a}})
	}
	return &hcm.HttpConnectionManager{
		StatPrefix: StatPrefix,
		CodecType:  hcm.HttpConnectionManager_AUTO,
		RouteSpecifier: &hcm.HttpConnectionManager_Rds{Rds: &hcm.Rds{
			RouteConfigName: RouteConfigName,
			ConfigSource: &core.ConfigSource{
				ResourceApiVersion:    core.ApiVersion_V3,
				ConfigSourceSpecifier: &core.ConfigSource_Ads{Ads: &core.AggregatedConfigSource{}},
			},
		}},
		HttpFilters: filters,
		// Streams with no bytes in either direction for this long are reset;
		// MCP routes raise it with their own idle_timeout for SSE.
		StreamIdleTimeout: durationpb.New(c.Listener.StreamIdleTimeout),
		// Edge settings (Envoy's "configuring Envoy as an edge proxy"): a
		// client must send its headers promptly, and the path Warden
		// authorizes is the normalized one the router matches.
		RequestHeadersTimeout:        durationpb.New(10 * time.Second),
		UseRemoteAddress:             wrapperspb.Bool(true),
		NormalizePath:                wrapperspb.Bool(true),
		MergeSlashes:                 true,
		PathWithEscapedSlashesAction: hcm.HttpConnectionManager_UNESCAPE_AND_REDIRECT,
	}, nil
}

// mcpListener is the one listener carrying MCP and OAuth traffic.
func mcpListener(c ir.Config) (*listener.Listener, error) {
	m, err := httpConnectionManager(c)
	if err != nil {
		return nil, err
	}
	a, err := pack(m)
	if err != nil {
		return nil, err
	}
	return &listener.Listener{
		Name:    ListenerName,
		Address: socketAddress(c.Listener.Address, c.Listener.Port),
		FilterChains: []*listener.FilterChain{{
			Filters: []*listener.Filter{{
				Name:       wellknown.HTTPConnectionManager,
				ConfigType: &listener.Filter_TypedConfig{TypedConfig: a},
			}},
		}},
	}, nil
}

func socketAddress(host string, port uint32) *core.Address {
	return &core.Address{Address: &core.Address_SocketAddress{SocketAddress: &core.SocketAddress{
		Protocol:      core.SocketAddress_TCP,
		Address:       host,
		PortSpecifier: &core.SocketAddress_PortValue{PortValue: port},
	}}}
}
