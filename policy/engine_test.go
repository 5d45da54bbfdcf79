package policy

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
)

// writeFiles creates files (name -> content) under dir, making directories.
func writeFiles(t *testing.T, dir string, files map[string]string) {
	t.Helper()
	for name, content := range files {
		p := filepath.Join(dir, filepath.FromSlash(name))
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

type testEngine struct {
	*Engine
	reg  *prometheus.Registry
	logs *lockedWriter
}

func newTestEngine(t *testing.T, dir string) testEngine {
	t.Helper()
	te, err := tryEngine(dir)
	if err != nil {
		t.Fatal(err)
	}
	return te
}

func tryEngine(dir string) (testEngine, error) {
	reg := prometheus.NewRegistry()
	logs := &lockedWriter{}
	e, err := New(Options{
		Dir:        dir,
		Logger:     slog.New(slog.NewTextHandler(logs, nil)),
		Registerer: reg,
		Debounce:   50 * time.Millisecond,
	})
	return testEngine{Engine: e, reg: reg, logs: logs}, err
}

// lockedWriter collects log output written from several goroutines.
type lockedWriter struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedWriter) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// toolCall is a minimal allowed-by-default tools/call.
func toolCall() *Input {
	return &Input{
		Version: InputVersion,
		Subject: Subject{Sub: "alice", Groups: []string{"finance"}},
		Client:  Client{ID: "c1", Kind: ClientUser},
		Server:  Server{Name: "bi"},
		MCP:     MCP{Kind: KindRequest, Method: "tools/call", ID: float64(1), Tool: "run_sql", Arguments: map[string]any{"query": "select 1"}},
		Grant:   Grant{ID: "g1", Servers: []string{"bi"}},
	}
}

func TestDecisionShapes(t *testing.T) {
	tests := []struct {
		name    string
		rego    string
		want    Decision // Revision not compared
		wantErr string   // substring; empty means no error
	}{
		{
			name: "object with reason",
			rego: `decision := {"allow": true, "reason": "fine"}`,
			want: Decision{Allow: true, Reason: "fine"},
		},
		{
			name: "object deny with reason",
			rego: `decision := {"allow": false, "reason": "no SQL on Sundays"}`,
			want: Decision{Allow: false, Reason: "no SQL on Sundays"},
		},
		{
			name: "object allow without reason",
			rego: `decision := {"allow": true}`,
			want: Decision{Allow: true, Reason: "allowed"},
		},
		{
			name: "object deny without reason",
			rego: `decision := {"allow": false}`,
			want: Decision{Allow: false, Reason: "denied by policy"},
		},
		{
			name: "object with extra fields",
			rego: `decision := {"allow": true, "reason": "ok", "ticket": 42}`,
			want: Decision{Allow: true, Reason: "ok"},
		},
		{
			name: "object reading input",
			rego: `decision := {"allow": input.mcp.tool == "run_sql", "reason": input.subject.sub}`,
			want: Decision{Allow: true, Reason: "alice"},
		},
		{
			name: "boolean allow true",
			rego: `allow if input.subject.sub == "alice"`,
			want: Decision{Allow: true, Reason: "allowed"},
		},
		{
			name: "boolean allow false by default",
			rego: "default allow := false\nallow if input.subject.sub == \"bob\"",
			want: Decision{Allow: false, Reason: "denied by policy"},
		},
		{
			name: "decision undefined falls back to allow",
			rego: "decision := {\"allow\": false} if input.subject.sub == \"bob\"\nallow := true",
			want: Decision{Allow: true, Reason: "allowed"},
		},
		{
			name: "decision takes precedence over allow",
			rego: "decision := {\"allow\": false, \"reason\": \"d\"}\nallow := true",
			want: Decision{Allow: false, Reason: "d"},
		},
		{
			name: "both undefined",
			rego: "decision := {\"allow\": true} if input.subject.sub == \"bob\"\nallow if input.subject.sub == \"bob\"",
			want: Decision{Allow: false, Reason: "no decision"},
		},
		{
			name: "decision undefined and no allow rule",
			rego: `decision := {"allow": true} if input.subject.sub == "bob"`,
			want: Decision{Allow: false, Reason: "no decision"},
		},
		{
			name:    "decision is a boolean",
			rego:    `decision := true`,
			wantErr: "is boolean, want an object",
		},
		{
			name:    "decision without allow",
			rego:    `decision := {"reason": "x"}`,
			wantErr: "has no allow field",
		},
		{
			name:    "decision allow not boolean",
			rego:    `decision := {"allow": "yes"}`,
			wantErr: "allow is string, want a boolean",
		},
		{
			name:    "decision reason not string",
			rego:    `decision := {"allow": true, "reason": 1}`,
			wantErr: "reason is number, want a string",
		},
		{
			name:    "allow not boolean",
			rego:    `allow := "yes"`,
			wantErr: "allow is string, want a boolean",
		},
		{
			name:    "conflicting values",
			rego:    "decision := {\"allow\": true} if input.subject.sub == \"alice\"\ndecision := {\"allow\": false} if input.client.id == \"c1\"",
			wantErr: "eval_conflict_error",
		},
		{
			name:    "built-in error fails instead of undefined",
			rego:    "decision := {\"allow\": true} if not denied\ndenied if regex.match(input.subject.sub, \"x\")\ndenied if json.unmarshal(input.mcp.arguments.query)",
			wantErr: "json.unmarshal",
		},
		{
			name: "step-up: the scopes a denied call needs",
			rego: `decision := {"allow": false, "reason": "needs hr:write", "scopes": ["hr:write", "hr:read", "hr:write"]}`,
			want: Decision{Allow: false, Reason: "needs hr:write", Scopes: []string{"hr:read", "hr:write"}},
		},
		{
			name: "step-up scopes as a set",
			rego: `decision := {"allow": false, "scopes": {"b", "a"}}`,
			want: Decision{Allow: false, Reason: "denied by policy", Scopes: []string{"a", "b"}},
		},
		{
			name:    "scopes not a list",
			rego:    `decision := {"allow": false, "scopes": "hr:write"}`,
			wantErr: "scopes is string, want an array",
		},
		{
			name:    "a scope that is not a scope token",
			rego:    `decision := {"allow": false, "scopes": ["hr write"]}`,
			wantErr: "want scope tokens",
		},
		{
			name:    "multiple values of a partial rule",
			rego:    `decision contains {"allow": true}`,
			wantErr: "is set, want an object",
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			writeFiles(t, dir, map[string]string{"authz.rego": "package warden.authz\n\n" + tc.rego + "\n"})
			e := newTestEngine(t, dir)
			got, err := e.Decide(context.Background(), toolCall())
			if got.Revision != e.Revision() || !strings.HasPrefix(got.Revision, "sha256:") {
				t.Errorf("revision %q, engine at %q", got.Revision, e.Revision())
			}
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("error %v, want one containing %q (decision %+v)", err, tc.wantErr, got)
				}
				if got.Allow {
					t.Fatal("an error must never come with an allow")
				}
				if n := value(t, e.m.evalErrors); n != 1 {
					t.Errorf("eval errors metric %v, want 1", n)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			got.Revision = ""
			if !reflect.DeepEqual(got, tc.want) {
				t.Fatalf("decision %+v, want %+v", got, tc.want)
			}
		})
	}
}

