package policy

import (
	"context"
	"fmt"
	"reflect"
	"testing"
)

func visibleCaller(t testing.TB, groups ...string) *Caller {
	t.Helper()
	c, err := NewCaller(Subject{Sub: "alice", Groups: groups}, Client{ID: "c1", Kind: ClientUser},
		Server{Name: "bi"}, Grant{ID: "g1", Servers: []string{"bi"}}, Credential{})
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func listItems() []Item {
	return []Item{
		{Method: "tools/call", Name: "run_sql"},
		{Method: "tools/call", Name: "drop_table"},
		{Method: "tools/call", Name: "export", Tool: ToolState{Pinned: true, Changed: true}},
		{Method: "prompts/get", Name: "summary"},
		{Method: "resources/read", Resource: "file:///public/a.txt"},
		{Method: "resources/read", Resource: "file:///secret/b.txt"},
	}
}

// Without a visible rule the call decision decides, with no arguments:
// a call the policy allows is shown, one it denies is not, one it denies
// naming scopes (step-up) is shown, since the caller can still make it.
func TestVisibleFallsBackToTheCallDecision(t *testing.T) {
	dir := t.TempDir()
	writeFiles(t, dir, map[string]string{"p.rego": `package warden.authz
default decision := {"allow": false}
decision := {"allow": true} if input.mcp.tool == "run_sql"
decision := {"allow": false, "scopes": ["bi:admin"]} if input.mcp.tool == "drop_table"
decision := {"allow": true} if { input.mcp.tool == "export"; not input.tool.changed }
decision := {"allow": true} if input.mcp.prompt == "summary"
decision := {"allow": true} if startswith(input.mcp.resource, "file:///public/")
`})
	e := newTestEngine(t, dir)
	for round := range 2 { // the second round is answered from the memo
		got, err := e.Visible(context.Background(), &Input{Version: InputVersion, Caller: visibleCaller(t)}, listItems())
		if err != nil {
			t.Fatal(err)
		}
		if want := []bool{true, true, false, true, true, false}; !reflect.DeepEqual(got, want) {
			t.Fatalf("round %d: visible = %v, want %v", round, got, want)
		}
	}
}

// A visible rule, when defined, decides alone; undefined is hidden. It
// sees each item as its call and the tool's pinning state.
func TestVisibleRule(t *testing.T) {
	dir := t.TempDir()
	writeFiles(t, dir, map[string]string{"p.rego": `package warden.authz
default allow := false
visible if { input.mcp.method == "tools/call"; "admins" in input.subject.groups }
visible if { input.mcp.method == "tools/call"; input.mcp.tool == "run_sql" }
visible if { input.mcp.method == "resources/read"; input.mcp.resource == "file:///secret/b.txt" }
visible := false if input.tool.changed
`})
	e := newTestEngine(t, dir)
	got, err := e.Visible(context.Background(), &Input{Version: InputVersion, Caller: visibleCaller(t)}, listItems())
	if err != nil {
		t.Fatal(err)
	}
	if want := []bool{true, false, false, false, false, true}; !reflect.DeepEqual(got, want) {
		t.Fatalf("visible = %v, want %v", got, want)
	}
	got, err = e.Visible(context.Background(), &Input{Version: InputVersion, Caller: visibleCaller(t, "admins")}, listItems()[:2])
	if err != nil {
		t.Fatal(err)
	}
	if want := []bool{true, true}; !reflect.DeepEqual(got, want) {
		t.Fatalf("admin: visible = %v, want %v", got, want)
	}
}

// A visible rule that is not a boolean, or conflicts, fails the whole
// list: nothing is shown on an error.
func TestVisibleErrorsFailTheList(t *testing.T) {
	for name, rule := range map[string]string{
		"not boolean": `visible := "yes"`,
		"conflict":    "visible := true if input.mcp.tool == \"a\"\nvisible := false if input.mcp.tool == \"a\"",
	} {
		t.Run(name, func(t *testing.T) {
			dir := t.TempDir()
			writeFiles(t, dir, map[string]string{"p.rego": "package warden.authz\nallow := true\n" + rule + "\n"})
			e := newTestEngine(t, dir)
			got, err := e.Visible(context.Background(), &Input{Version: InputVersion, Caller: visibleCaller(t)}, []Item{{Method: "tools/call", Name: "a"}})
			if err == nil || got != nil {
				t.Fatalf("Visible = %v, %v; want an error and no answer", got, err)
			}
		})
	}
}

// input.tool reaches the call decision too, and the memo keys on it: the
// same call of a tool whose definition changed is decided anew.
func TestToolStateInDecisionAndMemo(t *testing.T) {
	dir := t.TempDir()
	writeFiles(t, dir, map[string]string{"p.rego": `package warden.authz
default allow := false
allow if { input.tool.pinned; not input.tool.changed }
`})
	e := newTestEngine(t, dir)
	if !e.Status().Memoized {
		t.Fatalf("a policy reading input.tool should be memoizable: %s", e.Status().NotMemoizedBecause)
	}
	caller := visibleCaller(t)
	for _, c := range []struct {
		st   ToolState
		want bool
	}{{ToolState{Pinned: true}, true}, {ToolState{Pinned: true, Changed: true}, false}, {ToolState{}, false}, {ToolState{Pinned: true}, true}} {
		in := memoInput(t, caller, "run_sql", `{}`)
		in.Tool = c.st
		d, err := e.Decide(context.Background(), in)
		if err != nil {
			t.Fatal(err)
		}
		if d.Allow != c.want {
			t.Errorf("tool %+v: allow = %v, want %v", c.st, d.Allow, c.want)
		}
	}
}

func fiftyTools() []Item {
	items := make([]Item, 50)
	for i := range items {
		items[i] = Item{Method: "tools/call", Name: fmt.Sprintf("tool_%02d", i), Tool: ToolState{Pinned: true}}
	}
	return items
}

// BenchmarkVisible50 is the policy's share of filtering one 50-tool
// tools/list: "memo" is a repeated list (the usual case), "cold" a
// policy that cannot be memoized (it reads input.request).
func BenchmarkVisible50(b *testing.B) {
	for _, p := range []struct{ name, extra string }{
		{"memo", ""},
		{"cold", "\nallow if input.request.method == \"NEVER\"\n"},
	} {
		b.Run(p.name, func(b *testing.B) {
			dir := b.TempDir()
			writeFiles(&testing.T{}, dir, map[string]string{"p.rego": `package warden.authz
default allow := false
allow if { input.mcp.method == "tools/call"; "staff" in input.subject.groups; not endswith(input.mcp.tool, "7") }
` + p.extra})
			e, err := New(Options{Dir: dir})
			if err != nil {
				b.Fatal(err)
			}
			caller := visibleCaller(b, "staff")
			items := fiftyTools()
			b.ReportAllocs()
			b.ResetTimer()
			for b.Loop() {
				out, err := e.Visible(context.Background(), &Input{Version: InputVersion, Caller: caller}, items)
				if err != nil || out[7] || !out[0] {
					b.Fatalf("%v %v", out, err)
				}
			}
		})
	}
}
