// Package audit keeps Warden's tamper-evident trail: every decision, token,
// revocation and admin change becomes one event, chained by SHA-256 to the
// one before it, stored durably and mirrored as a JSON line to a sink.
//
// Events are chained and written by one goroutine in batches, so the hot
// path pays for a channel send, not a disk write. When the store cannot keep
// up or fails, the queue fills and Record blocks until the caller's deadline:
// the caller then fails closed rather than acting unaudited.
package audit

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"strconv"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/warden-mcp/warden/internal/store"
)

// Store is the part of the store the trail needs.
type Store interface {
	AppendAudit(ctx context.Context, events ...store.AuditEvent) error
	ListAudit(ctx context.Context, from uint64, limit int) ([]store.AuditEvent, error)
	LastAudit(ctx context.Context) (store.AuditEvent, error)
}

// LineStore is a Store that can take the batch as the trail encoded it:
// one JSON line per event, each exactly json.Marshal of the event with its
// hash, so the store need not encode it again.
type LineStore interface {
	AppendAuditLines(ctx context.Context, events []store.AuditEvent, lines []byte) error
}

// ChainStore is a Store several processes append to that can chain a
// batch onto its head under its own serialization (the PostgreSQL
// store's audit_head row lock): chain gets the newest stored event and
// returns the batch numbered after it.
type ChainStore interface {
	AppendAuditChained(ctx context.Context, chain func(head store.AuditEvent) []store.AuditEvent) error
}

// Options tune a Trail.
type Options struct {
	// Sink receives one JSON line per stored event; nil discards.
	Sink   io.Writer
	Logger *slog.Logger
	// QueueSize bounds events waiting to be written.
	QueueSize int
	// MaxBatch bounds events per store write.
	MaxBatch int
	// Linger is how long the writer waits for more events after the first
	// of a batch. Zero (the default) writes whatever is queued at once:
	// events that arrive while a write is in flight form the next batch
	// (group commit), so batches grow with load without delaying a
	// RecordSync caller when there is none.
	Linger time.Duration
	Now    func() time.Time
	// OnWriteError is called for each failed store write (metrics).
	OnWriteError func(error)
	// OnRechain is called when a batch had to be chained again because
	// another writer appended first (replicas sharing one trail).
	OnRechain func()
	// Durability says when a decision is answered (durability.go): Sync
	// (the default) waits for the event's group commit; Async queues it.
	Durability Durability
	// Fsync makes each Sync group commit durable on disk before anyone
	// waiting on it is answered (one fdatasync per batch): what a machine
	// crash or power loss could otherwise take from the page cache. It
	// costs about half of the Check throughput here (docs/audit.md).
	Fsync bool
	// OnFull is what an Async decision does when the queue is full:
	// wait up to its deadline (the default), or drop the event, counted
	// and marked in the chain by an audit_gap event.
	OnFull OnFull
	// Registerer, when set, receives the trail's metrics.
	Registerer prometheus.Registerer
}

// Trail appends events to the hash chain.
type Trail struct {
	st   Store
	opts Options
	q    chan pending
	done chan struct{}

	closeOnce sync.Once
	closing   chan struct{}
	// abandon is closed when Close gives up waiting: the writer stops
	// retrying a store that will not come back.
	abandonOnce sync.Once
	abandon     chan struct{}

	// gaps counts decision events dropped since the last audit_gap
	// marker (OnFull: Drop); gapSignal wakes the writer to write one.
	gaps      gapCounter
	gapSignal chan struct{}
	m         *metrics
	// lockedUntil: until then batches are chained under the store's lock
	// (ChainStore); only the writer goroutine uses it.
	lockedUntil time.Time
	// ch holds the writer goroutine's batch buffers.
	ch chainer
}

// maxKeptLines bounds the lines buffer kept between batches: a burst of
// large batches does not pin its memory for good.
const maxKeptLines = 4 << 20

// lockedFor is how long a trail that lost an append race chains under
// the store's lock before it tries appending directly again.
const lockedFor = 5 * time.Second

