package keys

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/lestrrat-go/jwx/v2/jwk"

	"github.com/warden-mcp/warden/internal/seal"
)

// SharedBlob names the signing key set in the store.
const SharedBlob = "signing-keys"

// shared keeps a Signer's key set in the store, sealed under the
// key-encryption keyring, for replicas: a rotation on one is installed by
// all (Reload, on the store's notification), so every replica signs with
// the same active key and serves the same JWKS.
type shared struct {
	blobs seal.Blobs
	kek   *seal.Keyring
	// rotateTimeout bounds a rotation's store round trips (Rotate takes
	// no context).
	rotateTimeout time.Duration
}

// OpenShared loads the key set from the store, creating it with one key
// when the store has none (the first replica to start creates it, the
// others load it). seed, when not nil, is a key set to start from instead
// (a single node's signing file, so tokens it signed stay verifiable).
func OpenShared(ctx context.Context, b seal.Blobs, kek *seal.Keyring, seed *Signer) (*Signer, error) {
	s := &Signer{shared: &shared{blobs: b, kek: kek, rotateTimeout: 30 * time.Second}}
	if err := b.UpdateBlob(ctx, SharedBlob, func(cur []byte) ([]byte, error) {
		if cur != nil {
			return cur, nil
		}
		var set jwk.Set
		if seed != nil {
			seed.mu.RLock()
			set = seed.set
			seed.mu.RUnlock()
		} else {
			fresh, err := NewEphemeral()
			if err != nil {
				return nil, err
			}
			set = fresh.set
		}
		return s.shared.seal(set)
	}); err != nil {
		return nil, fmt.Errorf("shared signing keys: %w", err)
	}
	return s, s.Reload(ctx)
}

func (sh *shared) seal(set jwk.Set) ([]byte, error) {
	raw, err := json.Marshal(set)
	if err != nil {
		return nil, err
	}
	return seal.SealBlob(sh.kek, SharedBlob, raw)
}

func (sh *shared) open(raw []byte) (jwk.Set, error) {
	plain, err := seal.OpenBlob(sh.kek, SharedBlob, raw)
	if err != nil {
		return nil, err
	}
	set, err := jwk.Parse(plain)
	if err != nil {
		return nil, fmt.Errorf("shared signing keys: %w", err)
	}
	if set.Len() == 0 {
		return nil, errors.New("shared signing keys: empty key set")
	}
	return set, nil
}

// Reload installs the store's current key set.
func (s *Signer) Reload(ctx context.Context) error {
	if s.shared == nil {
		return nil
	}
	raw, err := s.shared.blobs.GetBlob(ctx, SharedBlob)
	if err != nil {
		return fmt.Errorf("shared signing keys: %w", err)
	}
	set, err := s.shared.open(raw)
	if err != nil {
		return err
	}
	return s.install(set)
}

// rotate appends k to the store's key set under its row lock (so two
// replicas rotating at once both land) and installs the result.
func (sh *shared) rotate(s *Signer, k jwk.Key) error {
	ctx, cancel := context.WithTimeout(context.Background(), sh.rotateTimeout)
	defer cancel()
	var next jwk.Set
	if err := sh.blobs.UpdateBlob(ctx, SharedBlob, func(cur []byte) ([]byte, error) {
		next = jwk.NewSet()
		if cur != nil {
			set, err := sh.open(cur)
			if err != nil {
				return nil, err
			}
			for i := 0; i < set.Len(); i++ {
				old, _ := set.Key(i)
				_ = next.AddKey(old)
			}
		}
		_ = next.AddKey(k)
		for next.Len() > maxPublished {
			oldest, _ := next.Key(0)
			_ = next.RemoveKey(oldest)
		}
		return sh.seal(next)
	}); err != nil {
		return fmt.Errorf("rotate shared signing keys: %w", err)
	}
	return s.install(next)
}
