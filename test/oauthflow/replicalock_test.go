package oauthflow

import (
	"context"
	"testing"
	"time"

	"github.com/warden-mcp/warden/internal/handle"
	"github.com/warden-mcp/warden/internal/store"
	"github.com/warden-mcp/warden/internal/store/postgres"
	"github.com/warden-mcp/warden/internal/store/postgres/pgtest"
	"github.com/warden-mcp/warden/oauth"
)

// lockingStore is the harness's store with a real PostgreSQL store's
// advisory locks: what a replica on PostgreSQL has, the records staying
// in Badger.
type lockingStore struct {
	store.Store
	locks *postgres.Store
}

func (s lockingStore) Lock(ctx context.Context, key string) (func(), error) {
	return s.locks.Lock(ctx, key)
}

// TestUpstreamRefreshWaitsForAnotherReplica: spending a grant's IdP
// refresh token takes the store's lock across replicas, not only this
// process's mutex. Another replica (a second PostgreSQL session on the
// same schema) holds the grant's refresh lock: this replica's refresh
// waits, and the IdP sees no refresh until the lock is released, then
// exactly one. Without the shared lock, the MCP client's refresh on one
// replica and a Check's on another could present the same rotated
// refresh token twice, which the IdP treats as theft.
func TestUpstreamRefreshWaitsForAnotherReplica(t *testing.T) {
	dsn, _ := pgtest.Schema(t)
	ctx := context.Background()
	open := func() *postgres.Store {
		s, err := postgres.Open(ctx, postgres.Options{DSN: dsn})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = s.Close() })
		return s
	}
	here, other := open(), open()
	h := startWrapped(t, time.Minute, func(st store.Store) store.Store { return lockingStore{Store: st, locks: here} }, func(o *oauth.Options) {
		o.Clients = []oauth.Client{{ID: "cli", RedirectURIs: []string{"http://127.0.0.1:9/cb"}, SkipConsent: true}}
	})
	tok := h.codeGrant(t, h.ResourceURL("files"), false)
	_, g, err := h.Store.ResolveHandle(ctx, handle.Digest(tok["access_token"].(string)))
	if err != nil {
		t.Fatal(err)
	}
	// The IdP token (60s) is now within the refresh margin (1m).
	h.Clock.Advance(30 * time.Second)
	before := h.IdP.Counts(t)["refresh_token"]

	unlock, err := other.Lock(ctx, "oauth/idp-refresh/"+g.ID)
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() {
		_, _, err := h.Server.IdPAccessToken(ctx, g)
		done <- err
	}()
	// While the other replica holds the lock, this one must not have
	// refreshed. (A wait, not a timing bound: a broken lock shows up as a
	// refresh here on any machine that gets the goroutine to the IdP
	// within it; a slow machine can only make the test pass vacuously,
	// never fail wrongly.)
	select {
	case err := <-done:
		t.Fatalf("IdPAccessToken returned (%v) while another replica held the grant's refresh lock", err)
	case <-time.After(time.Second):
	}
	if n := h.IdP.Counts(t)["refresh_token"]; n != before {
		t.Fatalf("the IdP saw %d refreshes while another replica held the lock", n-before)
	}
	unlock()
	if err := <-done; err != nil {
		t.Fatalf("IdPAccessToken after the lock was released: %v", err)
	}
	if n := h.IdP.Counts(t)["refresh_token"]; n != before+1 {
		t.Fatalf("IdP refreshes after the release: %d, want 1", n-before)
	}
	if g, _ = h.Store.GetGrant(ctx, g.ID); g.Revoked() {
		t.Fatalf("grant revoked: %s", g.RevokeReason)
	}
}
