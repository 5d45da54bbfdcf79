package oauth_test

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/warden-mcp/warden/oauth"
	"github.com/warden-mcp/warden/oauth/oauthtest"
)

// authorizeError runs an authorization request expected to come back to
// the client with an error.
func (e *env) authorizeError(a authz) url.Values {
	e.t.Helper()
	back, err := oauthtest.NewBrowser().Authorize(e.authURL(a), redirect)
	if err != nil {
		e.t.Fatalf("authorize: %v", err)
	}
	q := back.Query()
	if q.Get("code") != "" || q.Get("error") == "" || q.Get("state") != "st-123" || q.Get("iss") != e.Server.Issuer() {
		e.t.Fatalf("want an error redirect with state and iss, got %s", back)
	}
	return q
}

func TestAuthorizeRefusesBadRequests(t *testing.T) {
	e := newEnv(t, oauthtest.EnvOptions{})
	client := e.publicClient()
	_, challenge := oauthtest.PKCE()
	files := []string{e.res("files")}
	for _, tc := range []struct {
		name string
		a    authz
		code string
	}{
		{"missing PKCE", authz{client: client, redirectURI: redirect, resources: files}, "invalid_request"},
		{"plain PKCE", authz{client: client, redirectURI: redirect, challenge: challenge, method: "plain", resources: files}, "invalid_request"},
		{"PKCE without method means plain", authz{client: client, redirectURI: redirect, challenge: challenge, resources: files}, "invalid_request"},
		{"malformed challenge", authz{client: client, redirectURI: redirect, challenge: "short", method: "S256", resources: files}, "invalid_request"},
		{"missing resource", authz{client: client, redirectURI: redirect, challenge: challenge, method: "S256"}, "invalid_target"},
		{"unregistered resource", authz{client: client, redirectURI: redirect, challenge: challenge, method: "S256", resources: []string{e.res("payroll")}}, "invalid_target"},
		{"foreign resource", authz{client: client, redirectURI: redirect, challenge: challenge, method: "S256", resources: []string{"https://evil.example/mcp/files"}}, "invalid_target"},
		{"resource with fragment", authz{client: client, redirectURI: redirect, challenge: challenge, method: "S256", resources: []string{e.res("files") + "#x"}}, "invalid_target"},
		{"unknown scope", authz{client: client, redirectURI: redirect, challenge: challenge, method: "S256", resources: files, scope: "files:read root"}, "invalid_scope"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := e.authorizeError(tc.a).Get("error"); got != tc.code {
				t.Fatalf("error = %s, want %s", got, tc.code)
			}
		})
	}
	t.Run("unsupported response type", func(t *testing.T) {
		u := strings.Replace(e.authURL(authz{client: client, redirectURI: redirect, challenge: challenge, method: "S256", resources: files}), "response_type=code", "response_type=token", 1)
		back, err := oauthtest.NewBrowser().Authorize(u, redirect)
		if err != nil || back.Query().Get("error") != "unsupported_response_type" {
			t.Fatalf("%v %v", back, err)
		}
	})
	// Untrusted redirect targets are never redirected to (RFC 6749
	// 4.1.2.1): the user gets an error page.
	for _, tc := range []struct {
		name, client, redirectURI string
	}{
		{"mismatched redirect URI", client, "http://127.0.0.1:7777/other"},
		{"redirect URI on another host", client, "https://evil.example/callback"},
		{"unknown client", "c_nope", redirect},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := oauthtest.NewBrowser().Authorize(e.authURL(authz{client: tc.client, redirectURI: tc.redirectURI, challenge: challenge, method: "S256", resources: files}), "http")
			pe, ok := err.(*oauthtest.PageError)
			if !ok || pe.Status != 400 {
				t.Fatalf("want an error page, got %v", err)
			}
		})
	}
}

func TestLoopbackRedirectMayChangePort(t *testing.T) {
	e := newEnv(t, oauthtest.EnvOptions{})
	client := e.publicClient()
	_, challenge := oauthtest.PKCE()
	other := "http://127.0.0.1:49152/callback"
	back, err := oauthtest.NewBrowser().Authorize(e.authURL(authz{client: client, redirectURI: other, challenge: challenge, method: "S256", resources: []string{e.res("files")}}), other)
	if err != nil || back.Query().Get("code") == "" {
		t.Fatalf("RFC 8252 loopback port: %v %v", back, err)
	}
}

