package oauth_test

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/warden-mcp/warden/internal/grant"
	"github.com/warden-mcp/warden/internal/store"
	"github.com/warden-mcp/warden/oauth"
	"github.com/warden-mcp/warden/oauth/connector"
	"github.com/warden-mcp/warden/oauth/oauthtest"
)

func TestMetadataDocuments(t *testing.T) {
	e := newEnv(t, oauthtest.EnvOptions{})
	for _, path := range []string{"/.well-known/oauth-authorization-server", "/.well-known/openid-configuration"} {
		resp, m := e.do(http.MethodGet, path, nil, nil)
		if resp.StatusCode != 200 || !strings.HasPrefix(resp.Header.Get("Content-Type"), "application/json") {
			t.Fatalf("%s: %d %s", path, resp.StatusCode, resp.Header.Get("Content-Type"))
		}
		if m["issuer"] != e.URL || m["authorization_endpoint"] != e.URL+"/oauth/authorize" || m["token_endpoint"] != e.URL+"/oauth/token" ||
			m["registration_endpoint"] != e.URL+"/oauth/register" || m["revocation_endpoint"] != e.URL+"/oauth/revoke" ||
			m["introspection_endpoint"] != e.URL+"/oauth/introspect" || m["client_id_metadata_document_supported"] != true ||
			m["authorization_response_iss_parameter_supported"] != true {
			t.Fatalf("%s: %v", path, m)
		}
		if got := m["code_challenge_methods_supported"].([]any); len(got) != 1 || got[0] != "S256" {
			t.Fatalf("code_challenge_methods_supported = %v", got)
		}
		// Only deployment-wide scopes: the servers' own are in their
		// resource metadata (see TestScopesDoNotLeakAcrossServers).
		if jsonString(m["scopes_supported"]) != `["offline_access"]` {
			t.Fatalf("scopes_supported = %v", m["scopes_supported"])
		}
	}
	resp, m := e.do(http.MethodGet, "/.well-known/oauth-protected-resource/mcp/hr", nil, nil)
	if resp.StatusCode != 200 || m["resource"] != e.res("hr") || jsonString(m["authorization_servers"]) != `["`+e.URL+`"]` ||
		jsonString(m["bearer_methods_supported"]) != `["header"]` || jsonString(m["scopes_supported"]) != `["hr:read","hr:write"]` {
		t.Fatalf("protected resource metadata: %d %v", resp.StatusCode, m)
	}
	if resp, _ := e.do(http.MethodGet, "/.well-known/oauth-protected-resource/mcp/nope", nil, nil); resp.StatusCode != 404 {
		t.Fatalf("unknown server PRM: %d", resp.StatusCode)
	}
	if resp, _ := e.do(http.MethodGet, "/oauth/jwks", nil, nil); resp.StatusCode != 200 || resp.Header.Get("Content-Type") != "application/jwk-set+json" {
		t.Fatalf("jwks: %d", resp.StatusCode)
	}
	// CORS preflight for browser-based clients.
	resp, _ = e.do(http.MethodOptions, "/oauth/token", nil, http.Header{"Origin": {"https://app.example"}})
	if resp.StatusCode != 204 || resp.Header.Get("Access-Control-Allow-Origin") != "*" {
		t.Fatalf("preflight: %d %v", resp.StatusCode, resp.Header)
	}
}

func TestMetadataWithIssuerPath(t *testing.T) {
	var base string
	e := newEnv(t, oauthtest.EnvOptions{Configure: func(o *oauth.Options) {
		base = o.Issuer
		o.Issuer += "/warden"
		o.ResourceURL = func(name string) string { return base + "/warden/mcp/" + name }
	}})
	for _, path := range []string{"/.well-known/oauth-authorization-server/warden", "/.well-known/openid-configuration/warden", "/warden/.well-known/openid-configuration"} {
		resp, m := e.do(http.MethodGet, strings.TrimPrefix(path, ""), nil, nil)
		if resp.StatusCode != 200 || m["issuer"] != base+"/warden" || m["token_endpoint"] != base+"/warden/oauth/token" {
			t.Fatalf("%s: %d %v", path, resp.StatusCode, m)
		}
	}
	resp, m := e.do(http.MethodGet, "/.well-known/oauth-protected-resource/warden/mcp/files", nil, nil)
	if resp.StatusCode != 200 || m["resource"] != base+"/warden/mcp/files" {
		t.Fatalf("PRM: %d %v", resp.StatusCode, m)
	}
}

