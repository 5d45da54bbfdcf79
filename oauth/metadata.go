package oauth

import (
	"errors"
	"fmt"
	"net/http"

	"github.com/warden-mcp/warden/internal/store"
)

// serveMetadata answers RFC 8414 authorization server metadata. The same
// document answers the OpenID discovery paths MCP clients probe; Warden is
// not an OpenID Provider (it issues no ID tokens) and says so by omitting
// the OpenID-only fields.
//
// scopes_supported lists only the deployment-wide scopes, never those of
// registered servers: clients that find no scope in a server's resource
// metadata fall back to this list (mcp-remote does), and would then ask
// one server's sign-in for every other server's scopes.
func (s *Server) serveMetadata(w http.ResponseWriter, r *http.Request) error {
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		return errMethod("GET, HEAD")
	}
	m := map[string]any{
		"issuer":                                         s.issuer,
		"authorization_endpoint":                         s.endpoint("/oauth/authorize"),
		"token_endpoint":                                 s.endpoint("/oauth/token"),
		"revocation_endpoint":                            s.endpoint("/oauth/revoke"),
		"introspection_endpoint":                         s.endpoint("/oauth/introspect"),
		"jwks_uri":                                       s.endpoint("/oauth/jwks"),
		"scopes_supported":                               s.globalScopes(),
		"response_types_supported":                       []string{"code"},
		"response_modes_supported":                       []string{"query"},
		"grant_types_supported":                          s.supportedGrantTypes(),
		"token_endpoint_auth_methods_supported":          []string{authNone, authBasic, authPost},
		"revocation_endpoint_auth_methods_supported":     []string{authNone, authBasic, authPost},
		"introspection_endpoint_auth_methods_supported":  []string{authBasic, authPost},
		"code_challenge_methods_supported":               []string{"S256"},
		"authorization_response_iss_parameter_supported": true,
		"client_id_metadata_document_supported":          s.cimd != nil,
	}
	if s.o.Registration.Mode != RegistrationDisabled {
		m["registration_endpoint"] = s.endpoint("/oauth/register")
	}
	w.Header().Set("Cache-Control", "public, max-age=300")
	w.Header().Set("Content-Type", "application/json")
	writeBody(w, m)
	return nil
}

// serveProtectedResource answers RFC 9728 protected resource metadata for
// one registered MCP server. scopes_supported is always present and
// exactly the server's scopes (empty when it requires none), so a client
// never falls back to another list.
func (s *Server) serveProtectedResource(w http.ResponseWriter, r *http.Request) error {
	name := r.PathValue("name")
	srv, err := s.servers.GetServer(r.Context(), name)
	if errors.Is(err, store.ErrNotFound) {
		return oauthError(http.StatusNotFound, "not_found", "no MCP server of that name is registered")
	}
	if err != nil {
		return fmt.Errorf("protected resource metadata of %s: %w", name, err)
	}
	scopes := srv.Scopes
	if scopes == nil {
		scopes = []string{}
	}
	m := map[string]any{
		"resource":                 s.o.ResourceURL(srv.Name),
		"authorization_servers":    []string{s.issuer},
		"bearer_methods_supported": []string{"header"},
		"resource_name":            srv.Name,
		"scopes_supported":         scopes,
	}
	w.Header().Set("Cache-Control", "public, max-age=60")
	w.Header().Set("Content-Type", "application/json")
	writeBody(w, m)
	return nil
}
