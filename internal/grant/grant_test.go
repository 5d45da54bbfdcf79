package grant_test

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/warden-mcp/warden/internal/audit"
	"github.com/warden-mcp/warden/internal/grant"
	"github.com/warden-mcp/warden/internal/handle"
	"github.com/warden-mcp/warden/internal/store"
)

type fixture struct {
	st    *store.Badger
	trail *audit.Trail
	svc   *grant.Service
	now   time.Time
}

func setup(t *testing.T) *fixture {
	t.Helper()
	ctx := context.Background()
	st, err := store.OpenBadger(t.TempDir(), store.BadgerOptions{})
	if err != nil {
		t.Fatal(err)
	}
	trail, err := audit.Open(ctx, st, audit.Options{})
	if err != nil {
		t.Fatal(err)
	}
	f := &fixture{st: st, trail: trail, now: time.Now().Truncate(time.Second)}
	f.svc, err = grant.New(grant.Options{Store: st, Audit: trail, Now: func() time.Time { return f.now }})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = trail.Close(ctx); _ = st.Close() })
	return f
}

func (f *fixture) audit(t *testing.T) []store.AuditEvent {
	t.Helper()
	evs, err := f.st.ListAudit(context.Background(), 0, 0)
	if err != nil {
		t.Fatal(err)
	}
	return evs
}

func types(evs []store.AuditEvent) string {
	var out []string
	for _, ev := range evs {
		out = append(out, ev.Type)
	}
	return strings.Join(out, ",")
}

func TestNewIDOneFormat(t *testing.T) {
	seen := map[string]bool{}
	for i := 0; i < 100; i++ {
		id := grant.NewID()
		if !strings.HasPrefix(id, "g_") || len(id) != 24 || seen[id] {
			t.Fatalf("id %q", id)
		}
		seen[id] = true
	}
}

// TestCodeLifecycle: a code is single use; the second redemption revokes
// the grant and audits the replay.
func TestCodeLifecycle(t *testing.T) {
	f := setup(t)
	ctx := context.Background()
	g := store.Grant{ID: grant.NewID(), Subject: "alice", ClientID: "c1", Kind: store.KindUser, Servers: []string{"bi"}, Resources: []string{"https://x/mcp/bi"}}
	raw, err := f.svc.Authorize(ctx, g, grant.Code{ClientID: "c1", Challenge: "ch", Resources: g.Resources})
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(raw, handle.PrefixCode) {
		t.Fatalf("code %q", raw)
	}
	stored, _ := f.st.GetGrant(ctx, g.ID)
	if !stored.ExpiresAt.Equal(f.now.UTC().Add(30*24*time.Hour)) || stored.CreatedAt.Location() != time.UTC {
		t.Fatalf("grant times: %+v", stored)
	}
	h, err := f.svc.Redeem(ctx, raw)
	if err != nil || h.GrantID != g.ID || h.CodeChallenge != "ch" {
		t.Fatalf("redeem: %+v %v", h, err)
	}
	if _, err := f.svc.Redeem(ctx, raw); !errors.Is(err, grant.ErrReplay) {
		t.Fatalf("second redeem: %v", err)
	}
	if _, err := f.svc.Live(ctx, g.ID); !errors.Is(err, grant.ErrRevoked) {
		t.Fatalf("grant alive after replay: %v", err)
	}
	if _, err := f.svc.Redeem(ctx, "wdn_ac_unknown"); !errors.Is(err, grant.ErrInvalid) {
		t.Fatalf("unknown code: %v", err)
	}
	if got := types(f.audit(t)); !strings.Contains(got, "code_issued") || !strings.Contains(got, "code_replay") || !strings.Contains(got, "grant_revoked") {
		t.Fatalf("audit: %s", got)
	}
}

