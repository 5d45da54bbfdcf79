package postgres

import (
	"context"
	"crypto/md5"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/warden-mcp/warden/internal/store"
)

// ReplicaOptions turn on the hot cache of handles and grants for a Store
// that is one of several Warden replicas on one schema, and the protocol
// that keeps it exact (docs/ARCHITECTURE.md, "Replicas"):
//
//   - the schema's triggers notify every write to a grant or a handle on
//     the schema's channel; each replica listens on a connection of its
//     own and drops what it cached;
//   - Fence (every revocation) bumps the revocation epoch and returns
//     once every replica with a live lease has acknowledged it, which a
//     replica does only after handling every notification committed
//     before the epoch;
//   - a replica serves from its cache only while its own lease, renewed
//     on that same connection, is live by its own monotonic clock, and
//     it empties the cache before serving from it again after a lapse.
type ReplicaOptions struct {
	// ID names the replica in the replicas table; unique per process.
	// Empty: host name, process id and a random suffix.
	ID string
	// Lease is how long a renewal keeps the replica's cache usable: the
	// longest a revocation waits for a replica that stopped answering.
	// 0 means 10 s.
	Lease time.Duration
	// Heartbeat is how often the lease is renewed; 0 means Lease/5.
	Heartbeat time.Duration
	// CacheMax bounds the cached handles; 0 is the Badger cache's bound.
	CacheMax int
}

func (o ReplicaOptions) withDefaults() ReplicaOptions {
	if o.Lease <= 0 {
		o.Lease = 10 * time.Second
	}
	if o.Heartbeat <= 0 || o.Heartbeat > o.Lease/2 {
		o.Heartbeat = o.Lease / 5
	}
	if o.ID == "" {
		host, _ := os.Hostname()
		b := make([]byte, 4)
		_, _ = rand.Read(b)
		o.ID = fmt.Sprintf("%s-%d-%s", host, os.Getpid(), hex.EncodeToString(b))
	}
	return o
}

// channelFor is the NOTIFY channel of a schema; the triggers of migration
// 00005 compute the same name.
func channelFor(schema string) string {
	sum := md5.Sum([]byte(schema))
	return "warden_" + hex.EncodeToString(sum[:])[:16]
}

// replica is this process's side of the protocol.
type replica struct {
	s     *Store
	o     ReplicaOptions
	cache *store.SharedHotCache
	cfg   *pgx.ConnConfig

	// base anchors the monotonic clock; deadline is when the cache stops
	// being usable, in nanoseconds since base (0: not usable).
	base     time.Time
	deadline atomic.Int64
	// seen is the newest epoch whose notification was handled.
	seen atomic.Int64

	acks   sync.Mutex
	ackCh  chan struct{} // closed and replaced on every acknowledgement seen
	subsMu sync.RWMutex
	subs   map[byte][]chan string

	lapses atomic.Uint64
	// renewed is when the lease was last renewed (r.mono(); 0: never);
	// acked the epoch the replicas table last stored as acknowledged;
	// listening whether the notification session is LISTENing.
	renewed   atomic.Int64
	acked     atomic.Int64
	listening atomic.Bool
	stop      context.CancelFunc
	done      chan struct{}
}

func (s *Store) startReplica(o ReplicaOptions) {
	o = o.withDefaults()
	cfg := s.pool.Config().ConnConfig.Copy()
	// Named, so operators (and tests) can find the session in pg_stat_activity.
	cfg.RuntimeParams["application_name"] = "warden-replica " + o.ID
	r := &replica{s: s, o: o, cache: store.NewSharedHotCache(o.CacheMax), cfg: cfg, base: time.Now(),
		ackCh: make(chan struct{}), subs: map[byte][]chan string{}, done: make(chan struct{})}
	// Notifications are handled as pgconn reads them, in the order the
	// server sends them (commit order), also while a heartbeat runs on
	// the connection.
	cfg.OnNotification = func(_ *pgconn.PgConn, n *pgconn.Notification) { r.notified(n.Payload) }
	ctx, stop := context.WithCancel(context.Background())
	r.stop = stop
	s.replica = r
	go r.run(ctx)
}

func (r *replica) mono() int64 { return int64(time.Since(r.base)) }

// usable reports whether the cache may answer now.
func (r *replica) usable() bool { return r.mono() < r.deadline.Load() }

