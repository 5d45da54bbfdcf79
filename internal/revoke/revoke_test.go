package revoke_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/warden-mcp/warden/internal/audit"
	"github.com/warden-mcp/warden/internal/revoke"
	"github.com/warden-mcp/warden/internal/store"
)

func TestRevokeTargets(t *testing.T) {
	ctx := context.Background()
	seed := []store.Grant{
		{ID: "a1", Subject: "alice", ClientID: "c1", Servers: []string{"bi"}},
		{ID: "a2", Subject: "alice", ClientID: "c2", Servers: []string{"bi", "hr"}},
		{ID: "b1", Subject: "bob", ClientID: "c1", Servers: []string{"hr"}},
	}
	cases := []struct {
		name              string
		target            revoke.Target
		revoked, narrowed []string
		consents          int
		stillLive         []string
	}{
		{"grant", revoke.Target{GrantID: "a1"}, []string{"a1"}, nil, 0, []string{"a2", "b1"}},
		{"user", revoke.Target{Subject: "alice"}, []string{"a1", "a2"}, nil, 2, []string{"b1"}},
		{"client", revoke.Target{ClientID: "c1"}, []string{"a1", "b1"}, nil, 2, []string{"a2"}},
		// A grant with other servers loses this one and keeps the rest.
		{"server", revoke.Target{Server: "bi"}, []string{"a1"}, []string{"a2"}, 0, []string{"a2", "b1"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			st, err := store.OpenBadger(t.TempDir(), store.BadgerOptions{})
			if err != nil {
				t.Fatal(err)
			}
			defer st.Close()
			trail, _ := audit.Open(ctx, st, audit.Options{})
			defer trail.Close(ctx)
			for _, g := range seed {
				_ = st.CreateGrant(ctx, g)
				_ = st.PutConsent(ctx, store.Consent{Subject: g.Subject, ClientID: g.ClientID})
			}
			r := revoke.New(st, trail, func() time.Time { return time.Unix(1700000000, 0) })
			res, err := r.Revoke(ctx, "admin:carol", c.target, "test")
			if err != nil {
				t.Fatal(err)
			}
			if !same(res.Revoked, c.revoked) || !same(res.Narrowed, c.narrowed) || res.ConsentsRemoved != c.consents {
				t.Fatalf("result %+v", res)
			}
			live, _ := st.ListGrants(ctx, store.GrantFilter{})
			var ids []string
			for _, g := range live {
				ids = append(ids, g.ID)
			}
			if !same(ids, c.stillLive) {
				t.Fatalf("live grants %v, want %v", ids, c.stillLive)
			}
			if c.target.Server != "" {
				g, _ := st.GetGrant(ctx, "a2")
				if len(g.Servers) != 1 || g.Servers[0] != "hr" {
					t.Fatalf("narrowed grant servers %v", g.Servers)
				}
			}
			for _, id := range c.revoked {
				g, _ := st.GetGrant(ctx, id)
				if g.RevokedBy != "admin:carol" || g.RevokeReason != "test" || !g.RevokedAt.Equal(time.Unix(1700000000, 0)) {
					t.Fatalf("revocation record %+v", g)
				}
			}
			_ = trail.Close(ctx)
			evs, _ := st.ListAudit(ctx, 0, 0)
			if len(evs) != len(c.revoked)+len(c.narrowed)+1 || evs[len(evs)-1].Type != "revoke" {
				t.Fatalf("audit: %d events", len(evs))
			}
		})
	}
}

func TestRevokeRejectsAmbiguousTargets(t *testing.T) {
	for _, tg := range []revoke.Target{{}, {Subject: "a", ClientID: "b"}} {
		_, err := revoke.New(nil, nil, nil).Revoke(context.Background(), "x", tg, "")
		if !errors.Is(err, revoke.ErrInvalidTarget) {
			t.Errorf("%+v: %v", tg, err)
		}
	}
}

func same(a, b []string) bool {
	if len(a) != len(b) {
		return false
	}
	m := map[string]int{}
	for _, x := range a {
		m[x]++
	}
	for _, x := range b {
		m[x]--
	}
	for _, v := range m {
		if v != 0 {
			return false
		}
	}
	return true
}
