package e2e

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/warden-mcp/warden/oauth/oauthtest"
	"github.com/warden-mcp/warden/test/idp"
	"github.com/warden-mcp/warden/test/mcpserver"
)

// TestEndToEndModern is the MCP 2026-07-28 run: a server that speaks both
// revisions (test/mcpserver, stateless) behind envoysim and Warden, used by
// the TypeScript SDK v2 client pinned to 2026-07-28 (including a step-up
// round trip) and by the v1 SDK speaking 2025-11-25; the response path
// through both clients (lists filtered over SSE and JSON, paginated; tool
// pinning in block mode: response_path, lists_test.go); and the conformance
// suite's 2026-07-28 server scenarios against the Go SDK's conformance
// server, directly and through Warden, scenario by scenario.
func TestEndToEndModern(t *testing.T) {
	began := time.Now()
	h := startHarness(t, listenBound.String())
	h.addModern(t)
	t.Logf("harness up in %s", time.Since(began).Round(time.Millisecond))

	t.Run("clients", func(t *testing.T) { h.runModernClient(t) })
	t.Run("listen stream ends after revocation", func(t *testing.T) { h.listenUntilRevoked(t) })
	t.Run("response path", func(t *testing.T) { h.responsePath(t) })

	handle := strings.TrimSpace(h.cli(t, "tokens", "create", "--subject", "conformance-runner", "--server", "everything-modern", "--ttl", "1h"))
	h.startConformanceProxy(t, handle)
	waitRoute(t, h.conformance, "/mcp/everything-modern", "mcp_everything-modern")
	t.Run("conformance", func(t *testing.T) {
		h.compareConformance(t, h.modernEverythingURL, h.conformance.URL()+"/mcp/everything-modern", "--requirements", "2026-07-28")
	})

	// One decision per Check the proxies made, on the 2026-07-28 server
	// as on the others.
	want := h.proxy.Checks() + h.conformance.Checks()
	deadline := time.Now().Add(15 * time.Second)
	var decisions, named, taskless int
	for {
		decisions, named, taskless = 0, 0, 0
		for _, ev := range h.auditEvents(t) {
			if ev.Type != "decision" {
				continue
			}
			decisions++
			// Per call, who the 2026-07-28 client says it is.
			if ev.Server == "modern" && ev.Details["client_name"] == "warden-e2e-modern" && ev.Details["client_version"] == "2.4.0-e2e" &&
				ev.Details["protocol_version"] == "2026-07-28" {
				named++
			}
			if ev.Server == "modern" && ev.Method == "tools/call" && ev.Tool == "" {
				taskless++
			}
		}
		if int64(decisions) == want || time.Now().After(deadline) {
			break
		}
		time.Sleep(200 * time.Millisecond)
	}
	if int64(decisions) != want {
		t.Errorf("the proxies made %d Checks, the trail holds %d decisions", want, decisions)
	}
	if named == 0 || taskless != 0 {
		t.Errorf("decisions naming the 2026-07-28 client: %d; tools/call decisions without a tool: %d", named, taskless)
	}
	if out := h.cli(t, "audit", "verify"); !strings.Contains(out, "audit chain intact") {
		t.Errorf("warden audit verify: %s", out)
	}
	t.Logf("2026-07-28 run took %s", time.Since(began).Round(time.Millisecond))
}

// listenBound is xds.max_stream_duration for the 2026-07-28 run: what
// bounds a subscriptions/listen stream that outlives a revocation.
const listenBound = 6 * time.Second