// extend makes the cache usable until a renewal started at t0 ends its
// lease (minus a tenth for clock rate drift). After a lapse the cache is
// emptied first: notifications may have been missed while it lasted.
func (r *replica) extend(t0 int64) {
	if r.mono() >= r.deadline.Load() {
		r.cache.Clear()
	}
	r.deadline.Store(t0 + int64(r.o.Lease-r.o.Lease/10))
	r.renewed.Store(max(t0, 1))
}

// lapse makes the cache unusable at once and empties it.
func (r *replica) lapse() {
	r.deadline.Store(0)
	r.cache.Clear()
	r.lapses.Add(1)
}

func (r *replica) notified(payload string) {
	if len(payload) < 2 || payload[1] != ':' {
		return
	}
	key := payload[2:]
	switch payload[0] {
	case 'g':
		r.cache.DropGrant(key)
	case 'h':
		r.cache.DropHandle(key)
	case 'e':
		if n, err := strconv.ParseInt(key, 10, 64); err == nil {
			for {
				cur := r.seen.Load()
				if n <= cur || r.seen.CompareAndSwap(cur, n) {
					break
				}
			}
		}
	case 'a':
		r.acks.Lock()
		close(r.ackCh)
		r.ackCh = make(chan struct{})
		r.acks.Unlock()
	}
	r.subsMu.RLock()
	for _, ch := range r.subs[payload[0]] {
		select {
		case ch <- key:
		default: // the subscriber is behind; it rereads everything anyway
		}
	}
	r.subsMu.RUnlock()
}

func (r *replica) ackSignal() <-chan struct{} {
	r.acks.Lock()
	defer r.acks.Unlock()
	return r.ackCh
}

// run keeps a listening session open until ctx ends, reconnecting after
// any failure; between sessions the cache is not used.
func (r *replica) run(ctx context.Context) {
	defer close(r.done)
	backoff := 50 * time.Millisecond
	for ctx.Err() == nil {
		err := r.session(ctx)
		r.listening.Store(false)
		r.lapse()
		if ctx.Err() != nil {
			break
		}
		r.s.log.Warn("replica: lost the store's notification session; serving without the hot cache until it is back", "replica", r.o.ID, "err", err)
		select {
		case <-ctx.Done():
		case <-time.After(backoff):
		}
		backoff = min(backoff*2, r.o.Heartbeat)
	}
	// Leave the table, so revocations stop waiting for this replica.
	dctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	if _, err := r.s.pool.Exec(dctx, "DELETE FROM replicas WHERE id = $1", r.o.ID); err != nil {
		r.s.log.Warn("replica: could not leave the replicas table; revocations wait for its lease", "replica", r.o.ID, "err", err)
	}
}

const registerSQL = `INSERT INTO replicas (id, acked_epoch, lease_until, started_at, info)
VALUES ($1, (SELECT epoch FROM revocation_epoch), clock_timestamp() + make_interval(secs => $2), clock_timestamp(), $3)
ON CONFLICT (id) DO UPDATE SET acked_epoch = GREATEST(replicas.acked_epoch, EXCLUDED.acked_epoch), lease_until = EXCLUDED.lease_until
RETURNING acked_epoch`

const renewSQL = `WITH u AS (
  UPDATE replicas SET acked_epoch = GREATEST(acked_epoch, $2), lease_until = clock_timestamp() + make_interval(secs => $3)
  WHERE id = $1 RETURNING acked_epoch)
SELECT acked_epoch, pg_notify($4, 'a:' || $1) FROM u`

