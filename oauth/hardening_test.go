package oauth_test

// Regression tests for the findings of issue 13 (adversarial round) and
// the OAuth part of issue 8; docs/security.md maps each finding to its
// test.

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"net/url"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/warden-mcp/warden/internal/store"
	"github.com/warden-mcp/warden/oauth"
	"github.com/warden-mcp/warden/oauth/oauthtest"
)

// TestAuthorizeBoundsParameters: an unauthenticated authorization request
// cannot make Warden store megabytes (state, scope, resources) or parse an
// unbounded form.
func TestAuthorizeBoundsParameters(t *testing.T) {
	e := newEnv(t, oauthtest.EnvOptions{})
	client := e.publicClient()
	_, challenge := oauthtest.PKCE()
	base := authz{client: client, redirectURI: redirect, challenge: challenge, method: "S256", resources: []string{e.res("files")}}
	t.Run("state", func(t *testing.T) {
		u := strings.Replace(e.authURL(base), "state=st-123", "state="+strings.Repeat("s", 4000), 1)
		_, err := oauthtest.NewBrowser().Authorize(u, redirect)
		if pe, ok := err.(*oauthtest.PageError); !ok || pe.Status != 400 || !strings.Contains(pe.Text, "state is too long") {
			t.Fatalf("a 4000-byte state: %v", err)
		}
	})
	t.Run("scope", func(t *testing.T) {
		a := base
		a.scope = strings.Repeat("files:read ", 200)
		if got := e.authorizeError(a).Get("error"); got != "invalid_scope" {
			t.Fatalf("long scope: %s", got)
		}
	})
	t.Run("resources", func(t *testing.T) {
		a := base
		for i := 0; i < 20; i++ {
			a.resources = append(a.resources, e.res("files"))
		}
		if got := e.authorizeError(a).Get("error"); got != "invalid_target" {
			t.Fatalf("20 resources: %s", got)
		}
	})
	t.Run("form body", func(t *testing.T) {
		form := url.Values{"client_id": {client}, "state": {"x"}, "junk": {strings.Repeat("j", 1<<20)}}
		resp, err := http.PostForm(e.URL+"/oauth/authorize", form)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != 400 {
			t.Fatalf("1 MiB authorize form: %d", resp.StatusCode)
		}
	})
	t.Run("login form", func(t *testing.T) {
		b := oauthtest.NewBrowser()
		b.Username = strings.Repeat("u", 5000)
		_, err := b.Authorize(e.authURL(base), redirect)
		if pe, ok := err.(*oauthtest.PageError); !ok || pe.Status != 400 {
			t.Fatalf("5000-byte user name: %v", err)
		}
	})
	t.Run("registration", func(t *testing.T) {
		uris := make([]string, 50)
		for i := range uris {
			uris[i] = fmt.Sprintf("http://127.0.0.1:%d/cb", 1000+i)
		}
		if code, m := e.register(map[string]any{"redirect_uris": uris, "token_endpoint_auth_method": "none"}, nil); code != 400 {
			t.Fatalf("50 redirect URIs: %d %v", code, m)
		}
		resp, _ := e.do(http.MethodPost, "/oauth/register", strings.NewReader(`{"client_name":"`+strings.Repeat("n", 100<<10)+`"}`), http.Header{"Content-Type": {"application/json"}})
		if resp.StatusCode != http.StatusRequestEntityTooLarge {
			t.Fatalf("100 KiB registration: %d", resp.StatusCode)
		}
	})
}

