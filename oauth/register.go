package oauth

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"slices"

	"github.com/warden-mcp/warden/internal/bearer"
	"github.com/warden-mcp/warden/internal/handle"
	"github.com/warden-mcp/warden/internal/store"
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
func errMetadata(code, f string, a ...any) *Error {
	return oauthError(http.StatusBadRequest, code, fmt.Sprintf(f, a...))
}

// Bounds of one registration, besides the body size.
const (
	maxRedirectURIs = 10
	maxListItems    = 10
	maxClientName   = 200
)

// normalize fills RFC 7591 defaults and checks the metadata. cimd applies
// the metadata document rules: public clients only, no secret.
func (m *clientMetadata) normalize(cimd bool) *Error {
	if len(m.GrantTypes) == 0 {
		m.GrantTypes = []string{grantCode}
	}
	if len(m.ResponseTypes) == 0 {
		m.ResponseTypes = []string{"code"}
	}
	if len(m.GrantTypes) > maxListItems || len(m.ResponseTypes) > maxListItems || len(m.Contacts) > maxListItems {
		return errMetadata("invalid_client_metadata", "too many grant_types, response_types or contacts")
	}
	if len(m.RedirectURIs) > maxRedirectURIs {
		return errMetadata("invalid_redirect_uri", "at most %d redirect URIs", maxRedirectURIs)
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
			return errMetadata("invalid_client_metadata", "a client metadata document client must use token_endpoint_auth_method none")
		}
	default:
		return errMetadata("invalid_client_metadata", "token_endpoint_auth_method %q is not supported", truncate(m.TokenEndpointAuthMethod, 64))
	}
	if cimd && m.ClientSecret != "" {
		return errMetadata("invalid_client_metadata", "a client metadata document must not contain client_secret")
	}
	for _, g := range m.GrantTypes {
		switch g {
		case grantCode, grantRefr:
		case grantCreds:
			if m.TokenEndpointAuthMethod == authNone {
				return errMetadata("invalid_client_metadata", "client_credentials needs a confidential client")
			}
		default:
			return errMetadata("invalid_client_metadata", "grant type %q is not supported", truncate(g, 64))
		}
	}
	for _, rt := range m.ResponseTypes {
		if rt != "code" {
			return errMetadata("invalid_client_metadata", "response type %q is not supported", truncate(rt, 64))
		}
	}
	if slices.Contains(m.GrantTypes, grantCode) && len(m.RedirectURIs) == 0 {
		return errMetadata("invalid_redirect_uri", "redirect_uris is required for the authorization_code grant")
	}
	for _, u := range m.RedirectURIs {
		if err := validateRedirectURI(u); err != nil {
			return errMetadata("invalid_redirect_uri", "%v", err)
		}
	}
	if e := m.checkApplicationType(); e != nil {
		return e
	}
	for _, u := range []string{m.ClientURI, m.LogoURI, m.TOSURI, m.PolicyURI} {
		if u == "" {
			continue
		}
		if p, err := url.Parse(u); err != nil || len(u) > maxURI || (p.Scheme != "https" && p.Scheme != "http") || p.Host == "" {
			return errMetadata("invalid_client_metadata", "%q is not an http(s) URL", truncate(u, 128))
		}
	}
	if len(m.ClientName) > maxClientName {
		return errMetadata("invalid_client_metadata", "client_name is too long")
	}
	for _, c := range m.Contacts {
		if len(c) > maxParam {
			return errMetadata("invalid_client_metadata", "a contact is too long")
		}
	}
	if len(m.SoftwareID) > maxParam || len(m.SoftwareVersion) > maxParam {
		return errMetadata("invalid_client_metadata", "software_id or software_version is too long")
	}
	if _, err := parseScope(m.Scope); err != nil {
		return errMetadata("invalid_client_metadata", "scope is malformed or too long")
	}
	return nil
}

// checkApplicationType applies the redirect URI rules of OpenID Connect
// Dynamic Client Registration 1.0 section 2 for application_type, which
// MCP 2026-07-28 (SEP-837) requires clients to send: a "native" client
// (desktop, CLI, mobile, and web apps served from localhost) registers
// only loopback http or private-use scheme redirect URIs; a "web" client
// only https URIs on a non-loopback host. Clients of earlier revisions
// send none and keep the general rules.
func (m *clientMetadata) checkApplicationType() *Error {
	switch m.ApplicationType {
	case "":
		return nil
	case "native":
		for _, raw := range m.RedirectURIs {
			u, _ := url.Parse(raw)
			if u.Scheme == "https" || (u.Scheme == "http" && !isLoopbackHost(u.Hostname())) {
				return errMetadata("invalid_redirect_uri", "application_type native allows only loopback http and private-use scheme redirect URIs, not %q", raw)
			}
		}
	case "web":
		for _, raw := range m.RedirectURIs {
			u, _ := url.Parse(raw)
			if u.Scheme != "https" || isLoopbackHost(u.Hostname()) {
				return errMetadata("invalid_redirect_uri", "application_type web allows only https redirect URIs on a non-loopback host, not %q (use application_type native)", raw)
			}
		}
	default:
		return errMetadata("invalid_client_metadata", "application_type must be web or native")
	}
	return nil
}