// session is one connection's life: LISTEN, register, then renew the
// lease every heartbeat and acknowledge every epoch as soon as it is seen.
func (r *replica) session(ctx context.Context) error {
	cctx, cancel := context.WithTimeout(ctx, r.o.Heartbeat)
	conn, err := pgx.ConnectConfig(cctx, r.cfg)
	cancel()
	if err != nil {
		return fmt.Errorf("connect: %w", err)
	}
	defer func() {
		cctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		_ = conn.Close(cctx)
	}()
	ch := r.s.channel
	if err := r.query(ctx, func(qctx context.Context) error {
		_, err := conn.Exec(qctx, "LISTEN "+pgx.Identifier{ch}.Sanitize())
		return err
	}); err != nil {
		return fmt.Errorf("listen: %w", err)
	}
	r.listening.Store(true)
	// Listening from here on, the cache is empty (lapse and start clear
	// it) and the acknowledged epoch is the one current now: every later
	// epoch arrives as a notification.
	info, _ := json.Marshal(map[string]any{"pid": os.Getpid()})
	t0 := r.mono()
	var registered int64
	if err := r.query(ctx, func(qctx context.Context) error {
		return conn.QueryRow(qctx, registerSQL, r.o.ID, r.o.Lease.Seconds(), info).Scan(&registered)
	}); err != nil {
		return fmt.Errorf("register: %w", err)
	}
	r.extend(t0)
	r.acked.Store(registered)
	_, _ = conn.Exec(ctx, "DELETE FROM replicas WHERE lease_until < clock_timestamp() - interval '1 hour'")
	acked := int64(-1)
	next := time.Now().Add(r.o.Heartbeat)
	for {
		if seen := r.seen.Load(); seen > acked || !time.Now().Before(next) {
			t0 := r.mono()
			var got int64
			err := r.query(ctx, func(qctx context.Context) error {
				return conn.QueryRow(qctx, renewSQL, r.o.ID, seen, r.o.Lease.Seconds(), ch).Scan(&got, new(any))
			})
			if errors.Is(err, pgx.ErrNoRows) {
				// Our row was removed (a long lapse): register again.
				err = r.query(ctx, func(qctx context.Context) error {
					return conn.QueryRow(qctx, registerSQL, r.o.ID, r.o.Lease.Seconds(), info).Scan(&got)
				})
				got = max(got, seen)
			}
			if err != nil {
				return fmt.Errorf("renew lease: %w", err)
			}
			acked = max(got, seen)
			r.acked.Store(acked)
			r.extend(t0)
			next = time.Now().Add(r.o.Heartbeat)
			continue
		}
		wctx, cancel := context.WithDeadline(ctx, next)
		_, err := conn.WaitForNotification(wctx)
		cancel()
		if err != nil && ctx.Err() != nil {
			return ctx.Err()
		}
		if err != nil && !pgconn.Timeout(err) {
			return fmt.Errorf("wait for notifications: %w", err)
		}
	}
}

// query runs one statement on the session's connection within a
// heartbeat: a connection that does not answer in that time is given up.
func (r *replica) query(ctx context.Context, fn func(context.Context) error) error {
	qctx, cancel := context.WithTimeout(ctx, r.o.Heartbeat)
	defer cancel()
	return fn(qctx)
}

func (r *replica) close() {
	r.stop()
	<-r.done
}

// subscribe returns a channel that receives the key of every notification
// of kind ('s' servers, 'b' shared blobs).
func (r *replica) subscribe(kind byte) <-chan string {
	ch := make(chan string, 64)
	r.subsMu.Lock()
	r.subs[kind] = append(r.subs[kind], ch)
	r.subsMu.Unlock()
	return ch
}

// Subscribe returns a channel that receives the name of every server
// ('s') or shared blob ('b') written by any replica; nil without
// ReplicaOptions. A full channel drops notifications: treat one as "reread".
func (s *Store) Subscribe(kind byte) <-chan string {
	if s.replica == nil {
		return nil
	}
	return s.replica.subscribe(kind)
}

// ReplicaStatus is this replica's side of the protocol as /readyz and
// the metrics show it.
type ReplicaStatus struct {
	ID string `json:"id"`
	// CacheUsable: the lease is live by this process's monotonic clock,
	// so the hot cache answers; false is a lapsed lease (every read goes
	// to PostgreSQL, and fails closed when it cannot be reached).
	CacheUsable bool `json:"cache_usable"`
	Cached      int  `json:"cached_handles"`
	// Lapses counts the times the lease lapsed or the session was lost.
	Lapses uint64 `json:"lapses"`
	// SeenEpoch is the newest revocation epoch whose notification was
	// handled; AckedEpoch the newest the replicas table holds as
	// acknowledged by this replica (what Fence waits for).
	SeenEpoch  int64 `json:"seen_epoch"`
	AckedEpoch int64 `json:"acked_epoch"`
	// Listening: the notification session is connected and LISTENs. A
	// partition does not close it: the lease is what stops the cache.
	Listening bool `json:"listening"`
	// SinceRenewal is the time since the lease was last renewed; -1 when
	// it never was.
	SinceRenewal time.Duration `json:"since_renewal_ns"`
}

