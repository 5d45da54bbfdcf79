package connector

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/coreos/go-oidc/v3/oidc"
)

// BackchannelLogoutEvent is the events member a logout token carries
// (OpenID Connect Back-Channel Logout 1.0, section 2.4).
const BackchannelLogoutEvent = "http://schemas.openid.net/event/backchannel-logout"

// Logout is a verified logout token: the IdP ended the session SessionID
// of Subject (either may be empty, not both).
type Logout struct {
	Issuer    string
	Subject   string
	SessionID string
	// JTI identifies the token, for replay detection; IssuedAt is when the
	// IdP issued it.
	JTI      string
	IssuedAt time.Time
}

// ErrInvalidLogoutToken marks a logout token Warden refuses.
var ErrInvalidLogoutToken = errors.New("invalid logout token")

// VerifyLogoutToken validates a Back-Channel Logout token (section 2.6):
// signature with the IdP's published keys and its alg, iss, aud (Warden's
// client id), iat, the events claim with the back-channel logout member,
// sub or sid, and no nonce. exp, optional in logout tokens, is checked
// when present. Replay (jti) is the caller's to check.
func (o *OIDC) VerifyLogoutToken(ctx context.Context, raw string) (Logout, error) {
	_, _, p, err := o.discover(ctx)
	if err != nil {
		return Logout{}, err
	}
	// Logout tokens need not carry exp: the verifier's own check would
	// refuse those; exp is checked below when present.
	v := p.Verifier(&oidc.Config{ClientID: o.cfg.ClientID, SkipExpiryCheck: true, Now: o.now})
	tok, err := v.Verify(o.ctx(ctx), raw)
	if err != nil {
		return Logout{}, fmt.Errorf("%w: %v", ErrInvalidLogoutToken, err)
	}
	var c struct {
		Sid    string                     `json:"sid"`
		JTI    string                     `json:"jti"`
		Nonce  *string                    `json:"nonce"`
		Exp    *int64                     `json:"exp"`
		Events map[string]json.RawMessage `json:"events"`
	}
	if err := tok.Claims(&c); err != nil {
		return Logout{}, fmt.Errorf("%w: claims: %v", ErrInvalidLogoutToken, err)
	}
	switch {
	case c.Nonce != nil:
		return Logout{}, fmt.Errorf("%w: it carries a nonce (an ID token is not a logout token)", ErrInvalidLogoutToken)
	case c.Events == nil || c.Events[BackchannelLogoutEvent] == nil:
		return Logout{}, fmt.Errorf("%w: events has no %s member", ErrInvalidLogoutToken, BackchannelLogoutEvent)
	case tok.Subject == "" && c.Sid == "":
		return Logout{}, fmt.Errorf("%w: neither sub nor sid", ErrInvalidLogoutToken)
	case c.JTI == "":
		return Logout{}, fmt.Errorf("%w: no jti", ErrInvalidLogoutToken)
	case tok.IssuedAt.IsZero():
		return Logout{}, fmt.Errorf("%w: no iat", ErrInvalidLogoutToken)
	case c.Exp != nil && !o.now().Before(time.Unix(*c.Exp, 0)):
		return Logout{}, fmt.Errorf("%w: expired", ErrInvalidLogoutToken)
	}
	return Logout{Issuer: tok.Issuer, Subject: tok.Subject, SessionID: c.Sid, JTI: c.JTI, IssuedAt: tok.IssuedAt}, nil
}

// ErrNoRevocationEndpoint: the IdP's discovery document advertises no
// revocation_endpoint (RFC 7009), so its tokens cannot be revoked there.
var ErrNoRevocationEndpoint = errors.New("identity provider advertises no revocation_endpoint")

// RevokeRefreshToken revokes an IdP refresh token at the IdP's RFC 7009
// revocation endpoint, authenticating as Warden's client
// (client_secret_basic). x/oauth2 has no revocation call. Errors never
// carry the token or the IdP's response body.
func (o *OIDC) RevokeRefreshToken(ctx context.Context, token string) error {
	_, _, p, err := o.discover(ctx)
	if err != nil {
		return err
	}
	var meta struct {
		RevocationEndpoint string `json:"revocation_endpoint"`
	}
	if err := p.Claims(&meta); err != nil {
		return fmt.Errorf("read discovery document: %w", err)
	}
	if meta.RevocationEndpoint == "" {
		return ErrNoRevocationEndpoint
	}
	form := url.Values{"token": {token}, "token_type_hint": {"refresh_token"}}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, meta.RevocationEndpoint, strings.NewReader(form.Encode()))
	if err != nil {
		return fmt.Errorf("revocation request: %w", err)
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	// RFC 6749 section 2.3.1: form-encode the credentials before Basic.
	req.SetBasicAuth(url.QueryEscape(o.cfg.ClientID), url.QueryEscape(o.cfg.ClientSecret))
	resp, err := o.client.Do(req)
	if err != nil {
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err // the URL is the IdP's; the token is in the body, not in it
		}
		return fmt.Errorf("revoke at identity provider: %w", err)
	}
	defer resp.Body.Close()
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
	// RFC 7009 section 2.2: 200 whether or not the token was valid.
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("revoke at identity provider: status %d", resp.StatusCode)
	}
	return nil
}
