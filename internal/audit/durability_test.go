package audit_test

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/warden-mcp/warden/internal/audit"
	"github.com/warden-mcp/warden/internal/store"
)

// gatedStore is a real Badger store whose appends can be held at a gate,
// so a test decides what is queued while a commit is in flight. It counts
// appends and syncs.
type gatedStore struct {
	*store.Badger
	mu      sync.Mutex
	gate    chan struct{} // nil: open
	entered chan int      // receives the batch size of each held append
	appends atomic.Int64
	syncs   atomic.Int64
}

func (g *gatedStore) hold() {
	g.mu.Lock()
	g.gate = make(chan struct{})
	g.mu.Unlock()
}

func (g *gatedStore) release() {
	g.mu.Lock()
	close(g.gate)
	g.gate = nil
	g.mu.Unlock()
}

func (g *gatedStore) AppendAuditLines(ctx context.Context, evs []store.AuditEvent, lines []byte) error {
	g.mu.Lock()
	gate := g.gate
	g.mu.Unlock()
	if gate != nil {
		g.entered <- len(evs)
		<-gate
	}
	g.appends.Add(1)
	return g.Badger.AppendAuditLines(ctx, evs, lines)
}

func (g *gatedStore) SyncAudit() error {
	g.syncs.Add(1)
	return g.Badger.SyncAudit()
}

func newGated(t *testing.T) *gatedStore {
	st := openStore(t, t.TempDir())
	t.Cleanup(func() { _ = st.Close() })
	return &gatedStore{Badger: st, entered: make(chan int, 16)}
}

// In sync mode every decision waits for a durable commit, and the Checks
// that arrive while one commit is in flight share the next: one append and
// one fsync for all of them.
func TestSyncGroupCommitsConcurrentDecisions(t *testing.T) {
	g := newGated(t)
	reg := prometheus.NewRegistry()
	tr, err := audit.Open(ctx, g, audit.Options{Durability: audit.Sync, Fsync: true, Registerer: reg})
	if err != nil {
		t.Fatal(err)
	}
	defer tr.Close(ctx)
	dec := tr.Decisions()
	g.hold()
	var returned atomic.Int64
	first := make(chan error, 1)
	go func() {
		first <- dec.RecordSync(ctx, store.AuditEvent{Type: "decision", RequestID: "r0"})
		returned.Add(1)
	}()
	if n := <-g.entered; n != 1 {
		t.Fatalf("first batch holds %d events", n)
	}
	const n = 50
	var wg sync.WaitGroup
	errs := make(chan error, n)
	for i := 1; i <= n; i++ {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			// A denial waits too: in sync mode every answer does.
			errs <- dec.Record(ctx, store.AuditEvent{Type: "decision", RequestID: fmt.Sprint("r", i)})
			returned.Add(1)
		}(i)
	}
	// Wait until all n are queued behind the held commit.
	for counter(t, reg, "warden_audit_queue_depth") != n {
		time.Sleep(time.Millisecond)
	}
	if r := returned.Load(); r != 0 {
		t.Fatalf("%d decisions answered before their commit", r)
	}
	g.release()
	if err := <-first; err != nil {
		t.Fatal(err)
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	if a, s := g.appends.Load(), g.syncs.Load(); a != 2 || s != 2 {
		t.Fatalf("%d appends and %d syncs for two group commits", a, s)
	}
	if c := counter(t, reg, "warden_audit_commits_total"); c != 2 {
		t.Fatalf("commits metric %v", c)
	}
	evs, err := g.ListAudit(ctx, 0, 0)
	if err != nil || len(evs) != n+1 {
		t.Fatalf("stored %d events (%v)", len(evs), err)
	}
}