// registrationAllowed applies the registration policy to a request.
func (s *Server) registrationAllowed(r *http.Request, m clientMetadata) *Error {
	reg := s.o.Registration
	switch reg.Mode {
	case RegistrationDisabled:
		return oauthError(http.StatusForbidden, "access_denied", "dynamic client registration is disabled")
	case RegistrationToken:
		tok, _ := bearer.Token(r.Header.Get("Authorization"))
		if tok == "" || !handle.Equal(tok, handle.Sum(reg.InitialAccessToken)) {
			return &Error{Status: http.StatusUnauthorized, Code: "invalid_token", Description: "an initial access token is required to register",
				Header: http.Header{"WWW-Authenticate": {`Bearer error="invalid_token"`}}}
		}
	case RegistrationAllowlist:
		for _, raw := range m.RedirectURIs {
			u, err := url.Parse(raw)
			if err != nil {
				return errMetadata("invalid_redirect_uri", "redirect URI cannot be parsed")
			}
			host := u.Hostname()
			if u.Scheme != "http" && u.Scheme != "https" {
				host = u.Scheme
			}
			if !slices.Contains(reg.AllowedHosts, host) {
				return errMetadata("invalid_redirect_uri", "redirect URI host %q is not allowed by the registration policy", truncate(host, 128))
			}
		}
	}
	// A client that acts as itself gets tokens with no user in the loop:
	// only a registration the operator authorised (an initial access
	// token) may ask for it, and even then its servers and scopes come
	// from an administrator's grant of service access, not from here.
	if slices.Contains(m.GrantTypes, grantCreds) && reg.Mode != RegistrationToken {
		return errMetadata("invalid_client_metadata", "client_credentials is not available through open registration: register with an initial access token, or ask an administrator for a pre-registered service client")
	}
	return nil
}

// serveRegister is RFC 7591 dynamic client registration.
func (s *Server) serveRegister(w http.ResponseWriter, r *http.Request) error {
	if r.Method != http.MethodPost {
		return errMethod("POST")
	}
	if err := s.limit(r, s.limits.register, "register"); err != nil {
		return err
	}
	var m clientMetadata
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, maxRegistrBody))
	var mbe *http.MaxBytesError
	if errors.As(err, &mbe) {
		s.metrics.registrations.WithLabelValues(sourceDCR, "invalid").Inc()
		return err
	}
	if err == nil {
		err = json.Unmarshal(body, &m)
	}
	if err != nil {
		s.metrics.registrations.WithLabelValues(sourceDCR, "invalid").Inc()
		return errMetadata("invalid_client_metadata", "the body must be a JSON client metadata object")
	}
	if e := s.registrationAllowed(r, m); e != nil {
		s.metrics.registrations.WithLabelValues(sourceDCR, "refused").Inc()
		return e
	}
	m.ClientID, m.ClientSecret = "", ""
	if e := m.normalize(false); e != nil {
		s.metrics.registrations.WithLabelValues(sourceDCR, "invalid").Inc()
		return e
	}
	now := s.now().UTC()
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
		// A registration nobody uses goes away by itself, so that
		// registrations cannot pile up in the store.
		ExpiresAt: now.Add(s.o.Registration.UnusedClientTTL),
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
		return fmt.Errorf("register client: %w", err)
	}
	ev := store.AuditEvent{Type: "client_registered", ClientID: c.ID, Kind: c.Kind, Details: map[string]any{
		"source": sourceDCR, "name": c.Name, "auth_method": c.TokenEndpointAuthMethod, "application_type": m.ApplicationType,
		"grant_types": c.GrantTypes, "redirect_hosts": redirectHosts(c.RedirectURIs), "source_addr": s.sources.of(r),
	}}
	if err := s.audit.RecordSync(r.Context(), ev); err != nil {
		// Unaudited registrations must not exist: undo and fail.
		_ = s.st.DeleteClient(context.WithoutCancel(r.Context()), c.ID)
		return fmt.Errorf("audit client registration: %w", err)
	}
	s.metrics.registrations.WithLabelValues(sourceDCR, "registered").Inc()
	resp := s.clientResponse(c, m)
	if secret != "" {
		resp["client_secret"] = secret
		resp["client_secret_expires_at"] = 0
	}
	resp["registration_access_token"] = regToken
	writeJSON(w, http.StatusCreated, resp)
	return nil
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
func (s *Server) serveClientConfiguration(w http.ResponseWriter, r *http.Request) error {
	id := r.PathValue("id")
	tok, _ := bearer.Token(r.Header.Get("Authorization"))
	c, err := s.st.GetClient(r.Context(), id)
	// Unknown client and wrong token answer the same, so the endpoint does
	// not reveal which client ids exist (RFC 7592 2).
	if tok == "" || err != nil || c.Source != sourceDCR || !handle.Equal(tok, c.RegistrationTokenHash) {
		if err != nil && !errors.Is(err, store.ErrNotFound) {
			return fmt.Errorf("client configuration: %w", err)
		}
		return &Error{Status: http.StatusUnauthorized, Code: "invalid_token", Header: http.Header{"WWW-Authenticate": {`Bearer error="invalid_token"`}}}
	}
	switch r.Method {
	case http.MethodGet:
		var m clientMetadata
		_ = json.Unmarshal(c.Metadata, &m)
		writeJSON(w, http.StatusOK, s.clientResponse(c, m))
	case http.MethodDelete:
		if err := s.deleteClient(r.Context(), c, "client:"+c.ID); err != nil {
			return fmt.Errorf("delete client: %w", err)
		}
		w.WriteHeader(http.StatusNoContent)
	default:
		e := oauthError(http.StatusMethodNotAllowed, "invalid_request", "client updates are not supported; delete and register again")
		e.Header = http.Header{"Allow": {"GET, DELETE"}}
		return e
	}
	return nil
}
