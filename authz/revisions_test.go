package authz_test

import (
	"context"
	"encoding/json"
	"log/slog"
	"path/filepath"
	"strings"
	"testing"

	"github.com/warden-mcp/warden/authz"
	"github.com/warden-mcp/warden/internal/mcptask"
	"github.com/warden-mcp/warden/internal/registry"
	"github.com/warden-mcp/warden/internal/store"
	"github.com/warden-mcp/warden/policy"
)

// call is one MCP request as a client of either revision sends it.
type call struct {
	method string
	params string // JSON object members, without braces
	name   string // the Mcp-Name value for 2026-07-28 ("" when none)
}

// asRevision builds the Check of c as a 2025-11-25 client (after
// initialize: a session, the version header) or as a 2026-07-28 one
// (_meta, Mcp-Method, Mcp-Name).
func (c call) asRevision(token, server, version string, id int) req {
	params := c.params
	h := map[string]string{"mcp-protocol-version": version}
	if version == "2026-07-28" {
		if params != "" {
			params += ","
		}
		params += modernMeta
		h["mcp-method"] = c.method
		if c.name != "" {
			h["mcp-name"] = c.name
		}
	} else {
		h["mcp-session-id"] = "s-1"
	}
	body := `{"jsonrpc":"2.0","id":` + strings.Repeat("1", id%5+1) + `,"method":"` + c.method + `","params":{` + params + `}}`
	return req{token: token, server: server, body: body, headers: h}
}

// A policy written against input.mcp.method and input.mcp.tool (the worked
// examples of docs/policy.md, unchanged) decides a 2026-07-28 request as
// it decides the same request from a 2025-11-25 client.
func TestExamplePoliciesDecideBothRevisionsAlike(t *testing.T) {
	type expect struct {
		call
		allow bool
	}
	examples := []struct {
		dir    string
		token  tokenSpec
		server string
		calls  []expect
	}{
		{"group-tools", tokenSpec{groups: []string{"analysts"}}, "bi", []expect{
			{call{"tools/call", `"name":"get_report","arguments":{"id":7}`, "get_report"}, true},
			{call{"tools/call", `"name":"run_sql","arguments":{"query":"select 1"}`, "run_sql"}, false},
			{call{"tools/list", ``, ""}, true},
		}},
		{"sql-guard", tokenSpec{}, "bi", []expect{
			{call{"tools/call", `"name":"run_sql","arguments":{"query":"select * from sales"}`, "run_sql"}, true},
			{call{"tools/call", `"name":"run_sql","arguments":{"query":"DROP TABLE sales"}`, "run_sql"}, false},
		}},
		{"team-resources", tokenSpec{claims: map[string]any{"team": "finance"}}, "bi", []expect{
			{call{"resources/read", `"uri":"file:///teams/finance/q3.csv"`, "file:///teams/finance/q3.csv"}, true},
			{call{"resources/read", `"uri":"file:///teams/hr/salaries.csv"`, "file:///teams/hr/salaries.csv"}, false},
			{call{"prompts/get", `"name":"summary"`, "summary"}, true},
		}},
		{"service-clients", tokenSpec{subject: "reporting-bot", client: "reporting-bot", clientKind: store.KindService}, "bi", []expect{
			{call{"tools/call", `"name":"list_reports","arguments":{}`, "list_reports"}, true},
			{call{"tools/call", `"name":"run_sql","arguments":{}`, "run_sql"}, false},
			{call{"resources/read", `"uri":"file:///x"`, "file:///x"}, false},
		}},
	}
	for _, ex := range examples {
		t.Run(ex.dir, func(t *testing.T) {
			e := exampleEnv(t, ex.dir)
			ex.token.servers = []string{ex.server}
			tok, _ := e.mint(ex.token)
			for i, c := range ex.calls {
				for _, v := range []string{"2025-11-25", "2026-07-28"} {
					resp := e.check(c.asRevision(tok, ex.server, v, i))
					if got := resp.GetOkResponse() != nil; got != c.allow {
						t.Errorf("%s %s as %s: allowed %v, want %v (%v)", c.method, c.params, v, got, c.allow, resp.GetDeniedResponse().GetBody())
					}
				}
			}
		})
	}
}

// The 2026-07-28 forms of what 2025 clients did otherwise meet the same
// rules: a task is decided as the tools/call that created it, and a
// subscriptions/listen resource as the resources/subscribe it replaces.
func TestExamplePoliciesCoverTheNewMethods(t *testing.T) {
	ctx := context.Background()
	var tasks *mcptask.Store
	e := exampleEnv(t, "group-tools", func(o *authz.Options) {
		tasks = mcptask.New(o.Resolver.(mcptask.Sessions), mcptask.Options{})
		o.Tasks = tasks
	})
	tok, _ := e.mint(tokenSpec{servers: []string{"bi"}, groups: []string{"analysts"}})
	for id, tool := range map[string]string{"t-report": "get_report", "t-sql": "run_sql"} {
		if _, err := tasks.RecordResult(ctx, mcptask.Origin{Server: "bi", Subject: "alice", ClientID: "client-1", Tool: tool, Arguments: json.RawMessage(`{}`)},
			json.RawMessage(`{"resultType":"task","taskId":"`+id+`"}`)); err != nil {
			t.Fatal(err)
		}
	}
	get := func(id string) req {
		return call{"tasks/get", `"taskId":"` + id + `"`, id}.asRevision(tok, "bi", "2026-07-28", 1)
	}
	if resp := e.check(get("t-report")); resp.GetOkResponse() == nil {
		t.Errorf("tasks/get of an allowed tool's task: %v", resp)
	}
	resp := e.check(get("t-sql"))
	if d := resp.GetDeniedResponse(); d == nil || !strings.Contains(d.GetBody(), `tool \"run_sql\" on server \"bi\" is not allowed for your groups`) {
		t.Errorf("tasks/get of a refused tool's task: %v", resp)
	}

	tr := exampleEnv(t, "team-resources")
	ttok, _ := tr.mint(tokenSpec{servers: []string{"bi"}, claims: map[string]any{"team": "finance"}})
	listen := func(uri string) req {
		return call{"subscriptions/listen", `"notifications":{"resourceSubscriptions":["` + uri + `"]}`, ""}.asRevision(ttok, "bi", "2026-07-28", 2)
	}
	subscribe := func(uri string) req {
		return call{"resources/subscribe", `"uri":"` + uri + `"`, ""}.asRevision(ttok, "bi", "2025-11-25", 2)
	}
	for uri, allow := range map[string]bool{"file:///teams/finance/q3.csv": true, "file:///teams/hr/salaries.csv": false} {
		if got := tr.check(listen(uri)).GetOkResponse() != nil; got != allow {
			t.Errorf("subscriptions/listen to %s: allowed %v, want %v", uri, got, allow)
		}
		if got := tr.check(subscribe(uri)).GetOkResponse() != nil; got != allow {
			t.Errorf("resources/subscribe to %s: allowed %v, want %v", uri, got, allow)
		}
	}
}

// exampleEnv is an env whose policy is one of examples/policies.
func exampleEnv(t *testing.T, dir string, opts ...envOption) *env {
	engine, err := policy.New(policy.Options{Dir: filepath.Join("..", "examples", "policies", dir), Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	e := newEnv(t, append([]envOption{func(o *authz.Options) { o.Policy = engine }}, opts...)...)
	e.addServer(registry.Spec{Name: "bi", URL: "http://bi.internal:8080/mcp"})
	return e
}