func jsonString(v any) string {
	b, _ := json.Marshal(v)
	return string(b)
}

// TestFlowStaticConnector walks discovery's successors end to end with the
// static connector: DCR, authorize, login form, consent with CSRF, code,
// token, refresh with rotation, revocation, and checks what ext_authz will
// find in the store.
func TestFlowStaticConnector(t *testing.T) {
	e := newEnv(t, oauthtest.EnvOptions{})
	client := e.publicClient()
	b := oauthtest.NewBrowser()
	code, verifier := e.code(b, client, e.res("files"), e.res("hr"))
	if b.ConsentShown != 1 {
		t.Fatalf("consent shown %d times, want 1 for a dynamically registered client", b.ConsentShown)
	}
	resp, tok := e.exchange(client, code, verifier)
	if resp.StatusCode != 200 || resp.Header.Get("Cache-Control") != "no-store" || tok["token_type"] != "Bearer" {
		t.Fatalf("token: %d %v %v", resp.StatusCode, resp.Header, tok)
	}
	if tok["expires_in"].(float64) != 600 || tok["scope"] != "files:read hr:read hr:write" {
		t.Fatalf("token response: %v", tok)
	}
	at, rt := tok["access_token"].(string), tok["refresh_token"].(string)
	if !strings.HasPrefix(at, "wdn_at_") || !strings.HasPrefix(rt, "wdn_rt_") {
		t.Fatalf("handles: %q %q", at, rt)
	}
	h, g, err := e.resolve(at)
	if err != nil {
		t.Fatal(err)
	}
	// The token request named only files: the access handle is narrowed
	// to it (RFC 8707), while the grant covers both servers.
	if h.Kind != store.HandleAccess || h.ClientID != client || len(h.Resources) != 1 || h.Resources[0] != e.res("files") {
		t.Fatalf("access handle: %+v", h)
	}
	if g.Subject != oauthtest.User || g.Email != "alice@example.com" || g.Kind != store.KindUser || g.ClientID != client ||
		strings.Join(g.Servers, ",") != "files,hr" || strings.Join(g.Resources, ",") != e.res("files")+","+e.res("hr") || g.Revoked() {
		t.Fatalf("grant: %+v", g)
	}
	if len(g.Upstream) != 0 {
		t.Fatalf("static connector grant carries upstream tokens: %v", g.Upstream)
	}

	// Refresh rotates: new pair, the old refresh handle is spent.
	resp, tok2 := e.token(url.Values{"grant_type": {"refresh_token"}, "client_id": {client}, "refresh_token": {rt}}, "", "")
	if resp.StatusCode != 200 || tok2["refresh_token"] == rt || tok2["access_token"] == at {
		t.Fatalf("refresh: %d %v", resp.StatusCode, tok2)
	}
	h2, _, err := e.resolve(tok2["access_token"].(string))
	if err != nil || h2.GrantID != g.ID || len(h2.Resources) != 2 {
		t.Fatalf("refreshed access handle: %+v %v", h2, err)
	}
	// A refresh may narrow the scope, never widen it.
	resp, m := e.token(url.Values{"grant_type": {"refresh_token"}, "client_id": {client}, "refresh_token": {tok2["refresh_token"].(string)}, "scope": {"files:read"}}, "", "")
	if resp.StatusCode != 200 || m["scope"] != "files:read" {
		t.Fatalf("narrowing refresh: %d %v", resp.StatusCode, m)
	}
	rt3, at3 := m["refresh_token"].(string), m["access_token"].(string)
	resp, m = e.token(url.Values{"grant_type": {"refresh_token"}, "client_id": {client}, "refresh_token": {rt3}, "scope": {"files:read admin"}}, "", "")
	wantOAuthError(t, resp, m, 400, "invalid_scope")

	// Revoking the refresh token ends the grant and so every handle.
	form := url.Values{"client_id": {client}, "token": {rt3}}
	rresp, err := http.PostForm(e.URL+"/oauth/revoke", form)
	if err != nil || rresp.StatusCode != 200 {
		t.Fatalf("revoke: %v %v", rresp, err)
	}
	if _, _, err := e.resolve(at3); err != nil {
		t.Fatalf("access handle vanished: %v", err)
	}
	if !e.grant(g.ID).Revoked() || e.grant(g.ID).RevokedBy != "client:"+client {
		t.Fatalf("grant not revoked by the client: %+v", e.grant(g.ID))
	}
	resp, m = e.token(url.Values{"grant_type": {"refresh_token"}, "client_id": {client}, "refresh_token": {rt3}}, "", "")
	wantOAuthError(t, resp, m, 400, "invalid_grant")

	issued := map[string]float64{}
	mfs, err := e.Registry.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != "warden_oauth_token_requests_total" {
			continue
		}
		for _, m := range mf.GetMetric() {
			labels := map[string]string{}
			for _, l := range m.GetLabel() {
				labels[l.GetName()] = l.GetValue()
			}
			issued[labels["grant_type"]+"/"+labels["result"]] = m.GetCounter().GetValue()
		}
	}
	if issued["authorization_code/issued"] != 1 || issued["refresh_token/issued"] != 2 || issued["refresh_token/invalid_scope"] != 1 || issued["refresh_token/invalid_grant"] != 1 {
		t.Fatalf("token metrics: %v", issued)
	}

	types := strings.Join(e.AuditTypes(t), ",")
	for _, want := range []string{"client_registered", "consent_granted", "code_issued", "token_issued", "token_refreshed", "token_revoked", "grant_revoked"} {
		if !strings.Contains(types, want) {
			t.Fatalf("audit lacks %s: %s", want, types)
		}
	}
	// No raw handle ever reaches the audit trail.
	for _, ev := range e.Audit(t) {
		raw, _ := json.Marshal(ev)
		for _, secret := range []string{at, rt, code, verifier} {
			if strings.Contains(string(raw), secret) {
				t.Fatalf("audit event %s contains a raw credential", ev.Type)
			}
		}
	}
}

