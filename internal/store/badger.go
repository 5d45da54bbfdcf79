package store

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/dgraph-io/badger/v4"
)

// Key prefixes of the Badger layout. One byte-string namespace per record
// type keeps prefix scans cheap and unambiguous.
const (
	pClient  = "client/"
	pGrant   = "grant/"
	pHandle  = "handle/"
	pServer  = "server/"
	pSession = "session/"
	pConsent = "consent/"
	pLastUse = "lastuse/"
)

// maxRetries bounds compare-and-swap retries under write conflicts.
const maxRetries = 64

// BadgerOptions tunes the embedded backend.
type BadgerOptions struct {
	Logger *slog.Logger
	// Now is the clock used for expiry checks; time.Now when nil.
	Now func() time.Time
	// MemTableSize is the size of one memtable; 8 MiB when zero. Badger
	// keeps up to three (one being written, two being flushed).
	MemTableSize int64
	// AuditSegmentSize bounds one file of the audit log; 64 MiB when zero.
	AuditSegmentSize int64
	// DiskReserve is the free space below which writes are refused
	// (ErrLowSpace) until space comes back; DefaultDiskReserve when zero,
	// no guard when negative. See roomToWrite.
	DiskReserve int64
	// FreeSpace reports the bytes an unprivileged writer can still use on
	// the volume holding dir; statfs(2) when nil.
	FreeSpace func(dir string) (uint64, error)
}

// DefaultDiskReserve covers what Badger may write into memory-mapped files
// without a write(2) that could fail: three memtable logs (created sparse
// at twice the memtable size) and one value-log file, with room to spare.
const DefaultDiskReserve = 128 << 20

// Sizes for a control plane, not Badger's defaults (five 64 MiB memtables,
// a 256 MiB block cache, four compactors, 1 GiB value-log files): Warden's
// records are small (handles, grants, audit events of a few hundred bytes),
// reads are served by the hot cache, and the process should stay within a
// sidecar's memory under a sustained audit write load.
const (
	defaultMemTableSize = 8 << 20
	numMemtables        = 3
	blockCacheSize      = 16 << 20
	numCompactors       = 2
	valueLogFileSize    = 64 << 20
)

// Badger is the embedded Store backend.
//
// Badger is not safe against a failing disk: once it fails to create a
// memtable (directory removed, read-only or full) it keeps a nil memtable,
// and the next read dereferences it and the next write asserts (log.Fatal)
// in its own goroutine. So every call into Badger goes through view and
// update, which recover panics, serialise commits (no second write can
// reach Badger's writer after a failed one), and mark the store failed on
// the first commit that Badger could not write: from then on every
// operation fails with ErrUnavailable and callers fail closed.
type Badger struct {
	db *badger.DB
	// audit holds the trail (auditlog.go), outside Badger.
	audit *auditLog
	now   func() time.Time
	log   *slog.Logger
	// hot keeps decoded handles and grants in memory for ResolveHandle,
	// written through by every handle and grant write (see hot.go).
	hot    *hotCache
	closed atomic.Bool
	// writeMu serialises commits (see the type comment).
	writeMu sync.Mutex
	// failure is the first unrecoverable error; nil while healthy.
	failure atomic.Pointer[error]

	closeOnce sync.Once
	closeDone chan struct{}
	closeErr  error

	dir       string
	reserve   int64
	freeSpace func(dir string) (uint64, error)
	// space caches the last free-space reading (see roomToWrite).
	space struct {
		sync.Mutex
		at  time.Time
		err error
	}
}

var _ Store = (*Badger)(nil)