func TestDecideBadInput(t *testing.T) {
	e := newTestEngine(t, "")
	if _, err := e.Decide(context.Background(), nil); err == nil {
		t.Fatal("nil input decided")
	}
	in := toolCall()
	in.MCP.Arguments = map[string]any{"f": func() {}}
	d, err := e.Decide(context.Background(), in)
	if err == nil || !strings.Contains(err.Error(), "mcp.arguments: f: unsupported type") || d.Allow {
		t.Fatalf("got %+v, %v", d, err)
	}
	in = toolCall()
	in.MCP.ID = []int{1}
	if _, err := e.Decide(context.Background(), in); err == nil || !strings.Contains(err.Error(), "mcp.id") {
		t.Fatalf("bad id: %v", err)
	}
	in = toolCall()
	in.Subject.Claims = map[string]any{"n": struct{}{}}
	if _, err := e.Decide(context.Background(), in); err == nil || !strings.Contains(err.Error(), "subject.claims") {
		t.Fatalf("bad claims: %v", err)
	}
	if n := value(t, e.m.evalErrors); n != 4 {
		t.Errorf("eval errors metric %v, want 4", n)
	}
}

func TestDecideContext(t *testing.T) {
	dir := t.TempDir()
	// Enough work that a short deadline ends it first.
	writeFiles(t, dir, map[string]string{"authz.rego": `package warden.authz

r := numbers.range(1, 5000)

# 25 million steps, finding nothing: seconds of work, little memory.
decision := {"allow": count({1 | some i in r; some j in r; i * j == -1}) == 0}
`})
	e := newTestEngine(t, dir)

	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := e.Decide(ctx, toolCall()); !errors.Is(err, context.Canceled) {
		t.Fatalf("cancelled context: %v", err)
	}

	ctx, cancel = context.WithTimeout(context.Background(), 20*time.Millisecond)
	defer cancel()
	d, err := e.Decide(ctx, toolCall())
	if !errors.Is(err, context.DeadlineExceeded) || d.Allow {
		t.Fatalf("deadline: %+v, %v", d, err)
	}
}

