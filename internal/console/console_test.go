package console_test

import (
	"context"
	"net/http"
	"net/http/httptest"
	"net/url"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	"golang.org/x/crypto/bcrypt"

	"github.com/warden-mcp/warden/internal/admin"
	"github.com/warden-mcp/warden/internal/adminauth"
	"github.com/warden-mcp/warden/internal/audit"
	"github.com/warden-mcp/warden/internal/console"
	"github.com/warden-mcp/warden/internal/grant"
	"github.com/warden-mcp/warden/internal/registry"
	"github.com/warden-mcp/warden/internal/seal"
	"github.com/warden-mcp/warden/internal/store"
	"github.com/warden-mcp/warden/oauth/connector"
	"github.com/warden-mcp/warden/policy"
	"github.com/warden-mcp/warden/policy/replay"
	"github.com/warden-mcp/warden/test/chrome"
)

// env is the console over a real admin API (Badger, grants, audit, policy
// replay) with the static connector's users.
func env(t *testing.T) (string, *audit.Trail) {
	ctx := context.Background()
	st, err := store.OpenBadger(t.TempDir(), store.BadgerOptions{})
	if err != nil {
		t.Fatal(err)
	}
	trail, _ := audit.Open(ctx, st, audit.Options{})
	t.Cleanup(func() { _ = trail.Close(ctx); _ = st.Close() })
	key, _ := seal.Generate()
	ring, _ := seal.New("k", map[string][]byte{"k": key})
	grants, _ := grant.New(grant.Options{Store: st, Audit: trail})
	api := admin.New(admin.Options{Store: st, Registry: registry.New(st, trail, ring, nil), Grants: grants, Audit: trail,
		ResourceURL: func(s string) string { return "https://mcp.example.com/mcp/" + s },
		PolicyStatus: func() any {
			return map[string]any{"revision": "sha256:0123456789abcdef", "source": "/etc/warden/policy", "files": []string{"authz.rego", "tools.rego"}, "loaded_at": time.Now()}
		},
		Replay: replay.New(replay.Options{Store: st})})
	mux := http.NewServeMux()
	mux.Handle("/", api)
	hash, _ := bcrypt.GenerateFromPassword([]byte("correct horse"), bcrypt.MinCost)
	srv := httptest.NewUnstartedServer(nil)
	base := "http://" + srv.Listener.Addr().String()
	ui, err := console.New(console.Options{
		API: mux, Sessions: st, Audit: trail, PublicURL: base, Connector: "static",
		Password: password{connector.NewStatic([]connector.StaticUser{{Username: "carol", Email: "carol@example.com", Name: "Carol", Groups: []string{"security"}, PasswordHash: string(hash)}})},
		Bindings: adminauth.Bindings{{Role: adminauth.RoleAuditor, Groups: []string{"security"}}},
	})
	if err != nil {
		t.Fatal(err)
	}
	srv.Config.Handler = ui
	srv.Start()
	t.Cleanup(srv.Close)
	return base, trail
}

type password struct{ c *connector.Static }

func (p password) Login(ctx context.Context, u, pw string) (adminauth.Identity, error) {
	id, err := p.c.Login(ctx, u, pw)
	return adminauth.Identity{Subject: id.Subject, Email: id.Email, Name: id.Name, Groups: id.Groups}, err
}

const candidate = `package warden.authz

default decision := {"allow": true, "reason": "allowed"}

decision := {"allow": false, "reason": "run_sql is for finance only"} if input.mcp.tool == "run_sql"
`

// decided records a decision event with its input, as authz does.
func decided(t *testing.T, trail *audit.Trail, id, sub, server, tool, decision, reason string) {
	t.Helper()
	in := policy.Input{Version: policy.InputVersion, Subject: policy.Subject{Sub: sub}, Client: policy.Client{ID: "claude-desktop", Kind: policy.ClientUser},
		Server: policy.Server{Name: server}, Grant: policy.Grant{Servers: []string{server}},
		MCP: policy.MCP{Kind: policy.KindRequest, Method: "tools/call", Tool: tool, ArgumentsJSON: []byte(`{"sql":"select 1"}`)}}
	rec, _, err := in.AppendRecord([]byte("["), nil)
	if err != nil {
		t.Fatal(err)
	}
	ev := store.AuditEvent{Time: time.Now(), Type: "decision", RequestID: id, Subject: sub, ClientID: "claude-desktop", Server: server,
		Method: "tools/call", Tool: tool, Decision: decision, Reason: reason, Input: append(rec, ']')}
	if err := trail.RecordSync(context.Background(), ev); err != nil {
		t.Fatal(err)
	}
}

func signInStatic(t *testing.T, base string) context.Context {
	ctx := chrome.New(t, 2*time.Minute)
	if err := chromedp.Do(ctx,
		chromedp.Navigate(base+"/ui/policy"),
		chromedp.WaitVisible(chromedp.CSS("#login")),
		chromedp.SetValue(chromedp.CSS("#username"), "carol"),
		chromedp.SetValue(chromedp.CSS("#password"), "correct horse"),
		chromedp.Submit(chromedp.CSS("#login")),
		chromedp.WaitVisible(chromedp.CSS("#matrix")),
	); err != nil {
		t.Fatalf("static sign-in: %v", err)
	}
	return ctx
}

