// Package handle makes the opaque values clients hold (access and refresh
// tokens, authorization codes, admin tokens) and the digests the store keys
// them by. A raw handle exists only in the response that hands it out; the
// store and the logs see the digest.
package handle

import (
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"encoding/hex"
)

// Prefixes make a leaked value recognisable to secret scanners and to a
// human reading a log line that should not have contained it.
const (
	PrefixAccess  = "wdn_at_"
	PrefixRefresh = "wdn_rt_"
	PrefixCode    = "wdn_ac_"
	PrefixAdmin   = "wdn_admin_"
	PrefixSecret  = "wdn_cs_"
	PrefixRegTok  = "wdn_rat_"
)

// New returns a fresh handle with 256 bits of entropy and its digest.
func New(prefix string) (raw, digest string) {
	var b [32]byte
	if _, err := rand.Read(b[:]); err != nil {
		// crypto/rand never fails on supported platforms; if it does,
		// issuing a predictable credential is worse than crashing.
		panic("handle: crypto/rand: " + err.Error())
	}
	raw = prefix + base64.RawURLEncoding.EncodeToString(b[:])
	return raw, Digest(raw)
}

// Digest is the hex SHA-256 of a raw handle: the only form that is stored.
func Digest(raw string) string {
	sum := sha256.Sum256([]byte(raw))
	// Encoded on the stack: every Check digests its handle, and
	// hex.EncodeToString would allocate the bytes and then the string.
	var buf [2 * sha256.Size]byte
	hex.Encode(buf[:], sum[:])
	return string(buf[:])
}

// Sum is the binary SHA-256 of a secret, for records that keep a hash.
func Sum(raw string) []byte {
	sum := sha256.Sum256([]byte(raw))
	return sum[:]
}

// Equal compares a presented secret with a stored SHA-256 in constant time.
func Equal(presented string, storedSum []byte) bool {
	if len(storedSum) != sha256.Size {
		return false
	}
	sum := sha256.Sum256([]byte(presented))
	return subtle.ConstantTimeCompare(sum[:], storedSum) == 1
}
