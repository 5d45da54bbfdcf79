package oauth

import (
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"errors"
	"mime"
	"net/http"
	"regexp"
	"slices"
	"strings"
	"time"

	"github.com/warden-mcp/warden/internal/handle"
	"github.com/warden-mcp/warden/internal/store"
	"github.com/warden-mcp/warden/oauth/connector"
)

var verifierPattern = regexp.MustCompile(`^[A-Za-z0-9._~-]{43,128}$`)

// errReplay marks a second use of a single-use handle.
var errReplay = errors.New("handle already used")

// tokenResponse is RFC 6749 5.1.
type tokenResponse struct {
	AccessToken  string `json:"access_token"`
	TokenType    string `json:"token_type"`
	ExpiresIn    int64  `json:"expires_in"`
	RefreshToken string `json:"refresh_token,omitempty"`
	Scope        string `json:"scope,omitempty"`
}

// parseTokenForm checks method and content type and parses the body.
func parseTokenForm(w http.ResponseWriter, r *http.Request) bool {
	if r.Method != http.MethodPost {
		w.Header().Set("Allow", "POST")
		writeJSONError(w, jsonError{Status: http.StatusMethodNotAllowed, Code: "invalid_request", Description: "use POST"})
		return false
	}
	mt, _, _ := mime.ParseMediaType(r.Header.Get("Content-Type"))
	if mt != "application/x-www-form-urlencoded" {
		writeJSONError(w, errInvalidRequest("the body must be application/x-www-form-urlencoded"))
		return false
	}
	r.Body = http.MaxBytesReader(w, r.Body, 64<<10)
	if err := r.ParseForm(); err != nil {
		writeJSONError(w, errInvalidRequest("the body cannot be parsed"))
		return false
	}
	// Tokens belong in the body, never in the query string.
	if r.URL.RawQuery != "" {
		writeJSONError(w, errInvalidRequest("parameters must be sent in the body"))
		return false
	}
	for k, v := range r.PostForm {
		if len(v) > 1 && k != "resource" {
			writeJSONError(w, errInvalidRequest("parameter "+k+" appears more than once"))
			return false
		}
	}
	return true
}

// serveToken is the token endpoint (RFC 6749 3.2, OAuth 2.1 3.2).
func (s *Server) serveToken(w http.ResponseWriter, r *http.Request) {
	if !s.limit(w, r, s.limits.token, "token") || !parseTokenForm(w, r) {
		return
	}
	gt := r.PostForm.Get("grant_type")
	client, e := s.authenticateClient(r)
	if e != nil {
		s.metrics.tokens.WithLabelValues(grantLabel(gt), e.Code).Inc()
		writeJSONError(w, *e)
		return
	}
	var resp tokenResponse
	var err error
	switch gt {
	case grantCode:
		resp, err = s.exchangeCode(r, client)
	case grantRefr:
		resp, err = s.refresh(r, client)
	case grantCreds:
		resp, err = s.clientCredentials(r, client)
	default:
		err = jsonError{Status: http.StatusBadRequest, Code: "unsupported_grant_type", Description: "grant_type must be authorization_code, refresh_token or client_credentials"}
	}
	if err != nil {
		var je jsonError
		if !errors.As(err, &je) {
			s.log.Error("token endpoint", "grant_type", gt, "client_id", client.ID, "err", err)
			je = errServer
		}
		s.metrics.tokens.WithLabelValues(grantLabel(gt), je.Code).Inc()
		writeJSONError(w, je)
		return
	}
	s.metrics.tokens.WithLabelValues(grantLabel(gt), "issued").Inc()
	writeJSON(w, http.StatusOK, resp)
}

func grantLabel(gt string) string {
	switch gt {
	case grantCode, grantRefr, grantCreds:
		return gt
	}
	return "other"
}

func clientAllows(c store.Client, grant string) bool { return slices.Contains(c.GrantTypes, grant) }

