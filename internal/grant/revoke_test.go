package grant_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/warden-mcp/warden/internal/grant"
	"github.com/warden-mcp/warden/internal/store"
)

func TestRevokeTargets(t *testing.T) {
	ctx := context.Background()
	seed := []store.Grant{
		{ID: "a1", Subject: "alice", ClientID: "c1", Servers: []string{"bi"}, Connector: "oidc", Kind: store.KindUser},
		{ID: "a2", Subject: "alice", ClientID: "c2", Servers: []string{"bi", "hr"}, Connector: "oidc", Kind: store.KindUser},
		{ID: "b1", Subject: "bob", ClientID: "c1", Servers: []string{"hr"}, Connector: "static", Kind: store.KindUser},
	}
	cases := []struct {
		name              string
		target            grant.Target
		revoked, narrowed []string
		consents          int
		stillLive         []string
	}{
		// Every revoked grant's consent goes with it.
		{"grant", grant.Target{GrantID: "a1"}, []string{"a1"}, nil, 1, []string{"a2", "b1"}},
		{"user", grant.Target{Subject: "alice"}, []string{"a1", "a2"}, nil, 2, []string{"b1"}},
		{"client", grant.Target{ClientID: "c1"}, []string{"a1", "b1"}, nil, 2, []string{"a2"}},
		// A grant with other servers loses this one and keeps the rest;
		// both consents naming bi lose it.
		{"server", grant.Target{Server: "bi"}, []string{"a1"}, []string{"a2"}, 2, []string{"a2", "b1"}},
		{"connector", grant.Target{Connector: "oidc"}, []string{"a1", "a2"}, nil, 2, []string{"b1"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			f := setup(t)
			f.now = time.Unix(1700000000, 0).In(time.FixedZone("CET", 3600))
			for _, g := range seed {
				_ = f.st.CreateGrant(ctx, g)
				_ = f.st.PutConsent(ctx, store.Consent{Subject: g.Subject, ClientID: g.ClientID, Servers: g.Servers})
			}
			res, err := f.svc.Revoke(ctx, "admin:carol", c.target, "test")
			if err != nil {
				t.Fatal(err)
			}
			if !same(res.Revoked, c.revoked) || !same(res.Narrowed, c.narrowed) || res.ConsentsRemoved != c.consents {
				t.Fatalf("result %+v", res)
			}
			live, _ := f.st.ListGrants(ctx, store.GrantFilter{})
			var ids []string
			for _, g := range live {
				ids = append(ids, g.ID)
			}
			if !same(ids, c.stillLive) {
				t.Fatalf("live grants %v, want %v", ids, c.stillLive)
			}
			if c.target.Server != "" {
				g, _ := f.st.GetGrant(ctx, "a2")
				if len(g.Servers) != 1 || g.Servers[0] != "hr" {
					t.Fatalf("narrowed grant servers %v", g.Servers)
				}
				cons, err := f.st.GetConsent(ctx, "alice", "c2")
				if err != nil || len(cons.Servers) != 1 || cons.Servers[0] != "hr" {
					t.Fatalf("narrowed consent %+v %v", cons, err)
				}
			}
			for _, id := range c.revoked {
				g, _ := f.st.GetGrant(ctx, id)
				// One time zone for every revocation, whoever asks.
				if g.RevokedBy != "admin:carol" || g.RevokeReason != "test" || !g.RevokedAt.Equal(f.now) || g.RevokedAt.Location() != time.UTC {
					t.Fatalf("revocation record %+v", g)
				}
			}
			_ = f.trail.Close(ctx)
			evs := f.audit(t)
			if len(evs) != len(c.revoked)+len(c.narrowed)+1 || evs[len(evs)-1].Type != "revoke" {
				t.Fatalf("audit: %s", types(evs))
			}
		})
	}
}

// TestRevokeServerNarrowsServiceAccess: a service client an admin allowed
// on a server loses it when the server is revoked, so a server added again
// under the same name does not bring its access back.
func TestRevokeServerNarrowsServiceAccess(t *testing.T) {
	f := setup(t)
	ctx := context.Background()
	for _, id := range []string{"svc1", "svc2"} {
		if err := f.st.CreateClient(ctx, store.Client{ID: id, SecretHash: make([]byte, 32), Kind: store.KindService}); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := f.svc.SetServiceAccess(ctx, "admin", "svc1", []string{"bi", "hr"}, []string{"bi:read"}, nil); err != nil {
		t.Fatal(err)
	}
	if _, err := f.svc.SetServiceAccess(ctx, "admin", "svc2", []string{"bi"}, nil, nil); err != nil {
		t.Fatal(err)
	}
	res, err := f.svc.Revoke(ctx, "admin", grant.Target{Server: "bi"}, grant.ReasonServerRemoved)
	if err != nil || !same(res.ClientsNarrowed, []string{"svc1", "svc2"}) {
		t.Fatalf("%+v %v", res, err)
	}
	c1, _ := f.st.GetClient(ctx, "svc1")
	c2, _ := f.st.GetClient(ctx, "svc2")
	if c1.ServiceAccess == nil || !same(c1.ServiceAccess.Servers, []string{"hr"}) || c2.ServiceAccess != nil {
		t.Fatalf("access after revocation: %+v %+v", c1.ServiceAccess, c2.ServiceAccess)
	}
	if _, err := f.svc.Revoke(ctx, "admin", grant.Target{ClientID: "svc1"}, "x"); err != nil {
		t.Fatal(err)
	}
	if c1, _ = f.st.GetClient(ctx, "svc1"); c1.ServiceAccess != nil {
		t.Fatal("revoking a client kept its service access")
	}
	// A public client cannot be given service access.
	_ = f.st.CreateClient(ctx, store.Client{ID: "pub"})
	if _, err := f.svc.SetServiceAccess(ctx, "admin", "pub", []string{"hr"}, nil, nil); err == nil {
		t.Fatal("public client got service access")
	}
}

func TestRevokeRejectsAmbiguousTargets(t *testing.T) {
	f := setup(t)
	for _, tg := range []grant.Target{{}, {Subject: "a", ClientID: "b"}, {Server: "s", Connector: "oidc"}} {
		_, err := f.svc.Revoke(context.Background(), "x", tg, "")
		if !errors.Is(err, grant.ErrInvalidTarget) {
			t.Errorf("%+v: %v", tg, err)
		}
	}
	if _, err := f.svc.Revoke(context.Background(), "x", grant.Target{GrantID: "nope"}, ""); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("unknown grant: %v", err)
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
