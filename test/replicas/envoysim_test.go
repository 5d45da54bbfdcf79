package replicas

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	endpointv3 "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"
	httpv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/upstreams/http/v3"
	"google.golang.org/protobuf/types/known/anypb"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/wrapperspb"

	"github.com/warden-mcp/warden/oauth/oauthtest"
	"github.com/warden-mcp/warden/test/envoysim"
	"github.com/warden-mcp/warden/test/idp"
	"github.com/warden-mcp/warden/test/load"
	"github.com/warden-mcp/warden/test/mcpserver"
	"github.com/warden-mcp/warden/xds/translate"
)

// envAddr is the address a replica was told to listen on with key.
func envAddr(t *testing.T, r *replica, key string) string {
	t.Helper()
	for _, kv := range r.cmd.Env {
		if v, ok := strings.CutPrefix(kv, key+"="); ok {
			return v
		}
	}
	t.Fatalf("replica %s has no %s", r.name, key)
	return ""
}

// replicaCluster is the bootstrap static cluster that lists every replica
// as an endpoint, as an operator's Envoy does for a Warden Deployment:
// ROUND_ROBIN (the default lb_policy), and outlier detection so that a
// dead replica is ejected after three consecutive failures (a third of
// the hosts may be ejected; Envoy's default 10% would eject none of
// three).
func replicaCluster(t *testing.T, name string, http2 bool, addrs []string) *clusterv3.Cluster {
	t.Helper()
	var lbes []*endpointv3.LbEndpoint
	for _, a := range addrs {
		host, port, err := net.SplitHostPort(a)
		if err != nil {
			t.Fatal(err)
		}
		p, _ := strconv.Atoi(port)
		lbes = append(lbes, &endpointv3.LbEndpoint{HostIdentifier: &endpointv3.LbEndpoint_Endpoint{Endpoint: &endpointv3.Endpoint{
			Address: &corev3.Address{Address: &corev3.Address_SocketAddress{SocketAddress: &corev3.SocketAddress{
				Address: host, PortSpecifier: &corev3.SocketAddress_PortValue{PortValue: uint32(p)},
			}}},
		}}})
	}
	c := &clusterv3.Cluster{
		Name:                 name,
		ClusterDiscoveryType: &clusterv3.Cluster_Type{Type: clusterv3.Cluster_STATIC},
		ConnectTimeout:       durationpb.New(2 * time.Second),
		LoadAssignment: &endpointv3.ClusterLoadAssignment{
			ClusterName: name,
			Endpoints:   []*endpointv3.LocalityLbEndpoints{{LbEndpoints: lbes}},
		},
		OutlierDetection: &clusterv3.OutlierDetection{
			Consecutive_5Xx:    wrapperspb.UInt32(3),
			BaseEjectionTime:   durationpb.New(time.Minute),
			MaxEjectionPercent: wrapperspb.UInt32(34),
		},
	}
	if http2 {
		po, err := anypb.New(&httpv3.HttpProtocolOptions{
			UpstreamProtocolOptions: &httpv3.HttpProtocolOptions_ExplicitHttpConfig_{ExplicitHttpConfig: &httpv3.HttpProtocolOptions_ExplicitHttpConfig{
				ProtocolConfig: &httpv3.HttpProtocolOptions_ExplicitHttpConfig_Http2ProtocolOptions{Http2ProtocolOptions: &corev3.Http2ProtocolOptions{}},
			}},
		})
		if err != nil {
			t.Fatal(err)
		}
		c.TypedExtensionProtocolOptions = map[string]*anypb.Any{"envoy.extensions.upstreams.http.v3.HttpProtocolOptions": po}
	}
	return c
}

