package seal

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"

	"github.com/warden-mcp/warden/internal/store"
)

// Blobs is where replicas share key sets: the PostgreSQL store's
// shared_blobs (GetBlob returns store.ErrNotFound for a missing one;
// UpdateBlob runs fn under the row's lock, with nil when it is missing).
type Blobs interface {
	GetBlob(ctx context.Context, name string) ([]byte, error)
	UpdateBlob(ctx context.Context, name string, fn func(cur []byte) ([]byte, error)) error
}

// SharedKeyringBlob names the sealing keyring in the store.
const SharedKeyringBlob = "sealing-keys"

// SealBlob seals a key set for the store under kek, bound to its name.
func SealBlob(kek *Keyring, name string, plain []byte) ([]byte, error) {
	s, err := kek.Seal(plain, []byte("warden-blob/"+name))
	if err != nil {
		return nil, err
	}
	return json.Marshal(s)
}

// OpenBlob opens what SealBlob sealed.
func OpenBlob(kek *Keyring, name string, raw []byte) ([]byte, error) {
	var s store.Sealed
	if err := json.Unmarshal(raw, &s); err != nil {
		return nil, fmt.Errorf("shared %s: %w", name, err)
	}
	pt, err := kek.Open(s, []byte("warden-blob/"+name))
	if err != nil {
		return nil, fmt.Errorf("shared %s: not sealed by this key-encryption key: %w", name, err)
	}
	return pt, nil
}

// Shared is the sealing keyring of a deployment of replicas: the data
// keys live in the store, sealed under the key-encryption keyring (KEK)
// every replica gets from WARDEN_SEALING_KEYS or keys.sealing_file. The
// keyring seals under the store's primary key and opens values sealed
// under any store key or any KEK key (values sealed before the keys
// moved into the store, by a single node).
type Shared struct {
	*Keyring
	kek   *Keyring
	blobs Blobs
}

// OpenShared loads the store's keyring, creating it with one key when the
// store has none.
func OpenShared(ctx context.Context, b Blobs, kek *Keyring) (*Shared, error) {
	s := &Shared{Keyring: &Keyring{}, kek: kek, blobs: b}
	if err := b.UpdateBlob(ctx, SharedKeyringBlob, func(cur []byte) ([]byte, error) {
		if cur != nil {
			return cur, nil
		}
		return s.next(nil)
	}); err != nil {
		return nil, fmt.Errorf("shared sealing keys: %w", err)
	}
	return s, s.Reload(ctx)
}

// next adds a fresh primary key to the sealed keyring cur (nil: none).
func (s *Shared) next(cur []byte) ([]byte, error) {
	f := File{Keys: map[string]string{}}
	if cur != nil {
		plain, err := OpenBlob(s.kek, SharedKeyringBlob, cur)
		if err != nil {
			return nil, err
		}
		if err := json.Unmarshal(plain, &f); err != nil {
			return nil, fmt.Errorf("shared sealing keys: %w", err)
		}
	}
	raw, err := Generate()
	if err != nil {
		return nil, err
	}
	b := make([]byte, 6)
	_, _ = rand.Read(b)
	// Ids of their own, so they never collide with the KEK's ids.
	id := "shared-" + hex.EncodeToString(b)
	f.Keys[id] = base64.StdEncoding.EncodeToString(raw)
	f.Primary = id
	plain, err := json.Marshal(f)
	if err != nil {
		return nil, err
	}
	return SealBlob(s.kek, SharedKeyringBlob, plain)
}

// Reload installs the store's current keyring: after a rotation by any
// replica (the store notifies it) and periodically.
func (s *Shared) Reload(ctx context.Context) error {
	raw, err := s.blobs.GetBlob(ctx, SharedKeyringBlob)
	if err != nil {
		return fmt.Errorf("shared sealing keys: %w", err)
	}
	plain, err := OpenBlob(s.kek, SharedKeyringBlob, raw)
	if err != nil {
		return err
	}
	var f File
	if err := json.Unmarshal(plain, &f); err != nil {
		return fmt.Errorf("shared sealing keys: %w", err)
	}
	keys := map[string][]byte{}
	for id, b64 := range f.Keys {
		if keys[id], err = base64.StdEncoding.DecodeString(b64); err != nil {
			return fmt.Errorf("shared sealing keys: key %q: %w", id, err)
		}
	}
	next, err := New(f.Primary, keys)
	if err != nil {
		return fmt.Errorf("shared sealing keys: %w", err)
	}
	s.kek.mu.RLock()
	for id, aead := range s.kek.aeads {
		if _, dup := next.aeads[id]; !dup {
			next.aeads[id] = aead
		}
	}
	s.kek.mu.RUnlock()
	s.Keyring.mu.Lock()
	s.Keyring.primary, s.Keyring.aeads = next.primary, next.aeads
	s.Keyring.mu.Unlock()
	return nil
}

// Rotate adds a fresh primary key to the store's keyring and installs it;
// the other replicas install it on the store's notification.
func (s *Shared) Rotate(ctx context.Context) error {
	if err := s.blobs.UpdateBlob(ctx, SharedKeyringBlob, func(cur []byte) ([]byte, error) {
		if cur == nil {
			return nil, errors.New("shared sealing keys are missing from the store")
		}
		return s.next(cur)
	}); err != nil {
		return fmt.Errorf("rotate shared sealing keys: %w", err)
	}
	return s.Reload(ctx)
}
