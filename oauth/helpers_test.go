package oauth_test

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/url"
	"strings"
	"testing"

	"github.com/warden-mcp/warden/internal/handle"
	"github.com/warden-mcp/warden/internal/store"
	"github.com/warden-mcp/warden/oauth/oauthtest"
)

const redirect = "http://127.0.0.1:7777/callback"

type env struct {
	*oauthtest.Env
	t *testing.T
}

func newEnv(t *testing.T, o oauthtest.EnvOptions) *env {
	return &env{Env: oauthtest.NewEnv(t, o), t: t}
}

func (e *env) res(name string) string { return e.ResourceURL(name) }

// do sends a request and decodes a JSON body when there is one.
func (e *env) do(method, path string, body io.Reader, hdr http.Header) (*http.Response, map[string]any) {
	e.t.Helper()
	req, err := http.NewRequest(method, e.URL+path, body)
	if err != nil {
		e.t.Fatal(err)
	}
	for k, v := range hdr {
		req.Header[k] = v
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		e.t.Fatal(err)
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	var m map[string]any
	if strings.Contains(resp.Header.Get("Content-Type"), "json") {
		if err := json.Unmarshal(raw, &m); err != nil {
			e.t.Fatalf("%s %s: bad JSON %q: %v", method, path, raw, err)
		}
	}
	return resp, m
}

// register performs dynamic client registration.
func (e *env) register(meta map[string]any, hdr http.Header) (int, map[string]any) {
	e.t.Helper()
	raw, _ := json.Marshal(meta)
	if hdr == nil {
		hdr = http.Header{}
	}
	hdr.Set("Content-Type", "application/json")
	resp, m := e.do(http.MethodPost, "/oauth/register", bytes.NewReader(raw), hdr)
	return resp.StatusCode, m
}

// publicClient registers a public client allowed to refresh.
func (e *env) publicClient() string {
	e.t.Helper()
	code, m := e.register(map[string]any{
		"client_name": "Test MCP Client", "redirect_uris": []string{redirect},
		"token_endpoint_auth_method": "none", "grant_types": []string{"authorization_code", "refresh_token"},
	}, nil)
	if code != http.StatusCreated {
		e.t.Fatalf("register: %d %v", code, m)
	}
	return m["client_id"].(string)
}

type authz struct {
	client, redirectURI, challenge, method, scope string
	resources                                     []string
}

func (e *env) authURL(a authz) string {
	q := url.Values{"response_type": {"code"}, "client_id": {a.client}, "state": {"st-123"}}
	if a.redirectURI != "" {
		q.Set("redirect_uri", a.redirectURI)
	}
	if a.challenge != "" {
		q.Set("code_challenge", a.challenge)
	}
	if a.method != "" {
		q.Set("code_challenge_method", a.method)
	}
	if a.scope != "" {
		q.Set("scope", a.scope)
	}
	for _, r := range a.resources {
		q.Add("resource", r)
	}
	return e.URL + "/oauth/authorize?" + q.Encode()
}

// code runs the browser flow for a public client and returns the code and
// the PKCE verifier.
func (e *env) code(b *oauthtest.Browser, client string, resources ...string) (code, verifier string) {
	e.t.Helper()
	if len(resources) == 0 {
		resources = []string{e.res("files")}
	}
	verifier, challenge := oauthtest.PKCE()
	back, err := b.Authorize(e.authURL(authz{client: client, redirectURI: redirect, challenge: challenge, method: "S256", resources: resources}), redirect)
	if err != nil {
		e.t.Fatalf("authorize: %v", err)
	}
	q := back.Query()
	if q.Get("error") != "" {
		e.t.Fatalf("authorize returned %s: %s", q.Get("error"), q.Get("error_description"))
	}
	if q.Get("state") != "st-123" || q.Get("iss") != e.Server.Issuer() {
		e.t.Fatalf("redirect lacks state or iss: %s", back)
	}
	return q.Get("code"), verifier
}

// token posts to the token endpoint; user/pass set client_secret_basic.
func (e *env) token(form url.Values, user, pass string) (*http.Response, map[string]any) {
	e.t.Helper()
	hdr := http.Header{"Content-Type": {"application/x-www-form-urlencoded"}}
	req, _ := http.NewRequest(http.MethodPost, e.URL+"/oauth/token", strings.NewReader(form.Encode()))
	req.Header = hdr
	if user != "" {
		req.SetBasicAuth(url.QueryEscape(user), url.QueryEscape(pass))
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		e.t.Fatal(err)
	}
	defer resp.Body.Close()
	var m map[string]any
	_ = json.NewDecoder(resp.Body).Decode(&m)
	return resp, m
}

func (e *env) exchange(client, code, verifier string) (*http.Response, map[string]any) {
	return e.token(url.Values{"grant_type": {"authorization_code"}, "client_id": {client}, "code": {code},
		"code_verifier": {verifier}, "redirect_uri": {redirect}, "resource": {e.res("files")}}, "", "")
}

// mustTokens runs the whole flow and returns the token response.
func (e *env) mustTokens(client string) map[string]any {
	e.t.Helper()
	code, verifier := e.code(oauthtest.NewBrowser(), client)
	resp, m := e.exchange(client, code, verifier)
	if resp.StatusCode != http.StatusOK {
		e.t.Fatalf("token: %d %v", resp.StatusCode, m)
	}
	return m
}

// resolve looks a raw handle up the way ext_authz does.
func (e *env) resolve(raw string) (store.Handle, store.Grant, error) {
	return e.Store.ResolveHandle(context.Background(), handle.Digest(raw))
}

func (e *env) grant(id string) store.Grant {
	e.t.Helper()
	g, err := e.Store.GetGrant(context.Background(), id)
	if err != nil {
		e.t.Fatal(err)
	}
	return g
}

func wantOAuthError(t *testing.T, resp *http.Response, m map[string]any, status int, code string) {
	t.Helper()
	if resp.StatusCode != status || m["error"] != code {
		t.Fatalf("want %d %s, got %d %v", status, code, resp.StatusCode, m)
	}
}