func TestPKCEVerifierChecked(t *testing.T) {
	e := newEnv(t, oauthtest.EnvOptions{})
	client := e.publicClient()
	for _, tc := range []struct{ name, verifier string }{
		{"wrong verifier", strings.Repeat("a", 43)},
		{"missing verifier", ""},
		{"malformed verifier", "short"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			code, _ := e.code(oauthtest.NewBrowser(), client)
			_, g, err := e.resolve(code)
			if err != nil {
				t.Fatal(err)
			}
			resp, m := e.exchange(client, code, tc.verifier)
			wantOAuthError(t, resp, m, 400, "invalid_grant")
			if !e.grant(g.ID).Revoked() {
				t.Fatal("the grant of a code redeemed with a wrong verifier stays alive")
			}
		})
	}
}

func TestCodeReplayRevokesEverythingIssuedFromIt(t *testing.T) {
	e := newEnv(t, oauthtest.EnvOptions{})
	client := e.publicClient()
	code, verifier := e.code(oauthtest.NewBrowser(), client)
	resp, tok := e.exchange(client, code, verifier)
	if resp.StatusCode != 200 {
		t.Fatal(tok)
	}
	_, g, err := e.resolve(tok["access_token"].(string))
	if err != nil || g.Revoked() {
		t.Fatalf("before replay: %v %+v", err, g)
	}
	resp, m := e.exchange(client, code, verifier)
	wantOAuthError(t, resp, m, 400, "invalid_grant")
	_, g, _ = e.resolve(tok["access_token"].(string))
	if !g.Revoked() || g.RevokeReason != "authorization code used twice" {
		t.Fatalf("tokens from a replayed code survive: %+v", g)
	}
	resp, m = e.token(url.Values{"grant_type": {"refresh_token"}, "client_id": {client}, "refresh_token": {tok["refresh_token"].(string)}}, "", "")
	wantOAuthError(t, resp, m, 400, "invalid_grant")
	if !strings.Contains(strings.Join(e.AuditTypes(t), ","), "code_replay") {
		t.Fatal("code replay not audited")
	}
}

func TestCodeRedemptionMismatches(t *testing.T) {
	e := newEnv(t, oauthtest.EnvOptions{})
	client, other := e.publicClient(), e.publicClient()
	for _, tc := range []struct {
		name string
		form func(code, verifier string) url.Values
	}{
		{"mismatched redirect URI", func(code, v string) url.Values {
			return url.Values{"grant_type": {"authorization_code"}, "client_id": {client}, "code": {code}, "code_verifier": {v}, "redirect_uri": {"http://127.0.0.1:7777/other"}}
		}},
		{"missing redirect URI", func(code, v string) url.Values {
			return url.Values{"grant_type": {"authorization_code"}, "client_id": {client}, "code": {code}, "code_verifier": {v}}
		}},
		{"another client", func(code, v string) url.Values {
			return url.Values{"grant_type": {"authorization_code"}, "client_id": {other}, "code": {code}, "code_verifier": {v}, "redirect_uri": {redirect}}
		}},
		{"resource outside the authorization", func(code, v string) url.Values {
			return url.Values{"grant_type": {"authorization_code"}, "client_id": {client}, "code": {code}, "code_verifier": {v}, "redirect_uri": {redirect}, "resource": {e.res("hr")}}
		}},
		{"unregistered resource", func(code, v string) url.Values {
			return url.Values{"grant_type": {"authorization_code"}, "client_id": {client}, "code": {code}, "code_verifier": {v}, "redirect_uri": {redirect}, "resource": {e.res("payroll")}}
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			code, verifier := e.code(oauthtest.NewBrowser(), client)
			resp, m := e.token(tc.form(code, verifier), "", "")
			wantOAuthError(t, resp, m, 400, "invalid_grant")
			// The code is spent: even a correct retry fails.
			resp, m = e.exchange(client, code, verifier)
			wantOAuthError(t, resp, m, 400, "invalid_grant")
		})
	}
}

