package postgres

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/warden-mcp/warden/internal/store"
)

// PutLastUse writes the batch in one statement; a stored time only moves
// forward (GREATEST), so batches from several replicas may land in any
// order.
func (s *Store) PutLastUse(ctx context.Context, uses ...store.LastUse) error {
	if len(uses) == 0 {
		return nil
	}
	db, err := s.db()
	if err != nil {
		return err
	}
	grantIDs := make([]string, 0, len(uses))
	servers := make([]string, 0, len(uses))
	times := make([]time.Time, 0, len(uses))
	for _, u := range uses {
		if u.GrantID == "" || u.Server == "" {
			return errors.New("record last use: needs a grant id and a server")
		}
		if !storable(u.GrantID) || !storable(u.Server) {
			continue
		}
		grantIDs, servers, times = append(grantIDs, u.GrantID), append(servers, u.Server), append(times, u.At.UTC())
	}
	// One row per key in the statement: ON CONFLICT cannot touch a row
	// twice, so duplicates in the batch keep their latest time.
	_, err = db.Exec(ctx, `INSERT INTO last_use (grant_id, server, used_at)
SELECT g, sv, max(t) FROM unnest($1::text[], $2::text[], $3::timestamptz[]) AS u(g, sv, t) GROUP BY g, sv
ON CONFLICT (grant_id, server) DO UPDATE SET used_at = GREATEST(last_use.used_at, EXCLUDED.used_at)`, grantIDs, servers, times)
	if err != nil {
		return fmt.Errorf("record last use: %w", err)
	}
	return nil
}

// ListLastUse returns every recorded use.
func (s *Store) ListLastUse(ctx context.Context) ([]store.LastUse, error) {
	db, err := s.db()
	if err != nil {
		return nil, err
	}
	rows, err := db.Query(ctx, "SELECT grant_id, server, used_at FROM last_use ORDER BY grant_id, server")
	if err != nil {
		return nil, fmt.Errorf("list last use: %w", err)
	}
	defer rows.Close()
	var out []store.LastUse
	for rows.Next() {
		var u store.LastUse
		if err := rows.Scan(&u.GrantID, &u.Server, &u.At); err != nil {
			return nil, fmt.Errorf("list last use: %w", err)
		}
		u.At = u.At.UTC()
		out = append(out, u)
	}
	return out, rows.Err()
}
