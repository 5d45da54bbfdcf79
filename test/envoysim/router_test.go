package envoysim

import (
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	hcmv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	matcherv3 "github.com/envoyproxy/go-control-plane/envoy/type/matcher/v3"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/wrapperspb"
)

// prependRoutes puts test routes before the Warden routes.
func prependRoutes(r *resources, routes ...*routev3.Route) {
	vh := r.routes.VirtualHosts[0]
	vh.Routes = append(routes, vh.Routes...)
}

func action(cluster string, mod func(*routev3.RouteAction)) *routev3.Route_Route {
	a := &routev3.RouteAction{ClusterSpecifier: &routev3.RouteAction_Cluster{Cluster: cluster}}
	if mod != nil {
		mod(a)
	}
	return &routev3.Route_Route{Route: a}
}

// Routes match in order, first match wins: exact path (query ignored),
// prefix, path_separated_prefix, safe_regex (full match), case_sensitive,
// header and query parameter matchers. Each test route tags the request
// with request_headers_to_add so the upstream tells which one matched.
func TestRouteMatching(t *testing.T) {
	tagged := func(name string, m *routev3.RouteMatch) *routev3.Route {
		return &routev3.Route{Name: name, Match: m, Action: action("mcp_alpha", nil),
			RequestHeadersToAdd: []*corev3.HeaderValueOption{{Header: &corev3.HeaderValue{Key: "x-route", Value: name}}}}
	}
	f := newFixture(t, func(r *resources) {
		prependRoutes(r,
			tagged("exact", &routev3.RouteMatch{PathSpecifier: &routev3.RouteMatch_Path{Path: "/exact"}}),
			tagged("psp", &routev3.RouteMatch{PathSpecifier: &routev3.RouteMatch_PathSeparatedPrefix{PathSeparatedPrefix: "/psp"}}),
			tagged("regex", &routev3.RouteMatch{PathSpecifier: &routev3.RouteMatch_SafeRegex{SafeRegex: &matcherv3.RegexMatcher{Regex: "/re/[0-9]+"}}}),
			tagged("ci", &routev3.RouteMatch{PathSpecifier: &routev3.RouteMatch_Prefix{Prefix: "/CI/"}, CaseSensitive: wrapperspb.Bool(false)}),
			tagged("canary", &routev3.RouteMatch{
				PathSpecifier: &routev3.RouteMatch_Prefix{Prefix: "/hdr"},
				Headers: []*routev3.HeaderMatcher{{Name: "x-env", HeaderMatchSpecifier: &routev3.HeaderMatcher_StringMatch{
					StringMatch: &matcherv3.StringMatcher{MatchPattern: &matcherv3.StringMatcher_Exact{Exact: "canary"}},
				}}},
			}),
			tagged("stable", &routev3.RouteMatch{PathSpecifier: &routev3.RouteMatch_Prefix{Prefix: "/hdr"}}),
			tagged("debug", &routev3.RouteMatch{
				PathSpecifier:   &routev3.RouteMatch_Prefix{Prefix: "/q"},
				QueryParameters: []*routev3.QueryParameterMatcher{{Name: "debug", QueryParameterMatchSpecifier: &routev3.QueryParameterMatcher_PresentMatch{PresentMatch: true}}},
			}),
			tagged("first", &routev3.RouteMatch{PathSpecifier: &routev3.RouteMatch_Prefix{Prefix: "/first"}}),
			tagged("second", &routev3.RouteMatch{PathSpecifier: &routev3.RouteMatch_Prefix{Prefix: "/first"}}),
		)
	})
	cases := []struct {
		path, header, want string
	}{
		{"/exact", "", "exact"},
		{"/exact?q=1", "", "exact"},
		{"/exact/", "", "not_found"},
		{"/psp", "", "psp"},
		{"/psp/a", "", "psp"},
		{"/pspx", "", "not_found"},
		{"/re/12", "", "regex"},
		{"/re/12/x", "", "not_found"},
		{"/ci/x", "", "ci"},
		{"/hdr", "canary", "canary"},
		{"/hdr", "other", "stable"},
		{"/hdr", "", "stable"},
		{"/q?debug=1", "", "debug"},
		{"/q?other=1", "", "not_found"},
		{"/first/x", "", "first"},
		{"/mcp/alphabet", "", "not_found"},
	}
	for _, tc := range cases {
		h := map[string][]string{}
		if tc.header != "" {
			h["X-Env"] = []string{tc.header}
		}
		before := len(f.alpha.requests())
		code, _, body := do(t, "GET", f.proxy.URL()+tc.path, nil, h)
		got := "not_found"
		if code != 404 {
			if len(f.alpha.requests()) == before {
				t.Fatalf("%s: status %d but nothing reached the upstream", tc.path, code)
			}
			got = f.alpha.last(t).Header.Get("X-Route")
		} else if body != `{"error":"not_found"}` {
			t.Errorf("%s: 404 body %q", tc.path, body)
		}
		if got != tc.want {
			t.Errorf("%s (x-env %q): matched %q, want %q", tc.path, tc.header, got, tc.want)
		}
	}
	if m, ok := f.proxy.Config().Match("any", "/mcp/alpha/"); !ok || m.Route != "mcp_alpha_prefix" {
		t.Errorf("Config.Match = %+v %v", m, ok)
	}
}

