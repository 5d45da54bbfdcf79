package policy

import (
	"context"
	"encoding/json"
	"strings"
	"testing"

	"github.com/open-policy-agent/opa/v1/ast"
	"github.com/prometheus/client_golang/prometheus/testutil"
)

func TestMemoizableClassification(t *testing.T) {
	const head = "package warden.authz\n\nimport rego.v1\n\n"
	cases := []struct {
		name, rule string
		ok         bool
		why        string
	}{
		{"tool by group", `allow if { input.mcp.tool == "echo"; "finance" in input.subject.groups }`, true, ""},
		{"arguments", `allow if not contains(input.mcp.arguments.query, "DROP")`, true, ""},
		{"server labels", `allow if input.server.labels.team == "data"`, true, ""},
		{"request headers", `allow if input.request.headers["user-agent"] == "x"`, false, "input.request"},
		{"request time", `allow if time.parse_rfc3339_ns(input.request.time) > 0`, false, "input.request"},
		{"jsonrpc id", `allow if input.mcp.id == 1`, false, "input.mcp.id"},
		{"whole input", `allow if count(input) > 0`, false, "as a whole"},
		{"whole mcp", `allow if count(input.mcp) > 0`, false, "input.mcp as a whole"},
		{"dynamic top field", `allow if { some k; input[k].x == 1 }`, false, "chosen at evaluation time"},
		{"dynamic mcp field", `allow if { some k; input.mcp[k] == 1 }`, false, "chosen at evaluation time"},
		{"clock", `allow if time.now_ns() > 0`, false, "time.now_ns"},
		{"random", `allow if rand.intn("x", 10) >= 0`, false, "rand.intn"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			dir := t.TempDir()
			writeFiles(t, dir, map[string]string{"p.rego": head + c.rule + "\n"})
			e := newTestEngine(t, dir)
			st := e.Status()
			if st.Memoized != c.ok || !strings.Contains(st.NotMemoizedBecause, c.why) {
				t.Fatalf("memoized=%v (%q), want %v (%q)", st.Memoized, st.NotMemoizedBecause, c.ok, c.why)
			}
		})
	}
	if e := newTestEngine(t, ""); !e.Status().Memoized {
		t.Fatalf("the default policy should be memoizable: %s", e.Status().NotMemoizedBecause)
	}
}

func memoInput(t *testing.T, caller *Caller, tool, args string) *Input {
	t.Helper()
	in := &Input{Version: InputVersion, Caller: caller, MCP: MCP{Kind: KindRequest, Method: "tools/call", ID: json.Number("1"), Tool: tool}}
	if args != "" {
		if err := json.Unmarshal([]byte(args), &in.MCP.Arguments); err != nil {
			t.Fatal(err)
		}
		in.MCP.ArgumentsJSON = []byte(args)
	}
	return in
}

func TestMemoReusesOnlyIdenticalMessages(t *testing.T) {
	dir := t.TempDir()
	writeFiles(t, dir, map[string]string{"p.rego": `package warden.authz

import rego.v1

decision := {"allow": false, "reason": "no DROP"} if {
	input.mcp.tool == "run_sql"
	contains(upper(input.mcp.arguments.query), "DROP")
} else := {"allow": true, "reason": "ok"} if "finance" in input.subject.groups
else := {"allow": false, "reason": "not finance"}
`})
	e := newTestEngine(t, dir)
	ctx := context.Background()
	alice, _ := NewCaller(Subject{Sub: "alice", Groups: []string{"finance"}}, Client{ID: "c"}, Server{Name: "bi"}, Grant{ID: "g1"}, Credential{})
	bob, _ := NewCaller(Subject{Sub: "bob"}, Client{ID: "c"}, Server{Name: "bi"}, Grant{ID: "g2"}, Credential{})
	hits := func() float64 { return testutil.ToFloat64(e.m.memoHits) }
	steps := []struct {
		caller *Caller
		tool   string
		args   string
		allow  bool
		hit    bool
	}{
		{alice, "run_sql", `{"query":"select 1"}`, true, false},
		{alice, "run_sql", `{"query":"select 1"}`, true, true},
		{alice, "run_sql", `{"query":"drop table t"}`, false, false},
		{alice, "run_sql", `{"query":"drop table t"}`, false, true},
		{bob, "run_sql", `{"query":"select 1"}`, false, false},
		{alice, "echo", "", true, false},
		{alice, "echo", "", true, true},
	}
	for i, s := range steps {
		before := hits()
		d, err := e.Decide(ctx, memoInput(t, s.caller, s.tool, s.args))
		if err != nil {
			t.Fatal(err)
		}
		if d.Allow != s.allow || (hits() > before) != s.hit || d.Revision == "" {
			t.Fatalf("step %d: allow=%v hit=%v rev=%q, want allow=%v hit=%v", i, d.Allow, hits() > before, d.Revision, s.allow, s.hit)
		}
	}
	// Arguments without their raw JSON are never looked up.
	in := memoInput(t, alice, "run_sql", `{"query":"select 1"}`)
	in.MCP.ArgumentsJSON = nil
	before := hits()
	if _, err := e.Decide(ctx, in); err != nil || hits() != before {
		t.Fatalf("memo used without raw arguments: %v", err)
	}
}

