package store

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// The write-through cache must never serve a grant older than the last
// completed UpdateGrant, while readers race the writers.
func TestHotCacheNeverServesStaleGrants(t *testing.T) {
	b, err := OpenBadger(t.TempDir(), BadgerOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	// Stall every filling reader so writers commit and drop in between.
	b.hot.afterRead = func() { time.Sleep(200 * time.Microsecond) }
	ctx := context.Background()
	const grants = 4
	for i := 0; i < grants; i++ {
		id := fmt.Sprint("g", i)
		if err := b.CreateGrant(ctx, Grant{ID: id}); err != nil {
			t.Fatal(err)
		}
		if err := b.CreateHandle(ctx, Handle{Digest: "d" + id, GrantID: id, ExpiresAt: time.Now().Add(time.Hour)}); err != nil {
			t.Fatal(err)
		}
	}
	// committed[i] is the highest version whose UpdateGrant has returned.
	var committed [grants]atomic.Uint64
	for i := range committed {
		committed[i].Store(1)
	}
	stop := make(chan struct{})
	var stale atomic.Int64
	var reads atomic.Int64
	var wg sync.WaitGroup
	for r := 0; r < 6; r++ {
		wg.Add(1)
		go func(r int) {
			defer wg.Done()
			for n := 0; ; n++ {
				select {
				case <-stop:
					return
				default:
				}
				i := (n + r) % grants
				floor := committed[i].Load()
				_, g, err := b.ResolveHandle(ctx, fmt.Sprint("dg", i))
				if err != nil {
					t.Error(err)
					return
				}
				reads.Add(1)
				if g.Version < floor {
					stale.Add(1)
				}
			}
		}(r)
	}
	for w := 0; w < 1; w++ {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			for k := 0; k < 150; k++ {
				var v uint64
				err := b.UpdateGrant(ctx, fmt.Sprint("g", i), func(g Grant) (Grant, error) {
					v = g.Version + 1
					return g, nil
				})
				if err != nil {
					t.Error(err)
					return
				}
				committed[i].Store(v)
				// Leave quiet gaps so readers see no write in flight,
				// miss, and fill while the next write lands.
				time.Sleep(time.Duration(100+k%5*100) * time.Microsecond)
			}
		}(w)
	}
	// Writers finish on their own; then stop the readers.
	for i := range committed[:1] {
		for committed[i].Load() < 151 {
			time.Sleep(time.Millisecond)
		}
	}
	close(stop)
	wg.Wait()
	if n := stale.Load(); n != 0 {
		t.Fatalf("%d of %d reads returned a grant older than a completed update", n, reads.Load())
	}
	// After the dust settles the cache is filled again and current.
	for i := 0; i < 1; i++ {
		_, g, _ := b.ResolveHandle(ctx, fmt.Sprint("dg", i))
		if g.Version != 151 {
			t.Fatalf("grant %d at version %d, want 151", i, g.Version)
		}
	}
	if _, _, ok := b.hot.resolve("dg0"); !ok {
		t.Fatal("cache not refilled once writes stopped")
	}
}

func TestHotCacheDropsDeletedAndExpired(t *testing.T) {
	b, err := OpenBadger(t.TempDir(), BadgerOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	ctx := context.Background()
	now := time.Now()
	b.now = func() time.Time { return now }
	_ = b.CreateGrant(ctx, Grant{ID: "g"})
	_ = b.CreateHandle(ctx, Handle{Digest: "d", GrantID: "g", ExpiresAt: now.Add(time.Minute)})
	if _, _, err := b.ResolveHandle(ctx, "d"); err != nil {
		t.Fatal(err)
	}
	now = now.Add(2 * time.Minute)
	if _, _, err := b.ResolveHandle(ctx, "d"); err == nil {
		t.Fatal("cached handle served after expiry")
	}
	now = now.Add(-2 * time.Minute)
	if err := b.DeleteHandle(ctx, "d"); err != nil {
		t.Fatal(err)
	}
	if _, _, err := b.ResolveHandle(ctx, "d"); err == nil {
		t.Fatal("deleted handle served from cache")
	}
}
