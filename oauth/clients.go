package oauth

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"slices"
	"strings"

	"github.com/warden-mcp/warden/internal/handle"
	"github.com/warden-mcp/warden/internal/store"
)

// Client sources recorded in store.Client.Source.
const (
	sourceDCR    = "dcr"
	sourceCIMD   = "cimd"
	sourceConfig = "config"
)

// Auth methods Warden accepts at the token endpoint.
const (
	authNone   = "none"
	authBasic  = "client_secret_basic"
	authPost   = "client_secret_post"
	grantCode  = "authorization_code"
	grantRefr  = "refresh_token"
	grantCreds = "client_credentials"
)

// clientMetadata is the RFC 7591 client metadata Warden understands; the
// same shape is a Client ID Metadata Document.
type clientMetadata struct {
	ClientID                string   `json:"client_id,omitempty"`
	ClientSecret            string   `json:"client_secret,omitempty"`
	RedirectURIs            []string `json:"redirect_uris,omitempty"`
	TokenEndpointAuthMethod string   `json:"token_endpoint_auth_method,omitempty"`
	GrantTypes              []string `json:"grant_types,omitempty"`
	ResponseTypes           []string `json:"response_types,omitempty"`
	ClientName              string   `json:"client_name,omitempty"`
	ClientURI               string   `json:"client_uri,omitempty"`
	LogoURI                 string   `json:"logo_uri,omitempty"`
	Scope                   string   `json:"scope,omitempty"`
	Contacts                []string `json:"contacts,omitempty"`
	TOSURI                  string   `json:"tos_uri,omitempty"`
	PolicyURI               string   `json:"policy_uri,omitempty"`
	SoftwareID              string   `json:"software_id,omitempty"`
	SoftwareVersion         string   `json:"software_version,omitempty"`
	ApplicationType         string   `json:"application_type,omitempty"`
}

// errMetadata is RFC 7591 3.2.2 invalid_client_metadata / invalid_redirect_uri.
func errMetadata(code, f string, a ...any) jsonError {
	return jsonError{Status: http.StatusBadRequest, Code: code, Description: fmt.Sprintf(f, a...)}
}

// normalize fills RFC 7591 defaults and checks the metadata. cimd applies
// the metadata document rules: public clients only, no secret.
func (m *clientMetadata) normalize(cimd bool) *jsonError {
	fail := func(e jsonError) *jsonError { return &e }
	if len(m.GrantTypes) == 0 {
		m.GrantTypes = []string{grantCode}
	}
	if len(m.ResponseTypes) == 0 {
		m.ResponseTypes = []string{"code"}
	}
	if m.TokenEndpointAuthMethod == "" {
		m.TokenEndpointAuthMethod = authBasic
		if cimd {
			m.TokenEndpointAuthMethod = authNone
		}
	}
	switch m.TokenEndpointAuthMethod {
	case authNone:
	case authBasic, authPost:
		if cimd {
			return fail(errMetadata("invalid_client_metadata", "a client metadata document client must use token_endpoint_auth_method none"))
		}
	default:
		return fail(errMetadata("invalid_client_metadata", "token_endpoint_auth_method %q is not supported", m.TokenEndpointAuthMethod))
	}
	if cimd && m.ClientSecret != "" {
		return fail(errMetadata("invalid_client_metadata", "a client metadata document must not contain client_secret"))
	}
	for _, g := range m.GrantTypes {
		switch g {
		case grantCode, grantRefr:
		case grantCreds:
			if m.TokenEndpointAuthMethod == authNone {
				return fail(errMetadata("invalid_client_metadata", "client_credentials needs a confidential client"))
			}
		default:
			return fail(errMetadata("invalid_client_metadata", "grant type %q is not supported", g))
		}
	}
	for _, rt := range m.ResponseTypes {
		if rt != "code" {
			return fail(errMetadata("invalid_client_metadata", "response type %q is not supported", rt))
		}
	}
	if slices.Contains(m.GrantTypes, grantCode) && len(m.RedirectURIs) == 0 {
		return fail(errMetadata("invalid_redirect_uri", "redirect_uris is required for the authorization_code grant"))
	}
	for _, u := range m.RedirectURIs {
		if err := validateRedirectURI(u); err != nil {
			return fail(errMetadata("invalid_redirect_uri", "%v", err))
		}
	}
	for _, u := range []string{m.ClientURI, m.LogoURI, m.TOSURI, m.PolicyURI} {
		if u == "" {
			continue
		}
		if p, err := url.Parse(u); err != nil || (p.Scheme != "https" && p.Scheme != "http") || p.Host == "" {
			return fail(errMetadata("invalid_client_metadata", "%q is not an http(s) URL", u))
		}
	}
	if len(m.ClientName) > 200 {
		return fail(errMetadata("invalid_client_metadata", "client_name is too long"))
	}
	for _, sc := range strings.Fields(m.Scope) {
		if strings.ContainsAny(sc, "\"\\") {
			return fail(errMetadata("invalid_client_metadata", "invalid scope %q", sc))
		}
	}
	return nil
}