// Replica returns this replica's status; false without ReplicaOptions.
func (s *Store) Replica() (ReplicaStatus, bool) {
	r := s.replica
	if r == nil {
		return ReplicaStatus{}, false
	}
	since := time.Duration(-1)
	if at := r.renewed.Load(); at > 0 {
		since = time.Duration(r.mono() - at)
	}
	return ReplicaStatus{ID: r.o.ID, CacheUsable: r.usable(), Cached: r.cache.Len(), Lapses: r.lapses.Load(),
		SeenEpoch: r.seen.Load(), AckedEpoch: r.acked.Load(), Listening: r.listening.Load(), SinceRenewal: since}, true
}

// ReplicaReady is the /readyz check of a replica: not ready while its
// lease is lapsed. Such a replica fails closed on every read PostgreSQL
// does not answer, so a load balancer should send Checks elsewhere. A
// store without ReplicaOptions is always ready by this check.
func (s *Store) ReplicaReady() error {
	st, ok := s.Replica()
	if !ok || st.CacheUsable {
		return nil
	}
	if st.SinceRenewal < 0 {
		return fmt.Errorf("replica %s: no lease yet (listening: %t)", st.ID, st.Listening)
	}
	return fmt.Errorf("replica %s: lease lapsed, last renewed %s ago (listening: %t)", st.ID, st.SinceRenewal.Round(time.Millisecond), st.Listening)
}

// ErrFenceTimeout is returned by Fence when live replicas did not
// acknowledge in time.
var ErrFenceTimeout = errors.New("replicas did not acknowledge the revocation")

// Fence returns once no replica can answer from a cache that predates the
// call: it bumps the revocation epoch and waits until every replica with
// a live lease has acknowledged it. A replica that stopped answering is
// waited for until its lease ends (ReplicaOptions.Lease), after which it
// does not use its cache either. Stores without replicas return at once
// after the bump.
func (s *Store) Fence(ctx context.Context) error {
	db, err := s.db()
	if err != nil {
		return fmt.Errorf("fence: %w", err)
	}
	lease := 10 * time.Second
	if s.replica != nil {
		lease = s.replica.o.Lease
	}
	ctx, cancel := context.WithTimeout(ctx, lease+lease/2+time.Second)
	defer cancel()
	var epoch int64
	if err := db.QueryRow(ctx, `WITH e AS (UPDATE revocation_epoch SET epoch = epoch + 1 RETURNING epoch)
SELECT epoch, pg_notify($1, 'e:' || epoch) FROM e`, s.channel).Scan(&epoch, new(any)); err != nil {
		return fmt.Errorf("fence: bump the revocation epoch: %w", err)
	}
	for {
		var wake <-chan struct{}
		if s.replica != nil {
			wake = s.replica.ackSignal()
		}
		var pending []string
		rows, err := db.Query(ctx, "SELECT id FROM replicas WHERE lease_until > clock_timestamp() AND acked_epoch < $1 ORDER BY id", epoch)
		if err == nil {
			pending, err = pgx.CollectRows(rows, pgx.RowTo[string])
		}
		if err != nil {
			if ctx.Err() != nil {
				return fmt.Errorf("fence epoch %d: %w: %w", epoch, ErrFenceTimeout, ctx.Err())
			}
			return fmt.Errorf("fence epoch %d: %w", epoch, err)
		}
		if len(pending) == 0 {
			return nil
		}
		select {
		case <-wake:
		case <-time.After(20 * time.Millisecond):
		case <-ctx.Done():
			return fmt.Errorf("fence epoch %d: %w: %s: %w", epoch, ErrFenceTimeout, strings.Join(pending, ", "), ctx.Err())
		}
	}
}

// grantWrite starts a write of a grant through this Store; the returned
// func, run once the write is committed or failed, drops the cached
// grant (the write-through half of the cache protocol, as in Badger's).
func (s *Store) grantWrite(id string) func() {
	if s.replica == nil {
		return func() {}
	}
	w := s.replica.cache.BeginWrite()
	return func() { w.Grant(id) }
}

// handleWrite is grantWrite for a handle.
func (s *Store) handleWrite(digest string) func() {
	if s.replica == nil {
		return func() {}
	}
	w := s.replica.cache.BeginWrite()
	return func() { w.Handle(digest) }
}
