// Package keys holds Warden's JWT signing keys: generated on first start,
// kept in a private JWK Set file (mode 0600), published as a public JWKS, and
// rotated by adding a new active key while older ones stay published until
// the tokens they signed have expired.
package keys

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"os"
	"sync"
	"time"

	"github.com/lestrrat-go/jwx/v2/jwa"
	"github.com/lestrrat-go/jwx/v2/jwk"
	"github.com/lestrrat-go/jwx/v2/jwt"

	"github.com/warden-mcp/warden/internal/seal"
)

// Algorithm is the signature algorithm of every key Warden generates.
// ES256 signs in tens of microseconds and every JOSE library verifies it.
const Algorithm = jwa.ES256

// maxPublished bounds how many keys the JWKS keeps: the active key and the
// ones before it, long enough for tokens they signed to expire.
const maxPublished = 3

// Signer signs JWTs with the active key of a key set.
type Signer struct {
	path string
	// shared, when set, keeps the key set in the store (replicas).
	shared *shared

	mu     sync.RWMutex
	active jwk.Key
	set    jwk.Set // private keys, newest last
	public []byte  // cached JWKS document
}

// LoadOrCreate opens the key set at path, generating one key when the file
// does not exist yet.
func LoadOrCreate(path string) (*Signer, bool, error) {
	s := &Signer{path: path}
	raw, err := os.ReadFile(path)
	switch {
	case errors.Is(err, os.ErrNotExist):
		if err := s.Rotate(); err != nil {
			return nil, false, err
		}
		return s, true, nil
	case err != nil:
		return nil, false, fmt.Errorf("read signing keys: %w", err)
	}
	set, err := jwk.Parse(raw)
	if err != nil {
		return nil, false, fmt.Errorf("parse signing keys %s: %w", path, err)
	}
	if set.Len() == 0 {
		return nil, false, fmt.Errorf("signing keys %s: empty key set", path)
	}
	if err := s.install(set); err != nil {
		return nil, false, err
	}
	return s, false, nil
}

// NewEphemeral returns a signer with one in-memory key (tests, benchmarks).
func NewEphemeral() (*Signer, error) {
	s := &Signer{}
	return s, s.Rotate()
}

// Rotate generates a new active key, keeps the previous ones published and
// persists the set when the signer has a file.
func (s *Signer) Rotate() error {
	priv, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return fmt.Errorf("generate signing key: %w", err)
	}
	k, err := jwk.FromRaw(priv)
	if err != nil {
		return err
	}
	if err := jwk.AssignKeyID(k); err != nil {
		return err
	}
	_ = k.Set(jwk.AlgorithmKey, Algorithm)
	_ = k.Set(jwk.KeyUsageKey, jwk.ForSignature)
	_ = k.Set("iat", time.Now().Unix())

	s.mu.RLock()
	next := jwk.NewSet()
	if s.set != nil {
		for i := 0; i < s.set.Len(); i++ {
			old, _ := s.set.Key(i)
			_ = next.AddKey(old)
		}
	}
	s.mu.RUnlock()
	_ = next.AddKey(k)
	for next.Len() > maxPublished {
		oldest, _ := next.Key(0)
		_ = next.RemoveKey(oldest)
	}
	if s.shared != nil {
		return s.shared.rotate(s, k)
	}
	if s.path != "" {
		raw, err := json.MarshalIndent(next, "", "  ")
		if err != nil {
			return err
		}
		if err := seal.WriteFileAtomic(s.path, raw, 0o600); err != nil {
			return fmt.Errorf("write signing keys: %w", err)
		}
	}
	return s.install(next)
}

func (s *Signer) install(set jwk.Set) error {
	active, _ := set.Key(set.Len() - 1)
	pub, err := jwk.PublicSetOf(set)
	if err != nil {
		return fmt.Errorf("derive public keys: %w", err)
	}
	doc, err := json.Marshal(pub)
	if err != nil {
		return err
	}
	s.mu.Lock()
	s.active, s.set, s.public = active, set, doc
	s.mu.Unlock()
	return nil
}

// KeyID returns the id of the active key.
func (s *Signer) KeyID() string {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return s.active.KeyID()
}

// Sign serializes and signs t with the active key.
func (s *Signer) Sign(t jwt.Token) ([]byte, error) {
	s.mu.RLock()
	k := s.active
	s.mu.RUnlock()
	return jwt.Sign(t, jwt.WithKey(Algorithm, k))
}

// PublicJWKS returns the JWKS document (public keys only).
func (s *Signer) PublicJWKS() []byte {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return s.public
}

// PublicSet returns the public keys as a jwk.Set for in-process verification.
func (s *Signer) PublicSet() (jwk.Set, error) { return jwk.Parse(s.PublicJWKS()) }

// ServeHTTP serves the JWKS document.
func (s *Signer) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Content-Type", "application/jwk-set+json")
	// Short caching lets verifiers pick up a rotation within minutes.
	w.Header().Set("Cache-Control", "public, max-age=300")
	_, _ = w.Write(s.PublicJWKS())
}
