// Package oauth is Warden's OAuth 2.1 authorization server for MCP clients:
// metadata (RFC 8414, RFC 9728, metadata.go), client registration (RFC
// 7591/7592 in register.go, Client ID Metadata Documents in cimd.go), the
// authorization code flow with PKCE and resource indicators (RFC 8707,
// authorize.go), user sign-in delegated to an identity provider through
// one static callback (login.go), consent (consent.go), and the token
// endpoint with one handler per grant type (token.go, grant_*.go),
// revocation (RFC 7009) and introspection (RFC 7662).
//
// Clients only ever receive opaque Warden handles. Grants and handles are
// written and revoked by internal/grant only; this package decides what
// the protocol allows. The IdP's own tokens stay sealed inside the grant.
package oauth

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/warden-mcp/warden/internal/grant"
	"github.com/warden-mcp/warden/internal/keys"
	"github.com/warden-mcp/warden/internal/seal"
	"github.com/warden-mcp/warden/internal/store"
	"github.com/warden-mcp/warden/oauth/connector"
)

// CallbackPath is the path of the one redirect URI registered at the IdP,
// under the issuer.
const CallbackPath = "/oauth/callback"

// Server is the authorization server.
type Server struct {
	o       Options
	issuer  string
	prefix  string // path of the issuer URL, "" or "/x"
	secure  bool   // issuer is https: cookies get Secure and __Host-
	st      store.Store
	grants  *grant.Service
	servers Servers
	signer  *keys.Signer
	ring    *seal.Keyring
	audit   Auditor
	log     *slog.Logger
	now     func() time.Time

	redirectConn connector.Redirect
	passwordConn connector.Password

	// grantTypes are the token endpoint's handlers by grant_type.
	grantTypes map[string]grantHandler
	cimd       *cimdFetcher
	limits     limiters
	sources    sourceResolver
	grantLocks [64]sync.Mutex // see lockGrant
	metrics    *metrics
	pages      *pages
}

// New builds the server and reconciles the pre-registered clients.
func New(o Options) (*Server, error) {
	if o.Store == nil || o.Grants == nil || o.Signer == nil || o.Keyring == nil || o.Auditor == nil || o.ResourceURL == nil {
		return nil, errors.New("oauth: Store, Grants, Signer, Keyring, Auditor and ResourceURL are required")
	}
	o.defaults()
	iss, err := url.Parse(o.Issuer)
	if err != nil || iss.Host == "" || (iss.Scheme != "https" && iss.Scheme != "http") || iss.RawQuery != "" || iss.Fragment != "" {
		return nil, fmt.Errorf("oauth: issuer %q is not an absolute http(s) URL", o.Issuer)
	}
	s := &Server{
		o:       o,
		issuer:  strings.TrimRight(o.Issuer, "/"),
		prefix:  strings.TrimRight(iss.Path, "/"),
		secure:  iss.Scheme == "https",
		st:      o.Store,
		grants:  o.Grants,
		servers: o.Servers,
		signer:  o.Signer,
		ring:    o.Keyring,
		audit:   o.Auditor,
		log:     o.Logger.With("component", "oauth"),
		now:     o.Now,
		metrics: newMetrics(o.Registerer),
		pages:   mustPages(),
		sources: sourceResolver{trusted: o.TrustedProxies},
	}
	s.limits = newLimiters(o, o.Now)
	if o.CIMD.Enabled {
		s.cimd = newCIMDFetcher(o.CIMD, o.HTTPClient, o.Now)
	}
	switch c := o.Connector.(type) {
	case connector.Redirect:
		s.redirectConn = c
	case connector.Password:
		s.passwordConn = c
	default:
		return nil, fmt.Errorf("oauth: connector %T is neither a Redirect nor a Password connector", c)
	}
	s.grantTypes = map[string]grantHandler{}
	for _, h := range []grantHandler{authorizationCode{s}, refreshToken{s}, clientCredentials{s}} {
		s.grantTypes[h.grantType()] = h
	}
	if err := s.reconcileClients(context.Background()); err != nil {
		return nil, err
	}
	return s, nil
}

// Issuer is the authorization server's issuer identifier.
func (s *Server) Issuer() string { return s.issuer }

// endpoint is the absolute URL of a path under the issuer.
func (s *Server) endpoint(path string) string { return s.issuer + path }