func TestConsentIsRememberedPerUserClientAndScopes(t *testing.T) {
	e := newEnv(t, oauthtest.EnvOptions{})
	client := e.publicClient()
	b := oauthtest.NewBrowser()
	e.code(b, client, e.res("files"), e.res("hr"))
	e.code(b, client, e.res("files"))
	if b.ConsentShown != 1 {
		t.Fatalf("a narrower repeat request asked for consent again (%d pages)", b.ConsentShown)
	}
	// Another client of the same user must ask again.
	e.code(b, e.publicClient(), e.res("files"))
	if b.ConsentShown != 2 {
		t.Fatalf("another client skipped consent (%d pages)", b.ConsentShown)
	}
}

func TestConsentDenied(t *testing.T) {
	e := newEnv(t, oauthtest.EnvOptions{})
	client := e.publicClient()
	b := oauthtest.NewBrowser()
	b.Decision = "deny"
	_, challenge := oauthtest.PKCE()
	back, err := b.Authorize(e.authURL(authz{client: client, redirectURI: redirect, challenge: challenge, method: "S256", resources: []string{e.res("files")}}), redirect)
	if err != nil {
		t.Fatal(err)
	}
	if back.Query().Get("error") != "access_denied" || back.Query().Get("code") != "" || back.Query().Get("state") != "st-123" {
		t.Fatalf("deny: %s", back)
	}
	if !strings.Contains(strings.Join(e.AuditTypes(t), ","), "consent_denied") {
		t.Fatal("consent denial not audited")
	}
}