// validateRedirectURI enforces the redirect URI rules of OAuth 2.1 and
// RFC 8252: https anywhere, http only to a loopback host (native apps on
// an ephemeral port), or a private-use scheme in reverse-domain form. No
// fragments, no user info, no wildcards.
func validateRedirectURI(raw string) error {
	u, err := url.Parse(raw)
	if err != nil || raw == "" {
		return fmt.Errorf("redirect URI %q cannot be parsed", raw)
	}
	if u.Fragment != "" || strings.Contains(raw, "#") {
		return fmt.Errorf("redirect URI %q must not have a fragment", raw)
	}
	if u.User != nil {
		return fmt.Errorf("redirect URI %q must not contain user info", raw)
	}
	if strings.Contains(raw, "*") {
		return fmt.Errorf("redirect URI %q must not contain wildcards", raw)
	}
	switch u.Scheme {
	case "https":
		if u.Host == "" {
			return fmt.Errorf("redirect URI %q has no host", raw)
		}
	case "http":
		if !isLoopbackHost(u.Hostname()) {
			return fmt.Errorf("redirect URI %q: http is only allowed for loopback addresses (127.0.0.1, [::1], localhost)", raw)
		}
	case "":
		return fmt.Errorf("redirect URI %q is not absolute", raw)
	default:
		// RFC 8252 7.1: private-use schemes are reverse domain names, which
		// also keeps out javascript:, data:, file: and friends.
		if !strings.Contains(u.Scheme, ".") {
			return fmt.Errorf("redirect URI %q: a private-use scheme must be a reverse domain name such as com.example.app", raw)
		}
	}
	return nil
}

func isLoopbackHost(h string) bool {
	if h == "localhost" {
		return true
	}
	ip := net.ParseIP(h)
	return ip != nil && ip.IsLoopback()
}

// redirectMatches compares a requested redirect URI with a registered one:
// exactly, except that a loopback IP literal may use any port (RFC 8252
// 7.3, OAuth 2.1 section 8.4.2).
func redirectMatches(registered, requested string) bool {
	if registered == requested {
		return true
	}
	a, err1 := url.Parse(registered)
	b, err2 := url.Parse(requested)
	if err1 != nil || err2 != nil || a.Scheme != "http" || b.Scheme != "http" {
		return false
	}
	ip := net.ParseIP(a.Hostname())
	if ip == nil || !ip.IsLoopback() {
		return false
	}
	return a.Hostname() == b.Hostname() && a.EscapedPath() == b.EscapedPath() && a.RawQuery == b.RawQuery && a.User == nil && b.User == nil && b.Fragment == ""
}

// registrationAllowed applies the registration policy to a request.
func (s *Server) registrationAllowed(r *http.Request, m clientMetadata) *jsonError {
	reg := s.ocfg.Registration
	switch reg.Mode {
	case "disabled":
		return &jsonError{Status: http.StatusForbidden, Code: "access_denied", Description: "dynamic client registration is disabled"}
	case "token":
		tok, ok := bearer(r)
		if !ok || !handle.Equal(tok, handle.Sum(reg.InitialAccessToken)) {
			return &jsonError{Status: http.StatusUnauthorized, Code: "invalid_token", Description: "an initial access token is required to register"}
		}
	case "allowlist":
		for _, raw := range m.RedirectURIs {
			u, _ := url.Parse(raw)
			host := u.Hostname()
			if u.Scheme != "http" && u.Scheme != "https" {
				host = u.Scheme
			}
			if !slices.Contains(reg.AllowedHosts, host) {
				e := errMetadata("invalid_redirect_uri", "redirect URI host %q is not allowed by the registration policy", host)
				return &e
			}
		}
	}
	return nil
}