// TestPendingLoginsAreBoundedPerSource: sign-ins started and never
// finished are stored records; one source cannot create more than its
// share within the login lifetime.
func TestPendingLoginsAreBoundedPerSource(t *testing.T) {
	e := newEnv(t, oauthtest.EnvOptions{Configure: func(o *oauth.Options) { o.Limits.PendingLoginsPerSource = 3 }})
	client := e.publicClient()
	_, challenge := oauthtest.PKCE()
	u := e.authURL(authz{client: client, redirectURI: redirect, challenge: challenge, method: "S256", resources: []string{e.res("files")}})
	start := func(xff string) int {
		req, _ := http.NewRequest(http.MethodGet, u, nil)
		if xff != "" {
			req.Header.Set("X-Forwarded-For", xff)
		}
		resp, err := oauthtest.NewBrowser().Client.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	for i := 0; i < 3; i++ {
		if code := start("203.0.113.9"); code != http.StatusSeeOther {
			t.Fatalf("sign-in %d: %d", i, code)
		}
	}
	if code := start("203.0.113.9"); code != http.StatusTooManyRequests {
		t.Fatalf("4th pending sign-in from one source: %d", code)
	}
	// Another address of the same IPv6 /64 counts as the same source.
	for i := 0; i < 3; i++ {
		start(fmt.Sprintf("2001:db8::%d", i+1))
	}
	if code := start("2001:db8::ff"); code != http.StatusTooManyRequests {
		t.Fatalf("rotating through a /64: %d", code)
	}
	if code := start("198.51.100.4"); code != http.StatusSeeOther {
		t.Fatalf("another source: %d", code)
	}
	e.Clock.Advance(10 * time.Minute)
	if code := start("203.0.113.9"); code != http.StatusSeeOther {
		t.Fatalf("after the login lifetime: %d", code)
	}
}

// TestForwardedForOnlyFromTrustedProxies: X-Forwarded-For from a peer
// that is not a trusted proxy is ignored by rate limits and by the audit
// trail's source address (2,000 registrations in 4 s with a rotating XFF
// before the fix).
func TestForwardedForOnlyFromTrustedProxies(t *testing.T) {
	meta := map[string]any{"redirect_uris": []string{redirect}, "token_endpoint_auth_method": "none"}
	t.Run("untrusted peer", func(t *testing.T) {
		e := newEnv(t, oauthtest.EnvOptions{Configure: func(o *oauth.Options) {
			o.RateLimit.RegisterPerMinute = 3
			o.TrustedProxies = []netip.Prefix{netip.MustParsePrefix("10.9.9.9/32")}
		}})
		for i := 0; i < 3; i++ {
			if code, _ := e.register(meta, http.Header{"X-Forwarded-For": {fmt.Sprintf("198.51.100.%d", i)}}); code != 201 {
				t.Fatalf("registration %d: %d", i, code)
			}
		}
		if code, _ := e.register(meta, http.Header{"X-Forwarded-For": {"198.51.100.200"}}); code != 429 {
			t.Fatalf("a rotating X-Forwarded-For from an untrusted peer escaped the limit: %d", code)
		}
		for _, ev := range e.Audit(t) {
			if ev.Type == "client_registered" && ev.Details["source_addr"] != "127.0.0.1" {
				t.Fatalf("audit believed a forged address: %v", ev.Details["source_addr"])
			}
		}
	})
	t.Run("trusted proxy chain", func(t *testing.T) {
		e := newEnv(t, oauthtest.EnvOptions{Configure: func(o *oauth.Options) {
			o.TrustedProxies = []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8"), netip.MustParsePrefix("10.0.0.0/8")}
		}})
		// The client forged 6.6.6.6; the outer proxy 10.1.2.3 appended the
		// address it saw, 203.0.113.50, and the loopback peer is trusted.
		if code, _ := e.register(meta, http.Header{"X-Forwarded-For": {"6.6.6.6, 203.0.113.50, 10.1.2.3"}}); code != 201 {
			t.Fatal(code)
		}
		evs := e.Audit(t)
		if got := evs[len(evs)-1].Details["source_addr"]; got != "203.0.113.50" {
			t.Fatalf("source_addr %v, want the address the trusted proxy saw", got)
		}
	})
}

// TestUnusedRegistrationsExpire: a dynamically registered client that
// never completes a grant goes away; one in use stays.
func TestUnusedRegistrationsExpire(t *testing.T) {
	e := newEnv(t, oauthtest.EnvOptions{Configure: func(o *oauth.Options) { o.Registration.UnusedClientTTL = time.Hour }})
	unused, used := e.publicClient(), e.publicClient()
	e.mustTokens(used)
	e.Clock.Advance(2 * time.Hour)
	if _, err := e.Store.GetClient(context.Background(), unused); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("unused registration still there: %v", err)
	}
	if c, err := e.Store.GetClient(context.Background(), used); err != nil || !c.ExpiresAt.IsZero() {
		t.Fatalf("client in use expired: %+v %v", c, err)
	}
}

// TestCIMDFailuresCachedAndFetchesLimitedPerHost: unauthenticated requests
// naming a metadata document cannot make Warden fetch it again and again.
func TestCIMDFailuresCachedAndFetchesLimitedPerHost(t *testing.T) {
	var fetches atomic.Int64
	docs := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fetches.Add(1)
		http.NotFound(w, r)
	}))
	defer docs.Close()
	e := newEnv(t, oauthtest.EnvOptions{HTTPClient: docs.Client(), Configure: func(o *oauth.Options) {
		o.CIMD.AllowPrivateAddresses = true
		o.CIMD.FetchesPerHostPerMinute = 3
	}})
	_, challenge := oauthtest.PKCE()
	try := func(id string) {
		_, err := oauthtest.NewBrowser().Authorize(e.authURL(authz{client: id, redirectURI: redirect, challenge: challenge, method: "S256", resources: []string{e.res("files")}}), redirect)
		if pe, ok := err.(*oauthtest.PageError); !ok || pe.Status != 400 {
			t.Fatalf("%s: %v", id, err)
		}
	}
	for i := 0; i < 5; i++ {
		try(docs.URL + "/broken.json")
	}
	if n := fetches.Load(); n != 1 {
		t.Fatalf("a failing document was fetched %d times, want 1", n)
	}
	for i := 0; i < 5; i++ {
		try(fmt.Sprintf("%s/other-%d.json", docs.URL, i))
	}
	if n := fetches.Load(); n != 3 {
		t.Fatalf("%d fetches from one host in a minute, want 3", n)
	}
	e.Clock.Advance(2 * time.Minute)
	try(docs.URL + "/broken.json")
	if n := fetches.Load(); n != 4 {
		t.Fatalf("after the failure cache expired: %d fetches", n)
	}
}