// OpenBadger opens (creating if needed) a Badger store in dir.
func OpenBadger(dir string, o BadgerOptions) (*Badger, error) {
	if o.MemTableSize <= 0 {
		o.MemTableSize = defaultMemTableSize
	}
	if o.AuditSegmentSize <= 0 {
		o.AuditSegmentSize = 64 << 20
	}
	opts := badger.DefaultOptions(dir).
		WithLogger(badgerLogger{o.Logger}).
		WithMemTableSize(o.MemTableSize).
		WithNumMemtables(numMemtables).
		WithBlockCacheSize(blockCacheSize).
		WithNumCompactors(numCompactors).
		WithValueLogFileSize(valueLogFileSize).
		// Records are far smaller: they stay in the LSM tree, and the
		// rare large one goes to the value log.
		WithValueThreshold(64 << 10).
		WithNumVersionsToKeep(1)
	privateFiles()
	db, err := badger.Open(opts)
	if err != nil {
		return nil, fmt.Errorf("open badger store in %q: %w", dir, err)
	}
	alog, err := openAuditLog(filepath.Join(dir, "audit"), o.AuditSegmentSize)
	if err != nil {
		_ = db.Close()
		return nil, err
	}
	now := o.Now
	if now == nil {
		now = time.Now
	}
	log := o.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	b := &Badger{db: db, audit: alog, now: now, log: log, hot: newHotCache(hotCacheMax), closeDone: make(chan struct{}), dir: dir, reserve: o.DiskReserve, freeSpace: o.FreeSpace}
	if b.reserve == 0 {
		b.reserve = DefaultDiskReserve
	}
	if b.freeSpace == nil {
		b.freeSpace = statfsFree
	}
	if err := b.moveAuditOutOfBadger(); err != nil {
		_ = b.Close()
		return nil, err
	}
	return b, nil
}

// Close flushes and closes the database; see Shutdown.
func (b *Badger) Close() error { return b.Shutdown(context.Background()) }

// Shutdown flushes and closes the database, waiting at most until ctx
// ends: a store that cannot write never finishes flushing (Badger retries
// forever), and shutdown must not hang on it. The cache goes first, so no
// read is answered from memory once the store is going. After a Shutdown
// that gave up, later calls return at once with the same error.
func (b *Badger) Shutdown(ctx context.Context) error {
	b.closeOnce.Do(func() {
		b.closed.Store(true)
		b.hot.mu.Lock()
		clear(b.hot.handles)
		clear(b.hot.grants)
		b.hot.mu.Unlock()
		go func() {
			defer close(b.closeDone)
			defer func() {
				if p := recover(); p != nil {
					b.closeErr = fmt.Errorf("close badger store: panic: %v", p)
				}
			}()
			b.closeErr = errors.Join(b.db.Close(), b.audit.close())
		}()
	})
	if b.failure.Load() != nil {
		// Badger cannot flush: waiting would only run out the clock.
		select {
		case <-b.closeDone:
			return b.closeErr
		default:
			return fmt.Errorf("close badger store: not flushed: %w", b.Err())
		}
	}
	select {
	case <-b.closeDone:
		return b.closeErr
	case <-ctx.Done():
		b.fail(fmt.Errorf("close did not finish: %w", ctx.Err()))
		return fmt.Errorf("close badger store: still flushing when shutdown ended: %w", ctx.Err())
	}
}

// ErrClosed is returned by reads after Close.
var ErrClosed = errors.New("store closed")

// ErrUnavailable is returned by every operation once the store has failed
// in a way it cannot recover from while running (Badger could not write).
var ErrUnavailable = errors.New("store unavailable")

// ErrLowSpace is returned (wrapping ErrUnavailable) by writes while the
// data volume has less free space than the reserve. Unlike a failed store
// it passes: writes resume once space is freed.
var ErrLowSpace = errors.New("data volume below its free-space reserve")

// Err returns the store's unrecoverable failure, or the low-space refusal
// while it lasts, wrapping ErrUnavailable; nil while it is healthy. It is
// the store's readiness check.
func (b *Badger) Err() error {
	if p := b.failure.Load(); p != nil {
		return fmt.Errorf("%w: %w", ErrUnavailable, *p)
	}
	return b.roomToWrite()
}

// spaceCheckEvery bounds how stale a free-space reading may be. Between two
// readings the store writes at most a few MiB (the audit trail at full
// Check rate is under 10 MiB/s here), far less than the reserve.
const spaceCheckEvery = 100 * time.Millisecond

