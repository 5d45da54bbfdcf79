package audit

import (
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/warden-mcp/warden/internal/store"
)

// Durability says when a Check's answer may leave Warden relative to its
// audit event.
type Durability string

const (
	// Sync answers a decision once its event is in a group commit the
	// store has taken (for the embedded store, one write(2) of the whole
	// batch into the trail's segment, which a crash of Warden, kill -9
	// included, cannot lose; with Options.Fsync also one fdatasync, which a
	// crash of the machine cannot lose either; for PostgreSQL, the
	// committed transaction). Concurrent Checks share one commit.
	Sync Durability = "sync"
	// Async answers once the event is queued. A crash loses what was
	// queued; a full queue waits or drops (OnFull).
	Async Durability = "async"
)

// OnFull is what an Async decision does when the queue is full.
type OnFull string

const (
	// Wait blocks the Check until there is room or its deadline passes;
	// an allow that cannot be queued is answered 503.
	Wait OnFull = "wait"
	// Drop drops the event, counts it (warden_audit_dropped_total) and
	// writes an audit_gap event with the count into the chain: the trail
	// says where it is incomplete, never silently.
	Drop OnFull = "drop"
)

// GapType is the type of the marker event written for dropped events.
const GapType = "audit_gap"

func (o *Options) validate() error {
	switch o.Durability {
	case "":
		o.Durability = Sync
	case Sync, Async:
	default:
		return fmt.Errorf("durability must be sync or async, got %q", o.Durability)
	}
	switch o.OnFull {
	case "":
		o.OnFull = Wait
	case Wait, Drop:
	default:
		return fmt.Errorf("on_full must be wait or drop, got %q", o.OnFull)
	}
	return nil
}

// Syncer is a store whose appends can be made durable on demand: the trail
// calls SyncAudit after each batch in Sync mode. A store whose appends are
// durable when they return (PostgreSQL) need not implement it.
type Syncer interface {
	SyncAudit() error
}

func (t *Trail) syncStore() error {
	if s, ok := t.st.(Syncer); ok {
		return s.SyncAudit()
	}
	return nil
}

// Decisions returns the recorder for Check decisions, which follows the
// trail's durability: in Sync mode both its methods wait for the event's
// durable group commit; in Async mode both queue (OnFull decides what a
// full queue does). Admin changes, issued tokens and revocations keep
// using the Trail's own RecordSync, which always waits.
func (t *Trail) Decisions() *Decisions { return &Decisions{t: t} }

// Decisions records Check decisions (see Trail.Decisions). Its method set
// is authz.Recorder's.
type Decisions struct{ t *Trail }

// Record records a denied Check.
func (d *Decisions) Record(ctx context.Context, ev store.AuditEvent) error {
	return d.record(ctx, ev)
}

// RecordSync records an allowed Check.
func (d *Decisions) RecordSync(ctx context.Context, ev store.AuditEvent) error {
	return d.record(ctx, ev)
}

func (d *Decisions) record(ctx context.Context, ev store.AuditEvent) error {
	t := d.t
	if t.opts.Durability == Sync {
		return t.RecordSync(ctx, ev)
	}
	if t.opts.OnFull == Wait {
		return t.Record(ctx, ev)
	}
	p := t.pend(ev)
	select {
	case <-t.closing:
		return ErrClosed
	default:
	}
	select {
	case t.q <- p:
		return nil
	default:
	}
	t.gaps.add(p.ev.Time)
	t.m.dropped.Inc()
	select {
	case t.gapSignal <- struct{}{}:
	default: // the writer is already told
	}
	return nil
}

// gapCounter counts dropped events between two gap markers.
type gapCounter struct {
	mu          sync.Mutex
	n           uint64
	first, last time.Time
}

func (g *gapCounter) add(at time.Time) {
	g.mu.Lock()
	if g.n == 0 || at.Before(g.first) {
		g.first = at
	}
	if at.After(g.last) {
		g.last = at
	}
	g.n++
	g.mu.Unlock()
}

func (g *gapCounter) pending() uint64 {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.n
}

// take returns the marker for the events dropped since the last one.
func (g *gapCounter) take(now time.Time) (store.AuditEvent, bool) {
	g.mu.Lock()
	n, first, last := g.n, g.first, g.last
	g.n, g.first, g.last = 0, time.Time{}, time.Time{}
	g.mu.Unlock()
	if n == 0 {
		return store.AuditEvent{}, false
	}
	return store.AuditEvent{
		Time:   now.UTC(),
		Type:   GapType,
		Actor:  "warden",
		Reason: fmt.Sprintf("audit queue full: %d decision events dropped (audit.on_full: drop)", n),
		Details: map[string]any{
			"dropped":          n,
			"first_dropped_at": first.UTC().Format(time.RFC3339Nano),
			"last_dropped_at":  last.UTC().Format(time.RFC3339Nano),
		},
	}, true
}

// metrics are the trail's Prometheus collectors; without a Registerer
// they are kept but not exported.
type metrics struct {
	depth, capacity prometheus.GaugeFunc
	commits         prometheus.Counter
	events          prometheus.Counter
	batch           prometheus.Histogram
	commitSeconds   prometheus.Histogram
	dropped         prometheus.Counter
	gaps            prometheus.Counter
}

func newMetrics(t *Trail) *metrics {
	return &metrics{
		depth: prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "warden_audit_queue_depth", Help: "Audit events queued, not yet written."},
			func() float64 { return float64(len(t.q)) }),
		capacity: prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "warden_audit_queue_capacity", Help: "Audit events the queue holds (audit.queue_size)."},
			func() float64 { return float64(cap(t.q)) }),
		commits: prometheus.NewCounter(prometheus.CounterOpts{Name: "warden_audit_commits_total", Help: "Audit group commits (one store write, and in sync mode one fsync, each)."}),
		events:  prometheus.NewCounter(prometheus.CounterOpts{Name: "warden_audit_events_total", Help: "Audit events committed to the store."}),
		batch: prometheus.NewHistogram(prometheus.HistogramOpts{Name: "warden_audit_batch_size", Help: "Events per audit group commit.",
			Buckets: prometheus.ExponentialBuckets(1, 2, 11)}),
		commitSeconds: prometheus.NewHistogram(prometheus.HistogramOpts{Name: "warden_audit_commit_seconds", Help: "Time to write (and in sync mode make durable) one audit batch.",
			Buckets: prometheus.ExponentialBuckets(0.00005, 2, 16)}),
		dropped: prometheus.NewCounter(prometheus.CounterOpts{Name: "warden_audit_dropped_total", Help: "Decision events dropped on a full queue (audit.on_full: drop); each run of drops is marked by an audit_gap event."}),
		gaps:    prometheus.NewCounter(prometheus.CounterOpts{Name: "warden_audit_gaps_total", Help: "audit_gap marker events written."}),
	}
}

func (m *metrics) register(r prometheus.Registerer) error {
	for _, c := range []prometheus.Collector{m.depth, m.capacity, m.commits, m.events, m.batch, m.commitSeconds, m.dropped, m.gaps} {
		if err := r.Register(c); err != nil {
			return err
		}
	}
	return nil
}

func (m *metrics) committed(n int, took time.Duration) {
	m.commits.Inc()
	m.events.Add(float64(n))
	m.batch.Observe(float64(n))
	m.commitSeconds.Observe(took.Seconds())
}
