package postgres

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math"

	"github.com/jackc/pgx/v5"

	"github.com/warden-mcp/warden/internal/store"
)

// AppendAudit stores events that continue the chain exactly. The head row
// is the serialization point: the conditional UPDATE takes its row lock,
// so concurrent appenders in every process queue on it, and once the one
// before has committed PostgreSQL re-checks the condition against the new
// head. Of two appenders holding the same next seq, one lands and the
// other gets ErrAlreadyExists; no gap and no duplicate can be stored.
//
// A row lock on a table in the store's own schema was chosen over an
// advisory lock: its scope is exactly this trail (advisory lock keys are
// shared by every schema of the database), and it is released with the
// transaction whatever happens to the connection.
func (s *Store) AppendAudit(ctx context.Context, events ...store.AuditEvent) error {
	if len(events) == 0 {
		return nil
	}
	first := events[0].Seq
	if first == 0 {
		return errors.New("append audit: audit seq starts at 1")
	}
	if first > math.MaxInt64-uint64(len(events)) {
		return errors.New("append audit: audit seq out of range")
	}
	rows := make([][]any, len(events))
	for i, e := range events {
		if e.Seq != first+uint64(i) {
			return fmt.Errorf("append audit: audit seq %d does not continue the batch at %d", e.Seq, first+uint64(i))
		}
		raw, err := json.Marshal(e)
		if err != nil {
			return fmt.Errorf("append audit: %w", err)
		}
		rows[i] = []any{int64(e.Seq), raw}
	}
	last := first + uint64(len(events)) - 1
	err := s.inTx(ctx, func(tx pgx.Tx) error {
		tag, err := tx.Exec(ctx, "UPDATE audit_head SET seq = $2 WHERE seq = $1", int64(first-1), int64(last))
		if err != nil {
			return err
		}
		if tag.RowsAffected() == 0 {
			var head int64
			if err := tx.QueryRow(ctx, "SELECT seq FROM audit_head").Scan(&head); err != nil {
				return err
			}
			if uint64(head) >= first {
				return fmt.Errorf("audit seq %d is already stored: %w", first, store.ErrAlreadyExists)
			}
			return fmt.Errorf("audit seq %d leaves a gap after the stored chain (last %d)", first, head)
		}
		_, err = tx.CopyFrom(ctx, pgx.Identifier{"audit_events"}, []string{"seq", "data"}, pgx.CopyFromRows(rows))
		if uniqueViolation(err) {
			// The head and the events disagree: only a hand edit of the
			// tables does that.
			return fmt.Errorf("audit seq %d..%d collides with stored events: %w", first, last, store.ErrAlreadyExists)
		}
		return err
	})
	if err != nil {
		return fmt.Errorf("append audit: %w", err)
	}
	return nil
}

// ListAudit returns up to limit events with Seq >= from (all when limit is
// 0 or less), oldest first.
func (s *Store) ListAudit(ctx context.Context, from uint64, limit int) ([]store.AuditEvent, error) {
	var lim any // NULL: no limit
	if limit > 0 {
		lim = limit
	}
	out, err := list[store.AuditEvent](ctx, s, "audit event", "SELECT data FROM audit_events WHERE seq >= $1 ORDER BY seq LIMIT $2", int64(min(from, math.MaxInt64)), lim)
	if err != nil {
		return nil, fmt.Errorf("list audit: %w", err)
	}
	return out, nil
}

// LastAudit returns the newest event, or ErrNotFound on an empty trail.
func (s *Store) LastAudit(ctx context.Context) (store.AuditEvent, error) {
	db, err := s.db()
	if err != nil {
		return store.AuditEvent{}, fmt.Errorf("last audit event: %w", err)
	}
	var raw []byte
	err = db.QueryRow(ctx, "SELECT data FROM audit_events ORDER BY seq DESC LIMIT 1").Scan(&raw)
	if errors.Is(err, pgx.ErrNoRows) {
		err = store.ErrNotFound
	}
	if err != nil {
		return store.AuditEvent{}, fmt.Errorf("last audit event: %w", err)
	}
	e, err := decode[store.AuditEvent]("audit event", raw)
	if err != nil {
		return store.AuditEvent{}, fmt.Errorf("last audit event: %w", err)
	}
	return e, nil
}

// AppendAuditChained appends n events chained onto the head as it is
// under the audit_head row lock: chain gets the newest stored event (zero
// on an empty trail) and returns the events to store, numbered from its
// Seq+1. Writers in several replicas queue on the lock instead of racing
// and re-chaining, so the cost of a shared trail is a lock wait, not a
// failed write.
func (s *Store) AppendAuditChained(ctx context.Context, chain func(head store.AuditEvent) []store.AuditEvent) error {
	err := s.inTx(ctx, func(tx pgx.Tx) error {
		var seq int64
		if err := tx.QueryRow(ctx, "SELECT seq FROM audit_head FOR UPDATE").Scan(&seq); err != nil {
			return err
		}
		var head store.AuditEvent
		if seq > 0 {
			var raw []byte
			if err := tx.QueryRow(ctx, "SELECT data FROM audit_events WHERE seq = $1", seq).Scan(&raw); err != nil {
				return fmt.Errorf("read audit head %d: %w", seq, err)
			}
			var err error
			if head, err = decode[store.AuditEvent]("audit event", raw); err != nil {
				return err
			}
		}
		events := chain(head)
		if len(events) == 0 {
			return nil
		}
		rows := make([][]any, len(events))
		for i, e := range events {
			if e.Seq != uint64(seq)+uint64(i)+1 {
				return fmt.Errorf("audit seq %d does not continue the chain at %d", e.Seq, seq+int64(i)+1)
			}
			raw, err := json.Marshal(e)
			if err != nil {
				return err
			}
			rows[i] = []any{int64(e.Seq), raw}
		}
		if _, err := tx.CopyFrom(ctx, pgx.Identifier{"audit_events"}, []string{"seq", "data"}, pgx.CopyFromRows(rows)); err != nil {
			return err
		}
		_, err := tx.Exec(ctx, "UPDATE audit_head SET seq = $1", int64(events[len(events)-1].Seq))
		return err
	})
	if err != nil {
		return fmt.Errorf("append audit: %w", err)
	}
	return nil
}
