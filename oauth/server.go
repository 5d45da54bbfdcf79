// Package oauth is Warden's OAuth 2.1 authorization server for MCP clients:
// metadata (RFC 8414, RFC 9728), client registration (RFC 7591/7592 and
// Client ID Metadata Documents), the authorization code flow with PKCE and
// resource indicators (RFC 8707), user sign-in delegated to an identity
// provider through one static callback, consent, and the token, revocation
// (RFC 7009) and introspection (RFC 7662) endpoints.
//
// Clients only ever receive opaque Warden handles (internal/handle). Every
// handle is stored by digest and points at a grant; the IdP's own tokens
// stay sealed inside the grant. Revoking a grant cuts every handle issued
// from it at once, which is what the ext_authz path relies on.
package oauth

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/warden-mcp/warden/internal/config"
	"github.com/warden-mcp/warden/internal/keys"
	"github.com/warden-mcp/warden/internal/seal"
	"github.com/warden-mcp/warden/internal/store"
	"github.com/warden-mcp/warden/oauth/connector"
)

// Auditor records audit events and waits until they are stored.
// *audit.Trail satisfies it.
type Auditor interface {
	RecordSync(ctx context.Context, ev store.AuditEvent) error
}

// Servers looks up registered MCP servers. store.Store satisfies it.
type Servers interface {
	GetServer(ctx context.Context, name string) (store.Server, error)
	ListServers(ctx context.Context) ([]store.Server, error)
}

// Options are the dependencies of a Server. Config, Store, Signer, Keyring
// and Auditor are required.
type Options struct {
	Config  config.Config
	Store   store.Store
	Signer  *keys.Signer
	Keyring *seal.Keyring
	Auditor Auditor
	// Servers resolves resource indicators; defaults to Store.
	Servers Servers
	Logger  *slog.Logger
	// Registerer receives the server's metrics; nil registers nothing.
	Registerer prometheus.Registerer
	Now        func() time.Time
	// HTTPClient is used for IdP calls and, behind an SSRF guard, for
	// Client ID Metadata Document fetches; defaults to a client with a
	// 10s timeout.
	HTTPClient *http.Client
	// Connector overrides the connector built from Config (tests).
	Connector any
}

// Server is the authorization server.
type Server struct {
	cfg     config.Config
	ocfg    config.OAuth
	issuer  string
	prefix  string // path of the issuer URL, "" or "/x"
	secure  bool   // issuer is https: cookies get Secure and __Host-
	st      store.Store
	servers Servers
	signer  *keys.Signer
	ring    *seal.Keyring
	audit   Auditor
	log     *slog.Logger
	now     func() time.Time
	client  *http.Client

	redirectConn connector.Redirect
	passwordConn connector.Password
	bootstrap    connector.Bootstrap

	cimd       *cimdFetcher
	limits     limiters
	grantLocks [64]sync.Mutex // see lockGrant
	metrics    *metrics
	pages      *pages
}

