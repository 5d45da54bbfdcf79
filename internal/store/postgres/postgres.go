// Package postgres is the PostgreSQL backend of internal/store, for Warden
// replicas that share one database. It keeps the records as the same JSON
// documents the Badger backend stores, beside the columns its queries
// filter on, and passes the same conformance suite (storetest).
//
// Schema migrations are embedded and applied by goose when the store opens,
// under a session advisory lock, so replicas starting together migrate
// once.
//
// Every read goes to the database: there is no cache in front of it. A
// cache is exact only when every write to what it holds goes through it,
// which no single replica can see here (see internal/store/hot.go for the
// Badger one, and docs/ARCHITECTURE.md).
package postgres

import (
	"context"
	"database/sql"
	"embed"
	"errors"
	"fmt"
	"hash/fnv"
	"io/fs"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/jackc/pgx/v5/stdlib"
	"github.com/pressly/goose/v3"
	"github.com/pressly/goose/v3/lock"

	"github.com/warden-mcp/warden/internal/store"
)

//go:embed migrations/*.sql
var migrations embed.FS

// versionTable is goose's bookkeeping table, in the store's schema.
const versionTable = "warden_schema_version"

// Options configure the store.
type Options struct {
	// DSN is a libpq connection string or postgres:// URL. A search_path
	// parameter selects the schema (it must exist); the default is the
	// user's default schema, normally public.
	DSN string
	// MaxConns bounds the pool; 0 keeps pgx's default (4, or the number of
	// CPUs if more).
	MaxConns int
	// SweepInterval is how often rows past their expiry are deleted. Reads
	// never return them either way; the sweep only reclaims space. 0 means
	// one minute, negative disables the sweep.
	SweepInterval time.Duration
	// MigrationLockTimeout bounds the wait for another process that is
	// migrating the same schema. 0 means two minutes.
	MigrationLockTimeout time.Duration
	Logger               *slog.Logger
	// Now is the clock used for expiry; time.Now when nil.
	Now func() time.Time
	// Replica, when set, makes this Store one replica of several: hot
	// cache, change notifications and leases (replica.go). Nil for
	// commands that only read or copy (store migrate).
	Replica *ReplicaOptions
}

// Store is the PostgreSQL backend. It is safe for concurrent use, and any
// number of Stores, in any number of processes, may share one schema.
type Store struct {
	pool   *pgxpool.Pool
	now    func() time.Time
	log    *slog.Logger
	closed atomic.Bool

	stopSweep context.CancelFunc
	swept     sync.WaitGroup

	// schema is the schema the store lives in, channel its NOTIFY channel
	// and replica the hot cache protocol (nil without Options.Replica).
	schema, channel string
	replica         *replica
}

var (
	_ store.Store  = (*Store)(nil)
	_ store.Walker = (*Store)(nil)
)

// Open connects, applies pending schema migrations and starts the sweep
// of expired rows.
func Open(ctx context.Context, o Options) (*Store, error) {
	if o.DSN == "" {
		return nil, errors.New("postgres store: no DSN")
	}
	cfg, err := pgxpool.ParseConfig(o.DSN)
	if err != nil {
		// pgx redacts the password from its parse errors.
		return nil, fmt.Errorf("postgres store: %w", err)
	}
	if o.MaxConns > 0 {
		cfg.MaxConns = int32(min(o.MaxConns, 1<<20))
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		return nil, fmt.Errorf("postgres store: %w", err)
	}
	if err := pool.Ping(ctx); err != nil {
		pool.Close()
		return nil, fmt.Errorf("postgres store: connect to %s:%d as %s: %w", cfg.ConnConfig.Host, cfg.ConnConfig.Port, cfg.ConnConfig.User, err)
	}
	s := &Store{pool: pool, now: o.Now, log: o.Logger}
	if err := s.migrate(ctx, o); err != nil {
		pool.Close()
		return nil, err
	}
	if o.Replica != nil {
		s.startReplica(*o.Replica)
	}
	sctx, stop := context.WithCancel(context.Background())
	s.stopSweep = stop
	if o.SweepInterval >= 0 {
		every := o.SweepInterval
		if every == 0 {
			every = time.Minute
		}
		s.swept.Add(1)
		go s.sweepEvery(sctx, every)
	}
	return s, nil
}

