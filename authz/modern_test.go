package authz_test

import (
	"context"
	"encoding/json"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/warden-mcp/warden/authz"
	"github.com/warden-mcp/warden/internal/mcp"
	"github.com/warden-mcp/warden/internal/mcptask"
	"github.com/warden-mcp/warden/internal/registry"
	"github.com/warden-mcp/warden/policy"
)

// countingDecider counts the decisions the real engine is asked for.
type countingDecider struct {
	authz.Decider
	n atomic.Int64
}

func (d *countingDecider) Decide(ctx context.Context, in *policy.Input) (policy.Decision, error) {
	d.n.Add(1)
	return d.Decider.Decide(ctx, in)
}

// toolHeaders is the in-test ToolHeaders: what extproc learns from tool
// definitions (here from the spec's example definition through
// mcp.ParamHeadersFromSchema).
type toolHeaders map[string]map[string][]mcp.ParamHeader

func (t toolHeaders) ParamHeaders(server, tool string) ([]mcp.ParamHeader, bool) {
	hs, ok := t[server][tool]
	return hs, ok
}

const modernMeta = `"_meta":{"io.modelcontextprotocol/protocolVersion":"2026-07-28","io.modelcontextprotocol/clientInfo":{"name":"ExampleClient","version":"1.0.0"},"io.modelcontextprotocol/clientCapabilities":{}}`

func modernHeaders(kv ...string) map[string]string {
	h := map[string]string{"mcp-protocol-version": "2026-07-28"}
	for i := 0; i+1 < len(kv); i += 2 {
		h[kv[i]] = kv[i+1]
	}
	return h
}

type rpcBody struct {
	ID    json.RawMessage `json:"id"`
	Error struct {
		Code    int             `json:"code"`
		Message string          `json:"message"`
		Data    json.RawMessage `json:"data"`
	} `json:"error"`
}

func decodeRPC(t *testing.T, body string) rpcBody {
	t.Helper()
	var b rpcBody
	if err := json.Unmarshal([]byte(body), &b); err != nil {
		t.Fatalf("body %q: %v", body, err)
	}
	return b
}

func modernEnv(t *testing.T) (*env, *countingDecider, string) {
	counter := &countingDecider{}
	spec, err := mcp.ParamHeadersFromSchema(json.RawMessage(`{"type":"object","properties":{"region":{"type":"string","x-mcp-header":"Region"},"query":{"type":"string"}},"required":["region","query"]}`))
	if err != nil {
		t.Fatal(err)
	}
	e := newEnv(t, func(o *authz.Options) {
		counter.Decider = o.Policy
		o.Policy = counter
		o.ToolHeaders = toolHeaders{"bi": {"execute_sql": spec}}
	})
	e.addServer(registry.Spec{Name: "bi", URL: "http://bi.internal:8080/mcp"})
	tok, _ := e.mint(tokenSpec{servers: []string{"bi"}})
	return e, counter, tok
}

