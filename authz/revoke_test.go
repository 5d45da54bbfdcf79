package authz_test

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/warden-mcp/warden/authz"
	"github.com/warden-mcp/warden/internal/grant"
	"github.com/warden-mcp/warden/internal/handle"
	"github.com/warden-mcp/warden/internal/registry"
	"github.com/warden-mcp/warden/internal/store"
)

// Revocation must take effect on the very next Check: while callers check
// continuously over gRPC, no check that starts after Revoke returned may be
// allowed.
func TestRevocationIsImmediateUnderLoad(t *testing.T) {
	cases := []struct {
		name   string
		target func(grantID string) grant.Target
	}{
		{"grant", func(g string) grant.Target { return grant.Target{GrantID: g} }},
		{"user", func(string) grant.Target { return grant.Target{Subject: "alice"} }},
		{"client", func(string) grant.Target { return grant.Target{ClientID: "client-1"} }},
		{"server", func(string) grant.Target { return grant.Target{Server: "bi"} }},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			e := newEnv(t)
			e.addServer(registry.Spec{Name: "bi", URL: "http://bi/mcp"})
			e.addServer(registry.Spec{Name: "hr", URL: "http://hr/mcp"})
			tok, grantID := e.mint(tokenSpec{servers: []string{"bi"}})
			// Another user's access must survive every revocation but the
			// server one.
			other, _ := e.mint(tokenSpec{subject: "bob", client: "client-2", servers: []string{"hr"}})
			rv, err := grant.New(grant.Options{Store: e.st, Audit: e.trail})
			if err != nil {
				t.Fatal(err)
			}

			var revokedAt atomic.Int64 // unix nanos when Revoke returned; 0 before
			var allowsBefore, allowsAfter, deniesAfter atomic.Int64
			stop := make(chan struct{})
			var wg sync.WaitGroup
			for w := 0; w < 8; w++ {
				wg.Add(1)
				go func() {
					defer wg.Done()
					for {
						select {
						case <-stop:
							return
						default:
						}
						started := time.Now().UnixNano()
						after := revokedAt.Load() != 0 && started > revokedAt.Load()
						resp, err := e.client.Check(context.Background(), req{token: tok, body: toolsCall}.build())
						if err != nil {
							t.Error(err)
							return
						}
						allowed := resp.GetOkResponse() != nil
						switch {
						case after && allowed:
							allowsAfter.Add(1)
						case after:
							deniesAfter.Add(1)
						case allowed:
							allowsBefore.Add(1)
						}
					}
				}()
			}
			// Let the callers get going, then revoke.
			for allowsBefore.Load() < 50 {
				time.Sleep(time.Millisecond)
			}
			res, err := rv.Revoke(context.Background(), "admin:test", c.target(grantID), "test")
			if err != nil {
				t.Fatal(err)
			}
			revokedAt.Store(time.Now().UnixNano())
			for deniesAfter.Load() < 200 {
				time.Sleep(time.Millisecond)
			}
			close(stop)
			wg.Wait()
			if n := allowsAfter.Load(); n != 0 {
				t.Fatalf("%d checks started after the revoke returned were allowed", n)
			}
			if len(res.Revoked) != 1 {
				t.Fatalf("revoked %v", res.Revoked)
			}
			t.Logf("allowed before: %d, denied after: %d", allowsBefore.Load(), deniesAfter.Load())

			// Bob's grant on another server is untouched.
			if r := e.check(req{token: other, server: "hr", body: toolsCall}); r.GetOkResponse() == nil {
				t.Fatalf("unrelated grant affected: %v", r.GetDeniedResponse())
			}
			// The revocation is audited with who did it.
			evs, _ := e.st.ListAudit(context.Background(), 0, 0)
			found := false
			for _, ev := range evs {
				if ev.Type == "grant_revoked" && ev.GrantID == grantID && ev.Actor == "admin:test" {
					found = true
				}
			}
			if !found {
				t.Fatal("revocation not audited with its actor")
			}
		})
	}
}

// Live is what the response path asks about a stream opened earlier: true
// until the grant is revoked.
func TestLiveEndsWithRevocation(t *testing.T) {
	e := newEnv(t)
	e.addServer(registry.Spec{Name: "bi", URL: "http://bi/mcp"})
	tok, gid := e.mint(tokenSpec{servers: []string{"bi"}})
	ctx := context.Background()
	if err := e.service.Live(ctx, handle.Digest(tok), "bi"); err != nil {
		t.Fatalf("a fresh handle is not live: %v", err)
	}
	if err := e.service.Live(ctx, handle.Digest(tok), "hr"); !errors.Is(err, authz.ErrNotLive) {
		t.Errorf("live for a server outside the audience: %v", err)
	}
	if err := e.st.UpdateGrant(ctx, gid, func(g store.Grant) (store.Grant, error) {
		g.RevokedAt = time.Now()
		return g, nil
	}); err != nil {
		t.Fatal(err)
	}
	if err := e.service.Live(ctx, handle.Digest(tok), "bi"); !errors.Is(err, authz.ErrNotLive) {
		t.Errorf("live after revocation: %v", err)
	}
	if err := e.service.Live(ctx, handle.Digest("wdn_at_unknown"), "bi"); !errors.Is(err, authz.ErrNotLive) {
		t.Errorf("live for an unknown handle: %v", err)
	}
}