// New builds the server. With the static connector and no configured users
// it creates (or loads) the local admin user; see StaticBootstrap.
func New(o Options) (*Server, error) {
	if o.Store == nil || o.Signer == nil || o.Keyring == nil || o.Auditor == nil {
		return nil, errors.New("oauth: Store, Signer, Keyring and Auditor are required")
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.HTTPClient == nil {
		o.HTTPClient = &http.Client{Timeout: 10 * time.Second}
	}
	if o.Servers == nil {
		o.Servers = o.Store
	}
	iss, err := url.Parse(o.Config.Issuer())
	if err != nil || iss.Host == "" {
		return nil, fmt.Errorf("oauth: public_url %q is not an absolute URL", o.Config.PublicURL)
	}
	s := &Server{
		cfg:     o.Config,
		ocfg:    o.Config.OAuth,
		issuer:  o.Config.Issuer(),
		prefix:  strings.TrimRight(iss.Path, "/"),
		secure:  iss.Scheme == "https",
		st:      o.Store,
		servers: o.Servers,
		signer:  o.Signer,
		ring:    o.Keyring,
		audit:   o.Auditor,
		log:     o.Logger.With("component", "oauth"),
		now:     o.Now,
		client:  o.HTTPClient,
		metrics: newMetrics(o.Registerer),
		pages:   mustPages(),
	}
	s.limits = newLimiters(s.ocfg.RateLimit, o.Now)
	if s.ocfg.CIMD.Enabled {
		s.cimd = newCIMDFetcher(s.ocfg.CIMD, o.HTTPClient, o.Now)
	}
	switch c := o.Connector.(type) {
	case connector.Redirect:
		s.redirectConn = c
	case connector.Password:
		s.passwordConn = c
	case nil:
		if err := s.buildConnector(); err != nil {
			return nil, err
		}
	default:
		return nil, fmt.Errorf("oauth: connector %T is neither a Redirect nor a Password connector", c)
	}
	if err := s.reconcileClients(context.Background()); err != nil {
		return nil, err
	}
	return s, nil
}

func (s *Server) buildConnector() error {
	switch c := s.ocfg.Connector; c.Type {
	case "oidc":
		s.redirectConn = connector.NewOIDC(c.OIDC, s.endpoint("/oauth/callback"), s.client, s.now)
	case "static", "":
		users := c.Static.Users
		if len(users) == 0 {
			b, err := connector.BootstrapAdmin(s.cfg.DataDir, s.now())
			if err != nil {
				return fmt.Errorf("oauth: static admin user: %w", err)
			}
			s.bootstrap = b
			users = []config.StaticUser{b.User}
		}
		s.passwordConn = connector.NewStatic(users)
	default:
		return fmt.Errorf("oauth: unknown connector type %q", c.Type)
	}
	return nil
}

// StaticBootstrap reports the generated local admin user of the static
// connector. Password is non-empty only on the start that created it;
// print Banner() once, to the terminal, never to the log.
func (s *Server) StaticBootstrap() connector.Bootstrap { return s.bootstrap }

// Issuer is the authorization server's issuer identifier.
func (s *Server) Issuer() string { return s.issuer }

// endpoint is the absolute URL of a path under the issuer.
func (s *Server) endpoint(path string) string { return s.issuer + path }

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
	meta := cors(http.HandlerFunc(s.serveMetadata))
	// RFC 8414 section 3.1 inserts the well-known segment before the
	// issuer's path; OpenID Connect Discovery appends it. MCP clients probe
	// both (2025-11-25 "Authorization Server Metadata Discovery"). Without
	// an issuer path the variants coincide.
	once("/.well-known/oauth-authorization-server"+p, meta)
	once("/.well-known/openid-configuration"+p, meta)
	once(p+"/.well-known/openid-configuration", meta)
	once(p+"/.well-known/oauth-authorization-server", meta)
	prm := cors(http.HandlerFunc(s.serveProtectedResource))
	once(p+"/.well-known/oauth-protected-resource/mcp/{name}", prm)
	once("/.well-known/oauth-protected-resource"+p+"/mcp/{name}", prm)
	mux.Handle(p+"/oauth/register", cors(http.HandlerFunc(s.serveRegister)))
	mux.Handle(p+"/oauth/register/{id}", cors(http.HandlerFunc(s.serveClientConfiguration)))
	mux.HandleFunc(p+"/oauth/authorize", s.serveAuthorize)
	mux.HandleFunc(p+"/oauth/callback", s.serveCallback)
	mux.HandleFunc(p+"/oauth/login", s.serveLogin)
	mux.HandleFunc(p+"/oauth/consent", s.serveConsent)
	mux.Handle(p+"/oauth/token", cors(http.HandlerFunc(s.serveToken)))
	mux.Handle(p+"/oauth/revoke", cors(http.HandlerFunc(s.serveRevoke)))
	mux.Handle(p+"/oauth/introspect", http.HandlerFunc(s.serveIntrospect))
	mux.Handle(p+"/oauth/jwks", cors(s.signer))
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		s.renderError(w, r, pageError{Status: http.StatusNotFound, Title: "Not found", Message: "There is no OAuth endpoint at this address."})
	})
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