// roomToWrite refuses writes while the data volume's free space is below
// the reserve. Badger writes its memtable logs, value logs and tables
// through memory maps; a page of a sparse mapping that a full filesystem
// cannot back raises SIGBUS in Badger's goroutine and kills the process
// (Go cannot recover it there). Keeping Badger out of the last pages of the
// volume turns a full disk into refused writes (Checks deny with 503)
// instead of a crash, and reads go on.
func (b *Badger) roomToWrite() error {
	if b.reserve < 0 {
		return nil
	}
	b.space.Lock()
	defer b.space.Unlock()
	now := time.Now()
	if !b.space.at.IsZero() && now.Sub(b.space.at) < spaceCheckEvery {
		return b.space.err
	}
	prev := b.space.err
	free, err := b.freeSpace(b.dir)
	switch {
	case err != nil:
		// The volume cannot even be asked (the directory was removed, an
		// I/O error): the writes would fail the same way, so the store
		// fails as it does on a write Badger could not do.
		b.fail(fmt.Errorf("cannot read the data volume's free space: %w", err))
		b.space.err = b.Err()
	case free < uint64(b.reserve):
		b.space.err = fmt.Errorf("%w: %w: %d bytes free, reserve %d", ErrUnavailable, ErrLowSpace, free, b.reserve)
	default:
		b.space.err = nil
	}
	b.space.at = now
	switch {
	case prev == nil && b.space.err != nil:
		b.log.Error("store refusing writes: the data volume is nearly full; free space to resume", "err", b.space.err, "dir", b.dir)
	case prev != nil && b.space.err == nil:
		b.log.Info("store writing again: free space is above the reserve", "dir", b.dir)
	}
	return b.space.err
}

func (b *Badger) fail(err error) {
	if b.failure.CompareAndSwap(nil, &err) {
		b.log.Error("store failed: Badger cannot write; every operation now fails (fail closed) until restart", "err", err)
	}
}

func (b *Badger) usable() error {
	if p := b.failure.Load(); p != nil {
		return fmt.Errorf("%w: %w", ErrUnavailable, *p)
	}
	if b.closed.Load() {
		return ErrClosed
	}
	return nil
}

// recovered turns a panic inside Badger into the store's failure.
func (b *Badger) recovered(err *error) {
	if p := recover(); p != nil {
		b.fail(fmt.Errorf("badger panicked: %v", p))
		*err = b.Err()
	}
}

// view runs fn in a read transaction.
func (b *Badger) view(fn func(txn *badger.Txn) error) (err error) {
	if err := b.usable(); err != nil {
		return err
	}
	defer b.recovered(&err)
	return b.db.View(fn)
}

// update runs fn in a read-write transaction and commits it. A commit that
// fails for another reason than a conflict means Badger could not write:
// the store is failed from then on.
func (b *Badger) update(fn func(txn *badger.Txn) error) (err error) {
	b.writeMu.Lock()
	defer b.writeMu.Unlock()
	if err := b.usable(); err != nil {
		return err
	}
	if err := b.roomToWrite(); err != nil {
		return err
	}
	defer b.recovered(&err)
	var fnErr error
	err = b.db.Update(func(txn *badger.Txn) error {
		fnErr = fn(txn)
		return fnErr
	})
	if err != nil && fnErr == nil && !errors.Is(err, badger.ErrConflict) && !errors.Is(err, badger.ErrTxnTooBig) {
		b.fail(err)
		return b.Err()
	}
	return err
}

// RunGC reclaims value-log space; call it periodically.
func (b *Badger) RunGC() {
	b.writeMu.Lock() // GC rewrites entries through Badger's writer
	defer b.writeMu.Unlock()
	if b.usable() != nil {
		return
	}
	defer func() {
		if p := recover(); p != nil {
			b.fail(fmt.Errorf("badger value-log GC panicked: %v", p))
		}
	}()
	for b.db.RunValueLogGC(0.5) == nil {
	}
}

// ---- generic helpers ----

func get[T any](txn *badger.Txn, key string) (T, error) {
	var v T
	item, err := txn.Get([]byte(key))
	if errors.Is(err, badger.ErrKeyNotFound) {
		return v, ErrNotFound
	}
	if err != nil {
		return v, err
	}
	err = item.Value(func(raw []byte) error { return json.Unmarshal(raw, &v) })
	return v, err
}

func setJSON(txn *badger.Txn, key string, v any, expires time.Time) error {
	raw, err := json.Marshal(v)
	if err != nil {
		return err
	}
	e := badger.NewEntry([]byte(key), raw)
	if !expires.IsZero() {
		// Badger expiry has one-second resolution; round up so the logical
		// expiry check, not Badger, decides the exact moment.
		e.ExpiresAt = uint64(expires.Unix()) + 1
	}
	return txn.SetEntry(e)
}