// metric sums the samples of a counter on a replica's /metrics whose
// labels include every label given ("k=\"v\"").
func metric(t *testing.T, r *replica, name string, labels ...string) float64 {
	t.Helper()
	req, _ := http.NewRequest("GET", r.admin+"/metrics", nil)
	req.Header.Set("Authorization", "Bearer "+adminToken)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("metrics of %s: %v", r.name, err)
	}
	defer resp.Body.Close()
	var sum float64
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if !strings.HasPrefix(line, name+"{") && !strings.HasPrefix(line, name+" ") {
			continue
		}
		ok := true
		for _, l := range labels {
			if !strings.Contains(line, l) {
				ok = false
			}
		}
		if !ok {
			continue
		}
		v, err := strconv.ParseFloat(line[strings.LastIndexByte(line, ' ')+1:], 64)
		if err != nil {
			t.Fatalf("metrics of %s: %q: %v", r.name, line, err)
		}
		sum += v
	}
	return sum
}

// counters is one reading of the counters the phases are attributed by.
type counters struct {
	codes, refreshes, allows []float64
	oauth                    map[string]int64 // requests the proxy's warden_http hosts answered
}

func readCounters(t *testing.T, reps []*replica, proxy *envoysim.Proxy) counters {
	c := counters{oauth: proxy.HostRequests(translate.HTTPCluster)}
	for _, r := range reps {
		c.codes = append(c.codes, metric(t, r, "warden_oauth_token_requests_total", `grant_type="authorization_code"`, `result="issued"`))
		c.refreshes = append(c.refreshes, metric(t, r, "warden_oauth_token_requests_total", `grant_type="refresh_token"`, `result="issued"`))
		c.allows = append(c.allows, metric(t, r, "warden_authz_decisions_total", `decision="allow"`))
	}
	return c
}

func diff(a, b []float64) []float64 {
	out := make([]float64, len(a))
	for i := range a {
		out[i] = b[i] - a[i]
	}
	return out
}

