package upstream_test

import (
	"context"
	"crypto/rand"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/warden-mcp/warden/internal/audit"
	"github.com/warden-mcp/warden/internal/seal"
	"github.com/warden-mcp/warden/internal/store"
	"github.com/warden-mcp/warden/internal/upstream"
)

type fixture struct {
	st    *store.Badger
	ring  *seal.Keyring
	trail *audit.Trail
	m     *upstream.Providers
	// removed lists the providers whose accounts were revoked.
	removed []string
}

func newFixture(t *testing.T) *fixture {
	t.Helper()
	st, err := store.OpenBadger(t.TempDir(), store.BadgerOptions{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = st.Close() })
	var k [seal.KeySize]byte
	_, _ = rand.Read(k[:])
	ring, err := seal.New("k1", map[string][]byte{"k1": k[:]})
	if err != nil {
		t.Fatal(err)
	}
	trail, err := audit.Open(context.Background(), st, audit.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = trail.Close(context.Background()) })
	f := &fixture{st: st, ring: ring, trail: trail}
	f.m = upstream.NewProviders(st, ring, trail, nil, func(_ context.Context, _, name string) error {
		f.removed = append(f.removed, name)
		return nil
	})
	return f
}

func (f *fixture) events(t *testing.T) []store.AuditEvent {
	t.Helper()
	evs, err := f.st.ListAudit(context.Background(), 0, 1000)
	if err != nil {
		t.Fatal(err)
	}
	return evs
}

func TestProviderValidation(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	for _, tc := range []struct {
		name string
		spec upstream.ProviderSpec
		want string
	}{
		{"bad name", upstream.ProviderSpec{Name: "Git Hub", ClientID: "c", AuthorizeURL: "https://a", TokenURL: "https://t"}, "name"},
		{"no client id", upstream.ProviderSpec{Name: "gh", AuthorizeURL: "https://a", TokenURL: "https://t"}, "client_id: required"},
		{"no endpoints", upstream.ProviderSpec{Name: "gh", ClientID: "c"}, "authorize_url: required"},
		{"plain http off loopback", upstream.ProviderSpec{Name: "gh", ClientID: "c", AuthorizeURL: "http://github.com/a", TokenURL: "https://t"}, "must be https"},
		{"credentials in url", upstream.ProviderSpec{Name: "gh", ClientID: "c", AuthorizeURL: "https://u:p@github.com/a", TokenURL: "https://t"}, "without credentials"},
		{"unknown kind", upstream.ProviderSpec{Name: "gh", Kind: "saml"}, `kind "saml"`},
		{"api key with oauth fields", upstream.ProviderSpec{Name: "k", Kind: "api_key", ClientID: "c"}, "take only a header"},
		{"api key bad header", upstream.ProviderSpec{Name: "k", Kind: "api_key", Header: "X Key"}, "not a valid header name"},
		{"header on oauth", upstream.ProviderSpec{Name: "gh", ClientID: "c", AuthorizeURL: "https://a", TokenURL: "https://t", Header: "X-Key"}, "only valid for api_key"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := f.m.Add(ctx, "token:admin", tc.spec)
			if !errors.Is(err, upstream.ErrInvalidProvider) || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("got %v, want ErrInvalidProvider naming %q", err, tc.want)
			}
			if strings.Contains(err.Error(), "u:p@") {
				t.Fatalf("the error repeats a URL: %v", err)
			}
		})
	}
	if list, _ := f.m.List(ctx); len(list) != 0 {
		t.Fatalf("invalid providers were stored: %+v", list)
	}
}

