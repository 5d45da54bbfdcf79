package postgres_test

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/url"
	"os"
	"os/exec"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/warden-mcp/warden/internal/store"
	"github.com/warden-mcp/warden/internal/store/postgres"
	"github.com/warden-mcp/warden/internal/store/postgres/pgtest"
	"github.com/warden-mcp/warden/internal/store/storetest"
)

// envLockChild makes the test binary a child of TestLockAcrossProcesses.
const envLockChild = "WARDEN_PG_LOCK_CHILD"

// lockChild takes the lock the parent holds, reports when it has it and
// exits; it runs instead of the tests when envLockChild is set.
func lockChild() bool {
	dsn := os.Getenv(envLockChild)
	if dsn == "" {
		return false
	}
	err := func() error {
		s, err := postgres.Open(context.Background(), postgres.Options{DSN: dsn, SweepInterval: -1})
		if err != nil {
			return err
		}
		defer s.Close()
		fmt.Println("waiting")
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		unlock, err := s.Lock(ctx, "refresh:alice")
		if err != nil {
			return err
		}
		defer unlock()
		fmt.Println("locked")
		return nil
	}()
	if err != nil {
		fmt.Fprintln(os.Stderr, "lock child:", err)
		os.Exit(1)
	}
	os.Exit(0)
	return true
}

func openReplica(t *testing.T, dsn, id string, lease time.Duration) *postgres.Store {
	t.Helper()
	s, err := postgres.Open(context.Background(), postgres.Options{DSN: dsn, MaxConns: 4, SweepInterval: -1,
		Replica: &postgres.ReplicaOptions{ID: id, Lease: lease}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.Close() })
	waitFor(t, id+" cache usable", func() bool { st, _ := s.Replica(); return st.CacheUsable })
	return s
}

// waitFor polls cond until it holds, failing the test after a minute.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(time.Minute)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("%s: not reached within a minute", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func TestConformanceWithReplicaCache(t *testing.T) {
	dsns := map[store.Store]string{}
	opts := func(dsn string) postgres.Options {
		return postgres.Options{DSN: dsn, MaxConns: 4, Replica: &postgres.ReplicaOptions{Lease: 5 * time.Second}}
	}
	storetest.Run(t, storetest.Backend{
		Open: func(t *testing.T) store.Store {
			dsn, _ := pgtest.Schema(t)
			s, err := postgres.Open(ctx, opts(dsn))
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { _ = s.Close() })
			dsns[s] = dsn
			return s
		},
		Reopen: func(t *testing.T, s store.Store) store.Store {
			dsn := dsns[s]
			if err := s.Close(); err != nil {
				t.Fatal(err)
			}
			n, err := postgres.Open(ctx, opts(dsn))
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { _ = n.Close() })
			return n
		},
	})
}

var ctx = context.Background()

func seedGrants(t *testing.T, s store.Store, n int) []string {
	t.Helper()
	digests := make([]string, n)
	for i := range n {
		id := fmt.Sprintf("g%03d", i)
		g := store.Grant{ID: id, Subject: fmt.Sprintf("user%d@example.com", i), ClientID: "c", Kind: store.KindUser,
			Servers: []string{"bi"}, Resources: []string{"https://mcp.example.com/mcp/bi"}, CreatedAt: time.Now()}
		if err := s.CreateGrant(ctx, g); err != nil {
			t.Fatal(err)
		}
		digests[i] = fmt.Sprintf("%064x", i+1)
		h := store.Handle{Digest: digests[i], Kind: store.HandleAccess, GrantID: id, ClientID: "c",
			Resources: g.Resources, IssuedAt: time.Now(), ExpiresAt: time.Now().Add(time.Hour)}
		if err := s.CreateHandle(ctx, h); err != nil {
			t.Fatal(err)
		}
	}
	return digests
}

// warm resolves digests on r until r's cache holds them all: a fill is
// refused while notifications of the writes that created them are still
// arriving.
func warm(t *testing.T, r *postgres.Store, digests []string) {
	t.Helper()
	waitFor(t, "a warm cache", func() bool {
		for _, d := range digests {
			if _, g, err := r.ResolveHandle(ctx, d); err != nil || g.Revoked() {
				t.Fatalf("resolve: %v", err)
			}
		}
		st, _ := r.Replica()
		return st.Cached == len(digests)
	})
}

