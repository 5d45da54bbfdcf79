package oauth

import (
	"net/http"
	"strings"

	"github.com/warden-mcp/warden/internal/handle"
	"github.com/warden-mcp/warden/internal/store"
)

// serveRevoke is RFC 7009, through the grant service's one revocation
// operation. Unknown tokens and tokens of other clients answer 200 and
// change nothing, so the endpoint cannot be used to probe tokens.
func (s *Server) serveRevoke(w http.ResponseWriter, r *http.Request) error {
	if err := s.limit(r, s.limits.token, "revoke"); err != nil {
		return err
	}
	if err := parseForm(w, r); err != nil {
		return err
	}
	c, err := s.authenticateClient(r)
	if err != nil {
		return err
	}
	raw := r.PostForm.Get("token")
	if raw == "" {
		return errInvalidRequest("token is required")
	}
	if len(raw) <= maxHandleParam {
		if err := s.grants.RevokeToken(r.Context(), c.ID, raw); err != nil {
			return err
		}
	}
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(http.StatusOK)
	return nil
}

// serveIntrospect is RFC 7662 for authenticated confidential clients,
// about their own tokens. Anything else is reported inactive.
func (s *Server) serveIntrospect(w http.ResponseWriter, r *http.Request) error {
	if err := s.limit(r, s.limits.token, "introspect"); err != nil {
		return err
	}
	if err := parseForm(w, r); err != nil {
		return err
	}
	c, err := s.authenticateClient(r)
	if err != nil {
		return err
	}
	if len(c.SecretHash) == 0 {
		return errInvalidClient("introspection requires client authentication")
	}
	inactive := map[string]any{"active": false}
	raw := r.PostForm.Get("token")
	if len(raw) > maxHandleParam {
		writeJSON(w, http.StatusOK, inactive)
		return nil
	}
	h, g, err := s.st.ResolveHandle(r.Context(), handle.Digest(raw))
	if err != nil || h.ClientID != c.ID || h.Kind == store.HandleCode || g.Revoked() || g.Expired(s.now()) || (h.Kind == store.HandleRefresh && !h.UsedAt.IsZero()) {
		writeJSON(w, http.StatusOK, inactive)
		return nil
	}
	resp := map[string]any{
		"active": true, "client_id": h.ClientID, "scope": strings.Join(h.Scopes, " "),
		"exp": h.ExpiresAt.Unix(), "iat": h.IssuedAt.Unix(), "sub": g.Subject, "aud": h.Resources,
		"iss": s.issuer, "token_type": "Bearer",
	}
	if h.Kind == store.HandleRefresh {
		resp["token_type"] = "refresh_token"
	}
	if g.Email != "" {
		resp["username"] = g.Email
	}
	writeJSON(w, http.StatusOK, resp)
	return nil
}
