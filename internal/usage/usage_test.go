package usage

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/warden-mcp/warden/internal/store"
)

// counting counts the store writes the tracker makes, and can fail them.
type counting struct {
	*store.Badger
	puts atomic.Int64
	fail atomic.Bool
}

func (c *counting) PutLastUse(ctx context.Context, uses ...store.LastUse) error {
	c.puts.Add(1)
	if c.fail.Load() {
		return errors.New("store down")
	}
	return c.Badger.PutLastUse(ctx, uses...)
}

func open(t *testing.T) *counting {
	st, err := store.OpenBadger(t.TempDir(), store.BadgerOptions{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = st.Close() })
	return &counting{Badger: st}
}

func TestUsesAreBatchedAndMoveForward(t *testing.T) {
	ctx := context.Background()
	st := open(t)
	tr := New(Options{Store: st})
	t0 := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	var wg sync.WaitGroup
	for w := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range 1000 {
				tr.Used("g1", "bi", t0.Add(time.Duration(i*8+w)*time.Millisecond))
				tr.Used("g2", "hr", t0)
			}
		}()
	}
	wg.Wait()
	if n := st.puts.Load(); n != 0 {
		t.Fatalf("%d store writes before any flush", n)
	}
	if err := tr.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	if n := st.puts.Load(); n != 1 {
		t.Fatalf("16000 uses took %d store writes, want 1 batch", n)
	}
	uses, _ := st.ListLastUse(ctx)
	got := map[Key]time.Time{}
	for _, u := range uses {
		got[Key{u.GrantID, u.Server}] = u.At
	}
	if want := t0.Add(7999 * time.Millisecond); !got[Key{"g1", "bi"}].Equal(want) || !got[Key{"g2", "hr"}].Equal(t0) {
		t.Fatalf("stored %v, want g1/bi at %v", got, want)
	}
	// Nothing new: no write.
	if err := tr.Flush(ctx); err != nil || st.puts.Load() != 1 {
		t.Fatalf("idle flush wrote: %v, %d writes", err, st.puts.Load())
	}
	// An older use never moves the time back, in memory or in the store.
	tr.Used("g1", "bi", t0)
	snap, err := tr.Snapshot(ctx)
	if err != nil || !snap[Key{"g1", "bi"}].Equal(t0.Add(7999*time.Millisecond)) {
		t.Fatalf("snapshot %v %v", snap, err)
	}
}

func TestFailedFlushKeepsUsesForTheNext(t *testing.T) {
	ctx := context.Background()
	st := open(t)
	tr := New(Options{Store: st})
	at := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	tr.Used("g1", "bi", at)
	st.fail.Store(true)
	if err := tr.Flush(ctx); err == nil {
		t.Fatal("flush into a failing store reported success")
	}
	// The snapshot still has the use from memory.
	snap, _ := tr.Snapshot(ctx)
	if !snap[Key{"g1", "bi"}].Equal(at) {
		t.Fatalf("use lost from memory: %v", snap)
	}
	st.fail.Store(false)
	if err := tr.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	uses, _ := st.ListLastUse(ctx)
	if len(uses) != 1 || !uses[0].At.Equal(at) {
		t.Fatalf("retried flush stored %+v", uses)
	}
}

func TestRunFlushesEveryInterval(t *testing.T) {
	st := open(t)
	tr := New(Options{Store: st, Interval: 10 * time.Millisecond})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go tr.Run(ctx)
	tr.Used("g1", "bi", time.Now())
	deadline := time.Now().Add(10 * time.Second)
	for {
		if uses, _ := st.ListLastUse(context.Background()); len(uses) == 1 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatal("Run never flushed")
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func BenchmarkUsed(b *testing.B) {
	tr := New(Options{})
	now := time.Now()
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			tr.Used("grant-1", "bi", now)
		}
	})
}
