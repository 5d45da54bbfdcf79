package handle

import (
	"strings"
	"testing"
)

func TestNewIsUniqueAndDigestStable(t *testing.T) {
	seen := map[string]bool{}
	for i := 0; i < 1000; i++ {
		raw, d := New(PrefixAccess)
		if !strings.HasPrefix(raw, PrefixAccess) || len(raw) != len(PrefixAccess)+43 {
			t.Fatalf("bad handle shape %q", raw)
		}
		if seen[raw] {
			t.Fatal("duplicate handle")
		}
		seen[raw] = true
		if Digest(raw) != d || strings.Contains(d, raw) {
			t.Fatal("digest mismatch")
		}
	}
}

func TestEqual(t *testing.T) {
	raw, _ := New(PrefixSecret)
	sum := Sum(raw)
	if !Equal(raw, sum) {
		t.Fatal("same secret rejected")
	}
	if Equal(raw+"x", sum) || Equal(raw, nil) || Equal(raw, sum[:5]) {
		t.Fatal("different secret accepted")
	}
}

// Stored digests must not change with the encoding code: FIPS 180-2's
// SHA-256 test vector for "abc", in lower-case hex.
func TestDigestIsLowerHexSHA256(t *testing.T) {
	const want = "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
	if got := Digest("abc"); got != want {
		t.Fatalf("Digest(abc) = %s, want %s", got, want)
	}
}