// prefix_rewrite swaps the matched prefix (or the whole exact path),
// keeps the query, records x-envoy-original-path; host_rewrite_literal
// sets the Host the upstream sees.
func TestPrefixRewriteAndHostRewrite(t *testing.T) {
	f := newFixture(t, nil)
	cases := []struct{ in, want string }{
		{"/mcp/alpha", "/mcp"},
		{"/mcp/alpha?x=1", "/mcp?x=1"},
		{"/mcp/alpha/", "/mcp/"},
		{"/mcp/alpha/messages/a%2Fb?session=1", "/mcp/messages/a%2Fb?session=1"},
	}
	for _, tc := range cases {
		code, _, body := do(t, "POST", f.proxy.URL()+tc.in, []byte(`{}`), nil)
		expectStatus(t, code, 200, body)
		up := f.alpha.last(t)
		if up.URI != tc.want {
			t.Errorf("%s reached the upstream as %q, want %q", tc.in, up.URI, tc.want)
		}
		if got := up.Header.Get("X-Envoy-Original-Path"); got != tc.in {
			t.Errorf("x-envoy-original-path %q, want %q", got, tc.in)
		}
		if up.Host != "alpha.internal" {
			t.Errorf("upstream Host %q, want alpha.internal", up.Host)
		}
	}

	// suppress_envoy_headers drops x-envoy-original-path and
	// x-envoy-upstream-service-time.
	f.update(t, func(r *resources) { r.router.SuppressEnvoyHeaders = true })
	_, hdr, _ := do(t, "POST", f.proxy.URL()+"/mcp/alpha", []byte(`{}`), nil)
	if f.alpha.last(t).Header.Get("X-Envoy-Original-Path") != "" || hdr.Get("X-Envoy-Upstream-Service-Time") != "" {
		t.Error("suppress_envoy_headers did not suppress the x-envoy headers")
	}
}

// regex_rewrite substitutes with \N back-references on the path only.
func TestRegexRewrite(t *testing.T) {
	f := newFixture(t, func(r *resources) {
		prependRoutes(r, &routev3.Route{
			Match: &routev3.RouteMatch{PathSpecifier: &routev3.RouteMatch_Prefix{Prefix: "/r/"}},
			Action: action("mcp_alpha", func(a *routev3.RouteAction) {
				a.RegexRewrite = &matcherv3.RegexMatchAndSubstitute{
					Pattern:      &matcherv3.RegexMatcher{Regex: `^/r/([a-z]+)/tail$`},
					Substitution: `/\1/x`,
				}
			}),
		})
	})
	code, _, body := do(t, "GET", f.proxy.URL()+"/r/abc/tail?keep=1", nil, nil)
	expectStatus(t, code, 200, body)
	up := f.alpha.last(t)
	if up.URI != "/abc/x?keep=1" || up.Header.Get("X-Envoy-Original-Path") != "/r/abc/tail?keep=1" {
		t.Errorf("upstream URI %q original %q", up.URI, up.Header.Get("X-Envoy-Original-Path"))
	}
}