func (b *Badger) create(key string, v any, expires time.Time) error {
	return b.retry(func(txn *badger.Txn) error {
		if _, err := txn.Get([]byte(key)); err == nil {
			return ErrAlreadyExists
		} else if !errors.Is(err, badger.ErrKeyNotFound) {
			return err
		}
		return setJSON(txn, key, v, expires)
	})
}

func (b *Badger) delete(key string) error {
	return b.retry(func(txn *badger.Txn) error {
		if _, err := txn.Get([]byte(key)); errors.Is(err, badger.ErrKeyNotFound) {
			return ErrNotFound
		} else if err != nil {
			return err
		}
		return txn.Delete([]byte(key))
	})
}

// retry runs fn in a read-write transaction, retrying on write conflicts so
// that updaters behave as compare-and-swap loops.
func (b *Badger) retry(fn func(txn *badger.Txn) error) error {
	for i := 0; i < maxRetries; i++ {
		err := b.update(fn)
		if !errors.Is(err, badger.ErrConflict) {
			return err
		}
	}
	return fmt.Errorf("gave up after %d conflicting writes: %w", maxRetries, badger.ErrConflict)
}

func readOne[T any](b *Badger, key string) (T, error) {
	var v T
	err := b.view(func(txn *badger.Txn) error {
		var err error
		v, err = get[T](txn, key)
		return err
	})
	return v, err
}

func list[T any](b *Badger, prefix string, keep func(T) bool) ([]T, error) {
	var out []T
	err := b.view(func(txn *badger.Txn) error {
		it := txn.NewIterator(badger.IteratorOptions{Prefix: []byte(prefix), PrefetchValues: true, PrefetchSize: 64})
		defer it.Close()
		for it.Rewind(); it.Valid(); it.Next() {
			var v T
			if err := it.Item().Value(func(raw []byte) error { return json.Unmarshal(raw, &v) }); err != nil {
				return fmt.Errorf("decode %s: %w", it.Item().Key(), err)
			}
			if keep == nil || keep(v) {
				out = append(out, v)
			}
		}
		return nil
	})
	return out, err
}

// update is the compare-and-swap loop shared by every Update method. The
// version counter is bumped on each write so callers can tell revisions apart.
func update[T any](b *Badger, key string, expires func(T) time.Time, alive func(T) bool, fn func(T) (T, error), bump func(*T)) error {
	return b.retry(func(txn *badger.Txn) error {
		cur, err := get[T](txn, key)
		if err != nil {
			return err
		}
		if alive != nil && !alive(cur) {
			return ErrNotFound
		}
		next, err := fn(cur)
		if err != nil {
			return err
		}
		bump(&next)
		var exp time.Time
		if expires != nil {
			exp = expires(next)
		}
		return setJSON(txn, key, next, exp)
	})
}

// ---- clients ----

func (b *Badger) CreateClient(_ context.Context, c Client) error {
	if c.ID == "" {
		return errors.New("client id is empty")
	}
	c.Version = 1
	if err := b.create(pClient+c.ID, c, c.ExpiresAt); err != nil {
		return fmt.Errorf("create client %q: %w", c.ID, err)
	}
	return nil
}

func (b *Badger) GetClient(_ context.Context, id string) (Client, error) {
	c, err := readOne[Client](b, pClient+id)
	if err == nil && !c.ExpiresAt.IsZero() && !b.now().Before(c.ExpiresAt) {
		err = ErrNotFound
	}
	if err != nil {
		return Client{}, fmt.Errorf("get client %q: %w", id, err)
	}
	return c, nil
}

func (b *Badger) UpdateClient(_ context.Context, id string, fn func(Client) (Client, error)) error {
	return update(b, pClient+id, func(c Client) time.Time { return c.ExpiresAt }, nil, func(c Client) (Client, error) {
		n, err := fn(c)
		n.ID = c.ID
		return n, err
	}, func(c *Client) { c.Version++ })
}

func (b *Badger) DeleteClient(_ context.Context, id string) error {
	if err := b.delete(pClient + id); err != nil {
		return fmt.Errorf("delete client %q: %w", id, err)
	}
	return nil
}

