// Package oauthtest runs Warden's authorization server for tests: a real
// HTTP listener, a real Badger store on disk, a real audit trail, keys and
// a sealing keyring, a controllable clock, and a headless browser that
// walks the sign-in and consent pages. Other packages' end-to-end tests use
// it to obtain real Warden handles.
package oauthtest

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"golang.org/x/crypto/bcrypt"

	"github.com/warden-mcp/warden/internal/audit"
	"github.com/warden-mcp/warden/internal/grant"
	"github.com/warden-mcp/warden/internal/keys"
	"github.com/warden-mcp/warden/internal/seal"
	"github.com/warden-mcp/warden/internal/store"
	"github.com/warden-mcp/warden/oauth"
	"github.com/warden-mcp/warden/oauth/connector"
)

// Clock is a settable clock shared by the server and the store.
type Clock struct {
	mu sync.Mutex
	t  time.Time
}

// NewClock starts at the current time (so Badger's own TTLs, which use the
// real clock, never fire before the logical expiry the tests check).
func NewClock() *Clock { return &Clock{t: time.Now()} }

// Now returns the clock's time.
func (c *Clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

// Advance moves the clock forward.
func (c *Clock) Advance(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

// Static test users of the default static connector.
const (
	User     = "alice"
	Password = "correct horse battery staple"
)

// EnvOptions adjust the environment.
type EnvOptions struct {
	// Configure edits the server's options after Issuer is set to the
	// listener's URL. The default connector is a static one with the
	// user alice.
	Configure func(*oauth.Options)
	// Grants edits the grant service's options (lifetimes).
	Grants func(*grant.Options)
	// Servers are registered MCP servers; default: "files" (scope
	// files:read) and "hr" (scopes hr:read, hr:write).
	Servers    []store.Server
	HTTPClient *http.Client
	// WrapStore, when set, wraps the store the server uses (fault
	// injection: a store that cannot write).
	WrapStore func(store.Store) store.Store
}

// Env is a running authorization server.
type Env struct {
	Server   *oauth.Server
	Store    store.Store
	Trail    *audit.Trail
	HTTP     *httptest.Server
	URL      string
	Options  oauth.Options
	Grants   *grant.Service
	Keyring  *seal.Keyring
	Clock    *Clock
	Registry *prometheus.Registry
}

// NewEnv starts a server; everything stops when the test ends.
func NewEnv(t testing.TB, o EnvOptions) *Env {
	t.Helper()
	e := &Env{Clock: NewClock(), Registry: prometheus.NewRegistry()}
	e.HTTP = httptest.NewUnstartedServer(nil)
	e.URL = "http://" + e.HTTP.Listener.Addr().String()

	hash, err := bcrypt.GenerateFromPassword([]byte(Password), bcrypt.MinCost)
	if err != nil {
		t.Fatal(err)
	}
	st, err := store.OpenBadger(t.TempDir(), store.BadgerOptions{Now: e.Clock.Now})
	if err != nil {
		t.Fatal(err)
	}
	e.Store = st
	t.Cleanup(func() { _ = st.Close() })

	servers := o.Servers
	if servers == nil {
		servers = []store.Server{
			{Name: "files", URL: "http://127.0.0.1:1/mcp", Credential: store.CredentialJWT, Scopes: []string{"files:read"}, Description: "Company files"},
			{Name: "hr", URL: "http://127.0.0.1:2/mcp", Credential: store.CredentialJWT, Scopes: []string{"hr:read", "hr:write"}, Description: "HR records"},
		}
	}
	for _, s := range servers {
		if err := st.CreateServer(context.Background(), s); err != nil {
			t.Fatal(err)
		}
	}
	trail, err := audit.Open(context.Background(), st, audit.Options{Now: e.Clock.Now})
	if err != nil {
		t.Fatal(err)
	}
	e.Trail = trail
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = trail.Close(ctx)
	})
	signer, err := keys.NewEphemeral()
	if err != nil {
		t.Fatal(err)
	}
	var k [seal.KeySize]byte
	_, _ = rand.Read(k[:])
	ring, err := seal.New("k1", map[string][]byte{"k1": k[:]})
	if err != nil {
		t.Fatal(err)
	}
	e.Keyring = ring
	var used store.Store = st
	if o.WrapStore != nil {
		used = o.WrapStore(st)
	}
	gopts := grant.Options{Store: used, Audit: trail, Registerer: e.Registry, Now: e.Clock.Now}
	if o.Grants != nil {
		o.Grants(&gopts)
	}
	e.Grants, err = grant.New(gopts)
	if err != nil {
		t.Fatal(err)
	}
	opts := oauth.Options{
		Issuer: e.URL, ResourceURL: e.ResourceURL,
		Store: used, Grants: e.Grants, Signer: signer, Keyring: ring, Auditor: trail,
		Connector: connector.NewStatic([]connector.StaticUser{
			{Username: User, Email: "alice@example.com", Name: "Alice", Groups: []string{"engineering"}, PasswordHash: string(hash)},
		}),
		ConnectorID: "static",
		CIMD:        oauth.CIMD{Enabled: true},
		Registerer:  e.Registry, Now: e.Clock.Now, HTTPClient: o.HTTPClient,
	}
	if o.Configure != nil {
		o.Configure(&opts)
	}
	e.Options = opts
	srv, err := oauth.New(opts)
	if err != nil {
		t.Fatalf("oauth.New: %v", err)
	}
	e.Server = srv
	e.HTTP.Config.Handler = srv.Handler()
	e.HTTP.Start()
	t.Cleanup(e.HTTP.Close)
	return e
}

// ResourceURL is the canonical resource URL of a server name.
func (e *Env) ResourceURL(name string) string { return e.URL + "/mcp/" + name }

// Audit returns every stored audit event.
func (e *Env) Audit(t testing.TB) []store.AuditEvent {
	t.Helper()
	evs, err := e.Store.ListAudit(context.Background(), 0, 0)
	if err != nil {
		t.Fatal(err)
	}
	return evs
}

// AuditTypes returns the types of the stored audit events in order.
func (e *Env) AuditTypes(t testing.TB) []string {
	var out []string
	for _, ev := range e.Audit(t) {
		out = append(out, ev.Type)
	}
	return out
}

// PKCE returns a fresh S256 code verifier and its challenge.
func PKCE() (verifier, challenge string) {
	b := make([]byte, 32)
	_, _ = rand.Read(b)
	verifier = base64.RawURLEncoding.EncodeToString(b)
	sum := sha256.Sum256([]byte(verifier))
	return verifier, base64.RawURLEncoding.EncodeToString(sum[:])
}
