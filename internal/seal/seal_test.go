package seal

import (
	"encoding/base64"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestSealOpenRoundTrip(t *testing.T) {
	k1, _ := Generate()
	k, err := New("a", map[string][]byte{"a": k1})
	if err != nil {
		t.Fatal(err)
	}
	s, err := k.Seal([]byte("idp-refresh-token"), []byte("grant-1"))
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(string(s.Ciphertext), "idp-refresh-token") {
		t.Fatal("plaintext visible in ciphertext")
	}
	pt, err := k.Open(s, []byte("grant-1"))
	if err != nil || string(pt) != "idp-refresh-token" {
		t.Fatalf("open: %q %v", pt, err)
	}
	if _, err := k.Open(s, []byte("grant-2")); err == nil {
		t.Fatal("value opened under another record's context")
	}
	s.Ciphertext[0] ^= 1
	if _, err := k.Open(s, []byte("grant-1")); err == nil {
		t.Fatal("tampered ciphertext opened")
	}
}

func TestRotationKeepsOldValuesReadable(t *testing.T) {
	path := filepath.Join(t.TempDir(), "kek.json")
	k, created, err := LoadOrCreateFile(path)
	if err != nil || !created {
		t.Fatalf("create: %v %v", created, err)
	}
	st, _ := os.Stat(path)
	if st.Mode().Perm() != 0o600 {
		t.Fatalf("keyring file mode %v", st.Mode().Perm())
	}
	old, _ := k.Seal([]byte("secret"), nil)
	if err := Rotate(path); err != nil {
		t.Fatal(err)
	}
	k2, created, err := LoadOrCreateFile(path)
	if err != nil || created {
		t.Fatalf("reload: %v %v", created, err)
	}
	if k2.Primary() == k.Primary() {
		t.Fatal("rotation kept the old primary")
	}
	if !k2.NeedsRewrap(old) {
		t.Fatal("old value not flagged for rewrap")
	}
	pt, err := k2.Open(old, nil)
	if err != nil || string(pt) != "secret" {
		t.Fatalf("old value unreadable after rotation: %v", err)
	}
	fresh, _ := k2.Seal([]byte("x"), nil)
	if fresh.KeyID != k2.Primary() {
		t.Fatal("new values not sealed with the new primary")
	}
}

func TestParseEnv(t *testing.T) {
	a, _ := Generate()
	b, _ := Generate()
	enc := base64.StdEncoding.EncodeToString
	k, err := ParseEnv("new:" + enc(a) + ",old:" + enc(b))
	if err != nil || k.Primary() != "new" {
		t.Fatalf("parse: %v", err)
	}
	for _, bad := range []string{"", "nocolon", "id:!!!", "id:" + enc([]byte("short"))} {
		if _, err := ParseEnv(bad); err == nil {
			t.Errorf("ParseEnv(%q) accepted", bad)
		}
	}
}

func TestOpenUnknownKey(t *testing.T) {
	a, _ := Generate()
	k, _ := New("a", map[string][]byte{"a": a})
	s, _ := k.Seal([]byte("x"), nil)
	s.KeyID = "gone"
	if _, err := k.Open(s, nil); err == nil {
		t.Fatal("opened with unknown key id")
	}
}

func TestRotateFileSwitchesALiveKeyring(t *testing.T) {
	path := filepath.Join(t.TempDir(), "kek.json")
	k, _, err := LoadOrCreateFile(path)
	if err != nil {
		t.Fatal(err)
	}
	before, _ := k.Seal([]byte("old"), nil)
	if err := k.RotateFile(path); err != nil {
		t.Fatal(err)
	}
	after, _ := k.Seal([]byte("new"), nil)
	if after.KeyID == before.KeyID {
		t.Fatal("live keyring still seals with the old key")
	}
	if pt, err := k.Open(before, nil); err != nil || string(pt) != "old" {
		t.Fatalf("old value: %v", err)
	}
}