func TestNewFailsWithFileAndLine(t *testing.T) {
	tests := []struct {
		name  string
		files map[string]string
		want  []string
	}{
		{
			name:  "parse error",
			files: map[string]string{"authz.rego": "package warden.authz\n\ndecision := {\"allow\": true\n"},
			want:  []string{"authz.rego:4", "rego_parse_error"},
		},
		{
			name: "compile error in one of two files",
			files: map[string]string{
				"a.rego": "package warden.authz\n\nallow := true\n",
				"b.rego": "package warden.authz\n\ndecision := {\"allow\": x}\n",
			},
			want: []string{"1 error(s)", "b.rego:3", "var x is unsafe"},
		},
		{
			name:  "unknown built-in",
			files: map[string]string{"authz.rego": "package warden.authz\n\nallow if no_such_fn(1)\n"},
			want:  []string{"authz.rego:3", "undefined function no_such_fn"},
		},
		{
			name:  "wrong package",
			files: map[string]string{"authz.rego": "package wardn.authz\n\nallow := true\n"},
			want:  []string{"defines neither data.warden.authz.decision nor data.warden.authz.allow"},
		},
		{
			name:  "empty directory",
			files: map[string]string{"README.md": "policies go here"},
			want:  []string{"defines neither"},
		},
		{
			name: "data conflicts with a rule",
			files: map[string]string{
				"authz.rego": "package warden.authz\n\nallow := true\n",
				"data.json":  `{"warden": {"authz": {"allow": false}}}`,
			},
			want: []string{"conflict"},
		},
		{
			name:  "bad JSON data",
			files: map[string]string{"authz.rego": "package warden.authz\n\nallow := true\n", "data.json": `{"a": `},
			want:  []string{"data.json"},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			writeFiles(t, dir, tc.files)
			e, err := tryEngine(dir)
			if err == nil {
				t.Fatalf("New succeeded at %s", e.Revision())
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error does not mention %q:\n%v", w, err)
				}
			}
		})
	}
	if _, err := tryEngine(filepath.Join(t.TempDir(), "missing")); err == nil {
		t.Error("missing directory accepted")
	}
	file := filepath.Join(t.TempDir(), "authz.rego")
	writeFiles(t, filepath.Dir(file), map[string]string{"authz.rego": "package warden.authz\n\nallow := true\n"})
	if _, err := tryEngine(file); err == nil || !strings.Contains(err.Error(), "not a directory") {
		t.Errorf("a file as policy dir: %v", err)
	}
}

