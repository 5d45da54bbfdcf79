package envoysim

import (
	"context"
	"slices"
	"strings"
	"testing"
	"time"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	hcmv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	discoveryv3 "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	matcherv3 "github.com/envoyproxy/go-control-plane/envoy/type/matcher/v3"
	"google.golang.org/grpc/codes"
	"google.golang.org/protobuf/types/known/anypb"
	"google.golang.org/protobuf/types/known/wrapperspb"
)

// The proxy subscribes like Envoy (node id, CDS then LDS, then RDS for the
// names the listener references) and ACKs with version_info and
// response_nonce.
func TestADSSubscribesAndAcks(t *testing.T) {
	f := newFixture(t, nil)

	// Wait until every ACK the proxy recorded reached the server.
	for _, a := range f.proxy.Acks() {
		f.ads.waitFor(t, "the ACK of "+a.TypeURL, 0, func(r *discoveryv3.DiscoveryRequest) bool {
			return r.GetTypeUrl() == a.TypeURL && r.GetResponseNonce() == a.Nonce && r.GetVersionInfo() == a.Version && r.GetErrorDetail() == nil
		})
	}
	reqs := f.ads.requests()
	if got := reqs[0].GetTypeUrl(); got != ClusterType {
		t.Errorf("first request is for %s, want CDS first", got)
	}
	for _, r := range reqs {
		if r.GetNode().GetId() != testNode {
			t.Errorf("request for %s has node id %q, want %q", r.GetTypeUrl(), r.GetNode().GetId(), testNode)
		}
	}
	var rdsNames []string
	acked := map[string]bool{}
	for _, r := range reqs {
		if r.GetTypeUrl() == RouteType && len(r.GetResourceNames()) > 0 {
			rdsNames = r.GetResourceNames()
		}
		if r.GetVersionInfo() == "v1" && r.GetResponseNonce() != "" && r.GetErrorDetail() == nil {
			acked[r.GetTypeUrl()] = true
		}
	}
	if !slices.Equal(rdsNames, []string{"warden_mcp_routes"}) {
		t.Errorf("RDS subscription %v, want [warden_mcp_routes]", rdsNames)
	}
	for _, typ := range []string{ClusterType, ListenerType, RouteType} {
		if !acked[typ] {
			t.Errorf("no ACK of %s v1 reached the server", typ)
		}
	}

	if len(f.proxy.Nacks()) != 0 {
		t.Errorf("unexpected NACKs: %+v", f.proxy.Nacks())
	}

	c := f.proxy.Config()
	if c.Listener() != "warden_mcp" || c.RouteConfig() != "warden_mcp_routes" {
		t.Errorf("serving listener %q routes %q", c.Listener(), c.RouteConfig())
	}
	if got := c.Clusters(); !slices.Equal(got, []string{"mcp_alpha", "warden_authz", "warden_http"}) {
		t.Errorf("clusters %v", got)
	}
	m, ok := c.Match("proxy", "/mcp/alpha/x?y=1")
	if !ok || m.Cluster != "mcp_alpha" || m.Path != "/mcp/x?y=1" || m.Route != "mcp_alpha_prefix" {
		t.Errorf("Match = %+v, %v", m, ok)
	}
}

// A new snapshot version re-routes traffic without restarting the proxy.
func TestADSNewVersionReroutes(t *testing.T) {
	f := newFixture(t, nil)
	status, _, body := do(t, "POST", f.proxy.URL()+"/mcp/alpha", []byte(`{}`), nil)
	expectStatus(t, status, 200, body)
	if len(f.alpha.requests()) != 1 {
		t.Fatalf("alpha got %d requests", len(f.alpha.requests()))
	}

	beta := startUpstream(t, plainHTTP1, nil)
	next := wardenResources(t, f.authz.addr, f.warden.srv.Listener.Addr().String(),
		mcpServer{name: "alpha", up: beta, upstreamPath: "/v2/mcp"},
		mcpServer{name: "gamma", up: f.alpha, upstreamPath: "/mcp"},
	)
	url := f.proxy.URL()
	f.update(t, func(r *resources) { *r = *next })
	if f.proxy.URL() != url {
		t.Fatal("the proxy changed address")
	}

	status, _, body = do(t, "POST", url+"/mcp/alpha", []byte(`{}`), nil)
	expectStatus(t, status, 200, body)
	if got := beta.last(t).URI; got != "/v2/mcp" {
		t.Errorf("alpha now reaches %q on the new upstream, want /v2/mcp", got)
	}
	status, _, body = do(t, "POST", url+"/mcp/gamma", []byte(`{}`), nil)
	expectStatus(t, status, 200, body)
	if n := len(f.alpha.requests()); n != 2 {
		t.Errorf("gamma should reach the first upstream; it has %d requests", n)
	}
	if ext := f.authz.last(t).GetAttributes().GetContextExtensions()["server"]; ext != "gamma" {
		t.Errorf("context_extensions server = %q, want gamma", ext)
	}
	for _, typ := range []string{ClusterType, ListenerType, RouteType} {
		if f.proxy.Config().Version(typ) != "v2" {
			t.Errorf("%s at %q, want v2", typ, f.proxy.Config().Version(typ))
		}
	}
}