// Held-back 2026-07-28 requests shaped as the spec's examples, each with
// one thing wrong: 400 with JSON-RPC -32020 carrying the request's id,
// and the policy is never asked.
func TestModernHeaderMismatchDeniedBeforePolicy(t *testing.T) {
	e, counter, tok := modernEnv(t)
	sql := func(id, region string) string {
		return `{"jsonrpc":"2.0","id":` + id + `,"method":"tools/call","params":{` + modernMeta + `,"name":"execute_sql","arguments":{"region":"` + region + `","query":"SELECT * FROM users"}}}`
	}
	weather := `{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"get_weather","arguments":{"location":"Seattle, WA"},` + modernMeta + `}}`
	cases := map[string]struct {
		body    string
		headers map[string]string
		id      string
		substr  string
	}{
		"missing Mcp-Method":              {weather, modernHeaders("mcp-name", "get_weather"), "1", "missing required Mcp-Method"},
		"missing Mcp-Name":                {weather, modernHeaders("mcp-method", "tools/call"), "1", "missing required Mcp-Name"},
		"Mcp-Name names another tool":     {weather, modernHeaders("mcp-method", "tools/call", "mcp-name", "echo"), "1", `"echo" does not match body value "get_weather"`},
		"Base64 Mcp-Name of another tool": {weather, modernHeaders("mcp-method", "tools/call", "mcp-name", "=?base64?ZWNobw==?="), "1", `"echo" does not match`},
		"Mcp-Method names another method": {weather, modernHeaders("mcp-method", "tools/list", "mcp-name", "get_weather"), "1", "Mcp-Method header value"},
		"Mcp-Param-Region missing":        {sql("2", "us-west1"), modernHeaders("mcp-method", "tools/call", "mcp-name", "execute_sql"), "2", "missing Mcp-Param-Region"},
		"Mcp-Param-Region differs":        {sql(`"r-3"`, "us-west1"), modernHeaders("mcp-method", "tools/call", "mcp-name", "execute_sql", "mcp-param-region", "eu-west1"), `"r-3"`, "Mcp-Param-Region header does not match"},
		"protocol version differs":        {weather, map[string]string{"mcp-protocol-version": "2025-11-25", "mcp-method": "tools/call", "mcp-name": "get_weather"}, "1", "does not match the body's _meta protocol version"},
	}
	for name, c := range cases {
		t.Run(name, func(t *testing.T) {
			before := counter.n.Load()
			resp := e.check(req{token: tok, body: c.body, headers: c.headers})
			d := resp.GetDeniedResponse()
			if d == nil || d.GetStatus().GetCode() != 400 {
				t.Fatalf("want 400, got %v", resp)
			}
			b := decodeRPC(t, d.GetBody())
			if b.Error.Code != mcp.CodeHeaderMismatch || string(b.ID) != c.id || !strings.Contains(b.Error.Message, c.substr) {
				t.Errorf("body %s", d.GetBody())
			}
			if n := counter.n.Load() - before; n != 0 {
				t.Errorf("policy ran %d times on a mismatched request", n)
			}
		})
	}

	// The same requests with matching headers are decided by policy.
	before := counter.n.Load()
	for _, r := range []req{
		{token: tok, body: weather, headers: modernHeaders("mcp-method", "tools/call", "mcp-name", "get_weather")},
		{token: tok, body: sql("4", "us-west1"), headers: modernHeaders("mcp-method", "tools/call", "mcp-name", "execute_sql", "mcp-param-region", "us-west1")},
	} {
		resp := e.check(r)
		d := resp.GetDeniedResponse()
		// get_weather and execute_sql are not in the test policy's
		// allowed tools: a policy denial (403), not a header one.
		if d == nil || d.GetStatus().GetCode() != 403 || decodeRPC(t, d.GetBody()).Error.Code != authz.CodePolicyDenied {
			t.Fatalf("want a policy denial, got %v", resp)
		}
	}
	if n := counter.n.Load() - before; n != 2 {
		t.Errorf("policy ran %d times for two well-formed requests", n)
	}
	allowed := e.check(req{token: tok, body: `{"jsonrpc":"2.0","id":5,"method":"tools/call","params":{"name":"echo","arguments":{"message":"hi"},` + modernMeta + `}}`,
		headers: modernHeaders("mcp-method", "tools/call", "mcp-name", "echo")})
	if allowed.GetOkResponse() == nil {
		t.Fatalf("a well-formed 2026-07-28 call was refused: %v", allowed)
	}

	evs := e.auditEvents(t, len(cases)+3)
	mismatches := 0
	for _, ev := range evs {
		if ev.Status == 400 && strings.Contains(ev.Reason, "Header mismatch") {
			mismatches++
		}
	}
	if mismatches != len(cases) {
		t.Errorf("%d header-mismatch decisions in the trail, want %d", mismatches, len(cases))
	}
	last := evs[len(evs)-1]
	if last.Decision != "allow" || last.Details["client_name"] != "ExampleClient" || last.Details["client_version"] != "1.0.0" || last.Details["protocol_version"] != "2026-07-28" {
		t.Errorf("allowed 2026-07-28 call in the trail: %+v", last)
	}
}