// exchangeCode redeems an authorization code (RFC 6749 4.1.3, RFC 7636
// 4.6, RFC 8707 2.2). The code is consumed before anything else is
// checked; a second redemption revokes the grant and everything issued
// from it (RFC 6749 4.1.2, RFC 9700 4.5).
func (s *Server) exchangeCode(r *http.Request, c store.Client) (tokenResponse, error) {
	ctx := r.Context()
	if !clientAllows(c, grantCode) {
		return tokenResponse{}, jsonError{Status: http.StatusBadRequest, Code: "unauthorized_client", Description: "the client may not use the authorization_code grant"}
	}
	raw := r.PostForm.Get("code")
	if raw == "" {
		return tokenResponse{}, errInvalidRequest("code is required")
	}
	digest := handle.Digest(raw)
	var code store.Handle
	err := s.st.UpdateHandle(ctx, digest, func(h store.Handle) (store.Handle, error) {
		if h.Kind != store.HandleCode {
			return h, store.ErrNotFound
		}
		if !h.UsedAt.IsZero() {
			code = h
			return h, errReplay
		}
		h.UsedAt = s.now()
		code = h
		return h, nil
	})
	switch {
	case errors.Is(err, errReplay):
		s.revokeAfterReplay(ctx, code, "code_replay", reasonCodeReplay)
		return tokenResponse{}, errInvalidGrant("the authorization code was already used; everything issued from it is revoked")
	case errors.Is(err, store.ErrNotFound):
		return tokenResponse{}, errInvalidGrant("the authorization code is invalid or expired")
	case err != nil:
		return tokenResponse{}, err
	}
	// From here the code is spent; a failed check also ends its grant so
	// that nothing dangles from a code an attacker may hold.
	reject := func(desc string) (tokenResponse, error) {
		if err := s.revokeGrant(ctx, code.GrantID, "system", "authorization code redemption failed: "+desc); err != nil {
			s.log.Error("revoke grant after failed redemption", "err", err)
		}
		return tokenResponse{}, errInvalidGrant(desc)
	}
	if code.ClientID != c.ID {
		return reject("the code was issued to another client")
	}
	if code.RedirectURI != "" && r.PostForm.Get("redirect_uri") != code.RedirectURI {
		return reject("redirect_uri does not match the authorization request")
	}
	verifier := r.PostForm.Get("code_verifier")
	if !verifierPattern.MatchString(verifier) {
		return reject("code_verifier is missing or malformed (PKCE)")
	}
	sum := sha256.Sum256([]byte(verifier))
	if subtle.ConstantTimeCompare([]byte(base64.RawURLEncoding.EncodeToString(sum[:])), []byte(code.CodeChallenge)) != 1 {
		return reject("code_verifier does not match the code_challenge (PKCE)")
	}
	g, err := s.st.GetGrant(ctx, code.GrantID)
	if err != nil {
		return tokenResponse{}, err
	}
	if g.Revoked() || g.Expired(s.now()) {
		return tokenResponse{}, errInvalidGrant("the authorization was revoked")
	}
	resources := s.liveResources(g, code.Resources)
	if req := r.PostForm["resource"]; len(req) > 0 {
		tgt, err := s.resolveResources(ctx, req)
		if err != nil || !subset(tgt.Resources, code.Resources) {
			return reject("resource was not part of the authorization request")
		}
		resources = s.liveResources(g, tgt.Resources)
	}
	if len(resources) == 0 {
		return tokenResponse{}, errInvalidGrant("access to the requested servers was revoked")
	}
	return s.issueTokens(ctx, g, c, resources, code.Scopes, code.Scopes, "token_issued", grantCode)
}

