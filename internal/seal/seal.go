// Package seal encrypts secrets at rest with AES-256-GCM under a
// key-encryption key (KEK). A Keyring holds several KEKs by id: the primary
// seals, every key opens, so a KEK can be rotated by adding a new primary and
// re-sealing at leisure.
package seal

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"sort"
	"strings"
	"sync"

	"github.com/warden-mcp/warden/internal/store"
)

// KeySize is the AES-256 key length in bytes.
const KeySize = 32

// Keyring seals with its primary key and opens with any key it holds. It is
// safe for concurrent use, including Reload while sealing and opening.
type Keyring struct {
	mu      sync.RWMutex
	primary string
	aeads   map[string]cipher.AEAD
}

// File is the on-disk form of a keyring: {"primary": id, "keys": {id: base64}}.
type File struct {
	Primary string            `json:"primary"`
	Keys    map[string]string `json:"keys"`
}

// New builds a keyring from raw keys.
func New(primary string, keys map[string][]byte) (*Keyring, error) {
	if _, ok := keys[primary]; !ok {
		return nil, fmt.Errorf("primary key %q is not in the keyring", primary)
	}
	k := &Keyring{primary: primary, aeads: map[string]cipher.AEAD{}}
	for id, raw := range keys {
		if len(raw) != KeySize {
			return nil, fmt.Errorf("key %q is %d bytes, want %d", id, len(raw), KeySize)
		}
		block, err := aes.NewCipher(raw)
		if err != nil {
			return nil, fmt.Errorf("key %q: %w", id, err)
		}
		aead, err := cipher.NewGCM(block)
		if err != nil {
			return nil, fmt.Errorf("key %q: %w", id, err)
		}
		k.aeads[id] = aead
	}
	return k, nil
}

// Primary returns the id of the sealing key.
func (k *Keyring) Primary() string {
	k.mu.RLock()
	defer k.mu.RUnlock()
	return k.primary
}

// RotateFile adds a fresh primary key to the keyring file at path and
// switches this keyring to it; values sealed before keep opening under
// their old key.
func (k *Keyring) RotateFile(path string) error {
	if err := Rotate(path); err != nil {
		return err
	}
	next, err := LoadFile(path)
	if err != nil {
		return err
	}
	next.mu.RLock()
	defer next.mu.RUnlock()
	k.mu.Lock()
	k.primary, k.aeads = next.primary, next.aeads
	k.mu.Unlock()
	return nil
}

// Seal encrypts plaintext. aad binds the ciphertext to its context (for
// example the grant id) so a sealed value cannot be moved to another record.
func (k *Keyring) Seal(plaintext, aad []byte) (store.Sealed, error) {
	k.mu.RLock()
	primary, aead := k.primary, k.aeads[k.primary]
	k.mu.RUnlock()
	nonce := make([]byte, aead.NonceSize())
	if _, err := rand.Read(nonce); err != nil {
		return store.Sealed{}, fmt.Errorf("seal: nonce: %w", err)
	}
	return store.Sealed{KeyID: primary, Nonce: nonce, Ciphertext: aead.Seal(nil, nonce, plaintext, aad)}, nil
}

// ErrUnknownKey means a value was sealed under a key this keyring lacks.
var ErrUnknownKey = errors.New("sealed under an unknown key")

// Open decrypts s, verifying aad.
func (k *Keyring) Open(s store.Sealed, aad []byte) ([]byte, error) {
	k.mu.RLock()
	aead, ok := k.aeads[s.KeyID]
	k.mu.RUnlock()
	if !ok {
		return nil, fmt.Errorf("open: key %q: %w", s.KeyID, ErrUnknownKey)
	}
	if len(s.Nonce) != aead.NonceSize() {
		return nil, errors.New("open: malformed nonce")
	}
	pt, err := aead.Open(nil, s.Nonce, s.Ciphertext, aad)
	if err != nil {
		return nil, errors.New("open: ciphertext or context does not authenticate")
	}
	return pt, nil
}