type pending struct {
	ev store.AuditEvent
	// body is ev's encoding without its chain members (eventBody); nil:
	// the writer encodes ev whole.
	body []byte
	done chan error // nil for fire-and-forget records
}

// ErrClosed is returned by Record after Close.
var ErrClosed = errors.New("audit trail closed")

// Open resumes the chain at the newest stored event.
func Open(ctx context.Context, st Store, o Options) (*Trail, error) {
	if o.QueueSize <= 0 {
		o.QueueSize = 8192
	}
	if o.MaxBatch <= 0 {
		o.MaxBatch = 512
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	head, err := st.LastAudit(ctx)
	if err != nil && !errors.Is(err, store.ErrNotFound) {
		return nil, fmt.Errorf("open audit trail: %w", err)
	}
	if err := o.validate(); err != nil {
		return nil, fmt.Errorf("open audit trail: %w", err)
	}
	t := &Trail{st: st, opts: o, q: make(chan pending, o.QueueSize), done: make(chan struct{}), closing: make(chan struct{}), abandon: make(chan struct{}), gapSignal: make(chan struct{}, 1)}
	t.m = newMetrics(t)
	if o.Registerer != nil {
		if err := t.m.register(o.Registerer); err != nil {
			return nil, fmt.Errorf("open audit trail: %w", err)
		}
	}
	go t.run(head.Seq, head.Hash)
	return t, nil
}

// Record queues ev. It blocks while the queue is full, up to ctx's
// deadline. Time is filled in when zero.
func (t *Trail) Record(ctx context.Context, ev store.AuditEvent) error {
	return t.enqueue(ctx, t.pend(ev))
}

// RecordSync queues ev and waits until it is durably stored. Use it for
// actions whose audit must exist before the action is reported done
// (revocations, admin changes, issued credentials, allowed requests).
func (t *Trail) RecordSync(ctx context.Context, ev store.AuditEvent) error {
	p := t.pend(ev)
	p.done = doneChans.Get().(chan error)
	if err := t.enqueue(ctx, p); err != nil {
		doneChans.Put(p.done)
		return err
	}
	select {
	case err := <-p.done:
		doneChans.Put(p.done) // received its one send: empty and reusable
		return err
	case <-ctx.Done():
		// The writer will still send on it: not reusable.
		return fmt.Errorf("audit not confirmed: %w", ctx.Err())
	}
}

// doneChans recycles the confirmation channels of RecordSync, one per
// allowed Check on the hot path.
var doneChans = sync.Pool{New: func() any { return make(chan error, 1) }}

// pend stamps ev and encodes it, on the caller's goroutine: the one
// writer goroutine then only chains and writes, so a group commit, which
// every waiting Check waits for, takes less time.
func (t *Trail) pend(ev store.AuditEvent) pending {
	if ev.Time.IsZero() {
		ev.Time = t.opts.Now()
	}
	ev.Time = ev.Time.UTC()
	return pending{ev: ev, body: eventBody(ev)}
}

func (t *Trail) enqueue(ctx context.Context, p pending) error {
	select {
	case <-t.closing:
		return ErrClosed
	default:
	}
	select {
	case t.q <- p:
		return nil
	case <-t.closing:
		return ErrClosed
	case <-ctx.Done():
		return fmt.Errorf("audit queue full: %w", ctx.Err())
	}
}

// Close stops accepting events and waits until every queued one is stored
// or ctx ends.
func (t *Trail) Close(ctx context.Context) error {
	t.closeOnce.Do(func() { close(t.closing) })
	select {
	case <-t.done:
		return nil
	case <-ctx.Done():
		t.abandonOnce.Do(func() { close(t.abandon) })
		return fmt.Errorf("audit drain: %w", ctx.Err())
	}
}

func (t *Trail) run(seq uint64, prev string) {
	defer close(t.done)
	batch := make([]pending, 0, t.opts.MaxBatch)
	for {
		batch = batch[:0]
		select {
		case p := <-t.q:
			batch = append(batch, p)
		case <-t.gapSignal:
			// Events were dropped while nothing else is queued: the
			// marker is written on its own (write adds it).
		case <-t.closing:
			// Drain whatever was queued before Close.
			for {
				select {
				case p := <-t.q:
					batch = append(batch, p)
					if len(batch) < t.opts.MaxBatch {
						continue
					}
				default:
				}
				if len(batch) == 0 && t.gaps.pending() == 0 {
					return
				}
				seq, prev = t.write(batch, seq, prev)
				batch = batch[:0]
			}
		}
		if t.opts.Linger > 0 {
			linger := time.NewTimer(t.opts.Linger)
		fill:
			for len(batch) < t.opts.MaxBatch {
				select {
				case p := <-t.q:
					batch = append(batch, p)
				case <-linger.C:
					break fill
				case <-t.closing:
					break fill
				}
			}
			linger.Stop()
		}
	queued:
		for len(batch) < t.opts.MaxBatch {
			select {
			case p := <-t.q:
				batch = append(batch, p)
			default:
				break queued
			}
		}
		seq, prev = t.write(batch, seq, prev)
	}
}

// write chains and stores one batch, retrying with backoff until the store
// takes it: an event once accepted is never dropped, unless Close gave up
// on a store that stays broken (then the loss is logged and waiters fail).
func (t *Trail) write(batch []pending, seq uint64, prev string) (uint64, string) {
	if gap, ok := t.gaps.take(t.opts.Now()); ok {
		// The marker leads the batch written after the drops, so the
		// chain says where the trail is incomplete and by how much.
		batch = append([]pending{{ev: gap}}, batch...)
		t.m.gaps.Inc()
	}
	if len(batch) == 0 {
		return seq, prev
	}
	start := time.Now()
	ch := &t.ch
	ch.start(batch, seq, prev)
	defer ch.done()
	ls, _ := t.st.(LineStore)
	// With a ChainStore, a trail that met another writer recently chains
	// under the store's lock (one queue, no failed writes); otherwise it
	// appends onto the head it knows, which costs fewer round trips.
	cs, _ := t.st.(ChainStore)
	locked := cs != nil && time.Now().Before(t.lockedUntil)
	if !locked {
		ch.chain()
	}
	backoff := 10 * time.Millisecond
	for {
		var err error
		if locked {
			// Chained inside the store's transaction, onto the head it
			// locked: another replica's appends are waited for, not
			// retried over.
			err = cs.AppendAuditChained(context.Background(), func(head store.AuditEvent) []store.AuditEvent {
				ch.seq, ch.prev = head.Seq, head.Hash
				ch.chain()
				return ch.events
			})
			if err != nil && t.landed(ch.events) {
				break
			}
		} else if ls != nil {
			err = ls.AppendAuditLines(context.Background(), ch.events, ch.lines)
		} else {
			err = t.st.AppendAudit(context.Background(), ch.events...)
		}
		if err == nil {
			break
		}
		if errors.Is(err, store.ErrAlreadyExists) && t.landed(ch.events) {
			// An earlier attempt of this very batch committed although
			// its write reported an error.
			break
		}
		if errors.Is(err, store.ErrAlreadyExists) && cs != nil {
			// Another replica appends too: queue on the store's lock
			// for a while.
			t.lockedUntil = time.Now().Add(lockedFor)
			locked = true
			if t.opts.OnRechain != nil {
				t.opts.OnRechain()
			}
			continue
		}
		if errors.Is(err, store.ErrAlreadyExists) {
			// Another writer (a replica on the same PostgreSQL schema)
			// appended since this trail last did: continue the chain after
			// its events, re-chaining this batch onto the new head.
			if head, herr := t.st.LastAudit(context.Background()); herr == nil && head.Seq >= ch.seq+1 {
				ch.seq, ch.prev = head.Seq, head.Hash
				ch.chain()
				if t.opts.OnRechain != nil {
					t.opts.OnRechain()
				}
				continue
			}
		} else if t.landed(ch.events) {
			// The write failed to report but committed (a connection lost
			// after COMMIT): writing it again would store it twice.
			break
		}
		if t.opts.OnWriteError != nil {
			t.opts.OnWriteError(err)
		}
		if errors.Is(err, store.ErrUnavailable) {
			// The store will not come back while this process runs:
			// waiting callers fail now (an allow becomes a 503) rather
			// than at their deadline, and the batch is not retried.
			t.opts.Logger.Error("audit events lost: the store is unavailable", "err", err, "events", len(ch.events))
			for _, p := range batch {
				if p.done != nil {
					p.done <- fmt.Errorf("audit store unavailable: %w", err)
				}
			}
			return ch.seq, ch.prev
		}
		t.opts.Logger.Error("audit write failed; retrying", "err", err, "events", len(ch.events))
		select {
		case <-time.After(backoff):
		case <-t.abandon:
			t.opts.Logger.Error("audit events lost: the store failed until shutdown", "events", len(ch.events))
			for _, p := range batch {
				if p.done != nil {
					p.done <- fmt.Errorf("audit store unavailable: %w", err)
				}
			}
			return ch.seq, ch.prev
		}
		backoff = min(backoff*2, 2*time.Second)
	}
	if t.opts.Durability == Sync && t.opts.Fsync {
		if err := t.syncStore(); err != nil {
			// The events are written (the chain goes on from them) but
			// their durability is not known: no caller is told they are
			// stored, so allows waiting on them become 503s.
			if t.opts.OnWriteError != nil {
				t.opts.OnWriteError(err)
			}
			t.opts.Logger.Error("audit sync failed", "err", err, "events", len(ch.events))
			for _, p := range batch {
				if p.done != nil {
					p.done <- fmt.Errorf("audit not durable: %w", err)
				}
			}
			return ch.events[len(ch.events)-1].Seq, ch.h
		}
	}
	t.m.committed(len(ch.events), time.Since(start))
	if t.opts.Sink != nil {
		if _, err := t.opts.Sink.Write(ch.lines); err != nil {
			t.opts.Logger.Error("audit sink write failed", "err", err)
		}
	}
	for _, p := range batch {
		if p.done != nil {
			p.done <- nil
		}
	}
	return ch.events[len(ch.events)-1].Seq, ch.h
}

// chainer chains a batch into the writer's reused buffers: neither the
// store nor the sink keeps them past the write (Badger's log keeps a copy
// of the last event). Only the writer goroutine uses it (Trail.ch), so a
// batch costs no allocation of its own beyond the hashes.
type chainer struct {
	batch  []pending
	events []store.AuditEvent
	lines  []byte
	// seq and prev are the head the batch goes onto, h the hash of its
	// last event once chained.
	seq     uint64
	prev, h string
}

func (c *chainer) start(batch []pending, seq uint64, prev string) {
	c.batch, c.seq, c.prev = batch, seq, prev
	if cap(c.events) < len(batch) {
		c.events = make([]store.AuditEvent, len(batch))
	}
	c.events = c.events[:len(batch)]
}

// done drops what the batch referenced (Checks' inputs, their done
// channels) and a lines buffer grown past maxKeptLines.
func (c *chainer) done() {
	clear(c.events)
	c.batch = nil
	if cap(c.lines) > maxKeptLines {
		c.lines = nil
	}
}

func (c *chainer) chain() {
	c.lines = c.lines[:0]
	c.h = c.prev
	for i, p := range c.batch {
		ev := p.ev
		ev.Seq = c.seq + uint64(i) + 1
		ev.PrevHash = c.h
		ev.Hash, c.lines = appendChained(c.lines, ev, p.body)
		c.lines = append(c.lines, '\n')
		c.h = ev.Hash
		c.events[i] = ev
	}
}

// landed reports whether events, whose write returned an error, are
// stored all the same: the stored event at the first seq has the first
// event's hash (which covers its seq, content and link), and so on.
func (t *Trail) landed(events []store.AuditEvent) bool {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	got, err := t.st.ListAudit(ctx, events[0].Seq, len(events))
	if err != nil || len(got) != len(events) {
		return false
	}
	for i := range got {
		if got[i].Hash != events[i].Hash {
			return false
		}
	}
	return true
}

// Hash is the chain hash of ev: SHA-256 over the event's JSON encoding with
// Hash empty and PrevHash set, so changing any field or the order breaks
// every later link.
func Hash(ev store.AuditEvent) string {
	h, _ := appendEvent(nil, ev)
	return h
}

// emptyHashTail is how the JSON encoding of an event with no hash ends:
// Hash is the last field of store.AuditEvent and has no omitempty.
const emptyHashTail = `"hash":""}`

// appendEvent appends ev's JSON encoding with its chain hash filled in to
// dst and returns the hash, from a single marshal of the event without its
// input: the input is spliced in where encoding/json would put it, the hash
// is computed over that encoding in place and written over its empty
// value. The line is byte for byte json.Marshal of the hashed event; this
// costs no copy of the line beyond dst (it was three on the Check path).
func appendEvent(dst []byte, ev store.AuditEvent) (string, []byte) {
	ev.Hash = ""
	input := ev.Input
	ev.Input = nil
	raw, _ := json.Marshal(ev)
	at := len(raw) // where the input goes
	if len(input) > 0 {
		at = bytes.LastIndex(raw, []byte(prevHashMember))
	}
	if at < 0 || !bytes.HasSuffix(raw, []byte(emptyHashTail)) {
		// The field order changed: let encoding/json place everything.
		ev.Input = input
		raw, _ = json.Marshal(ev)
		sum := sha256.Sum256(raw)
		h := hex.EncodeToString(sum[:])
		ev.Hash = h
		out, _ := json.Marshal(ev)
		return h, append(dst, out...)
	}
	n := len(dst)
	dst = append(dst, raw[:at]...)
	if len(input) > 0 {
		dst = append(dst, `,"input":`...)
		dst = append(dst, input...)
	}
	dst = append(dst, raw[at:]...)
	sum := sha256.Sum256(dst[n:])
	dst = dst[:len(dst)-2] // drop `"}`
	hs := len(dst)
	dst = hex.AppendEncode(dst, sum[:])
	h := string(dst[hs:])
	return h, append(dst, '"', '}')
}

// seqHead and chainTail are how the encoding of an event with zero Seq
// and empty PrevHash and Hash begins and ends: Seq is the first field of
// store.AuditEvent, PrevHash and Hash the last, none with omitempty.
const (
	seqHead   = `{"seq":0,`
	chainTail = `,"prev_hash":"","hash":""}`
)

// eventBody is ev's JSON encoding between `{"seq":N,` and where its input
// goes (before `,"prev_hash":`): everything of the line but the input,
// which is spliced in as it is (see prevHashMember), and the chain
// members, which only the writer knows. nil when encoding/json lays the
// event out otherwise.
func eventBody(ev store.AuditEvent) []byte {
	ev.Seq, ev.PrevHash, ev.Hash, ev.Input = 0, "", "", nil
	raw, err := json.Marshal(ev)
	if err != nil || len(raw) < len(seqHead)+len(chainTail) || !bytes.HasPrefix(raw, []byte(seqHead)) || !bytes.HasSuffix(raw, []byte(chainTail)) {
		return nil
	}
	return raw[len(seqHead) : len(raw)-len(chainTail)]
}

// appendChained appends ev's line, as appendEvent does, from body
// (eventBody of ev before Seq and PrevHash were set), and returns its
// hash. With no body it is appendEvent.
func appendChained(dst []byte, ev store.AuditEvent, body []byte) (string, []byte) {
	if body == nil || !isHex(ev.PrevHash) {
		return appendEvent(dst, ev)
	}
	n := len(dst)
	dst = append(dst, `{"seq":`...)
	dst = strconv.AppendUint(dst, ev.Seq, 10)
	dst = append(dst, ',')
	dst = append(dst, body...)
	if len(ev.Input) > 0 {
		dst = append(dst, `,"input":`...)
		dst = append(dst, ev.Input...)
	}
	dst = append(dst, prevHashMember...)
	dst = append(dst, ev.PrevHash...)
	dst = append(dst, `","hash":""}`...)
	sum := sha256.Sum256(dst[n:])
	dst = dst[:len(dst)-2] // drop `"}`
	hs := len(dst)
	dst = hex.AppendEncode(dst, sum[:])
	h := string(dst[hs:])
	return h, append(dst, '"', '}')
}

// isHex tells whether s is lower-case hex, which encoding/json writes as
// it is (a chain hash always is).
func isHex(s string) bool {
	for i := 0; i < len(s); i++ {
		if c := s[i]; (c < '0' || c > '9') && (c < 'a' || c > 'f') {
			return false
		}
	}
	return true
}

// prevHashMember is where the recorded decision input goes: Input is the
// field before PrevHash, and the last occurrence is the top-level member
// (Hash, after it, is hex). The input (compact JSON as encoding/json
// writes it, built by policy.AppendRecord) is placed there without
// encoding/json compacting it again: that re-validation was a tenth of a
// Check's CPU.
const prevHashMember = `,"prev_hash":"`

// Report is the outcome of Verify.
type Report struct {
	Events uint64 `json:"events"`
	First  uint64 `json:"first_seq"`
	Last   uint64 `json:"last_seq"`
	// Broken is the seq of the first event that does not link to the one
	// before it; zero when the chain is intact.
	Broken uint64 `json:"broken_seq,omitempty"`
	Reason string `json:"reason,omitempty"`
	// Anchor is where the verified chain starts (retention.go).
	Anchor Anchor `json:"anchor"`
	// Untrusted lists checkpoints passed over, with why.
	Untrusted []string `json:"untrusted_checkpoints,omitempty"`
}

// OK reports whether the chain verified.
func (r Report) OK() bool { return r.Broken == 0 }

// Verify walks the whole stored chain and reports the first broken link.
// The oldest stored event is trusted as the anchor (retention may have
// removed what came before it); VerifyTrusted checks that anchor against
// a signed checkpoint instead.
func Verify(ctx context.Context, st Store) (Report, error) {
	var r Report
	err := walk(ctx, st, &r, 0, 0, "", false)
	if r.First == 1 || r.Events == 0 {
		r.Anchor = Anchor{Kind: "genesis"}
	} else {
		r.Anchor = Anchor{Kind: "oldest", Seq: r.First}
	}
	return r, err
}

// walk verifies the events from seq from on. With anchored, the first one
// must follow prevSeq and link to prevHash (seq 1 and "" from genesis);
// without, the first one read is taken as it is.
func walk(ctx context.Context, st Store, r *Report, from, prevSeq uint64, prevHash string, anchored bool) error {
	for {
		page, err := st.ListAudit(ctx, from, 1000)
		if err != nil {
			return err
		}
		for _, ev := range page {
			if r.Events == 0 {
				r.First = ev.Seq
			}
			if r.Events > 0 || anchored {
				switch {
				case ev.Seq != prevSeq+1 && r.Events == 0 && prevSeq == 0:
					r.Broken, r.Reason = ev.Seq, fmt.Sprintf("events 1 to %d are missing and no trusted checkpoint covers them", ev.Seq-1)
				case ev.Seq != prevSeq+1:
					r.Broken, r.Reason = ev.Seq, fmt.Sprintf("events %d to %d are missing", prevSeq+1, ev.Seq-1)
				case ev.PrevHash != prevHash && r.Events == 0 && anchored && prevSeq > 0:
					r.Broken, r.Reason = ev.Seq, fmt.Sprintf("prev_hash does not match the checkpoint at seq %d", prevSeq)
				case ev.PrevHash != prevHash:
					r.Broken, r.Reason = ev.Seq, fmt.Sprintf("prev_hash does not match event %d", prevSeq)
				}
			}
			if r.Broken == 0 && Hash(ev) != ev.Hash {
				r.Broken, r.Reason = ev.Seq, "event content does not match its hash"
			}
			r.Events++
			r.Last = ev.Seq
			if r.Broken != 0 {
				return nil
			}
			prevSeq, prevHash = ev.Seq, ev.Hash
		}
		if len(page) < 1000 {
			return nil
		}
		from = prevSeq + 1
	}
}
