// Package console tests Warden's web console end to end: warden serve (the
// binary), the real oidc-provider, a real headless Chromium driven by
// chromedp, and real ext_authz Checks over gRPC.
package console

import (
	"context"
	"encoding/csv"
	"io"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/cdproto/network"
	"github.com/chromedp/chromedp"

	"github.com/warden-mcp/warden/internal/console"
	"github.com/warden-mcp/warden/test/chrome"
	"github.com/warden-mcp/warden/test/idp"
)

// do runs steps in the browser, failing the test on error.
func do(t *testing.T, ctx context.Context, what string, steps ...chromedp.Action[chromedp.Void]) {
	t.Helper()
	if err := chromedp.Do(ctx, steps...); err != nil {
		// Say where the browser got to: a step waiting for an element
		// that never comes only times out.
		sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
		defer cancel()
		loc, _ := chromedp.Run(sctx, chromedp.Location())
		body, _ := chromedp.Run(sctx, chromedp.Evaluate[string](`document.body ? document.body.innerText : ""`))
		t.Fatalf("%s: %v\nthe browser is at %s showing:\n%s", what, err, loc, tail(body, 2000))
	}
}

// waitURL waits until the page's URL contains want: after a form is
// submitted, the old page is still there for a moment, and a query on it
// would find its elements.
func waitURL(t *testing.T, ctx context.Context, want string) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		loc, err := chromedp.Run(ctx, chromedp.Location())
		if err == nil && strings.Contains(loc, want) {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("the browser never reached a URL with %q (at %s, %v)", want, loc, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// text is the visible text of the first element matching the CSS selector.
func text(t *testing.T, ctx context.Context, sel string) string {
	t.Helper()
	v, err := chromedp.Run(ctx, chromedp.Text(chromedp.CSS(sel)))
	if err != nil {
		t.Fatalf("text of %s: %v", sel, err)
	}
	return v
}

// eval runs a JavaScript expression in the page (the test's, not the
// console's: the console has no script).
func eval[T any](t *testing.T, ctx context.Context, expr string) T {
	t.Helper()
	v, err := chromedp.Run(ctx, chromedp.Evaluate[T](expr))
	if err != nil {
		t.Fatalf("evaluate %s: %v", expr, err)
	}
	return v
}

// shot saves a PNG of the visible page: into docs/console/ when
// WARDEN_CONSOLE_SCREENSHOTS is set (docs/console.md shows them), otherwise
// into the test's temporary directory (so the step still runs).
func shot(t *testing.T, ctx context.Context, name string) {
	t.Helper()
	png, err := chromedp.Run(ctx, chromedp.CaptureScreenshot())
	if err != nil {
		t.Fatalf("screenshot %s: %v", name, err)
	}
	dir := t.TempDir()
	if os.Getenv("WARDEN_CONSOLE_SCREENSHOTS") != "" {
		dir = filepath.Join(idp.TestDir(), "..", "docs", "console")
		_ = os.MkdirAll(dir, 0o755)
	}
	if err := os.WriteFile(filepath.Join(dir, name+".png"), png, 0o644); err != nil {
		t.Fatal(err)
	}
}

// signIn opens the console in a fresh browser and signs sub in at the
// IdP: login page, the IdP's redirect, the console's callback, the access
// page.
func signIn(t *testing.T, h *harness, sub string) context.Context {
	t.Helper()
	ctx := chrome.New(t, 3*time.Minute)
	h.idp.LoginAs(t, sub)
	if err := chromedp.Do(ctx,
		chromedp.Navigate(h.admin+"/ui/"),
		chromedp.WaitVisible(chromedp.CSS("#signin")),
		chromedp.Click(chromedp.CSS("#signin")),
		chromedp.WaitVisible(chromedp.CSS("#matrix")),
	); err != nil {
		t.Fatalf("sign in as %s: %v\n%s", sub, err, h.idp.Stderr())
	}
	return ctx
}

// session returns the browser's console session cookie and its CSRF token.
func session(t *testing.T, ctx context.Context, h *harness) (*network.Cookie, string) {
	t.Helper()
	res, err := chromedp.Call(ctx, network.GetCookies, network.GetCookiesParams{URLs: []string{h.admin + "/ui/"}})
	if err != nil {
		t.Fatal(err)
	}
	csrf, err := chromedp.Run(ctx, chromedp.Value(chromedp.CSS(`input[name="csrf"]`)))
	if err != nil {
		t.Fatal(err)
	}
	cookies := res.Cookies
	for _, c := range cookies {
		if c.Name == "warden_console" {
			return c, csrf
		}
	}
	t.Fatalf("no session cookie among %d cookies", len(cookies))
	return nil, ""
}

// as sends a request with the browser's session cookie (and no Origin,
// like a script outside the browser).
func as(t *testing.T, c *network.Cookie, method, u string, form url.Values, header map[string]string) (*http.Response, string) {
	t.Helper()
	var body io.Reader
	if form != nil {
		body = strings.NewReader(form.Encode())
	}
	req, _ := http.NewRequest(method, u, body)
	if form != nil {
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	}
	for k, v := range header {
		req.Header.Set(k, v)
	}
	req.AddCookie(&http.Cookie{Name: c.Name, Value: c.Value})
	resp, err := (&http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}).Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	return resp, string(raw)
}

func TestConsole(t *testing.T) {
	h := start(t)
	h.cli(t, "servers", "add", "data", "--url", "http://127.0.0.1:1/mcp", "--description", "Company data warehouse", "--label", "team=data")
	h.cli(t, "servers", "add", "hr", "--url", "http://127.0.0.1:2/mcp", "--scope", "hr:read", "--description", "HR records", "--label", "team=hr")
	h.cli(t, "tokens", "create", "--subject", "nightly-report", "--server", "data", "--group", "reporting", "-o", "json")

	// Mallory and Alice get MCP access through the OAuth flow; each makes
	// allowed and denied calls that the audit must show.
	mallory := h.handleFor(t, idp.Mallory, "data")
	alice := h.handleFor(t, idp.Alice, "data")
	for _, c := range []struct {
		token, tool string
		want        int
	}{{mallory, "query", 200}, {mallory, "delete_everything", 403}, {mallory, "query", 200}, {alice, "query", 200}} {
		if got := h.check(t, c.token, "data", c.tool); got != c.want {
			t.Fatalf("Check %s before revocation: %d, want %d", c.tool, got, c.want)
		}
	}

	t.Run("the what-if lists exactly the decisions a policy change flips", func(t *testing.T) {
		// Bob is an auditor: replay changes nothing, so he may run it.
		ctx := signIn(t, h, idp.Bob)
		current, err := os.ReadFile(filepath.Join("testdata", "policy", "console.rego"))
		if err != nil {
			t.Fatal(err)
		}
		// The candidate closes query to Mallory and opens
		// delete_everything to everyone.
		cand := strings.Replace(string(current), `input.mcp.tool == "delete_everything"`, `input.mcp.tool == "query"
	input.subject.sub == "mallory"`, 1)
		cand = strings.Replace(cand, `"delete_everything is never allowed"`, `"query is closed to mallory"`, 1)
		do(t, ctx, "what-if",
			chromedp.Navigate(h.admin+"/ui/policy"),
			chromedp.WaitVisible(chromedp.CSS("#whatif")),
			chromedp.SetValue(chromedp.CSS(`#whatif textarea[name="source"]`), cand),
			chromedp.SetValue(chromedp.CSS(`#whatif input[name="since"]`), "1h"),
			chromedp.Submit(chromedp.CSS("#whatif")),
			chromedp.WaitVisible(chromedp.CSS("#whatif-summary")))
		if s := text(t, ctx, "#whatif-summary"); !strings.Contains(s, "4 decisions evaluated: 2 allow → deny, 1 deny → allow.") {
			t.Fatalf("what-if summary: %q", s)
		}
		rows := eval[[]string](t, ctx, `[...document.querySelectorAll("#changed tbody tr")].map(r => [...r.cells].slice(1).map(c => c.innerText.replace(/\s+/g, " ").trim()).join("|"))`)
		want := []string{
			"mallory|cli|data|tools/call|query|allow allowed|deny query is closed to mallory",
			"mallory|cli|data|tools/call|delete_everything|deny delete_everything is never allowed|allow allowed",
			"mallory|cli|data|tools/call|query|allow allowed|deny query is closed to mallory",
		}
		if strings.Join(rows, "\n") != strings.Join(want, "\n") {
			t.Fatalf("what-if rows:\n%s\nwant\n%s", strings.Join(rows, "\n"), strings.Join(want, "\n"))
		}
		shot(t, ctx, "policy-whatif")
	})

	t.Run("admin revokes a user from the access matrix", func(t *testing.T) {
		ctx := signIn(t, h, idp.Alice)
		role, who := text(t, ctx, "#role"), text(t, ctx, "#whoami")
		if role != "admin" || !strings.Contains(who, "alice@example.com") {
			t.Fatalf("signed in as %q with role %q", who, role)
		}
		shot(t, ctx, "access")

		// The cookie the console set: Strict, HttpOnly (no https here,
		// so neither Secure nor __Host-).
		c, _ := session(t, ctx, h)
		if c.SameSite != network.CookieSameSiteStrict || !c.HTTPOnly || c.Path != "/" {
			t.Fatalf("session cookie %+v", c)
		}

		do(t, ctx, "filter the matrix",
			chromedp.SetValue(chromedp.CSS(`#filter input[name="user"]`), idp.Mallory),
			chromedp.Submit(chromedp.CSS(`#filter`)),
		)
		waitURL(t, ctx, "user=mallory")
		do(t, ctx, "the filtered matrix", chromedp.WaitVisible(chromedp.CSS(`tr[data-subject="mallory"]`)))
		row := text(t, ctx, `tr[data-subject="mallory"]`)
		if !strings.Contains(row, "Console Test CLI") || !strings.Contains(row, "human") || strings.Contains(row, "used never") {
			t.Fatalf("mallory's row: %q", row)
		}
		if n := eval[int](t, ctx, `document.querySelectorAll("tr[data-subject]").length`); n != 1 {
			t.Fatalf("filter by user shows %d rows", n)
		}
		wctx, cancel := context.WithTimeout(ctx, 30*time.Second)
		do(t, wctx, "revoke mallory", chromedp.Click(chromedp.CSS(`button[data-revoke="user:mallory"]`)))
		waitURL(t, wctx, "/ui/revoke")
		do(t, wctx, "the revocation", chromedp.WaitVisible(chromedp.CSS("#revoked")))
		cancel()
		if done := text(t, ctx, "#revoked"); !strings.Contains(done, "Revoked 1 grant") {
			t.Fatalf("revocation said %q", done)
		}
		// Effective on the very next Check, for Mallory only.
		if got := h.check(t, mallory, "data", "query"); got != 401 {
			t.Fatalf("Mallory's handle after revocation: %d, want 401", got)
		}
		if got := h.check(t, alice, "data", "query"); got != 200 {
			t.Fatalf("Alice's handle after Mallory's revocation: %d", got)
		}
		shot(t, ctx, "revoked")

		// The revocation is attributed to the signed-in user.
		out := h.cli(t, "audit", "search", "--type", "grant_revoked", "--json")
		if !strings.Contains(out, `"actor":"user:alice"`) || !strings.Contains(out, `"subject":"mallory"`) || !strings.Contains(out, "revoked in the console") {
			t.Fatalf("grant_revoked events:\n%s", out)
		}

		for _, page := range []struct{ path, ready, name string }{
			{"/ui/servers", "#servers", "servers"},
			{"/ui/policy", "#policy", "policy"},
		} {
			do(t, ctx, page.path, chromedp.Navigate(h.admin+page.path), chromedp.WaitVisible(chromedp.CSS(page.ready)))
			shot(t, ctx, page.name)
		}
		do(t, ctx, "servers", chromedp.Navigate(h.admin+"/ui/servers"), chromedp.WaitVisible(chromedp.CSS("#servers")))
		servers := text(t, ctx, "#servers")
		if !strings.Contains(servers, "hr:read") || !strings.Contains(servers, "team=hr") || !strings.Contains(servers, "published") {
			t.Fatalf("servers page: %q", servers)
		}
		do(t, ctx, "policy", chromedp.Navigate(h.admin+"/ui/policy"), chromedp.WaitVisible(chromedp.CSS("#policy")))
		files := text(t, ctx, "#policy")
		if !strings.Contains(files, "console.rego") || !strings.Contains(files, "sha256:") {
			t.Fatalf("policy page: %q", files)
		}
	})

	t.Run("audit search and CSV export match the events", func(t *testing.T) {
		ctx := signIn(t, h, idp.Alice)
		do(t, ctx, "search the audit trail",
			chromedp.Navigate(h.admin+"/ui/audit"),
			chromedp.WaitVisible(chromedp.CSS("#search")),
			chromedp.SetValue(chromedp.CSS(`#search input[name="user"]`), idp.Mallory),
			chromedp.SetValue(chromedp.CSS(`#search input[name="type"]`), "decision"),
			chromedp.SetValue(chromedp.CSS(`#search input[name="since"]`), "1h"),
			chromedp.Submit(chromedp.CSS("#search")),
		)
		waitURL(t, ctx, "user=mallory")
		do(t, ctx, "search results", chromedp.WaitVisible(chromedp.CSS(`#events tr[data-seq]`)))
		rows := eval[[]string](t, ctx, `[...document.querySelectorAll("#events tr[data-seq]")].map(r => [...r.cells].map(c => c.innerText).join("|"))`)
		shot(t, ctx, "audit")
		// Newest first: the denied call after the revocation, then the
		// three calls before it.
		// A denial before classification (the handle's grant is revoked)
		// has no method or tool.
		want := []string{"deny|401|mallory|cli|data|||grant revoked", "allow|200|mallory|cli|data|tools/call|query|",
			"deny|403|mallory|cli|data|tools/call|delete_everything|delete_everything is never allowed", "allow|200|mallory|cli|data|tools/call|query|"}
		if len(rows) != len(want) {
			t.Fatalf("search rows:\n%s", strings.Join(rows, "\n"))
		}
		for i, r := range rows {
			cells := strings.Split(r, "|")
			got := strings.Join(append([]string{strings.ReplaceAll(cells[3], " ", "|")}, cells[4:]...), "|")
			if !strings.HasPrefix(got, strings.TrimSuffix(want[i], "|")) {
				t.Errorf("row %d: %q, want %q", i, got, want[i])
			}
		}
		// Decision filter narrows it.
		do(t, ctx, "filter by decision",
			chromedp.SetValue(chromedp.CSS(`#search input[name="decision"]`), "deny"),
			chromedp.Submit(chromedp.CSS("#search")))
		waitURL(t, ctx, "decision=deny")
		do(t, ctx, "deny results", chromedp.WaitVisible(chromedp.CSS(`#events`)))
		if denied := eval[int](t, ctx, `document.querySelectorAll("#events tr[data-seq]").length`); denied != 2 {
			t.Fatalf("deny filter: %d rows", denied)
		}
		// The full event on click.
		do(t, ctx, "open an event", chromedp.Click(chromedp.CSS(`#events tr[data-seq] a`)))
		waitURL(t, ctx, "/ui/audit/")
		do(t, ctx, "the event", chromedp.WaitVisible(chromedp.CSS("#raw")))
		raw := text(t, ctx, "#raw")
		if !strings.Contains(raw, `"prev_hash"`) || !strings.Contains(raw, `"subject": "mallory"`) {
			t.Fatalf("event page: %s", raw)
		}
		shot(t, ctx, "event")

		// The export link of the search, fetched with the browser's
		// session: the same events, oldest first.
		c, _ := session(t, ctx, h)
		do(t, ctx, "search again", chromedp.Navigate(h.admin+"/ui/audit?user=mallory&type=decision&since=1h"), chromedp.WaitVisible(chromedp.CSS("#export-csv")))
		link, err := chromedp.Run(ctx, chromedp.AttributeValue(chromedp.CSS("#export-csv"), "href"))
		if err != nil {
			t.Fatal(err)
		}
		href := link.Value
		resp, body := as(t, c, "GET", h.admin+href, nil, nil)
		if resp.StatusCode != 200 || resp.Header.Get("Content-Type") != "text/csv; charset=utf-8" {
			t.Fatalf("export: %d %v\n%s", resp.StatusCode, resp.Header, body)
		}
		recs, err := csv.NewReader(strings.NewReader(body)).ReadAll()
		if err != nil || len(recs) != 5 {
			t.Fatalf("export rows %d %v:\n%s", len(recs), err, body)
		}
		for i, w := range [][2]string{{"allow", "query"}, {"deny", "delete_everything"}, {"allow", "query"}, {"deny", ""}} {
			r := recs[i+1]
			if r[3] != w[0] || r[10] != w[1] || r[5] != "mallory" || r[8] != "data" {
				t.Errorf("export row %d: %v, want %v", i, r, w)
			}
		}
	})

	t.Run("an auditor reads but cannot revoke", func(t *testing.T) {
		ctx := signIn(t, h, idp.Bob)
		role := text(t, ctx, "#role")
		buttons := eval[int](t, ctx, `document.querySelectorAll("button[data-revoke]").length`)
		if role != "auditor" || buttons != 0 {
			t.Fatalf("auditor: role %q, %d revoke buttons", role, buttons)
		}
		if alices := eval[int](t, ctx, `document.querySelectorAll('tr[data-subject="alice"]').length`); alices != 1 {
			t.Fatal("the auditor does not see the access matrix")
		}
		shot(t, ctx, "access-auditor")
		// A well-formed revocation with the auditor's own CSRF token: the
		// API refuses it, and Alice keeps her access.
		c, csrf := session(t, ctx, h)
		resp, body := as(t, c, "POST", h.admin+"/ui/revoke", url.Values{"csrf": {csrf}, "target": {"user"}, "value": {"alice"}}, map[string]string{"Origin": h.admin})
		if resp.StatusCode != http.StatusForbidden || !strings.Contains(body, "auditor") {
			t.Fatalf("auditor revoke through the console: %d\n%s", resp.StatusCode, body)
		}
		// The same with an auditor's admin token on the API.
		req, _ := http.NewRequest("POST", h.admin+"/api/v1/revoke", strings.NewReader(`{"user":"alice"}`))
		req.Header.Set("Authorization", "Bearer "+auditorToken)
		api, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		api.Body.Close()
		if api.StatusCode != http.StatusForbidden {
			t.Fatalf("auditor token revoke: %d", api.StatusCode)
		}
		if got := h.check(t, alice, "data", "query"); got != 200 {
			t.Fatalf("Alice lost access to an auditor: %d", got)
		}
	})

	t.Run("CSRF, Origin and security headers", func(t *testing.T) {
		ctx := signIn(t, h, idp.Alice)
		c, csrf := session(t, ctx, h)
		revokeAlice := url.Values{"target": {"user"}, "value": {"alice"}}
		for _, tc := range []struct {
			name   string
			form   url.Values
			header map[string]string
		}{
			{"no token", revokeAlice, nil},
			{"wrong token", merge(revokeAlice, "csrf", csrf[:len(csrf)-2]+"xx"), nil},
			{"another site", merge(revokeAlice, "csrf", csrf), map[string]string{"Origin": "https://evil.example"}},
		} {
			resp, body := as(t, c, "POST", h.admin+"/ui/revoke", tc.form, tc.header)
			if resp.StatusCode != http.StatusForbidden {
				t.Errorf("%s: %d\n%s", tc.name, resp.StatusCode, body)
			}
		}
		if got := h.check(t, alice, "data", "query"); got != 200 {
			t.Fatalf("a refused form revoked Alice: %d", got)
		}
		// A form with the token goes through (proves the refusals above
		// were about the token).
		resp, body := as(t, c, "POST", h.admin+"/ui/revoke", merge(url.Values{"target": {"client"}, "value": {"service:nightly-report"}}, "csrf", csrf), map[string]string{"Origin": h.admin})
		if resp.StatusCode != 200 || !strings.Contains(body, "Revoked 1 grant") {
			t.Fatalf("valid form: %d\n%s", resp.StatusCode, body)
		}
		for _, path := range []string{"/ui/access", "/ui/audit", "/ui/login"} {
			resp, body := as(t, c, "GET", h.admin+path, nil, nil)
			hd := resp.Header
			if hd.Get("Content-Security-Policy") != console.CSP || hd.Get("X-Frame-Options") != "DENY" || hd.Get("X-Content-Type-Options") != "nosniff" ||
				hd.Get("Cache-Control") != "no-store" || hd.Get("Referrer-Policy") != "same-origin" {
				t.Errorf("%s headers: %v", path, hd)
			}
			if strings.Contains(body, "<script") || strings.Contains(body, " on") && strings.Contains(body, "onclick=") {
				t.Errorf("%s carries script", path)
			}
			for _, secret := range []string{idpSecret, auditorToken, mallory, alice} {
				if strings.Contains(body, secret) {
					t.Errorf("%s renders a secret", path)
				}
			}
		}
		// Signed out, the console sends to the sign-in page.
		resp, _ = as(t, c, "POST", h.admin+"/ui/logout", url.Values{"csrf": {csrf}}, map[string]string{"Origin": h.admin})
		if resp.StatusCode != http.StatusSeeOther {
			t.Fatalf("logout: %d", resp.StatusCode)
		}
		if resp, _ := as(t, c, "GET", h.admin+"/ui/access", nil, nil); resp.StatusCode != http.StatusSeeOther || resp.Header.Get("Location") != "/ui/login" {
			t.Fatalf("after logout: %d %v", resp.StatusCode, resp.Header)
		}
	})

	t.Run("back-channel logout at the IdP revokes that session's grants", func(t *testing.T) {
		// Two sign-ins of Bob, two IdP sessions; the IdP ends the newer.
		older := h.handleFor(t, idp.Bob, "data")
		newer := h.handleFor(t, idp.Bob, "data")
		for _, tok := range []string{older, newer} {
			if got := h.check(t, tok, "data", "query"); got != 200 {
				t.Fatalf("Bob before logout: %d", got)
			}
		}
		h.idp.BackchannelLogout(t, idp.Bob) // fails unless Warden answered 200
		if got := h.check(t, newer, "data", "query"); got != 401 {
			t.Fatalf("the logged-out session's handle: %d, want 401", got)
		}
		if got := h.check(t, older, "data", "query"); got != 200 {
			t.Fatalf("Bob's other session after the logout of one: %d, want 200", got)
		}
		h.mu.Lock()
		token := h.logoutTokens[len(h.logoutTokens)-1]
		h.mu.Unlock()
		post := func(tok string) (int, string) {
			resp, err := http.PostForm(h.public+"/oauth/backchannel-logout", url.Values{"logout_token": {tok}})
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			b, _ := io.ReadAll(resp.Body)
			return resp.StatusCode, string(b)
		}
		if code, body := post(token); code != 400 || !strings.Contains(body, "already used") {
			t.Fatalf("a replayed logout token: %d %s", code, body)
		}
		// The same claims under a broken signature.
		parts := strings.Split(token, ".")
		sig := []byte(parts[2])
		sig[len(sig)/2] ^= 1
		if sig[len(sig)/2] == '-' || sig[len(sig)/2] == '_' {
			sig[len(sig)/2] = 'A'
		}
		if code, body := post(parts[0] + "." + parts[1] + "." + string(sig)); code != 400 || !strings.Contains(body, "invalid logout token") {
			t.Fatalf("a badly signed logout token: %d %s", code, body)
		}
		if got := h.check(t, older, "data", "query"); got != 200 {
			t.Fatalf("a refused logout token revoked: %d", got)
		}
		// Audited with the IdP as the actor; the trail holds no token.
		out := h.cli(t, "audit", "search", "--type", "grant_revoked", "--user", idp.Bob, "--json")
		if strings.Count(out, `"actor":"idp:`+h.idp.Issuer+`"`) != 1 || !strings.Contains(out, "back-channel logout") || strings.Contains(out, parts[1]) {
			t.Fatalf("grant_revoked events for Bob:\n%s", out)
		}
	})

	t.Run("providers and connected accounts", func(t *testing.T) { testAccounts(t, h) })
}

func merge(v url.Values, k, val string) url.Values {
	out := url.Values{}
	for kk, vv := range v {
		out[kk] = vv
	}
	out.Set(k, val)
	return out
}