// TestScopesDoNotLeakAcrossServers: the global scopes_supported lists no
// server's scopes, and a server's resource metadata lists exactly its own
// (an empty list, not none, for a server that requires none), so a client
// falling back to the global list (mcp-remote) asks no other server's
// scopes at sign-in.
func TestScopesDoNotLeakAcrossServers(t *testing.T) {
	e := newEnv(t, oauthtest.EnvOptions{Servers: []store.Server{
		{Name: "files", URL: "http://127.0.0.1:1/mcp", Credential: store.CredentialJWT},
		{Name: "hr", URL: "http://127.0.0.1:2/mcp", Credential: store.CredentialJWT, Scopes: []string{"hr:read", "hr:write"}},
	}})
	_, m := e.do(http.MethodGet, "/.well-known/oauth-authorization-server", nil, nil)
	if s := jsonString(m["scopes_supported"]); strings.Contains(s, "hr:") {
		t.Fatalf("global scopes_supported lists a server's scopes: %s", s)
	}
	_, prm := e.do(http.MethodGet, "/.well-known/oauth-protected-resource/mcp/files", nil, nil)
	if jsonString(prm["scopes_supported"]) != `[]` {
		t.Fatalf("files PRM scopes_supported = %v", prm["scopes_supported"])
	}
	// A sign-in for files with the global list's scopes gets no hr scope.
	client := e.publicClient()
	tok := e.mustTokens(client)
	if s, _ := tok["scope"].(string); strings.Contains(s, "hr:") {
		t.Fatalf("files token carries hr scopes: %q", s)
	}
}

// TestIssOnEveryAuthorizationResponse (RFC 9207, issue 8): success,
// errors before sign-in, a denied consent and an IdP-side failure all
// carry iss.
func TestIssOnEveryAuthorizationResponse(t *testing.T) {
	e := newEnv(t, oauthtest.EnvOptions{})
	client := e.publicClient()
	_, challenge := oauthtest.PKCE()
	a := authz{client: client, redirectURI: redirect, challenge: challenge, method: "S256", resources: []string{e.res("files")}}
	check := func(name string, b *oauthtest.Browser, u string) {
		back, err := b.Authorize(u, redirect)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if back.Query().Get("iss") != e.Server.Issuer() {
			t.Fatalf("%s: no iss in %s", name, back)
		}
	}
	check("success", oauthtest.NewBrowser(), e.authURL(a))
	bad := a
	bad.scope = "nope"
	check("invalid_scope", oauthtest.NewBrowser(), e.authURL(bad))
	deny := oauthtest.NewBrowser()
	deny.Decision = "deny"
	check("access_denied", deny, e.authURL(authz{client: e.publicClient(), redirectURI: redirect, challenge: challenge, method: "S256", resources: []string{e.res("files")}}))
	_, m := e.do(http.MethodGet, "/.well-known/oauth-authorization-server", nil, nil)
	if m["authorization_response_iss_parameter_supported"] != true {
		t.Fatal("metadata does not advertise iss")
	}
}

// TestApplicationTypeRedirectRules (SEP-837): native clients register
// loopback or private-use redirect URIs, web clients https ones.
func TestApplicationTypeRedirectRules(t *testing.T) {
	e := newEnv(t, oauthtest.EnvOptions{})
	for _, tc := range []struct {
		appType, uri string
		want         int
	}{
		{"native", "http://127.0.0.1:3000/cb", 201},
		{"native", "http://localhost:3000/cb", 201},
		{"native", "com.example.app:/cb", 201},
		{"native", "https://app.example/cb", 400},
		{"web", "https://app.example/cb", 201},
		{"web", "http://localhost:3000/cb", 400},
		{"web", "com.example.app:/cb", 400},
		{"spa", "https://app.example/cb", 400},
		// Clients of earlier revisions send none.
		{"", "http://127.0.0.1:3000/cb", 201},
		{"", "https://app.example/cb", 201},
	} {
		meta := map[string]any{"redirect_uris": []string{tc.uri}, "token_endpoint_auth_method": "none"}
		if tc.appType != "" {
			meta["application_type"] = tc.appType
		}
		if code, m := e.register(meta, nil); code != tc.want {
			t.Errorf("%s %s: %d %v, want %d", tc.appType, tc.uri, code, m, tc.want)
		} else if code == 201 && tc.appType != "" && m["application_type"] != tc.appType {
			t.Errorf("%s: registered metadata lacks application_type: %v", tc.appType, m)
		}
	}
}