func TestSkipConsentForFirstPartyConfigClient(t *testing.T) {
	e := newEnv(t, oauthtest.EnvOptions{Configure: func(o *oauth.Options) {
		o.Clients = []oauth.Client{{ID: "first-party", Name: "Company app", RedirectURIs: []string{redirect}, SkipConsent: true}}
	}})
	b := oauthtest.NewBrowser()
	code, verifier := e.code(b, "first-party")
	if b.ConsentShown != 0 {
		t.Fatal("first-party client was shown the consent page")
	}
	if resp, m := e.exchange("first-party", code, verifier); resp.StatusCode != 200 || m["refresh_token"] == nil {
		t.Fatalf("token: %d %v", resp.StatusCode, m)
	}
}

// TestOpenRegistrationGetsNoClientCredentials (issue 13, critical): with
// open registration anyone could register a client_credentials client and
// get a handle for any server with no user, consent or admin step. Open
// registration refuses the grant type; a registration with the initial
// access token gets a client that still has no access until an admin
// grants it, and then only what was granted.
func TestOpenRegistrationGetsNoClientCredentials(t *testing.T) {
	e := newEnv(t, oauthtest.EnvOptions{})
	code, m := e.register(map[string]any{"client_name": "nightly-report-agent", "grant_types": []string{"client_credentials"},
		"token_endpoint_auth_method": "client_secret_basic"}, nil)
	if code != 400 || m["error"] != "invalid_client_metadata" || m["client_secret"] != nil {
		t.Fatalf("open registration of a client_credentials client: %d %v", code, m)
	}
	// Mixed grant types are refused too: the secret would still work.
	code, _ = e.register(map[string]any{"redirect_uris": []string{redirect}, "grant_types": []string{"authorization_code", "client_credentials"}}, nil)
	if code != 400 {
		t.Fatalf("authorization_code + client_credentials: %d", code)
	}
}

func TestClientCredentialsServiceIdentity(t *testing.T) {
	const iat = "initial-access-token-0123456789"
	e := newEnv(t, oauthtest.EnvOptions{Configure: func(o *oauth.Options) {
		o.Registration = oauth.Registration{Mode: oauth.RegistrationToken, InitialAccessToken: iat}
	}})
	code, m := e.register(map[string]any{"client_name": "nightly-report-agent", "grant_types": []string{"client_credentials"},
		"token_endpoint_auth_method": "client_secret_basic", "scope": "hr:read hr:write files:read"}, http.Header{"Authorization": {"Bearer " + iat}})
	if code != 201 || m["client_secret"] == nil {
		t.Fatalf("register: %d %v", code, m)
	}
	id, secret := m["client_id"].(string), m["client_secret"].(string)
	// Registered, but no administrator granted anything yet: what the
	// client asked for in its registration does not count.
	resp, tok := e.token(url.Values{"grant_type": {"client_credentials"}, "resource": {e.res("hr")}, "scope": {"hr:read"}}, id, secret)
	wantOAuthError(t, resp, tok, 400, "unauthorized_client")
	if _, err := e.Grants.SetServiceAccess(context.Background(), "admin:carol", id, []string{"hr"}, []string{"hr:read"}, []string{"reports"}); err != nil {
		t.Fatal(err)
	}
	resp, tok = e.token(url.Values{"grant_type": {"client_credentials"}, "resource": {e.res("hr")}, "scope": {"hr:read"}}, id, secret)
	if resp.StatusCode != 200 || tok["refresh_token"] != nil || tok["scope"] != "hr:read" {
		t.Fatalf("client_credentials: %d %v", resp.StatusCode, tok)
	}
	_, g, err := e.resolve(tok["access_token"].(string))
	if err != nil || g.Kind != store.KindService || g.Subject != "client:"+id || g.Servers[0] != "hr" || g.Groups[0] != "reports" {
		t.Fatalf("service grant: %+v %v", g, err)
	}
	var issued store.AuditEvent
	for _, ev := range e.Audit(t) {
		if ev.Type == "token_issued" {
			issued = ev
		}
	}
	if issued.Kind != store.KindService || issued.ClientID != id {
		t.Fatalf("token issuance not audited as non-human: %+v", issued)
	}
	// Nothing beyond the grant of access: another server, another scope.
	resp, m = e.token(url.Values{"grant_type": {"client_credentials"}, "resource": {e.res("files")}}, id, secret)
	wantOAuthError(t, resp, m, 400, "invalid_target")
	resp, m = e.token(url.Values{"grant_type": {"client_credentials"}, "resource": {e.res("hr")}, "scope": {"hr:write"}}, id, secret)
	wantOAuthError(t, resp, m, 400, "invalid_scope")
	// Without resource or scope: exactly what was granted.
	resp, m = e.token(url.Values{"grant_type": {"client_credentials"}}, id, secret)
	if resp.StatusCode != 200 || m["scope"] != "hr:read" {
		t.Fatalf("default client_credentials: %d %v", resp.StatusCode, m)
	}
	// Wrong secret.
	resp, m = e.token(url.Values{"grant_type": {"client_credentials"}, "resource": {e.res("hr")}}, id, secret+"x")
	wantOAuthError(t, resp, m, 401, "invalid_client")
	// client_secret_post works too.
	resp, m = e.token(url.Values{"grant_type": {"client_credentials"}, "resource": {e.res("hr")}, "client_id": {id}, "client_secret": {secret}}, "", "")
	if resp.StatusCode != 200 {
		t.Fatalf("client_secret_post: %d %v", resp.StatusCode, m)
	}
	// Revoking the client withdraws its access: no new token.
	if _, err := e.Grants.Revoke(context.Background(), "admin", grant.Target{ClientID: id}, "retired"); err != nil {
		t.Fatal(err)
	}
	resp, m = e.token(url.Values{"grant_type": {"client_credentials"}}, id, secret)
	wantOAuthError(t, resp, m, 400, "unauthorized_client")
}

