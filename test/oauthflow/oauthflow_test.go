// Package oauthflow runs Warden's authorization server end to end against
// real outside parties: the npm oidc-provider as the enterprise IdP, the
// official MCP TypeScript SDK as the client, and the MCP conformance
// suite's authorization server checks. Run `npm ci` in test/ first.
package oauthflow

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/url"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/warden-mcp/warden/internal/handle"
	"github.com/warden-mcp/warden/internal/store"
	"github.com/warden-mcp/warden/oauth"
	"github.com/warden-mcp/warden/oauth/connector"
	"github.com/warden-mcp/warden/oauth/oauthtest"
	"github.com/warden-mcp/warden/test/idp"
)

const idpClientSecret = "warden-at-the-idp-0123456789"

type harness struct {
	*oauthtest.Env
	IdP *idp.Provider
	t   *testing.T
}

// start runs Warden with the oidc connector pointed at a fresh
// oidc-provider whose one client is Warden's static registration.
func start(t *testing.T, idpTTL time.Duration, configure func(*oauth.Options)) *harness {
	return startWrapped(t, idpTTL, nil, configure)
}

// startWrapped is start with the harness's store wrapped
// (oauthtest.EnvOptions.WrapStore).
func startWrapped(t *testing.T, idpTTL time.Duration, wrap func(store.Store) store.Store, configure func(*oauth.Options)) *harness {
	h := &harness{t: t}
	h.Env = oauthtest.NewEnv(t, oauthtest.EnvOptions{WrapStore: wrap, Configure: func(o *oauth.Options) {
		h.IdP = idp.Start(t, idp.Options{AccessTokenTTL: idpTTL, Clients: []idp.Client{{
			ID: "warden", Secret: idpClientSecret, RedirectURIs: []string{o.Issuer + oauth.CallbackPath},
		}}})
		o.Connector = connector.NewOIDC(connector.OIDCOptions{
			Issuer: h.IdP.Issuer, ClientID: "warden", ClientSecret: idpClientSecret, RedirectURL: o.Issuer + oauth.CallbackPath,
			Scopes: []string{"openid", "email", "profile", "groups"},
		})
		o.ConnectorID = "oidc"
		if configure != nil {
			configure(o)
		}
	}})
	return h
}