// The client secret is sealed for the provider, never stored or audited
// in the clear; discovery fills the endpoints from the issuer's metadata.
func TestProviderSecretSealedAndDiscovery(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	var iss string
	md := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/.well-known/oauth-authorization-server" {
			http.NotFound(w, r)
			return
		}
		_ = json.NewEncoder(w).Encode(map[string]string{"issuer": iss, "authorization_endpoint": iss + "/authorize", "token_endpoint": iss + "/token"})
	}))
	t.Cleanup(md.Close)
	iss = md.URL
	const secret = "s3cret-provider-client-secret"
	p, err := f.m.Add(ctx, "token:admin", upstream.ProviderSpec{Name: "gh", Issuer: iss, ClientID: "cid", ClientSecret: secret, Scopes: []string{"repo"}})
	if err != nil {
		t.Fatal(err)
	}
	if p.AuthorizeURL != iss+"/authorize" || p.TokenURL != iss+"/token" || p.ClientSecret == nil || p.Source != "api" {
		t.Fatalf("provider: %+v", p)
	}
	raw, _ := json.Marshal(p)
	if strings.Contains(string(raw), secret) {
		t.Fatal("the stored provider holds the secret in the clear")
	}
	got, err := f.ring.Open(*p.ClientSecret, []byte(upstream.ProviderAAD("gh")))
	if err != nil || string(got) != secret {
		t.Fatalf("sealed secret: %q %v", got, err)
	}
	// Sealed for this provider only.
	if _, err := f.ring.Open(*p.ClientSecret, []byte(upstream.ProviderAAD("other"))); err == nil {
		t.Fatal("the secret opens under another provider's name")
	}
	// Discovery refuses metadata naming another issuer.
	bad := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		_ = json.NewEncoder(w).Encode(map[string]string{"issuer": "https://evil.example", "authorization_endpoint": "https://evil.example/a", "token_endpoint": "https://evil.example/t"})
	}))
	t.Cleanup(bad.Close)
	if _, err := f.m.Add(ctx, "token:admin", upstream.ProviderSpec{Name: "evil", Issuer: bad.URL, ClientID: "c"}); !errors.Is(err, upstream.ErrInvalidProvider) {
		t.Fatalf("mismatched issuer metadata accepted: %v", err)
	}
	if err := f.trail.Close(ctx); err != nil {
		t.Fatal(err)
	}
	for _, ev := range f.events(t) {
		if b, _ := json.Marshal(ev); strings.Contains(string(b), secret) {
			t.Fatalf("audit event %s holds the secret", ev.Type)
		}
	}
}

// Reconcile adds, keeps (an unchanged entry is not rewritten), updates and
// removes the config file's providers and leaves API providers alone;
// removal revokes the provider's accounts.
func TestProviderReconcile(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	gh := upstream.ProviderSpec{Name: "gh", ClientID: "c", ClientSecret: "one", AuthorizeURL: "https://gh.example/a", TokenURL: "https://gh.example/t"}
	keys := upstream.ProviderSpec{Name: "keys", Kind: "api_key", Header: "X-Api-Key"}
	if _, err := f.m.Add(ctx, "token:admin", upstream.ProviderSpec{Name: "api", Kind: "api_key"}); err != nil {
		t.Fatal(err)
	}
	if err := f.m.Reconcile(ctx, []upstream.ProviderSpec{gh, keys}); err != nil {
		t.Fatal(err)
	}
	first, _ := f.st.GetProvider(ctx, "gh")
	if err := f.m.Reconcile(ctx, []upstream.ProviderSpec{gh, keys}); err != nil {
		t.Fatal(err)
	}
	if again, _ := f.st.GetProvider(ctx, "gh"); again.Version != first.Version {
		t.Fatalf("an unchanged provider was rewritten: version %d -> %d", first.Version, again.Version)
	}
	gh.ClientSecret = "two"
	if err := f.m.Reconcile(ctx, []upstream.ProviderSpec{gh}); err != nil {
		t.Fatal(err)
	}
	next, _ := f.st.GetProvider(ctx, "gh")
	if raw, _ := f.ring.Open(*next.ClientSecret, []byte(upstream.ProviderAAD("gh"))); string(raw) != "two" || next.Version == first.Version {
		t.Fatalf("the new secret did not apply: %q v%d", raw, next.Version)
	}
	if _, err := f.st.GetProvider(ctx, "keys"); !errors.Is(err, store.ErrNotFound) || len(f.removed) != 1 || f.removed[0] != "keys" {
		t.Fatalf("keys not removed with its accounts: %v %v", err, f.removed)
	}
	if _, err := f.st.GetProvider(ctx, "api"); err != nil {
		t.Fatalf("the API provider was touched: %v", err)
	}
	if err := f.m.Reconcile(ctx, []upstream.ProviderSpec{{Name: "api", Kind: "api_key"}}); err == nil || !strings.Contains(err.Error(), "managed through the API") {
		t.Fatalf("a config entry took over an API provider: %v", err)
	}
}