func bearer(r *http.Request) (string, bool) {
	h := r.Header.Get("Authorization")
	if len(h) > 7 && strings.EqualFold(h[:7], "bearer ") {
		return strings.TrimSpace(h[7:]), true
	}
	return "", false
}

// serveRegister is RFC 7591 dynamic client registration.
func (s *Server) serveRegister(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodPost {
		w.Header().Set("Allow", "POST")
		writeJSONError(w, jsonError{Status: http.StatusMethodNotAllowed, Code: "invalid_request", Description: "use POST"})
		return
	}
	if !s.limit(w, r, s.limits.register, "register") {
		return
	}
	var m clientMetadata
	body, err := io.ReadAll(io.LimitReader(r.Body, 64<<10))
	if err == nil {
		err = json.Unmarshal(body, &m)
	}
	if err != nil {
		s.metrics.registrations.WithLabelValues(sourceDCR, "invalid").Inc()
		writeJSONError(w, errMetadata("invalid_client_metadata", "the body must be a JSON client metadata object"))
		return
	}
	if e := s.registrationAllowed(r, m); e != nil {
		s.metrics.registrations.WithLabelValues(sourceDCR, "refused").Inc()
		writeJSONError(w, *e)
		return
	}
	m.ClientID, m.ClientSecret = "", ""
	if e := m.normalize(false); e != nil {
		s.metrics.registrations.WithLabelValues(sourceDCR, "invalid").Inc()
		writeJSONError(w, *e)
		return
	}
	now := s.now()
	c := store.Client{
		ID:                      "c_" + randomID(16),
		Name:                    m.ClientName,
		RedirectURIs:            m.RedirectURIs,
		GrantTypes:              m.GrantTypes,
		ResponseTypes:           m.ResponseTypes,
		TokenEndpointAuthMethod: m.TokenEndpointAuthMethod,
		Scope:                   m.Scope,
		ClientURI:               m.ClientURI,
		LogoURI:                 m.LogoURI,
		Kind:                    store.KindUser,
		Source:                  sourceDCR,
		CreatedAt:               now,
	}
	if slices.Contains(m.GrantTypes, grantCreds) && !slices.Contains(m.GrantTypes, grantCode) {
		c.Kind = store.KindService
	}
	var secret string
	if m.TokenEndpointAuthMethod != authNone {
		secret, _ = handle.New(handle.PrefixSecret)
		c.SecretHash = handle.Sum(secret)
	}
	regToken, _ := handle.New(handle.PrefixRegTok)
	c.RegistrationTokenHash = handle.Sum(regToken)
	c.Metadata, _ = json.Marshal(m)

	if err := s.st.CreateClient(r.Context(), c); err != nil {
		s.log.Error("register client", "err", err)
		writeJSONError(w, errServer)
		return
	}
	ev := store.AuditEvent{Type: "client_registered", ClientID: c.ID, Kind: c.Kind, Details: map[string]any{
		"source": sourceDCR, "name": c.Name, "auth_method": c.TokenEndpointAuthMethod,
		"grant_types": c.GrantTypes, "redirect_hosts": redirectHosts(c.RedirectURIs), "source_addr": s.limits.source(r),
	}}
	if err := s.audit.RecordSync(r.Context(), ev); err != nil {
		// Unaudited registrations must not exist: undo and fail.
		_ = s.st.DeleteClient(context.WithoutCancel(r.Context()), c.ID)
		s.log.Error("audit client registration", "err", err)
		writeJSONError(w, errServer)
		return
	}
	s.metrics.registrations.WithLabelValues(sourceDCR, "registered").Inc()
	resp := s.clientResponse(c, m)
	if secret != "" {
		resp["client_secret"] = secret
		resp["client_secret_expires_at"] = 0
	}
	resp["registration_access_token"] = regToken
	writeJSON(w, http.StatusCreated, resp)
}

