package connector

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/lestrrat-go/jwx/v2/jwa"
	"github.com/lestrrat-go/jwx/v2/jwk"
)

// Every rule of Back-Channel Logout 1.0 section 2.6 a logout token must
// pass; the happy path with a token oidc-provider signed is in
// test/console.
func TestVerifyLogoutToken(t *testing.T) {
	p := newHostileIdP(t)
	other, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	otherKey, _ := jwk.FromRaw(other)
	_ = otherKey.Set(jwk.KeyIDKey, "k1")
	now := time.Now()
	good := func() map[string]any {
		return map[string]any{"iss": p.srv.URL, "aud": "warden", "sub": "u1", "sid": "s-1", "iat": now.Unix(), "jti": "j-1",
			"events": map[string]any{BackchannelLogoutEvent: map[string]any{}}}
	}
	with := func(k string, v any) map[string]any { c := good(); c[k] = v; return c }
	without := func(ks ...string) map[string]any {
		c := good()
		for _, k := range ks {
			delete(c, k)
		}
		return c
	}
	cases := []struct {
		name   string
		claims map[string]any
		key    jwk.Key
		want   string // "" accepted
	}{
		{"valid", good(), nil, ""},
		{"sub only", without("sid"), nil, ""},
		{"sid only", without("sub"), nil, ""},
		{"with an exp to come", with("exp", now.Add(time.Minute).Unix()), nil, ""},
		{"neither sub nor sid", without("sub", "sid"), nil, "neither sub nor sid"},
		{"a nonce (an ID token)", with("nonce", "n"), nil, "nonce"},
		{"no events", without("events"), nil, "events"},
		{"another event", with("events", map[string]any{"http://example.com/other": map[string]any{}}), nil, "events"},
		{"no jti", without("jti"), nil, "no jti"},
		{"no iat", without("iat"), nil, "no iat"},
		{"expired", with("exp", now.Add(-time.Minute).Unix()), nil, "expired"},
		{"another audience", with("aud", "someone-else"), nil, "audience"},
		{"another issuer", with("iss", "https://evil.example"), nil, "issued by a different provider"},
		{"signed by another key", good(), otherKey, "signature"},
	}
	c := NewOIDC(OIDCOptions{Issuer: p.srv.URL, ClientID: "warden", ClientSecret: "s", Claims: names})
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			key := tc.key
			if key == nil {
				key = p.key
			}
			raw := p.sign(t, tc.claims, key, jwa.ES256)
			lt, err := c.VerifyLogoutToken(context.Background(), string(raw))
			if tc.want == "" {
				if err != nil || lt.JTI != "j-1" || lt.Issuer != p.srv.URL || lt.Subject != tc.claims["sub"] && tc.claims["sub"] != nil {
					t.Fatalf("valid token refused: %v %+v", err, lt)
				}
				if sid, _ := tc.claims["sid"].(string); lt.SessionID != sid {
					t.Fatalf("session %q, want %q", lt.SessionID, sid)
				}
				return
			}
			if err == nil || !errors.Is(err, ErrInvalidLogoutToken) || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("want an invalid-token error containing %q, got %v", tc.want, err)
			}
		})
	}
}
