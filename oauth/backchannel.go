package oauth

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"net/http"
	"time"

	"github.com/warden-mcp/warden/internal/grant"
	"github.com/warden-mcp/warden/internal/store"
	"github.com/warden-mcp/warden/oauth/connector"
)

// BackchannelLogoutPath is where the IdP posts logout tokens: register
// <issuer>/oauth/backchannel-logout as the client's
// backchannel_logout_uri at the IdP (docs/oauth.md).
const BackchannelLogoutPath = "/oauth/backchannel-logout"

// LogoutVerifier is a connector that verifies the IdP's logout tokens
// (*connector.OIDC).
type LogoutVerifier interface {
	VerifyLogoutToken(ctx context.Context, raw string) (connector.Logout, error)
}

// logoutTokenSeen is the session kind remembering logout tokens by jti.
const logoutTokenSeen = "bcl_jti"

// logoutTokenMemory is how long a logout token's jti is remembered:
// longer than any logout token lives (Back-Channel Logout 1.0 recommends
// an exp of two minutes at most).
const logoutTokenMemory = 24 * time.Hour

// serveBackchannelLogout is OpenID Connect Back-Channel Logout 1.0
// (section 2.5 to 2.8): the IdP posts a signed logout token, and Warden
// revokes the grants of that session (sid), or of that user (sub only),
// signed in through this IdP connector, through internal/grant, with the
// IdP as the actor. Answers: 200 when done (also when nothing matched:
// the IdP must not retry), 400 with an error for a token Warden refuses
// (bad signature, wrong iss/aud, no events claim, a nonce, a replayed
// jti), 500 when the revocation failed (the IdP may retry).
func (s *Server) serveBackchannelLogout(w http.ResponseWriter, r *http.Request) error {
	w.Header().Set("Cache-Control", "no-store")
	if r.Method != http.MethodPost {
		w.Header().Set("Allow", http.MethodPost)
		return &Error{Status: http.StatusMethodNotAllowed, Code: "invalid_request", Description: "logout tokens are POSTed"}
	}
	if err := s.limit(r, s.limits.token, "backchannel_logout"); err != nil {
		return err
	}
	if err := parseForm(w, r); err != nil {
		return err
	}
	raw := r.PostForm.Get("logout_token")
	if raw == "" {
		return errInvalidRequest("logout_token is required")
	}
	lt, err := s.logoutVerifier.VerifyLogoutToken(r.Context(), raw)
	if err != nil {
		s.log.Warn("back-channel logout token refused", "err", err)
		if errors.Is(err, connector.ErrInvalidLogoutToken) {
			return errInvalidRequest(err.Error())
		}
		return &Error{Status: http.StatusServiceUnavailable, Code: "temporarily_unavailable", Description: "the identity provider's keys could not be read"}
	}
	// A jti is used once. Read then write rather than one atomic step:
	// two concurrent deliveries of one token would both revoke the same
	// grants, which changes nothing the first did not.
	key := jtiKey(lt.Issuer, lt.JTI)
	if _, err := s.st.GetSession(r.Context(), logoutTokenSeen, key); err == nil {
		s.log.Warn("back-channel logout token replayed", "issuer", lt.Issuer)
		return errInvalidRequest("the logout token was already used (jti replay)")
	} else if !errors.Is(err, store.ErrNotFound) {
		return fmt.Errorf("read logout token jti: %w", err)
	}
	if err := s.st.PutSession(r.Context(), logoutTokenSeen, key, []byte("1"), logoutTokenMemory); err != nil {
		return fmt.Errorf("remember logout token jti: %w", err)
	}
	t := grant.Target{Connector: s.o.ConnectorID, Subject: lt.Subject, IdPSession: lt.SessionID}
	res, err := s.grants.Revoke(r.Context(), "idp:"+lt.Issuer, t, grant.ReasonIdPLogout)
	if err != nil {
		return fmt.Errorf("back-channel logout: %w", err)
	}
	s.log.Info("back-channel logout", "issuer", lt.Issuer, "subject", lt.Subject, "by_session", lt.SessionID != "", "revoked", len(res.Revoked))
	w.WriteHeader(http.StatusOK)
	return nil
}

// jtiKey keys a logout token by issuer and jti, hashed: the store's
// session ids need not hold what an IdP puts in a jti.
func jtiKey(iss, jti string) string {
	sum := sha256.Sum256([]byte(iss + "\x00" + jti))
	return hex.EncodeToString(sum[:])
}