func (b *Badger) ListClients(context.Context) ([]Client, error) {
	now := b.now()
	return list(b, pClient, func(c Client) bool { return c.ExpiresAt.IsZero() || now.Before(c.ExpiresAt) })
}

// ---- grants ----

func (b *Badger) CreateGrant(_ context.Context, g Grant) error {
	if g.ID == "" {
		return errors.New("grant id is empty")
	}
	g.Version = 1
	w := b.hot.beginWrite()
	err := b.create(pGrant+g.ID, g, time.Time{})
	w.grant(g.ID)
	if err != nil {
		return fmt.Errorf("create grant %q: %w", g.ID, err)
	}
	return nil
}

func (b *Badger) GetGrant(_ context.Context, id string) (Grant, error) {
	g, err := readOne[Grant](b, pGrant+id)
	if err != nil {
		return Grant{}, fmt.Errorf("get grant %q: %w", id, err)
	}
	return g, nil
}

func (b *Badger) UpdateGrant(_ context.Context, id string, fn func(Grant) (Grant, error)) error {
	w := b.hot.beginWrite()
	err := update(b, pGrant+id, nil, nil, func(g Grant) (Grant, error) {
		n, err := fn(g)
		n.ID = g.ID
		return n, err
	}, func(g *Grant) { g.Version++ })
	w.grant(id)
	return err
}

func (b *Badger) DeleteGrant(_ context.Context, id string) error {
	w := b.hot.beginWrite()
	err := b.retry(func(txn *badger.Txn) error {
		if _, err := txn.Get([]byte(pGrant + id)); errors.Is(err, badger.ErrKeyNotFound) {
			return ErrNotFound
		} else if err != nil {
			return err
		}
		if err := txn.Delete([]byte(pGrant + id)); err != nil {
			return err
		}
		return deletePrefix(txn, lastUseKey(id, ""))
	})
	w.grant(id)
	if err != nil {
		return fmt.Errorf("delete grant %q: %w", id, err)
	}
	return nil
}

func (b *Badger) ListGrants(_ context.Context, f GrantFilter) ([]Grant, error) {
	return list(b, pGrant, f.Match)
}

// ---- last use ----

func lastUseKey(grantID, server string) string { return pLastUse + grantID + "/" + server }

// deletePrefix deletes every key under prefix in txn.
func deletePrefix(txn *badger.Txn, prefix string) error {
	it := txn.NewIterator(badger.IteratorOptions{Prefix: []byte(prefix)})
	var keys [][]byte
	for it.Rewind(); it.Valid(); it.Next() {
		keys = append(keys, it.Item().KeyCopy(nil))
	}
	it.Close()
	for _, k := range keys {
		if err := txn.Delete(k); err != nil {
			return err
		}
	}
	return nil
}

// lastUseBatch bounds the uses written in one transaction (Badger refuses
// transactions larger than a fraction of its memtable).
const lastUseBatch = 500

func (b *Badger) PutLastUse(_ context.Context, uses ...LastUse) error {
	for len(uses) > 0 {
		n := min(len(uses), lastUseBatch)
		if err := b.putLastUse(uses[:n]); err != nil {
			return fmt.Errorf("record last use: %w", err)
		}
		uses = uses[n:]
	}
	return nil
}

func (b *Badger) putLastUse(uses []LastUse) error {
	return b.retry(func(txn *badger.Txn) error {
		for _, u := range uses {
			if u.GrantID == "" || u.Server == "" {
				return errors.New("last use needs a grant id and a server")
			}
			key := lastUseKey(u.GrantID, u.Server)
			cur, err := get[LastUse](txn, key)
			if err != nil && !errors.Is(err, ErrNotFound) {
				return err
			}
			if err == nil && !u.At.After(cur.At) {
				continue
			}
			u.At = u.At.UTC()
			if err := setJSON(txn, key, u, time.Time{}); err != nil {
				return err
			}
		}
		return nil
	})
}

func (b *Badger) ListLastUse(context.Context) ([]LastUse, error) {
	return list[LastUse](b, pLastUse, nil)
}

// ---- handles ----

func (b *Badger) handleAlive(h Handle) bool { return b.now().Before(h.ExpiresAt) }