func TestReloadKeepsLastGood(t *testing.T) {
	dir := t.TempDir()
	v1 := "package warden.authz\n\ndecision := {\"allow\": true, \"reason\": \"v1\"}\n"
	writeFiles(t, dir, map[string]string{"authz.rego": v1})
	now := time.Date(2025, 6, 1, 12, 0, 0, 0, time.UTC)
	e := newTestEngine(t, dir)
	e.now = func() time.Time { return now }
	rev1 := e.Revision()
	ctx := context.Background()

	// Unchanged files: nothing swapped, still ok.
	if err := e.Reload(); err != nil {
		t.Fatal(err)
	}
	if e.Revision() != rev1 {
		t.Fatal("revision changed without a change")
	}

	// A broken edit is refused; v1 keeps deciding.
	writeFiles(t, dir, map[string]string{"authz.rego": "package warden.authz\n\ndecision := {\"allow\": tru\n"})
	now = now.Add(time.Minute)
	err := e.Reload()
	if err == nil || !strings.Contains(err.Error(), "authz.rego:4") {
		t.Fatalf("reload error %v, want one naming authz.rego:4", err)
	}
	if e.Revision() != rev1 {
		t.Fatal("a broken policy replaced the last good one")
	}
	d, err := e.Decide(ctx, toolCall())
	if err != nil || d.Reason != "v1" || d.Revision != rev1 {
		t.Fatalf("after failed reload: %+v, %v", d, err)
	}
	st := e.Status()
	if st.Revision != rev1 || !strings.Contains(st.LastError, "authz.rego:4") || !st.LastErrorAt.Equal(now) || st.Source != dir {
		t.Fatalf("status %+v", st)
	}
	// The files are those of the revision in use.
	if len(st.Files) != 1 || st.Files[0] != "authz.rego" {
		t.Fatalf("status files %v", st.Files)
	}
	if value(t, e.m.reloads.WithLabelValues("failed")) != 1 || value(t, e.m.stale) != 1 {
		t.Error("failed reload not counted")
	}
	if !strings.Contains(e.logs.String(), "keeping the last good policy") {
		t.Error("failed reload not logged")
	}

	// A policy that compiles but defines no decision is refused too.
	writeFiles(t, dir, map[string]string{"authz.rego": "package something.else\n\nallow := true\n"})
	if err := e.Reload(); err == nil || e.Revision() != rev1 {
		t.Fatalf("policy without decision accepted: %v", err)
	}

	// A good edit replaces it and clears the error.
	writeFiles(t, dir, map[string]string{"authz.rego": strings.ReplaceAll(v1, "v1", "v2")})
	now = now.Add(time.Minute)
	if err := e.Reload(); err != nil {
		t.Fatal(err)
	}
	if e.Revision() == rev1 {
		t.Fatal("revision did not change")
	}
	d, err = e.Decide(ctx, toolCall())
	if err != nil || d.Reason != "v2" || d.Revision != e.Revision() {
		t.Fatalf("after reload: %+v, %v", d, err)
	}
	st = e.Status()
	if st.LastError != "" || !st.LastErrorAt.IsZero() || !st.LoadedAt.Equal(now) {
		t.Fatalf("status after good reload %+v", st)
	}
	if value(t, e.m.reloads.WithLabelValues("ok")) != 3 || value(t, e.m.stale) != 0 {
		t.Error("good reloads not counted")
	}

	// Reverting to v1 gives v1's revision again: it is a content hash.
	writeFiles(t, dir, map[string]string{"authz.rego": v1})
	if err := e.Reload(); err != nil || e.Revision() != rev1 {
		t.Fatalf("revert: %v, revision %s want %s", err, e.Revision(), rev1)
	}
}