func revoke(t *testing.T, s *postgres.Store, id string) {
	t.Helper()
	if err := s.UpdateGrant(ctx, id, func(g store.Grant) (store.Grant, error) {
		g.RevokedAt, g.RevokedBy = time.Now(), "test"
		return g, nil
	}); err != nil {
		t.Fatal(err)
	}
	if err := s.Fence(ctx); err != nil {
		t.Fatal(err)
	}
}

// Three replicas with hot caches on one schema; readers on all three
// resolve every handle in a loop while one replica revokes the grants one
// by one. A read that starts after the revoking call returned must see
// the grant revoked, on every replica.
func TestRevocationExactAcrossReplicas(t *testing.T) {
	dsn, _ := pgtest.Schema(t)
	reps := []*postgres.Store{openReplica(t, dsn, "a", 5*time.Second), openReplica(t, dsn, "b", 5*time.Second), openReplica(t, dsn, "c", 5*time.Second)}
	const n = 40
	digests := seedGrants(t, reps[0], n)
	// Warm every cache, and check that it is the cache that answers.
	for _, r := range reps {
		warm(t, r, digests)
	}
	var fenced [n]atomic.Bool
	var stale, reads atomic.Int64
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for _, r := range reps {
		for w := 0; w < 2; w++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for i := 0; ; i++ {
					select {
					case <-stop:
						return
					default:
					}
					k := i % n
					after := fenced[k].Load()
					_, g, err := r.ResolveHandle(ctx, digests[k])
					if err != nil {
						t.Error(err)
						return
					}
					reads.Add(1)
					if after && !g.Revoked() {
						stale.Add(1)
					}
				}
			}()
		}
	}
	for k := 0; k < n; k++ {
		revoke(t, reps[k%len(reps)], fmt.Sprintf("g%03d", k))
		fenced[k].Store(true)
	}
	close(stop)
	wg.Wait()
	if stale.Load() != 0 {
		t.Fatalf("%d of %d reads after a revocation returned saw the grant live", stale.Load(), reads.Load())
	}
	for _, r := range reps {
		for _, d := range digests {
			_, g, err := r.ResolveHandle(ctx, d)
			if err != nil || !g.Revoked() {
				t.Fatalf("after the revocations: %v, revoked %v", err, g.Revoked())
			}
		}
	}
}

