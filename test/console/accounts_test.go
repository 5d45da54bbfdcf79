package console

import (
	"context"
	"encoding/json"
	"fmt"
	"html"
	"io"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/warden-mcp/warden/test/idp"
)

// testAccounts is the console's providers and accounts page: an admin
// sees the providers (never the client secret) and an account the test
// connects, revokes it, and the next Check for the provider-mode server
// yields the connect elicitation again; an auditor sees no revoke button
// and a forged POST is refused.
func testAccounts(t *testing.T, h *harness) {
	const ghSecret = "gh-client-secret-never-rendered-0123456789"
	const pastedKey = "pasted-saas-key-never-rendered-0123456789"
	h.cli(t, "providers", "add", "gh", "--authorize-url", "https://github.com/login/oauth/authorize", "--token-url", "https://github.com/login/oauth/access_token",
		"--client-id", "Iv1.console-test", "--client-secret", ghSecret, "--scope", "repo", "--scope", "read:user")
	h.cli(t, "providers", "add", "keys", "--kind", "api_key", "--header", "X-Api-Key")
	h.cli(t, "servers", "add", "saas", "--url", "http://127.0.0.1:3/mcp", "--credential", "provider", "--provider", "keys")
	handle := h.handleFor(t, idp.Alice, "saas")

	// Not connected: the call is answered with the connect link.
	link := h.elicited(t, handle, "saas")
	h.idp.LoginAs(t, idp.Alice)
	if err := pasteKey(link, pastedKey); err != nil {
		t.Fatalf("paste the key on the connect page: %v", err)
	}
	if ok, status, body := h.checkMCP(t, handle, "saas"); !ok {
		t.Fatalf("Check after connecting: %d %s", status, body)
	}

	t.Run("an auditor sees the account and cannot revoke it", func(t *testing.T) {
		ctx := signIn(t, h, idp.Bob)
		do(t, ctx, "accounts page", chromedp.Navigate(h.admin+"/ui/accounts"), chromedp.WaitVisible(chromedp.CSS(`tr[data-account="alice/keys"]`)))
		if n := eval[int](t, ctx, `document.querySelectorAll("button[data-revoke-account], button[data-revoke-accounts]").length`); n != 0 {
			t.Fatalf("the auditor sees %d revoke buttons", n)
		}
		c, csrf := session(t, ctx, h)
		resp, body := as(t, c, "POST", h.admin+"/ui/accounts/revoke", url.Values{"csrf": {csrf}, "provider": {"keys"}, "user": {idp.Alice}}, map[string]string{"Origin": h.admin})
		if resp.StatusCode != http.StatusForbidden || !strings.Contains(body, "auditor") {
			t.Fatalf("the auditor's revoke: %d\n%s", resp.StatusCode, body)
		}
		if ok, status, body := h.checkMCP(t, handle, "saas"); !ok {
			t.Fatalf("the account went away on an auditor's POST: %d %s", status, body)
		}
	})

	t.Run("an admin revokes the account", func(t *testing.T) {
		ctx := signIn(t, h, idp.Alice)
		// The access matrix shows the connected account.
		if got := text(t, ctx, `tr[data-subject="alice"] .accounts`); !strings.Contains(got, "keys") {
			t.Fatalf("the access matrix shows alice's accounts as %q", got)
		}
		do(t, ctx, "accounts page", chromedp.Navigate(h.admin+"/ui/accounts"), chromedp.WaitVisible(chromedp.CSS(`tr[data-account="alice/keys"]`)))
		gh := text(t, ctx, `tr[data-provider="gh"]`)
		for _, want := range []string{"oauth", "https://github.com/login/oauth/authorize", "https://github.com/login/oauth/access_token", "Iv1.console-test", "repo read:user", "secret set",
			h.public + "/oauth/providers/gh/callback"} {
			if !strings.Contains(gh, want) {
				t.Errorf("the gh row lacks %q: %q", want, gh)
			}
		}
		row := text(t, ctx, `tr[data-account="alice/keys"]`)
		if !strings.Contains(row, time.Now().UTC().Format("2006-01-02")) || !strings.Contains(row, "never") {
			t.Errorf("alice's account row: %q", row)
		}
		shot(t, ctx, "accounts")
		c, _ := session(t, ctx, h)
		resp, page := as(t, c, "GET", h.admin+"/ui/accounts", nil, nil)
		if resp.Header.Get("Content-Security-Policy") == "" || strings.Contains(page, "<script") {
			t.Fatalf("accounts page headers %v", resp.Header)
		}
		for _, secret := range []string{ghSecret, pastedKey, handle} {
			if strings.Contains(page, secret) {
				t.Fatalf("the accounts page renders a secret (%d bytes)", len(secret))
			}
		}
		// Without the CSRF token the revocation is refused.
		if resp, body := as(t, c, "POST", h.admin+"/ui/accounts/revoke", url.Values{"provider": {"keys"}, "user": {idp.Alice}}, map[string]string{"Origin": h.admin}); resp.StatusCode != http.StatusForbidden {
			t.Fatalf("revoke without a CSRF token: %d\n%s", resp.StatusCode, body)
		}
		wctx, cancel := context.WithTimeout(ctx, 30*time.Second)
		do(t, wctx, "revoke alice's account", chromedp.Click(chromedp.CSS(`button[data-revoke-account="alice/keys"]`)))
		waitURL(t, wctx, "/ui/accounts/revoke")
		do(t, wctx, "the revocation", chromedp.WaitVisible(chromedp.CSS("#revoked")))
		cancel()
		if got := text(t, ctx, "#revoked"); !strings.Contains(got, "Revoked 1 connected account") {
			t.Fatalf("revocation said %q", got)
		}
		// The next Check asks alice to connect again.
		if again := h.elicited(t, handle, "saas"); again == link {
			t.Fatal("the elicitation after the revocation reuses the spent link")
		}
		do(t, ctx, "accounts page after", chromedp.Navigate(h.admin+"/ui/accounts"), chromedp.WaitVisible(chromedp.CSS("#accounts")))
		if n := eval[int](t, ctx, `document.querySelectorAll('tr[data-account="alice/keys"]').length`); n != 0 {
			t.Fatal("the revoked account is still listed")
		}
		out := h.cli(t, "audit", "search", "--type", "credential_revoked", "--json")
		if !strings.Contains(out, `"actor":"user:alice"`) || !strings.Contains(out, "revoked in the console") || strings.Contains(out, pastedKey) {
			t.Fatalf("credential_revoked events:\n%s", out)
		}
	})
}

