package upstream_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/warden-mcp/warden/internal/store"
	"github.com/warden-mcp/warden/internal/upstream"
)

// audienceIdP stands in for the authorization server (oauth.Server), the
// broker's boundary: it counts the refreshes it is asked for. The real
// IdP round trip is in test/e2e (TestIdPCredentialForAnAudience).
type audienceIdP struct {
	calls  atomic.Int32
	refuse atomic.Bool
	ttl    time.Duration
	gate   chan struct{} // when set, each refresh waits for it
}

func (a *audienceIdP) IdPAccessToken(context.Context, store.Grant) (string, time.Time, error) {
	return "sign-in-token", time.Now().Add(time.Hour), nil
}

func (a *audienceIdP) IdPAudienceToken(_ context.Context, g store.Grant, audience string, scopes []string) (string, time.Time, error) {
	n := a.calls.Add(1)
	if a.gate != nil {
		<-a.gate
	}
	if a.refuse.Load() {
		return "", time.Time{}, fmt.Errorf("%w: invalid_target", upstream.ErrRefused)
	}
	return fmt.Sprintf("%s|%s|%s|%d", g.ID, audience, strings.Join(scopes, " "), n), time.Now().Add(a.ttl), nil
}

func TestIdPAudienceTokenIsCachedPerGrantAndServer(t *testing.T) {
	f := newFixture(t)
	idp := &audienceIdP{ttl: time.Hour}
	b, err := upstream.New(upstream.Options{Store: f.st, Keyring: f.ring, Audit: f.trail, IdP: idp})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	g := store.Grant{ID: "g1", Subject: "alice"}
	files := store.Server{Name: "files", Credential: store.CredentialIdP, IdPAudience: "api://files", IdPScopes: []string{"files.read"}}
	plain := store.Server{Name: "wiki", Credential: store.CredentialIdP}

	c, err := b.Credential(ctx, files, g)
	if err != nil || c.Value != "Bearer g1|api://files|files.read|1" || c.Header != "authorization" {
		t.Fatalf("first: %+v %v", c, err)
	}
	if c, err = b.Credential(ctx, files, g); err != nil || c.Value != "Bearer g1|api://files|files.read|1" || idp.calls.Load() != 1 {
		t.Fatalf("second (cached): %+v %v, %d refreshes", c, err, idp.calls.Load())
	}
	// Without audience and scopes: the sign-in token, no refresh.
	if c, err = b.Credential(ctx, plain, g); err != nil || c.Value != "Bearer sign-in-token" || idp.calls.Load() != 1 {
		t.Fatalf("plain idp: %+v %v", c, err)
	}
	// Another grant, and the same server re-registered for other scopes,
	// get their own tokens.
	if c, _ = b.Credential(ctx, files, store.Grant{ID: "g2", Subject: "bob"}); c.Value != "Bearer g2|api://files|files.read|2" {
		t.Fatalf("another grant: %+v", c)
	}
	wider := files
	wider.IdPScopes = []string{"files.read", "files.write"}
	if c, _ = b.Credential(ctx, wider, g); c.Value != "Bearer g1|api://files|files.read files.write|3" {
		t.Fatalf("re-registered server served the old token: %+v", c)
	}
}

func TestIdPAudienceTokenSingleFlightAndRefusal(t *testing.T) {
	f := newFixture(t)
	idp := &audienceIdP{ttl: time.Hour, gate: make(chan struct{})}
	b, err := upstream.New(upstream.Options{Store: f.st, Keyring: f.ring, Audit: f.trail, IdP: idp})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	g := store.Grant{ID: "g1", Subject: "alice"}
	srv := store.Server{Name: "files", Credential: store.CredentialIdP, IdPAudience: "api://files"}
	var wg sync.WaitGroup
	got := make(chan string, 50)
	for i := 0; i < 50; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c, err := b.Credential(ctx, srv, g)
			if err != nil {
				got <- err.Error()
				return
			}
			got <- c.Value
		}()
	}
	// Release the refresh only once it has been asked for: every caller
	// that arrives meanwhile joins it.
	for idp.calls.Load() == 0 {
		time.Sleep(time.Millisecond)
	}
	close(idp.gate)
	wg.Wait()
	close(got)
	for v := range got {
		if v != "Bearer g1|api://files||1" {
			t.Fatalf("a caller got %q", v)
		}
	}
	// A caller that came after the flight ended found the cache: still
	// one refresh.
	if n := idp.calls.Load(); n != 1 {
		t.Fatalf("%d refreshes for 50 concurrent callers", n)
	}

	// A refusal: an error each time (nothing cached), audited.
	idp.refuse.Store(true)
	refused := store.Server{Name: "nofiles", Credential: store.CredentialIdP, IdPAudience: "api://unknown"}
	for i := 0; i < 2; i++ {
		if _, err := b.Credential(ctx, refused, g); !errors.Is(err, upstream.ErrRefused) {
			t.Fatalf("refused audience: %v", err)
		}
	}
	if n := idp.calls.Load(); n != 3 {
		t.Fatalf("%d refreshes, want 3 (a refusal is not cached)", n)
	}
	var failed int
	for _, ev := range f.events(t) {
		if ev.Type == "credential_refresh_failed" && ev.Server == "nofiles" && strings.Contains(ev.Reason, "invalid_target") && ev.Details["audience"] == "api://unknown" {
			failed++
		}
	}
	if failed != 2 {
		t.Fatalf("%d credential_refresh_failed events, want 2", failed)
	}
}
