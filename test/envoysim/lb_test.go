package envoysim

import (
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"testing"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	endpointv3 "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	previoushostsv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/retry/host/previous_hosts/v3"
	"google.golang.org/protobuf/types/known/wrapperspb"
)

// deadAddr is a loopback address nothing listens on (connection refused).
func deadAddr(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	_ = l.Close()
	return addr
}

// multiCluster is a STATIC cluster whose load_assignment has one
// lb_endpoint per address, weights optional (0 leaves it unset).
func multiCluster(t *testing.T, name string, http2 bool, addrs []string, weights ...uint32) *clusterv3.Cluster {
	t.Helper()
	c := staticCluster(t, name, addrs[0], http2)
	c.ClusterDiscoveryType = &clusterv3.Cluster_Type{Type: clusterv3.Cluster_STATIC}
	var lbes []*endpointv3.LbEndpoint
	for i, a := range addrs {
		host, port, err := net.SplitHostPort(a)
		if err != nil {
			t.Fatal(err)
		}
		p, _ := strconv.Atoi(port)
		lbe := &endpointv3.LbEndpoint{HostIdentifier: &endpointv3.LbEndpoint_Endpoint{Endpoint: &endpointv3.Endpoint{
			Address: &corev3.Address{Address: &corev3.Address_SocketAddress{SocketAddress: &corev3.SocketAddress{
				Address: host, PortSpecifier: &corev3.SocketAddress_PortValue{PortValue: uint32(p)},
			}}},
		}}}
		if i < len(weights) && weights[i] > 0 {
			lbe.LoadBalancingWeight = wrapperspb.UInt32(weights[i])
		}
		lbes = append(lbes, lbe)
	}
	c.LoadAssignment.Endpoints = []*endpointv3.LocalityLbEndpoints{{LbEndpoints: lbes}}
	return c
}

// replaceCluster swaps the named cluster of the fixture's resources.
func replaceCluster(r *resources, c *clusterv3.Cluster) {
	for i, o := range r.clusters {
		if o.GetName() == c.GetName() {
			r.clusters[i] = c
			return
		}
	}
	r.clusters = append(r.clusters, c)
}

// named answers with the upstream's name, so that a test sees which
// endpoint served a request.
func named(u *upstream, name string, status int) {
	u.setHandler(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		w.Header().Set("X-Served-By", name)
		w.WriteHeader(status)
		_, _ = fmt.Fprintf(w, "%s:%s", name, body)
	})
}

// A cluster with several lb_endpoints is balanced ROUND_ROBIN, the
// default lb_policy: equal weights rotate strictly, unequal weights serve
// in proportion to load_balancing_weight (Envoy's "Weighted round robin").
// The ext_authz gRPC cluster is balanced the same way, one host per Check.
func TestRoundRobinEndpoints(t *testing.T) {
	var addrs []string
	for i := 0; i < 3; i++ {
		u := startUpstream(t, plainHTTP1, nil)
		named(u, fmt.Sprintf("u%d", i), 200)
		addrs = append(addrs, u.srv.Listener.Addr().String())
	}
	authzs := []*authzServer{startAuthz(t), startAuthz(t), startAuthz(t)}
	f := newFixture(t, func(r *resources) {
		replaceCluster(r, multiCluster(t, "mcp_alpha", false, addrs))
		replaceCluster(r, multiCluster(t, "warden_http", false, addrs[:2], 2, 1))
		replaceCluster(r, multiCluster(t, "warden_authz", true, []string{authzs[0].addr, authzs[1].addr, authzs[2].addr}))
	})

	var served []string
	for i := 0; i < 6; i++ {
		code, h, body := do(t, "POST", f.proxy.URL()+"/mcp/alpha", []byte("hi"), nil)
		expectStatus(t, code, 200, body)
		served = append(served, h.Get("X-Served-By"))
	}
	// The rotation may start anywhere; after that it is strict.
	for i := 3; i < 6; i++ {
		if served[i] != served[i-3] || served[i] == served[i-1] {
			t.Fatalf("not a round robin over three endpoints: %v", served)
		}
	}
	for i, a := range authzs {
		if n := len(a.requests()); n != 2 {
			t.Errorf("authz endpoint %d got %d of 6 Checks, want 2", i, n)
		}
	}
	got := f.proxy.HostRequests("warden_authz")
	log := f.proxy.CheckLog()
	if len(got) != 3 || len(log) != 6 {
		t.Errorf("HostRequests(warden_authz) = %v, %d CheckLog records; want three hosts, six records", got, len(log))
	}
	perHost := map[string]int{}
	for _, r := range log {
		if !r.Allowed || r.Err != "" || r.Path != "/mcp/alpha" || r.RequestID == "" {
			t.Errorf("CheckLog record %+v", r)
		}
		perHost[r.Host]++
	}
	for _, a := range authzs {
		if perHost[a.addr] != 2 || got[a.addr] != 2 {
			t.Errorf("host %s: %d CheckLog records, %d answered requests; want 2", a.addr, perHost[a.addr], got[a.addr])
		}
	}

	count := map[string]int{}
	for i := 0; i < 6; i++ {
		code, h, body := do(t, "GET", f.proxy.URL()+"/oauth/jwks", nil, nil)
		expectStatus(t, code, 200, body)
		count[h.Get("X-Served-By")]++
	}
	if count["u0"] != 4 || count["u1"] != 2 {
		t.Errorf("weights 2:1 over 6 requests served %v, want u0:4 u1:2", count)
	}
}