// TestRegistrationDisabledAcceptsOnlyPreregisteredAndMetadataDocuments:
// turning DCR off also refuses clients registered while it was on.
func TestRegistrationDisabledAcceptsOnlyPreregisteredAndMetadataDocuments(t *testing.T) {
	e := newEnv(t, oauthtest.EnvOptions{Configure: func(o *oauth.Options) {
		o.Registration.Mode = oauth.RegistrationDisabled
		o.Clients = []oauth.Client{{ID: "declared", RedirectURIs: []string{redirect}}}
	}})
	if err := e.Store.CreateClient(context.Background(), store.Client{ID: "c_old", Source: "dcr", RedirectURIs: []string{redirect},
		GrantTypes: []string{"authorization_code"}, Kind: store.KindUser}); err != nil {
		t.Fatal(err)
	}
	_, challenge := oauthtest.PKCE()
	_, err := oauthtest.NewBrowser().Authorize(e.authURL(authz{client: "c_old", redirectURI: redirect, challenge: challenge, method: "S256", resources: []string{e.res("files")}}), redirect)
	if pe, ok := err.(*oauthtest.PageError); !ok || !strings.Contains(pe.Text, "not registered") {
		t.Fatalf("an earlier dynamic registration was accepted: %v", err)
	}
	code, verifier := e.code(oauthtest.NewBrowser(), "declared")
	if resp, m := e.exchange("declared", code, verifier); resp.StatusCode != 200 {
		t.Fatalf("pre-registered client: %v", m)
	}
}

// failingStore refuses every write once broken is set: a full or
// read-only volume.
type failingStore struct {
	store.Store
	broken atomic.Bool
}

var errDiskFull = errors.New("no space left on device")

func (f *failingStore) fail() error {
	if f.broken.Load() {
		return errDiskFull
	}
	return nil
}

func (f *failingStore) PutSession(ctx context.Context, kind, id string, v []byte, ttl time.Duration) error {
	if err := f.fail(); err != nil {
		return err
	}
	return f.Store.PutSession(ctx, kind, id, v, ttl)
}

func (f *failingStore) CreateClient(ctx context.Context, c store.Client) error {
	if err := f.fail(); err != nil {
		return err
	}
	return f.Store.CreateClient(ctx, c)
}

func (f *failingStore) CreateGrant(ctx context.Context, g store.Grant) error {
	if err := f.fail(); err != nil {
		return err
	}
	return f.Store.CreateGrant(ctx, g)
}

func (f *failingStore) CreateHandle(ctx context.Context, h store.Handle) error {
	if err := f.fail(); err != nil {
		return err
	}
	return f.Store.CreateHandle(ctx, h)
}

func (f *failingStore) UpdateHandle(ctx context.Context, d string, fn func(store.Handle) (store.Handle, error)) error {
	if err := f.fail(); err != nil {
		return err
	}
	return f.Store.UpdateHandle(ctx, d, fn)
}

// TestStoreThatCannotWriteAnswersErrors: with writes failing, every
// endpoint answers an error (and issues nothing); none crashes.
func TestStoreThatCannotWriteAnswersErrors(t *testing.T) {
	fs := &failingStore{}
	e := newEnv(t, oauthtest.EnvOptions{WrapStore: func(s store.Store) store.Store { fs.Store = s; return fs }})
	client := e.publicClient()
	code, verifier := e.code(oauthtest.NewBrowser(), client)
	fs.broken.Store(true)

	if code, m := e.register(map[string]any{"redirect_uris": []string{redirect}, "token_endpoint_auth_method": "none"}, nil); code != 500 || m["error"] != "server_error" {
		t.Fatalf("register: %d %v", code, m)
	}
	_, challenge := oauthtest.PKCE()
	back, err := oauthtest.NewBrowser().Authorize(e.authURL(authz{client: client, redirectURI: redirect, challenge: challenge, method: "S256", resources: []string{e.res("files")}}), redirect)
	if err != nil || back.Query().Get("error") != "server_error" {
		t.Fatalf("authorize: %v %v", back, err)
	}
	resp, m := e.exchange(client, code, verifier)
	if resp.StatusCode != 500 || m["error"] != "server_error" || m["access_token"] != nil {
		t.Fatalf("token: %d %v", resp.StatusCode, m)
	}
	fs.broken.Store(false)
	// Healthy again: the flow works.
	e.mustTokens(client)
}