func TestExpiredCode(t *testing.T) {
	e := newEnv(t, oauthtest.EnvOptions{})
	client := e.publicClient()
	code, verifier := e.code(oauthtest.NewBrowser(), client)
	e.Clock.Advance(61 * time.Second)
	resp, m := e.exchange(client, code, verifier)
	wantOAuthError(t, resp, m, 400, "invalid_grant")
}

func TestRefreshTokenReuseRevokesTheFamily(t *testing.T) {
	e := newEnv(t, oauthtest.EnvOptions{})
	client := e.publicClient()
	tok := e.mustTokens(client)
	rt1 := tok["refresh_token"].(string)
	refresh := func(rt string) (*http.Response, map[string]any) {
		return e.token(url.Values{"grant_type": {"refresh_token"}, "client_id": {client}, "refresh_token": {rt}}, "", "")
	}
	resp, tok2 := refresh(rt1)
	if resp.StatusCode != 200 {
		t.Fatal(tok2)
	}
	// The attacker (or a buggy client) replays the rotated token.
	resp, m := refresh(rt1)
	wantOAuthError(t, resp, m, 400, "invalid_grant")
	_, g, _ := e.resolve(tok2["access_token"].(string))
	if !g.Revoked() || g.RevokeReason != "rotated refresh token used again" {
		t.Fatalf("family not revoked: %+v", g)
	}
	// The legitimate holder's newest token is dead too.
	resp, m = refresh(tok2["refresh_token"].(string))
	wantOAuthError(t, resp, m, 400, "invalid_grant")
	if !strings.Contains(strings.Join(e.AuditTypes(t), ","), "refresh_replay") {
		t.Fatal("refresh replay not audited")
	}
	// A refresh token presented by another client is theft as well.
	tok = e.mustTokens(client)
	resp, m = e.token(url.Values{"grant_type": {"refresh_token"}, "client_id": {e.publicClient()}, "refresh_token": {tok["refresh_token"].(string)}}, "", "")
	wantOAuthError(t, resp, m, 400, "invalid_grant")
	if _, g, _ = e.resolve(tok["access_token"].(string)); !g.Revoked() {
		t.Fatal("cross-client refresh left the grant alive")
	}
}

func TestTokenEndpointRules(t *testing.T) {
	e := newEnv(t, oauthtest.EnvOptions{})
	client := e.publicClient()
	// Parameters in the query string are refused.
	req, _ := http.NewRequest(http.MethodPost, e.URL+"/oauth/token?code=x", strings.NewReader("grant_type=authorization_code&client_id="+client))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	resp, err := http.DefaultClient.Do(req)
	if err != nil || resp.StatusCode != 400 || resp.Header.Get("Cache-Control") != "no-store" {
		t.Fatalf("query parameters: %v %v", resp, err)
	}
	resp.Body.Close()
	r, m := e.token(url.Values{"grant_type": {"password"}, "client_id": {client}}, "", "")
	wantOAuthError(t, r, m, 400, "unsupported_grant_type")
	r, m = e.token(url.Values{"grant_type": {"authorization_code"}, "client_id": {"c_unknown"}}, "", "")
	wantOAuthError(t, r, m, 401, "invalid_client")
	if r.Header.Get("WWW-Authenticate") == "" {
		t.Fatal("invalid_client without a challenge")
	}
	// A public client presenting a secret is not authenticated.
	r, m = e.token(url.Values{"grant_type": {"authorization_code"}, "code": {"x"}}, client, "guess")
	wantOAuthError(t, r, m, 401, "invalid_client")
}

