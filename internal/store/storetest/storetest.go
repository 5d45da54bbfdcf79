// Package storetest is the conformance suite every store backend must pass.
// A backend's own test is a few lines:
//
//	storetest.Run(t, storetest.Backend{Open: ..., Reopen: ...})
package storetest

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/warden-mcp/warden/internal/store"
)

// Backend opens fresh stores for the suite.
type Backend struct {
	// Open returns an empty store.
	Open func(t *testing.T) store.Store
	// Reopen closes s and opens the same underlying data again. Nil skips
	// the durability test (an in-memory backend has nothing to keep).
	Reopen func(t *testing.T, s store.Store) store.Store
}

// Run runs every conformance test against b.
func Run(t *testing.T, b Backend) {
	tests := []struct {
		name string
		fn   func(t *testing.T, b Backend)
	}{
		{"Clients", testClients},
		{"Grants", testGrants},
		{"Handles", testHandles},
		{"HandleExpiry", testHandleExpiry},
		{"ResolveHandle", testResolveHandle},
		{"Servers", testServers},
		{"Sessions", testSessions},
		{"SessionTakeOnce", testSessionTakeOnce},
		{"Consents", testConsents},
		{"LastUse", testLastUse},
		{"ToolPins", testToolPins},
		{"DeleteServerDropsToolPins", testDeleteServerDropsToolPins},
		{"ConcurrentUpdates", testConcurrentUpdates},
		{"UpdaterErrorAborts", testUpdaterErrorAborts},
		{"Audit", testAudit},
		{"AuditRetention", testAuditRetention},
		{"Durability", testDurability},
		{"Providers", testProviders},
		{"Accounts", testAccounts},
		{"ConcurrentAccountUpdates", testConcurrentAccountUpdates},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) { tc.fn(t, b) })
	}
}

var ctx = context.Background()

func mustNotFound(t *testing.T, what string, err error) {
	t.Helper()
	if !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("%s: got %v, want ErrNotFound", what, err)
	}
}