// The deployment issue 10 describes: three replicas on one PostgreSQL,
// the Envoy-faithful harness in front with all three as endpoints of the
// ext_authz cluster and of Warden's HTTP (OAuth) cluster, round robin, the
// listener and routes from replica A's xDS. The official TypeScript SDK
// client signs in through replica A, refreshes through B and calls tools
// through C (one Envoy instance per replica behind the clients' address,
// phaseFront), each phase attributed from the replicas' own metrics. Then,
// under load through the round-robin proxy on all three: `warden revoke
// --user` through B (0 allows after it returns, counted per replica from
// the proxy's record of which replica decided each request), and C killed
// with SIGKILL (A and B go on; a Check the balancer still sends to C
// answers status_on_error until outlier detection ejects it, and the
// client's retry succeeds; OAuth requests are retried by Envoy's
// connect-failure retry policy). The trail verifies and holds every
// answered decision, allow or denial, once.
func TestEnvoysimInFrontOfReplicas(t *testing.T) {
	dsn, bin, pdir, sealing := setup(t)
	node := idp.Node(t)
	// The clients' address is a TCP forwarder (phaseFront) in front of
	// Envoy instances: the round-robin proxy over all three replicas,
	// and for the SDK client's phases one instance per replica, so that
	// it signs in through A, refreshes through B and calls tools through
	// C, as a client reaching another Envoy node would (Host and URLs are
	// the public ones throughout).
	front := newPhaseFront(t)
	proxyAddr := front.addr
	public := "http://" + proxyAddr
	cfg := staticConnectorConfig(t, public)
	reps := []*replica{startReplica(t, bin, "a", dsn, sealing, pdir, replicaOpts{config: cfg})}
	reps = append(reps, startReplica(t, bin, "b", dsn, sealing, pdir, replicaOpts{config: cfg}), startReplica(t, bin, "c", dsn, sealing, pdir, replicaOpts{config: cfg}))
	byHost := map[string]int{}
	var authzAddrs, httpAddrs []string
	for i, r := range reps {
		authzAddrs = append(authzAddrs, r.authz)
		httpAddrs = append(httpAddrs, httpAddr(t, r))
		byHost[r.authz] = i
	}

	// Upstreams: test/mcpserver for the SDK client (trusting only Warden's
	// JWT, its JWKS fetched through the proxy), and a plain one for the
	// load that records every request it was let through.
	mcp, err := mcpserver.New(t.Context(), mcpserver.Options{JWKSURL: public + "/oauth/jwks", Issuer: public, Audience: public + "/mcp/bi"})
	if err != nil {
		t.Fatal(err)
	}
	mcpSrv := httptest.NewServer(mcp)
	t.Cleanup(mcpSrv.Close)
	var upMu sync.Mutex
	reached := map[string]int{}
	loadSrv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
		upMu.Lock()
		reached[r.URL.Query().Get("rq")]++
		upMu.Unlock()
		w.Header().Set("Content-Type", "application/json")
		_, _ = io.WriteString(w, `{"jsonrpc":"2.0","id":7,"result":{"content":[{"type":"text","text":"hello"}]}}`)
	}))
	t.Cleanup(loadSrv.Close)
	reps[0].call(t, "POST", "/api/v1/servers", map[string]any{"name": "bi", "url": mcpSrv.URL + "/mcp"})
	reps[0].call(t, "POST", "/api/v1/servers", map[string]any{"name": "load", "url": loadSrv.URL + "/mcp"})

	startProxy := func(authz, http []string) (*envoysim.Proxy, string) {
		listen := load.FreePort()
		proxy, err := envoysim.Start(t.Context(), envoysim.Options{
			ADSAddress: envAddr(t, reps[0], "WARDEN_LISTEN_XDS"), NodeID: "envoy-replicas", Listen: listen,
			StaticClusters: []*clusterv3.Cluster{
				replicaCluster(t, translate.AuthzCluster, true, authz),
				replicaCluster(t, translate.HTTPCluster, false, http),
			},
		})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = proxy.Close() })
		ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
		defer cancel()
		if _, err := proxy.WaitForRoutes(ctx, func(c *envoysim.Config) bool {
			a, ok1 := c.Match(proxyAddr, "/mcp/bi")
			b, ok2 := c.Match(proxyAddr, "/mcp/load")
			o, ok3 := c.Match(proxyAddr, "/oauth/token")
			return ok1 && ok2 && ok3 && a.Cluster == "mcp_bi" && b.Cluster == "mcp_load" && o.Cluster == translate.HTTPCluster
		}); err != nil {
			t.Fatalf("routes from replica a's xDS: %v", err)
		}
		return proxy, listen
	}
	proxy, rrAddr := startProxy(authzAddrs, httpAddrs)
	via := map[string]string{}
	for i, phase := range []string{"signin", "refresh", "tools"} {
		_, via[phase] = startProxy(authzAddrs[i:i+1], httpAddrs[i:i+1])
	}

	// ---- The SDK client: sign in through A, refresh through B, tools through C ----
	res, phases := runReplicaClient(t, node, public, reps, proxy, func(phase string) { front.route(via[phase]) })
	front.route(rrAddr)
	for _, e := range res.Exchanges {
		if e.Origin != public {
			t.Errorf("the client talked to %s directly: %+v", e.Origin, e)
		}
	}
	if !strings.Contains(res.Whoami, "sub=") || len(res.Echoes) != 6 || res.Echoes[5] != "call 5" {
		t.Fatalf("tool results through the proxy: whoami %q, echoes %q", res.Whoami, res.Echoes)
	}
	if res.SignInToken == "" || res.RefreshedToken == "" || res.SignInToken == res.RefreshedToken || res.RefreshResult != "AUTHORIZED" {
		t.Fatalf("the refresh did not give a new handle (result %q)", res.RefreshResult)
	}
	signin := diff(phases["signin"].codes, phases["refresh"].codes)
	refresh := diff(phases["refresh"].refreshes, phases["tools"].refreshes)
	tools := diff(phases["tools"].allows, phases["done"].allows)
	where := func(d []float64) int {
		at, total := -1, 0.0
		for i, v := range d {
			total += v
			if v > 0 {
				at = i
			}
		}
		if total != 1 {
			t.Fatalf("one issuance expected in the phase, counted per replica %v", d)
		}
		return at
	}
	codeAt, refreshAt := where(signin), where(refresh)
	if codeAt != 0 || refreshAt != 1 {
		t.Errorf("code redeemed at %s and refresh at %s, want a and b", reps[codeAt].name, reps[refreshAt].name)
	}
	if tools[0] != 0 || tools[1] != 0 || tools[2] == 0 {
		t.Errorf("tool-phase allows per replica %v, want all at c", tools)
	}
	t.Logf("SDK client: code redeemed at %s, refresh at %s, tool-phase allows per replica %v", reps[codeAt].name, reps[refreshAt].name, tools)

	// ---- Load through the proxy on all three; revoke; kill -9 ----
	const users = 3
	handles := make([]string, users)
	for u := range handles {
		out := reps[u%3].call(t, "POST", "/api/v1/tokens", map[string]any{"subject": fmt.Sprintf("user%d@example.com", u), "servers": []string{"load"}, "ttl": "1h"})
		handles[u], _ = out["access_token"].(string)
		if handles[u] == "" {
			t.Fatalf("no token: %v", out)
		}
	}
	type result struct {
		user    int
		id      string
		status  int
		start   time.Time
		retryOf string // the request this one retried
	}
	var mu sync.Mutex
	var results []result
	var seq atomic.Int64
	var dead atomic.Bool
	client := &http.Client{Timeout: 10 * time.Second}
	send := func(u int, id string) (int, error) {
		body := `{"jsonrpc":"2.0","id":7,"method":"tools/call","params":{"name":"echo","arguments":{"message":"hello"}}}`
		// Envoy replaces an edge request's x-request-id, so the request's
		// own id travels in the query, which ext_authz and the upstream see.
		req, _ := http.NewRequest("POST", public+"/mcp/load?rq="+id, strings.NewReader(body))
		req.Header.Set("Authorization", "Bearer "+handles[u])
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("Accept", "application/json, text/event-stream")
		req.Header.Set("Mcp-Protocol-Version", "2025-11-25")
		resp, err := client.Do(req)
		if err != nil {
			return 0, err
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		return resp.StatusCode, nil
	}
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for w := 0; w < 2*users; w++ {
		u := w % users
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				select {
				case <-stop:
					return
				default:
				}
				id := fmt.Sprintf("ld-%d", seq.Add(1))
				start := time.Now()
				code, err := send(u, id)
				if err != nil {
					t.Errorf("request %s: %v", id, err)
					return
				}
				mu.Lock()
				results = append(results, result{user: u, id: id, status: code, start: start})
				mu.Unlock()
				// status_on_error: the Check (503) or the ext_proc stream of
				// the response (500) went to the killed replica. Only that
				// may cause it; the client retries, and the balancer sends
				// the retry to the next replica. The dead one can fail at most
				// consecutive_5xx calls plus those already on their way when
				// it is ejected, so ten attempts always get an answer.
				for attempt := 1; failedAtDead(code); attempt++ {
					if !dead.Load() {
						t.Errorf("request %s: 503 while every replica was alive", id)
						return
					}
					if attempt > 10 {
						t.Errorf("request %s: still 503 after 10 retries", id)
						return
					}
					rid := fmt.Sprintf("%s-retry%d", id, attempt)
					rstart := time.Now()
					if code, err = send(u, rid); err != nil {
						t.Errorf("retry %s: %v", rid, err)
						return
					}
					mu.Lock()
					results = append(results, result{user: u, id: rid, status: code, start: rstart, retryOf: id})
					mu.Unlock()
				}
			}
		}()
	}
	time.Sleep(time.Second)
	reps[1].cli(t, bin, "revoke", "--user", "user0@example.com")
	returned := time.Now()
	time.Sleep(time.Second)
	dead.Store(true)
	if err := reps[2].cmd.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	<-reps[2].done
	killed := time.Now()
	time.Sleep(1500 * time.Millisecond)

	// OAuth through the proxy with C dead: the route's connect-failure
	// retry (or C's ejection) answers every request from A or B.
	for i := 0; i < 6; i++ {
		resp, err := http.Get(public + "/oauth/jwks")
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 || !bytes.Contains(b, []byte(`"kid"`)) {
			t.Errorf("GET /oauth/jwks through the proxy after the kill: %d %.200s", resp.StatusCode, b)
		}
	}
	close(stop)
	wg.Wait()

	// Which replica decided each request: the proxy's record of the
	// ext_authz host of every Check.
	decidedBy := map[string]int{}
	checkAllowed := map[string]bool{}
	envoyID := map[string]string{} // the x-request-id Envoy gave it, the trail's request id
	for _, c := range proxy.CheckLog() {
		_, q, _ := strings.Cut(c.Path, "?rq=")
		if !strings.HasPrefix(q, "ld-") {
			continue
		}
		if _, dup := decidedBy[q]; dup {
			t.Errorf("request %s was checked twice", q)
		}
		decidedBy[q] = byHost[c.Host]
		checkAllowed[q] = c.Allowed
		envoyID[q] = c.RequestID
	}
	after := make([]int, len(reps))
	before := make([]int, len(reps))
	var failedAfterKill, retriesOK, survivorsAllowed, otherStatus int
	for _, r := range results {
		rep, ok := decidedBy[r.id]
		if !ok && r.status != http.StatusServiceUnavailable {
			t.Errorf("request %s (status %d) has no Check in the proxy's record", r.id, r.status)
			continue
		}
		switch r.status {
		case http.StatusOK:
			if !checkAllowed[r.id] {
				t.Errorf("request %s reached the upstream without an allowed Check", r.id)
			}
			upMu.Lock()
			n := reached[r.id]
			upMu.Unlock()
			if n != 1 {
				t.Errorf("request %s answered 200 but reached the upstream %d times", r.id, n)
			}
			if r.user == 0 {
				if r.start.After(returned) {
					after[rep]++
				} else {
					before[rep]++
				}
			}
			if r.user != 0 && r.start.After(killed) {
				survivorsAllowed++
			}
		case http.StatusServiceUnavailable:
			failedAfterKill++
			if ok && rep != 2 {
				t.Errorf("request %s failed its Check at live replica %s", r.id, reps[rep].name)
			}
		case http.StatusInternalServerError:
			// Allowed by a live replica; the response's ext_proc stream
			// went to the dead one (ext_proc's status_on_error).
			failedAfterKill++
		case http.StatusUnauthorized, http.StatusForbidden:
			if r.user != 0 {
				t.Errorf("request %s of user%d denied (%d)", r.id, r.user, r.status)
			}
		default:
			otherStatus++
			t.Errorf("request %s: status %d", r.id, r.status)
		}
		if r.retryOf != "" && (r.status == http.StatusOK || (r.user == 0 && r.status == http.StatusUnauthorized)) {
			retriesOK++
		}
	}
	_, _, procFailures := proxy.ExtProc()
	t.Logf("ext_proc failures: %d", procFailures)
	t.Logf("load through the proxy: %d requests; user0 allows per replica before the revoke returned %v, after %v; calls failed at the killed replica (status_on_error, before its ejection) %d, requests answered by the client's retry %d; allows after the kill %d; per-host Checks %v",
		len(results), before, after, failedAfterKill, retriesOK, survivorsAllowed, proxy.HostRequests(translate.AuthzCluster))
	for i, n := range after {
		if n != 0 {
			t.Errorf("replica %s allowed the revoked user %d times after `warden revoke` returned", reps[i].name, n)
		}
		if before[i] == 0 {
			t.Errorf("replica %s never allowed user0 before the revocation: the test proves nothing there", reps[i].name)
		}
	}
	if survivorsAllowed == 0 {
		t.Error("no allow after the kill")
	}
	// Every request that met the dead replica was answered by a retry.
	failedFirst := 0
	for _, r := range results {
		if r.retryOf == "" && failedAtDead(r.status) {
			failedFirst++
		}
	}
	if failedFirst != retriesOK {
		t.Errorf("%d requests failed at the killed replica, %d were answered by a retry", failedFirst, retriesOK)
	}

	// The trail verifies and holds every allowed decision once.
	seen := trailDecisions(t, bin, dsn, reps[0], reps[0], reps[1])
	missing, deniedAtDead := 0, 0
	for _, r := range results {
		rp, ok := decidedBy[r.id]
		// A denial: 401 for the revoked user's handle, 403 for policy.
		if ok && rp == 2 && r.status != http.StatusOK && !failedAtDead(r.status) {
			deniedAtDead++
		}
		// In sync durability allows and denials alike are stored before
		// they are answered, on every replica, the killed one included;
		// a 503 or 500 is the proxy's answer for the dead replica, not a
		// decision.
		if ok && !failedAtDead(r.status) && seen[envoyID[r.id]] != 1 {
			missing++
		}
	}
	t.Logf("denials the killed replica answered through the proxy: %d", deniedAtDead)
	if deniedAtDead == 0 {
		t.Error("the killed replica answered no denial through the proxy: the trail check proves nothing for denials there")
	}
	if missing != 0 {
		t.Errorf("%d answered decisions are missing from the trail", missing)
	}
}

