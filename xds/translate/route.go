package translate

import (
	"strings"

	core "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	route "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	extauthz "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/ext_authz/v3"
	previoushosts "github.com/envoyproxy/go-control-plane/envoy/extensions/retry/host/previous_hosts/v3"
	"google.golang.org/protobuf/types/known/anypb"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/wrapperspb"

	"github.com/warden-mcp/warden/xds/ir"
)

// MCPPath is where server name is exposed: /mcp/<name>.
func MCPPath(name string) string { return "/mcp/" + name }

// ClusterName is the cluster of server name.
func ClusterName(name string) string { return ClusterPrefix + name }

// NotFoundBody is the body of the catch-all 404.
const NotFoundBody = `{"error":"not_found","error_description":"no MCP server is registered at this path"}`

// Warden's own HTTP endpoints behind Envoy, routed with ext_authz disabled:
// they are how a client obtains a handle in the first place.
var wardenPrefixes = []struct{ name, prefix string }{
	{"warden_well_known", "/.well-known/"},
	{"warden_oauth", "/oauth/"},
}

// serverRoutes are the two routes of one MCP server: the exact path (the
// Streamable HTTP endpoint itself) and everything below it.
func serverRoutes(s ir.Server) ([]*route.Route, error) {
	perRoute, err := pack(&extauthz.ExtAuthzPerRoute{Override: &extauthz.ExtAuthzPerRoute_CheckSettings{
		CheckSettings: &extauthz.CheckSettings{
			ContextExtensions: map[string]string{ContextExtensionServer: s.Name},
		},
	}})
	if err != nil {
		return nil, err
	}
	procPerRoute, err := pack(extProcPerRoute())
	if err != nil {
		return nil, err
	}
	filters := map[string]*anypb.Any{ExtAuthzFilter: perRoute, ExtProcFilter: procPerRoute}
	action := func(rewrite string) *route.Route_Route {
		a := &route.RouteAction{
			ClusterSpecifier:     &route.RouteAction_Cluster{Cluster: ClusterName(s.Name)},
			PrefixRewrite:        rewrite,
			HostRewriteSpecifier: &route.RouteAction_HostRewriteLiteral{HostRewriteLiteral: s.Authority},
			// No route timeout: an SSE stream lives as long as the session.
			// Idle streams are bounded by IdleTimeout instead.
			Timeout:     durationpb.New(0),
			IdleTimeout: durationpb.New(s.IdleTimeout),
		}
		if s.MaxStream > 0 {
			// ext_authz decides when a stream starts; ending streams after
			// MaxStream makes clients reconnect through a new Check, so a
			// revocation also reaches open SSE streams within this bound.
			a.MaxStreamDuration = &route.RouteAction_MaxStreamDuration{MaxStreamDuration: durationpb.New(s.MaxStream)}
		}
		return &route.Route_Route{Route: a}
	}
	path := MCPPath(s.Name)
	routes := []*route.Route{
		{
			Name:                 ClusterName(s.Name) + "_exact",
			Match:                &route.RouteMatch{PathSpecifier: &route.RouteMatch_Path{Path: path}},
			Action:               action(s.Path),
			TypedPerFilterConfig: filters,
		},
		{
			Name:                 ClusterName(s.Name) + "_prefix",
			Match:                &route.RouteMatch{PathSpecifier: &route.RouteMatch_Prefix{Prefix: path + "/"}},
			Action:               action(strings.TrimSuffix(s.Path, "/") + "/"),
			TypedPerFilterConfig: filters,
		},
	}
	return routes, nil
}

// validateRoutes validates one server's routes on their own, to find which
// server broke a route configuration that failed validation as a whole.
func validateRoutes(routes []*route.Route) error {
	for _, r := range routes {
		if err := r.ValidateAll(); err != nil {
			return err
		}
	}
	return nil
}

// wardenRetryPolicy lets Envoy move a request for Warden's own endpoints to
// another replica when the connection to one is refused (a replica
// restarting or killed): such a request never reached a replica, so even a
// POST to /oauth/token (a single-use code, a rotating refresh handle) is
// safe to send again. Nothing that may have reached a replica (a reset, a
// 5xx, a timeout) is retried: a code redeemed twice is a replay and revokes
// the grant. previous_hosts makes the retry pick another replica when
// Warden's cluster lists several.
func wardenRetryPolicy(previousHosts *anypb.Any) *route.RetryPolicy {
	return &route.RetryPolicy{
		RetryOn:    "connect-failure",
		NumRetries: wrapperspb.UInt32(2),
		RetryHostPredicate: []*route.RetryPolicy_RetryHostPredicate{{
			Name:       "envoy.retry_host_predicates.previous_hosts",
			ConfigType: &route.RetryPolicy_RetryHostPredicate_TypedConfig{TypedConfig: previousHosts},
		}},
		HostSelectionRetryMaxAttempts: 3,
	}
}

// routeConfiguration assembles the one RouteConfiguration: server routes in
// name order, then Warden's own endpoints, then the 404.
func routeConfiguration(serverRoutes []*route.Route) (*route.RouteConfiguration, error) {
	disabled, err := pack(&extauthz.ExtAuthzPerRoute{Override: &extauthz.ExtAuthzPerRoute_Disabled{Disabled: true}})
	if err != nil {
		return nil, err
	}
	procDisabled, err := pack(extProcDisabled())
	if err != nil {
		return nil, err
	}
	off := map[string]*anypb.Any{ExtAuthzFilter: disabled, ExtProcFilter: procDisabled}
	previousHosts, err := pack(&previoushosts.PreviousHostsPredicate{})
	if err != nil {
		return nil, err
	}
	routes := make([]*route.Route, 0, len(serverRoutes)+len(wardenPrefixes)+1)
	routes = append(routes, serverRoutes...)
	for _, p := range wardenPrefixes {
		routes = append(routes, &route.Route{
			Name:  p.name,
			Match: &route.RouteMatch{PathSpecifier: &route.RouteMatch_Prefix{Prefix: p.prefix}},
			Action: &route.Route_Route{Route: &route.RouteAction{
				ClusterSpecifier: &route.RouteAction_Cluster{Cluster: HTTPCluster},
				RetryPolicy:      wardenRetryPolicy(previousHosts),
			}},
			TypedPerFilterConfig: off,
		})
	}
	// The catch-all answers locally; with no upstream there is nothing to
	// authorize, so it does not cost a Check either.
	routes = append(routes, &route.Route{
		Name:  "not_found",
		Match: &route.RouteMatch{PathSpecifier: &route.RouteMatch_Prefix{Prefix: "/"}},
		Action: &route.Route_DirectResponse{DirectResponse: &route.DirectResponseAction{
			Status: 404,
			Body:   &core.DataSource{Specifier: &core.DataSource_InlineString{InlineString: NotFoundBody}},
		}},
		ResponseHeadersToAdd: []*core.HeaderValueOption{{
			Header:       &core.HeaderValue{Key: "content-type", Value: "application/json"},
			AppendAction: core.HeaderValueOption_OVERWRITE_IF_EXISTS_OR_ADD,
		}},
		TypedPerFilterConfig: off,
	})
	return &route.RouteConfiguration{
		Name: RouteConfigName,
		VirtualHosts: []*route.VirtualHost{{
			Name:    VirtualHostName,
			Domains: []string{"*"},
			Routes:  routes,
		}},
	}, nil
}