// migrate brings the schema to the newest embedded version. The advisory
// lock is keyed by the schema, so replicas of one deployment wait for each
// other while deployments in other schemas of the same database do not.
func (s *Store) migrate(ctx context.Context, o Options) error {
	var cur *string
	if err := s.pool.QueryRow(ctx, "SELECT current_schema()").Scan(&cur); err != nil {
		return fmt.Errorf("postgres store: read current schema: %w", err)
	}
	if cur == nil {
		return errors.New("postgres store: no schema selected: the search_path names no existing schema")
	}
	schema := *cur
	s.schema, s.channel = schema, channelFor(schema)
	h := fnv.New64a()
	_, _ = h.Write([]byte("warden-migrations/" + schema))
	wait := o.MigrationLockTimeout
	if wait <= 0 {
		wait = 2 * time.Minute
	}
	locker, err := lock.NewPostgresSessionLocker(lock.WithLockID(int64(h.Sum64())), lock.WithLockTimeout(1, uint64(max(wait/time.Second, 1))))
	if err != nil {
		return fmt.Errorf("postgres store: migration lock: %w", err)
	}
	sub, err := fs.Sub(migrations, "migrations")
	if err != nil {
		return err
	}
	db := stdlib.OpenDBFromPool(s.pool)
	defer db.Close()
	p, err := goose.NewProvider(goose.DialectPostgres, db, sub,
		goose.WithSessionLocker(locker), goose.WithTableName(versionTable),
		goose.WithDisableGlobalRegistry(true), goose.WithSlog(o.Logger))
	if err != nil {
		return fmt.Errorf("postgres store: migrations: %w", err)
	}
	if err := refuseNewer(ctx, db, p); err != nil {
		return err
	}
	results, err := p.Up(ctx)
	if err != nil {
		return fmt.Errorf("postgres store: apply migrations in schema %q: %w", schema, err)
	}
	for _, r := range results {
		s.log.Info("applied store migration", "version", r.Source.Version, "schema", schema, "took", r.Duration)
	}
	return nil
}

// refuseNewer stops an older Warden from running on a schema a newer one
// migrated: it would not know the columns and rules that version relies
// on.
func refuseNewer(ctx context.Context, db *sql.DB, p *goose.Provider) error {
	var exists bool
	if err := db.QueryRowContext(ctx, "SELECT to_regclass($1) IS NOT NULL", versionTable).Scan(&exists); err != nil {
		return fmt.Errorf("postgres store: read schema version: %w", err)
	}
	if !exists {
		return nil
	}
	current, err := p.GetDBVersion(ctx)
	if err != nil {
		return fmt.Errorf("postgres store: read schema version: %w", err)
	}
	sources := p.ListSources()
	known := sources[len(sources)-1].Version
	if current > known {
		return fmt.Errorf("postgres store: schema version %d is newer than this Warden knows (%d): run the newer Warden", current, known)
	}
	return nil
}

// Close stops the sweep and closes the pool; later calls fail with
// store.ErrClosed.
func (s *Store) Close() error {
	if s.closed.Swap(true) {
		return nil
	}
	s.stopSweep()
	s.swept.Wait()
	if s.replica != nil {
		s.replica.close()
	}
	s.pool.Close()
	return nil
}

func (s *Store) sweepEvery(ctx context.Context, every time.Duration) {
	defer s.swept.Done()
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			n, err := s.Sweep(ctx)
			if err != nil && ctx.Err() == nil {
				s.log.Warn("deleting expired store rows", "err", err)
			} else if n > 0 {
				s.log.Debug("deleted expired store rows", "rows", n)
			}
		}
	}
}

// Sweep deletes handles, sessions and clients past their expiry and
// returns how many rows went. Several replicas sweeping at once is
// harmless: a row is deleted once.
func (s *Store) Sweep(ctx context.Context) (int64, error) {
	now := s.now()
	var total int64
	for _, q := range []string{
		"DELETE FROM handles WHERE expires_at <= $1",
		"DELETE FROM sessions WHERE expires_at <= $1",
		"DELETE FROM clients WHERE expires_at <= $1",
	} {
		tag, err := s.pool.Exec(ctx, q, now)
		if err != nil {
			return total, fmt.Errorf("sweep: %w", err)
		}
		total += tag.RowsAffected()
	}
	// A rate limit cell whose arrival time has passed is a full bucket,
	// which is what a missing row means too.
	tag, err := s.pool.Exec(ctx, "DELETE FROM rate_limits WHERE tat < $1", now.UnixMicro())
	if err != nil {
		return total, fmt.Errorf("sweep: %w", err)
	}
	return total + tag.RowsAffected(), nil
}

// maxRetries bounds the retries of a transaction PostgreSQL aborted to
// resolve a conflict.
const maxRetries = 16

// inTx runs fn in a read-committed transaction, again if PostgreSQL
// aborted it for a serialization failure or a deadlock. An error from fn
// is returned as it is.
func (s *Store) inTx(ctx context.Context, fn func(pgx.Tx) error) error {
	if s.closed.Load() {
		return store.ErrClosed
	}
	for attempt := 0; ; attempt++ {
		err := pgx.BeginFunc(ctx, s.pool, fn)
		if attempt < maxRetries && retryable(err) {
			continue
		}
		return err
	}
}

func retryable(err error) bool {
	var pe *pgconn.PgError
	return errors.As(err, &pe) && (pe.Code == "40001" || pe.Code == "40P01")
}

// uniqueViolation reports whether err is a duplicate key.
func uniqueViolation(err error) bool {
	var pe *pgconn.PgError
	return errors.As(err, &pe) && pe.Code == "23505"
}

// db returns the pool, or ErrClosed after Close.
func (s *Store) db() (*pgxpool.Pool, error) {
	if s.closed.Load() {
		return nil, store.ErrClosed
	}
	return s.pool, nil
}