// NeedsRewrap reports whether s was sealed under a key other than the
// primary, so a caller can re-seal it after a rotation.
func (k *Keyring) NeedsRewrap(s store.Sealed) bool { return s.KeyID != k.Primary() }

// Generate returns a fresh random key.
func Generate() ([]byte, error) {
	b := make([]byte, KeySize)
	if _, err := rand.Read(b); err != nil {
		return nil, err
	}
	return b, nil
}

// ParseEnv parses "id:base64[,id:base64...]"; the first key is primary.
func ParseEnv(v string) (*Keyring, error) {
	keys := map[string][]byte{}
	primary := ""
	for i, part := range strings.Split(v, ",") {
		id, b64, ok := strings.Cut(strings.TrimSpace(part), ":")
		if !ok || id == "" {
			return nil, fmt.Errorf("sealing key %d: want id:base64", i+1)
		}
		raw, err := base64.StdEncoding.DecodeString(b64)
		if err != nil {
			return nil, fmt.Errorf("sealing key %q: %w", id, err)
		}
		keys[id] = raw
		if i == 0 {
			primary = id
		}
	}
	return New(primary, keys)
}

// LoadFile reads a keyring file.
func LoadFile(path string) (*Keyring, error) {
	raw, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var f File
	if err := json.Unmarshal(raw, &f); err != nil {
		return nil, fmt.Errorf("parse keyring %s: %w", path, err)
	}
	keys := map[string][]byte{}
	for id, b64 := range f.Keys {
		if keys[id], err = base64.StdEncoding.DecodeString(b64); err != nil {
			return nil, fmt.Errorf("keyring %s: key %q: %w", path, id, err)
		}
	}
	k, err := New(f.Primary, keys)
	if err != nil {
		return nil, fmt.Errorf("keyring %s: %w", path, err)
	}
	return k, nil
}

// LoadOrCreateFile reads the keyring at path, creating it with one fresh
// key (mode 0600) when it does not exist.
func LoadOrCreateFile(path string) (*Keyring, bool, error) {
	k, err := LoadFile(path)
	if err == nil {
		return k, false, nil
	}
	if !errors.Is(err, os.ErrNotExist) {
		return nil, false, err
	}
	if err := Rotate(path); err != nil {
		return nil, false, err
	}
	k, err = LoadFile(path)
	return k, true, err
}

// Rotate adds a fresh key to the keyring file at path (creating it if
// needed) and makes it primary. Old keys stay so existing values open.
func Rotate(path string) error {
	f := File{Keys: map[string]string{}}
	if raw, err := os.ReadFile(path); err == nil {
		if err := json.Unmarshal(raw, &f); err != nil {
			return fmt.Errorf("parse keyring %s: %w", path, err)
		}
	} else if !errors.Is(err, os.ErrNotExist) {
		return err
	}
	ids := make([]string, 0, len(f.Keys))
	for id := range f.Keys {
		ids = append(ids, id)
	}
	sort.Strings(ids)
	id := fmt.Sprintf("k%d", len(ids)+1)
	for f.Keys[id] != "" {
		id += "x"
	}
	raw, err := Generate()
	if err != nil {
		return err
	}
	f.Keys[id] = base64.StdEncoding.EncodeToString(raw)
	f.Primary = id
	out, err := json.MarshalIndent(f, "", "  ")
	if err != nil {
		return err
	}
	return WriteFileAtomic(path, out, 0o600)
}

// WriteFileAtomic writes data to path through a temporary file and rename,
// so a crash never leaves a half-written key file.
func WriteFileAtomic(path string, data []byte, perm os.FileMode) error {
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, data, perm); err != nil {
		return err
	}
	if err := os.Chmod(tmp, perm); err != nil {
		return err
	}
	return os.Rename(tmp, path)
}