// failedAtDead reports a status the proxy answers when a call to a dead
// Warden host fails: ext_authz's status_on_error (Warden sets 503) or
// ext_proc's (500 by default).
func failedAtDead(code int) bool {
	return code == http.StatusServiceUnavailable || code == http.StatusInternalServerError
}

type replicaClientResult struct {
	SignInToken    string `json:"signInToken"`
	RefreshedToken string `json:"refreshedToken"`
	RefreshResult  string `json:"refreshResult"`
	Whoami         string `json:"whoami"`
	Echoes         []string
	Exchanges      []struct {
		Phase, Method, Origin, Path, GrantType string
		Status                                 int
	}
}

// runReplicaClient drives test/replicas/client.mjs, plays the browser,
// and reads every replica's counters at each phase mark.
func runReplicaClient(t *testing.T, node, public string, reps []*replica, proxy *envoysim.Proxy, onPhase func(phase string)) (*replicaClientResult, map[string]counters) {
	redirect := "http://" + load.FreePort() + "/callback" // nobody listens: the browser stops there
	phases := map[string]counters{}
	res := &replicaClientResult{}
	idp.RunScript(t, "replicas/client.mjs", map[string]any{"serverUrl": public + "/mcp/bi", "redirectUrl": redirect, "calls": 6}, res, func(event string, line []byte) any {
		var msg struct{ URL, Phase string }
		_ = json.Unmarshal(line, &msg)
		switch event {
		case "mark":
			phases[msg.Phase] = readCounters(t, reps, proxy)
			onPhase(msg.Phase)
			return map[string]any{}
		case "authorize":
			b := oauthtest.NewBrowser()
			back, err := b.Authorize(msg.URL, redirect)
			if err != nil {
				t.Fatalf("browser through the proxy: %v (visited %v)", err, b.Visited)
			}
			return map[string]string{"callback": back.String()}
		}
		t.Fatalf("unexpected client event %q", event)
		return nil
	})
	// The script has ended with its result: nothing it sent is in flight.
	phases["done"] = readCounters(t, reps, proxy)
	return res, phases
}