// A replica row whose process stopped answering (here: a row nobody
// renews) holds a revocation until its lease has ended, and no longer.
func TestFenceWaitsOutALeaseThatIsNotRenewed(t *testing.T) {
	dsn, _ := pgtest.Schema(t)
	a := openReplica(t, dsn, "a", 5*time.Second)
	conn, err := pgx.Connect(ctx, dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	if _, err := conn.Exec(ctx, `INSERT INTO replicas (id, acked_epoch, lease_until, started_at, info)
		VALUES ('frozen', 0, clock_timestamp() + interval '1500 milliseconds', clock_timestamp(), '{}')`); err != nil {
		t.Fatal(err)
	}
	if err := a.Fence(ctx); err != nil {
		t.Fatal(err)
	}
	var over bool
	if err := conn.QueryRow(ctx, "SELECT clock_timestamp() >= lease_until FROM replicas WHERE id = 'frozen'").Scan(&over); err != nil {
		t.Fatal(err)
	}
	if !over {
		t.Fatal("Fence returned while the silent replica's lease was still live")
	}
	var acked int64
	if err := conn.QueryRow(ctx, "SELECT acked_epoch FROM replicas WHERE id = 'a'").Scan(&acked); err != nil || acked != 1 {
		t.Fatalf("the live replica acknowledged epoch %d (%v), want 1", acked, err)
	}
}

// When its notification session dies, a replica stops answering from its
// cache at once, reconnects, and starts again from an empty cache.
func TestReplicaSessionLossDisablesTheCache(t *testing.T) {
	dsn, _ := pgtest.Schema(t)
	b := openReplica(t, dsn, "b", 5*time.Second)
	digests := seedGrants(t, b, 3)
	for _, d := range digests {
		if _, _, err := b.ResolveHandle(ctx, d); err != nil {
			t.Fatal(err)
		}
	}
	conn, err := pgx.Connect(ctx, dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	var killed int
	if err := conn.QueryRow(ctx, "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity WHERE application_name = 'warden-replica b'").Scan(&killed); err != nil || killed != 1 {
		t.Fatalf("terminated %d sessions (%v), want the replica's one", killed, err)
	}
	waitFor(t, "a lapse", func() bool { st, _ := b.Replica(); return st.Lapses > 0 })
	waitFor(t, "the cache back", func() bool { st, _ := b.Replica(); return st.CacheUsable })
	if st, _ := b.Replica(); st.Cached != 0 {
		t.Fatalf("%d handles survived the lapse in the cache", st.Cached)
	}
	if _, _, err := b.ResolveHandle(ctx, digests[0]); err != nil {
		t.Fatal(err)
	}
}

// A replica cut off from PostgreSQL without its connections closing (a
// partition: packets stop) never allows a revoked handle: the revocation
// waits out its lease, by which time its own clock has stopped the cache,
// and its reads through fail closed until the network is back.
func TestPartitionedReplicaFailsClosed(t *testing.T) {
	dsn, _ := pgtest.Schema(t)
	p := newProxy(t, dsn)
	const lease = 1500 * time.Millisecond
	a := openReplica(t, dsn, "a", lease)
	b := openReplica(t, p.dsn(t, dsn), "b", lease)
	digests := seedGrants(t, a, 1)
	warm(t, b, digests)
	p.freeze(true)
	revoke(t, a, "g000")
	rctx, cancel := context.WithTimeout(ctx, 500*time.Millisecond)
	_, g, err := b.ResolveHandle(rctx, digests[0])
	cancel()
	if err == nil && !g.Revoked() {
		t.Fatal("the partitioned replica allowed a revoked grant from its cache")
	}
	if err == nil {
		t.Fatal("the partitioned replica answered without PostgreSQL")
	}
	p.freeze(false)
	waitFor(t, "b back", func() bool {
		_, g, err := b.ResolveHandle(ctx, digests[0])
		return err == nil && g.Revoked()
	})
}

// Only one of two processes holds a Lock at a time: the child blocks on
// the lock the test holds and takes it once released.
func TestLockAcrossProcesses(t *testing.T) {
	dsn, _ := pgtest.Schema(t)
	s := open(t, dsn)
	unlock, err := s.Lock(ctx, "refresh:alice")
	if err != nil {
		t.Fatal(err)
	}
	other, err := s.Lock(ctx, "refresh:bob")
	if err != nil {
		t.Fatal("another key is another lock:", err)
	}
	other()
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), envLockChild+"="+dsn)
	cmd.Stderr = os.Stderr
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	lines := bufio.NewScanner(out)
	if !lines.Scan() || lines.Text() != "waiting" {
		t.Fatalf("child: %q", lines.Text())
	}
	conn, err := pgx.Connect(ctx, dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	waitFor(t, "the child waiting on the lock", func() bool {
		var n int
		_ = conn.QueryRow(ctx, "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND NOT granted").Scan(&n)
		return n == 1
	})
	got := make(chan string, 1)
	go func() {
		lines.Scan()
		got <- lines.Text()
	}()
	select {
	case l := <-got:
		t.Fatalf("the child got past the held lock: %q", l)
	default:
	}
	unlock()
	unlock() // twice is harmless
	if l := <-got; l != "locked" {
		t.Fatalf("child after unlock: %q", l)
	}
	if err := cmd.Wait(); err != nil {
		t.Fatal(err)
	}
	cctx, cancel := context.WithCancel(ctx)
	unlock, err = s.Lock(ctx, "refresh:alice")
	if err != nil {
		t.Fatal(err)
	}
	defer unlock()
	done := make(chan error, 1)
	go func() { _, err := s.Lock(cctx, "refresh:alice"); done <- err }()
	waitFor(t, "a second waiter", func() bool {
		var n int
		_ = conn.QueryRow(ctx, "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND NOT granted").Scan(&n)
		return n == 1
	})
	cancel()
	if err := <-done; err == nil {
		t.Fatal("a cancelled wait returned the lock")
	}
}

// The limit counts for the deployment: two stores (two replicas) share
// one bucket per key.
func TestAllowIsSharedByReplicas(t *testing.T) {
	dsn, _ := pgtest.Schema(t)
	stores := []*postgres.Store{open(t, dsn), open(t, dsn)}
	now := time.Unix(1_800_000_000, 0)
	allowed := 0
	for i := 0; i < 20; i++ {
		ok, err := stores[i%2].Allow(ctx, "register", "203.0.113.7", 5, time.Minute, now)
		if err != nil {
			t.Fatal(err)
		}
		if ok {
			allowed++
		}
	}
	if allowed != 5 {
		t.Fatalf("allowed %d of 20 at once, want the burst of 5", allowed)
	}
	if ok, _ := stores[0].Allow(ctx, "register", "203.0.113.8", 5, time.Minute, now); !ok {
		t.Fatal("another key has its own bucket")
	}
	if ok, _ := stores[1].Allow(ctx, "token", "203.0.113.7", 5, time.Minute, now); !ok {
		t.Fatal("another bucket has its own keys")
	}
	// One event refills every 12 s.
	if ok, _ := stores[1].Allow(ctx, "register", "203.0.113.7", 5, time.Minute, now.Add(11*time.Second)); ok {
		t.Fatal("allowed before a token refilled")
	}
	if ok, _ := stores[1].Allow(ctx, "register", "203.0.113.7", 5, time.Minute, now.Add(12*time.Second)); !ok {
		t.Fatal("refused after a token refilled")
	}
	if ok, err := stores[0].Allow(ctx, "register", "bad\x00key", 1, time.Minute, now); !ok || err != nil {
		t.Fatalf("a key PostgreSQL text cannot hold: %v %v", ok, err)
	}
}

// Concurrent updates of a blob from two stores each see the one before.
func TestUpdateBlobSerializes(t *testing.T) {
	dsn, _ := pgtest.Schema(t)
	stores := []*postgres.Store{open(t, dsn), open(t, dsn)}
	if _, err := stores[0].GetBlob(ctx, "signing"); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("missing blob: %v", err)
	}
	var wg sync.WaitGroup
	for i := 0; i < 20; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := stores[i%2].UpdateBlob(ctx, "signing", func(cur []byte) ([]byte, error) {
				return append(slices.Clone(cur), byte(i)), nil
			}); err != nil {
				t.Error(err)
			}
		}()
	}
	wg.Wait()
	got, err := stores[1].GetBlob(ctx, "signing")
	if err != nil {
		t.Fatal(err)
	}
	slices.Sort(got)
	for i := range 20 {
		if i >= len(got) || got[i] != byte(i) {
			t.Fatalf("blob %v: an update was lost", got)
		}
	}
	boom := errors.New("boom")
	if err := stores[0].UpdateBlob(ctx, "signing", func([]byte) ([]byte, error) { return nil, boom }); !errors.Is(err, boom) {
		t.Fatalf("updater error: %v", err)
	}
}

