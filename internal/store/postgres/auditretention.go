package postgres

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math"

	"github.com/warden-mcp/warden/internal/store"
)

// PutAuditCheckpoint stores a signed checkpoint; a second one for the same
// seq is ErrAlreadyExists.
func (s *Store) PutAuditCheckpoint(ctx context.Context, c store.AuditCheckpoint) error {
	if c.Seq == 0 || c.Hash == "" || c.JWS == "" {
		return errors.New("put audit checkpoint: seq, hash and jws are required")
	}
	if c.Seq > math.MaxInt64 {
		return errors.New("put audit checkpoint: seq out of range")
	}
	raw, err := json.Marshal(c)
	if err != nil {
		return fmt.Errorf("put audit checkpoint: %w", err)
	}
	db, err := s.db()
	if err != nil {
		return fmt.Errorf("put audit checkpoint: %w", err)
	}
	_, err = db.Exec(ctx, "INSERT INTO audit_checkpoints (seq, data) VALUES ($1, $2)", int64(c.Seq), raw)
	if uniqueViolation(err) {
		return fmt.Errorf("put audit checkpoint %d: %w", c.Seq, store.ErrAlreadyExists)
	}
	if err != nil {
		return fmt.Errorf("put audit checkpoint: %w", err)
	}
	return nil
}

// ListAuditCheckpoints returns every checkpoint, newest first.
func (s *Store) ListAuditCheckpoints(ctx context.Context) ([]store.AuditCheckpoint, error) {
	out, err := list[store.AuditCheckpoint](ctx, s, "audit checkpoint", "SELECT data FROM audit_checkpoints ORDER BY seq DESC")
	if err != nil {
		return nil, fmt.Errorf("list audit checkpoints: %w", err)
	}
	return out, nil
}

// PruneAudit deletes the events with seq <= through, except the newest
// (the head the next append continues from).
func (s *Store) PruneAudit(ctx context.Context, through uint64) (int, error) {
	db, err := s.db()
	if err != nil {
		return 0, fmt.Errorf("prune audit: %w", err)
	}
	tag, err := db.Exec(ctx, "DELETE FROM audit_events WHERE seq <= $1 AND seq < (SELECT seq FROM audit_head)", int64(min(through, math.MaxInt64)))
	if err != nil {
		return 0, fmt.Errorf("prune audit: %w", err)
	}
	return int(tag.RowsAffected()), nil
}
