package postgres

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/warden-mcp/warden/internal/store"
)

// ---- sessions ----

func (s *Store) PutSession(ctx context.Context, kind, id string, value []byte, ttl time.Duration) error {
	if ttl <= 0 {
		return errors.New("session needs a positive ttl")
	}
	db, err := s.db()
	if err != nil {
		return fmt.Errorf("put %s session: %w", kind, err)
	}
	if !storable(kind) || !storable(id) {
		return fmt.Errorf("put session: %w", errUnstorable)
	}
	_, err = db.Exec(ctx, `INSERT INTO sessions (kind, id, expires_at, value) VALUES ($1, $2, $3, $4)
		ON CONFLICT (kind, id) DO UPDATE SET expires_at = EXCLUDED.expires_at, value = EXCLUDED.value`,
		kind, id, s.now().Add(ttl), value)
	if err != nil {
		return fmt.Errorf("put %s session: %w", kind, err)
	}
	return nil
}

func (s *Store) GetSession(ctx context.Context, kind, id string) ([]byte, error) {
	db, err := s.db()
	if err != nil {
		return nil, fmt.Errorf("get %s session: %w", kind, err)
	}
	if !storable(kind) || !storable(id) {
		return nil, fmt.Errorf("get session: %w", store.ErrNotFound)
	}
	var v []byte
	err = db.QueryRow(ctx, "SELECT value FROM sessions WHERE kind = $1 AND id = $2 AND expires_at > $3", kind, id, s.now()).Scan(&v)
	if errors.Is(err, pgx.ErrNoRows) {
		err = store.ErrNotFound
	}
	if err != nil {
		return nil, fmt.Errorf("get %s session: %w", kind, err)
	}
	return v, nil
}

// TakeSession is one DELETE ... RETURNING: PostgreSQL deletes a row once,
// so of any number of concurrent takers in any number of processes exactly
// one gets the value. An expired session is deleted and reported not found.
func (s *Store) TakeSession(ctx context.Context, kind, id string) ([]byte, error) {
	db, err := s.db()
	if err != nil {
		return nil, fmt.Errorf("take %s session: %w", kind, err)
	}
	if !storable(kind) || !storable(id) {
		return nil, fmt.Errorf("take session: %w", store.ErrNotFound)
	}
	var v []byte
	var alive bool
	err = db.QueryRow(ctx, "DELETE FROM sessions WHERE kind = $1 AND id = $2 RETURNING value, expires_at > $3", kind, id, s.now()).Scan(&v, &alive)
	if errors.Is(err, pgx.ErrNoRows) || (err == nil && !alive) {
		err = store.ErrNotFound
	}
	if err != nil {
		return nil, fmt.Errorf("take %s session: %w", kind, err)
	}
	return v, nil
}

// ---- consents ----

func (s *Store) PutConsent(ctx context.Context, c store.Consent) error {
	db, err := s.db()
	if err != nil {
		return fmt.Errorf("put consent: %w", err)
	}
	if !storable(c.Subject) || !storable(c.ClientID) {
		return fmt.Errorf("put consent: %w", errUnstorable)
	}
	data, err := json.Marshal(c)
	if err != nil {
		return fmt.Errorf("put consent: %w", err)
	}
	_, err = db.Exec(ctx, `INSERT INTO consents (subject, client_id, data) VALUES ($1, $2, $3)
		ON CONFLICT (subject, client_id) DO UPDATE SET data = EXCLUDED.data`, c.Subject, c.ClientID, data)
	if err != nil {
		return fmt.Errorf("put consent: %w", err)
	}
	return nil
}

func (s *Store) GetConsent(ctx context.Context, subject, clientID string) (store.Consent, error) {
	db, err := s.db()
	if err != nil {
		return store.Consent{}, fmt.Errorf("get consent: %w", err)
	}
	if !storable(subject) || !storable(clientID) {
		return store.Consent{}, fmt.Errorf("get consent: %w", store.ErrNotFound)
	}
	var raw []byte
	err = db.QueryRow(ctx, "SELECT data FROM consents WHERE subject = $1 AND client_id = $2", subject, clientID).Scan(&raw)
	if errors.Is(err, pgx.ErrNoRows) {
		err = store.ErrNotFound
	}
	if err != nil {
		return store.Consent{}, fmt.Errorf("get consent: %w", err)
	}
	c, err := decode[store.Consent]("consent", raw)
	if err != nil {
		return store.Consent{}, fmt.Errorf("get consent: %w", err)
	}
	return c, nil
}

// DeleteConsents deletes the consents of subject for clientID; an empty
// argument matches every value.
func (s *Store) DeleteConsents(ctx context.Context, subject, clientID string) (int, error) {
	db, err := s.db()
	if err != nil {
		return 0, fmt.Errorf("delete consents: %w", err)
	}
	if !storable(subject) || !storable(clientID) {
		return 0, nil // nothing with such a key can be stored
	}
	tag, err := db.Exec(ctx, "DELETE FROM consents WHERE ($1 = '' OR subject = $1) AND ($2 = '' OR client_id = $2)", subject, clientID)
	if err != nil {
		return 0, fmt.Errorf("delete consents: %w", err)
	}
	return int(tag.RowsAffected()), nil
}
