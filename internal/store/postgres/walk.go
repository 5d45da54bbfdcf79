package postgres

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"

	"github.com/jackc/pgx/v5"

	"github.com/warden-mcp/warden/internal/store"
)

// Walk calls fn for every live record, table by table in key order, from
// one repeatable-read snapshot.
func (s *Store) Walk(ctx context.Context, fn func(store.Record) error) error {
	if s.closed.Load() {
		return fmt.Errorf("walk: %w", store.ErrClosed)
	}
	now := s.now()
	return pgx.BeginTxFunc(ctx, s.pool, pgx.TxOptions{IsoLevel: pgx.RepeatableRead, AccessMode: pgx.ReadOnly}, func(tx pgx.Tx) error {
		each := func(query string, args []any, decode func(pgx.Rows) (store.Record, error)) error {
			rows, err := tx.Query(ctx, query, args...)
			if err != nil {
				return err
			}
			defer rows.Close()
			for rows.Next() {
				r, err := decode(rows)
				if err != nil {
					return err
				}
				if err := fn(r); err != nil {
					return err
				}
			}
			return rows.Err()
		}
		data := func(what string, set func([]byte, *store.Record) error) func(pgx.Rows) (store.Record, error) {
			return func(rows pgx.Rows) (store.Record, error) {
				var raw []byte
				var r store.Record
				if err := rows.Scan(&raw); err != nil {
					return r, err
				}
				if err := set(raw, &r); err != nil {
					return r, fmt.Errorf("decode stored %s: %w", what, err)
				}
				return r, nil
			}
		}
		steps := []struct {
			query  string
			args   []any
			decode func(pgx.Rows) (store.Record, error)
		}{
			{clients.listSQL, []any{now}, data("client", func(raw []byte, r *store.Record) error {
				r.Client = new(store.Client)
				return json.Unmarshal(raw, r.Client)
			})},
			{grants.listSQL, nil, data("grant", func(raw []byte, r *store.Record) error {
				r.Grant = new(store.Grant)
				return json.Unmarshal(raw, r.Grant)
			})},
			{handles.listSQL, []any{now}, data("handle", func(raw []byte, r *store.Record) error {
				r.Handle = new(store.Handle)
				return json.Unmarshal(raw, r.Handle)
			})},
			{servers.listSQL, nil, data("server", func(raw []byte, r *store.Record) error {
				r.Server = new(store.Server)
				return json.Unmarshal(raw, r.Server)
			})},
			{"SELECT kind, id, expires_at, value FROM sessions WHERE expires_at > $1 ORDER BY kind, id", []any{now}, func(rows pgx.Rows) (store.Record, error) {
				var ss store.SessionRecord
				err := rows.Scan(&ss.Kind, &ss.ID, &ss.ExpiresAt, &ss.Value)
				return store.Record{Session: &ss}, err
			}},
			{"SELECT data FROM consents ORDER BY subject, client_id", nil, data("consent", func(raw []byte, r *store.Record) error {
				r.Consent = new(store.Consent)
				return json.Unmarshal(raw, r.Consent)
			})},
			// In Badger's walk order: tool pins before providers and accounts.
			{toolPins.listSQL, nil, data("tool pin", func(raw []byte, r *store.Record) error {
				r.ToolPin = new(store.ToolPin)
				return json.Unmarshal(raw, r.ToolPin)
			})},
			{providers.listSQL, nil, data("provider", func(raw []byte, r *store.Record) error {
				r.Provider = new(store.Provider)
				return json.Unmarshal(raw, r.Provider)
			})},
			{"SELECT data FROM accounts ORDER BY provider, subject", nil, data("account", func(raw []byte, r *store.Record) error {
				r.Account = new(store.Account)
				return json.Unmarshal(raw, r.Account)
			})},
		}
		for _, st := range steps {
			if err := each(st.query, st.args, st.decode); err != nil {
				return fmt.Errorf("walk: %w", err)
			}
		}
		return nil
	})
}

// Source is what Restore copies from: every live record and the audit
// trail (a Badger store).
type Source interface {
	store.Walker
	ListAudit(ctx context.Context, from uint64, limit int) ([]store.AuditEvent, error)
	// ListAuditCheckpoints: a pruned trail verifies on the target only
	// from its signed checkpoints (audit.VerifyTrusted).
	ListAuditCheckpoints(ctx context.Context) ([]store.AuditCheckpoint, error)
}

// ErrNotEmpty is returned by Restore into a store that holds anything.
var ErrNotEmpty = errors.New("target store is not empty")

// restoreBatch is how many inserts Restore sends in one round trip.
const restoreBatch = 500

