package store

import "sync"

// hotCacheMax bounds the handles (and as many grants) kept decoded in
// memory; reaching it empties the cache.
const hotCacheMax = 200_000

// hotCache is a write-through cache of decoded handles and grants for the
// Check hot path, so a lookup costs two map reads instead of two Badger
// point reads and two JSON decodes.
//
// It is exact, not eventually consistent, because every write to a handle
// or grant goes through this process (Badger is an embedded database held
// by one process) and follows this protocol:
//
//   - a writer calls beginWrite before its transaction, which counts a
//     write as started, and after its transaction drops the cache entry
//     and counts the write as finished, under the same lock (dropping
//     rather than storing the new value keeps concurrent writers from
//     caching their values in a different order than they committed);
//   - a reader that misses notes the counters first and fills the cache
//     after its Badger read only if no write was in flight at the start and
//     none started or finished since, so it never caches a value older than
//     what Badger holds.
//
// A revocation therefore reaches every later Check the moment UpdateGrant
// returns. A backend shared by several Warden replicas (PostgreSQL) cannot
// use this cache without fanning out invalidations; it reads through.
type hotCache struct {
	mu                sync.RWMutex
	started, finished uint64
	handles           map[string]Handle
	grants            map[string]Grant
	max               int
	// afterRead, set by tests only, runs between a miss's Badger read and
	// its fill, to widen the window a racing writer must not slip into.
	afterRead func()
}

func newHotCache(max int) *hotCache {
	return &hotCache{handles: map[string]Handle{}, grants: map[string]Grant{}, max: max}
}

// pendingWrite is one write in progress.
type pendingWrite struct{ c *hotCache }

func (c *hotCache) beginWrite() pendingWrite {
	c.mu.Lock()
	c.started++
	c.mu.Unlock()
	return pendingWrite{c}
}

// done finishes a write: the entry is dropped, and the next read fills it
// from Badger.
func (w pendingWrite) done(drop func(c *hotCache)) {
	c := w.c
	c.mu.Lock()
	drop(c)
	c.finished++
	c.mu.Unlock()
}

func (w pendingWrite) handle(digest string) {
	w.done(func(c *hotCache) { delete(c.handles, digest) })
}

func (w pendingWrite) grant(id string) {
	w.done(func(c *hotCache) { delete(c.grants, id) })
}

func (c *hotCache) resolve(digest string) (Handle, Grant, bool) {
	c.mu.RLock()
	defer c.mu.RUnlock()
	h, ok := c.handles[digest]
	if !ok {
		return Handle{}, Grant{}, false
	}
	g, ok := c.grants[h.GrantID]
	return h, g, ok
}

// snapshot returns the write counter and whether no write is in flight.
func (c *hotCache) snapshot() (uint64, bool) {
	c.mu.RLock()
	defer c.mu.RUnlock()
	return c.started, c.started == c.finished
}

// fill caches what a reader read from Badger, unless any write started
// since snapshot.
func (c *hotCache) fill(gen uint64, h Handle, g Grant) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.started != gen || c.finished != gen {
		return
	}
	if len(c.handles) >= c.max || len(c.grants) >= c.max {
		// Full, mostly of handles that expired since: start over rather
		// than scan. Dropping entries is always safe.
		clear(c.handles)
		clear(c.grants)
	}
	c.handles[h.Digest] = h
	c.grants[g.ID] = g
}
