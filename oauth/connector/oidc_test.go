package connector

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/lestrrat-go/jwx/v2/jwa"
	"github.com/lestrrat-go/jwx/v2/jwk"
	"github.com/lestrrat-go/jwx/v2/jwt"
)

// hostileIdP is an OpenID Provider under the test's control that answers
// the token request with whatever ID token the case wants, to prove that
// Exchange verifies signature, alg, iss, aud, exp and nonce. The happy
// path against a real provider (oidc-provider) is in test/oauthflow.
type hostileIdP struct {
	srv     *httptest.Server
	key     jwk.Key
	idToken func(iss string) []byte
	refresh func(w http.ResponseWriter)
	params  url.Values
}

func newHostileIdP(t *testing.T) *hostileIdP {
	priv, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	key, _ := jwk.FromRaw(priv)
	_ = key.Set(jwk.KeyIDKey, "k1")
	_ = key.Set(jwk.AlgorithmKey, jwa.ES256)
	p := &hostileIdP{key: key}
	p.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		iss := p.srv.URL
		w.Header().Set("Content-Type", "application/json")
		switch r.URL.Path {
		case "/.well-known/openid-configuration":
			_ = json.NewEncoder(w).Encode(map[string]any{
				"issuer": iss, "authorization_endpoint": iss + "/auth", "token_endpoint": iss + "/token",
				"jwks_uri": iss + "/jwks", "id_token_signing_alg_values_supported": []string{"ES256"},
			})
		case "/jwks":
			pub, _ := jwk.PublicSetOf(func() jwk.Set { s := jwk.NewSet(); _ = s.AddKey(p.key); return s }())
			_ = json.NewEncoder(w).Encode(pub)
		case "/token":
			_ = r.ParseForm()
			p.params = r.PostForm
			if r.PostForm.Get("grant_type") == "refresh_token" {
				p.refresh(w)
				return
			}
			_ = json.NewEncoder(w).Encode(map[string]any{"access_token": "idp-at", "token_type": "Bearer", "expires_in": 300,
				"refresh_token": "idp-rt", "id_token": string(p.idToken(iss))})
		default:
			http.NotFound(w, r)
		}
	}))
	t.Cleanup(p.srv.Close)
	return p
}

func (p *hostileIdP) sign(t *testing.T, claims map[string]any, key jwk.Key, alg jwa.SignatureAlgorithm) []byte {
	tok := jwt.New()
	for k, v := range claims {
		_ = tok.Set(k, v)
	}
	raw, err := jwt.Sign(tok, jwt.WithKey(alg, key))
	if err != nil {
		t.Fatal(err)
	}
	return raw
}

func TestOIDCExchangeVerifiesIDToken(t *testing.T) {
	p := newHostileIdP(t)
	other, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	otherKey, _ := jwk.FromRaw(other)
	_ = otherKey.Set(jwk.KeyIDKey, "k1")
	hmacKey, _ := jwk.FromRaw([]byte("a-shared-secret-that-is-long-enough"))
	now := time.Now()
	good := func(iss string) map[string]any {
		return map[string]any{"iss": iss, "aud": "warden", "sub": "u1", "nonce": "n-1", "exp": now.Add(time.Hour).Unix(), "iat": now.Unix(),
			"email": "u1@example.com", "email_verified": true, "groups": []string{"g"}}
	}
	with := func(k string, v any) func(string) map[string]any {
		return func(iss string) map[string]any { c := good(iss); c[k] = v; return c }
	}
	for _, tc := range []struct {
		name   string
		claims func(iss string) map[string]any
		key    jwk.Key
		alg    jwa.SignatureAlgorithm
		want   string
	}{
		{"valid", good, nil, jwa.ES256, ""},
		{"wrong audience", with("aud", "someone-else"), nil, jwa.ES256, "audience"},
		{"wrong issuer", with("iss", "https://evil.example"), nil, jwa.ES256, "issued by a different provider"},
		{"expired", with("exp", now.Add(-time.Minute).Unix()), nil, jwa.ES256, "expired"},
		{"wrong nonce", with("nonce", "n-2"), nil, jwa.ES256, "nonce"},
		{"missing nonce", func(iss string) map[string]any { c := good(iss); delete(c, "nonce"); return c }, nil, jwa.ES256, "nonce"},
		{"signed by another key", good, otherKey, jwa.ES256, "signature"},
		{"HS256 algorithm", good, hmacKey, jwa.HS256, "signature"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			key := tc.key
			if key == nil {
				key = p.key
			}
			p.idToken = func(iss string) []byte { return p.sign(t, tc.claims(iss), key, tc.alg) }
			c := NewOIDC(OIDCOptions{Issuer: p.srv.URL, ClientID: "warden", ClientSecret: "s", Claims: names, RedirectURL: "http://warden/oauth/callback"})
			authURL, err := c.AuthCodeURL(context.Background(), "st", "n-1", "verifier-verifier-verifier-verifier-verifier")
			if err != nil {
				t.Fatal(err)
			}
			q, _ := url.Parse(authURL)
			if q.Query().Get("nonce") != "n-1" || q.Query().Get("code_challenge_method") != "S256" || q.Query().Get("state") != "st" {
				t.Fatalf("authorization URL lacks nonce/PKCE/state: %s", authURL)
			}
			id, tok, err := c.Exchange(context.Background(), "code", "n-1", "verifier-verifier-verifier-verifier-verifier")
			if p.params.Get("code_verifier") != "verifier-verifier-verifier-verifier-verifier" {
				t.Fatalf("PKCE verifier not sent to the IdP: %v", p.params)
			}
			if tc.want == "" {
				if err != nil || id.Subject != "u1" || id.Email != "u1@example.com" || tok.RefreshToken != "idp-rt" || tok.IDToken == "" {
					t.Fatalf("valid token refused: %v %+v", err, id)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("want error containing %q, got %v", tc.want, err)
			}
		})
	}
}

