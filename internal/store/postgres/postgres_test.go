package postgres_test

import (
	"context"
	"errors"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/warden-mcp/warden/internal/store"
	"github.com/warden-mcp/warden/internal/store/postgres"
	"github.com/warden-mcp/warden/internal/store/postgres/pgtest"
	"github.com/warden-mcp/warden/internal/store/storetest"
)

func TestMain(m *testing.M) {
	lockChild() // exits when this process is a child of TestLockAcrossProcesses
	auditChild()
	storetest.ChildMain(m, func(dsn string) (store.Store, error) {
		return postgres.Open(context.Background(), postgres.Options{DSN: dsn, MaxConns: 4, SweepInterval: -1})
	})
}

func open(t *testing.T, dsn string) *postgres.Store {
	t.Helper()
	s, err := postgres.Open(context.Background(), postgres.Options{DSN: dsn, MaxConns: 4})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.Close() })
	return s
}

func TestConformance(t *testing.T) {
	dsns := map[store.Store]string{}
	storetest.Run(t, storetest.Backend{
		Open: func(t *testing.T) store.Store {
			dsn, _ := pgtest.Schema(t)
			s := open(t, dsn)
			dsns[s] = dsn
			return s
		},
		Reopen: func(t *testing.T, s store.Store) store.Store {
			dsn := dsns[s]
			if err := s.Close(); err != nil {
				t.Fatal(err)
			}
			return open(t, dsn)
		},
	})
}

func TestShared(t *testing.T) {
	storetest.RunShared(t, func(t *testing.T) (store.Store, string) {
		dsn, _ := pgtest.Schema(t)
		return open(t, dsn), dsn
	})
}

// clock is a settable clock for expiry tests.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *clock) advance(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

func TestExpiredRowsAreSweptAndTheirKeysReusable(t *testing.T) {
	ctx := context.Background()
	dsn, _ := pgtest.Schema(t)
	c := &clock{t: time.Now()}
	s, err := postgres.Open(ctx, postgres.Options{DSN: dsn, Now: c.now, SweepInterval: -1})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	must(t, s.CreateGrant(ctx, store.Grant{ID: "g"}))
	must(t, s.CreateHandle(ctx, store.Handle{Digest: "d", GrantID: "g", ExpiresAt: c.now().Add(time.Minute)}))
	must(t, s.CreateHandle(ctx, store.Handle{Digest: "long", GrantID: "g", ExpiresAt: c.now().Add(time.Hour)}))
	must(t, s.CreateClient(ctx, store.Client{ID: "cimd", ExpiresAt: c.now().Add(time.Minute)}))
	must(t, s.CreateClient(ctx, store.Client{ID: "dcr"}))
	must(t, s.PutSession(ctx, "k", "s", []byte("v"), time.Minute))
	if err := s.CreateHandle(ctx, store.Handle{Digest: "d", GrantID: "g", ExpiresAt: c.now().Add(time.Minute)}); !errors.Is(err, store.ErrAlreadyExists) {
		t.Fatalf("create over a live handle: %v", err)
	}

	c.advance(2 * time.Minute)
	if _, err := s.GetClient(ctx, "cimd"); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("expired client: %v", err)
	}
	if all, _ := s.ListClients(ctx); len(all) != 1 || all[0].ID != "dcr" {
		t.Fatalf("list after expiry: %+v", all)
	}
	if err := s.DeleteHandle(ctx, "d"); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("delete of an expired handle: %v", err)
	}
	// The key of an expired record is free, as it is in Badger once its
	// TTL passed.
	must(t, s.CreateClient(ctx, store.Client{ID: "cimd", Name: "again", ExpiresAt: c.now().Add(time.Minute)}))
	if got, err := s.GetClient(ctx, "cimd"); err != nil || got.Name != "again" || got.Version != 1 {
		t.Fatalf("recreated client: %+v %v", got, err)
	}
	c.advance(2 * time.Minute)
	n, err := s.Sweep(ctx)
	must(t, err)
	// The second cimd client and the session; "d" went with the delete.
	if n != 2 {
		t.Fatalf("swept %d rows, want 2", n)
	}
	if _, err := s.GetHandle(ctx, "long"); err != nil {
		t.Fatalf("live handle swept: %v", err)
	}
	if n, _ := s.Sweep(ctx); n != 0 {
		t.Fatalf("second sweep deleted %d rows", n)
	}
}

