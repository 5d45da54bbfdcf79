package keys

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/lestrrat-go/jwx/v2/jwk"
	"github.com/lestrrat-go/jwx/v2/jwt"
)

func TestSignVerifyAndRotate(t *testing.T) {
	path := filepath.Join(t.TempDir(), "signing.jwks")
	s, created, err := LoadOrCreate(path)
	if err != nil || !created {
		t.Fatalf("create: %v", err)
	}
	st, _ := os.Stat(path)
	if st.Mode().Perm() != 0o600 {
		t.Fatalf("mode %v", st.Mode().Perm())
	}
	tok, _ := jwt.NewBuilder().Subject("alice").Expiration(time.Now().Add(time.Minute)).Build()
	signedOld, err := s.Sign(tok)
	if err != nil {
		t.Fatal(err)
	}
	firstKid := s.KeyID()
	if err := s.Rotate(); err != nil {
		t.Fatal(err)
	}
	if s.KeyID() == firstKid {
		t.Fatal("rotation kept the active key")
	}
	signedNew, _ := s.Sign(tok)

	// A fresh process sees the rotated set, and both tokens still verify
	// against the published JWKS.
	s2, created, err := LoadOrCreate(path)
	if err != nil || created {
		t.Fatalf("reload: %v", err)
	}
	if s2.KeyID() != s.KeyID() {
		t.Fatal("reload picked a different active key")
	}
	pub, err := jwk.Parse(s2.PublicJWKS())
	if err != nil {
		t.Fatal(err)
	}
	if pub.Len() != 2 {
		t.Fatalf("published %d keys, want 2", pub.Len())
	}
	for _, raw := range [][]byte{signedOld, signedNew} {
		if _, err := jwt.Parse(raw, jwt.WithKeySet(pub)); err != nil {
			t.Fatalf("verify against JWKS: %v", err)
		}
	}
	if strings.Contains(string(s2.PublicJWKS()), `"d"`) {
		t.Fatal("private key material in the public JWKS")
	}
}

func TestRotationBoundsPublishedKeys(t *testing.T) {
	s, err := NewEphemeral()
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 5; i++ {
		if err := s.Rotate(); err != nil {
			t.Fatal(err)
		}
	}
	var doc struct{ Keys []json.RawMessage }
	_ = json.Unmarshal(s.PublicJWKS(), &doc)
	if len(doc.Keys) != maxPublished {
		t.Fatalf("%d keys published, want %d", len(doc.Keys), maxPublished)
	}
}

func TestCorruptKeyFileIsAnError(t *testing.T) {
	path := filepath.Join(t.TempDir(), "signing.jwks")
	_ = os.WriteFile(path, []byte("{not json"), 0o600)
	if _, _, err := LoadOrCreate(path); err == nil {
		t.Fatal("corrupt key file accepted")
	}
}