// auto_host_rewrite uses the DNS name of the STRICT_DNS endpoint.
func TestAutoHostRewrite(t *testing.T) {
	f := newFixture(t, func(r *resources) {
		r.clusters[0].LoadAssignment.Endpoints[0].LbEndpoints[0].GetEndpoint().GetAddress().GetSocketAddress().Address = "localhost"
		prependRoutes(r, &routev3.Route{
			Match: &routev3.RouteMatch{PathSpecifier: &routev3.RouteMatch_Prefix{Prefix: "/auto"}},
			Action: action("mcp_alpha", func(a *routev3.RouteAction) {
				a.HostRewriteSpecifier = &routev3.RouteAction_AutoHostRewrite{AutoHostRewrite: wrapperspb.Bool(true)}
				a.AppendXForwardedHost = true
			}),
		})
	})
	code, _, body := do(t, "GET", f.proxy.URL()+"/auto", nil, map[string][]string{"Host": {"public.example"}})
	expectStatus(t, code, 200, body)
	up := f.alpha.last(t)
	if up.Host != "localhost" {
		t.Errorf("upstream Host %q, want localhost", up.Host)
	}
	if got := up.Header.Get("X-Forwarded-Host"); got != "public.example" {
		t.Errorf("x-forwarded-host %q", got)
	}
}

// direct_response answers with its status and body; a request no route
// matches gets an empty 404.
func TestDirectResponseAndNoRoute(t *testing.T) {
	f := newFixture(t, nil)
	code, hdr, body := do(t, "GET", f.proxy.URL()+"/nothing/here", nil, nil)
	expectStatus(t, code, 404, body)
	if body != `{"error":"not_found"}` || hdr.Get("Content-Type") != "application/json" {
		t.Errorf("direct response body %q content-type %q", body, hdr.Get("Content-Type"))
	}
	f.update(t, func(r *resources) {
		vh := r.routes.VirtualHosts[0]
		vh.Routes = vh.Routes[:len(vh.Routes)-1] // drop the catch-all
	})
	code, _, body = do(t, "GET", f.proxy.URL()+"/nothing/here", nil, nil)
	if code != 404 || body != "" {
		t.Errorf("no route: status %d body %q, want an empty 404", code, body)
	}
}

// Upstream failures: an unknown cluster (cluster_not_found_response_code,
// 503 by default), no endpoint ("no healthy upstream"), a refused
// connection (Envoy's connect error text).
func TestUpstreamFailures(t *testing.T) {
	dead, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	deadAddr := dead.Addr().String()
	_ = dead.Close()
	f := newFixture(t, func(r *resources) {
		prependRoutes(r,
			&routev3.Route{Match: &routev3.RouteMatch{PathSpecifier: &routev3.RouteMatch_Path{Path: "/unknown"}}, Action: action("no_such_cluster", nil)},
			&routev3.Route{Match: &routev3.RouteMatch{PathSpecifier: &routev3.RouteMatch_Path{Path: "/unknown404"}}, Action: action("no_such_cluster", func(a *routev3.RouteAction) {
				a.ClusterNotFoundResponseCode = routev3.RouteAction_NOT_FOUND
			})},
			&routev3.Route{Match: &routev3.RouteMatch{PathSpecifier: &routev3.RouteMatch_Path{Path: "/empty"}}, Action: action("empty", nil)},
			&routev3.Route{Match: &routev3.RouteMatch{PathSpecifier: &routev3.RouteMatch_Path{Path: "/refused"}}, Action: action("refused", nil)},
		)
		empty := staticCluster(t, "empty", "127.0.0.1:1", false)
		empty.LoadAssignment.Endpoints = nil
		r.clusters = append(r.clusters, empty, staticCluster(t, "refused", deadAddr, false))
	})
	cases := []struct {
		path       string
		wantStatus int
		wantBody   string
	}{
		{"/unknown", 503, ""},
		{"/unknown404", 404, ""},
		{"/empty", 503, "no healthy upstream"},
		{"/refused", 503, "upstream connect error or disconnect/reset before headers. reset reason: remote connection failure"},
	}
	for _, tc := range cases {
		code, _, body := do(t, "GET", f.proxy.URL()+tc.path, nil, nil)
		if code != tc.wantStatus || !strings.HasPrefix(body, tc.wantBody) || (tc.wantBody == "" && body != "") {
			t.Errorf("%s: status %d body %q, want %d %q", tc.path, code, body, tc.wantStatus, tc.wantBody)
		}
	}
}

