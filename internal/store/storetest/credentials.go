package storetest

import (
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/warden-mcp/warden/internal/store"
)

func testProviders(t *testing.T, b Backend) {
	s := b.Open(t)
	p := store.Provider{Name: "github", Kind: store.ProviderOAuth, AuthorizeURL: "https://github.com/login/oauth/authorize",
		TokenURL: "https://github.com/login/oauth/access_token", ClientID: "cid", Scopes: []string{"repo"},
		ClientSecret: &store.Sealed{KeyID: "k", Nonce: []byte{1}, Ciphertext: []byte{2}}, AuthParams: map[string]string{"allow_signup": "false"}}
	must(t, s.CreateProvider(ctx, p))
	mustExists(t, "create twice", s.CreateProvider(ctx, p))
	got, err := s.GetProvider(ctx, "github")
	must(t, err)
	if got.TokenURL != p.TokenURL || got.ClientSecret == nil || got.ClientSecret.KeyID != "k" || got.Version != 1 || got.AuthParams["allow_signup"] != "false" {
		t.Fatalf("round trip: %+v", got)
	}
	must(t, s.UpdateProvider(ctx, "github", func(p store.Provider) (store.Provider, error) {
		p.Name = "renamed" // ignored: the key is the name
		p.Scopes = []string{"repo", "read:org"}
		return p, nil
	}))
	got, err = s.GetProvider(ctx, "github")
	must(t, err)
	if len(got.Scopes) != 2 || got.Version != 2 || got.Name != "github" {
		t.Fatalf("update: %+v", got)
	}
	must(t, s.CreateProvider(ctx, store.Provider{Name: "apikeys", Kind: store.ProviderAPIKey, Header: "X-Api-Key"}))
	list, err := s.ListProviders(ctx)
	must(t, err)
	if len(list) != 2 || list[0].Name != "apikeys" || list[1].Name != "github" {
		t.Fatalf("list: %+v", list)
	}
	must(t, s.DeleteProvider(ctx, "github"))
	_, err = s.GetProvider(ctx, "github")
	mustNotFound(t, "deleted provider", err)
	mustNotFound(t, "delete twice", s.DeleteProvider(ctx, "github"))
	mustNotFound(t, "update missing", s.UpdateProvider(ctx, "github", func(p store.Provider) (store.Provider, error) { return p, nil }))
}

func testAccounts(t *testing.T, b Backend) {
	s := b.Open(t)
	now := time.Now().UTC().Truncate(time.Microsecond)
	sealed := store.Sealed{KeyID: "k", Nonce: []byte{1}, Ciphertext: []byte{2, 3}}
	// Subjects and providers that would collide under a naive key.
	for _, a := range []store.Account{
		{Subject: "alice", Provider: "github", Secret: sealed, Expiry: now.Add(time.Hour), ConnectedAt: now},
		{Subject: "bob", Provider: "github", Secret: sealed, ConnectedAt: now},
		{Subject: "alice", Provider: "atlassian", Secret: sealed, ConnectedAt: now},
		{Subject: "x/alice", Provider: "git", Secret: sealed, ConnectedAt: now},
		{Subject: "alice", Provider: "git/x", Secret: sealed, ConnectedAt: now},
	} {
		must(t, s.PutAccount(ctx, a))
	}
	got, err := s.GetAccount(ctx, "alice", "github")
	must(t, err)
	if got.Version != 1 || !got.Expiry.Equal(now.Add(time.Hour)) || string(got.Secret.Ciphertext) != string(sealed.Ciphertext) {
		t.Fatalf("round trip: %+v", got)
	}
	_, err = s.GetAccount(ctx, "alice", "git")
	mustNotFound(t, "other provider", err)
	// Put replaces and continues the version.
	must(t, s.PutAccount(ctx, store.Account{Subject: "alice", Provider: "github", Secret: store.Sealed{KeyID: "k2"}, ConnectedAt: now}))
	got, _ = s.GetAccount(ctx, "alice", "github")
	if got.Version != 2 || got.Secret.KeyID != "k2" || !got.Expiry.IsZero() {
		t.Fatalf("replace: %+v", got)
	}
	must(t, s.UpdateAccount(ctx, "alice", "github", func(a store.Account) (store.Account, error) {
		a.Subject, a.Provider = "mallory", "evil" // ignored: the key
		a.RefreshedAt = now
		return a, nil
	}))
	got, _ = s.GetAccount(ctx, "alice", "github")
	if got.Version != 3 || !got.RefreshedAt.Equal(now) || got.Subject != "alice" {
		t.Fatalf("update: %+v", got)
	}
	boom := errors.New("boom")
	if err := s.UpdateAccount(ctx, "alice", "github", func(a store.Account) (store.Account, error) { return a, boom }); !errors.Is(err, boom) {
		t.Fatalf("updater error: %v", err)
	}
	mustNotFound(t, "update missing", s.UpdateAccount(ctx, "nobody", "github", func(a store.Account) (store.Account, error) { return a, nil }))

	all, err := s.ListAccounts(ctx, store.AccountFilter{})
	must(t, err)
	var keys []string
	for _, a := range all {
		keys = append(keys, a.Provider+" "+a.Subject)
	}
	wantAll := []string{"atlassian alice", "git x/alice", "git/x alice", "github alice", "github bob"}
	if len(keys) != len(wantAll) {
		t.Fatalf("list all: %q", keys)
	}
	for i := range keys {
		if keys[i] != wantAll[i] {
			t.Fatalf("list all: %q, want %q", keys, wantAll)
		}
	}
	bySub, err := s.ListAccounts(ctx, store.AccountFilter{Subject: "alice"})
	must(t, err)
	if len(bySub) != 3 {
		t.Fatalf("by subject: %+v", bySub)
	}
	byProv, err := s.ListAccounts(ctx, store.AccountFilter{Provider: "github"})
	must(t, err)
	if len(byProv) != 2 || byProv[0].Subject != "alice" || byProv[1].Subject != "bob" {
		t.Fatalf("by provider: %+v", byProv)
	}
	one, err := s.ListAccounts(ctx, store.AccountFilter{Provider: "git", Subject: "x/alice"})
	must(t, err)
	if len(one) != 1 {
		t.Fatalf("by both: %+v", one)
	}
	must(t, s.DeleteAccount(ctx, "alice", "github"))
	_, err = s.GetAccount(ctx, "alice", "github")
	mustNotFound(t, "deleted", err)
	mustNotFound(t, "delete twice", s.DeleteAccount(ctx, "alice", "github"))
}

// testConcurrentAccountUpdates: concurrent updaters of one account lose
// nothing (compare-and-swap), as for every other record.
func testConcurrentAccountUpdates(t *testing.T, b Backend) {
	s := b.Open(t)
	must(t, s.PutAccount(ctx, store.Account{Subject: "alice", Provider: "github", ConnectedAt: time.Now()}))
	const n = 20
	var wg sync.WaitGroup
	for i := 0; i < n; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := s.UpdateAccount(ctx, "alice", "github", func(a store.Account) (store.Account, error) {
				a.Scopes = append(a.Scopes, "x")
				return a, nil
			}); err != nil {
				t.Error(err)
			}
		}()
	}
	wg.Wait()
	got, err := s.GetAccount(ctx, "alice", "github")
	must(t, err)
	if len(got.Scopes) != n || got.Version != n+1 {
		t.Fatalf("%d scopes, version %d: want %d and %d", len(got.Scopes), got.Version, n, n+1)
	}
}