func (b *Badger) CreateHandle(_ context.Context, h Handle) error {
	if h.Digest == "" {
		return errors.New("handle digest is empty")
	}
	if h.ExpiresAt.IsZero() {
		return errors.New("handle has no expiry")
	}
	h.Version = 1
	w := b.hot.beginWrite()
	err := b.create(pHandle+h.Digest, h, h.ExpiresAt)
	w.handle(h.Digest)
	if err != nil {
		return fmt.Errorf("create %s handle: %w", h.Kind, err)
	}
	return nil
}

func (b *Badger) GetHandle(_ context.Context, digest string) (Handle, error) {
	h, err := readOne[Handle](b, pHandle+digest)
	if err == nil && !b.handleAlive(h) {
		err = ErrNotFound
	}
	if err != nil {
		// The digest is not secret, but it identifies a live credential;
		// keep it out of error strings that may reach logs.
		return Handle{}, fmt.Errorf("get handle: %w", err)
	}
	return h, nil
}

func (b *Badger) UpdateHandle(_ context.Context, digest string, fn func(Handle) (Handle, error)) error {
	w := b.hot.beginWrite()
	err := update(b, pHandle+digest, func(h Handle) time.Time { return h.ExpiresAt }, b.handleAlive, func(h Handle) (Handle, error) {
		n, err := fn(h)
		n.Digest = h.Digest
		return n, err
	}, func(h *Handle) { h.Version++ })
	w.handle(digest)
	if err != nil {
		return fmt.Errorf("update handle: %w", err)
	}
	return nil
}

func (b *Badger) DeleteHandle(_ context.Context, digest string) error {
	w := b.hot.beginWrite()
	err := b.delete(pHandle + digest)
	w.handle(digest)
	if err != nil {
		return fmt.Errorf("delete handle: %w", err)
	}
	return nil
}

// ResolveHandle serves from the write-through cache when both records are
// in it and reads Badger otherwise. The values are shared with the cache:
// callers must treat their slices and maps as read-only.
func (b *Badger) ResolveHandle(_ context.Context, digest string) (Handle, Grant, error) {
	if err := b.usable(); err != nil {
		return Handle{}, Grant{}, fmt.Errorf("resolve handle: %w", err)
	}
	if h, g, ok := b.hot.resolve(digest); ok {
		if !b.handleAlive(h) {
			return Handle{}, Grant{}, fmt.Errorf("resolve handle: %w", ErrNotFound)
		}
		return h, g, nil
	}
	gen, clean := b.hot.snapshot()
	var h Handle
	var g Grant
	err := b.view(func(txn *badger.Txn) error {
		var err error
		if h, err = get[Handle](txn, pHandle+digest); err != nil {
			return err
		}
		if !b.handleAlive(h) {
			return ErrNotFound
		}
		g, err = get[Grant](txn, pGrant+h.GrantID)
		return err
	})
	if err != nil {
		return Handle{}, Grant{}, fmt.Errorf("resolve handle: %w", err)
	}
	if clean {
		if hook := b.hot.afterRead; hook != nil {
			hook()
		}
		b.hot.fill(gen, h, g)
	}
	return h, g, nil
}

// ---- servers ----

func (b *Badger) CreateServer(_ context.Context, s Server) error {
	if s.Name == "" {
		return errors.New("server name is empty")
	}
	s.Version = 1
	err := b.retry(func(txn *badger.Txn) error {
		key := pServer + s.Name
		if _, err := txn.Get([]byte(key)); err == nil {
			return ErrAlreadyExists
		} else if !errors.Is(err, badger.ErrKeyNotFound) {
			return err
		}
		if err := setJSON(txn, key, s, time.Time{}); err != nil {
			return err
		}
		// Pins under a name no server has are strays: a list answer of a
		// removed server still in flight when it was removed. A server
		// added under the name starts with none (DeleteServer's rule).
		if strings.Contains(s.Name, "/") {
			return nil // no pin can have such a server (CreateToolPin)
		}
		return deletePrefix(txn, pToolPin+s.Name+"/")
	})
	if err != nil {
		return fmt.Errorf("create server %q: %w", s.Name, err)
	}
	return nil
}

func (b *Badger) GetServer(_ context.Context, name string) (Server, error) {
	s, err := readOne[Server](b, pServer+name)
	if err != nil {
		return Server{}, fmt.Errorf("get server %q: %w", name, err)
	}
	return s, nil
}