// listenUntilRevoked opens a subscriptions/listen stream (a long-lived
// POST whose response is SSE), revokes the caller while it is open, and
// checks that the stream ends within the route's max stream duration and
// that a new one is refused.
func (h *harness) listenUntilRevoked(t *testing.T) {
	handle := strings.TrimSpace(h.cli(t, "tokens", "create", "--subject", "listener", "--server", "modern", "--scope", "data:read", "--ttl", "1h"))
	listen := func() (*http.Response, error) {
		body := `{"jsonrpc":"2.0","id":"listen-1","method":"subscriptions/listen","params":{"_meta":{"io.modelcontextprotocol/protocolVersion":"2026-07-28","io.modelcontextprotocol/clientInfo":{"name":"e2e-listener","version":"1"},"io.modelcontextprotocol/clientCapabilities":{}},"notifications":{"toolsListChanged":true}}}`
		req, _ := http.NewRequestWithContext(t.Context(), "POST", h.public+"/mcp/modern", strings.NewReader(body))
		req.Header.Set("Authorization", "Bearer "+handle)
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("Accept", "application/json, text/event-stream")
		req.Header.Set("MCP-Protocol-Version", "2026-07-28")
		req.Header.Set("Mcp-Method", "subscriptions/listen")
		return http.DefaultClient.Do(req)
	}
	opened := time.Now()
	resp, err := listen()
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != 200 || !strings.HasPrefix(resp.Header.Get("Content-Type"), "text/event-stream") {
		t.Fatalf("subscriptions/listen: %d %s", resp.StatusCode, resp.Header.Get("Content-Type"))
	}
	events := bufio.NewReader(resp.Body)
	first, err := events.ReadString('\n')
	for err == nil && !strings.HasPrefix(first, "data:") {
		first, err = events.ReadString('\n')
	}
	if err != nil || !strings.Contains(first, "notifications/subscriptions/acknowledged") {
		t.Fatalf("first event of the listen stream: %q %v", first, err)
	}

	if out := h.cli(t, "revoke", "--user", "listener", "--reason", "e2e: listener offboarded"); !strings.Contains(out, "revoked 1 grant(s)") {
		t.Fatalf("revoke: %s", out)
	}
	revoked := time.Now()
	ended := make(chan error, 1)
	go func() { _, err := io.Copy(io.Discard, events); ended <- err }()
	select {
	case err := <-ended:
		t.Logf("listen stream ended %s after it opened (%s after the revocation): %v", time.Since(opened).Round(time.Millisecond), time.Since(revoked).Round(time.Millisecond), err)
	case <-time.After(listenBound + 10*time.Second):
		t.Fatalf("the listen stream outlived the revocation past max_stream_duration (%s)", listenBound)
	}
	// A stream ended at max_stream_duration is reset, not closed: the
	// client sees an error, and its reconnection is refused.
	again, err := listen()
	if err != nil {
		t.Fatal(err)
	}
	_ = again.Body.Close()
	if again.StatusCode != 401 {
		t.Errorf("a new listen stream after the revocation: %d, want 401", again.StatusCode)
	}
}

// addModern starts the 2026-07-28 upstreams and registers them: "modern"
// (test/mcpserver, stateless, with step-up scope data:write) and
// "everything-modern" (the Go SDK's conformance server).
func (h *harness) addModern(t *testing.T) {
	var err error
	h.modern, err = mcpserver.New(t.Context(), mcpserver.Options{
		JWKSURL: h.public + "/oauth/jwks", Issuer: h.public, Audience: h.public + "/mcp/modern", Stateless: true,
	})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(h.modern)
	t.Cleanup(srv.Close)
	h.cli(t, "servers", "add", "modern", "--url", srv.URL+"/mcp", "--scope", "data:read", "--step-up-scope", "data:write", "--description", "test/mcpserver, stateless (2026-07-28)")

	bin := filepath.Join(t.TempDir(), "everything-server")
	build := exec.Command("go", "build", "-o", bin, "github.com/modelcontextprotocol/go-sdk/conformance/everything-server")
	build.Dir = filepath.Dir(idp.TestDir())
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("build the go-sdk conformance server: %v\n%s", err, out)
	}
	port := freePort(t)
	es := startProcess(t, "go-sdk everything-server", exec.Command(bin, "-http", "127.0.0.1:"+port), false)
	h.modernEverythingURL = "http://127.0.0.1:" + port + "/mcp"
	waitHTTP(t, es, "127.0.0.1:"+port)
	h.cli(t, "servers", "add", "everything-modern", "--url", h.modernEverythingURL, "--description", "go-sdk conformance server (2026-07-28)")
	waitRoute(t, h.proxy, "/mcp/modern", "mcp_modern")
	waitRoute(t, h.proxy, "/mcp/everything-modern", "mcp_everything-modern")
}

type modernExchange struct {
	Phase, Method, Path, Version, MCPMethod, MCPName, ParamRegion, RPCMethod, GrantType, ClientName, ContentType, WWWAuthenticate string
	Status                                                                                                                        int
}

