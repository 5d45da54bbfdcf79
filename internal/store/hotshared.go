package store

// SharedHotCache is the hot cache (hot.go) for a backend several processes
// write, such as PostgreSQL. The write-generation protocol is the same for
// this process's writes (BeginWrite, then Handle or Grant once the write
// is committed); writes other processes made arrive as invalidations
// (DropHandle, DropGrant), which count as a write that started and
// finished at once, so a reader that read before the invalidation does not
// fill. The backend decides when the cache may be used at all (see
// internal/store/postgres, replica.go): Clear empties it and discards
// every fill in flight.
type SharedHotCache struct{ c *hotCache }

// NewSharedHotCache returns an empty cache bounded to about max handles.
func NewSharedHotCache(max int) *SharedHotCache {
	if max <= 0 {
		max = hotCacheMax
	}
	return &SharedHotCache{c: newHotCache(max)}
}

// PendingWrite is a write of this process in progress.
type PendingWrite struct{ w pendingWrite }

// BeginWrite counts a write as started; call Handle or Grant after it.
func (s *SharedHotCache) BeginWrite() PendingWrite { return PendingWrite{s.c.beginWrite()} }

// Handle finishes a write of the handle with this digest.
func (w PendingWrite) Handle(digest string) { w.w.handle(digest) }

// Grant finishes a write of the grant with this id.
func (w PendingWrite) Grant(id string) { w.w.grant(id) }

// DropHandle drops a handle another process wrote.
func (s *SharedHotCache) DropHandle(digest string) { s.c.beginWrite().handle(digest) }

// DropGrant drops a grant another process wrote.
func (s *SharedHotCache) DropGrant(id string) { s.c.beginWrite().grant(id) }

// Clear drops everything, and every fill whose read started before.
func (s *SharedHotCache) Clear() {
	s.c.beginWrite().done(func(c *hotCache) {
		clear(c.handles)
		clear(c.grants)
	})
}

// Resolve returns the cached handle and its grant when both are cached.
func (s *SharedHotCache) Resolve(digest string) (Handle, Grant, bool) { return s.c.resolve(digest) }

// Snapshot returns the generation a reader notes before it reads, and
// whether no write is in flight (a read may fill only then).
func (s *SharedHotCache) Snapshot() (uint64, bool) { return s.c.snapshot() }

// Fill caches a read made after Snapshot returned gen, unless a write or
// an invalidation happened since.
func (s *SharedHotCache) Fill(gen uint64, h Handle, g Grant) { s.c.fill(gen, h, g) }

// Len returns how many handles are cached (tests, metrics).
func (s *SharedHotCache) Len() int {
	s.c.mu.RLock()
	defer s.c.mu.RUnlock()
	return len(s.c.handles)
}
