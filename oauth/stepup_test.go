package oauth_test

import (
	"net/url"
	"slices"
	"testing"

	"github.com/warden-mcp/warden/internal/store"
	"github.com/warden-mcp/warden/oauth/oauthtest"
)

// Step-up (MCP authorization, "Step-Up Authorization Flow"): after a 403
// insufficient_scope naming a scope the server's policy asks for, the
// client re-authorizes with the union of its scopes and the challenged
// ones. The server's step-up scopes are grantable for it; they are not
// required (the protected resource metadata lists only what is), and a
// scope no server declares stays refused.
func TestStepUpScopeIsGrantable(t *testing.T) {
	e := newEnv(t, oauthtest.EnvOptions{Servers: []store.Server{
		{Name: "hr", URL: "http://127.0.0.1:1/mcp", Credential: store.CredentialJWT, Scopes: []string{"hr:read"}, StepUpScopes: []string{"hr:write"}},
	}})
	client := e.publicClient()
	verifier, challenge := oauthtest.PKCE()
	back, err := oauthtest.NewBrowser().Authorize(e.authURL(authz{client: client, redirectURI: redirect, challenge: challenge, method: "S256",
		resources: []string{e.res("hr")}, scope: "hr:read hr:write"}), redirect)
	if err != nil || back.Query().Get("error") != "" {
		t.Fatalf("step-up authorization: %v %s", err, back)
	}
	resp, m := e.token(url.Values{"grant_type": {"authorization_code"}, "client_id": {client}, "code": {back.Query().Get("code")},
		"code_verifier": {verifier}, "redirect_uri": {redirect}, "resource": {e.res("hr")}}, "", "")
	if resp.StatusCode != 200 {
		t.Fatalf("token: %d %v", resp.StatusCode, m)
	}
	h, _, err := e.resolve(m["access_token"].(string))
	if err != nil || !slices.Equal(h.Scopes, []string{"hr:read", "hr:write"}) {
		t.Fatalf("handle scopes %v (%v)", h.Scopes, err)
	}

	_, prm := e.do("GET", "/.well-known/oauth-protected-resource/mcp/hr", nil, nil)
	if s := jsonString(prm["scopes_supported"]); s != `["hr:read"]` {
		t.Errorf("PRM scopes_supported = %s, want only the required scope", s)
	}
	if got := e.authorizeError(authz{client: client, redirectURI: redirect, challenge: challenge, method: "S256",
		resources: []string{e.res("hr")}, scope: "hr:read hr:delete"}).Get("error"); got != "invalid_scope" {
		t.Errorf("an undeclared scope: %q", got)
	}
}