// Restore copies every live record of src and its whole audit trail into
// s, which must be empty (ErrNotEmpty otherwise), in one transaction:
// either everything lands or nothing does, so a failed copy can simply be
// run again. Records keep their versions; sessions keep their absolute
// expiry. The audit events are stored as they are, so the chain verifies
// on s exactly as it did on src.
func (s *Store) Restore(ctx context.Context, src Source) (store.Counts, error) {
	var n store.Counts
	if s.closed.Load() {
		return n, fmt.Errorf("restore: %w", store.ErrClosed)
	}
	err := pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		// Writers wait until the copy commits; readers see the empty store
		// until then.
		if _, err := tx.Exec(ctx, "LOCK TABLE clients, grants, handles, servers, sessions, consents, providers, accounts, tool_pins, audit_events, audit_head, audit_checkpoints IN EXCLUSIVE MODE"); err != nil {
			return err
		}
		var used bool
		err := tx.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM clients) OR EXISTS (SELECT 1 FROM grants) OR EXISTS (SELECT 1 FROM handles)
			OR EXISTS (SELECT 1 FROM servers) OR EXISTS (SELECT 1 FROM sessions) OR EXISTS (SELECT 1 FROM consents)
			OR EXISTS (SELECT 1 FROM providers) OR EXISTS (SELECT 1 FROM accounts) OR EXISTS (SELECT 1 FROM tool_pins) OR EXISTS (SELECT 1 FROM audit_events) OR EXISTS (SELECT 1 FROM audit_checkpoints) OR (SELECT seq FROM audit_head) > 0`).Scan(&used)
		if err != nil {
			return err
		}
		if used {
			return ErrNotEmpty
		}
		b := &pgx.Batch{}
		flush := func() error {
			if b.Len() == 0 {
				return nil
			}
			err := tx.SendBatch(ctx, b).Close()
			b = &pgx.Batch{}
			return err
		}
		err = src.Walk(ctx, func(r store.Record) error {
			q, args, err := restoreRow(r)
			if err != nil {
				return err
			}
			b.Queue(q, args...)
			n.Add(r)
			if b.Len() >= restoreBatch {
				return flush()
			}
			return nil
		})
		if err == nil {
			err = flush()
		}
		if err != nil {
			return fmt.Errorf("copy records: %w", err)
		}
		head, err := restoreAudit(ctx, tx, src)
		if err != nil {
			return fmt.Errorf("copy audit trail: %w", err)
		}
		n.AuditEvents = int(head.count)
		if _, err = tx.Exec(ctx, "UPDATE audit_head SET seq = $1", int64(head.last)); err != nil {
			return err
		}
		cps, err := src.ListAuditCheckpoints(ctx)
		if err != nil {
			return fmt.Errorf("copy audit checkpoints: %w", err)
		}
		for _, c := range cps {
			raw, err := json.Marshal(c)
			if err != nil {
				return fmt.Errorf("copy audit checkpoint %d: %w", c.Seq, err)
			}
			if _, err := tx.Exec(ctx, "INSERT INTO audit_checkpoints (seq, data) VALUES ($1, $2)", int64(c.Seq), raw); err != nil {
				return fmt.Errorf("copy audit checkpoint %d: %w", c.Seq, err)
			}
		}
		n.AuditCheckpoints = len(cps)
		return nil
	})
	if err != nil {
		return store.Counts{}, fmt.Errorf("restore: %w", err)
	}
	return n, nil
}

// restoreRow is the insert of one record, version included.
func restoreRow(r store.Record) (string, []any, error) {
	var args []any
	var err error
	switch {
	case r.Client != nil:
		args, err = clients.row(*r.Client)
		return clients.restoreSQL, args, err
	case r.Grant != nil:
		args, err = grants.row(*r.Grant)
		return grants.restoreSQL, args, err
	case r.Handle != nil:
		args, err = handles.row(*r.Handle)
		return handles.restoreSQL, args, err
	case r.Server != nil:
		args, err = servers.row(*r.Server)
		return servers.restoreSQL, args, err
	case r.Session != nil:
		ss := r.Session
		return "INSERT INTO sessions (kind, id, expires_at, value) VALUES ($1, $2, $3, $4)", []any{ss.Kind, ss.ID, ss.ExpiresAt, ss.Value}, nil
	case r.Consent != nil:
		raw, err := json.Marshal(r.Consent)
		return "INSERT INTO consents (subject, client_id, data) VALUES ($1, $2, $3)", []any{r.Consent.Subject, r.Consent.ClientID, raw}, err
	case r.Provider != nil:
		args, err = providers.row(*r.Provider)
		return providers.restoreSQL, args, err
	case r.Account != nil:
		a := r.Account
		raw, err := json.Marshal(a)
		return "INSERT INTO accounts (provider, subject, version, data) VALUES ($1, $2, $3, $4)", []any{a.Provider, a.Subject, int64(a.Version), raw}, err
	case r.ToolPin != nil:
		args, err = toolPins.row(*r.ToolPin)
		return toolPins.restoreSQL, args, err
	}
	return "", nil, errors.New("empty record")
}

type auditCopy struct{ count, last uint64 }

// restoreAudit copies src's trail page by page. The first stored event is
// the anchor, as audit.Verify takes it; after it every seq must follow
// the one before.
func restoreAudit(ctx context.Context, tx pgx.Tx, src Source) (auditCopy, error) {
	var c auditCopy
	const page = 1000
	from := uint64(0)
	for {
		evs, err := src.ListAudit(ctx, from, page)
		if err != nil {
			return c, err
		}
		rows := make([][]any, len(evs))
		for i, e := range evs {
			if c.count > 0 && e.Seq != c.last+1 {
				return c, fmt.Errorf("source trail jumps from seq %d to %d", c.last, e.Seq)
			}
			raw, err := json.Marshal(e)
			if err != nil {
				return c, err
			}
			rows[i] = []any{int64(e.Seq), raw}
			c.count++
			c.last = e.Seq
		}
		if len(rows) > 0 {
			if _, err := tx.CopyFrom(ctx, pgx.Identifier{"audit_events"}, []string{"seq", "data"}, pgx.CopyFromRows(rows)); err != nil {
				return c, err
			}
		}
		if len(evs) < page {
			return c, nil
		}
		from = c.last + 1
	}
}