func TestModernVersionsAndMethods(t *testing.T) {
	e, counter, tok := modernEnv(t)

	// A version Warden cannot classify: -32022 listing what it can.
	resp := e.check(req{token: tok, body: `{"jsonrpc":"2.0","id":1,"method":"tools/list","params":{}}`, headers: map[string]string{"mcp-protocol-version": "2099-01-01"}})
	d := resp.GetDeniedResponse()
	if d == nil || d.GetStatus().GetCode() != 400 {
		t.Fatalf("unknown version: %v", resp)
	}
	b := decodeRPC(t, d.GetBody())
	if b.Error.Code != mcp.CodeUnsupportedProtocolVersion || !strings.Contains(string(b.Error.Data), `"supported":["2026-07-28","2025-11-25"`) || !strings.Contains(string(b.Error.Data), `"requested":"2099-01-01"`) {
		t.Errorf("unknown version body %s", d.GetBody())
	}
	if counter.n.Load() != 0 {
		t.Error("policy ran for an unknown protocol version")
	}

	// GET and DELETE of a 2026-07-28 client reach the server, which
	// answers 405.
	for _, m := range []string{"GET", "DELETE"} {
		if resp := e.check(req{token: tok, method: m, headers: modernHeaders()}); resp.GetOkResponse() == nil {
			t.Errorf("%s refused: %v", m, resp)
		}
	}
	// server/discover and subscriptions/listen are decided like any call.
	for _, r := range []req{
		{token: tok, body: `{"jsonrpc":"2.0","id":"d","method":"server/discover","params":{` + modernMeta + `}}`, headers: modernHeaders("mcp-method", "server/discover")},
		{token: tok, body: `{"jsonrpc":"2.0","id":1,"method":"subscriptions/listen","params":{` + modernMeta + `,"notifications":{"toolsListChanged":true,"resourceSubscriptions":["file:///public/a"]}}}`, headers: modernHeaders("mcp-method", "subscriptions/listen")},
	} {
		if resp := e.check(r); resp.GetOkResponse() == nil {
			t.Errorf("%s refused: %v", r.body, resp)
		}
	}
	// A listen stream is decided once per subscribed resource, as the
	// resources/subscribe it replaces: one refused resource refuses it.
	resp = e.check(req{token: tok, body: `{"jsonrpc":"2.0","id":2,"method":"subscriptions/listen","params":{` + modernMeta + `,"notifications":{"resourceSubscriptions":["file:///public/a","file:///secret/b"]}}}`, headers: modernHeaders("mcp-method", "subscriptions/listen")})
	if d := resp.GetDeniedResponse(); d == nil || d.GetStatus().GetCode() != 403 || !strings.Contains(d.GetBody(), "secret resources are not for you") {
		t.Errorf("listen to a refused resource: %v", resp)
	}
	// _meta reaches policy: the test policy refuses a client by name.
	resp = e.check(req{token: tok, body: `{"jsonrpc":"2.0","id":3,"method":"tools/list","params":{"_meta":{"io.modelcontextprotocol/protocolVersion":"2026-07-28","io.modelcontextprotocol/clientInfo":{"name":"blocked-client","version":"6.6.6"}}}}`, headers: modernHeaders("mcp-method", "tools/list")})
	if d := resp.GetDeniedResponse(); d == nil || !strings.Contains(d.GetBody(), "blocked-client is not allowed") {
		t.Errorf("policy did not see clientInfo: %v", resp)
	}
}

// A task request is decided like the tools/call that created it, for the
// caller that made it only.
func TestTasksAuthorizedLikeTheirCall(t *testing.T) {
	var tasks *mcptask.Store
	e := newEnv(t, func(o *authz.Options) {
		tasks = mcptask.New(o.Resolver.(mcptask.Sessions), mcptask.Options{})
		o.Tasks = tasks
	})
	e.addServer(registry.Spec{Name: "bi", URL: "http://bi.internal:8080/mcp"})
	tok, grant := e.mint(tokenSpec{servers: []string{"bi"}})
	ctx := context.Background()
	record := func(id, subject, tool, args string) {
		if _, err := tasks.RecordResult(ctx, mcptask.Origin{Server: "bi", Subject: subject, ClientID: "client-1", GrantID: grant, Tool: tool, Arguments: json.RawMessage(args)},
			json.RawMessage(`{"resultType":"task","taskId":"`+id+`","status":"working","ttlMs":60000}`)); err != nil {
			t.Fatal(err)
		}
	}
	record("t-echo", "alice", "echo", `{"message":"hi"}`)
	record("t-forbidden", "alice", "delete_everything", `{}`)
	record("t-drop", "alice", "run_sql", `{"query":"drop table users"}`)
	record("t-bob", "bob", "echo", `{}`)

	get := func(method, id string) req {
		return req{token: tok, body: `{"jsonrpc":"2.0","id":9,"method":"` + method + `","params":{"taskId":"` + id + `",` + modernMeta + `}}`,
			headers: modernHeaders("mcp-method", method, "mcp-name", id)}
	}
	for _, m := range []string{"tasks/get", "tasks/update", "tasks/cancel"} {
		if resp := e.check(get(m, "t-echo")); resp.GetOkResponse() == nil {
			t.Errorf("%s of an allowed call's task refused: %v", m, resp)
		}
	}
	cases := map[string]struct{ id, reason string }{
		"a task of a refused tool":           {"t-forbidden", "tool delete_everything is not allowed for alice"},
		"a task whose arguments are refused": {"t-drop", "DROP statements are not allowed"},
		"another user's task":                {"t-bob", "task is unknown"},
		"a task Warden never saw":            {"t-guessed", "task is unknown"},
	}
	for name, c := range cases {
		resp := e.check(get("tasks/get", c.id))
		d := resp.GetDeniedResponse()
		if d == nil || d.GetStatus().GetCode() != 403 || !strings.Contains(d.GetBody(), c.reason) || decodeRPC(t, d.GetBody()).Error.Code != authz.CodePolicyDenied {
			t.Errorf("%s: %v", name, resp)
		}
	}
	// Listening to a task's notifications is decided like the task.
	listen := func(id string) req {
		return req{token: tok, body: `{"jsonrpc":"2.0","id":4,"method":"subscriptions/listen","params":{` + modernMeta + `,"notifications":{"taskIds":["` + id + `"]}}}`, headers: modernHeaders("mcp-method", "subscriptions/listen")}
	}
	if resp := e.check(listen("t-echo")); resp.GetOkResponse() == nil {
		t.Errorf("listen to an allowed task: %v", resp)
	}
	if resp := e.check(listen("t-bob")); resp.GetDeniedResponse() == nil {
		t.Errorf("listen to another user's task allowed")
	}
	// 2025-11-25's experimental tasks/result, same rule.
	if resp := e.check(req{token: tok, body: `{"jsonrpc":"2.0","id":5,"method":"tasks/result","params":{"taskId":"t-forbidden"}}`, headers: map[string]string{"mcp-protocol-version": "2025-11-25"}}); resp.GetDeniedResponse() == nil {
		t.Error("tasks/result of a refused call's task allowed")
	}

	// The trail names the task's tool, never the task id.
	for _, ev := range e.auditEvents(t, 11) {
		raw, _ := json.Marshal(ev)
		if strings.Contains(string(raw), "t-echo") || strings.Contains(string(raw), "t-forbidden") {
			t.Errorf("audit event holds a task id: %s", raw)
		}
		if ev.Method == "tasks/get" && ev.Decision == "allow" && ev.Tool != "echo" {
			t.Errorf("tasks/get event names tool %q", ev.Tool)
		}
	}

	// Without a task store every task request is refused.
	bare := newEnv(t)
	bare.addServer(registry.Spec{Name: "bi", URL: "http://bi.internal:8080/mcp"})
	btok, _ := bare.mint(tokenSpec{servers: []string{"bi"}})
	r := get("tasks/get", "t-echo")
	r.token = btok
	if resp := bare.check(r); resp.GetDeniedResponse() == nil {
		t.Error("a task request allowed without a task store")
	}
}