func TestRevisionCoversDataAndIgnoresNonPolicyFiles(t *testing.T) {
	dir := t.TempDir()
	writeFiles(t, dir, map[string]string{
		"authz.rego":          "package warden.authz\n\nallow if input.subject.sub in data.users\n",
		"data.json":           `{"users": ["alice"]}`,
		"README.md":           "notes",
		"authz_test.rego":     "package warden.authz_test\n\ntest_x if true\n",
		".authz.rego.swp":     "garbage",
		".hidden/broken.rego": "this is not rego",
	})
	e := newTestEngine(t, dir)
	rev := e.Revision()
	if d, err := e.Decide(context.Background(), toolCall()); err != nil || !d.Allow {
		t.Fatalf("%+v, %v", d, err)
	}

	// Non-policy files, tests and hidden files do not change the revision,
	// and a broken test file does not break the policy.
	writeFiles(t, dir, map[string]string{
		"README.md":       "more notes",
		"authz_test.rego": "this is not rego",
		".hidden/x.rego":  "nor this",
	})
	if err := e.Reload(); err != nil || e.Revision() != rev {
		t.Fatalf("reload %v, revision %s want %s", err, e.Revision(), rev)
	}

	// Data changes do.
	writeFiles(t, dir, map[string]string{"data.json": `{"users": ["bob"]}`})
	if err := e.Reload(); err != nil || e.Revision() == rev {
		t.Fatalf("reload %v, revision unchanged", err)
	}
	if d, err := e.Decide(context.Background(), toolCall()); err != nil || d.Allow {
		t.Fatalf("data change not applied: %+v, %v", d, err)
	}
}

func TestDataFiles(t *testing.T) {
	dir := t.TempDir()
	writeFiles(t, dir, map[string]string{
		"authz.rego": `package warden.authz

decision := {"allow": allowed, "reason": sprintf("%v/%v/%v", [data.limits.max, data.teams.finance.lead, data.teams.hr.lead])}

allowed if input.subject.sub == data.teams.finance.lead
`,
		"data.json":         `{"limits": {"max": 3}}`,
		"teams/data.yaml":   "finance:\n  lead: alice\n",
		"teams/hr/data.yml": "lead: carol\n",
	})
	e := newTestEngine(t, dir)
	d, err := e.Decide(context.Background(), toolCall())
	if err != nil {
		t.Fatal(err)
	}
	if !d.Allow || d.Reason != "3/alice/carol" {
		t.Fatalf("decision %+v", d)
	}
}

func TestDefaultPolicy(t *testing.T) {
	e := newTestEngine(t, "")
	st := e.Status()
	if st.Source != "embedded default policy" || st.Revision == "" || st.LoadedAt.IsZero() {
		t.Fatalf("status %+v", st)
	}
	if err := e.Reload(); err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	tests := []struct {
		name   string
		modify func(*Input)
		want   Decision
	}{
		{"tools/call on a granted server", func(*Input) {}, Decision{Allow: true, Reason: "allowed: the grant covers this server"}},
		{"notification", func(in *Input) { in.MCP = MCP{Kind: KindNotification, Method: "notifications/initialized"} }, Decision{Allow: true, Reason: "allowed: the grant covers this server"}},
		{"stream", func(in *Input) { in.MCP = MCP{Kind: KindStream}; in.Request.Method = "GET" }, Decision{Allow: true, Reason: "allowed: the grant covers this server"}},
		{"session end", func(in *Input) { in.MCP = MCP{Kind: KindSessionEnd}; in.Request.Method = "DELETE" }, Decision{Allow: true, Reason: "allowed: the grant covers this server"}},
		{"server outside grant", func(in *Input) { in.Server.Name = "hr" }, Decision{Allow: false, Reason: `the grant does not cover server "hr"`}},
		{"grant without servers", func(in *Input) { in.Grant.Servers = nil }, Decision{Allow: false, Reason: `the grant does not cover server "bi"`}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			in := toolCall()
			tc.modify(in)
			got, err := e.Decide(ctx, in)
			if err != nil {
				t.Fatal(err)
			}
			if got.Revision != st.Revision {
				t.Errorf("revision %q want %q", got.Revision, st.Revision)
			}
			got.Revision = ""
			if !reflect.DeepEqual(got, tc.want) {
				t.Fatalf("got %+v want %+v", got, tc.want)
			}
		})
	}

	// The default ships with passing tests.
	var out bytes.Buffer
	passed, failed, err := RunTests(ctx, "default", &out, false)
	if err != nil || failed != 0 || passed < 5 {
		t.Fatalf("default policy tests: passed %d failed %d err %v\n%s", passed, failed, err, out.String())
	}
}