// refresh redeems a refresh token (RFC 6749 6, OAuth 2.1 4.3). Refresh
// tokens rotate on every use; presenting a rotated one again is a replay
// and revokes the whole grant (RFC 9700 4.14.2).
func (s *Server) refresh(r *http.Request, c store.Client) (tokenResponse, error) {
	ctx := r.Context()
	if !clientAllows(c, grantRefr) {
		return tokenResponse{}, jsonError{Status: http.StatusBadRequest, Code: "unauthorized_client", Description: "the client may not use the refresh_token grant"}
	}
	raw := r.PostForm.Get("refresh_token")
	if raw == "" {
		return tokenResponse{}, errInvalidRequest("refresh_token is required")
	}
	digest := handle.Digest(raw)
	h, err := s.st.GetHandle(ctx, digest)
	if err != nil || h.Kind != store.HandleRefresh {
		if err != nil && !errors.Is(err, store.ErrNotFound) {
			return tokenResponse{}, err
		}
		return tokenResponse{}, errInvalidGrant("the refresh token is invalid or expired")
	}
	if !h.UsedAt.IsZero() {
		s.revokeAfterReplay(ctx, h, "refresh_replay", reasonRefreshReplay)
		return tokenResponse{}, errInvalidGrant("the refresh token was already used; the authorization is revoked")
	}
	if h.ClientID != c.ID {
		s.revokeAfterReplay(ctx, h, "refresh_replay", reasonRefreshOtherClient)
		return tokenResponse{}, errInvalidGrant("the refresh token was issued to another client")
	}
	g, err := s.st.GetGrant(ctx, h.GrantID)
	if err != nil {
		return tokenResponse{}, err
	}
	if g.Revoked() || g.Expired(s.now()) {
		return tokenResponse{}, errInvalidGrant("the authorization was revoked or has expired")
	}
	scopes := h.Scopes
	if req := strings.Fields(r.PostForm.Get("scope")); len(req) > 0 {
		if !subset(req, h.Scopes) {
			return tokenResponse{}, jsonError{Status: http.StatusBadRequest, Code: "invalid_scope", Description: "a refresh may only narrow the scope"}
		}
		scopes = req
	}
	resources := s.liveResources(g, g.Resources)
	if req := r.PostForm["resource"]; len(req) > 0 {
		tgt, err := s.resolveResources(ctx, req)
		if err != nil || !subset(tgt.Resources, g.Resources) {
			return tokenResponse{}, jsonError{Status: http.StatusBadRequest, Code: "invalid_target", Description: "resource was not part of the authorization"}
		}
		resources = s.liveResources(g, tgt.Resources)
	}
	if len(resources) == 0 {
		return tokenResponse{}, errInvalidGrant("access to every server of this authorization was revoked")
	}
	// Ask the IdP before spending the refresh token: a transient IdP
	// failure must leave the client able to retry.
	if g, err = s.refreshUpstream(ctx, g, s.ocfg.AccessTokenTTL.D()); err != nil {
		if errors.Is(err, connector.ErrRefused) {
			return tokenResponse{}, errInvalidGrant("the identity provider no longer accepts this user; the authorization is revoked")
		}
		s.log.Warn("refresh: identity provider", "grant_id", g.ID, "err", err)
		return tokenResponse{}, jsonError{Status: http.StatusServiceUnavailable, Code: "temporarily_unavailable", Description: "the identity provider cannot be reached; retry later"}
	}
	err = s.st.UpdateHandle(ctx, digest, func(cur store.Handle) (store.Handle, error) {
		if !cur.UsedAt.IsZero() {
			return cur, errReplay
		}
		cur.UsedAt = s.now()
		return cur, nil
	})
	if errors.Is(err, errReplay) {
		s.revokeAfterReplay(ctx, h, "refresh_replay", reasonRefreshReplay)
		return tokenResponse{}, errInvalidGrant("the refresh token was already used; the authorization is revoked")
	}
	if err != nil {
		return tokenResponse{}, err
	}
	// Sliding expiry: an authorization in use stays alive.
	exp := s.now().Add(s.ocfg.RefreshTokenTTL.D())
	if err := s.st.UpdateGrant(ctx, g.ID, func(cur store.Grant) (store.Grant, error) {
		if cur.Revoked() {
			return cur, errInvalidGrant("the authorization was revoked")
		}
		cur.ExpiresAt = exp
		return cur, nil
	}); err != nil {
		return tokenResponse{}, err
	}
	g.ExpiresAt = exp
	// The new refresh token keeps the scope of the one it replaces (RFC
	// 6749 6); only the access token is narrowed.
	return s.issueTokens(ctx, g, c, resources, scopes, h.Scopes, "token_refreshed", grantRefr)
}