// Resources the proxy cannot use are NACKed with error_detail, the
// version_info of the NACK stays the last good one, and the last good
// configuration keeps serving. A later good version is applied.
func TestADSNackKeepsLastGoodConfig(t *testing.T) {
	cases := []struct {
		name    string
		typeURL string
		bad     func(t *testing.T, r *resources)
		wantErr string
	}{
		{
			name:    "unknown http filter without is_optional",
			typeURL: ListenerType,
			bad: func(t *testing.T, r *resources) {
				r.extraFilters = []*hcmv3.HttpFilter{{
					Name:       "example.unknown",
					ConfigType: &hcmv3.HttpFilter_TypedConfig{TypedConfig: mustAny(t, wrapperspb.String("x"))},
				}}
			},
			wantErr: "Didn't find a registered implementation for 'example.unknown'",
		},
		{
			name:    "ext_authz with a transport_api_version other than V3",
			typeURL: ListenerType,
			bad: func(t *testing.T, r *resources) {
				r.authz.TransportApiVersion = corev3.ApiVersion_AUTO
			},
			wantErr: "transport_api_version",
		},
		{
			name:    "ext_authz with_request_body.max_request_bytes 0 fails proto validation",
			typeURL: ListenerType,
			bad: func(t *testing.T, r *resources) {
				r.authz.WithRequestBody.MaxRequestBytes = 0
			},
			wantErr: "MaxRequestBytes",
		},
		{
			name:    "route with an invalid regex",
			typeURL: RouteType,
			bad: func(t *testing.T, r *resources) {
				vh := r.routes.VirtualHosts[0]
				vh.Routes = append([]*routev3.Route{{
					Match:  &routev3.RouteMatch{PathSpecifier: &routev3.RouteMatch_SafeRegex{SafeRegex: &matcherv3.RegexMatcher{Regex: "(unclosed"}}},
					Action: clusterRoute("mcp_alpha"),
				}}, vh.Routes...)
			},
			wantErr: "safe_regex",
		},
		{
			name:    "cluster with an endpoint without port",
			typeURL: ClusterType,
			bad: func(t *testing.T, r *resources) {
				c := r.clusters[0]
				c.LoadAssignment.Endpoints[0].LbEndpoints[0].GetEndpoint().Address.GetSocketAddress().PortSpecifier = nil
			},
			wantErr: "mcp_alpha",
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			f := newFixture(t, nil)
			good := *f.res
			goodRoutes := f.res.routes
			goodClusters := f.res.clusters

			bad := wardenResources(t, f.authz.addr, f.warden.srv.Listener.Addr().String(),
				mcpServer{name: "alpha", up: f.alpha, upstreamPath: "/mcp", hostRewrite: "alpha.internal"})
			tc.bad(t, bad)
			f.ads.push(t, "v2", bad, false)

			ctx, cancel := context.WithTimeout(t.Context(), 20*time.Second)
			defer cancel()
			nack, err := f.proxy.WaitForNack(ctx, tc.typeURL, "v2")
			if err != nil {
				t.Fatal(err)
			}
			if !strings.Contains(nack.Error, tc.wantErr) {
				t.Errorf("NACK error %q does not mention %q", nack.Error, tc.wantErr)
			}
			// The server saw the NACK: error_detail set, version_info the
			// last accepted one, response_nonce the rejected response's.
			r := f.ads.waitFor(t, "the NACK", 0, func(r *discoveryv3.DiscoveryRequest) bool {
				return r.GetTypeUrl() == tc.typeURL && r.GetErrorDetail() != nil && r.GetResponseNonce() == nack.Nonce
			})
			if r.GetVersionInfo() != "v1" {
				t.Errorf("NACK carries version_info %q, want the last good v1", r.GetVersionInfo())
			}
			if r.GetErrorDetail().GetCode() != int32(codes.Internal) || r.GetErrorDetail().GetMessage() != nack.Error {
				t.Errorf("error_detail %v", r.GetErrorDetail())
			}
			if v := f.proxy.Config().Version(tc.typeURL); v != "v1" {
				t.Errorf("%s version %q after the NACK, want v1", tc.typeURL, v)
			}

			// The last good configuration still serves, ext_authz included.
			before := len(f.authz.requests())
			status, _, body := do(t, "POST", f.proxy.URL()+"/mcp/alpha", []byte(`{}`), nil)
			expectStatus(t, status, 200, body)
			if len(f.authz.requests()) != before+1 {
				t.Error("the request did not go through ext_authz")
			}
			if got := f.alpha.last(t).URI; got != "/mcp" {
				t.Errorf("upstream saw %q", got)
			}

			// A good version afterwards is applied.
			f.res = &good
			f.res.routes, f.res.clusters = goodRoutes, goodClusters
			f.ads.push(t, "v3", f.res, true)
			f.wait(t, "v3")
		})
	}
}

