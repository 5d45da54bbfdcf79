package authz_test

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"

	"github.com/warden-mcp/warden/authz"
	"github.com/warden-mcp/warden/internal/audit"
	"github.com/warden-mcp/warden/internal/mcptask"
	"github.com/warden-mcp/warden/internal/registry"
	"github.com/warden-mcp/warden/policy"
	"github.com/warden-mcp/warden/policy/replay"
)

// testPolicy is the policy the env decides with, as a replay candidate.
func testPolicy(t *testing.T) map[string]string {
	t.Helper()
	mods := map[string]string{}
	for _, f := range []string{"authz.rego", "data.json"} {
		b, err := os.ReadFile(filepath.Join("testdata", "policy", f))
		if err != nil {
			t.Fatal(err)
		}
		mods[f] = string(b)
	}
	return mods
}

// Every decision the policy made is recorded with the input it was
// decided on, and replaying the recorded inputs lists exactly the
// decisions a policy change flips: with the unchanged policy none, for
// plain, 2026-07-28 (_meta client info), batch, task and listen requests.
func TestReplayListsExactlyTheFlippedDecisions(t *testing.T) {
	var tasks *mcptask.Store
	e := newEnv(t, func(o *authz.Options) {
		tasks = mcptask.New(o.Resolver.(mcptask.Sessions), mcptask.Options{})
		o.Tasks = tasks
		o.Redact = policy.NewRedaction([]policy.RedactRule{{Server: "bi", Arguments: []string{"secret"}}})
	})
	e.addServer(registry.Spec{Name: "bi", URL: "http://bi.internal:8080/mcp"})
	tok, grant := e.mint(tokenSpec{servers: []string{"bi"}})
	ctx := context.Background()
	if _, err := tasks.RecordResult(ctx, mcptask.Origin{Server: "bi", Subject: "alice", ClientID: "client-1", GrantID: grant, Tool: "echo", Arguments: json.RawMessage(`{"message":"hi"}`)},
		json.RawMessage(`{"resultType":"task","taskId":"t-echo","status":"working","ttlMs":60000}`)); err != nil {
		t.Fatal(err)
	}
	call := func(id, tool, args string) req {
		return req{token: tok, headers: map[string]string{"x-request-id": id},
			body: `{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"` + tool + `","arguments":` + args + `}}`}
	}
	modern := func(id, method, params string, kv ...string) req {
		h := modernHeaders(append([]string{"mcp-method", method, "x-request-id", id}, kv...)...)
		return req{token: tok, headers: h, body: `{"jsonrpc":"2.0","id":2,"method":"` + method + `","params":{` + modernMeta + params + `}}`}
	}
	blocked := `{"jsonrpc":"2.0","id":3,"method":"tools/list","params":{"_meta":{"io.modelcontextprotocol/protocolVersion":"2026-07-28","io.modelcontextprotocol/clientInfo":{"name":"blocked-client","version":"6.6.6"}}}}`
	requests := []struct {
		r     req
		allow bool
	}{
		{call("echo", "echo", `{"message":"hello"}`), true},
		{call("drop", "run_sql", `{"query":"DROP TABLE users"}`), false},
		{call("select", "run_sql", `{"query":"SELECT 1"}`), true},
		{call("other-tool", "delete_everything", `{}`), false},
		{call("secret", "echo", `{"secret":"s3cr3t-value","message":"m"}`), true},
		{call("stepup", "write_salary", `{}`), false},
		{modern("modern-echo", "tools/call", `,"name":"echo","arguments":{}`, "mcp-name", "echo"), true},
		{req{token: tok, headers: modernHeaders("mcp-method", "tools/list", "x-request-id", "blocked"), body: blocked}, false},
		{modern("listen-secret", "subscriptions/listen", `,"notifications":{"resourceSubscriptions":["file:///public/a","file:///secret/b"]}`), false},
		{modern("listen-task", "subscriptions/listen", `,"notifications":{"taskIds":["t-echo"]}`), true},
		{modern("task-get", "tasks/get", `,"taskId":"t-echo"`, "mcp-name", "t-echo"), true},
		{req{token: tok, headers: map[string]string{"x-request-id": "batch"},
			body: `[{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"echo","arguments":{}}},{"jsonrpc":"2.0","id":2,"method":"tools/call","params":{"name":"add","arguments":{"a":1}}}]`}, true},
	}
	for _, rq := range requests {
		resp := e.check(rq.r)
		if got := resp.GetOkResponse() != nil; got != rq.allow {
			t.Fatalf("%s: allowed %v, want %v: %v", rq.r.headers["x-request-id"], got, rq.allow, resp)
		}
	}
	// Not decided by policy (no token): recorded without an input.
	e.check(req{headers: map[string]string{"x-request-id": "anonymous"}, body: toolsCall})

	evs := e.auditEvents(t, len(requests)+1)
	for _, ev := range evs {
		if ev.RequestID == "anonymous" {
			if ev.Input != nil {
				t.Errorf("a 401 carries a policy input: %s", ev.Input)
			}
			continue
		}
		if len(ev.Input) == 0 {
			t.Errorf("%s: no recorded input", ev.RequestID)
		}
		line, _ := json.Marshal(ev)
		if strings.Contains(string(line), "s3cr3t-value") || strings.Contains(string(line), "t-echo") || strings.Contains(string(line), e.tokens[0]) {
			t.Errorf("%s: the trail keeps a redacted argument, a task id or the token: %s", ev.RequestID, line)
		}
		if ev.RequestID == "secret" && !reflect.DeepEqual(ev.Redacted, []string{"secret"}) {
			t.Errorf("secret: redacted %v", ev.Redacted)
		}
	}
	// The chain still verifies with the inputs in it.
	if rep, err := audit.Verify(ctx, e.st); err != nil || !rep.OK() {
		t.Fatalf("verify: %+v %v", rep, err)
	}

	rp := replay.New(replay.Options{Store: e.st})
	edit := func(old, new string) map[string]string {
		m := testPolicy(t)
		for f, src := range m {
			m[f] = strings.Replace(src, old, new, 1)
		}
		return m
	}
	type flip struct{ id, from, to, reason string }
	cases := map[string]struct {
		modules  map[string]string
		want     []flip
		redacted []string // of the "secret" change
	}{
		"unchanged policy": {modules: testPolicy(t)},
		"echo no longer allowed": {
			modules: edit(`"echo", `, ``),
			want: []flip{
				{"echo", "allow", "deny", "tool echo is not allowed for alice"},
				{"secret", "allow", "deny", "tool echo is not allowed for alice"},
				{"modern-echo", "allow", "deny", "tool echo is not allowed for alice"},
				{"listen-task", "allow", "deny", "tool echo is not allowed for alice"},
				{"task-get", "allow", "deny", "tool echo is not allowed for alice"},
				{"batch", "allow", "deny", "tool echo is not allowed for alice"},
			},
			// The candidate reads arguments: the change is marked as one
			// decided on a redacted input.
			redacted: []string{"secret"},
		},
		"the second message of a batch": {
			modules: edit(`"add", `, ``),
			want:    []flip{{"batch", "allow", "deny", "tool add is not allowed for alice"}},
		},
		"DROP allowed": {
			modules: edit(`contains(upper(input.mcp.arguments.query), "DROP")`, `false`),
			want:    []flip{{"drop", "deny", "allow", "allowed"}},
		},
		"ExampleClient blocked too": {
			modules: edit(`input.mcp.client_info.name == "blocked-client"`, `input.mcp.client_info.name in {"blocked-client", "ExampleClient"}`),
			want: []flip{
				{"modern-echo", "allow", "deny", "client blocked-client is not allowed"},
				{"listen-task", "allow", "deny", "client blocked-client is not allowed"},
				{"task-get", "allow", "deny", "client blocked-client is not allowed"},
			},
		},
		"secret resources allowed": {
			modules: edit(`startswith(input.mcp.resource, "file:///secret/")`, `false`),
			want:    []flip{{"listen-secret", "deny", "allow", "allowed"}},
		},
		"a rule on a redacted argument": {
			modules: edit(`} else := {"allow": false, "reason": "client blocked-client`, `} else := {"allow": false, "reason": "secret"} if {
	input.mcp.arguments.secret != "s3cr3t-value"
	input.mcp.arguments.secret
} else := {"allow": false, "reason": "client blocked-client`),
			want:     []flip{{"secret", "allow", "deny", "secret"}},
			redacted: []string{"secret"},
		},
	}
	for name, c := range cases {
		t.Run(name, func(t *testing.T) {
			res, err := rp.Run(ctx, replay.Request{Modules: c.modules, Since: "1h"})
			if err != nil {
				t.Fatal(err)
			}
			if res.Evaluated != len(requests) || res.Skipped != 1 {
				t.Errorf("evaluated %d, skipped %d; want %d, 1", res.Evaluated, res.Skipped, len(requests))
			}
			var got []flip
			a2d, d2a := 0, 0
			for _, ch := range res.Changed {
				got = append(got, flip{ch.RequestID, ch.OldDecision, ch.NewDecision, ch.NewReason})
				if ch.OldDecision == "allow" {
					a2d++
				} else {
					d2a++
				}
				if ch.Subject != "alice" || ch.ClientID != "client-1" || ch.Server != "bi" || ch.Method == "" {
					t.Errorf("change without its who and what: %+v", ch)
				}
				if ch.RequestID == "secret" && !reflect.DeepEqual(ch.Redacted, c.redacted) {
					t.Errorf("secret: redacted %v, want %v", ch.Redacted, c.redacted)
				}
			}
			if !slices.Equal(got, c.want) {
				t.Errorf("changed:\n got %v\nwant %v", got, c.want)
			}
			if res.AllowToDeny != a2d || res.DenyToAllow != d2a {
				t.Errorf("counts %d/%d, want %d/%d", res.AllowToDeny, res.DenyToAllow, a2d, d2a)
			}
		})
	}
}