// retryRoute routes /retry to cluster "pool" with a retry policy.
func retryRoute(rp *routev3.RetryPolicy, bufferLimit uint32) *routev3.Route {
	r := &routev3.Route{
		Match: &routev3.RouteMatch{PathSpecifier: &routev3.RouteMatch_Path{Path: "/retry"}},
		Action: &routev3.Route_Route{Route: &routev3.RouteAction{
			ClusterSpecifier: &routev3.RouteAction_Cluster{Cluster: "pool"},
			RetryPolicy:      rp,
		}},
	}
	if bufferLimit > 0 {
		//lint:ignore SA1019 the deprecated field Envoy still reads
		r.PerRequestBufferLimitBytes = wrapperspb.UInt32(bufferLimit)
	}
	return r
}

// A dead endpoint (connection refused) and a route's retry_policy, as the
// router filter documents x-envoy-retry-on: connect-failure retries on
// another host, with the request body intact; 5xx also retries a 5xx
// answer, connect-failure alone does not; without a policy, or with a body
// over the buffer limit, the refused attempt is the answer (503).
func TestRetryPolicy(t *testing.T) {
	good := startUpstream(t, plainHTTP1, nil)
	named(good, "good", 200)
	failing := startUpstream(t, plainHTTP1, nil)
	named(failing, "failing", 503)
	dead := deadAddr(t)
	prev := &routev3.RetryPolicy_RetryHostPredicate{
		Name:       "envoy.retry_host_predicates.previous_hosts",
		ConfigType: &routev3.RetryPolicy_RetryHostPredicate_TypedConfig{TypedConfig: mustAny(t, &previoushostsv3.PreviousHostsPredicate{})},
	}
	cases := []struct {
		name     string
		hosts    []string
		policy   *routev3.RetryPolicy
		limit    uint32
		body     []byte
		want     []int // status of two consecutive requests
		wantBody string
	}{
		{name: "no retry policy: the request sent to the dead host fails", hosts: []string{dead, good.srv.Listener.Addr().String()},
			want: []int{503, 200}},
		{name: "connect-failure with previous_hosts: every request served", hosts: []string{dead, good.srv.Listener.Addr().String()},
			policy: &routev3.RetryPolicy{RetryOn: "connect-failure", NumRetries: wrapperspb.UInt32(2), RetryHostPredicate: []*routev3.RetryPolicy_RetryHostPredicate{prev}},
			body:   []byte(`{"jsonrpc":"2.0","id":1,"method":"tools/list"}`), want: []int{200, 200}, wantBody: `good:{"jsonrpc":"2.0","id":1,"method":"tools/list"}`},
		{name: "num_retries 0: no retry", hosts: []string{dead, good.srv.Listener.Addr().String()},
			policy: &routev3.RetryPolicy{RetryOn: "connect-failure", NumRetries: wrapperspb.UInt32(0)}, want: []int{503, 200}},
		{name: "body over the buffer limit: no retry", hosts: []string{dead, good.srv.Listener.Addr().String()},
			policy: &routev3.RetryPolicy{RetryOn: "connect-failure"}, limit: 4, body: []byte("longer than four"), want: []int{503, 200}},
		{name: "connect-failure does not retry a 503 answer", hosts: []string{failing.srv.Listener.Addr().String(), good.srv.Listener.Addr().String()},
			policy: &routev3.RetryPolicy{RetryOn: "connect-failure"}, want: []int{503, 200}},
		{name: "5xx retries a 503 answer", hosts: []string{failing.srv.Listener.Addr().String(), good.srv.Listener.Addr().String()},
			policy: &routev3.RetryPolicy{RetryOn: "5xx"}, want: []int{200, 200}},
		{name: "retriable-status-codes", hosts: []string{failing.srv.Listener.Addr().String(), good.srv.Listener.Addr().String()},
			policy: &routev3.RetryPolicy{RetryOn: "retriable-status-codes", RetriableStatusCodes: []uint32{503}}, want: []int{200, 200}},
		{name: "gateway-error retries a connect failure", hosts: []string{dead, good.srv.Listener.Addr().String()},
			policy: &routev3.RetryPolicy{RetryOn: "gateway-error"}, want: []int{200, 200}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			f := newFixture(t, func(r *resources) {
				prependRoutes(r, retryRoute(tc.policy, tc.limit))
				r.clusters = append(r.clusters, multiCluster(t, "pool", false, tc.hosts))
			})
			// Two requests cover both hosts of the rotation, wherever it starts.
			var got []int
			for i := 0; i < 2; i++ {
				code, _, body := do(t, "POST", f.proxy.URL()+"/retry", tc.body, nil)
				got = append(got, code)
				if code == 200 && tc.wantBody != "" && body != tc.wantBody {
					t.Errorf("body %q, want %q", body, tc.wantBody)
				}
				if code == 503 && tc.hosts[0] == dead && !strings.HasPrefix(body, "upstream connect error") {
					t.Errorf("503 body %q, want Envoy's connect failure text", body)
				}
			}
			if fmt.Sprint(sortInts(got)) != fmt.Sprint(sortInts(tc.want)) {
				t.Errorf("statuses %v, want %v (in some order)", got, tc.want)
			}
		})
	}
}