// In async mode with on_full: drop, a full queue drops events, counts them
// and writes one audit_gap marker with the count, and the chain verifies.
func TestAsyncDropWritesGapMarker(t *testing.T) {
	g := newGated(t)
	reg := prometheus.NewRegistry()
	tr, err := audit.Open(ctx, g, audit.Options{Durability: audit.Async, OnFull: audit.Drop, QueueSize: 2, Registerer: reg})
	if err != nil {
		t.Fatal(err)
	}
	dec := tr.Decisions()
	g.hold()
	if err := dec.RecordSync(ctx, store.AuditEvent{Type: "decision", RequestID: "held"}); err != nil {
		t.Fatal(err)
	}
	<-g.entered // the writer holds "held"; the queue is empty
	for i := 0; i < 9; i++ {
		// Two fill the queue, seven are dropped; none blocks.
		if err := dec.RecordSync(ctx, store.AuditEvent{Type: "decision", RequestID: fmt.Sprint("q", i)}); err != nil {
			t.Fatal(err)
		}
	}
	if d := counter(t, reg, "warden_audit_dropped_total"); d != 7 {
		t.Fatalf("dropped metric %v, want 7", d)
	}
	g.release()
	if err := tr.Close(ctx); err != nil {
		t.Fatal(err)
	}
	evs, err := g.ListAudit(ctx, 0, 0)
	if err != nil {
		t.Fatal(err)
	}
	var gaps []store.AuditEvent
	for _, e := range evs {
		if e.Type == audit.GapType {
			gaps = append(gaps, e)
		}
	}
	if len(evs) != 4 || len(gaps) != 1 {
		t.Fatalf("stored %d events with %d gap markers: %+v", len(evs), len(gaps), evs)
	}
	if d, _ := gaps[0].Details["dropped"].(float64); d != 7 {
		t.Fatalf("gap marker details %v", gaps[0].Details)
	}
	if counter(t, reg, "warden_audit_gaps_total") != 1 {
		t.Fatal("gap metric not counted")
	}
	if g.syncs.Load() != 0 {
		t.Fatal("async mode synced")
	}
	r, err := audit.Verify(ctx, g)
	if err != nil || !r.OK() {
		t.Fatalf("verify %+v %v", r, err)
	}
}

// In async mode with on_full: wait, a decision that finds the queue full
// waits until its deadline and then fails (authz answers an allow 503).
func TestAsyncWaitFailsAtDeadline(t *testing.T) {
	g := newGated(t)
	tr, err := audit.Open(ctx, g, audit.Options{Durability: audit.Async, OnFull: audit.Wait, QueueSize: 1})
	if err != nil {
		t.Fatal(err)
	}
	dec := tr.Decisions()
	g.hold()
	_ = dec.RecordSync(ctx, store.AuditEvent{Type: "decision"})
	<-g.entered
	if err := dec.RecordSync(ctx, store.AuditEvent{Type: "decision"}); err != nil {
		t.Fatal(err) // queued: async answers at once
	}
	dctx, cancel := context.WithTimeout(ctx, 20*time.Millisecond)
	defer cancel()
	if err := dec.RecordSync(dctx, store.AuditEvent{Type: "decision"}); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("full queue: %v", err)
	}
	g.release()
	if err := tr.Close(ctx); err != nil {
		t.Fatal(err)
	}
	evs, _ := g.ListAudit(ctx, 0, 0)
	if len(evs) != 2 {
		t.Fatalf("stored %d events, want the 2 accepted", len(evs))
	}
}

func TestBadDurabilityRefused(t *testing.T) {
	st := openStore(t, t.TempDir())
	defer st.Close()
	if _, err := audit.Open(ctx, st, audit.Options{Durability: "later"}); err == nil {
		t.Fatal("unknown durability accepted")
	}
	if _, err := audit.Open(ctx, st, audit.Options{OnFull: "explode"}); err == nil {
		t.Fatal("unknown on_full accepted")
	}
}

func counter(t *testing.T, reg *prometheus.Registry, name string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() == name {
			m := mf.GetMetric()[0]
			if m.GetCounter() != nil {
				return m.GetCounter().GetValue()
			}
			return m.GetGauge().GetValue()
		}
	}
	t.Fatalf("metric %s not registered", name)
	return 0
}
