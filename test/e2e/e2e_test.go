package e2e

import (
	"encoding/json"
	"fmt"
	"io"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/warden-mcp/warden/internal/store"
	"github.com/warden-mcp/warden/oauth/oauthtest"
	"github.com/warden-mcp/warden/test/idp"
)

// TestEndToEnd is the whole run: an MCP client signs in through the
// proxy, uses a server, is allowed and denied by policy, outlives its
// access handle, ends its session and is cut off by a revocation; the
// conformance suite passes as many checks through Warden as without it;
// and the audit trail holds one decision per Check the proxies made.
func TestEndToEnd(t *testing.T) {
	began := time.Now()
	h := startHarness(t)
	t.Logf("harness up in %s: warden, oidc-provider, envoysim, test/mcpserver, server-everything", time.Since(began).Round(time.Millisecond))

	client := &clientResult{}
	t.Run("sdk client", func(t *testing.T) {
		began := time.Now()
		client = h.runClient(t)
		t.Logf("SDK client run took %s", time.Since(began).Round(time.Millisecond))
	})

	handle := strings.TrimSpace(h.cli(t, "tokens", "create", "--subject", "conformance-runner", "--server", "everything", "--ttl", "1h"))
	h.startConformanceProxy(t, handle)
	t.Run("conformance", func(t *testing.T) {
		began := time.Now()
		h.runConformance(t)
		t.Logf("conformance runs took %s", time.Since(began).Round(time.Millisecond))
	})

	t.Run("audit", func(t *testing.T) { h.checkAudit(t, client) })
	t.Logf("end-to-end run took %s", time.Since(began).Round(time.Millisecond))
}

// ---- the SDK client ----

type exchange struct {
	Phase       string `json:"phase"`
	Method      string `json:"method"`
	Origin      string `json:"origin"`
	Path        string `json:"path"`
	RPCMethod   string `json:"rpcMethod"`
	RPCID       any    `json:"rpcId"`
	GrantType   string `json:"grantType"`
	Status      int    `json:"status"`
	ContentType string `json:"contentType"`
}

func (e exchange) String() string {
	s := e.Method + " " + e.Path
	if e.RPCMethod != "" {
		s += " (" + e.RPCMethod + ")"
	}
	if e.GrantType != "" {
		s += " (" + e.GrantType + ")"
	}
	return fmt.Sprintf("%s -> %d %s", s, e.Status, e.ContentType)
}

type failure struct {
	Unexpected string `json:"unexpected"`
	Name       string `json:"name"`
	Code       any    `json:"code"`
	Message    string `json:"message"`
	Body       *struct {
		ID    any `json:"id"`
		Error struct {
			Code    int    `json:"code"`
			Message string `json:"message"`
		} `json:"error"`
	} `json:"body"`
}

type clientResult struct {
	ClientID   string `json:"clientId"`
	ServerInfo struct {
		Name string `json:"name"`
	} `json:"serverInfo"`
	ProtocolVersion       string   `json:"protocolVersion"`
	Tools                 []string `json:"tools"`
	Whoami                string   `json:"whoami"`
	Echo                  string   `json:"echo"`
	Denied                failure  `json:"denied"`
	DeniedRequestID       any      `json:"deniedRequestId"`
	SQL                   string   `json:"sql"`
	Resource              string   `json:"resource"`
	Prompt                string   `json:"prompt"`
	Countdown             string   `json:"countdown"`
	Progress              []struct{ Progress, Total float64 }
	WhoamiAfterRefresh    string  `json:"whoamiAfterRefresh"`
	Refreshed             int     `json:"refreshed"`
	SessionAfterDelete    *string `json:"sessionAfterDelete"`
	StaleSessionStatus    int     `json:"staleSessionStatus"`
	WhoamiReconnected     string  `json:"whoamiReconnected"`
	AfterRevoke           failure `json:"afterRevoke"`
	Reauthorization       bool    `json:"reauthorizationRequested"`
	RefreshedBeforeRevoke bool    `json:"refreshedBeforeRevoke"`
	Invalidations         []struct {
		Phase string `json:"phase"`
		Scope string `json:"scope"`
	} `json:"invalidations"`
	Exchanges        []exchange `json:"exchanges"`
	HeldAccessTokens []string   `json:"heldAccessTokens"`
}

func (r *clientResult) phase(name string) []exchange {
	var out []exchange
	for _, e := range r.Exchanges {
		if e.Phase == name {
			out = append(out, e)
		}
	}
	return out
}