type modernResult struct {
	ClientID      string                `json:"clientId"`
	ServerVersion struct{ Name string } `json:"serverVersion"`
	Tools         []string              `json:"tools"`
	Echo          string                `json:"echo"`
	Whoami        string                `json:"whoami"`
	Region        string                `json:"region"`
	Denied        failure               `json:"denied"`
	StepUpError   failure               `json:"stepUpError"`
	NoteBefore    string                `json:"noteBeforeStepUp"`
	Note          string                `json:"note"`
	WhoamiAfter   string                `json:"whoamiAfterStepUp"`
	ScopeAfter    string                `json:"scopeAfterStepUp"`
	Raw           map[string]struct {
		Status int `json:"status"`
		Body   *struct {
			ID    any `json:"id"`
			Error struct {
				Code    int    `json:"code"`
				Message string `json:"message"`
			} `json:"error"`
		} `json:"body"`
	} `json:"raw"`
	LegacyVersion string           `json:"legacyProtocolVersion"`
	LegacyEcho    string           `json:"legacyEcho"`
	LegacyDenied  failure          `json:"legacyDenied"`
	AuthURLs      []string         `json:"authorizationUrls"`
	Exchanges     []modernExchange `json:"exchanges"`
}

func (r *modernResult) phase(name string) []modernExchange {
	var out []modernExchange
	for _, e := range r.Exchanges {
		if e.Phase == name {
			out = append(out, e)
		}
	}
	return out
}