// The route timeout (default 15s, 0 disables) gives 504 and announces
// itself in x-envoy-expected-rq-timeout-ms; idle_timeout gives 408 before
// the response headers and a reset after them.
func TestTimeouts(t *testing.T) {
	f := newFixture(t, func(r *resources) {
		prependRoutes(r,
			&routev3.Route{Match: &routev3.RouteMatch{PathSpecifier: &routev3.RouteMatch_Path{Path: "/default"}}, Action: action("mcp_alpha", nil)},
			&routev3.Route{Match: &routev3.RouteMatch{PathSpecifier: &routev3.RouteMatch_Path{Path: "/short"}}, Action: action("mcp_alpha", func(a *routev3.RouteAction) {
				a.Timeout = durationpb.New(50 * time.Millisecond)
			})},
			&routev3.Route{Match: &routev3.RouteMatch{PathSpecifier: &routev3.RouteMatch_Path{Path: "/idle"}}, Action: action("mcp_alpha", func(a *routev3.RouteAction) {
				a.Timeout = durationpb.New(0)
				a.IdleTimeout = durationpb.New(50 * time.Millisecond)
			})},
		)
	})
	do(t, "GET", f.proxy.URL()+"/default", nil, nil)
	if got := f.alpha.last(t).Header.Get("X-Envoy-Expected-Rq-Timeout-Ms"); got != "15000" {
		t.Errorf("default route timeout header %q, want 15000", got)
	}
	do(t, "GET", f.proxy.URL()+"/mcp/alpha", nil, nil)
	if got := f.alpha.last(t).Header.Values("X-Envoy-Expected-Rq-Timeout-Ms"); len(got) != 0 {
		t.Errorf("timeout 0s still sent x-envoy-expected-rq-timeout-ms %q", got)
	}

	// The upstream never answers until the proxy gives up.
	f.alpha.setHandler(func(w http.ResponseWriter, r *http.Request) { <-r.Context().Done() })
	code, _, body := do(t, "GET", f.proxy.URL()+"/short", nil, nil)
	if code != 504 || body != "upstream request timeout" {
		t.Errorf("route timeout: %d %q", code, body)
	}
	code, _, body = do(t, "GET", f.proxy.URL()+"/idle", nil, nil)
	if code != 408 || body != "stream timeout" {
		t.Errorf("idle timeout before headers: %d %q", code, body)
	}

	// After the headers, an idle stream is reset.
	f.alpha.setHandler(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/event-stream")
		_, _ = io.WriteString(w, "data: first\n\n")
		w.(http.Flusher).Flush()
		<-r.Context().Done()
	})
	resp, err := client.Get(f.proxy.URL() + "/idle")
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = resp.Body.Close() }()
	b, err := io.ReadAll(resp.Body)
	if resp.StatusCode != 200 || err == nil {
		t.Errorf("idle timeout after headers: status %d, body %q, read error %v; want a reset", resp.StatusCode, b, err)
	}
	if !strings.HasPrefix(string(b), "data: first") {
		t.Errorf("the first event did not arrive before the reset: %q", b)
	}
}

// HttpProtocolOptions explicit http2 makes the upstream connection h2c.
func TestHTTP2Upstream(t *testing.T) {
	ads, authz := startADS(t), startAuthz(t)
	up := startUpstream(t, h2c, nil)
	wardenHTTP := startUpstream(t, plainHTTP1, nil)
	r := wardenResources(t, authz.addr, wardenHTTP.srv.Listener.Addr().String(), mcpServer{name: "h2", up: up, upstreamPath: "/mcp", http2: true})
	ads.push(t, "v1", r, true)
	p, err := Start(t.Context(), Options{ADSAddress: ads.addr, NodeID: testNode})
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = p.Close() }()
	waitVersion(t, p, "v1")
	code, _, body := do(t, "POST", p.URL()+"/mcp/h2", []byte(`{"a":1}`), nil)
	expectStatus(t, code, 200, body)
	if got := up.last(t); got.ProtoMajor != 2 || string(got.Body) != `{"a":1}` {
		t.Errorf("upstream saw HTTP/%d body %q, want HTTP/2", got.ProtoMajor, got.Body)
	}
	// The ext_authz cluster is HTTP/2 too: the check went through.
	if len(authz.requests()) != 1 {
		t.Error("no check reached the authz server")
	}
}

