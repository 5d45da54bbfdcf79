package store

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"time"

	"github.com/dgraph-io/badger/v4"
)

const (
	pProvider = "provider/"
	pAccount  = "account/"
)

// accountKey length-prefixes the provider so that no provider/subject pair
// can collide with another by containing the separator.
func accountKey(subject, provider string) string {
	return fmt.Sprintf("%s%d/%s/%s", pAccount, len(provider), provider, subject)
}

func (b *Badger) CreateProvider(_ context.Context, p Provider) error {
	if p.Name == "" {
		return errors.New("provider name is empty")
	}
	p.Version = 1
	if err := b.create(pProvider+p.Name, p, time.Time{}); err != nil {
		return fmt.Errorf("create provider %q: %w", p.Name, err)
	}
	return nil
}

func (b *Badger) GetProvider(_ context.Context, name string) (Provider, error) {
	p, err := readOne[Provider](b, pProvider+name)
	if err != nil {
		return Provider{}, fmt.Errorf("get provider %q: %w", name, err)
	}
	return p, nil
}

func (b *Badger) UpdateProvider(_ context.Context, name string, fn func(Provider) (Provider, error)) error {
	err := update(b, pProvider+name, nil, nil, func(p Provider) (Provider, error) {
		n, err := fn(p)
		n.Name = p.Name
		return n, err
	}, func(p *Provider) { p.Version++ })
	if err != nil {
		return fmt.Errorf("update provider %q: %w", name, err)
	}
	return nil
}

func (b *Badger) DeleteProvider(_ context.Context, name string) error {
	if err := b.delete(pProvider + name); err != nil {
		return fmt.Errorf("delete provider %q: %w", name, err)
	}
	return nil
}

func (b *Badger) ListProviders(context.Context) ([]Provider, error) {
	return list[Provider](b, pProvider, nil)
}

func (b *Badger) PutAccount(_ context.Context, a Account) error {
	if a.Subject == "" || a.Provider == "" {
		return errors.New("account needs a subject and a provider")
	}
	key := accountKey(a.Subject, a.Provider)
	err := b.retry(func(txn *badger.Txn) error {
		cur, err := get[Account](txn, key)
		switch {
		case errors.Is(err, ErrNotFound):
			a.Version = 1
		case err != nil:
			return err
		default:
			a.Version = cur.Version + 1
		}
		return setJSON(txn, key, a, time.Time{})
	})
	if err != nil {
		return fmt.Errorf("put account: %w", err)
	}
	return nil
}

func (b *Badger) GetAccount(_ context.Context, subject, provider string) (Account, error) {
	a, err := readOne[Account](b, accountKey(subject, provider))
	if err != nil {
		return Account{}, fmt.Errorf("get account at %q: %w", provider, err)
	}
	return a, nil
}

func (b *Badger) UpdateAccount(_ context.Context, subject, provider string, fn func(Account) (Account, error)) error {
	err := update(b, accountKey(subject, provider), nil, nil, func(a Account) (Account, error) {
		n, err := fn(a)
		n.Subject, n.Provider = a.Subject, a.Provider
		return n, err
	}, func(a *Account) { a.Version++ })
	if err != nil {
		return fmt.Errorf("update account at %q: %w", provider, err)
	}
	return nil
}

func (b *Badger) DeleteAccount(_ context.Context, subject, provider string) error {
	if err := b.delete(accountKey(subject, provider)); err != nil {
		return fmt.Errorf("delete account at %q: %w", provider, err)
	}
	return nil
}

func (b *Badger) ListAccounts(_ context.Context, f AccountFilter) ([]Account, error) {
	prefix := pAccount
	if f.Provider != "" {
		prefix = fmt.Sprintf("%s%d/%s/", pAccount, len(f.Provider), f.Provider)
	}
	out, err := list(b, prefix, f.Match)
	if err != nil {
		return nil, fmt.Errorf("list accounts: %w", err)
	}
	SortAccounts(out)
	return out, nil
}

// SortAccounts orders accounts by provider, then subject: the order every
// backend lists them in.
func SortAccounts(a []Account) {
	sort.Slice(a, func(i, j int) bool {
		if a[i].Provider != a[j].Provider {
			return a[i].Provider < a[j].Provider
		}
		return a[i].Subject < a[j].Subject
	})
}