func sortInts(in []int) []int {
	out := append([]int(nil), in...)
	for i := range out {
		for j := i + 1; j < len(out); j++ {
			if out[j] < out[i] {
				out[i], out[j] = out[j], out[i]
			}
		}
	}
	return out
}

// ext_authz with one dead host in its cluster: a Check the load balancer
// sends there fails and the filter answers status_on_error (default 403),
// never retried; outlier detection (consecutive_5xx, connect failures
// counted as 503) ejects the host, and from then on every Check reaches
// the live one.
func TestAuthzDeadEndpoint(t *testing.T) {
	alive := startAuthz(t)
	dead := deadAddr(t)
	cases := []struct {
		name    string
		outlier *clusterv3.OutlierDetection
		// wantFailures is how many of 10 requests get status_on_error.
		wantFailures int
	}{
		{name: "no outlier detection: every other Check fails", wantFailures: 5},
		{name: "consecutive_5xx 2 ejects the dead host after two failures", wantFailures: 2,
			outlier: &clusterv3.OutlierDetection{Consecutive_5Xx: wrapperspb.UInt32(2), MaxEjectionPercent: wrapperspb.UInt32(50)}},
		{name: "max_ejection_percent 10 (the default) of two hosts: nothing is ejected", wantFailures: 5,
			outlier: &clusterv3.OutlierDetection{Consecutive_5Xx: wrapperspb.UInt32(1)}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			f := newFixture(t, func(r *resources) {
				r.authz.StatusOnError = nil // Envoy's default: 403
				c := multiCluster(t, "warden_authz", true, []string{dead, alive.addr})
				c.OutlierDetection = tc.outlier
				replaceCluster(r, c)
			})
			failures := 0
			for i := 0; i < 10; i++ {
				code, _, body := do(t, "POST", f.proxy.URL()+"/mcp/alpha", []byte("{}"), nil)
				switch code {
				case 403:
					if body != "" {
						t.Errorf("status_on_error with body %q", body)
					}
					failures++
				case 200:
				default:
					t.Fatalf("status %d %q", code, body)
				}
			}
			if failures != tc.wantFailures {
				t.Errorf("%d of 10 requests got status_on_error, want %d", failures, tc.wantFailures)
			}
		})
	}
}

// Load balancing and retry settings the harness does not model are
// refused (NACKed), not approximated.
func TestUnsupportedLBIsRefused(t *testing.T) {
	up := startUpstream(t, plainHTTP1, nil).srv.Listener.Addr().String()
	cases := []struct {
		name    string
		cluster func(c *clusterv3.Cluster)
		policy  *routev3.RetryPolicy
		want    string
	}{
		{name: "lb_policy RANDOM", cluster: func(c *clusterv3.Cluster) { c.LbPolicy = clusterv3.Cluster_RANDOM }, want: "lb_policy RANDOM"},
		{name: "priority 1", cluster: func(c *clusterv3.Cluster) { c.LoadAssignment.Endpoints[0].Priority = 1 }, want: "priorities"},
		{name: "split local origin errors", cluster: func(c *clusterv3.Cluster) {
			c.OutlierDetection = &clusterv3.OutlierDetection{SplitExternalLocalOriginErrors: true}
		}, want: "split_external_local_origin_errors"},
		{name: "retry_on retriable-4xx", policy: &routev3.RetryPolicy{RetryOn: "retriable-4xx"}, want: `retry_on "retriable-4xx"`},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			c := multiCluster(t, "pool", false, []string{up})
			if tc.cluster != nil {
				tc.cluster(c)
				_, err := compileCluster(c, nil)
				if err == nil || !strings.Contains(err.Error(), tc.want) {
					t.Fatalf("compileCluster: %v, want an error naming %q", err, tc.want)
				}
				return
			}
			_, err := compileRouteAction(retryRoute(tc.policy, 0).GetRoute(), &routeMatcher{})
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("compileRouteAction: %v, want an error naming %q", err, tc.want)
			}
		})
	}
}