// A policy that reads per-request fields is evaluated every time: two
// messages that differ only in a header get their own decisions.
func TestUnmemoizablePolicyIsEvaluatedEveryTime(t *testing.T) {
	dir := t.TempDir()
	writeFiles(t, dir, map[string]string{"p.rego": "package warden.authz\n\nimport rego.v1\n\nallow if input.request.headers[\"x-team\"] == \"data\"\n"})
	e := newTestEngine(t, dir)
	caller, _ := NewCaller(Subject{Sub: "alice"}, Client{ID: "c"}, Server{Name: "bi"}, Grant{ID: "g"}, Credential{})
	for _, team := range []string{"data", "hr", "data"} {
		in := memoInput(t, caller, "echo", "")
		in.Request.Headers = map[string]string{"x-team": team}
		d, err := e.Decide(context.Background(), in)
		if err != nil || d.Allow != (team == "data") {
			t.Fatalf("team %s: %+v %v", team, d, err)
		}
	}
	if testutil.ToFloat64(e.m.memoHits) != 0 {
		t.Fatal("an unmemoizable policy hit the memo")
	}
}

// The memo keys on mcp fields by their document names; every field the
// document has (but the id) must be known to it, or a policy reading a
// new field would be memoized without that field in the key.
func TestMemoKnowsEveryMCPField(t *testing.T) {
	v, err := (&Input{Version: InputVersion}).Value()
	if err != nil {
		t.Fatal(err)
	}
	doc, err := ast.JSON(v)
	if err != nil {
		t.Fatal(err)
	}
	mcp := doc.(map[string]any)["mcp"].(map[string]any)
	for k := range mcp {
		if _, ok := mcpFieldBits[k]; !ok && k != "id" && k != "traceparent" {
			t.Errorf("input.mcp.%s is not known to the decision memo", k)
		}
	}
	if len(mcp) != len(mcpFieldBits)+2 {
		t.Errorf("memo knows %d fields, the document has %d (with id and traceparent)", len(mcpFieldBits), len(mcp))
	}
}

func TestMemoKeysOnlyOnReferencedFields(t *testing.T) {
	dir := t.TempDir()
	writeFiles(t, dir, map[string]string{"p.rego": "package warden.authz\n\nimport rego.v1\n\nallow if input.mcp.tool == \"echo\"\n"})
	e := newTestEngine(t, dir)
	caller, _ := NewCaller(Subject{Sub: "alice"}, Client{ID: "c"}, Server{Name: "bi"}, Grant{ID: "g"}, Credential{})
	ctx := context.Background()
	for i, args := range []string{`{"n":1}`, `{"n":2}`, `{"n":3}`} {
		d, err := e.Decide(ctx, memoInput(t, caller, "echo", args))
		if err != nil || !d.Allow {
			t.Fatal(d, err)
		}
		if hits := testutil.ToFloat64(e.m.memoHits); hits != float64(i) {
			t.Fatalf("call %d: %v hits; a policy that never reads arguments must reuse the decision", i, hits)
		}
	}
	if d, _ := e.Decide(ctx, memoInput(t, caller, "rm", `{"n":1}`)); d.Allow {
		t.Fatal("another tool reused echo's decision")
	}
	dir2 := t.TempDir()
	writeFiles(t, dir2, map[string]string{"p.rego": "package warden.authz\n\nimport rego.v1\n\nallow if input.mcp.future_field == 1\n"})
	if st := newTestEngine(t, dir2).Status(); st.Memoized || !strings.Contains(st.NotMemoizedBecause, "future_field") {
		t.Fatalf("unknown mcp field: %+v", st)
	}
}

// Needs tells what a caller may leave out of the input: exactly what no
// reference of the policy can reach.
func TestNeeds(t *testing.T) {
	const head = "package warden.authz\n\nimport rego.v1\n\n"
	cases := []struct {
		name, rule string
		want       Needs
	}{
		{"tool by group", `allow if { input.mcp.tool == "echo"; "finance" in input.subject.groups }`, Needs{}},
		{"arguments", `allow if not contains(input.mcp.arguments.query, "DROP")`, Needs{Arguments: true}},
		{"request headers", `allow if input.request.headers["user-agent"] == "x"`, Needs{Request: true}},
		{"jsonrpc id", `allow if input.mcp.id == 1`, Needs{ID: true}},
		{"whole mcp", `allow if count(input.mcp) > 0`, Needs{ID: true, Arguments: true}},
		{"dynamic mcp field", `allow if { some k; input.mcp[k] == 1 }`, Needs{ID: true, Arguments: true}},
		{"whole input", `allow if count(input) > 0`, allNeeds},
		{"dynamic top field", `allow if { some k; input[k].x == 1 }`, allNeeds},
		{"input in a function", `allow if f(input)` + "\n\nf(x) if x.mcp.tool == \"a\"", allNeeds},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			dir := t.TempDir()
			writeFiles(t, dir, map[string]string{"p.rego": head + c.rule + "\n"})
			e := newTestEngine(t, dir)
			if got := e.Needs(); got != c.want {
				t.Fatalf("needs %+v, want %+v", got, c.want)
			}
		})
	}
}

// A reload between choosing what to omit and deciding must not decide on
// an input without a part the new policy reads: it fails closed.
func TestOmittedPartThePolicyReadsFails(t *testing.T) {
	dir := t.TempDir()
	writeFiles(t, dir, map[string]string{"p.rego": "package warden.authz\n\nimport rego.v1\n\nallow if not contains(input.mcp.arguments.q, \"DROP\")\n"})
	e := newTestEngine(t, dir)
	in := &Input{MCP: MCP{Method: "tools/call", Tool: "x", Arguments: map[string]any{"q": "select 1"}}, Omitted: Needs{Arguments: true}}
	if _, err := e.Decide(context.Background(), in); err == nil || !strings.Contains(err.Error(), "omits") {
		t.Fatalf("decided on an input without the arguments it reads: %v", err)
	}
	in.Omitted = Needs{Request: true, ID: true}
	if d, err := e.Decide(context.Background(), in); err != nil || !d.Allow {
		t.Fatalf("parts it does not read were omitted: %+v %v", d, err)
	}
}