func TestConsentRequiresCSRFTokenAndSameBrowser(t *testing.T) {
	e := newEnv(t, oauthtest.EnvOptions{})
	client := e.publicClient()
	_, challenge := oauthtest.PKCE()
	u := e.authURL(authz{client: client, redirectURI: redirect, challenge: challenge, method: "S256", resources: []string{e.res("files")}})
	for _, tc := range []struct {
		name string
		edit func(url.Values)
	}{
		{"missing CSRF token", func(f url.Values) { f.Del("csrf") }},
		{"wrong CSRF token", func(f url.Values) { f.Set("csrf", strings.Repeat("A", 43)) }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			b := oauthtest.NewBrowser()
			b.EditConsent = tc.edit
			_, err := b.Authorize(u, redirect)
			pe, ok := err.(*oauthtest.PageError)
			if !ok || pe.Status != 403 {
				t.Fatalf("want 403 page, got %v", err)
			}
		})
	}
	t.Run("post from another browser", func(t *testing.T) {
		var form url.Values
		b := oauthtest.NewBrowser()
		// Let the victim's browser reach the consent page, then have a
		// cookie-less client (a cross-site post: SameSite=Lax keeps the
		// cookie back) submit the approval with the right token.
		b.EditConsent = func(f url.Values) {
			form = url.Values{}
			for k, v := range f {
				form[k] = v
			}
			f.Del("csrf")
		}
		_, _ = b.Authorize(u, redirect)
		resp, err := http.PostForm(e.URL+"/oauth/consent", form)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != 403 {
			t.Fatalf("cross-browser consent post: %d", resp.StatusCode)
		}
		// The victim's pending consent was not burned by the attempts:
		// the right browser with the right token still completes.
		req, _ := http.NewRequest(http.MethodPost, e.URL+"/oauth/consent", strings.NewReader(form.Encode()))
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		resp, err = b.Client.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		loc, _ := url.Parse(resp.Header.Get("Location"))
		if resp.StatusCode != 303 || loc.Query().Get("code") == "" {
			t.Fatalf("legitimate consent after attacks: %d %s", resp.StatusCode, loc)
		}
	})
	t.Run("callback state from another browser", func(t *testing.T) {
		// A login started in one browser cannot be completed in another
		// (login CSRF / session fixation).
		b1 := oauthtest.NewBrowser()
		resp, err := b1.Client.Get(u)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		loginURL := resp.Header.Get("Location")
		resp, err = oauthtest.NewBrowser().Client.Get(loginURL)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != 403 {
			t.Fatalf("login page in another browser: %d", resp.StatusCode)
		}
	})
}

func TestDynamicRegistrationValidation(t *testing.T) {
	e := newEnv(t, oauthtest.EnvOptions{})
	for _, tc := range []struct {
		name string
		meta map[string]any
		code string
	}{
		{"http redirect to a non-loopback host", map[string]any{"redirect_uris": []string{"http://evil.example/cb"}, "token_endpoint_auth_method": "none"}, "invalid_redirect_uri"},
		{"redirect with fragment", map[string]any{"redirect_uris": []string{"https://app.example/cb#x"}, "token_endpoint_auth_method": "none"}, "invalid_redirect_uri"},
		{"javascript scheme", map[string]any{"redirect_uris": []string{"javascript:alert(1)"}, "token_endpoint_auth_method": "none"}, "invalid_redirect_uri"},
		{"private scheme without a domain", map[string]any{"redirect_uris": []string{"myapp:/cb"}, "token_endpoint_auth_method": "none"}, "invalid_redirect_uri"},
		{"wildcard", map[string]any{"redirect_uris": []string{"https://*.example/cb"}, "token_endpoint_auth_method": "none"}, "invalid_redirect_uri"},
		{"relative", map[string]any{"redirect_uris": []string{"/cb"}, "token_endpoint_auth_method": "none"}, "invalid_redirect_uri"},
		{"user info", map[string]any{"redirect_uris": []string{"https://user@app.example/cb"}, "token_endpoint_auth_method": "none"}, "invalid_redirect_uri"},
		{"no redirect URIs", map[string]any{"token_endpoint_auth_method": "none"}, "invalid_redirect_uri"},
		{"public client_credentials", map[string]any{"grant_types": []string{"client_credentials"}, "token_endpoint_auth_method": "none"}, "invalid_client_metadata"},
		{"unsupported auth method", map[string]any{"redirect_uris": []string{"https://app.example/cb"}, "token_endpoint_auth_method": "private_key_jwt"}, "invalid_client_metadata"},
		{"implicit grant", map[string]any{"redirect_uris": []string{"https://app.example/cb"}, "grant_types": []string{"implicit"}}, "invalid_client_metadata"},
		{"token response type", map[string]any{"redirect_uris": []string{"https://app.example/cb"}, "response_types": []string{"token"}}, "invalid_client_metadata"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			code, m := e.register(tc.meta, nil)
			if code != 400 || m["error"] != tc.code {
				t.Fatalf("got %d %v, want 400 %s", code, m, tc.code)
			}
		})
	}
	for _, ok := range []string{"https://app.example/cb", "http://localhost:3000/cb", "http://[::1]:8080/cb", "com.example.app:/oauth2redirect"} {
		if code, m := e.register(map[string]any{"redirect_uris": []string{ok}, "token_endpoint_auth_method": "none"}, nil); code != 201 {
			t.Fatalf("%s refused: %v", ok, m)
		}
	}
	// Confidential by default (RFC 7591 2): a secret is issued.
	code, m := e.register(map[string]any{"redirect_uris": []string{"https://app.example/cb"}}, nil)
	if code != 201 || m["client_secret"] == nil || m["token_endpoint_auth_method"] != "client_secret_basic" {
		t.Fatalf("default registration: %d %v", code, m)
	}
	// Garbage body.
	resp, body := e.do(http.MethodPost, "/oauth/register", strings.NewReader("{"), http.Header{"Content-Type": {"application/json"}})
	if resp.StatusCode != 400 || body["error"] != "invalid_client_metadata" {
		t.Fatalf("bad JSON: %d %v", resp.StatusCode, body)
	}
}