func (b *Badger) UpdateServer(_ context.Context, name string, fn func(Server) (Server, error)) error {
	err := update(b, pServer+name, nil, nil, func(s Server) (Server, error) {
		n, err := fn(s)
		n.Name = s.Name
		return n, err
	}, func(s *Server) { s.Version++ })
	if err != nil {
		return fmt.Errorf("update server %q: %w", name, err)
	}
	return nil
}

func (b *Badger) DeleteServer(_ context.Context, name string) error {
	err := b.retry(func(txn *badger.Txn) error {
		key := []byte(pServer + name)
		if _, err := txn.Get(key); errors.Is(err, badger.ErrKeyNotFound) {
			return ErrNotFound
		} else if err != nil {
			return err
		}
		if err := txn.Delete(key); err != nil {
			return err
		}
		// Its tool pins go in the same transaction: a server added again
		// under the name starts with none.
		if strings.Contains(name, "/") {
			return nil // no pin can have such a server (CreateToolPin)
		}
		return deletePrefix(txn, pToolPin+name+"/")
	})
	if err != nil {
		return fmt.Errorf("delete server %q: %w", name, err)
	}
	return nil
}

func (b *Badger) ListServers(context.Context) ([]Server, error) {
	return list[Server](b, pServer, nil)
}

// ---- sessions ----

type session struct {
	Value     []byte    `json:"v"`
	ExpiresAt time.Time `json:"exp"`
}

func sessionKey(kind, id string) string { return pSession + kind + "/" + id }

func (b *Badger) PutSession(_ context.Context, kind, id string, value []byte, ttl time.Duration) error {
	if ttl <= 0 {
		return errors.New("session needs a positive ttl")
	}
	s := session{Value: value, ExpiresAt: b.now().Add(ttl)}
	return b.retry(func(txn *badger.Txn) error { return setJSON(txn, sessionKey(kind, id), s, s.ExpiresAt) })
}

func (b *Badger) GetSession(_ context.Context, kind, id string) ([]byte, error) {
	s, err := readOne[session](b, sessionKey(kind, id))
	if err == nil && !b.now().Before(s.ExpiresAt) {
		err = ErrNotFound
	}
	if err != nil {
		return nil, fmt.Errorf("get %s session: %w", kind, err)
	}
	return s.Value, nil
}

