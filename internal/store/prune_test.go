package store_test

import (
	"context"
	"testing"
	"time"

	"github.com/warden-mcp/warden/internal/store"
)

func TestPruneGrants(t *testing.T) {
	st, err := store.OpenBadger(t.TempDir(), store.BadgerOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	ctx := context.Background()
	now := time.Now()
	day := 24 * time.Hour
	for _, g := range []store.Grant{
		{ID: "live"},
		{ID: "live-expiring", ExpiresAt: now.Add(day)},
		{ID: "just-expired", ExpiresAt: now.Add(-time.Hour)},
		{ID: "long-expired", ExpiresAt: now.Add(-10 * day)},
		{ID: "just-revoked", RevokedAt: now.Add(-time.Hour)},
		{ID: "long-revoked", RevokedAt: now.Add(-10 * day)},
	} {
		if err := st.CreateGrant(ctx, g); err != nil {
			t.Fatal(err)
		}
	}
	n, err := store.PruneGrants(ctx, st, now, 7*day)
	if err != nil || n != 2 {
		t.Fatalf("pruned %d (%v), want 2", n, err)
	}
	left, _ := st.ListGrants(ctx, store.GrantFilter{IncludeRevoked: true})
	ids := map[string]bool{}
	for _, g := range left {
		ids[g.ID] = true
	}
	if ids["long-expired"] || ids["long-revoked"] || !ids["just-revoked"] || !ids["just-expired"] || !ids["live"] {
		t.Fatalf("left %v", ids)
	}
}