// The what-if runs the real replay over recorded decisions, as the
// signed-in auditor, and lists exactly the decisions the candidate flips.
func TestWhatIfListsTheFlippedDecisions(t *testing.T) {
	base, trail := env(t)
	decided(t, trail, "r1", "alice", "bi", "run_sql", "allow", "allowed")
	decided(t, trail, "r2", "bob", "bi", "lookup", "deny", "lookup is for hr only")
	decided(t, trail, "r3", "carol", "bi", "echo", "allow", "allowed")   // unchanged
	decided(t, trail, "r4", "dave", "hr", "run_sql", "allow", "allowed") // another server
	ctx := signInStatic(t, base)
	if err := chromedp.Do(ctx,
		chromedp.Navigate(base+"/ui/policy"),
		chromedp.WaitVisible(chromedp.CSS("#whatif")),
		chromedp.SetValue(chromedp.CSS(`#whatif textarea[name="source"]`), candidate),
		chromedp.SetValue(chromedp.CSS(`#whatif input[name="server"]`), "bi"),
		chromedp.Submit(chromedp.CSS("#whatif")),
		chromedp.WaitVisible(chromedp.CSS("#whatif-summary")),
	); err != nil {
		t.Fatal(err)
	}
	summary, err := chromedp.Run(ctx, chromedp.Text(chromedp.CSS("#whatif-summary")))
	if err != nil || !strings.Contains(summary, "3 decisions evaluated: 1 allow → deny, 1 deny → allow.") {
		t.Fatalf("summary %q %v", summary, err)
	}
	got, err := chromedp.Run(ctx, chromedp.Evaluate[[]string](`[...document.querySelectorAll("#changed tbody tr")].map(r => [...r.cells].slice(1).map(c => c.innerText.replace(/\s+/g, " ").trim()).join("|"))`))
	if err != nil {
		t.Fatal(err)
	}
	want := []string{
		"alice|claude-desktop|bi|tools/call|run_sql|allow allowed|deny run_sql is for finance only",
		"bob|claude-desktop|bi|tools/call|lookup|deny lookup is for hr only|allow allowed",
	}
	if !slices.Equal(got, want) {
		t.Fatalf("changed rows:\n%s\nwant\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	files, _ := chromedp.Run(ctx, chromedp.Text(chromedp.CSS("#policy")))
	if !strings.Contains(files, "tools.rego") || !strings.Contains(files, "sha256:0123456789abcdef") {
		t.Fatalf("policy status: %q", files)
	}
}

// A candidate that does not compile is shown with the compiler's message.
func TestWhatIfShowsTheCompileError(t *testing.T) {
	base, _ := env(t)
	ctx := signInStatic(t, base)
	if err := chromedp.Do(ctx,
		chromedp.Navigate(base+"/ui/policy"),
		chromedp.SetValue(chromedp.CSS(`#whatif textarea[name="source"]`), "package warden.authz\n\ndecision := {\n"),
		chromedp.Submit(chromedp.CSS("#whatif")),
		chromedp.WaitVisible(chromedp.CSS("#whatif-error")),
	); err != nil {
		t.Fatal(err)
	}
	msg, _ := chromedp.Run(ctx, chromedp.Text(chromedp.CSS("#whatif-error")))
	if !strings.Contains(msg, "candidate.rego:") {
		t.Fatalf("error shown: %q", msg)
	}
}

// The static sign-in form is protected too (login CSRF), and a wrong
// password is refused without a session.
func TestStaticSignInForm(t *testing.T) {
	base, _ := env(t)
	noRedirect := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	resp, err := noRedirect.PostForm(base+"/ui/login", url.Values{"username": {"carol"}, "password": {"correct horse"}})
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusForbidden || len(resp.Cookies()) != 0 {
		t.Fatalf("login post without the form's token: %d %v", resp.StatusCode, resp.Cookies())
	}
	// Unauthenticated pages send to the sign-in page; posts are refused.
	resp, _ = noRedirect.Get(base + "/ui/audit")
	resp.Body.Close()
	if resp.StatusCode != http.StatusSeeOther || resp.Header.Get("Location") != "/ui/login" {
		t.Fatalf("audit without a session: %d %v", resp.StatusCode, resp.Header)
	}
	resp, _ = noRedirect.PostForm(base+"/ui/revoke", url.Values{"target": {"user"}, "value": {"x"}})
	resp.Body.Close()
	if resp.StatusCode != http.StatusUnauthorized {
		t.Fatalf("revoke without a session: %d", resp.StatusCode)
	}
	ctx := chrome.New(t, time.Minute)
	if err := chromedp.Do(ctx,
		chromedp.Navigate(base+"/ui/login"),
		chromedp.SetValue(chromedp.CSS("#username"), "carol"),
		chromedp.SetValue(chromedp.CSS("#password"), "wrong"),
		chromedp.Submit(chromedp.CSS("#login")),
		chromedp.WaitVisible(chromedp.CSS("#error")),
	); err != nil {
		t.Fatal(err)
	}
}