func (h *harness) getJSON(u string) map[string]any {
	h.t.Helper()
	resp, err := http.Get(u)
	if err != nil {
		h.t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != 200 {
		h.t.Fatalf("GET %s: %d", u, resp.StatusCode)
	}
	var m map[string]any
	if err := json.NewDecoder(resp.Body).Decode(&m); err != nil {
		h.t.Fatal(err)
	}
	return m
}

func (h *harness) postForm(u string, form url.Values) (int, map[string]any, http.Header) {
	h.t.Helper()
	resp, err := http.PostForm(u, form)
	if err != nil {
		h.t.Fatal(err)
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	var m map[string]any
	_ = json.Unmarshal(raw, &m)
	return resp.StatusCode, m, resp.Header
}

// codeGrant walks the authorization code flow of the pre-registered public
// client "cli" (redirect URI http://127.0.0.1:9/cb) for resource and returns
// the token response. With sendRedirect false the redirect URI is left out
// of both requests, which a client with a single registered URI may do.
func (h *harness) codeGrant(t *testing.T, resource string, sendRedirect bool) map[string]any {
	t.Helper()
	const cb = "http://127.0.0.1:9/cb"
	verifier, challenge := oauthtest.PKCE()
	q := url.Values{"response_type": {"code"}, "client_id": {"cli"}, "code_challenge": {challenge}, "code_challenge_method": {"S256"},
		"resource": {resource}}
	form := url.Values{"grant_type": {"authorization_code"}, "client_id": {"cli"}, "code_verifier": {verifier}}
	if sendRedirect {
		q.Set("redirect_uri", cb)
		form.Set("redirect_uri", cb)
	}
	back, err := oauthtest.NewBrowser().Authorize(h.URL+"/oauth/authorize?"+q.Encode(), cb)
	if err != nil {
		t.Fatalf("authorize: %v\n%s", err, h.IdP.Stderr())
	}
	form.Set("code", back.Query().Get("code"))
	status, tok, _ := h.postForm(h.URL+"/oauth/token", form)
	if status != 200 {
		t.Fatalf("token: %v", tok)
	}
	return tok
}

// TestHeadlessFlowWithOIDCProvider: discovery -> DCR -> authorize -> IdP
// login (oidc-provider) -> consent (CSRF) -> token -> refresh -> revoke.
func TestHeadlessFlowWithOIDCProvider(t *testing.T) {
	h := start(t, 0, nil)
	ctx := context.Background()
	resource := h.ResourceURL("files")

	// Discovery, as an MCP client does it: protected resource metadata of
	// the server, then the authorization server's metadata.
	prm := h.getJSON(h.URL + "/.well-known/oauth-protected-resource/mcp/files")
	if prm["resource"] != resource {
		t.Fatalf("PRM resource %v", prm["resource"])
	}
	as := prm["authorization_servers"].([]any)[0].(string)
	meta := h.getJSON(strings.TrimSuffix(as, "/") + "/.well-known/oauth-authorization-server")
	if meta["issuer"] != as {
		t.Fatalf("issuer %v != %v", meta["issuer"], as)
	}

	// Dynamic client registration.
	const redirect = "http://127.0.0.1:53682/callback"
	body, _ := json.Marshal(map[string]any{"client_name": "headless", "redirect_uris": []string{redirect},
		"token_endpoint_auth_method": "none", "grant_types": []string{"authorization_code", "refresh_token"}})
	resp, err := http.Post(meta["registration_endpoint"].(string), "application/json", bytes.NewReader(body))
	if err != nil || resp.StatusCode != 201 {
		t.Fatalf("register: %v %v", resp, err)
	}
	var reg map[string]any
	_ = json.NewDecoder(resp.Body).Decode(&reg)
	resp.Body.Close()
	client := reg["client_id"].(string)

	// Authorization through the IdP and the consent page.
	verifier, challenge := oauthtest.PKCE()
	q := url.Values{"response_type": {"code"}, "client_id": {client}, "redirect_uri": {redirect}, "state": {"xyz"},
		"code_challenge": {challenge}, "code_challenge_method": {"S256"}, "resource": {resource}, "scope": {"files:read"}}
	b := oauthtest.NewBrowser()
	back, err := b.Authorize(meta["authorization_endpoint"].(string)+"?"+q.Encode(), redirect)
	if err != nil {
		t.Fatalf("authorize: %v\nidp stderr:\n%s", err, h.IdP.Stderr())
	}
	if b.ConsentShown != 1 || back.Query().Get("state") != "xyz" || back.Query().Get("iss") != as {
		t.Fatalf("callback %s (consent pages %d)", back, b.ConsentShown)
	}
	sawIdP := false
	for _, v := range b.Visited {
		sawIdP = sawIdP || strings.HasPrefix(v, h.IdP.Issuer+"/interaction/")
	}
	if !sawIdP {
		t.Fatalf("the browser never signed in at the IdP: %v", b.Visited)
	}

	status, tok, hdr := h.postForm(meta["token_endpoint"].(string), url.Values{"grant_type": {"authorization_code"}, "client_id": {client},
		"code": {back.Query().Get("code")}, "code_verifier": {verifier}, "redirect_uri": {redirect}, "resource": {resource}})
	if status != 200 || hdr.Get("Cache-Control") != "no-store" {
		t.Fatalf("token: %d %v", status, tok)
	}
	at, rt := tok["access_token"].(string), tok["refresh_token"].(string)

	// What ext_authz will see: an access handle bound to the resource, a
	// grant with the IdP identity and the IdP tokens sealed inside.
	hd, g, err := h.Store.ResolveHandle(ctx, handle.Digest(at))
	if err != nil || hd.Kind != store.HandleAccess || hd.Resources[0] != resource || hd.Scopes[0] != "files:read" {
		t.Fatalf("handle: %+v %v", hd, err)
	}
	if g.Subject != idp.Alice || g.Email != "alice@example.com" || g.Name != "Alice Liddell" || strings.Join(g.Groups, ",") != "engineering,mcp-users" {
		t.Fatalf("grant identity: %+v", g)
	}
	if g.Claims["iss"] != h.IdP.Issuer || g.Claims["nonce"] != nil {
		t.Fatalf("claims snapshot: %v", g.Claims)
	}
	sealed, ok := g.Upstream["idp"]
	if !ok {
		t.Fatal("no sealed IdP tokens in the grant")
	}
	raw, err := h.Keyring.Open(sealed, []byte(g.ID))
	if err != nil {
		t.Fatal(err)
	}
	var idpTok connector.Tokens
	_ = json.Unmarshal(raw, &idpTok)
	if idpTok.AccessToken == "" || idpTok.RefreshToken == "" || idpTok.IDToken == "" {
		t.Fatalf("sealed IdP tokens incomplete: %+v", idpTok)
	}
	if _, err := h.Keyring.Open(sealed, []byte("g_other")); err == nil {
		t.Fatal("sealed IdP tokens open under another grant id")
	}
	if got, _, err := h.Server.IdPAccessToken(ctx, g); err != nil || got != idpTok.AccessToken {
		t.Fatalf("IdPAccessToken: %v", err)
	}
	// The IdP's tokens never reach the client.
	rawTok, _ := json.Marshal(tok)
	for _, s := range []string{idpTok.AccessToken, idpTok.RefreshToken, idpTok.IDToken} {
		if strings.Contains(string(rawTok), s) {
			t.Fatal("an IdP token leaked into the token response")
		}
	}

	// Refresh rotates; the replaced refresh token is spent.
	status, tok2, _ := h.postForm(meta["token_endpoint"].(string), url.Values{"grant_type": {"refresh_token"}, "client_id": {client}, "refresh_token": {rt}})
	if status != 200 || tok2["refresh_token"] == rt {
		t.Fatalf("refresh: %d %v", status, tok2)
	}
	// Revoke: the grant ends, every handle with it.
	status, _, _ = h.postForm(meta["revocation_endpoint"].(string), url.Values{"client_id": {client}, "token": {tok2["refresh_token"].(string)}})
	if status != 200 {
		t.Fatalf("revoke: %d", status)
	}
	if _, g, _ = h.Store.ResolveHandle(ctx, handle.Digest(tok2["access_token"].(string))); !g.Revoked() {
		t.Fatal("revocation did not reach the access handle's grant")
	}
}

// TestIdPRefusedRefreshRevokesGrant: a user disabled at the IdP loses
// Warden access at the next refresh, and the trail says why.
func TestIdPRefusedRefreshRevokesGrant(t *testing.T) {
	// IdP access tokens live 60s, Warden's 10m: every Warden refresh has to
	// renew the IdP tokens first.
	h := start(t, time.Minute, func(o *oauth.Options) {
		o.Clients = []oauth.Client{{ID: "cli", RedirectURIs: []string{"http://127.0.0.1:9/cb"}}}
	})
	ctx := context.Background()
	tok := h.codeGrant(t, h.ResourceURL("hr"), true)
	_, g, _ := h.Store.ResolveHandle(ctx, handle.Digest(tok["access_token"].(string)))
	before := g.Upstream["idp"]

	status, tok, _ := h.postForm(h.URL+"/oauth/token", url.Values{"grant_type": {"refresh_token"}, "client_id": {"cli"}, "refresh_token": {tok["refresh_token"].(string)}})
	if status != 200 {
		t.Fatalf("refresh while the user is active: %d %v\n%s", status, tok, h.IdP.Stderr())
	}
	_, g, _ = h.Store.ResolveHandle(ctx, handle.Digest(tok["access_token"].(string)))
	if bytes.Equal(g.Upstream["idp"].Ciphertext, before.Ciphertext) {
		t.Fatal("the IdP tokens were not renewed on refresh")
	}

	h.IdP.Disable(t, idp.Alice)
	status, m, _ := h.postForm(h.URL+"/oauth/token", url.Values{"grant_type": {"refresh_token"}, "client_id": {"cli"}, "refresh_token": {tok["refresh_token"].(string)}})
	if status != 400 || m["error"] != "invalid_grant" {
		t.Fatalf("refresh of a disabled user: %d %v", status, m)
	}
	_, g, _ = h.Store.ResolveHandle(ctx, handle.Digest(tok["access_token"].(string)))
	if !g.Revoked() || g.RevokeReason != "identity provider refused refresh" {
		t.Fatalf("grant after IdP refusal: %+v", g)
	}
	var refused, revoked bool
	for _, ev := range h.Audit(t) {
		refused = refused || (ev.Type == "idp_refresh_refused" && ev.Subject == idp.Alice && ev.GrantID == g.ID)
		revoked = revoked || (ev.Type == "grant_revoked" && ev.GrantID == g.ID)
	}
	if !refused || !revoked {
		t.Fatalf("audit: refused=%v revoked=%v %v", refused, revoked, h.AuditTypes(t))
	}
}

// TestUnverifiedEmailIsDropped: an IdP email with email_verified=false
// must not become an identity attribute policies trust.
func TestUnverifiedEmailIsDropped(t *testing.T) {
	h := start(t, 0, func(o *oauth.Options) {
		o.Clients = []oauth.Client{{ID: "cli", RedirectURIs: []string{"http://127.0.0.1:9/cb"}, SkipConsent: true}}
	})
	h.IdP.LoginAs(t, idp.Mallory)
	// redirect_uri is omitted (single registered URI) from both requests.
	tok := h.codeGrant(t, h.ResourceURL("files"), false)
	_, g, _ := h.Store.ResolveHandle(context.Background(), handle.Digest(tok["access_token"].(string)))
	if g.Subject != idp.Mallory || g.Email != "" {
		t.Fatalf("unverified email kept: %+v", g)
	}
}

// TestMCPTypeScriptSDKClient: the official SDK's auth() discovers Warden
// from the MCP server URL, registers, authorizes (headless browser through
// the IdP and consent), exchanges the code and refreshes.
func TestMCPTypeScriptSDKClient(t *testing.T) {
	h := start(t, 0, nil)
	node := idp.Node(t)
	const redirect = "http://127.0.0.1:33418/oauth/callback"
	arg, _ := json.Marshal(map[string]string{"serverUrl": h.ResourceURL("hr"), "redirectUrl": redirect})
	cmd := exec.Command(node, "oauthflow/sdk_client.mjs", string(arg))
	cmd.Dir = idp.TestDir()
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("sdk client: %v\n%s\nidp:\n%s", err, stderr.String(), h.IdP.Stderr())
	}
	var res struct {
		Steps            []string       `json:"steps"`
		AuthorizationURL string         `json:"authorizationUrl"`
		CallbackState    string         `json:"callbackState"`
		CallbackIss      string         `json:"callbackIss"`
		ClientID         string         `json:"clientId"`
		First            map[string]any `json:"first"`
		Second           map[string]any `json:"second"`
	}
	if err := json.Unmarshal(out, &res); err != nil {
		t.Fatalf("sdk output %q: %v", out, err)
	}
	if strings.Join(res.Steps, ",") != "REDIRECT,AUTHORIZED,AUTHORIZED" {
		t.Fatalf("sdk steps %v", res.Steps)
	}
	au, _ := url.Parse(res.AuthorizationURL)
	aq := au.Query()
	if aq.Get("code_challenge_method") != "S256" || aq.Get("resource") != h.ResourceURL("hr") || aq.Get("scope") != "hr:read hr:write" ||
		aq.Get("client_id") != res.ClientID {
		t.Fatalf("sdk authorization request: %s", res.AuthorizationURL)
	}
	if res.CallbackState != aq.Get("state") || res.CallbackIss != h.Server.Issuer() {
		t.Fatalf("callback state %q iss %q", res.CallbackState, res.CallbackIss)
	}
	c, err := h.Store.GetClient(context.Background(), res.ClientID)
	if err != nil || c.Source != "dcr" || c.Name != "MCP TypeScript SDK (Warden test)" {
		t.Fatalf("sdk registration: %+v %v", c, err)
	}
	first, second := res.First["refresh_token"], res.Second["refresh_token"]
	if first == nil || second == nil || first == second || res.First["access_token"] == res.Second["access_token"] {
		t.Fatalf("refresh did not rotate: %v / %v", res.First, res.Second)
	}
	hd, g, err := h.Store.ResolveHandle(context.Background(), handle.Digest(res.Second["access_token"].(string)))
	if err != nil || hd.Resources[0] != h.ResourceURL("hr") || g.Subject != idp.Alice || g.ClientID != res.ClientID {
		t.Fatalf("sdk token: %+v %+v %v", hd, g, err)
	}
	old, err := h.Store.GetHandle(context.Background(), handle.Digest(first.(string)))
	if err != nil || old.UsedAt.IsZero() {
		t.Fatalf("rotated refresh handle not marked used: %+v %v", old, err)
	}
}

// TestConcurrentUpstreamRefresh: the IdP rotates refresh tokens and treats
// reuse as theft, so concurrent users of a grant's IdP token (ext_authz in
// "idp" credential mode) must not refresh it in parallel.
func TestConcurrentUpstreamRefresh(t *testing.T) {
	h := start(t, time.Minute, func(o *oauth.Options) {
		o.Clients = []oauth.Client{{ID: "cli", RedirectURIs: []string{"http://127.0.0.1:9/cb"}, SkipConsent: true}}
	})
	tok := h.codeGrant(t, h.ResourceURL("files"), false)
	ctx := context.Background()
	_, g, _ := h.Store.ResolveHandle(ctx, handle.Digest(tok["access_token"].(string)))
	// The IdP token (60s) is now within the refresh margin (1m).
	h.Clock.Advance(30 * time.Second)
	// Callers holding a stale copy of the grant must not refresh with the
	// IdP refresh token another caller already rotated.
	for i := 0; i < 3; i++ {
		if _, _, err := h.Server.IdPAccessToken(ctx, g); err != nil {
			t.Fatalf("IdPAccessToken with a stale grant, call %d: %v", i, err)
		}
	}
	errs := make(chan error, 6)
	for i := 0; i < cap(errs); i++ {
		go func() {
			_, _, err := h.Server.IdPAccessToken(ctx, g) // every caller holds the same stale grant
			errs <- err
		}()
	}
	for i := 0; i < cap(errs); i++ {
		if err := <-errs; err != nil {
			t.Errorf("IdPAccessToken: %v", err)
		}
	}
	if g, _ = h.Store.GetGrant(ctx, g.ID); g.Revoked() {
		t.Fatalf("concurrent refreshes got the grant revoked: %s\n%s", g.RevokeReason, h.IdP.Stderr())
	}
}
