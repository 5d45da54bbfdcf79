// Package usage tracks when each grant was last used on each server. The
// Check path records a use in memory (a map lookup and an atomic store);
// a flusher writes what changed to the store in one batch per interval, so
// there is never a store write per Check. A use is therefore at most one
// interval old in the store, and exact in this process (Snapshot).
package usage

import (
	"context"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/warden-mcp/warden/internal/store"
)

// Store is the part of the store the tracker writes and reads.
type Store interface {
	PutLastUse(ctx context.Context, uses ...store.LastUse) error
	ListLastUse(ctx context.Context) ([]store.LastUse, error)
}

// Key names one grant on one server.
type Key struct{ GrantID, Server string }

type entry struct {
	// at is the newest use (UnixNano); flushed is what the store has.
	at, flushed atomic.Int64
}

// Options configure a Tracker.
type Options struct {
	Store Store
	// Interval between flushes; default 30s.
	Interval time.Duration
	Logger   *slog.Logger
}

// Tracker records uses in memory and flushes them in batches.
type Tracker struct {
	o  Options
	mu sync.RWMutex
	m  map[Key]*entry
	// flushMu serialises flushes (the ticker's and a final one at close).
	flushMu sync.Mutex
}

// New returns a tracker; call Run to flush periodically.
func New(o Options) *Tracker {
	if o.Interval <= 0 {
		o.Interval = 30 * time.Second
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	return &Tracker{o: o, m: map[Key]*entry{}}
}

// Used records a use. It is the hot-path call: for a key seen before it
// takes a read lock and does one atomic compare-and-store, no allocation.
func (t *Tracker) Used(grantID, server string, at time.Time) {
	k := Key{grantID, server}
	ns := at.UnixNano()
	t.mu.RLock()
	e := t.m[k]
	t.mu.RUnlock()
	if e == nil {
		t.mu.Lock()
		if e = t.m[k]; e == nil {
			e = &entry{}
			t.m[k] = e
		}
		t.mu.Unlock()
	}
	for {
		cur := e.at.Load()
		if ns <= cur || e.at.CompareAndSwap(cur, ns) {
			return
		}
	}
}

// Flush writes every use newer than what the store has, in one batch, and
// forgets entries that were not used since the previous flush (they are in
// the store; a new use adds them again).
func (t *Tracker) Flush(ctx context.Context) error {
	t.flushMu.Lock()
	defer t.flushMu.Unlock()
	type pending struct {
		e  *entry
		at int64
	}
	var uses []store.LastUse
	var sent []pending
	var idle []Key
	t.mu.RLock()
	for k, e := range t.m {
		at, fl := e.at.Load(), e.flushed.Load()
		if at == fl {
			idle = append(idle, k)
			continue
		}
		uses = append(uses, store.LastUse{GrantID: k.GrantID, Server: k.Server, At: time.Unix(0, at).UTC()})
		sent = append(sent, pending{e, at})
	}
	t.mu.RUnlock()
	if len(idle) > 0 {
		t.mu.Lock()
		for _, k := range idle {
			// Used may have stored a newer time since: keep those.
			if e := t.m[k]; e != nil && e.at.Load() == e.flushed.Load() {
				delete(t.m, k)
			}
		}
		t.mu.Unlock()
	}
	if len(uses) == 0 {
		return nil
	}
	if err := t.o.Store.PutLastUse(ctx, uses...); err != nil {
		return err
	}
	for _, p := range sent {
		p.e.flushed.Store(p.at)
	}
	return nil
}

// Run flushes every interval until ctx ends. The owner calls Flush once
// more at shutdown, before it closes the store, to keep the latest uses.
func (t *Tracker) Run(ctx context.Context) {
	tick := time.NewTicker(t.o.Interval)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
			if err := t.Flush(ctx); err != nil {
				// Kept in memory: the next flush retries.
				t.o.Logger.Warn("last use: flush failed; retrying at the next interval", "err", err)
			}
		}
	}
}

// Snapshot returns the newest known use of every grant and server: the
// store's, updated with what this process saw since its last flush.
func (t *Tracker) Snapshot(ctx context.Context) (map[Key]time.Time, error) {
	stored, err := t.o.Store.ListLastUse(ctx)
	if err != nil {
		return nil, err
	}
	out := make(map[Key]time.Time, len(stored))
	for _, u := range stored {
		out[Key{u.GrantID, u.Server}] = u.At
	}
	t.mu.RLock()
	defer t.mu.RUnlock()
	for k, e := range t.m {
		if at := time.Unix(0, e.at.Load()).UTC(); at.After(out[k]) {
			out[k] = at
		}
	}
	return out, nil
}
