package oauth

import (
	"errors"
	"net/http"

	"github.com/warden-mcp/warden/internal/store"
)

// serveMetadata answers RFC 8414 authorization server metadata. The same
// document answers the OpenID discovery paths MCP clients probe; Warden is
// not an OpenID Provider (it issues no ID tokens) and says so by omitting
// the OpenID-only fields.
func (s *Server) serveMetadata(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		w.Header().Set("Allow", "GET, HEAD")
		writeJSONError(w, jsonError{Status: http.StatusMethodNotAllowed, Code: "invalid_request", Description: "use GET"})
		return
	}
	scopes, err := s.knownScopes(r.Context())
	if err != nil {
		s.log.Error("metadata: list scopes", "err", err)
		writeJSONError(w, errServer)
		return
	}
	grantTypes := []string{"authorization_code", "refresh_token", "client_credentials"}
	m := map[string]any{
		"issuer":                                         s.issuer,
		"authorization_endpoint":                         s.endpoint("/oauth/authorize"),
		"token_endpoint":                                 s.endpoint("/oauth/token"),
		"revocation_endpoint":                            s.endpoint("/oauth/revoke"),
		"introspection_endpoint":                         s.endpoint("/oauth/introspect"),
		"jwks_uri":                                       s.endpoint("/oauth/jwks"),
		"scopes_supported":                               scopes,
		"response_types_supported":                       []string{"code"},
		"response_modes_supported":                       []string{"query"},
		"grant_types_supported":                          grantTypes,
		"token_endpoint_auth_methods_supported":          []string{"none", "client_secret_basic", "client_secret_post"},
		"revocation_endpoint_auth_methods_supported":     []string{"none", "client_secret_basic", "client_secret_post"},
		"introspection_endpoint_auth_methods_supported":  []string{"client_secret_basic", "client_secret_post"},
		"code_challenge_methods_supported":               []string{"S256"},
		"authorization_response_iss_parameter_supported": true,
		"client_id_metadata_document_supported":          s.cimd != nil,
	}
	if s.ocfg.Registration.Mode != "disabled" {
		m["registration_endpoint"] = s.endpoint("/oauth/register")
	}
	w.Header().Set("Cache-Control", "public, max-age=300")
	w.Header().Set("Content-Type", "application/json")
	writeBody(w, m)
}

// serveProtectedResource answers RFC 9728 protected resource metadata for
// one registered MCP server.
func (s *Server) serveProtectedResource(w http.ResponseWriter, r *http.Request) {
	name := r.PathValue("name")
	srv, err := s.servers.GetServer(r.Context(), name)
	if errors.Is(err, store.ErrNotFound) {
		writeJSONError(w, jsonError{Status: http.StatusNotFound, Code: "not_found", Description: "no MCP server of that name is registered"})
		return
	}
	if err != nil {
		s.log.Error("protected resource metadata", "server", name, "err", err)
		writeJSONError(w, errServer)
		return
	}
	m := map[string]any{
		"resource":                 s.cfg.ResourceURL(srv.Name),
		"authorization_servers":    []string{s.issuer},
		"bearer_methods_supported": []string{"header"},
		"resource_name":            srv.Name,
	}
	if len(srv.Scopes) > 0 {
		m["scopes_supported"] = srv.Scopes
	}
	w.Header().Set("Cache-Control", "public, max-age=60")
	w.Header().Set("Content-Type", "application/json")
	writeBody(w, m)
}