// liveResources keeps the resources whose server the grant still covers:
// revoking one server of a grant removes it from grant.Servers only.
func (s *Server) liveResources(g store.Grant, resources []string) []string {
	var out []string
	for _, r := range resources {
		for _, name := range g.Servers {
			if r == s.cfg.ResourceURL(name) {
				out = append(out, r)
				break
			}
		}
	}
	return out
}

// clientCredentials issues a token to a confidential client acting as
// itself: a service or agent identity, recorded as non-human.
func (s *Server) clientCredentials(r *http.Request, c store.Client) (tokenResponse, error) {
	ctx := r.Context()
	if len(c.SecretHash) == 0 || !clientAllows(c, grantCreds) {
		return tokenResponse{}, jsonError{Status: http.StatusBadRequest, Code: "unauthorized_client", Description: "only confidential clients registered for client_credentials may use it"}
	}
	tgt, err := s.resolveResources(ctx, r.PostForm["resource"])
	if err != nil {
		return tokenResponse{}, jsonError{Status: http.StatusBadRequest, Code: "invalid_target", Description: err.Error()}
	}
	scopes, err := s.chooseScopes(ctx, r.PostForm.Get("scope"), tgt, c)
	if err != nil {
		return tokenResponse{}, jsonError{Status: http.StatusBadRequest, Code: "invalid_scope", Description: err.Error()}
	}
	now := s.now()
	name := c.Name
	if name == "" {
		name = c.ID
	}
	g := store.Grant{
		ID: "g_" + randomID(16), Subject: "client:" + c.ID, Name: name, ClientID: c.ID, ClientName: c.Name, Kind: store.KindService,
		Scopes: scopes, Resources: tgt.Resources, Servers: tgt.names(),
		CreatedAt: now, ExpiresAt: now.Add(s.ocfg.AccessTokenTTL.D()),
	}
	if err := s.st.CreateGrant(ctx, g); err != nil {
		return tokenResponse{}, err
	}
	return s.issueTokens(ctx, g, c, g.Resources, scopes, nil, "token_issued", grantCreds)
}

// issueTokens mints an access handle for resources and scopes (and a
// refresh handle with refreshScopes for user grants of clients allowed to
// refresh), audits the issuance and only then returns the raw values.
func (s *Server) issueTokens(ctx context.Context, g store.Grant, c store.Client, resources, scopes, refreshScopes []string, event, grantType string) (tokenResponse, error) {
	now := s.now()
	ttl := s.ocfg.AccessTokenTTL.D()
	atRaw, atDigest := handle.New(handle.PrefixAccess)
	at := store.Handle{Digest: atDigest, Kind: store.HandleAccess, GrantID: g.ID, ClientID: c.ID,
		Resources: resources, Scopes: scopes, IssuedAt: now, ExpiresAt: now.Add(ttl)}
	if !g.ExpiresAt.IsZero() && g.ExpiresAt.Before(at.ExpiresAt) {
		at.ExpiresAt = g.ExpiresAt
	}
	created := []string{atDigest}
	if err := s.st.CreateHandle(ctx, at); err != nil {
		return tokenResponse{}, err
	}
	resp := tokenResponse{AccessToken: atRaw, TokenType: "Bearer", ExpiresIn: int64(at.ExpiresAt.Sub(now) / time.Second), Scope: strings.Join(scopes, " ")}
	if g.Kind == store.KindUser && clientAllows(c, grantRefr) {
		rtRaw, rtDigest := handle.New(handle.PrefixRefresh)
		rt := store.Handle{Digest: rtDigest, Kind: store.HandleRefresh, GrantID: g.ID, ClientID: c.ID,
			Resources: g.Resources, Scopes: refreshScopes, IssuedAt: now, ExpiresAt: now.Add(s.ocfg.RefreshTokenTTL.D())}
		if err := s.st.CreateHandle(ctx, rt); err != nil {
			s.dropHandles(created)
			return tokenResponse{}, err
		}
		created = append(created, rtDigest)
		resp.RefreshToken = rtRaw
	}
	err := s.audit.RecordSync(ctx, store.AuditEvent{Type: event, Subject: g.Subject, ClientID: c.ID, Kind: g.Kind, GrantID: g.ID,
		Details: map[string]any{"grant_type": grantType, "resources": resources, "scopes": scopes, "refresh": resp.RefreshToken != "", "expires_at": at.ExpiresAt.UTC()}})
	if err != nil {
		// Never hand out a credential the trail does not know about.
		s.dropHandles(created)
		return tokenResponse{}, err
	}
	return resp, nil
}