func TestRegistrationPolicyModes(t *testing.T) {
	meta := func(uri string) map[string]any {
		return map[string]any{"redirect_uris": []string{uri}, "token_endpoint_auth_method": "none"}
	}
	t.Run("token", func(t *testing.T) {
		const iat = "initial-access-token-0123456789"
		e := newEnv(t, oauthtest.EnvOptions{Configure: func(o *oauth.Options) {
			o.Registration = oauth.Registration{Mode: oauth.RegistrationToken, InitialAccessToken: iat}
		}})
		if code, m := e.register(meta(redirect), nil); code != 401 || m["error"] != "invalid_token" {
			t.Fatalf("without token: %d %v", code, m)
		}
		if code, _ := e.register(meta(redirect), http.Header{"Authorization": {"Bearer wrong"}}); code != 401 {
			t.Fatalf("wrong token: %d", code)
		}
		if code, m := e.register(meta(redirect), http.Header{"Authorization": {"Bearer " + iat}}); code != 201 {
			t.Fatalf("right token: %d %v", code, m)
		}
	})
	t.Run("allowlist", func(t *testing.T) {
		e := newEnv(t, oauthtest.EnvOptions{Configure: func(o *oauth.Options) {
			o.Registration = oauth.Registration{Mode: oauth.RegistrationAllowlist, AllowedHosts: []string{"app.example", "127.0.0.1", "com.example.app"}}
		}})
		for uri, want := range map[string]int{
			"https://app.example/cb": 201, redirect: 201, "com.example.app:/cb": 201,
			"https://evil.example/cb": 400, "http://localhost:1/cb": 400, "org.evil.app:/cb": 400,
		} {
			if code, m := e.register(meta(uri), nil); code != want {
				t.Fatalf("%s: %d %v, want %d", uri, code, m, want)
			}
		}
	})
	t.Run("disabled", func(t *testing.T) {
		e := newEnv(t, oauthtest.EnvOptions{Configure: func(o *oauth.Options) { o.Registration.Mode = oauth.RegistrationDisabled }})
		if code, _ := e.register(meta(redirect), nil); code != 403 {
			t.Fatalf("registration while disabled: %d", code)
		}
		_, m := e.do(http.MethodGet, "/.well-known/oauth-authorization-server", nil, nil)
		if _, ok := m["registration_endpoint"]; ok {
			t.Fatal("metadata advertises a disabled registration endpoint")
		}
	})
}