// proxy forwards TCP to PostgreSQL and can stop forwarding without
// closing anything, as a network partition does.
type proxy struct {
	ln     net.Listener
	target string
	mu     sync.Mutex
	cond   *sync.Cond
	frozen bool
}

func newProxy(t *testing.T, dsn string) *proxy {
	t.Helper()
	cfg, err := pgx.ParseConfig(dsn)
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &proxy{ln: ln, target: net.JoinHostPort(cfg.Host, fmt.Sprint(cfg.Port))}
	p.cond = sync.NewCond(&p.mu)
	t.Cleanup(func() { p.freeze(false); _ = ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			up, err := net.Dial("tcp", p.target)
			if err != nil {
				_ = c.Close()
				continue
			}
			go p.pipe(c, up)
			go p.pipe(up, c)
		}
	}()
	return p
}

func (p *proxy) dsn(t *testing.T, dsn string) string {
	u, err := url.Parse(dsn)
	if err != nil || u.Scheme == "" {
		t.Fatalf("the proxy test needs a URL DSN: %v", err)
	}
	u.Host = p.ln.Addr().String()
	return u.String()
}

func (p *proxy) freeze(on bool) {
	p.mu.Lock()
	p.frozen = on
	p.mu.Unlock()
	p.cond.Broadcast()
}

func (p *proxy) pipe(dst, src net.Conn) {
	defer dst.Close()
	defer src.Close()
	buf := make([]byte, 32<<10)
	for {
		n, err := src.Read(buf)
		p.mu.Lock()
		for p.frozen {
			p.cond.Wait()
		}
		p.mu.Unlock()
		if n > 0 {
			if _, werr := dst.Write(buf[:n]); werr != nil {
				return
			}
		}
		if err != nil {
			if !errors.Is(err, io.EOF) {
				return
			}
			return
		}
	}
}