func (s *Server) clientResponse(c store.Client, m clientMetadata) map[string]any {
	resp := map[string]any{}
	raw, _ := json.Marshal(m)
	_ = json.Unmarshal(raw, &resp)
	delete(resp, "client_secret")
	resp["client_id"] = c.ID
	resp["client_id_issued_at"] = c.CreatedAt.Unix()
	resp["registration_client_uri"] = s.endpoint("/oauth/register/" + c.ID)
	return resp
}

func redirectHosts(uris []string) []string {
	var out []string
	for _, raw := range uris {
		if u, err := url.Parse(raw); err == nil {
			h := u.Host
			if h == "" {
				h = u.Scheme + ":"
			}
			out = union(out, []string{h})
		}
	}
	return out
}

// serveClientConfiguration is the RFC 7592 client configuration endpoint:
// read and delete, authenticated with the registration access token.
func (s *Server) serveClientConfiguration(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("id")
	tok, ok := bearer(r)
	c, err := s.st.GetClient(r.Context(), id)
	// Unknown client and wrong token answer the same, so the endpoint does
	// not reveal which client ids exist (RFC 7592 2).
	if !ok || err != nil || c.Source != sourceDCR || !handle.Equal(tok, c.RegistrationTokenHash) {
		if err != nil && !errors.Is(err, store.ErrNotFound) {
			s.log.Error("client configuration", "err", err)
			writeJSONError(w, errServer)
			return
		}
		w.Header().Set("WWW-Authenticate", `Bearer error="invalid_token"`)
		writeJSON(w, http.StatusUnauthorized, map[string]string{"error": "invalid_token"})
		return
	}
	switch r.Method {
	case http.MethodGet:
		var m clientMetadata
		_ = json.Unmarshal(c.Metadata, &m)
		writeJSON(w, http.StatusOK, s.clientResponse(c, m))
	case http.MethodDelete:
		if err := s.deleteClient(r.Context(), c, "client:"+c.ID); err != nil {
			s.log.Error("delete client", "err", err)
			writeJSONError(w, errServer)
			return
		}
		w.WriteHeader(http.StatusNoContent)
	default:
		w.Header().Set("Allow", "GET, DELETE")
		writeJSONError(w, jsonError{Status: http.StatusMethodNotAllowed, Code: "invalid_request", Description: "client updates are not supported; delete and register again"})
	}
}

// deleteClient revokes every grant of the client, forgets its consents and
// removes it.
func (s *Server) deleteClient(ctx context.Context, c store.Client, actor string) error {
	grants, err := s.st.ListGrants(ctx, store.GrantFilter{ClientID: c.ID})
	if err != nil {
		return err
	}
	for _, g := range grants {
		if err := s.revokeGrant(ctx, g.ID, actor, reasonClientDeleted); err != nil {
			return err
		}
	}
	if _, err := s.st.DeleteConsents(ctx, "", c.ID); err != nil {
		return err
	}
	if err := s.audit.RecordSync(ctx, store.AuditEvent{Type: "client_deleted", Actor: actor, ClientID: c.ID, Kind: c.Kind}); err != nil {
		return err
	}
	return s.st.DeleteClient(ctx, c.ID)
}

// lookupClient finds a client by id; https ids are Client ID Metadata
// Documents, fetched (and cached) on demand.
func (s *Server) lookupClient(ctx context.Context, id string) (store.Client, error) {
	if id == "" {
		return store.Client{}, store.ErrNotFound
	}
	if strings.HasPrefix(id, "https://") {
		if s.cimd == nil {
			return store.Client{}, fmt.Errorf("client metadata documents are disabled: %w", store.ErrNotFound)
		}
		return s.cimdClient(ctx, id)
	}
	return s.st.GetClient(ctx, id)
}