func (s *Server) dropHandles(digests []string) {
	for _, d := range digests {
		_ = s.st.DeleteHandle(context.Background(), d)
	}
}

// serveRevoke is RFC 7009. Revoking a refresh token (or a code) ends the
// whole grant; revoking an access token ends that token. Unknown tokens
// and tokens of other clients answer 200 and change nothing, so the
// endpoint cannot be used to probe tokens.
func (s *Server) serveRevoke(w http.ResponseWriter, r *http.Request) {
	if !s.limit(w, r, s.limits.token, "revoke") || !parseTokenForm(w, r) {
		return
	}
	c, e := s.authenticateClient(r)
	if e != nil {
		writeJSONError(w, *e)
		return
	}
	raw := r.PostForm.Get("token")
	if raw == "" {
		writeJSONError(w, errInvalidRequest("token is required"))
		return
	}
	ctx := r.Context()
	digest := handle.Digest(raw)
	h, err := s.st.GetHandle(ctx, digest)
	if err == nil && h.ClientID == c.ID {
		switch h.Kind {
		case store.HandleAccess:
			err = s.st.DeleteHandle(ctx, digest)
			if err == nil {
				err = s.audit.RecordSync(ctx, store.AuditEvent{Type: "token_revoked", Actor: "client:" + c.ID, ClientID: c.ID, GrantID: h.GrantID, Details: map[string]any{"token_type": "access_token"}})
			}
		default:
			err = s.audit.RecordSync(ctx, store.AuditEvent{Type: "token_revoked", Actor: "client:" + c.ID, ClientID: c.ID, GrantID: h.GrantID, Details: map[string]any{"token_type": string(h.Kind)}})
			if err == nil {
				err = s.revokeGrant(ctx, h.GrantID, "client:"+c.ID, reasonByClient)
			}
		}
	}
	if err != nil && !errors.Is(err, store.ErrNotFound) {
		s.log.Error("revoke", "err", err)
		writeJSONError(w, errServer)
		return
	}
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(http.StatusOK)
}

// serveIntrospect is RFC 7662 for authenticated confidential clients,
// about their own tokens. Anything else is reported inactive.
func (s *Server) serveIntrospect(w http.ResponseWriter, r *http.Request) {
	if !s.limit(w, r, s.limits.token, "introspect") || !parseTokenForm(w, r) {
		return
	}
	c, e := s.authenticateClient(r)
	if e == nil && len(c.SecretHash) == 0 {
		e = &jsonError{Status: http.StatusUnauthorized, Code: "invalid_client", Description: "introspection requires client authentication"}
	}
	if e != nil {
		writeJSONError(w, *e)
		return
	}
	inactive := map[string]any{"active": false}
	h, g, err := s.st.ResolveHandle(r.Context(), handle.Digest(r.PostForm.Get("token")))
	if err != nil || h.ClientID != c.ID || h.Kind == store.HandleCode || g.Revoked() || g.Expired(s.now()) || (h.Kind == store.HandleRefresh && !h.UsedAt.IsZero()) {
		writeJSON(w, http.StatusOK, inactive)
		return
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
}