// runClient drives test/e2e/client.mjs: it plays the user's browser and
// the operator's CLI when the client asks, then checks what the client,
// the upstream and the IdP saw. It returns what the client recorded.
func (h *harness) runClient(t *testing.T) *clientResult {
	resource := h.public + "/mcp/data"
	// Nobody listens here: the browser stops at the redirect, as an
	// installed app's loopback listener would receive it.
	redirect := "http://127.0.0.1:" + freePort(t) + "/callback"

	var (
		browser *oauthtest.Browser
		authURL string
		revoked string
	)
	res := &clientResult{}
	idp.RunScript(t, "e2e/client.mjs", map[string]string{"serverUrl": resource, "redirectUrl": redirect}, res, func(event string, line []byte) any {
		var msg struct {
			URL string `json:"url"`
			Sub string `json:"sub"`
		}
		_ = json.Unmarshal(line, &msg)
		switch event {
		case "authorize":
			if browser != nil {
				t.Fatalf("the client asked for a second sign-in")
			}
			authURL = msg.URL
			browser = oauthtest.NewBrowser()
			back, err := browser.Authorize(msg.URL, redirect)
			if err != nil {
				t.Fatalf("browser: %v\nvisited %v\nidp:\n%s", err, browser.Visited, h.idp.Stderr())
			}
			return map[string]string{"callback": back.String()}
		case "revoke":
			revoked = h.cli(t, "revoke", "--user", msg.Sub, "--reason", "e2e: user offboarded")
			return map[string]bool{"revoked": true}
		}
		t.Fatalf("unexpected client event %q", event)
		return nil
	})
	t.Logf("client: %d HTTP exchanges through the proxy, %d access handles held, extra refresh before the revocation: %v",
		len(res.Exchanges), len(res.HeldAccessTokens), res.RefreshedBeforeRevoke)

	// Everything went through the proxy.
	for _, e := range res.Exchanges {
		if e.Origin != h.public {
			t.Errorf("the client talked to %s directly: %s", e.Origin, e)
		}
	}

	// Discovery from the 401 challenge, DCR, PKCE, IdP login, consent, token.
	conn := res.phase("connect")
	if len(conn) == 0 || conn[0].Method != "POST" || conn[0].Path != "/mcp/data" || conn[0].Status != 401 {
		t.Fatalf("the first request was not challenged: %v", conn)
	}
	requireExchange(t, conn, "protected resource metadata", func(e exchange) bool {
		return e.Path == "/.well-known/oauth-protected-resource/mcp/data" && e.Status == 200
	})
	requireExchange(t, conn, "authorization server metadata", func(e exchange) bool {
		return e.Path == "/.well-known/oauth-authorization-server" && e.Status == 200
	})
	requireExchange(t, conn, "dynamic client registration", func(e exchange) bool {
		return e.Method == "POST" && e.Path == "/oauth/register" && e.Status == 201
	})
	requireExchange(t, conn, "code exchange", func(e exchange) bool {
		return e.Path == "/oauth/token" && e.GrantType == "authorization_code" && e.Status == 200
	})
	requireExchange(t, conn, "initialize", func(e exchange) bool {
		return e.RPCMethod == "initialize" && e.Status == 200
	})
	requireExchange(t, conn, "the GET stream", func(e exchange) bool {
		return e.Method == "GET" && e.Path == "/mcp/data" && e.Status == 200 && e.ContentType == "text/event-stream"
	})
	for _, want := range []string{"response_type=code", "code_challenge_method=S256", "resource=" + strings.ReplaceAll(strings.ReplaceAll(resource, ":", "%3A"), "/", "%2F"), "scope=data%3Aread"} {
		if !strings.Contains(authURL, want) {
			t.Errorf("authorization request lacks %s: %s", want, authURL)
		}
	}
	if !strings.HasPrefix(authURL, h.public+"/oauth/authorize?") {
		t.Errorf("authorization endpoint %s is not behind the proxy", authURL)
	}
	sawIdP := false
	for _, v := range browser.Visited {
		sawIdP = sawIdP || strings.HasPrefix(v, h.idp.Issuer+"/interaction/")
	}
	if !sawIdP || browser.ConsentShown != 1 {
		t.Errorf("browser: IdP login %v, consent pages %d: %v", sawIdP, browser.ConsentShown, browser.Visited)
	}
	if res.ClientID == "" || res.ServerInfo.Name != "warden-test-upstream" {
		t.Errorf("client id %q, server %q", res.ClientID, res.ServerInfo.Name)
	}

	// The upstream saw Warden's JWT for alice and this resource.
	for _, want := range []string{"sub=" + idp.Alice, "client_id=" + res.ClientID, "aud=" + resource, "scope=data:read"} {
		if !strings.Contains(res.Whoami, want) {
			t.Errorf("whoami %q lacks %q", res.Whoami, want)
		}
	}
	if !slices.Equal(res.Tools, []string{"countdown", "echo", "region_info", "run_sql", "whoami", "write_note"}) {
		t.Errorf("tools/list: %v", res.Tools)
	}
	if res.Echo != "hello through Warden" || res.SQL != "ran: SELECT count(*) FROM customers" {
		t.Errorf("allowed calls: echo %q, run_sql %q", res.Echo, res.SQL)
	}
	if res.Resource != "# data team" || res.Prompt != "hello" {
		t.Errorf("resources/read %q, prompts/get %q", res.Resource, res.Prompt)
	}

	// The policy's denial reached the client as a JSON-RPC error for the
	// request it sent, with the policy's reason.
	d := res.Denied
	if d.Unexpected != "" || d.Body == nil || d.Body.Error.Code != -32003 ||
		d.Body.Error.Message != "run_sql: DROP statements are not allowed" || fmt.Sprint(d.Body.ID) != fmt.Sprint(res.DeniedRequestID) {
		t.Errorf("policy denial as the client saw it: %+v (request id %v)", d, res.DeniedRequestID)
	}
	if fmt.Sprint(d.Code) != "403" {
		t.Errorf("policy denial HTTP status %v, want 403", d.Code)
	}
	t.Logf("policy denial as the SDK reports it: %s: %s", d.Name, d.Message)

	// Server-initiated messages on the call's SSE stream.
	if res.Countdown != "counted 5" || len(res.Progress) != 5 || res.Progress[4].Progress != 5 || res.Progress[4].Total != 5 {
		t.Errorf("countdown %q, progress %+v", res.Countdown, res.Progress)
	}
	requireExchange(t, res.phase("stream"), "the countdown call answered as an SSE stream", func(e exchange) bool {
		return e.RPCMethod == "tools/call" && e.Status == 200 && e.ContentType == "text/event-stream"
	})

	// The access handle expired; the SDK refreshed on the 401 and went on.
	ref := res.phase("refresh")
	if len(ref) < 3 || ref[0].Status != 401 || ref[len(ref)-1].Status != 200 || ref[len(ref)-1].RPCMethod != "tools/call" || res.Refreshed != 1 {
		t.Errorf("refresh phase (%d new handles): %v", res.Refreshed, ref)
	}
	requireExchange(t, ref, "refresh grant", func(e exchange) bool {
		return e.Path == "/oauth/token" && e.GrantType == "refresh_token" && e.Status == 200
	})
	if !strings.Contains(res.WhoamiAfterRefresh, "sub="+idp.Alice) {
		t.Errorf("whoami after refresh: %q", res.WhoamiAfterRefresh)
	}

	// Session DELETE reached the upstream: the session is gone there.
	requireExchange(t, res.phase("delete"), "session DELETE", func(e exchange) bool {
		return e.Method == "DELETE" && e.Path == "/mcp/data" && e.Status/100 == 2
	})
	if res.SessionAfterDelete != nil || res.StaleSessionStatus != 404 {
		t.Errorf("after DELETE: transport session %v, a request naming the old session got %d (want 404 from the upstream)", res.SessionAfterDelete, res.StaleSessionStatus)
	}

	// Revocation: the very next call is refused with 401; the refresh
	// handle died with the grant; the SDK wants a new sign-in.
	if !strings.Contains(revoked, "revoked 1 grant(s)") {
		t.Errorf("warden revoke said %q", revoked)
	}
	if !strings.Contains(res.WhoamiReconnected, "sub="+idp.Alice) {
		t.Errorf("whoami in the new session: %q", res.WhoamiReconnected)
	}
	rev := res.phase("revoked")
	if len(rev) == 0 || rev[0].Method != "POST" || rev[0].RPCMethod != "tools/call" || rev[0].Status != 401 {
		t.Errorf("the first request after the revocation: %v", rev)
	}
	requireExchange(t, rev, "refused refresh", func(e exchange) bool {
		return e.Path == "/oauth/token" && e.GrantType == "refresh_token" && e.Status == 400
	})
	if n := countExchanges(rev, func(e exchange) bool { return e.Path == "/mcp/data" && e.Status == 200 }); n != 0 {
		t.Errorf("%d MCP requests succeeded after the revocation: %v", n, rev)
	}
	if res.AfterRevoke.Name != "UnauthorizedError" || !res.Reauthorization {
		t.Errorf("after revocation the client got %+v (new sign-in requested: %v)", res.AfterRevoke, res.Reauthorization)
	}
	dropped := false
	for _, inv := range res.Invalidations {
		dropped = dropped || (inv.Phase == "revoked" && inv.Scope == "tokens")
	}
	if !dropped {
		t.Errorf("the SDK did not drop its tokens after the refused refresh: %+v", res.Invalidations)
	}

	// The upstream only ever saw Warden's JWTs: never a client handle.
	if n := h.data.Rejects(); n != 0 {
		t.Errorf("the upstream rejected %d bearer tokens", n)
	}
	seen := h.data.Seen()
	if len(seen) == 0 {
		t.Error("the upstream verified no JWT")
	}
	for _, s := range seen {
		if s.Subject != idp.Alice || !slices.Equal(s.Audience, []string{resource}) || s.ClientID != res.ClientID {
			t.Errorf("the upstream verified %+v", s)
		}
	}
	held := map[string]bool{}
	for _, tok := range res.HeldAccessTokens {
		held["Bearer "+tok] = true
	}
	for i, v := range h.dataAuthzs.values() {
		if held[v] {
			t.Errorf("request %d reached the upstream with the client's own handle", i)
		} else if !strings.HasPrefix(v, "Bearer ey") {
			t.Errorf("request %d reached the upstream with Authorization %.12q…", i, v)
		}
	}
	t.Logf("upstream verified %d JWTs, rejected %d; client held %d handles (%d refresh)", len(seen), h.data.Rejects(), len(res.HeldAccessTokens), res.Refreshed)
	return res
}