func TestOIDCRefreshRefusal(t *testing.T) {
	p := newHostileIdP(t)
	c := NewOIDC(OIDCOptions{Issuer: p.srv.URL, ClientID: "warden", ClientSecret: "s", Claims: names, RedirectURL: "http://warden/cb"})
	p.refresh = func(w http.ResponseWriter) {
		w.WriteHeader(http.StatusBadRequest)
		_, _ = w.Write([]byte(`{"error":"invalid_grant","error_description":"user disabled, token idp-rt"}`))
	}
	_, err := c.Refresh(context.Background(), Tokens{RefreshToken: "idp-rt"})
	if !errors.Is(err, ErrRefused) || strings.Contains(err.Error(), "idp-rt") {
		t.Fatalf("invalid_grant: %v", err)
	}
	p.refresh = func(w http.ResponseWriter) { w.WriteHeader(http.StatusBadGateway) }
	if _, err = c.Refresh(context.Background(), Tokens{RefreshToken: "idp-rt"}); err == nil || errors.Is(err, ErrRefused) {
		t.Fatalf("a transient failure must not read as a refusal: %v", err)
	}
	p.refresh = func(w http.ResponseWriter) {
		_ = json.NewEncoder(w).Encode(map[string]any{"access_token": "at2", "token_type": "Bearer", "expires_in": 300})
	}
	got, err := c.Refresh(context.Background(), Tokens{RefreshToken: "idp-rt", IDToken: "x.y.z"})
	if err != nil || got.AccessToken != "at2" || got.RefreshToken != "idp-rt" {
		t.Fatalf("refresh keeps the old refresh token when none is returned: %+v %v", got, err)
	}
}

// TestOIDCRefreshFor: the request carries resource and the narrowed
// scope, a refused refresh token is ErrRefused (the grant ends), a refused
// audience is a TargetError (it does not), a 5xx is neither, and no error
// carries the token.
func TestOIDCRefreshFor(t *testing.T) {
	p := newHostileIdP(t)
	c := NewOIDC(OIDCOptions{Issuer: p.srv.URL, ClientID: "warden", ClientSecret: "s", Claims: names, RedirectURL: "http://warden/cb"})
	answer := func(status int, body string) func(w http.ResponseWriter) {
		return func(w http.ResponseWriter) { w.WriteHeader(status); _, _ = w.Write([]byte(body)) }
	}
	cases := []struct {
		name    string
		answer  func(w http.ResponseWriter)
		refused bool   // errors.Is ErrRefused
		target  string // TargetError code
		ok      bool
	}{
		{"refresh token refused", answer(400, `{"error":"invalid_grant","error_description":"token idp-rt is gone"}`), true, "", false},
		{"audience refused", answer(400, `{"error":"invalid_target","error_description":"no idp-rt for you"}`), false, "invalid_target", false},
		{"scope refused", answer(400, `{"error":"invalid_scope"}`), false, "invalid_scope", false},
		{"idp down", answer(502, `{"error":"server_error"}`), false, "", false},
		{"rotated", answer(200, `{"access_token":"aud-at","token_type":"Bearer","expires_in":120,"refresh_token":"idp-rt2"}`), false, "", true},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			p.refresh = tc.answer
			got, err := c.RefreshFor(context.Background(), Tokens{RefreshToken: "idp-rt", AccessToken: "sign-in", IDToken: "x.y.z"}, "api://files", []string{"files.read", "files.list"})
			if q := p.params; q.Get("resource") != "api://files" || q.Get("scope") != "files.read files.list" || q.Get("refresh_token") != "idp-rt" {
				t.Fatalf("token request: %v", q)
			}
			var te *TargetError
			switch {
			case tc.ok:
				if err != nil || got.AccessToken != "aud-at" || got.RefreshToken != "idp-rt2" || got.IDToken != "x.y.z" || got.Expiry.IsZero() {
					t.Fatalf("RefreshFor: %+v %v", got, err)
				}
				return
			case err == nil:
				t.Fatal("accepted")
			case strings.Contains(err.Error(), "idp-rt"):
				t.Fatalf("the error carries the token: %v", err)
			case errors.Is(err, ErrRefused) != tc.refused:
				t.Fatalf("ErrRefused is %v for %v", !tc.refused, err)
			case tc.target != "" && (!errors.As(err, &te) || te.Code != tc.target):
				t.Fatalf("want TargetError %s, got %v", tc.target, err)
			case tc.target == "" && errors.As(err, &te):
				t.Fatalf("not a TargetError: %v", err)
			}
		})
	}
}
