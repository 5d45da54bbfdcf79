package store

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"

	"github.com/dgraph-io/badger/v4"
)

var _ Walker = (*Badger)(nil)

// Walk calls fn for every live record in one read transaction, type by
// type in key order. It is the source side of `warden store migrate`.
func (b *Badger) Walk(ctx context.Context, fn func(Record) error) error {
	if b.closed.Load() {
		return fmt.Errorf("walk: %w", ErrClosed)
	}
	now := b.now()
	return b.view(func(txn *badger.Txn) error {
		each := func(prefix string, decode func(key string, raw []byte) (Record, bool, error)) error {
			it := txn.NewIterator(badger.IteratorOptions{Prefix: []byte(prefix), PrefetchValues: true, PrefetchSize: 100})
			defer it.Close()
			for it.Rewind(); it.Valid(); it.Next() {
				if err := ctx.Err(); err != nil {
					return err
				}
				key := string(it.Item().Key())
				var rec Record
				var live bool
				err := it.Item().Value(func(raw []byte) error {
					var err error
					rec, live, err = decode(key, raw)
					return err
				})
				if err != nil {
					return fmt.Errorf("decode %s: %w", strings.SplitN(key, "/", 2)[0], err)
				}
				if !live {
					continue
				}
				if err := fn(rec); err != nil {
					return err
				}
			}
			return nil
		}
		steps := []struct {
			prefix string
			decode func(key string, raw []byte) (Record, bool, error)
		}{
			{pClient, func(_ string, raw []byte) (Record, bool, error) {
				var c Client
				err := json.Unmarshal(raw, &c)
				return Record{Client: &c}, c.ExpiresAt.IsZero() || now.Before(c.ExpiresAt), err
			}},
			{pGrant, func(_ string, raw []byte) (Record, bool, error) {
				var g Grant
				err := json.Unmarshal(raw, &g)
				return Record{Grant: &g}, true, err
			}},
			{pHandle, func(_ string, raw []byte) (Record, bool, error) {
				var h Handle
				err := json.Unmarshal(raw, &h)
				return Record{Handle: &h}, now.Before(h.ExpiresAt), err
			}},
			{pServer, func(_ string, raw []byte) (Record, bool, error) {
				var s Server
				err := json.Unmarshal(raw, &s)
				return Record{Server: &s}, true, err
			}},
			{pSession, func(key string, raw []byte) (Record, bool, error) {
				var s session
				if err := json.Unmarshal(raw, &s); err != nil {
					return Record{}, false, err
				}
				// Session kinds are fixed names without a slash; the id is
				// the rest of the key.
				kind, id, ok := strings.Cut(strings.TrimPrefix(key, pSession), "/")
				if !ok {
					return Record{}, false, fmt.Errorf("session key without a kind")
				}
				return Record{Session: &SessionRecord{Kind: kind, ID: id, Value: s.Value, ExpiresAt: s.ExpiresAt}}, now.Before(s.ExpiresAt), nil
			}},
			{pConsent, func(_ string, raw []byte) (Record, bool, error) {
				var c Consent
				err := json.Unmarshal(raw, &c)
				return Record{Consent: &c}, true, err
			}},
		}
		for _, s := range steps {
			if err := each(s.prefix, s.decode); err != nil {
				return err
			}
		}
		if err := each(pProvider, func(_ string, raw []byte) (Record, bool, error) {
			var p Provider
			err := json.Unmarshal(raw, &p)
			return Record{Provider: &p}, true, err
		}); err != nil {
			return err
		}
		// Accounts in (provider, subject) order, as every backend walks
		// them: the length-prefixed keys sort differently.
		var accounts []Account
		if err := each(pAccount, func(_ string, raw []byte) (Record, bool, error) {
			var a Account
			err := json.Unmarshal(raw, &a)
			accounts = append(accounts, a)
			return Record{}, false, err
		}); err != nil {
			return err
		}
		SortAccounts(accounts)
		for i := range accounts {
			if err := fn(Record{Account: &accounts[i]}); err != nil {
				return err
			}
		}
		return nil
	})
}
