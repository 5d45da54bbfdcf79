package postgres

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"hash/fnv"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/warden-mcp/warden/internal/store"
)

// Lock takes the cross-replica lock named key and holds it until unlock
// is called: a PostgreSQL session advisory lock (pg_advisory_lock, keyed
// by a hash of the schema and key) on a connection opened for it, so a
// waiting or holding lock takes no slot of the pool and a replica that
// dies releases it with its connection. Used for single flight of
// refreshes that must happen once per deployment (upstream IdP and
// provider tokens). A ctx that ends while waiting returns its error.
func (s *Store) Lock(ctx context.Context, key string) (unlock func(), err error) {
	if s.closed.Load() {
		return nil, store.ErrClosed
	}
	conn, err := pgx.ConnectConfig(ctx, s.pool.Config().ConnConfig.Copy())
	if err != nil {
		return nil, fmt.Errorf("lock: connect: %w", err)
	}
	id := lockID(s.schema, key)
	if _, err := conn.Exec(ctx, "SELECT pg_advisory_lock($1)", id); err != nil {
		closeConn(conn)
		return nil, fmt.Errorf("lock: %w", err)
	}
	var once sync.Once
	return func() {
		once.Do(func() {
			// Closing the session releases the lock whether or not the
			// unlock statement gets through.
			cctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			_, _ = conn.Exec(cctx, "SELECT pg_advisory_unlock($1)", id)
			_ = conn.Close(cctx)
		})
	}, nil
}

func closeConn(c *pgx.Conn) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	_ = c.Close(ctx)
}

// lockID is the advisory lock key of key in schema. Advisory locks are
// shared by every schema of a database: the schema is part of the hash.
func lockID(schema, key string) int64 {
	h := fnv.New64a()
	_, _ = h.Write([]byte("warden-lock/" + schema + "/" + key))
	return int64(h.Sum64())
}

// Allow takes one event from key's rate limit in bucket, counted for
// every replica on this schema: at most burst events at once, refilled
// evenly over every (a token bucket, kept as a GCRA theoretical arrival
// time, so one conditional upsert decides). now is the caller's clock.
func (s *Store) Allow(ctx context.Context, bucket, key string, burst int, every time.Duration, now time.Time) (bool, error) {
	db, err := s.db()
	if err != nil {
		return false, fmt.Errorf("rate limit: %w", err)
	}
	if burst <= 0 || every <= 0 {
		return false, errors.New("rate limit: burst and period must be positive")
	}
	if !storable(key) {
		sum := sha256.Sum256([]byte(key))
		key = "sha256:" + hex.EncodeToString(sum[:])
	}
	interval := max(every.Microseconds()/int64(burst), 1)
	var tat int64
	err = db.QueryRow(ctx, `INSERT INTO rate_limits AS r (bucket, key, tat) VALUES ($1, $2, $3::bigint + $4::bigint)
ON CONFLICT (bucket, key) DO UPDATE SET tat = GREATEST(r.tat, $3::bigint) + $4::bigint
WHERE GREATEST(r.tat, $3::bigint) + $4::bigint - $3::bigint <= $5::bigint
RETURNING tat`, bucket, key, now.UnixMicro(), interval, interval*int64(burst)).Scan(&tat)
	if errors.Is(err, pgx.ErrNoRows) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("rate limit: %w", err)
	}
	return true, nil
}

// GetBlob returns the shared blob name (a key set every replica uses),
// or ErrNotFound.
func (s *Store) GetBlob(ctx context.Context, name string) ([]byte, error) {
	db, err := s.db()
	if err != nil {
		return nil, fmt.Errorf("get blob %q: %w", name, err)
	}
	var data []byte
	err = db.QueryRow(ctx, "SELECT data FROM shared_blobs WHERE name = $1", name).Scan(&data)
	if errors.Is(err, pgx.ErrNoRows) {
		err = store.ErrNotFound
	}
	if err != nil {
		return nil, fmt.Errorf("get blob %q: %w", name, err)
	}
	return data, nil
}

// UpdateBlob replaces blob name with what fn makes of it (cur is nil
// when there is none), under the row's lock: of replicas updating at once
// each sees the one before's result. fn's error aborts and is returned.
func (s *Store) UpdateBlob(ctx context.Context, name string, fn func(cur []byte) ([]byte, error)) error {
	for attempt := 0; ; attempt++ {
		inserted := true
		err := s.inTx(ctx, func(tx pgx.Tx) error {
			var cur []byte
			err := tx.QueryRow(ctx, "SELECT data FROM shared_blobs WHERE name = $1 FOR UPDATE", name).Scan(&cur)
			exists := err == nil
			if err != nil && !errors.Is(err, pgx.ErrNoRows) {
				return err
			}
			next, err := fn(cur)
			if err != nil {
				return err
			}
			if exists {
				_, err = tx.Exec(ctx, "UPDATE shared_blobs SET data = $2, version = version + 1 WHERE name = $1", name, next)
				return err
			}
			tag, err := tx.Exec(ctx, "INSERT INTO shared_blobs (name, version, data) VALUES ($1, 1, $2) ON CONFLICT (name) DO NOTHING", name, next)
			inserted = err == nil && tag.RowsAffected() == 1
			return err
		})
		if err != nil {
			return fmt.Errorf("update blob %q: %w", name, err)
		}
		if inserted {
			return nil
		}
		if attempt >= maxRetries {
			return fmt.Errorf("update blob %q: still conflicting after %d attempts", name, attempt+1)
		}
		// Another replica created it first: update what it wrote.
	}
}