func TestRegistrationRateLimit(t *testing.T) {
	e := newEnv(t, oauthtest.EnvOptions{Configure: func(o *oauth.Options) {
		o.RateLimit.RegisterPerMinute = 3
	}})
	meta := map[string]any{"redirect_uris": []string{redirect}, "token_endpoint_auth_method": "none"}
	from := func(ip string) http.Header { return http.Header{"X-Forwarded-For": {"6.6.6.6, " + ip}} }
	for i := 0; i < 3; i++ {
		if code, _ := e.register(meta, from("203.0.113.7")); code != 201 {
			t.Fatalf("registration %d: %d", i, code)
		}
	}
	raw, _ := json.Marshal(meta)
	resp, m := e.do(http.MethodPost, "/oauth/register", strings.NewReader(string(raw)), from("203.0.113.7"))
	if resp.StatusCode != 429 || resp.Header.Get("Retry-After") == "" || m["error"] == nil {
		t.Fatalf("4th registration: %d %v", resp.StatusCode, m)
	}
	// Another source has its own bucket, whatever it claims further left.
	if code, _ := e.register(meta, from("198.51.100.1")); code != 201 {
		t.Fatalf("other source limited: %d", code)
	}
	e.Clock.Advance(time.Minute)
	if code, _ := e.register(meta, from("203.0.113.7")); code != 201 {
		t.Fatalf("after refill: %d", code)
	}
}

func TestClientIDMetadataDocuments(t *testing.T) {
	docs := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		self := "https://" + r.Host + r.URL.Path
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("Cache-Control", "max-age=120")
		switch r.URL.Path {
		case "/client.json":
			fmt.Fprintf(w, `{"client_id":%q,"client_name":"Metadata Client","redirect_uris":[%q],"grant_types":["authorization_code","refresh_token"],"token_endpoint_auth_method":"none"}`, self, redirect)
		case "/mismatch.json":
			fmt.Fprintf(w, `{"client_id":"https://other.example/client.json","redirect_uris":[%q]}`, redirect)
		case "/secret.json":
			fmt.Fprintf(w, `{"client_id":%q,"redirect_uris":[%q],"client_secret":"x","token_endpoint_auth_method":"client_secret_basic"}`, self, redirect)
		case "/big.json":
			fmt.Fprintf(w, `{"client_id":%q,"redirect_uris":[%q],"client_name":%q}`, self, redirect, strings.Repeat("x", 20000))
		case "/redirect.json":
			http.Redirect(w, r, "/client.json", http.StatusFound)
		default:
			http.NotFound(w, r)
		}
	}))
	defer docs.Close()
	_, challenge := oauthtest.PKCE()
	start := func(e *env, clientID string) (*url.URL, error) {
		return oauthtest.NewBrowser().Authorize(e.authURL(authz{client: clientID, redirectURI: redirect, challenge: challenge, method: "S256", resources: []string{e.res("files")}}), redirect)
	}

	t.Run("private address refused by default", func(t *testing.T) {
		e := newEnv(t, oauthtest.EnvOptions{HTTPClient: docs.Client()})
		for _, id := range []string{docs.URL + "/client.json", "https://localhost/client.json", "https://169.254.169.254/latest/meta-data", "https://10.0.0.1/c.json", "https://[::1]/c.json"} {
			_, err := start(e, id)
			if pe, ok := err.(*oauthtest.PageError); !ok || pe.Status != 400 || !strings.Contains(pe.Text, "not registered") {
				t.Fatalf("%s: want the unknown-client page, got %v", id, err)
			}
		}
	})
	t.Run("allowed when configured", func(t *testing.T) {
		e := newEnv(t, oauthtest.EnvOptions{HTTPClient: docs.Client(), Configure: func(o *oauth.Options) {
			o.CIMD.AllowPrivateAddresses = true
		}})
		id := docs.URL + "/client.json"
		b := oauthtest.NewBrowser()
		verifier, challenge := oauthtest.PKCE()
		back, err := b.Authorize(e.authURL(authz{client: id, redirectURI: redirect, challenge: challenge, method: "S256", resources: []string{e.res("files")}}), redirect)
		if err != nil || back.Query().Get("code") == "" || b.ConsentShown != 1 {
			t.Fatalf("metadata document client: %v %v (consent pages %d)", back, err, b.ConsentShown)
		}
		resp, m := e.exchange(id, back.Query().Get("code"), verifier)
		if resp.StatusCode != 200 {
			t.Fatalf("token: %v", m)
		}
		c, err := e.Store.GetClient(t.Context(), id)
		if err != nil || c.Source != "cimd" || c.Name != "Metadata Client" || c.ExpiresAt.Sub(c.CreatedAt) != 2*time.Minute {
			t.Fatalf("cached client: %+v %v", c, err)
		}
		// The document's redirect URIs are enforced.
		_, err = oauthtest.NewBrowser().Authorize(e.authURL(authz{client: id, redirectURI: "https://evil.example/cb", challenge: challenge, method: "S256", resources: []string{e.res("files")}}), "https://evil.example")
		if pe, ok := err.(*oauthtest.PageError); !ok || pe.Status != 400 {
			t.Fatalf("unregistered redirect for a metadata client: %v", err)
		}
		for _, bad := range []string{"/mismatch.json", "/secret.json", "/big.json", "/redirect.json", "/missing.json"} {
			if _, err := start(e, docs.URL+bad); err == nil {
				t.Fatalf("%s accepted", bad)
			}
		}
		for _, bad := range []string{docs.URL, docs.URL + "/", docs.URL + "/a/../client.json", strings.Replace(docs.URL, "https", "http", 1) + "/client.json"} {
			if _, err := start(e, bad); err == nil {
				t.Fatalf("%s accepted as a client id", bad)
			}
		}
	})
}

