package postgres

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"

	"github.com/jackc/pgx/v5"

	"github.com/warden-mcp/warden/internal/store"
)

var providers = (&table[store.Provider]{
	what: "provider", name: "providers", key: "name",
	values:  func(store.Provider) []any { return nil },
	keyOf:   func(p store.Provider) string { return p.Name },
	setKey:  func(p *store.Provider, k string) { p.Name = k },
	version: func(p *store.Provider) *uint64 { return &p.Version },
}).build()

// ---- providers ----

func (s *Store) CreateProvider(ctx context.Context, p store.Provider) error {
	if p.Name == "" {
		return errors.New("provider name is empty")
	}
	if err := create(ctx, s, providers, p); err != nil {
		return fmt.Errorf("create provider %q: %w", p.Name, err)
	}
	return nil
}

func (s *Store) GetProvider(ctx context.Context, name string) (store.Provider, error) {
	p, err := get(ctx, s, providers, name)
	if err != nil {
		return store.Provider{}, fmt.Errorf("get provider %q: %w", name, err)
	}
	return p, nil
}

func (s *Store) UpdateProvider(ctx context.Context, name string, fn func(store.Provider) (store.Provider, error)) error {
	if err := update(ctx, s, providers, name, fn); err != nil {
		return fmt.Errorf("update provider %q: %w", name, err)
	}
	return nil
}

func (s *Store) DeleteProvider(ctx context.Context, name string) error {
	if err := remove(ctx, s, providers, name); err != nil {
		return fmt.Errorf("delete provider %q: %w", name, err)
	}
	return nil
}

func (s *Store) ListProviders(ctx context.Context) ([]store.Provider, error) {
	out, err := list[store.Provider](ctx, s, "provider", providers.listSQL)
	if err != nil {
		return nil, fmt.Errorf("list providers: %w", err)
	}
	return out, nil
}

// ---- accounts ----
//
// Accounts have a two-column key, which the generic table does not
// model; the statements follow the same shape (row lock for updates).

const (
	accountPutSQL = `INSERT INTO accounts (provider, subject, version, data) VALUES ($1, $2, 1, $3)
ON CONFLICT (provider, subject) DO UPDATE SET version = accounts.version + 1, data = EXCLUDED.data RETURNING version`
	accountGetSQL    = `SELECT data FROM accounts WHERE provider = $1 AND subject = $2`
	accountLockSQL   = accountGetSQL + ` FOR UPDATE`
	accountSetSQL    = `UPDATE accounts SET version = $3, data = $4 WHERE provider = $1 AND subject = $2`
	accountDeleteSQL = `DELETE FROM accounts WHERE provider = $1 AND subject = $2`
	accountListSQL   = `SELECT data FROM accounts WHERE ($1 = '' OR provider = $1) AND ($2 = '' OR subject = $2) ORDER BY provider, subject`
)

func (s *Store) PutAccount(ctx context.Context, a store.Account) error {
	if a.Subject == "" || a.Provider == "" {
		return errors.New("account needs a subject and a provider")
	}
	if !storable(a.Subject) || !storable(a.Provider) {
		return fmt.Errorf("put account: %w", errUnstorable)
	}
	// The version written inside data must match the column: run the
	// upsert in a transaction that reads the row first.
	err := s.inTx(ctx, func(tx pgx.Tx) error {
		var raw []byte
		err := tx.QueryRow(ctx, accountLockSQL, a.Provider, a.Subject).Scan(&raw)
		switch {
		case errors.Is(err, pgx.ErrNoRows):
			a.Version = 1
		case err != nil:
			return err
		default:
			cur, err := decode[store.Account]("account", raw)
			if err != nil {
				return err
			}
			a.Version = cur.Version + 1
		}
		data, err := json.Marshal(a)
		if err != nil {
			return err
		}
		var v int64
		if err := tx.QueryRow(ctx, accountPutSQL, a.Provider, a.Subject, data).Scan(&v); err != nil {
			return err
		}
		if uint64(v) == a.Version {
			return nil
		}
		// Another writer inserted the first version between the read and
		// the insert: the upsert continued its version; write it into data.
		a.Version = uint64(v)
		if data, err = json.Marshal(a); err != nil {
			return err
		}
		_, err = tx.Exec(ctx, accountSetSQL, a.Provider, a.Subject, v, data)
		return err
	})
	if err != nil {
		return fmt.Errorf("put account: %w", err)
	}
	return nil
}

func (s *Store) GetAccount(ctx context.Context, subject, provider string) (store.Account, error) {
	db, err := s.db()
	if err != nil {
		return store.Account{}, err
	}
	if !storable(subject) || !storable(provider) {
		return store.Account{}, fmt.Errorf("get account at %q: %w", provider, store.ErrNotFound)
	}
	var raw []byte
	err = db.QueryRow(ctx, accountGetSQL, provider, subject).Scan(&raw)
	if errors.Is(err, pgx.ErrNoRows) {
		err = store.ErrNotFound
	}
	if err != nil {
		return store.Account{}, fmt.Errorf("get account at %q: %w", provider, err)
	}
	return decode[store.Account]("account", raw)
}

func (s *Store) UpdateAccount(ctx context.Context, subject, provider string, fn func(store.Account) (store.Account, error)) error {
	if !storable(subject) || !storable(provider) {
		return fmt.Errorf("update account at %q: %w", provider, store.ErrNotFound)
	}
	err := s.inTx(ctx, func(tx pgx.Tx) error {
		var raw []byte
		if err := tx.QueryRow(ctx, accountLockSQL, provider, subject).Scan(&raw); errors.Is(err, pgx.ErrNoRows) {
			return store.ErrNotFound
		} else if err != nil {
			return err
		}
		cur, err := decode[store.Account]("account", raw)
		if err != nil {
			return err
		}
		next, err := fn(cur)
		if err != nil {
			return err
		}
		next.Subject, next.Provider, next.Version = subject, provider, cur.Version+1
		data, err := json.Marshal(next)
		if err != nil {
			return err
		}
		_, err = tx.Exec(ctx, accountSetSQL, provider, subject, int64(next.Version), data)
		return err
	})
	if err != nil {
		return fmt.Errorf("update account at %q: %w", provider, err)
	}
	return nil
}

func (s *Store) DeleteAccount(ctx context.Context, subject, provider string) error {
	db, err := s.db()
	if err != nil {
		return err
	}
	if !storable(subject) || !storable(provider) {
		return fmt.Errorf("delete account at %q: %w", provider, store.ErrNotFound)
	}
	tag, err := db.Exec(ctx, accountDeleteSQL, provider, subject)
	if err == nil && tag.RowsAffected() == 0 {
		err = store.ErrNotFound
	}
	if err != nil {
		return fmt.Errorf("delete account at %q: %w", provider, err)
	}
	return nil
}

func (s *Store) ListAccounts(ctx context.Context, f store.AccountFilter) ([]store.Account, error) {
	all, err := list[store.Account](ctx, s, "account", accountListSQL, clean(f.Provider), clean(f.Subject))
	if err != nil {
		return nil, fmt.Errorf("list accounts: %w", err)
	}
	out := all[:0]
	for _, a := range all {
		if f.Match(a) {
			out = append(out, a)
		}
	}
	return out, nil
}