func waitVersion(t *testing.T, p *Proxy, v string) {
	t.Helper()
	f := &fixture{proxy: p}
	f.wait(t, v)
}

// UpstreamTlsContext: SNI from sni, chain validation against trusted_ca
// (or the TLSRootCAs override), no validation without a validation
// context, h2 over TLS with ALPN.
func TestTLSUpstream(t *testing.T) {
	ca := newTestCA(t, "mcp.test")
	other := newTestCA(t, "mcp.test")
	cases := []struct {
		name      string
		caPEM     []byte
		override  bool
		http2     bool
		wantOK    bool
		wantProto int
	}{
		{name: "trusted_ca in the validation context", caPEM: ca.pem, wantOK: true, wantProto: 1},
		{name: "TLSRootCAs override replaces trusted_ca", caPEM: other.pem, override: true, wantOK: true, wantProto: 1},
		{name: "a certificate from another CA is refused", caPEM: other.pem, wantOK: false},
		{name: "no validation context: Envoy does not verify", caPEM: nil, wantOK: true, wantProto: 1},
		{name: "h2 over TLS", caPEM: ca.pem, http2: true, wantOK: true, wantProto: 2},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			up := startUpstream(t, tlsServer, &ca.server)
			ads, authz := startADS(t), startAuthz(t)
			wardenHTTP := startUpstream(t, plainHTTP1, nil)
			r := wardenResources(t, authz.addr, wardenHTTP.srv.Listener.Addr().String(),
				mcpServer{name: "secure", up: up, upstreamPath: "/mcp", sni: "mcp.test", hostRewrite: "mcp.test", http2: tc.http2})
			// wardenResources adds TLS when sni is set; set the CA here.
			c := r.clusters[0]
			c.TransportSocket = nil
			withTLS(t, c, "mcp.test", tc.caPEM)
			ads.push(t, "v1", r, true)
			opts := Options{ADSAddress: ads.addr, NodeID: testNode}
			if tc.override {
				opts.TLSRootCAs = ca.pool
			}
			p, err := Start(t.Context(), opts)
			if err != nil {
				t.Fatal(err)
			}
			defer func() { _ = p.Close() }()
			waitVersion(t, p, "v1")
			code, _, body := do(t, "POST", p.URL()+"/mcp/secure", []byte(`{}`), nil)
			if !tc.wantOK {
				if code != 503 || !strings.Contains(body, "TLS error") {
					t.Errorf("status %d body %q, want a 503 TLS error", code, body)
				}
				if len(up.requests()) != 0 {
					t.Error("the request reached an unverified upstream")
				}
				return
			}
			expectStatus(t, code, 200, body)
			got := up.last(t)
			if got.SNI != "mcp.test" || got.ProtoMajor != tc.wantProto || got.Host != "mcp.test" {
				t.Errorf("upstream saw SNI %q HTTP/%d Host %q", got.SNI, got.ProtoMajor, got.Host)
			}
		})
	}
}