// Strings from requests and IdPs reach the store (client ids, states,
// subjects, tool names). PostgreSQL text holds neither NUL nor invalid
// UTF-8; such input must read as absent or be refused cleanly, never fail
// the store, and data fields must keep it exactly.
func TestBytesTextCannotHold(t *testing.T) {
	ctx := context.Background()
	dsn, _ := pgtest.Schema(t)
	s := open(t, dsn)
	for _, key := range []string{"a\x00b", "\xff\xfe"} {
		if _, err := s.GetClient(ctx, key); !errors.Is(err, store.ErrNotFound) {
			t.Errorf("get client %q: %v", key, err)
		}
		if _, err := s.TakeSession(ctx, "oauth_login", key); !errors.Is(err, store.ErrNotFound) {
			t.Errorf("take session %q: %v", key, err)
		}
		if _, _, err := s.ResolveHandle(ctx, key); !errors.Is(err, store.ErrNotFound) {
			t.Errorf("resolve %q: %v", key, err)
		}
		if err := s.UpdateGrant(ctx, key, func(g store.Grant) (store.Grant, error) { return g, nil }); !errors.Is(err, store.ErrNotFound) {
			t.Errorf("update grant %q: %v", key, err)
		}
		if _, err := s.GetConsent(ctx, key, "c"); !errors.Is(err, store.ErrNotFound) {
			t.Errorf("get consent %q: %v", key, err)
		}
		if err := s.CreateClient(ctx, store.Client{ID: key}); err == nil || errors.Is(err, store.ErrAlreadyExists) {
			t.Errorf("create client %q: %v", key, err)
		}
	}
	// Filter columns hold a cleaned copy; the filter stays exact.
	must(t, s.CreateGrant(ctx, store.Grant{ID: "g1", Subject: "al\x00ice", Claims: map[string]any{"k": "v\x00"}}))
	must(t, s.CreateGrant(ctx, store.Grant{ID: "g2", Subject: "al\uFFFDice"}))
	got, err := s.ListGrants(ctx, store.GrantFilter{Subject: "al\x00ice"})
	if err != nil || len(got) != 1 || got[0].ID != "g1" || got[0].Claims["k"] != "v\x00" {
		t.Fatalf("list by a subject with NUL: %+v %v", got, err)
	}
	must(t, s.AppendAudit(ctx, store.AuditEvent{Seq: 1, Tool: "to\x00ol\xff", Hash: "h"}))
	if e, err := s.LastAudit(ctx); err != nil || e.Tool != "to\x00ol\uFFFD" {
		t.Fatalf("audit round trip: %+v %v", e, err)
	}
}

func TestConcurrentFirstOpenMigratesOnce(t *testing.T) {
	dsn, schema := pgtest.Schema(t)
	var wg sync.WaitGroup
	errs := make(chan error, 4)
	for i := 0; i < 4; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			s, err := postgres.Open(context.Background(), postgres.Options{DSN: dsn, MaxConns: 2})
			if err != nil {
				errs <- err
				return
			}
			errs <- s.Close()
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	s := open(t, dsn)
	_ = s
	conn, err := pgx.Connect(context.Background(), dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(context.Background())
	// Every embedded migration is recorded exactly once.
	files, err := filepath.Glob(filepath.Join("migrations", "*.sql"))
	if err != nil || len(files) == 0 {
		t.Fatalf("migrations: %v %v", files, err)
	}
	var applied, distinct int
	if err := conn.QueryRow(context.Background(), "SELECT count(*), count(DISTINCT version_id) FROM "+pgx.Identifier{schema, "warden_schema_version"}.Sanitize()+" WHERE version_id > 0").Scan(&applied, &distinct); err != nil {
		t.Fatal(err)
	}
	if applied != len(files) || distinct != len(files) {
		t.Fatalf("%d migrations recorded (%d distinct), want each of the %d once", applied, distinct, len(files))
	}
}

func TestRefusesASchemaFromANewerWarden(t *testing.T) {
	ctx := context.Background()
	dsn, _ := pgtest.Schema(t)
	s := open(t, dsn)
	must(t, s.Close())
	conn, err := pgx.Connect(ctx, dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	if _, err := conn.Exec(ctx, "INSERT INTO warden_schema_version (version_id, is_applied) VALUES (999, true)"); err != nil {
		t.Fatal(err)
	}
	_, err = postgres.Open(ctx, postgres.Options{DSN: dsn})
	if err == nil || !strings.Contains(err.Error(), "newer than this Warden knows") {
		t.Fatalf("open on a newer schema: %v", err)
	}
}

func TestOpenErrors(t *testing.T) {
	ctx := context.Background()
	base := pgtest.BaseDSN(t)
	if _, err := postgres.Open(ctx, postgres.Options{DSN: pgtest.WithSearchPath(base, "no_such_schema_here")}); err == nil || !strings.Contains(err.Error(), "no schema selected") {
		t.Fatalf("missing schema: %v", err)
	}
	_, err := postgres.Open(ctx, postgres.Options{DSN: "postgres://warden:s3cret-pw@127.0.0.1:1/test?connect_timeout=2"})
	if err == nil {
		t.Fatal("open on a closed port succeeded")
	}
	if strings.Contains(err.Error(), "s3cret-pw") {
		t.Fatalf("the password reached the error: %v", err)
	}
	if _, err := postgres.Open(ctx, postgres.Options{DSN: "postgres://warden:s3cret-pw@127.0.0.1:notaport/test"}); err == nil || strings.Contains(err.Error(), "s3cret-pw") {
		t.Fatalf("unparsable DSN: %v", err)
	}
}

func TestClosedStoreRefuses(t *testing.T) {
	ctx := context.Background()
	dsn, _ := pgtest.Schema(t)
	s := open(t, dsn)
	must(t, s.Close())
	if _, _, err := s.ResolveHandle(ctx, "d"); !errors.Is(err, store.ErrClosed) {
		t.Fatalf("resolve after close: %v", err)
	}
	if err := s.UpdateGrant(ctx, "g", func(g store.Grant) (store.Grant, error) { return g, nil }); !errors.Is(err, store.ErrClosed) {
		t.Fatalf("update after close: %v", err)
	}
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}
