package policy

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"testing"

	"github.com/open-policy-agent/opa/v1/ast"
	"github.com/open-policy-agent/opa/v1/rego"
)

const examplesDir = "../examples/policies"

func exampleDirs(t *testing.T) []string {
	t.Helper()
	dirs, err := filepath.Glob(filepath.Join(examplesDir, "*"))
	if err != nil || len(dirs) < 4 {
		t.Fatalf("examples: %v %v", dirs, err)
	}
	return dirs
}

// Every example's own Rego tests pass, the way `warden policy test <dir>`
// runs them.
func TestExamplesRegoTests(t *testing.T) {
	for _, dir := range append(exampleDirs(t), "default") {
		t.Run(filepath.Base(dir), func(t *testing.T) {
			var out bytes.Buffer
			passed, failed, err := RunTests(context.Background(), dir, &out, false)
			if err != nil || failed != 0 || passed < 5 {
				t.Fatalf("passed %d failed %d err %v\n%s", passed, failed, err, out.String())
			}
		})
	}
}

// Each example is a complete policy directory: the unchanged default plus
// its own rules. The copies must not drift from the embedded default.
func TestExamplesShipTheDefaultPolicy(t *testing.T) {
	want, err := os.ReadFile("default/default.rego")
	if err != nil {
		t.Fatal(err)
	}
	for _, dir := range exampleDirs(t) {
		got, err := os.ReadFile(filepath.Join(dir, "default.rego"))
		if err != nil || !bytes.Equal(got, want) {
			t.Errorf("%s/default.rego differs from policy/default/default.rego (%v)", dir, err)
		}
	}
}

type exampleCase struct {
	name   string
	modify func(*Input)
	allow  bool
	reason string // checked when not empty
}

// The worked examples, driven through the real Input struct: the Rego tests
// build input documents by hand, these prove the engine's documents have
// the fields those tests assume.
var exampleCases = map[string][]exampleCase{
	"group-tools": {
		{"finance runs SQL", func(in *Input) { in.Subject.Groups = []string{"staff", "finance"} }, true, ""},
		{"analyst runs SQL", func(in *Input) { in.Subject.Groups = []string{"analysts"} }, false,
			`tool "run_sql" on server "bi" is not allowed for your groups`},
		{"analyst lists reports", func(in *Input) {
			in.Subject.Groups = []string{"analysts"}
			in.MCP.Tool = "list_reports"
		}, true, ""},
		{"no groups", func(in *Input) { in.Subject.Groups = nil }, false, ""},
		{"tools/list is not a call", func(in *Input) {
			in.Subject.Groups = nil
			in.MCP.Method, in.MCP.Tool = "tools/list", ""
		}, true, ""},
		{"unlisted server", func(in *Input) {
			in.Subject.Groups = nil
			in.Server.Name = "wiki"
			in.Grant.Servers = []string{"wiki"}
		}, true, ""},
		{"grant does not cover the server", func(in *Input) { in.Server.Name = "legal" }, false,
			`the grant does not cover server "legal"`},
	},
	"sql-guard": {
		{"select", func(*Input) {}, true, ""},
		{"drop", func(in *Input) { in.MCP.Arguments["query"] = "SELECT 1;\n  drop TABLE users" }, false,
			`tool "run_sql" does not allow DROP statements`},
		{"delete behind a comment", func(in *Input) { in.MCP.Arguments["query"] = "/* cleanup */DELETE/**/FROM users" }, false,
			`tool "run_sql" does not allow DELETE statements`},
		{"deleted_at column", func(in *Input) { in.MCP.Arguments["query"] = "select * from t where deleted_at is null" }, true, ""},
		{"query not a string", func(in *Input) { in.MCP.Arguments["query"] = []any{"DROP TABLE x"} }, false,
			`tool "run_sql" needs the SQL text in string argument "query"`},
		{"query missing", func(in *Input) { in.MCP.Arguments = nil }, false, ""},
		{"other tool", func(in *Input) {
			in.MCP.Tool = "search"
			in.MCP.Arguments = map[string]any{"q": "drop"}
		}, true, ""},
	},
	"team-resources": {
		{"own team by claim", func(in *Input) { readResource(in, "file:///teams/finance/q3.csv") }, true, ""},
		{"own team by group", func(in *Input) {
			readResource(in, "file:///teams/hr/people.csv")
			in.Subject.Claims = nil
			in.Subject.Groups = []string{"team-hr"}
		}, true, ""},
		{"other team", func(in *Input) { readResource(in, "file:///teams/hr/people.csv") }, false,
			`resource "file:///teams/hr/people.csv" is outside your team's directory`},
		{"traversal", func(in *Input) { readResource(in, "file:///teams/finance/../hr/people.csv") }, false, ""},
		{"encoded traversal", func(in *Input) { readResource(in, "file:///teams/finance/%2e%2e/hr/people.csv") }, false, ""},
		{"subscribe", func(in *Input) {
			readResource(in, "file:///teams/hr/people.csv")
			in.MCP.Method = "resources/subscribe"
		}, false, ""},
		{"no team", func(in *Input) {
			readResource(in, "file:///teams/finance/q3.csv")
			in.Subject.Claims = nil
		}, false, ""},
		{"tools unaffected", func(in *Input) { in.Subject.Claims = nil }, true, ""},
	},
	"service-clients": {
		{"user unaffected", func(*Input) {}, true, ""},
		{"service calls listed tool", func(in *Input) { asService(in, "reporting-bot", "get_report") }, true, ""},
		{"service calls unlisted tool", func(in *Input) { asService(in, "reporting-bot", "run_sql") }, false,
			`service client "reporting-bot" may not call tool "run_sql" on server "bi"`},
		{"unknown service", func(in *Input) { asService(in, "stranger", "get_report") }, false, ""},
		{"service initializes", func(in *Input) {
			asService(in, "stranger", "")
			in.MCP.Method = "initialize"
		}, true, ""},
		{"service reads a resource", func(in *Input) {
			asService(in, "reporting-bot", "")
			readResource(in, "file:///x")
		}, false, `service client "reporting-bot" may not use resources/read`},
		{"service opens the stream", func(in *Input) {
			asService(in, "reporting-bot", "")
			in.MCP = MCP{Kind: KindStream}
		}, true, ""},
	},
}