// The connection manager's header handling: x-forwarded-for appended
// only with use_remote_address; x-forwarded-proto overwritten only with
// use_remote_address and no trusted hop; internal_address_config decides
// internal (x-envoy-internal) vs external (x-envoy-* control headers
// stripped; on the edge also x-envoy-external-address and a fresh
// x-request-id); responses carry server: envoy and
// x-envoy-upstream-service-time.
func TestForwardedHeaders(t *testing.T) {
	clientHdr := map[string][]string{
		"X-Forwarded-For":                    {"203.0.113.9"},
		"X-Forwarded-Proto":                  {"https"},
		"X-Request-Id":                       {"client-id"},
		"X-Envoy-Retry-On":                   {"5xx"},
		"X-Envoy-Downstream-Service-Cluster": {"spoofed"},
		"X-Envoy-Internal":                   {"true"},
	}
	cases := []struct {
		name             string
		useRemote        bool
		trustedHops      uint32
		internalCIDR     string
		wantXFF, wantXFP string
		wantRequestID    string // "client-id" or "generated"
		wantExternal     string // x-envoy-external-address, "" for absent
		wantInternal     bool
		wantRetryOn      bool // x-envoy-retry-on survives
		wantServiceClust bool // x-envoy-downstream-service-cluster survives
	}{
		{name: "defaults: not the edge", wantXFF: "203.0.113.9", wantXFP: "https", wantRequestID: "client-id",
			wantServiceClust: true},
		{name: "use_remote_address: the edge", useRemote: true, wantXFF: "203.0.113.9,127.0.0.1", wantXFP: "http",
			wantRequestID: "generated", wantExternal: "127.0.0.1"},
		{name: "use_remote_address with one trusted hop", useRemote: true, trustedHops: 1, wantXFF: "203.0.113.9,127.0.0.1",
			wantXFP: "https", wantRequestID: "generated", wantExternal: "203.0.113.9"},
		{name: "use_remote_address from an internal address", useRemote: true, internalCIDR: "127.0.0.0/8",
			wantXFF: "203.0.113.9,127.0.0.1", wantXFP: "http", wantRequestID: "client-id", wantInternal: true,
			wantRetryOn: true, wantServiceClust: true},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			f := newFixture(t, func(r *resources) {
				r.hcm.UseRemoteAddress = wrapperspb.Bool(tc.useRemote)
				r.hcm.XffNumTrustedHops = tc.trustedHops
				if tc.internalCIDR != "" {
					ip, bits, _ := strings.Cut(tc.internalCIDR, "/")
					n, _ := strconv.Atoi(bits)
					r.hcm.InternalAddressConfig = &hcmv3.HttpConnectionManager_InternalAddressConfig{CidrRanges: []*corev3.CidrRange{{
						AddressPrefix: ip, PrefixLen: wrapperspb.UInt32(uint32(n)),
					}}}
				}
			})
			f.alpha.setHandler(func(w http.ResponseWriter, r *http.Request) {
				w.Header().Set("Server", "upstream/1.0")
				w.Header().Set("Connection", "close")
				w.WriteHeader(200)
			})
			code, hdr, body := do(t, "POST", f.proxy.URL()+"/mcp/alpha", []byte(`{}`), clientHdr)
			expectStatus(t, code, 200, body)
			up := f.alpha.last(t).Header
			if got := up.Get("X-Forwarded-For"); got != tc.wantXFF {
				t.Errorf("x-forwarded-for %q, want %q", got, tc.wantXFF)
			}
			if got := up.Get("X-Forwarded-Proto"); got != tc.wantXFP {
				t.Errorf("x-forwarded-proto %q, want %q", got, tc.wantXFP)
			}
			if got := f.authz.last(t).GetAttributes().GetRequest().GetHttp().GetScheme(); got != tc.wantXFP {
				t.Errorf("CheckRequest scheme %q, want %q", got, tc.wantXFP)
			}
			rid := up.Get("X-Request-Id")
			if (tc.wantRequestID == "client-id") != (rid == "client-id") || !(rid == "client-id" || uuidRE.MatchString(rid)) {
				t.Errorf("x-request-id %q, want %s", rid, tc.wantRequestID)
			}
			if got := up.Get("X-Envoy-External-Address"); got != tc.wantExternal {
				t.Errorf("x-envoy-external-address %q, want %q", got, tc.wantExternal)
			}
			if got := up.Get("X-Envoy-Internal") == "true"; got != tc.wantInternal {
				t.Errorf("x-envoy-internal %q, want internal=%v", up.Get("X-Envoy-Internal"), tc.wantInternal)
			}
			if got := up.Get("X-Envoy-Retry-On") != ""; got != tc.wantRetryOn {
				t.Errorf("x-envoy-retry-on kept=%v, want %v", got, tc.wantRetryOn)
			}
			if got := up.Get("X-Envoy-Downstream-Service-Cluster") != ""; got != tc.wantServiceClust {
				t.Errorf("x-envoy-downstream-service-cluster kept=%v, want %v", got, tc.wantServiceClust)
			}
			if hdr.Get("Server") != "envoy" {
				t.Errorf("server %q, want envoy", hdr.Get("Server"))
			}
			if _, err := strconv.Atoi(hdr.Get("X-Envoy-Upstream-Service-Time")); err != nil {
				t.Errorf("x-envoy-upstream-service-time %q", hdr.Get("X-Envoy-Upstream-Service-Time"))
			}
		})
	}
}