// checkMCP sends Envoy's Check for a 2025-11-25 tools/call and says
// whether it was allowed, with the denied response's status and body.
func (h *harness) checkMCP(t *testing.T, token, server string) (bool, int, string) {
	t.Helper()
	conn, err := grpc.NewClient(h.authz, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	host := strings.TrimPrefix(h.public, "http://")
	body := `{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"whoami","arguments":{}}}`
	hdr := map[string]string{":method": "POST", ":path": "/mcp/" + server, ":authority": host, "content-type": "application/json",
		"mcp-protocol-version": "2025-11-25", "authorization": "Bearer " + token, "x-request-id": fmt.Sprintf("console-%d", time.Now().UnixNano())}
	resp, err := authv3.NewAuthorizationClient(conn).Check(t.Context(), &authv3.CheckRequest{Attributes: &authv3.AttributeContext{
		Request:           &authv3.AttributeContext_Request{Http: &authv3.AttributeContext_HttpRequest{Method: "POST", Path: "/mcp/" + server, Host: host, Headers: hdr, RawBody: []byte(body)}},
		ContextExtensions: map[string]string{"server": server},
	}})
	if err != nil {
		t.Fatalf("Check: %v", err)
	}
	if resp.GetOkResponse() != nil {
		return true, http.StatusOK, ""
	}
	d := resp.GetDeniedResponse()
	return false, int(d.GetStatus().GetCode()), d.GetBody()
}

// elicited makes a Check that must be answered with a URL elicitation
// (JSON-RPC error -32042) and returns its connect URL.
func (h *harness) elicited(t *testing.T, token, server string) string {
	t.Helper()
	ok, status, body := h.checkMCP(t, token, server)
	var msg struct {
		Error struct {
			Code int `json:"code"`
			Data struct {
				Elicitations []struct {
					Mode string `json:"mode"`
					URL  string `json:"url"`
				} `json:"elicitations"`
			} `json:"data"`
		} `json:"error"`
	}
	if ok || status != http.StatusOK || json.Unmarshal([]byte(body), &msg) != nil || msg.Error.Code != -32042 ||
		len(msg.Error.Data.Elicitations) != 1 || msg.Error.Data.Elicitations[0].Mode != "url" {
		t.Fatalf("want a URL elicitation, got allowed=%v %d %s", ok, status, body)
	}
	return msg.Error.Data.Elicitations[0].URL
}

var (
	hiddenField = regexp.MustCompile(`<input type="hidden" name="([a-z_]+)" value="([^"]*)">`)
	postAction  = regexp.MustCompile(`<form method="post" action="([^"]+)">`)
)

// pasteKey opens a connect link in a fresh browser (signing in at the IdP
// as whoever it logs in) and saves an API key on the connect page.
func pasteKey(link, key string) error {
	jar, _ := cookiejar.New(nil)
	client := &http.Client{Jar: jar, Timeout: 30 * time.Second}
	resp, err := client.Get(link)
	if err != nil {
		return err
	}
	raw, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	page := string(raw)
	action := postAction.FindStringSubmatch(page)
	if resp.StatusCode != http.StatusOK || action == nil || !strings.Contains(page, `name="key"`) {
		return fmt.Errorf("connect page %d: %s", resp.StatusCode, page)
	}
	form := url.Values{"action": {"key"}, "key": {key}}
	for _, m := range hiddenField.FindAllStringSubmatch(page, -1) {
		form.Set(m[1], html.UnescapeString(m[2]))
	}
	target, err := resp.Request.URL.Parse(html.UnescapeString(action[1]))
	if err != nil {
		return err
	}
	resp, err = client.PostForm(target.String(), form)
	if err != nil {
		return err
	}
	raw, _ = io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || !strings.Contains(string(raw), "Saved.") {
		return fmt.Errorf("after saving %d: %s", resp.StatusCode, raw)
	}
	return nil
}