// TestConfigServiceClient: a pre-registered confidential client with
// servers is the operator's grant of service access.
func TestConfigServiceClient(t *testing.T) {
	e := newEnv(t, oauthtest.EnvOptions{Configure: func(o *oauth.Options) {
		o.Clients = []oauth.Client{{ID: "reports", Secret: "reports-secret-0123456789", GrantTypes: []string{"client_credentials"}, Servers: []string{"files"}, Scope: "files:read"}}
	}})
	resp, m := e.token(url.Values{"grant_type": {"client_credentials"}}, "reports", "reports-secret-0123456789")
	if resp.StatusCode != 200 || m["scope"] != "files:read" {
		t.Fatalf("config service client: %d %v", resp.StatusCode, m)
	}
	resp, m = e.token(url.Values{"grant_type": {"client_credentials"}, "resource": {e.res("hr")}}, "reports", "reports-secret-0123456789")
	wantOAuthError(t, resp, m, 400, "invalid_target")
	// A public client may not use client_credentials.
	pub := e.publicClient()
	resp, m = e.token(url.Values{"grant_type": {"client_credentials"}, "client_id": {pub}, "resource": {e.res("hr")}}, "", "")
	wantOAuthError(t, resp, m, 400, "unauthorized_client")
}

func TestIntrospection(t *testing.T) {
	const secret = "introspecting-secret-0123456789"
	e := newEnv(t, oauthtest.EnvOptions{Configure: func(o *oauth.Options) {
		o.Clients = []oauth.Client{{ID: "svc", Secret: secret, GrantTypes: []string{"client_credentials"}, Servers: []string{"files"}}}
	}})
	id := "svc"
	_, tok := e.token(url.Values{"grant_type": {"client_credentials"}, "resource": {e.res("files")}}, id, secret)
	at := tok["access_token"].(string)
	introspect := func(user, pass, token string) (*http.Response, map[string]any) {
		req, _ := http.NewRequest(http.MethodPost, e.URL+"/oauth/introspect", strings.NewReader(url.Values{"token": {token}, "client_id": {user}}.Encode()))
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		if pass != "" {
			req.SetBasicAuth(user, pass)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var out map[string]any
		_ = json.NewDecoder(resp.Body).Decode(&out)
		return resp, out
	}
	resp, out := introspect(id, secret, at)
	if resp.StatusCode != 200 || out["active"] != true || out["client_id"] != id || jsonString(out["aud"]) != `["`+e.res("files")+`"]` {
		t.Fatalf("introspect: %d %v", resp.StatusCode, out)
	}
	// Public clients are not authenticated callers.
	pub := e.publicClient()
	resp, out = introspect(pub, "", at)
	wantOAuthError(t, resp, out, 401, "invalid_client")
	if _, out = introspect(id, secret, "wdn_at_bogus"); out["active"] != false {
		t.Fatalf("bogus token active: %v", out)
	}
	e.Clock.Advance(11 * time.Minute)
	if _, out = introspect(id, secret, at); out["active"] != false {
		t.Fatalf("expired token active: %v", out)
	}
}

func TestClientConfigurationEndpoint(t *testing.T) {
	e := newEnv(t, oauthtest.EnvOptions{})
	_, reg := e.register(map[string]any{"client_name": "c", "redirect_uris": []string{redirect}, "token_endpoint_auth_method": "none",
		"grant_types": []string{"authorization_code", "refresh_token"}}, nil)
	id, uri, rat := reg["client_id"].(string), reg["registration_client_uri"].(string), reg["registration_access_token"].(string)
	if uri != e.URL+"/oauth/register/"+id {
		t.Fatalf("registration_client_uri %s", uri)
	}
	tok := e.mustTokens(id)
	resp, m := e.do(http.MethodGet, "/oauth/register/"+id, nil, http.Header{"Authorization": {"Bearer wrong"}})
	if resp.StatusCode != 401 {
		t.Fatalf("wrong registration token: %d %v", resp.StatusCode, m)
	}
	resp, m = e.do(http.MethodGet, "/oauth/register/"+id, nil, http.Header{"Authorization": {"Bearer " + rat}})
	if resp.StatusCode != 200 || m["client_id"] != id || m["client_name"] != "c" || m["registration_access_token"] != nil {
		t.Fatalf("read: %d %v", resp.StatusCode, m)
	}
	resp, _ = e.do(http.MethodDelete, "/oauth/register/"+id, nil, http.Header{"Authorization": {"Bearer " + rat}})
	if resp.StatusCode != 204 {
		t.Fatalf("delete: %d", resp.StatusCode)
	}
	if _, err := e.Store.GetClient(context.Background(), id); err == nil {
		t.Fatal("client still stored after delete")
	}
	_, g, _ := e.resolve(tok["access_token"].(string))
	if !g.Revoked() {
		t.Fatal("deleting the client left its grant alive")
	}
}

func TestStaticLoginFailureIsAuditedAndLimited(t *testing.T) {
	e := newEnv(t, oauthtest.EnvOptions{Configure: func(o *oauth.Options) { o.RateLimit.LoginPerMinute = 3 }})
	client := e.publicClient()
	b := oauthtest.NewBrowser()
	b.Password = "wrong"
	_, challenge := oauthtest.PKCE()
	u := e.authURL(authz{client: client, redirectURI: redirect, challenge: challenge, method: "S256", resources: []string{e.res("files")}})
	_, err := b.Authorize(u, redirect)
	pe, ok := err.(*oauthtest.PageError)
	if !ok || pe.Status != 401 || !strings.Contains(pe.Text, "wrong") {
		t.Fatalf("wrong password: %v", err)
	}
	var failed store.AuditEvent
	for _, ev := range e.Audit(t) {
		if ev.Type == "login_failed" {
			failed = ev
		}
	}
	// The typed user name is kept only as a short digest (issue 13: a
	// password typed into the name field must not land in the trail).
	sum := sha256.Sum256([]byte(oauthtest.User))
	if failed.ClientID != client || failed.Details["username_sha256_prefix"] != hex.EncodeToString(sum[:4]) || failed.Details["username"] != nil {
		t.Fatalf("login failure audit: %+v", failed)
	}
	raw, _ := json.Marshal(e.Audit(t))
	if strings.Contains(string(raw), `"`+oauthtest.User+`"`) {
		t.Fatal("the typed user name is in the trail verbatim")
	}
	for i := 0; i < 3; i++ {
		_, err = b.Authorize(u, redirect)
	}
	if pe, ok := err.(*oauthtest.PageError); !ok || pe.Status != 429 {
		t.Fatalf("password guessing not limited: %v", err)
	}
	// Even the right password waits for the limit.
	b.Password = oauthtest.Password
	if _, err = b.Authorize(u, redirect); err == nil {
		t.Fatal("login allowed past the rate limit")
	}
	e.Clock.Advance(time.Minute)
	if _, err = b.Authorize(u, redirect); err != nil {
		t.Fatalf("after the limit refilled: %v", err)
	}
}

func TestStaticBootstrapAdmin(t *testing.T) {
	dir := t.TempDir()
	first, err := connector.BootstrapAdmin(dir, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	if first.Password == "" || first.User.Username != "admin" || !strings.Contains(first.Banner(), first.Password) || !strings.Contains(first.Banner(), "NOT FOR PRODUCTION") {
		t.Fatalf("first start: %+v", first)
	}
	st, err := os.Stat(filepath.Join(dir, "static-admin.json"))
	if err != nil || st.Mode().Perm() != 0o600 {
		t.Fatalf("bootstrap file: %v %v", st, err)
	}
	raw, _ := os.ReadFile(filepath.Join(dir, "static-admin.json"))
	if strings.Contains(string(raw), first.Password) {
		t.Fatal("the password itself was persisted")
	}
	second, err := connector.BootstrapAdmin(dir, time.Now())
	if err != nil || second.Password != "" || second.Banner() != "" || second.User.PasswordHash != first.User.PasswordHash {
		t.Fatalf("restart printed or changed the password: %+v %v", second, err)
	}
	// A server with no configured users signs the admin in with it.
	again, err := connector.BootstrapAdmin(dir, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	e := newEnv(t, oauthtest.EnvOptions{Configure: func(o *oauth.Options) {
		o.Connector = connector.NewStatic([]connector.StaticUser{again.User})
	}})
	b := oauthtest.NewBrowser()
	b.Username, b.Password = "admin", first.Password
	code, verifier := e.code(b, e.publicClient())
	if resp, m := e.exchange(mustClientFromCode(t, e, code), code, verifier); resp.StatusCode != 200 {
		t.Fatalf("admin token: %v", m)
	}
}

func mustClientFromCode(t *testing.T, e *env, code string) string {
	t.Helper()
	h, _, err := e.resolve(code)
	if err != nil {
		t.Fatal(err)
	}
	return h.ClientID
}

// TestRefreshAfterServerRevocation: revoking one server of a grant (the
// admin "revoke server" operation) removes it from grant.Servers; refreshed
// access handles no longer name its resource.
func TestRefreshAfterServerRevocation(t *testing.T) {
	e := newEnv(t, oauthtest.EnvOptions{})
	client := e.publicClient()
	code, verifier := e.code(oauthtest.NewBrowser(), client, e.res("files"), e.res("hr"))
	resp, tok := e.token(url.Values{"grant_type": {"authorization_code"}, "client_id": {client}, "code": {code},
		"code_verifier": {verifier}, "redirect_uri": {redirect}}, "", "")
	if resp.StatusCode != 200 {
		t.Fatal(tok)
	}
	_, g, _ := e.resolve(tok["access_token"].(string))
	if g.ClientName != "Test MCP Client" {
		t.Fatalf("grant client name %q", g.ClientName)
	}
	res, err := e.Grants.Revoke(context.Background(), "admin", grant.Target{Server: "hr"}, "hr decommissioned")
	if err != nil || len(res.Narrowed) != 1 {
		t.Fatalf("narrow: %+v %v", res, err)
	}
	resp, tok = e.token(url.Values{"grant_type": {"refresh_token"}, "client_id": {client}, "refresh_token": {tok["refresh_token"].(string)}}, "", "")
	if resp.StatusCode != 200 {
		t.Fatal(tok)
	}
	h, _, _ := e.resolve(tok["access_token"].(string))
	if strings.Join(h.Resources, ",") != e.res("files") {
		t.Fatalf("refreshed handle still names a revoked server: %v", h.Resources)
	}
	resp, m := e.token(url.Values{"grant_type": {"refresh_token"}, "client_id": {client}, "refresh_token": {tok["refresh_token"].(string)}, "resource": {e.res("hr")}}, "", "")
	wantOAuthError(t, resp, m, 400, "invalid_grant")
}