// exampleInput is a tools/call of run_sql on "bi" by a finance user.
func exampleInput() *Input {
	return &Input{
		Version: InputVersion,
		Subject: Subject{Sub: "alice", Email: "alice@example.com", Groups: []string{"finance"},
			Claims: map[string]any{"team": "finance"}},
		Client:  Client{ID: "claude", Name: "Claude", Kind: ClientUser},
		Server:  Server{Name: "bi", Labels: map[string]string{"env": "prod"}},
		MCP:     MCP{Kind: KindRequest, Method: "tools/call", ID: float64(1), Tool: "run_sql", Arguments: map[string]any{"query": "select 1"}},
		Request: Request{ID: "r1", Method: "POST", Path: "/mcp/bi", Host: "warden.example.com", Time: "2025-06-01T12:00:00Z"},
		Grant:   Grant{ID: "g1", Scopes: []string{"mcp"}, Servers: []string{"bi"}},
	}
}

func readResource(in *Input, uri string) {
	in.MCP.Method, in.MCP.Tool, in.MCP.Arguments, in.MCP.Resource = "resources/read", "", nil, uri
}

func asService(in *Input, id, tool string) {
	in.Client = Client{ID: id, Kind: ClientService}
	in.Subject = Subject{Sub: id}
	in.MCP.Tool = tool
}

func TestWorkedExamples(t *testing.T) {
	for name, cases := range exampleCases {
		e := newTestEngine(t, filepath.Join(examplesDir, name))
		for _, tc := range cases {
			t.Run(name+"/"+tc.name, func(t *testing.T) {
				in := exampleInput()
				tc.modify(in)
				d, err := e.Decide(context.Background(), in)
				if err != nil {
					t.Fatal(err)
				}
				if d.Allow != tc.allow || (tc.reason != "" && d.Reason != tc.reason) {
					t.Fatalf("got %+v, want allow=%v reason %q", d, tc.allow, tc.reason)
				}
			})
		}
	}
}

// The engine drives OPA's evaluator directly, with its own virtual cache;
// rego.PreparedEvalQuery is OPA's documented path. Both must agree on every
// worked example and on the decision shapes.
func TestEngineMatchesRego(t *testing.T) {
	ctx := context.Background()
	for name, cases := range exampleCases {
		e := newTestEngine(t, filepath.Join(examplesDir, name))
		c := e.cur.Load()
		pq, err := rego.New(rego.Query(DecisionPath), rego.Compiler(c.compiler), rego.Store(c.store),
			rego.StrictBuiltinErrors(true)).PrepareForEval(ctx)
		if err != nil {
			t.Fatal(err)
		}
		for _, tc := range cases {
			in := exampleInput()
			tc.modify(in)
			v, err := in.Value()
			if err != nil {
				t.Fatal(err)
			}
			rs, err := pq.Eval(ctx, rego.EvalParsedInput(v))
			if err != nil || len(rs) != 1 {
				t.Fatalf("%s/%s: rego: %v %v", name, tc.name, rs, err)
			}
			want, err := ast.InterfaceToValue(rs[0].Expressions[0].Value)
			if err != nil {
				t.Fatal(err)
			}
			got, err := c.eval(ctx, c.decision, ast.NewTerm(v), neverCancelled)
			if err != nil {
				t.Fatal(err)
			}
			if got.Value.Compare(want) != 0 {
				t.Errorf("%s/%s: engine %v, rego %v", name, tc.name, got, want)
			}
		}
	}
}