// supportedGrantTypes lists the token endpoint's grant types, sorted.
func (s *Server) supportedGrantTypes() []string {
	out := make([]string, 0, len(s.grantTypes))
	for gt := range s.grantTypes {
		out = append(out, gt)
	}
	sort.Strings(out)
	return out
}

// Handler serves every OAuth endpoint and metadata document. Mount it at
// the root of Warden's HTTP listener: paths are absolute and include the
// issuer's path when public_url has one.
func (s *Server) Handler() http.Handler {
	mux := http.NewServeMux()
	p := s.prefix
	seen := map[string]bool{}
	once := func(pattern string, h http.Handler) {
		if !seen[pattern] {
			seen[pattern] = true
			mux.Handle(pattern, h)
		}
	}
	meta := cors(s.jsonEndpoint(s.serveMetadata))
	// RFC 8414 section 3.1 inserts the well-known segment before the
	// issuer's path; OpenID Connect Discovery appends it. MCP clients probe
	// both (2025-11-25 "Authorization Server Metadata Discovery"). Without
	// an issuer path the variants coincide.
	once("/.well-known/oauth-authorization-server"+p, meta)
	once("/.well-known/openid-configuration"+p, meta)
	once(p+"/.well-known/openid-configuration", meta)
	once(p+"/.well-known/oauth-authorization-server", meta)
	prm := cors(s.jsonEndpoint(s.serveProtectedResource))
	once(p+"/.well-known/oauth-protected-resource/mcp/{name}", prm)
	once("/.well-known/oauth-protected-resource"+p+"/mcp/{name}", prm)
	mux.Handle(p+"/oauth/register", cors(s.jsonEndpoint(s.serveRegister)))
	mux.Handle(p+"/oauth/register/{id}", cors(s.jsonEndpoint(s.serveClientConfiguration)))
	mux.Handle(p+"/oauth/authorize", s.pageEndpoint(s.serveAuthorize))
	mux.Handle(p+CallbackPath, s.pageEndpoint(s.serveCallback))
	mux.Handle(p+"/oauth/login", s.pageEndpoint(s.serveLogin))
	mux.Handle(p+"/oauth/consent", s.pageEndpoint(s.serveConsent))
	mux.Handle(p+"/oauth/token", cors(s.jsonEndpoint(s.serveToken)))
	mux.Handle(p+"/oauth/revoke", cors(s.jsonEndpoint(s.serveRevoke)))
	mux.Handle(p+"/oauth/introspect", s.jsonEndpoint(s.serveIntrospect))
	mux.Handle(p+"/oauth/jwks", cors(s.signer))
	mux.Handle(p+"/oauth/providers/{name}/connect", s.pageEndpoint(s.serveConnect))
	mux.Handle(p+"/oauth/providers/{name}/callback", s.pageEndpoint(s.serveProviderCallback))
	mux.Handle("/", s.pageEndpoint(func(http.ResponseWriter, *http.Request) error {
		return pageError(http.StatusNotFound, "Not found", "There is no OAuth endpoint at this address.")
	}))
	return securityHeaders(mux)
}

// cors lets browser-based MCP clients call the metadata, registration and
// token endpoints. No credentials (cookies) are ever accepted cross-origin.
func cors(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Access-Control-Allow-Origin", "*")
		if r.Method == http.MethodOptions {
			w.Header().Set("Access-Control-Allow-Methods", "GET, POST, DELETE, OPTIONS")
			w.Header().Set("Access-Control-Allow-Headers", "Authorization, Content-Type, MCP-Protocol-Version")
			w.Header().Set("Access-Control-Max-Age", "600")
			w.WriteHeader(http.StatusNoContent)
			return
		}
		h.ServeHTTP(w, r)
	})
}

func securityHeaders(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hd := w.Header()
		hd.Set("X-Content-Type-Options", "nosniff")
		// The consent and login pages must never be framed (clickjacking,
		// RFC 9700 4.16) and never leak their URL (which carries request
		// ids) to another site.
		hd.Set("X-Frame-Options", "DENY")
		hd.Set("Referrer-Policy", "no-referrer")
		hd.Set("Content-Security-Policy", "default-src 'none'; style-src 'unsafe-inline'; frame-ancestors 'none'; base-uri 'none'")
		h.ServeHTTP(w, r)
	})
}