// runModernClient drives test/e2e/modern_client.mjs, signing the user in
// whenever it asks (the first connection and the step-up).
func (h *harness) runModernClient(t *testing.T) {
	resource := h.public + "/mcp/modern"
	redirect := "http://127.0.0.1:" + freePort(t) + "/callback"
	browser := oauthtest.NewBrowser()
	res := &modernResult{}
	idp.RunScript(t, "e2e/modern_client.mjs", map[string]string{"serverUrl": resource, "redirectUrl": redirect}, res, func(event string, line []byte) any {
		var msg struct{ URL string }
		_ = json.Unmarshal(line, &msg)
		if event != "authorize" {
			t.Fatalf("unexpected client event %q", event)
		}
		back, err := browser.Authorize(msg.URL, redirect)
		if err != nil {
			t.Fatalf("browser: %v\nvisited %v", err, browser.Visited)
		}
		return map[string]string{"callback": back.String()}
	})

	// The v2 client spoke 2026-07-28: every MCP POST carried the version
	// and Mcp-Method headers; it discovered the server with server/discover.
	var mcpPosts int
	for _, e := range res.Exchanges {
		if e.Path != "/mcp/modern" || e.Method != "POST" || e.Phase == "legacy" || e.Phase == "raw" {
			continue
		}
		mcpPosts++
		if e.Version != "2026-07-28" || e.MCPMethod != e.RPCMethod {
			t.Errorf("a 2026-07-28 POST without its headers: %+v", e)
		}
		if e.RPCMethod == "tools/call" && e.MCPName == "" {
			t.Errorf("tools/call without Mcp-Name: %+v", e)
		}
		if e.RPCMethod != "" && e.ClientName != "warden-e2e-modern" {
			t.Errorf("a 2026-07-28 request without clientInfo in _meta: %+v", e)
		}
	}
	if mcpPosts == 0 {
		t.Fatal("no 2026-07-28 request reached the server")
	}
	if n := countModern(res.Exchanges, func(e modernExchange) bool { return e.RPCMethod == "server/discover" && e.Status == 200 }); n == 0 {
		t.Errorf("no server/discover answered 200: %+v", res.phase("connect"))
	}
	if n := countModern(res.Exchanges, func(e modernExchange) bool { return e.RPCMethod == "initialize" && e.Phase != "legacy" }); n != 0 {
		t.Errorf("the 2026-07-28 client sent initialize %d times", n)
	}
	if res.ServerVersion.Name != "warden-test-upstream" {
		t.Errorf("server %q", res.ServerVersion.Name)
	}
	wantTools := []string{"countdown", "echo", "region_info", "run_sql", "whoami", "write_note"}
	if !slices.Equal(res.Tools, wantTools) {
		t.Errorf("tools/list %v, want %v", res.Tools, wantTools)
	}
	if res.Echo != "hello from 2026-07-28" || !strings.Contains(res.Whoami, "aud="+resource) || !strings.Contains(res.Whoami, "sub="+idp.Alice) {
		t.Errorf("allowed calls: echo %q, whoami %q", res.Echo, res.Whoami)
	}
	// x-mcp-header: the SDK mirrored the argument, the server checked it.
	if res.Region != "region eu-west1" || countModern(res.Exchanges, func(e modernExchange) bool { return e.ParamRegion == "eu-west1" && e.Status == 200 }) != 1 {
		t.Errorf("region_info %q; Mcp-Param-Region exchanges: %+v", res.Region, res.phase("use"))
	}
	if res.Denied.Body == nil || res.Denied.Body.Error.Code != -32003 || res.Denied.Body.Error.Message != "run_sql: DROP statements are not allowed" ||
		countModern(res.phase("use"), func(e modernExchange) bool { return e.RPCMethod == "tools/call" && e.Status == 403 }) != 1 {
		t.Errorf("policy denial as the 2026-07-28 client saw it: %+v", res.Denied)
	}

	// Step-up: 403 insufficient_scope naming data:read and data:write, a
	// second authorization asking for both, then the call succeeds with a
	// JWT that carries data:write.
	var challenge string
	for _, e := range res.phase("step-up") {
		if e.Status == 403 {
			challenge = e.WWWAuthenticate
		}
	}
	want := `Bearer error="insufficient_scope", scope="data:read data:write", resource_metadata="` + h.public + `/.well-known/oauth-protected-resource/mcp/modern"`
	if !strings.HasPrefix(challenge, want) || strings.Contains(challenge, "offline_access") {
		t.Errorf("step-up challenge %q, want it to start with %q", challenge, want)
	}
	if len(res.AuthURLs) != 2 || !strings.Contains(res.AuthURLs[1], "data%3Aread") || !strings.Contains(res.AuthURLs[1], "data%3Awrite") || strings.Contains(res.AuthURLs[0], "data%3Awrite") {
		t.Errorf("authorization requests %v: the second, and only it, must ask for data:read and data:write", res.AuthURLs)
	}
	if res.NoteBefore != "" || res.Note != "noted: after step-up" || !strings.Contains(res.WhoamiAfter, "data:write") {
		t.Errorf("step-up: before %q, after %q, whoami %q (token scope %q, error %+v)", res.NoteBefore, res.Note, res.WhoamiAfter, res.ScopeAfter, res.StepUpError)
	}

	// Held-back requests: Warden refuses the mismatches with 400 / -32020
	// carrying the id; a GET passes to the server, which answers 405.
	for _, name := range []string{"mismatchedName", "missingMethod", "base64Name"} {
		r := res.Raw[name]
		if r.Status != 400 || r.Body == nil || r.Body.Error.Code != -32020 || fmt.Sprint(r.Body.ID) != "41" {
			t.Errorf("%s: %d %+v", name, r.Status, r.Body)
		}
	}
	if r := res.Raw["get"]; r.Status != 405 {
		t.Errorf("GET on the 2026-07-28 endpoint: %d, want the server's 405", r.Status)
	}

	// The 2025-11-25 client on the same server, same tokens.
	if res.LegacyVersion != "2025-11-25" || res.LegacyEcho != "hello from 2025-11-25" {
		t.Errorf("2025-11-25 client: version %q, echo %q", res.LegacyVersion, res.LegacyEcho)
	}
	if res.LegacyDenied.Body == nil || res.LegacyDenied.Body.Error.Code != -32003 || res.LegacyDenied.Body.Error.Message != "run_sql: DROP statements are not allowed" {
		t.Errorf("policy denial as the 2025-11-25 client saw it: %+v", res.LegacyDenied)
	}
	for _, e := range res.phase("legacy") {
		if e.Path == "/mcp/modern" && e.MCPMethod != "" {
			t.Errorf("the 2025-11-25 client sent Mcp-Method: %+v", e)
		}
	}
	if n := h.modern.Rejects(); n != 0 {
		t.Errorf("the upstream rejected %d bearer tokens", n)
	}
	t.Logf("2026-07-28 client: %d exchanges, %d sign-ins; step-up challenge %q", len(res.Exchanges), len(res.AuthURLs), challenge)
}

func countModern(ex []modernExchange, pred func(modernExchange) bool) int {
	n := 0
	for _, e := range ex {
		if pred(e) {
			n++
		}
	}
	return n
}