func (b *Badger) TakeSession(_ context.Context, kind, id string) ([]byte, error) {
	var s session
	err := b.retry(func(txn *badger.Txn) error {
		var err error
		if s, err = get[session](txn, sessionKey(kind, id)); err != nil {
			return err
		}
		if err := txn.Delete([]byte(sessionKey(kind, id))); err != nil {
			return err
		}
		if !b.now().Before(s.ExpiresAt) {
			return ErrNotFound
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("take %s session: %w", kind, err)
	}
	return s.Value, nil
}

// ---- consents ----

func consentKey(subject, clientID string) string {
	// Length-prefix the subject so no subject/client pair can collide with
	// another by containing the separator.
	return fmt.Sprintf("%s%d/%s/%s", pConsent, len(subject), subject, clientID)
}

func (b *Badger) PutConsent(_ context.Context, c Consent) error {
	return b.retry(func(txn *badger.Txn) error { return setJSON(txn, consentKey(c.Subject, c.ClientID), c, time.Time{}) })
}

func (b *Badger) GetConsent(_ context.Context, subject, clientID string) (Consent, error) {
	c, err := readOne[Consent](b, consentKey(subject, clientID))
	if err != nil {
		return Consent{}, fmt.Errorf("get consent: %w", err)
	}
	return c, nil
}

func (b *Badger) DeleteConsents(_ context.Context, subject, clientID string) (int, error) {
	all, err := list(b, pConsent, func(c Consent) bool {
		return (subject == "" || c.Subject == subject) && (clientID == "" || c.ClientID == clientID)
	})
	if err != nil {
		return 0, err
	}
	err = b.retry(func(txn *badger.Txn) error {
		for _, c := range all {
			if err := txn.Delete([]byte(consentKey(c.Subject, c.ClientID))); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return 0, fmt.Errorf("delete consents: %w", err)
	}
	return len(all), nil
}

// ---- audit ----

// The trail lives in the audit log (auditlog.go). Stores written before it
// kept events under this prefix in Badger; opening one moves them.
const pAudit = "audit/"

func (b *Badger) AppendAudit(_ context.Context, events ...AuditEvent) error {
	return b.appendAudit(events, nil)
}

// AppendAuditLines is AppendAudit for events already encoded, one JSON line
// each (exactly json.Marshal of the event), as the audit trail has them.
func (b *Badger) AppendAuditLines(_ context.Context, events []AuditEvent, lines []byte) error {
	return b.appendAudit(events, lines)
}

func (b *Badger) appendAudit(events []AuditEvent, lines []byte) error {
	if len(events) == 0 {
		return nil
	}
	if err := b.usable(); err != nil {
		return fmt.Errorf("append audit: %w", err)
	}
	if err := b.roomToWrite(); err != nil {
		return fmt.Errorf("append audit: %w", err)
	}
	if err := b.audit.append(events, lines); err != nil {
		if errors.Is(err, errRefused) {
			return fmt.Errorf("append audit: %w", err)
		}
		// The disk did not take the write: the same disk holds the rest.
		b.fail(err)
		return fmt.Errorf("append audit: %w", b.Err())
	}
	return nil
}

func (b *Badger) ListAudit(_ context.Context, from uint64, limit int) ([]AuditEvent, error) {
	if err := b.usable(); err != nil {
		return nil, fmt.Errorf("list audit: %w", err)
	}
	evs, err := b.audit.list(from, limit)
	if err != nil {
		return nil, fmt.Errorf("list audit: %w", err)
	}
	return evs, nil
}

func (b *Badger) LastAudit(context.Context) (AuditEvent, error) {
	if err := b.usable(); err != nil {
		return AuditEvent{}, fmt.Errorf("last audit event: %w", err)
	}
	e, ok := b.audit.lastEvent()
	if !ok {
		return AuditEvent{}, fmt.Errorf("last audit event: %w", ErrNotFound)
	}
	return e, nil
}

// moveAuditOutOfBadger appends events stored in Badger by an older Warden
// to an empty audit log, then drops them from Badger.
func (b *Badger) moveAuditOutOfBadger() error {
	if _, ok := b.audit.lastEvent(); ok {
		return nil
	}
	var batch []AuditEvent
	moved := 0
	err := b.view(func(txn *badger.Txn) error {
		it := txn.NewIterator(badger.IteratorOptions{Prefix: []byte(pAudit), PrefetchValues: true, PrefetchSize: 100})
		defer it.Close()
		for it.Rewind(); it.Valid(); it.Next() {
			var e AuditEvent
			if err := it.Item().Value(func(raw []byte) error { return json.Unmarshal(raw, &e) }); err != nil {
				return fmt.Errorf("decode audit event: %w", err)
			}
			batch = append(batch, e)
			if len(batch) == 1000 {
				if err := b.audit.append(batch, nil); err != nil {
					return err
				}
				moved += len(batch)
				batch = batch[:0]
			}
		}
		if len(batch) > 0 {
			moved += len(batch)
			return b.audit.append(batch, nil)
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("move audit trail out of badger: %w", err)
	}
	if moved == 0 {
		return nil
	}
	b.log.Info("moved the audit trail from Badger to the audit log", "events", moved)
	return b.db.DropPrefix([]byte(pAudit))
}

// badgerLogger routes Badger's chatter to slog at debug level, warnings and
// errors at their own level.
type badgerLogger struct{ l *slog.Logger }

func (b badgerLogger) log(level slog.Level, f string, args ...any) {
	if b.l == nil {
		return
	}
	b.l.Log(context.Background(), level, fmt.Sprintf(f, args...), "component", "badger")
}
func (b badgerLogger) Errorf(f string, a ...any)   { b.log(slog.LevelError, f, a...) }
func (b badgerLogger) Warningf(f string, a ...any) { b.log(slog.LevelWarn, f, a...) }
func (b badgerLogger) Infof(f string, a ...any)    { b.log(slog.LevelDebug, f, a...) }
func (b badgerLogger) Debugf(f string, a ...any)   { b.log(slog.LevelDebug, f, a...) }