// The harness refuses configuration it cannot follow rather than serving
// it differently from Envoy.
func TestUnsupportedClusterIsRejected(t *testing.T) {
	c := staticCluster(t, "eds", "127.0.0.1:1", false)
	c.ClusterDiscoveryType = &clusterv3.Cluster_Type{Type: clusterv3.Cluster_EDS}
	c.EdsClusterConfig = &clusterv3.Cluster_EdsClusterConfig{EdsConfig: &corev3.ConfigSource{
		ConfigSourceSpecifier: &corev3.ConfigSource_Ads{Ads: &corev3.AggregatedConfigSource{}},
	}}
	if _, err := compileCluster(c, nil); err == nil || !strings.Contains(err.Error(), "not supported") {
		t.Errorf("EDS cluster: err = %v", err)
	}
}

func TestNormalizePath(t *testing.T) {
	cases := []struct {
		in        string
		normalize bool
		merge     bool
		escaped   hcmv3.HttpConnectionManager_PathWithEscapedSlashesAction
		want      string
		action    pathAction
	}{
		{in: "/a/../b", want: "/a/../b"},
		{in: "/a/../b?x=/../", normalize: true, want: "/b?x=/../"},
		{in: "/a/./b/", normalize: true, want: "/a/b/"},
		{in: "/../../etc", normalize: true, want: "/etc"},
		{in: `/a\..\b`, normalize: true, want: "/b"},
		{in: "/a/%2E%2e/b", normalize: true, want: "/b"},
		{in: "//a///b", merge: true, want: "/a/b"},
		{in: "/a%2Fb", escaped: hcmv3.HttpConnectionManager_REJECT_REQUEST, action: pathReject},
		{in: "/a%2fb%5C", escaped: hcmv3.HttpConnectionManager_UNESCAPE_AND_FORWARD, want: `/a/b\`},
		{in: "/a%2Fb", escaped: hcmv3.HttpConnectionManager_KEEP_UNCHANGED, want: "/a%2Fb"},
		{in: "/x/a%2F..%2Fb?q=1", normalize: true, merge: true, escaped: hcmv3.HttpConnectionManager_UNESCAPE_AND_REDIRECT, want: "/x/b?q=1", action: pathRedirect},
		{in: "/x/../b", normalize: true, escaped: hcmv3.HttpConnectionManager_UNESCAPE_AND_REDIRECT, want: "/b"},
	}
	for _, tc := range cases {
		got, action := normalizePath(tc.in, &connManager{normalizePath: tc.normalize, mergeSlashes: tc.merge, escapedSlashes: tc.escaped})
		if action != tc.action || (action != pathReject && got != tc.want) {
			t.Errorf("normalizePath(%q) = %q, %v; want %q, %v", tc.in, got, action, tc.want, tc.action)
		}
	}
}

// normalize_path and merge_slashes apply before routing, so a dot segment
// cannot reach one server's route through another's prefix.
func TestNormalizePathBeforeRouting(t *testing.T) {
	f := newFixture(t, func(r *resources) {
		r.hcm.NormalizePath = wrapperspb.Bool(true)
		r.hcm.MergeSlashes = true
		r.hcm.PathWithEscapedSlashesAction = hcmv3.HttpConnectionManager_REJECT_REQUEST
	})
	for _, p := range []string{"/mcp/other/../alpha", "//mcp//alpha"} {
		code, _, body := do(t, "POST", f.proxy.URL()+p, []byte(`{}`), nil)
		expectStatus(t, code, 200, body)
		if got := f.alpha.last(t).URI; got != "/mcp" {
			t.Errorf("%s reached %q", p, got)
		}
		if got := f.authz.last(t).GetAttributes().GetRequest().GetHttp().GetPath(); got != "/mcp/alpha" {
			t.Errorf("%s was checked as %q", p, got)
		}
	}
	checks := len(f.authz.requests())
	code, _, _ := do(t, "POST", f.proxy.URL()+"/mcp/alpha%2F..%2Fx", []byte(`{}`), nil)
	if code != 400 || len(f.authz.requests()) != checks {
		t.Errorf("escaped slash: status %d, checks %d -> %d", code, checks, len(f.authz.requests()))
	}

	// Warden's own setting: unescape, normalize, then redirect (307) to the
	// resulting path without checking or forwarding.
	f.update(t, func(r *resources) {
		r.hcm.PathWithEscapedSlashesAction = hcmv3.HttpConnectionManager_UNESCAPE_AND_REDIRECT
	})
	noRedirect := &http.Client{Transport: client.Transport, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	resp, err := noRedirect.Post(f.proxy.URL()+"/mcp/other%2F..%2Falpha?x=1", "application/json", strings.NewReader(`{}`))
	if err != nil {
		t.Fatal(err)
	}
	_ = resp.Body.Close()
	if resp.StatusCode != 307 || resp.Header.Get("Location") != "/mcp/alpha?x=1" || len(f.authz.requests()) != checks {
		t.Errorf("UNESCAPE_AND_REDIRECT: status %d location %q checks %d -> %d", resp.StatusCode, resp.Header.Get("Location"), checks, len(f.authz.requests()))
	}
}

// max_stream_duration ends a stream however busy it is: a 408 before the
// response headers, a reset after them (a long-lived SSE response, such as
// MCP 2026-07-28's subscriptions/listen, included); the route's value
// overrides the connection manager's, and 0 disables it.
func TestMaxStreamDuration(t *testing.T) {
	f := newFixture(t, func(r *resources) {
		prependRoutes(r,
			&routev3.Route{Match: &routev3.RouteMatch{PathSpecifier: &routev3.RouteMatch_Path{Path: "/bounded"}}, Action: action("mcp_alpha", func(a *routev3.RouteAction) {
				a.Timeout = durationpb.New(0)
				a.MaxStreamDuration = &routev3.RouteAction_MaxStreamDuration{MaxStreamDuration: durationpb.New(300 * time.Millisecond)}
			})},
			&routev3.Route{Match: &routev3.RouteMatch{PathSpecifier: &routev3.RouteMatch_Path{Path: "/unbounded"}}, Action: action("mcp_alpha", func(a *routev3.RouteAction) {
				a.Timeout = durationpb.New(0)
				a.MaxStreamDuration = &routev3.RouteAction_MaxStreamDuration{MaxStreamDuration: durationpb.New(0)}
			})},
		)
	})
	// No response headers yet: 408.
	f.alpha.setHandler(func(w http.ResponseWriter, r *http.Request) { <-r.Context().Done() })
	code, _, body := do(t, "GET", f.proxy.URL()+"/bounded", nil, nil)
	if code != 408 || body != "downstream duration timeout" {
		t.Errorf("max stream duration before headers: %d %q", code, body)
	}

	// An SSE stream that keeps sending: reset at the bound.
	stop := make(chan struct{})
	defer close(stop)
	f.alpha.setHandler(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/event-stream")
		for {
			_, _ = io.WriteString(w, ": keep-alive\n\n")
			w.(http.Flusher).Flush()
			select {
			case <-r.Context().Done():
				return
			case <-stop:
				return
			case <-time.After(20 * time.Millisecond):
			}
		}
	})
	began := time.Now()
	resp, err := client.Get(f.proxy.URL() + "/bounded")
	if err != nil {
		t.Fatal(err)
	}
	_, err = io.ReadAll(resp.Body)
	_ = resp.Body.Close()
	if took := time.Since(began); resp.StatusCode != 200 || err == nil || took < 300*time.Millisecond {
		t.Errorf("busy stream: status %d, read error %v after %s; want a reset at 300ms", resp.StatusCode, err, took)
	}

	// Disabled on a route: the stream outlives the bound until the client
	// hangs up.
	resp, err = client.Get(f.proxy.URL() + "/unbounded")
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { _, err := io.ReadAll(resp.Body); done <- err }()
	select {
	case err := <-done:
		t.Errorf("an unbounded stream ended: %v", err)
	case <-time.After(600 * time.Millisecond):
	}
	_ = resp.Body.Close()
	<-done
}