// Step-up (SEP-835): a decision that names scopes answers 403
// insufficient_scope with every scope the call needs; with them the call
// is allowed.
func TestStepUpChallenge(t *testing.T) {
	e := newEnv(t)
	e.addServer(registry.Spec{Name: "hr", URL: "http://hr.internal/mcp", Scopes: []string{"hr:read"}})
	low, _ := e.mint(tokenSpec{servers: []string{"hr"}, scopes: []string{"hr:read"}})
	high, _ := e.mint(tokenSpec{servers: []string{"hr"}, scopes: []string{"hr:read", "hr:write", "offline_access"}})
	call := func(tok, tool string) req {
		return req{token: tok, server: "hr", body: `{"jsonrpc":"2.0","id":"s-1","method":"tools/call","params":{"name":"` + tool + `","arguments":{}}}`}
	}

	resp := e.check(call(low, "write_salary"))
	d := resp.GetDeniedResponse()
	if d == nil || d.GetStatus().GetCode() != 403 {
		t.Fatalf("want 403, got %v", resp)
	}
	www, _ := header(d.GetHeaders(), "www-authenticate")
	want := `Bearer error="insufficient_scope", scope="hr:read hr:write", resource_metadata="` + prmURL("hr") + `"`
	if !strings.HasPrefix(www, want) || strings.Contains(www, "offline_access") {
		t.Errorf("challenge %q, want it to start with %q and never name offline_access", www, want)
	}
	if b := decodeRPC(t, d.GetBody()); string(b.ID) != `"s-1"` || b.Error.Code != authz.CodePolicyDenied || b.Error.Message != "writing salaries needs hr:write" {
		t.Errorf("body %s", d.GetBody())
	}
	if resp := e.check(call(high, "write_salary")); resp.GetOkResponse() == nil {
		t.Errorf("the stepped-up handle was refused: %v", resp)
	}

	// A decision naming scopes the handle already has cannot be met by
	// re-authorizing: a final denial, no challenge.
	admin, _ := e.mint(tokenSpec{servers: []string{"hr"}, scopes: []string{"hr:read", "admin"}})
	resp = e.check(call(admin, "audit_all"))
	d = resp.GetDeniedResponse()
	if d == nil || d.GetStatus().GetCode() != 403 {
		t.Fatalf("audit_all: %v", resp)
	}
	if www, _ := header(d.GetHeaders(), "www-authenticate"); www != "" {
		t.Errorf("a denial step-up cannot fix carries a challenge: %q", www)
	}
	resp = e.check(call(low, "audit_all"))
	if www, _ := header(resp.GetDeniedResponse().GetHeaders(), "www-authenticate"); !strings.Contains(www, `scope="hr:read admin"`) {
		t.Errorf("audit_all without admin: challenge %q", www)
	}
	evs := e.auditEvents(t, 4)
	if evs[0].Status != 403 || !strings.Contains(evs[0].Reason, "step-up to hr:read hr:write") {
		t.Errorf("step-up in the trail: %+v", evs[0])
	}
}
