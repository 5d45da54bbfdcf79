package console_test

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
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
	"github.com/warden-mcp/warden/test/chrome"
)

// replayDouble stands in for POST /api/v1/policy/replay (round 2,
// contract 4) until the audit replay engine lands: it checks the request
// the console sends and answers in the contract's shape.
type replayDouble struct {
	got   map[string]any
	actor string
}

func (d *replayDouble) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	p, _ := adminauth.FromContext(r.Context())
	d.actor = p.Name
	_ = json.NewDecoder(r.Body).Decode(&d.got)
	w.Header().Set("Content-Type", "application/json")
	_, _ = io.WriteString(w, `{"evaluated": 42, "allow_to_deny": 1, "deny_to_allow": 1, "changed": [
 {"time": "2026-03-01T12:00:00Z", "subject": "alice", "client_id": "claude-desktop", "server": "bi", "method": "tools/call", "tool": "run_sql",
  "old_decision": "allow", "new_decision": "deny", "old_reason": "allowed", "new_reason": "run_sql is for finance only", "request_id": "r1"},
 {"time": "2026-03-01T12:05:00Z", "subject": "bob", "client_id": "cursor", "server": "hr", "method": "tools/call", "tool": "lookup",
  "old_decision": "deny", "new_decision": "allow", "old_reason": "hr is for hr only", "new_reason": "allowed", "request_id": "r2"}]}`)
}

// env is the console over a real admin API (Badger, grants, audit) with
// the static connector's users, and the replay double beside the API.
func env(t *testing.T, withReplay bool) (string, *replayDouble) {
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
		}})
	mux := http.NewServeMux()
	d := &replayDouble{}
	if withReplay {
		mux.Handle("POST /api/v1/policy/replay", d)
	}
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
	return base, d
}

type password struct{ c *connector.Static }

func (p password) Login(ctx context.Context, u, pw string) (adminauth.Identity, error) {
	id, err := p.c.Login(ctx, u, pw)
	return adminauth.Identity{Subject: id.Subject, Email: id.Email, Name: id.Name, Groups: id.Groups}, err
}

const candidate = `package warden.authz

decision := {"allow": false, "reason": "run_sql is for finance only"} if input.mcp.tool == "run_sql"
`

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

func TestWhatIfAgainstTheReplayContract(t *testing.T) {
	base, d := env(t, true)
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
	if err != nil || !strings.Contains(summary, "42 decisions evaluated") || !strings.Contains(summary, "1 allow → deny") {
		t.Fatalf("summary %q %v", summary, err)
	}
	changed, _ := chromedp.Run(ctx, chromedp.Text(chromedp.CSS("#changed")))
	if !strings.Contains(changed, "run_sql is for finance only") || !strings.Contains(changed, "bob") {
		t.Fatalf("changed decisions: %q", changed)
	}
	// The request follows the contract, made as the signed-in user.
	mods, _ := d.got["modules"].(map[string]any)
	if d.actor != "user:carol" || mods["candidate.rego"] != candidate || d.got["since"] != "24h" || d.got["server"] != "bi" || d.got["limit"] != float64(1000) {
		t.Fatalf("replay request %v by %q", d.got, d.actor)
	}
	files, _ := chromedp.Run(ctx, chromedp.Text(chromedp.CSS("#policy")))
	if !strings.Contains(files, "tools.rego") || !strings.Contains(files, "sha256:0123456789abcdef") {
		t.Fatalf("policy status: %q", files)
	}
	if os.Getenv("WARDEN_CONSOLE_SCREENSHOTS") != "" {
		png, err := chromedp.Run(ctx, chromedp.CaptureScreenshot())
		if err != nil {
			t.Fatal(err)
		}
		_ = os.WriteFile(filepath.Join("..", "..", "docs", "console", "policy-whatif.png"), png, 0o644)
	}
}

func TestWhatIfWithoutReplayEngine(t *testing.T) {
	base, _ := env(t, false)
	ctx := signInStatic(t, base)
	if err := chromedp.Do(ctx,
		chromedp.Navigate(base+"/ui/policy"),
		chromedp.SetValue(chromedp.CSS(`#whatif textarea[name="source"]`), candidate),
		chromedp.Submit(chromedp.CSS("#whatif")),
		chromedp.WaitVisible(chromedp.CSS("#whatif-unavailable")),
	); err != nil {
		t.Fatal(err)
	}
}

// The static sign-in form is protected too (login CSRF), and a wrong
// password is refused without a session.
func TestStaticSignInForm(t *testing.T) {
	base, _ := env(t, false)
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