// authenticateClient applies RFC 6749 2.3.1 (client_secret_basic,
// client_secret_post) or identifies a public client by client_id.
func (s *Server) authenticateClient(r *http.Request) (store.Client, *jsonError) {
	fail := func(e jsonError) (store.Client, *jsonError) { return store.Client{}, &e }
	id, secret, basic := r.BasicAuth()
	if basic {
		var err1, err2 error
		id, err1 = url.QueryUnescape(id)
		secret, err2 = url.QueryUnescape(secret)
		if err1 != nil || err2 != nil {
			return fail(errInvalidClient("malformed client credentials"))
		}
		if r.PostForm.Get("client_secret") != "" {
			return fail(errInvalidRequest("use one client authentication method"))
		}
		if fid := r.PostForm.Get("client_id"); fid != "" && fid != id {
			return fail(errInvalidClient("client_id does not match the credentials"))
		}
	} else {
		id, secret = r.PostForm.Get("client_id"), r.PostForm.Get("client_secret")
	}
	if id == "" {
		return fail(errInvalidClient("client authentication is required"))
	}
	c, err := s.lookupClient(r.Context(), id)
	if err != nil {
		if !errors.Is(err, store.ErrNotFound) {
			s.log.Warn("client lookup", "err", err)
		}
		return fail(errInvalidClient("unknown client"))
	}
	if len(c.SecretHash) == 0 {
		if secret != "" {
			return fail(errInvalidClient("this client is public and has no secret"))
		}
		return c, nil
	}
	if secret == "" || !handle.Equal(secret, c.SecretHash) {
		return fail(errInvalidClient("client authentication failed"))
	}
	return c, nil
}

// reconcileClients writes the clients declared in the config to the store
// and removes config clients no longer declared.
func (s *Server) reconcileClients(ctx context.Context) error {
	declared := map[string]bool{}
	for _, cc := range s.ocfg.Clients {
		declared[cc.ID] = true
		c := store.Client{
			ID:                      cc.ID,
			Name:                    cc.Name,
			RedirectURIs:            cc.RedirectURIs,
			GrantTypes:              cc.GrantTypes,
			ResponseTypes:           []string{"code"},
			TokenEndpointAuthMethod: authNone,
			Scope:                   cc.Scope,
			Kind:                    store.KindUser,
			Source:                  sourceConfig,
			CreatedAt:               s.now(),
		}
		if len(c.GrantTypes) == 0 {
			c.GrantTypes = []string{grantCode, grantRefr}
		}
		if cc.Secret != "" {
			c.SecretHash = handle.Sum(cc.Secret)
			c.TokenEndpointAuthMethod = authBasic
		}
		if slices.Contains(c.GrantTypes, grantCreds) && !slices.Contains(c.GrantTypes, grantCode) {
			c.Kind = store.KindService
		}
		for _, u := range c.RedirectURIs {
			if err := validateRedirectURI(u); err != nil {
				return fmt.Errorf("oauth.clients %q: %w", cc.ID, err)
			}
		}
		err := s.st.CreateClient(ctx, c)
		if errors.Is(err, store.ErrAlreadyExists) {
			err = s.st.UpdateClient(ctx, c.ID, func(old store.Client) (store.Client, error) {
				if old.Source != sourceConfig {
					return old, fmt.Errorf("client id %q is already taken by a %s client", c.ID, old.Source)
				}
				c.CreatedAt = old.CreatedAt
				c.Version = old.Version
				return c, nil
			})
		}
		if err != nil {
			return fmt.Errorf("oauth: reconcile client %q: %w", cc.ID, err)
		}
	}
	all, err := s.st.ListClients(ctx)
	if err != nil {
		return fmt.Errorf("oauth: list clients: %w", err)
	}
	for _, c := range all {
		if c.Source == sourceConfig && !declared[c.ID] {
			if err := s.deleteClient(ctx, c, "config"); err != nil {
				return fmt.Errorf("oauth: remove client %q no longer in the config: %w", c.ID, err)
			}
		}
	}
	return nil
}

func (s *Server) skipConsent(clientID string) bool {
	for _, c := range s.ocfg.Clients {
		if c.ID == clientID {
			return c.SkipConsent
		}
	}
	return false
}

// randomID returns n random bytes, base64url encoded.
func randomID(n int) string {
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		panic("oauth: crypto/rand: " + err.Error())
	}
	return base64.RawURLEncoding.EncodeToString(b)
}