func TestDecideDuringReloads(t *testing.T) {
	dir := t.TempDir()
	policy := func(n string) map[string]string {
		return map[string]string{"authz.rego": "package warden.authz\n\ndecision := {\"allow\": true, \"reason\": \"" + n + "\"}\n"}
	}
	writeFiles(t, dir, policy("a"))
	e := newTestEngine(t, dir)
	revs := map[string]string{e.Revision(): "a"}
	var mu sync.Mutex

	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	errs := make(chan error, 8)
	for range 4 {
		wg.Go(func() {
			for ctx.Err() == nil {
				d, err := e.Decide(context.Background(), toolCall())
				if err != nil {
					errs <- err
					return
				}
				mu.Lock()
				want, ok := revs[d.Revision]
				mu.Unlock()
				// A decision must come from the revision it names.
				if ok && want != d.Reason {
					errs <- errors.New("decision " + d.Reason + " reported under revision of " + want)
					return
				}
			}
		})
	}
	for i := range 20 {
		n := string(rune('a' + i%3))
		writeFiles(t, dir, policy(n))
		if err := e.Reload(); err != nil {
			t.Fatal(err)
		}
		mu.Lock()
		revs[e.Revision()] = n
		mu.Unlock()
		if i%5 == 0 {
			writeFiles(t, dir, map[string]string{"authz.rego": "package warden.authz\n\ndecision := {"})
			if err := e.Reload(); err == nil {
				t.Fatal("broken policy accepted")
			}
		}
	}
	cancel()
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
}

func TestMetricsRegistered(t *testing.T) {
	e := newTestEngine(t, "")
	if _, err := e.Decide(context.Background(), toolCall()); err != nil {
		t.Fatal(err)
	}
	mfs, err := e.reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]int{}
	for _, mf := range mfs {
		got[mf.GetName()] = len(mf.GetMetric())
	}
	want := map[string]int{
		"warden_policy_reloads_total":         2, // ok and failed exist from the start
		"warden_policy_stale":                 1,
		"warden_policy_eval_errors_total":     1,
		"warden_policy_eval_duration_seconds": 1,
	}
	for name, n := range want {
		if got[name] != n {
			t.Errorf("%s: %d series, want %d (have %v)", name, got[name], n, got)
		}
	}
	var m dto.Metric
	if err := e.m.evalTime.Write(&m); err != nil || m.GetHistogram().GetSampleCount() != 1 {
		t.Errorf("histogram %v, %v", m.GetHistogram(), err)
	}
	// A second engine on the same registry is a clear error, not a panic.
	if _, err := New(Options{Registerer: e.reg}); err == nil || !strings.Contains(err.Error(), "register") {
		t.Fatalf("duplicate registration: %v", err)
	}
}

// value reads a counter or gauge.
func value(t *testing.T, m prometheus.Metric) float64 {
	t.Helper()
	var d dto.Metric
	if err := m.Write(&d); err != nil {
		t.Fatal(err)
	}
	switch {
	case d.Counter != nil:
		return d.Counter.GetValue()
	case d.Gauge != nil:
		return d.Gauge.GetValue()
	}
	t.Fatalf("not a counter or gauge: %v", &d)
	return 0
}