// phaseFront is a TCP forwarder at the clients' address: each connection
// goes to the Envoy instance route last named. A new route closes the
// connections open to the old one (the client is idle then, between
// phases), so the next request connects again and lands on the new one.
type phaseFront struct {
	addr  string
	mu    sync.Mutex
	to    string
	conns map[net.Conn]bool
}

func newPhaseFront(t *testing.T) *phaseFront {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	f := &phaseFront{addr: ln.Addr().String(), conns: map[net.Conn]bool{}}
	t.Cleanup(func() { _ = ln.Close(); f.route("") })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go f.serve(c)
		}
	}()
	return f
}

func (f *phaseFront) route(to string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.to = to
	for c := range f.conns {
		_ = c.Close()
	}
	clear(f.conns)
}

func (f *phaseFront) serve(c net.Conn) {
	f.mu.Lock()
	to := f.to
	f.mu.Unlock()
	up, err := net.Dial("tcp", to)
	if err != nil {
		_ = c.Close()
		return
	}
	f.mu.Lock()
	if f.to != to { // rerouted while dialing
		f.mu.Unlock()
		_ = c.Close()
		_ = up.Close()
		return
	}
	f.conns[c], f.conns[up] = true, true
	f.mu.Unlock()
	go func() { _, _ = io.Copy(up, c); _ = up.Close() }()
	_, _ = io.Copy(c, up)
	_ = c.Close()
}