// TestRefreshRotation: rotation spends the old handle and extends the
// grant; a rotated handle again, or another client's, revokes the grant.
func TestRefreshRotation(t *testing.T) {
	for _, tc := range []struct {
		name    string
		replay  func(f *fixture, old, next string) error
		wantErr error
	}{
		{"rotated handle again", func(f *fixture, old, _ string) error {
			_, _, err := f.svc.RefreshHandle(context.Background(), old, "c1")
			return err
		}, grant.ErrReplay},
		{"another client", func(f *fixture, _, next string) error {
			_, _, err := f.svc.RefreshHandle(context.Background(), next, "c2")
			return err
		}, grant.ErrOtherClient},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := setup(t)
			ctx := context.Background()
			g := store.Grant{ID: grant.NewID(), Subject: "alice", ClientID: "c1", Kind: store.KindUser, Servers: []string{"bi"}, Resources: []string{"r"},
				CreatedAt: f.now, ExpiresAt: f.now.Add(time.Hour)}
			if err := f.st.CreateGrant(ctx, g); err != nil {
				t.Fatal(err)
			}
			first, err := f.svc.Issue(ctx, g, grant.Access{ClientID: "c1", Resources: g.Resources, Scopes: []string{"a", "b"}, Refresh: true})
			if err != nil || first.RefreshToken == "" {
				t.Fatalf("issue: %+v %v", first, err)
			}
			// The access handle never outlives the grant.
			if !first.ExpiresAt.Equal(f.now.UTC().Add(10 * time.Minute)) {
				t.Fatalf("access expiry %v", first.ExpiresAt)
			}
			f.now = f.now.Add(time.Minute)
			h, live, err := f.svc.RefreshHandle(ctx, first.RefreshToken, "c1")
			if err != nil || live.ID != g.ID {
				t.Fatalf("refresh lookup: %v", err)
			}
			next, err := f.svc.Rotate(ctx, h, grant.Access{ClientID: "c1", Resources: g.Resources, Scopes: []string{"a"}})
			if err != nil || next.RefreshToken == "" || next.RefreshToken == first.RefreshToken {
				t.Fatalf("rotate: %+v %v", next, err)
			}
			nh, _ := f.st.GetHandle(ctx, handle.Digest(next.RefreshToken))
			if strings.Join(nh.Scopes, " ") != "a b" {
				t.Fatalf("new refresh handle narrowed its scope: %v", nh.Scopes)
			}
			if got, _ := f.st.GetGrant(ctx, g.ID); !got.ExpiresAt.Equal(f.now.UTC().Add(30 * 24 * time.Hour)) {
				t.Fatalf("grant not extended: %v", got.ExpiresAt)
			}
			if err := tc.replay(f, first.RefreshToken, next.RefreshToken); !errors.Is(err, tc.wantErr) {
				t.Fatalf("replay: %v", err)
			}
			if _, err := f.svc.Live(ctx, g.ID); !errors.Is(err, grant.ErrRevoked) {
				t.Fatalf("grant alive after %s: %v", tc.name, err)
			}
			if _, _, err := f.svc.RefreshHandle(ctx, next.RefreshToken, "c1"); err == nil {
				t.Fatal("the newest refresh token survived the replay")
			}
		})
	}
}

func TestIssueService(t *testing.T) {
	f := setup(t)
	ctx := context.Background()
	tok, g, err := f.svc.IssueService(ctx, grant.ServiceGrant{Subject: "agent", ClientID: "service:agent", Groups: []string{"ops"},
		Servers: []string{"bi"}, Resources: []string{"https://x/mcp/bi"}, TTL: time.Hour, GrantType: "admin", Actor: "admin:carol"})
	if err != nil {
		t.Fatal(err)
	}
	h, rg, err := f.st.ResolveHandle(ctx, handle.Digest(tok.AccessToken))
	if err != nil || rg.Kind != store.KindService || rg.ID != g.ID || !h.ExpiresAt.Equal(f.now.UTC().Add(time.Hour)) || tok.RefreshToken != "" {
		t.Fatalf("service grant: %+v %+v %v", h, rg, err)
	}
	evs := f.audit(t)
	last := evs[len(evs)-1]
	if last.Type != "token_issued" || last.Actor != "admin:carol" || last.Kind != store.KindService {
		t.Fatalf("audit: %+v", last)
	}
	if _, _, err := f.svc.IssueService(ctx, grant.ServiceGrant{Subject: "x", Servers: []string{"bi"}}); err == nil {
		t.Fatal("servers without resources accepted")
	}
}

func TestRevokeToken(t *testing.T) {
	f := setup(t)
	ctx := context.Background()
	g := store.Grant{ID: grant.NewID(), Subject: "alice", ClientID: "c1", Kind: store.KindUser, Servers: []string{"bi"}, Resources: []string{"r"}}
	_ = f.st.CreateGrant(ctx, g)
	tok, err := f.svc.Issue(ctx, g, grant.Access{ClientID: "c1", Resources: g.Resources, Refresh: true})
	if err != nil {
		t.Fatal(err)
	}
	// Another client's token and unknown tokens change nothing.
	for _, c := range []struct{ client, raw string }{{"c2", tok.RefreshToken}, {"c1", "wdn_rt_nope"}} {
		if err := f.svc.RevokeToken(ctx, c.client, c.raw); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := f.svc.Live(ctx, g.ID); err != nil {
		t.Fatalf("grant revoked by another client: %v", err)
	}
	if err := f.svc.RevokeToken(ctx, "c1", tok.AccessToken); err != nil {
		t.Fatal(err)
	}
	if _, err := f.st.GetHandle(ctx, handle.Digest(tok.AccessToken)); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("access handle survives its revocation: %v", err)
	}
	if _, err := f.svc.Live(ctx, g.ID); err != nil {
		t.Fatalf("revoking an access token ended the grant: %v", err)
	}
	if err := f.svc.RevokeToken(ctx, "c1", tok.RefreshToken); err != nil {
		t.Fatal(err)
	}
	if got, _ := f.st.GetGrant(ctx, g.ID); !got.Revoked() || got.RevokedBy != "client:c1" || got.RevokeReason != grant.ReasonByClient {
		t.Fatalf("refresh revocation: %+v", got)
	}
}
