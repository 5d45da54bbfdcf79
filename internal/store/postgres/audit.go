package postgres

import (
	"bytes"
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
	data := make([]string, len(events))
	for i, e := range events {
		raw, err := json.Marshal(e)
		if err != nil {
			return fmt.Errorf("append audit: %w", err)
		}
		data[i] = string(raw)
	}
	return s.appendAudit(ctx, events, data)
}

// AppendAuditLines is AppendAudit for events the trail has already
// encoded, one JSON line each (exactly json.Marshal of the event): the
// group commit's batch is stored without encoding it a second time.
func (s *Store) AppendAuditLines(ctx context.Context, events []store.AuditEvent, lines []byte) error {
	data := make([]string, 0, len(events))
	for len(lines) > 0 {
		i := bytes.IndexByte(lines, '\n')
		if i < 0 {
			i = len(lines)
		}
		data = append(data, string(lines[:i]))
		lines = lines[min(i+1, len(lines)):]
	}
	if len(data) != len(events) {
		return fmt.Errorf("append audit: %d lines for %d events", len(data), len(events))
	}
	return s.appendAudit(ctx, events, data)
}

// appendBatchSQL is a whole group commit in one statement, so one round
// trip and one WAL flush: it moves the head from $1 to $2 (taking its row
// lock) and inserts the rows only if the head was where the batch starts.
// Run outside a transaction block, the statement is its own transaction.
const appendBatchSQL = `WITH head AS (UPDATE audit_head SET seq = $2 WHERE seq = $1 RETURNING seq)
INSERT INTO audit_events (seq, data)
SELECT u.seq, u.data::json FROM head, unnest($3::bigint[], $4::text[]) AS u(seq, data)`

func (s *Store) appendAudit(ctx context.Context, events []store.AuditEvent, data []string) error {
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
	seqs := make([]int64, len(events))
	for i, e := range events {
		if e.Seq != first+uint64(i) {
			return fmt.Errorf("append audit: audit seq %d does not continue the batch at %d", e.Seq, first+uint64(i))
		}
		seqs[i] = int64(e.Seq)
	}
	last := first + uint64(len(events)) - 1
	db, err := s.db()
	if err != nil {
		return fmt.Errorf("append audit: %w", err)
	}
	tag, err := db.Exec(ctx, appendBatchSQL, int64(first-1), int64(last), seqs, data)
	if uniqueViolation(err) {
		// The head and the events disagree: only a hand edit of the
		// tables does that.
		return fmt.Errorf("append audit: audit seq %d..%d collides with stored events: %w", first, last, store.ErrAlreadyExists)
	}
	if err != nil {
		return fmt.Errorf("append audit: %w", err)
	}
	if tag.RowsAffected() == int64(len(events)) {
		return nil
	}
	var head int64
	if err := db.QueryRow(ctx, "SELECT seq FROM audit_head").Scan(&head); err != nil {
		return fmt.Errorf("append audit: %w", err)
	}
	if uint64(head) >= first {
		return fmt.Errorf("append audit: audit seq %d is already stored: %w", first, store.ErrAlreadyExists)
	}
	return fmt.Errorf("append audit: audit seq %d leaves a gap after the stored chain (last %d)", first, head)
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
		// The row lock first, the head's event in a second statement: a
		// SELECT ... FOR UPDATE that waited for another replica's append
		// re-reads the locked row at its new version but the rest of the
		// statement (a join to audit_events) from the snapshot taken before
		// the wait, where that append's events are not visible yet
		// (PostgreSQL "Transaction Isolation", Read Committed). The next
		// statement takes a new snapshot and sees them.
		var seq int64
		if err := tx.QueryRow(ctx, "SELECT seq FROM audit_head FOR UPDATE").Scan(&seq); err != nil {
			return err
		}
		var head store.AuditEvent
		if seq > 0 {
			var raw []byte
			err := tx.QueryRow(ctx, "SELECT data FROM audit_events WHERE seq = $1", seq).Scan(&raw)
			if errors.Is(err, pgx.ErrNoRows) {
				err = store.ErrNotFound
			}
			if err != nil {
				return fmt.Errorf("read audit head %d: %w", seq, err)
			}
			if head, err = decode[store.AuditEvent]("audit event", raw); err != nil {
				return err
			}
		}
		events := chain(head)
		if len(events) == 0 {
			return nil
		}
		seqs := make([]int64, len(events))
		data := make([]string, len(events))
		for i, e := range events {
			if e.Seq != uint64(seq)+uint64(i)+1 {
				return fmt.Errorf("audit seq %d does not continue the chain at %d", e.Seq, seq+int64(i)+1)
			}
			raw, err := json.Marshal(e)
			if err != nil {
				return err
			}
			seqs[i], data[i] = int64(e.Seq), string(raw)
		}
		tag, err := tx.Exec(ctx, appendBatchSQL, seq, seqs[len(seqs)-1], seqs, data)
		if err == nil && tag.RowsAffected() != int64(len(events)) {
			// The head is locked by this transaction: it cannot have moved.
			err = fmt.Errorf("audit head moved from %d under its lock", seq)
		}
		return err
	})
	if err != nil {
		return fmt.Errorf("append audit: %w", err)
	}
	return nil
}