func mustExists(t *testing.T, what string, err error) {
	t.Helper()
	if !errors.Is(err, store.ErrAlreadyExists) {
		t.Fatalf("%s: got %v, want ErrAlreadyExists", what, err)
	}
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

func testClients(t *testing.T, b Backend) {
	s := b.Open(t)
	c := store.Client{ID: "c1", Name: "Claude", RedirectURIs: []string{"http://127.0.0.1/cb"}, Kind: store.KindUser, SecretHash: []byte{1, 2}}
	must(t, s.CreateClient(ctx, c))
	mustExists(t, "create twice", s.CreateClient(ctx, c))

	got, err := s.GetClient(ctx, "c1")
	must(t, err)
	if got.Name != "Claude" || got.RedirectURIs[0] != "http://127.0.0.1/cb" || string(got.SecretHash) != "\x01\x02" {
		t.Fatalf("round trip lost data: %+v", got)
	}
	_, err = s.GetClient(ctx, "nope")
	mustNotFound(t, "get missing", err)

	must(t, s.UpdateClient(ctx, "c1", func(c store.Client) (store.Client, error) {
		c.Name = "Renamed"
		c.ID = "attempt-to-rename-key"
		return c, nil
	}))
	got, _ = s.GetClient(ctx, "c1")
	if got.Name != "Renamed" || got.ID != "c1" {
		t.Fatalf("update: %+v", got)
	}
	if got.Version <= c.Version {
		t.Fatalf("version not bumped: %d", got.Version)
	}
	mustNotFound(t, "update missing", s.UpdateClient(ctx, "nope", func(c store.Client) (store.Client, error) { return c, nil }))

	must(t, s.CreateClient(ctx, store.Client{ID: "c2"}))
	all, err := s.ListClients(ctx)
	must(t, err)
	if len(all) != 2 {
		t.Fatalf("list: %d clients", len(all))
	}
	must(t, s.DeleteClient(ctx, "c1"))
	mustNotFound(t, "delete twice", s.DeleteClient(ctx, "c1"))
	_, err = s.GetClient(ctx, "c1")
	mustNotFound(t, "get deleted", err)
}

func testGrants(t *testing.T, b Backend) {
	s := b.Open(t)
	mk := func(id, sub, client string, servers ...string) store.Grant {
		return store.Grant{ID: id, Subject: sub, ClientID: client, Servers: servers, Kind: store.KindUser, CreatedAt: time.Now()}
	}
	must(t, s.CreateGrant(ctx, mk("g1", "alice", "c1", "bi", "hr")))
	must(t, s.CreateGrant(ctx, mk("g2", "alice", "c2", "bi")))
	must(t, s.CreateGrant(ctx, mk("g3", "bob", "c1", "legal")))
	mustExists(t, "create twice", s.CreateGrant(ctx, mk("g1", "x", "y")))

	cases := []struct {
		f    store.GrantFilter
		want int
	}{
		{store.GrantFilter{}, 3},
		{store.GrantFilter{Subject: "alice"}, 2},
		{store.GrantFilter{ClientID: "c1"}, 2},
		{store.GrantFilter{Server: "bi"}, 2},
		{store.GrantFilter{Subject: "alice", Server: "hr"}, 1},
		{store.GrantFilter{Subject: "carol"}, 0},
	}
	for _, c := range cases {
		got, err := s.ListGrants(ctx, c.f)
		must(t, err)
		if len(got) != c.want {
			t.Errorf("filter %+v: %d grants, want %d", c.f, len(got), c.want)
		}
	}

	must(t, s.UpdateGrant(ctx, "g1", func(g store.Grant) (store.Grant, error) {
		g.RevokedAt = time.Now()
		g.RevokedBy = "admin"
		return g, nil
	}))
	g, err := s.GetGrant(ctx, "g1")
	must(t, err)
	if !g.Revoked() || g.RevokedBy != "admin" {
		t.Fatalf("revoke not stored: %+v", g)
	}
	live, _ := s.ListGrants(ctx, store.GrantFilter{Subject: "alice"})
	all, _ := s.ListGrants(ctx, store.GrantFilter{Subject: "alice", IncludeRevoked: true})
	if len(live) != 1 || len(all) != 2 {
		t.Fatalf("revoked filtering: live=%d all=%d", len(live), len(all))
	}
	must(t, s.DeleteGrant(ctx, "g3"))
	_, err = s.GetGrant(ctx, "g3")
	mustNotFound(t, "get deleted grant", err)
	mustNotFound(t, "delete missing grant", s.DeleteGrant(ctx, "g3"))
}

func testHandles(t *testing.T, b Backend) {
	s := b.Open(t)
	h := store.Handle{Digest: "d1", Kind: store.HandleRefresh, GrantID: "g", ExpiresAt: time.Now().Add(time.Hour), Scopes: []string{"a"}}
	must(t, s.CreateHandle(ctx, h))
	mustExists(t, "create twice", s.CreateHandle(ctx, h))
	if err := s.CreateHandle(ctx, store.Handle{Digest: "noexp", GrantID: "g"}); err == nil {
		t.Fatal("a handle without expiry was accepted")
	}
	got, err := s.GetHandle(ctx, "d1")
	must(t, err)
	if got.Kind != store.HandleRefresh || got.Scopes[0] != "a" {
		t.Fatalf("round trip: %+v", got)
	}
	used := time.Now()
	must(t, s.UpdateHandle(ctx, "d1", func(h store.Handle) (store.Handle, error) {
		if !h.UsedAt.IsZero() {
			return h, errors.New("replay")
		}
		h.UsedAt = used
		return h, nil
	}))
	got, _ = s.GetHandle(ctx, "d1")
	if !got.UsedAt.Equal(used) {
		t.Fatalf("used_at not stored")
	}
	must(t, s.DeleteHandle(ctx, "d1"))
	_, err = s.GetHandle(ctx, "d1")
	mustNotFound(t, "get deleted handle", err)
	mustNotFound(t, "update deleted", s.UpdateHandle(ctx, "d1", func(h store.Handle) (store.Handle, error) { return h, nil }))
}

func testHandleExpiry(t *testing.T, b Backend) {
	s := b.Open(t)
	must(t, s.CreateGrant(ctx, store.Grant{ID: "g"}))
	must(t, s.CreateHandle(ctx, store.Handle{Digest: "short", GrantID: "g", ExpiresAt: time.Now().Add(1200 * time.Millisecond)}))
	must(t, s.CreateHandle(ctx, store.Handle{Digest: "long", GrantID: "g", ExpiresAt: time.Now().Add(time.Hour)}))
	if _, err := s.GetHandle(ctx, "short"); err != nil {
		t.Fatalf("fresh handle: %v", err)
	}
	must(t, s.PutSession(ctx, "k", "short", []byte("x"), 1200*time.Millisecond))
	time.Sleep(1500 * time.Millisecond)
	_, err := s.GetHandle(ctx, "short")
	mustNotFound(t, "expired handle", err)
	_, _, err = s.ResolveHandle(ctx, "short")
	mustNotFound(t, "resolve expired handle", err)
	mustNotFound(t, "update expired handle", s.UpdateHandle(ctx, "short", func(h store.Handle) (store.Handle, error) {
		h.ExpiresAt = time.Now().Add(time.Hour)
		return h, nil
	}))
	_, err = s.GetSession(ctx, "k", "short")
	mustNotFound(t, "expired session", err)
	if _, err := s.GetHandle(ctx, "long"); err != nil {
		t.Fatalf("unexpired handle: %v", err)
	}
}

func testResolveHandle(t *testing.T, b Backend) {
	s := b.Open(t)
	must(t, s.CreateGrant(ctx, store.Grant{ID: "g", Subject: "alice", Servers: []string{"bi"}}))
	must(t, s.CreateHandle(ctx, store.Handle{Digest: "d", Kind: store.HandleAccess, GrantID: "g", ExpiresAt: time.Now().Add(time.Minute)}))
	must(t, s.CreateHandle(ctx, store.Handle{Digest: "orphan", GrantID: "missing", ExpiresAt: time.Now().Add(time.Minute)}))
	h, g, err := s.ResolveHandle(ctx, "d")
	must(t, err)
	if h.GrantID != "g" || g.Subject != "alice" {
		t.Fatalf("resolve: %+v %+v", h, g)
	}
	_, _, err = s.ResolveHandle(ctx, "unknown")
	mustNotFound(t, "resolve unknown", err)
	_, _, err = s.ResolveHandle(ctx, "orphan")
	mustNotFound(t, "resolve orphan", err)
}

func testServers(t *testing.T, b Backend) {
	s := b.Open(t)
	srv := store.Server{Name: "bi", URL: "http://bi:8080/mcp", Credential: store.CredentialJWT, Labels: map[string]string{"team": "data"}, StaticSecret: &store.Sealed{KeyID: "k", Nonce: []byte{1}, Ciphertext: []byte{2}}}
	must(t, s.CreateServer(ctx, srv))
	mustExists(t, "create twice", s.CreateServer(ctx, srv))
	got, err := s.GetServer(ctx, "bi")
	must(t, err)
	if got.URL != srv.URL || got.Labels["team"] != "data" || got.StaticSecret.KeyID != "k" {
		t.Fatalf("round trip: %+v", got)
	}
	must(t, s.UpdateServer(ctx, "bi", func(s store.Server) (store.Server, error) {
		s.Description = "BI"
		return s, nil
	}))
	got, _ = s.GetServer(ctx, "bi")
	if got.Description != "BI" {
		t.Fatal("update lost")
	}
	must(t, s.CreateServer(ctx, store.Server{Name: "hr", URL: "http://hr"}))
	list, err := s.ListServers(ctx)
	must(t, err)
	if len(list) != 2 {
		t.Fatalf("list: %d", len(list))
	}
	must(t, s.DeleteServer(ctx, "bi"))
	_, err = s.GetServer(ctx, "bi")
	mustNotFound(t, "deleted server", err)
}

func testSessions(t *testing.T, b Backend) {
	s := b.Open(t)
	must(t, s.PutSession(ctx, "authreq", "a", []byte("one"), time.Minute))
	must(t, s.PutSession(ctx, "other", "a", []byte("two"), time.Minute))
	v, err := s.GetSession(ctx, "authreq", "a")
	must(t, err)
	if string(v) != "one" {
		t.Fatalf("kinds collide: %q", v)
	}
	v, err = s.TakeSession(ctx, "authreq", "a")
	must(t, err)
	if string(v) != "one" {
		t.Fatalf("take: %q", v)
	}
	_, err = s.TakeSession(ctx, "authreq", "a")
	mustNotFound(t, "take twice", err)
	if err := s.PutSession(ctx, "k", "z", nil, 0); err == nil {
		t.Fatal("session without ttl accepted")
	}
}

func testSessionTakeOnce(t *testing.T, b Backend) {
	s := b.Open(t)
	must(t, s.PutSession(ctx, "code", "c", []byte("v"), time.Minute))
	var wg sync.WaitGroup
	var mu sync.Mutex
	wins := 0
	for i := 0; i < 16; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if _, err := s.TakeSession(ctx, "code", "c"); err == nil {
				mu.Lock()
				wins++
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	if wins != 1 {
		t.Fatalf("session taken %d times, want exactly once", wins)
	}
}

func testConsents(t *testing.T, b Backend) {
	s := b.Open(t)
	must(t, s.PutConsent(ctx, store.Consent{Subject: "alice", ClientID: "c1", Scopes: []string{"mcp"}}))
	must(t, s.PutConsent(ctx, store.Consent{Subject: "alice", ClientID: "c2"}))
	must(t, s.PutConsent(ctx, store.Consent{Subject: "bob", ClientID: "c1"}))
	c, err := s.GetConsent(ctx, "alice", "c1")
	must(t, err)
	if c.Scopes[0] != "mcp" {
		t.Fatal("consent scopes lost")
	}
	_, err = s.GetConsent(ctx, "alice", "c3")
	mustNotFound(t, "missing consent", err)
	n, err := s.DeleteConsents(ctx, "", "c1")
	must(t, err)
	if n != 2 {
		t.Fatalf("deleted %d consents for client c1, want 2", n)
	}
	n, err = s.DeleteConsents(ctx, "alice", "")
	must(t, err)
	if n != 1 {
		t.Fatalf("deleted %d consents for alice, want 1", n)
	}
}

// testLastUse: uses only move forward, a batch may name a key twice (the
// later time wins), and deleting a grant deletes its uses.
func testLastUse(t *testing.T, b Backend) {
	s := b.Open(t)
	t0 := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	for _, id := range []string{"g1", "g2"} {
		must(t, s.CreateGrant(ctx, store.Grant{ID: id, Subject: "alice", ClientID: "c", Kind: store.KindUser, CreatedAt: t0}))
	}
	must(t, s.PutLastUse(ctx))
	must(t, s.PutLastUse(ctx,
		store.LastUse{GrantID: "g1", Server: "bi", At: t0},
		store.LastUse{GrantID: "g1", Server: "hr", At: t0.Add(time.Minute)},
		store.LastUse{GrantID: "g1", Server: "hr", At: t0.Add(2 * time.Minute)},
		store.LastUse{GrantID: "g2", Server: "bi", At: t0.Add(3 * time.Minute)},
	))
	// An older time never replaces a newer one.
	must(t, s.PutLastUse(ctx, store.LastUse{GrantID: "g1", Server: "bi", At: t0.Add(-time.Hour)}, store.LastUse{GrantID: "g2", Server: "bi", At: t0.Add(4 * time.Minute)}))
	if err := s.PutLastUse(ctx, store.LastUse{GrantID: "", Server: "bi", At: t0}); err == nil {
		t.Error("a use without a grant id was accepted")
	}
	got := map[string]time.Time{}
	uses, err := s.ListLastUse(ctx)
	must(t, err)
	for _, u := range uses {
		got[u.GrantID+"/"+u.Server] = u.At
	}
	want := map[string]time.Time{"g1/bi": t0, "g1/hr": t0.Add(2 * time.Minute), "g2/bi": t0.Add(4 * time.Minute)}
	if len(got) != len(want) {
		t.Fatalf("uses %v, want %v", got, want)
	}
	for k, w := range want {
		if !got[k].Equal(w) {
			t.Errorf("%s: %v, want %v", k, got[k], w)
		}
	}
	must(t, s.DeleteGrant(ctx, "g1"))
	uses, err = s.ListLastUse(ctx)
	must(t, err)
	if len(uses) != 1 || uses[0].GrantID != "g2" {
		t.Errorf("after deleting g1: %+v", uses)
	}
	mustNotFound(t, "delete missing grant", s.DeleteGrant(ctx, "g1"))
}

// testDeleteServerDropsToolPins: deleting a server deletes its tool pins
// (tools of the same name on another server, and a server whose name
// extends it, keep theirs), so a server added again under the name starts
// unpinned instead of inheriting the old server's approvals.
func testDeleteServerDropsToolPins(t *testing.T, b Backend) {
	s := b.Open(t)
	t0 := time.Now().UTC().Truncate(time.Millisecond)
	pin := func(server, tool string) store.ToolPin {
		return store.ToolPin{Server: server, Tool: tool, Approved: "sha256:aa", ApprovedDefinition: json.RawMessage(`{}`),
			Seen: "sha256:aa", SeenDefinition: json.RawMessage(`{}`), FirstSeen: t0, SeenAt: t0}
	}
	for _, name := range []string{"bi", "bi2"} {
		must(t, s.CreateServer(ctx, store.Server{Name: name, URL: "http://" + name + ":8080/mcp", Credential: store.CredentialJWT}))
	}
	for _, p := range []store.ToolPin{pin("bi", "run_sql"), pin("bi", "a/b tool"), pin("bi2", "run_sql"), pin("hr", "run_sql")} {
		must(t, s.CreateToolPin(ctx, p))
	}
	must(t, s.DeleteServer(ctx, "bi"))
	left, err := s.ListToolPins(ctx, "bi")
	must(t, err)
	if len(left) != 0 {
		t.Fatalf("pins of the deleted server: %+v", left)
	}
	mustNotFound(t, "get a dropped pin", func() error { _, err := s.GetToolPin(ctx, "bi", "run_sql"); return err }())
	all, err := s.ListToolPins(ctx, "")
	must(t, err)
	var kept []string
	for _, p := range all {
		kept = append(kept, p.Server+"/"+p.Tool)
	}
	if strings.Join(kept, ",") != "bi2/run_sql,hr/run_sql" {
		t.Fatalf("pins left: %v, want bi2/run_sql,hr/run_sql", kept)
	}
	// Added again: no pin is inherited, and a new one can be made.
	must(t, s.CreateServer(ctx, store.Server{Name: "bi", URL: "http://bi:8080/mcp", Credential: store.CredentialJWT}))
	if left, _ := s.ListToolPins(ctx, "bi"); len(left) != 0 {
		t.Fatalf("the re-added server inherited pins: %+v", left)
	}
	must(t, s.CreateToolPin(ctx, pin("bi", "run_sql")))
	mustNotFound(t, "delete a missing server", s.DeleteServer(ctx, "nope"))
	// A pin written under a name no server has (an answer of the removed
	// server still in flight) is a stray: the server added next under the
	// name starts without it.
	must(t, s.CreateToolPin(ctx, pin("late", "run_sql")))
	must(t, s.CreateServer(ctx, store.Server{Name: "late", URL: "http://late:8080/mcp", Credential: store.CredentialJWT}))
	if left, _ := s.ListToolPins(ctx, "late"); len(left) != 0 {
		t.Fatalf("a server added after a stray pin inherited it: %+v", left)
	}
}

// testToolPins: create once, read back, compare-and-swap updates that
// keep server and tool, list per server and all, in key order.
func testToolPins(t *testing.T, b Backend) {
	s := b.Open(t)
	t0 := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	def := json.RawMessage(`{"description":"Run SQL","name":"run_sql"}`)
	p := store.ToolPin{Server: "bi", Tool: "run_sql", Approved: "sha256:aa", ApprovedDefinition: def, Seen: "sha256:aa", SeenDefinition: def,
		FirstSeen: t0, SeenAt: t0, ApprovedAt: t0, ApprovedBy: "pinning:first-seen"}
	must(t, s.CreateToolPin(ctx, p))
	if err := s.CreateToolPin(ctx, p); !errors.Is(err, store.ErrAlreadyExists) {
		t.Fatalf("second create: %v, want ErrAlreadyExists", err)
	}
	for _, bad := range []store.ToolPin{{Server: "", Tool: "x"}, {Server: "bi", Tool: ""}, {Server: "a/b", Tool: "x"}} {
		if err := s.CreateToolPin(ctx, bad); err == nil {
			t.Errorf("create %+v was accepted", bad)
		}
	}
	must(t, s.CreateToolPin(ctx, store.ToolPin{Server: "bi", Tool: "a/b tool", Seen: "sha256:bb", SeenDefinition: json.RawMessage(`{}`), FirstSeen: t0, SeenAt: t0}))
	must(t, s.CreateToolPin(ctx, store.ToolPin{Server: "hr", Tool: "lookup", Seen: "sha256:cc", SeenDefinition: json.RawMessage(`{}`), FirstSeen: t0, SeenAt: t0}))
	got, err := s.GetToolPin(ctx, "bi", "run_sql")
	must(t, err)
	if got.Version != 1 || got.Approved != "sha256:aa" || string(got.SeenDefinition) != string(def) || !got.FirstSeen.Equal(t0) || got.ApprovedBy != "pinning:first-seen" {
		t.Fatalf("read back %+v", got)
	}
	mustNotFound(t, "get missing", func() error { _, err := s.GetToolPin(ctx, "bi", "nope"); return err }())
	mustNotFound(t, "get on another server", func() error { _, err := s.GetToolPin(ctx, "hr", "run_sql"); return err }())
	mustNotFound(t, "update missing", s.UpdateToolPin(ctx, "bi", "nope", func(p store.ToolPin) (store.ToolPin, error) { return p, nil }))
	must(t, s.UpdateToolPin(ctx, "bi", "run_sql", func(p store.ToolPin) (store.ToolPin, error) {
		p.Seen, p.SeenDefinition, p.SeenAt = "sha256:dd", json.RawMessage(`{"name":"run_sql"}`), t0.Add(time.Hour)
		p.Server, p.Tool = "hr", "other" // ignored: the key stays
		return p, nil
	}))
	got, err = s.GetToolPin(ctx, "bi", "run_sql")
	must(t, err)
	if got.Version != 2 || got.Seen != "sha256:dd" || got.Approved != "sha256:aa" || got.Server != "bi" || got.Tool != "run_sql" {
		t.Fatalf("after update %+v", got)
	}
	bi, err := s.ListToolPins(ctx, "bi")
	must(t, err)
	if len(bi) != 2 || bi[0].Tool != "a/b tool" || bi[1].Tool != "run_sql" {
		t.Fatalf("bi pins %+v", bi)
	}
	all, err := s.ListToolPins(ctx, "")
	must(t, err)
	if len(all) != 3 || all[2].Server != "hr" {
		t.Fatalf("all pins %+v", all)
	}
	none, err := s.ListToolPins(ctx, "b")
	must(t, err)
	if len(none) != 0 {
		t.Fatalf("server b (a prefix of bi) lists %+v", none)
	}
}

func testConcurrentUpdates(t *testing.T, b Backend) {
	s := b.Open(t)
	must(t, s.CreateGrant(ctx, store.Grant{ID: "g"}))
	const writers, each = 8, 25
	var wg sync.WaitGroup
	errs := make(chan error, writers)
	for w := 0; w < writers; w++ {
		wg.Add(1)
		go func(w int) {
			defer wg.Done()
			for i := 0; i < each; i++ {
				err := s.UpdateGrant(ctx, "g", func(g store.Grant) (store.Grant, error) {
					g.Scopes = append(g.Scopes, fmt.Sprintf("w%d-%d", w, i))
					return g, nil
				})
				if err != nil {
					errs <- err
					return
				}
			}
		}(w)
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	g, err := s.GetGrant(ctx, "g")
	must(t, err)
	// Every increment must survive: a lost update would drop a scope.
	if len(g.Scopes) != writers*each {
		t.Fatalf("lost updates: %d scopes, want %d", len(g.Scopes), writers*each)
	}
	seen := map[string]bool{}
	for _, sc := range g.Scopes {
		if seen[sc] {
			t.Fatalf("scope %s applied twice", sc)
		}
		seen[sc] = true
	}
}

func testUpdaterErrorAborts(t *testing.T, b Backend) {
	s := b.Open(t)
	must(t, s.CreateServer(ctx, store.Server{Name: "x", URL: "http://a"}))
	boom := errors.New("boom")
	err := s.UpdateServer(ctx, "x", func(s store.Server) (store.Server, error) {
		s.URL = "http://changed"
		return s, boom
	})
	if !errors.Is(err, boom) {
		t.Fatalf("updater error not returned: %v", err)
	}
	got, _ := s.GetServer(ctx, "x")
	if got.URL != "http://a" {
		t.Fatal("aborted update was written")
	}
}

func testAudit(t *testing.T, b Backend) {
	s := b.Open(t)
	_, err := s.LastAudit(ctx)
	mustNotFound(t, "empty trail", err)
	var evs []store.AuditEvent
	for i := uint64(1); i <= 300; i++ {
		evs = append(evs, store.AuditEvent{Seq: i, Type: "decision", Hash: fmt.Sprint(i)})
	}
	must(t, s.AppendAudit(ctx, evs[:100]...))
	must(t, s.AppendAudit(ctx, evs[100:]...))
	if err := s.AppendAudit(ctx, store.AuditEvent{Seq: 5}); !errors.Is(err, store.ErrAlreadyExists) {
		t.Fatalf("overwrite of seq 5: %v", err)
	}
	if err := s.AppendAudit(ctx, store.AuditEvent{Seq: 302}); err == nil {
		t.Fatal("gap in chain accepted")
	}
	last, err := s.LastAudit(ctx)
	must(t, err)
	if last.Seq != 300 {
		t.Fatalf("last seq %d", last.Seq)
	}
	page, err := s.ListAudit(ctx, 256, 10)
	must(t, err)
	if len(page) != 10 || page[0].Seq != 256 || page[9].Seq != 265 {
		t.Fatalf("page: %d events from %d", len(page), page[0].Seq)
	}
	rest, err := s.ListAudit(ctx, 295, 0)
	must(t, err)
	if len(rest) != 6 {
		t.Fatalf("tail: %d events", len(rest))
	}
}

func testDurability(t *testing.T, b Backend) {
	if b.Reopen == nil {
		t.Skip("backend keeps nothing across reopen")
	}
	s := b.Open(t)
	must(t, s.CreateClient(ctx, store.Client{ID: "c"}))
	must(t, s.CreateGrant(ctx, store.Grant{ID: "g", Subject: "alice"}))
	must(t, s.CreateHandle(ctx, store.Handle{Digest: "d", GrantID: "g", ExpiresAt: time.Now().Add(time.Hour)}))
	must(t, s.CreateServer(ctx, store.Server{Name: "bi", URL: "http://bi"}))
	must(t, s.AppendAudit(ctx, store.AuditEvent{Seq: 1, Hash: "h1"}))
	s = b.Reopen(t, s)
	if _, err := s.GetClient(ctx, "c"); err != nil {
		t.Fatalf("client lost: %v", err)
	}
	if _, g, err := s.ResolveHandle(ctx, "d"); err != nil || g.Subject != "alice" {
		t.Fatalf("handle or grant lost: %v", err)
	}
	if _, err := s.GetServer(ctx, "bi"); err != nil {
		t.Fatalf("server lost: %v", err)
	}
	if e, err := s.LastAudit(ctx); err != nil || e.Hash != "h1" {
		t.Fatalf("audit lost: %v", err)
	}
}