func TestPagesCannotBeFramedOrLeakTheirURL(t *testing.T) {
	e := newEnv(t, oauthtest.EnvOptions{})
	client := e.publicClient()
	_, challenge := oauthtest.PKCE()
	b := oauthtest.NewBrowser()
	resp, err := b.Client.Get(e.authURL(authz{client: client, redirectURI: redirect, challenge: challenge, method: "S256", resources: []string{e.res("files")}}))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	// 303, not 307: a redirect after a form post must not re-post the
	// credentials to the next site (RFC 9700 4.12).
	if resp.StatusCode != http.StatusSeeOther {
		t.Fatalf("authorize redirect status %d", resp.StatusCode)
	}
	var cookie *http.Cookie
	for _, c := range resp.Cookies() {
		cookie = c
	}
	if cookie == nil || !cookie.HttpOnly || cookie.SameSite != http.SameSiteLaxMode {
		t.Fatalf("browser-binding cookie: %+v", cookie)
	}
	resp, err = b.Client.Get(resp.Header.Get("Location"))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	h := resp.Header
	if resp.StatusCode != 200 || h.Get("X-Frame-Options") != "DENY" || !strings.Contains(h.Get("Content-Security-Policy"), "frame-ancestors 'none'") ||
		h.Get("Referrer-Policy") != "no-referrer" || h.Get("Cache-Control") != "no-store" {
		t.Fatalf("login page headers: %d %v", resp.StatusCode, h)
	}
}

// TestNoOpenRedirectForSelfRegisteredClients: errors found before sign-in
// are not redirected to a self-registered https redirect URI, or anyone
// could use Warden's authorize URL to bounce users to a phishing site.
func TestNoOpenRedirectForSelfRegisteredClients(t *testing.T) {
	e := newEnv(t, oauthtest.EnvOptions{Configure: func(o *oauth.Options) {
		o.Clients = []oauth.Client{{ID: "declared", RedirectURIs: []string{"https://app.example/cb"}}}
	}})
	code, m := e.register(map[string]any{"redirect_uris": []string{"https://phish.example/cb"}, "token_endpoint_auth_method": "none"}, nil)
	if code != 201 {
		t.Fatal(m)
	}
	_, challenge := oauthtest.PKCE()
	b := oauthtest.NewBrowser()
	_, err := b.Authorize(e.authURL(authz{client: m["client_id"].(string), redirectURI: "https://phish.example/cb", challenge: challenge, method: "S256", scope: "bogus", resources: []string{e.res("files")}}), "https://phish.example")
	if pe, ok := err.(*oauthtest.PageError); !ok || pe.Status != 400 || !strings.Contains(pe.Text, "invalid_scope") {
		t.Fatalf("want an error page, got %v", err)
	}
	// An operator-declared client's redirect URI is trusted.
	back, err := b.Authorize(e.authURL(authz{client: "declared", redirectURI: "https://app.example/cb", challenge: challenge, method: "S256", scope: "bogus", resources: []string{e.res("files")}}), "https://app.example")
	if err != nil || back.Query().Get("error") != "invalid_scope" {
		t.Fatalf("declared client: %v %v", back, err)
	}
}