// An unknown filter marked is_optional is skipped and the listener ACKed.
func TestADSOptionalUnknownFilterIsSkipped(t *testing.T) {
	f := newFixture(t, func(r *resources) {
		r.extraFilters = []*hcmv3.HttpFilter{{
			Name:       "example.optional",
			IsOptional: true,
			ConfigType: &hcmv3.HttpFilter_TypedConfig{TypedConfig: mustAny(t, wrapperspb.String("x"))},
		}}
	})
	if n := f.proxy.Nacks(); len(n) != 0 {
		t.Fatalf("NACKs: %+v", n)
	}
	status, _, body := do(t, "POST", f.proxy.URL()+"/mcp/alpha", []byte(`{}`), nil)
	expectStatus(t, status, 200, body)
}

// Static clusters and listeners (a bootstrap's static_resources) serve
// without any ADS server.
func TestStaticConfiguration(t *testing.T) {
	up := startUpstream(t, plainHTTP1, nil)
	r := wardenResources(t, "127.0.0.1:1", "127.0.0.1:1", mcpServer{name: "alpha", up: up, upstreamPath: "/mcp"})
	// Inline routes instead of RDS, and no ext_authz on the route.
	r.routes.VirtualHosts[0].TypedPerFilterConfig = authzDisabled(t)
	r.hcm.RouteSpecifier = &hcmv3.HttpConnectionManager_RouteConfig{RouteConfig: r.routes}
	l := r.buildListener(t, true)

	p, err := Start(t.Context(), Options{
		StaticListeners: []*listenerv3.Listener{l},
		StaticClusters:  []*clusterv3.Cluster{r.clusters[0]},
	})
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = p.Close() }()
	status, _, body := do(t, "GET", p.URL()+"/mcp/alpha/tools?x=1", nil, nil)
	expectStatus(t, status, 200, body)
	if got := up.last(t).URI; got != "/mcp/tools?x=1" {
		t.Errorf("upstream saw %q", got)
	}

	// An invalid static resource is an error at Start, like a bad bootstrap.
	bad := r.buildListener(t, true)
	bad.FilterChains[0].Filters[0].ConfigType = &listenerv3.Filter_TypedConfig{TypedConfig: mustAny(t, wrapperspb.String("x"))}
	if _, err := Start(t.Context(), Options{StaticListeners: []*listenerv3.Listener{bad}}); err == nil {
		t.Error("Start accepted a listener without an HTTP connection manager")
	}
}

// A listener that references a route configuration not yet received stays
// warming and the previous listener keeps serving.
func TestListenerWarming(t *testing.T) {
	s := newState()
	old := &listener{name: "a", hcm: &connManager{rdsName: "r1"}}
	s.listeners["a"] = old
	s.routes["r1"] = &routeTable{name: "r1"}
	s.activate("a")
	if s.active != old {
		t.Fatal("the first listener did not activate")
	}
	next := s.clone()
	next.listeners["a"] = &listener{name: "a", hcm: &connManager{rdsName: "r2"}}
	next.activate("a")
	if next.active != old {
		t.Fatal("a listener whose routes are missing replaced the serving one")
	}
	next.routes["r2"] = &routeTable{name: "r2"}
	next.activate("a")
	if next.active == old || next.routeTable(next.active).name != "r2" {
		t.Fatal("the warmed listener did not activate")
	}
}

// Anything other than an HTTP connection manager in a listener is refused.
func TestListenerWithoutHCMIsRejected(t *testing.T) {
	l := &listenerv3.Listener{Name: "x", FilterChains: []*listenerv3.FilterChain{{Filters: []*listenerv3.Filter{{
		Name: "envoy.filters.network.tcp_proxy", ConfigType: &listenerv3.Filter_TypedConfig{TypedConfig: &anypb.Any{TypeUrl: "type.googleapis.com/envoy.extensions.filters.network.tcp_proxy.v3.TcpProxy"}},
	}}}}}
	if _, err := compileListener(l); err == nil || !strings.Contains(err.Error(), "not supported") {
		t.Errorf("err = %v", err)
	}
}

// When the ADS stream breaks the proxy reconnects and resumes from the
// versions it had accepted, without a nonce, and keeps serving meanwhile.
func TestADSReconnect(t *testing.T) {
	f := newFixture(t, nil)
	before := len(f.ads.requests())
	f.ads.restart(t)
	r := f.ads.waitFor(t, "a CDS request on the new stream", before, func(r *discoveryv3.DiscoveryRequest) bool {
		return r.GetTypeUrl() == ClusterType && r.GetResponseNonce() == ""
	})
	if r.GetVersionInfo() != "v1" {
		t.Errorf("resumed CDS request has version_info %q, want v1", r.GetVersionInfo())
	}
	f.ads.waitFor(t, "the resumed RDS subscription", before, func(r *discoveryv3.DiscoveryRequest) bool {
		return r.GetTypeUrl() == RouteType && r.GetResponseNonce() == "" && r.GetVersionInfo() == "v1" &&
			slices.Equal(r.GetResourceNames(), []string{"warden_mcp_routes"})
	})
	code, _, body := do(t, "POST", f.proxy.URL()+"/mcp/alpha", []byte(`{}`), nil)
	expectStatus(t, code, 200, body)
	f.update(t, func(r *resources) { r.authz.StatusOnError = nil })
}