func requireExchange(t *testing.T, ex []exchange, what string, pred func(exchange) bool) {
	t.Helper()
	if countExchanges(ex, pred) == 0 {
		var b strings.Builder
		for _, e := range ex {
			b.WriteString("\n  " + e.String())
		}
		t.Errorf("no %s among:%s", what, b.String())
	}
}

func countExchanges(ex []exchange, pred func(exchange) bool) int {
	n := 0
	for _, e := range ex {
		if pred(e) {
			n++
		}
	}
	return n
}

// ---- the audit trail ----

// checkAudit compares the decisions Warden recorded with the Checks the
// proxies made, server by server, and verifies the hash chain.
func (h *harness) checkAudit(t *testing.T, client *clientResult) {
	clientID := client.ClientID
	var decisions map[string][]store.AuditEvent
	var events []store.AuditEvent
	want := map[string]int64{"data": h.proxy.Checks(), "everything": h.conformance.Checks()}
	// The trail writes asynchronously (batched); give it a moment.
	deadline := time.Now().Add(15 * time.Second)
	for {
		events = h.auditEvents(t)
		decisions = map[string][]store.AuditEvent{}
		for _, ev := range events {
			if ev.Type == "decision" {
				decisions[ev.Server] = append(decisions[ev.Server], ev)
			}
		}
		if (int64(len(decisions["data"])) == want["data"] && int64(len(decisions["everything"])) == want["everything"]) || time.Now().After(deadline) {
			break
		}
		time.Sleep(200 * time.Millisecond)
	}
	total := 0
	for server, evs := range decisions {
		total += len(evs)
		if want[server] != int64(len(evs)) {
			t.Errorf("server %q: the proxies made %d Checks, the trail holds %d decisions", server, want[server], len(evs))
		}
	}
	t.Logf("Checks made by the proxies: %d (SDK client %d, conformance %d); decision events: %d (data %d, everything %d); audit events in all: %d",
		want["data"]+want["everything"], want["data"], want["everything"], total, len(decisions["data"]), len(decisions["everything"]), len(events))

	// The SDK client's decisions name the user, the client, the server
	// and, for tool calls, the tool.
	tally := map[string]int{}
	for _, ev := range decisions["data"] {
		key := fmt.Sprintf("%s %d %s", ev.Decision, ev.Status, ev.Reason)
		tally[key]++
		if ev.GrantID == "" {
			// Without a live handle there is nobody to name: no token at
			// all, or one already expired (expired handles are gone).
			if ev.Reason != "no bearer token" && ev.Reason != "unknown or expired token" {
				t.Errorf("decision without a grant: %+v", ev)
			}
			continue
		}
		if ev.Subject != idp.Alice || ev.ClientID != clientID || ev.Server != "data" {
			t.Errorf("decision names subject %q client %q server %q", ev.Subject, ev.ClientID, ev.Server)
		}
		if ev.Method == "tools/call" && ev.Tool == "" {
			t.Errorf("tools/call decision without the tool: %+v", ev)
		}
	}
	for key, n := range map[string]int{
		"deny 401 no bearer token":                          1,
		"deny 403 run_sql: DROP statements are not allowed": 1,
		"deny 401 grant revoked":                            1,
	} {
		if tally[key] != n {
			t.Errorf("%d decisions %q, want %d (all: %v)", tally[key], key, n, tally)
		}
	}
	if tally["deny 401 unknown or expired token"] == 0 {
		t.Errorf("no decision for the expired handle: %v", tally)
	}
	tools := map[string]bool{}
	for _, ev := range decisions["data"] {
		if ev.Method == "tools/call" && ev.Decision == "allow" {
			tools[ev.Tool] = true
		}
	}
	for _, tool := range []string{"whoami", "echo", "run_sql", "countdown"} {
		if !tools[tool] {
			t.Errorf("no allowed tools/call %s in the trail: %v", tool, tools)
		}
	}
	conf := map[string]int{}
	rebinding := 0
	for _, ev := range decisions["everything"] {
		key := fmt.Sprintf("%s %d %s", ev.Decision, ev.Status, ev.Method)
		if ev.Decision == "deny" {
			key += " (" + ev.Reason + ")"
		}
		conf[key]++
		// The dns-rebinding scenario's foreign Host is refused before the
		// caller is identified: that denial names no subject.
		if ev.Decision == "deny" && ev.Status == 403 && strings.Contains(ev.Reason, `Host "evil.example.com"`) {
			rebinding++
			continue
		}
		if ev.Subject != "conformance-runner" || ev.ClientID == "" {
			t.Errorf("conformance decision for subject %q client %q", ev.Subject, ev.ClientID)
		}
	}
	if rebinding == 0 {
		t.Error("no denial of the dns-rebinding scenario's foreign Host in the trail")
	}
	t.Logf("conformance decisions: %v", conf)
	t.Logf("SDK client decisions: %v", tally)

	// The rest of the run's story: who registered what, sign-in, tokens,
	// the revocation, each by the actor that did it.
	story := map[string]int{}
	for _, ev := range events {
		if ev.Type == "decision" {
			continue
		}
		story[ev.Type]++
		switch ev.Type {
		case "server_added":
			if ev.Actor != "token:admin" {
				t.Errorf("server_added by %q", ev.Actor)
			}
		case "client_registered", "consent_granted", "code_issued", "token_refreshed":
			if ev.ClientID != clientID {
				t.Errorf("%s for client %q, want %q", ev.Type, ev.ClientID, clientID)
			}
		case "grant_revoked":
			if ev.Actor != "token:admin" || ev.Subject != idp.Alice || ev.ClientID != clientID || ev.Reason != "e2e: user offboarded" {
				t.Errorf("grant_revoked: %+v", ev)
			}
		}
	}
	refreshes := countExchanges(client.Exchanges, func(e exchange) bool { return e.GrantType == "refresh_token" && e.Status == 200 })
	for typ, n := range map[string]int{
		"server_added": 2, "client_registered": 1, "consent_granted": 1, "code_issued": 1,
		"token_issued":    2, // alice's code exchange and the conformance runner's handle
		"token_refreshed": refreshes, "grant_revoked": 1, "revoke": 1,
	} {
		if story[typ] != n {
			t.Errorf("%d %s events, want %d", story[typ], typ, n)
		}
	}
	t.Logf("other audit events: %v", story)

	out := h.cli(t, "audit", "verify")
	if !strings.Contains(out, "audit chain intact") {
		t.Errorf("warden audit verify: %s", out)
	}
	t.Logf("warden audit verify: %s", strings.TrimSpace(out))
}

func (h *harness) auditEvents(t *testing.T) []store.AuditEvent {
	out := h.cli(t, "audit", "tail", "-n", "10000", "--json")
	var evs []store.AuditEvent
	dec := json.NewDecoder(strings.NewReader(out))
	for {
		var ev store.AuditEvent
		if err := dec.Decode(&ev); err == io.EOF {
			break
		} else if err != nil {
			t.Fatalf("audit tail: %v", err)
		}
		evs = append(evs, ev)
	}
	if len(evs) >= 10000 {
		t.Fatalf("the trail holds more events than one audit tail shows")
	}
	return evs
}
