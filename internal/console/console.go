// Package console is the security team's web console, served on the admin
// listener at /ui/: server-rendered HTML from embedded templates, no
// JavaScript, no build step. Administrators sign in through the configured
// IdP connector (OIDC with its own redirect URI, /ui/callback, or the
// static connector's users with a form) and get a role from
// adminauth.Bindings.
//
// Every page reads and every button acts through the admin API, called in
// process as the signed-in user (adminauth.WithPrincipal): the console
// shows exactly what the API and the CLI show, and the API's role checks
// are the console's. The console adds only what a browser needs:
//
//   - sessions in the store (so any replica serves them), named by the
//     SHA-256 of a random cookie value; the cookie is HttpOnly,
//     SameSite=Strict, Secure and __Host- prefixed when the console is
//     served over https;
//   - a per-session CSRF token in every form, compared in constant time,
//     and the Origin of every POST checked against the console's;
//   - a Content-Security-Policy without script (default-src 'none'), no
//     framing, no referrer, no caching of pages.
//
// No secret is ever rendered: the API already withholds sealed secrets
// and raw handles, and the console shows nothing else.
package console

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"embed"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"html/template"
	"io/fs"
	"log/slog"
	"net/http"
	"net/url"
	"strings"
	"time"

	lru "github.com/hashicorp/golang-lru/v2"
	"golang.org/x/time/rate"

	"github.com/warden-mcp/warden/internal/adminauth"
	"github.com/warden-mcp/warden/internal/store"
)

//go:embed templates/*.html
var templateFS embed.FS

//go:embed static
var staticFS embed.FS

// Sessions is the part of the store that keeps console sessions.
type Sessions interface {
	PutSession(ctx context.Context, kind, id string, value []byte, ttl time.Duration) error
	GetSession(ctx context.Context, kind, id string) ([]byte, error)
	TakeSession(ctx context.Context, kind, id string) ([]byte, error)
}

// RedirectLogin signs users in at an external IdP (the OIDC connector,
// with the console's redirect URI).
type RedirectLogin interface {
	AuthCodeURL(ctx context.Context, state, nonce, verifier string) (string, error)
	Exchange(ctx context.Context, code, nonce, verifier string) (adminauth.Identity, error)
}

// PasswordLogin checks a user name and password (the static connector).
type PasswordLogin interface {
	Login(ctx context.Context, username, password string) (adminauth.Identity, error)
}

// Auditor records sign-ins.
type Auditor interface {
	RecordSync(ctx context.Context, ev store.AuditEvent) error
}

// Options configure the console.
type Options struct {
	// API is the admin API, called in process as the signed-in user.
	API      http.Handler
	Sessions Sessions
	Audit    Auditor
	// Exactly one of Redirect and Password is set.
	Redirect RedirectLogin
	Password PasswordLogin
	// Connector names the IdP connector on the sign-in page.
	Connector string
	Bindings  adminauth.Bindings
	// PublicURL is where browsers reach the admin listener; https makes
	// the cookies Secure and __Host- prefixed.
	PublicURL  string
	SessionTTL time.Duration
	// LoginTTL bounds one sign-in round trip.
	LoginTTL time.Duration
	Logger   *slog.Logger
	Now      func() time.Time
}

// Prefix is where the console is mounted.
const Prefix = "/ui/"

// CallbackPath is the console's redirect URI path, to register at the IdP.
const CallbackPath = "/ui/callback"

// Session kinds in the store.
const (
	sessKind  = "console"
	loginKind = "console_login"
)

// Server is the console.
type Server struct {
	o      Options
	mux    *http.ServeMux
	pages  map[string]*template.Template
	secure bool
	origin string
	// limits bounds password attempts per user name and per source.
	limits *lru.Cache[string, *rate.Limiter]
}

// New builds the console.
func New(o Options) (*Server, error) {
	if o.API == nil || o.Sessions == nil {
		return nil, errors.New("console: API and Sessions are required")
	}
	if (o.Redirect == nil) == (o.Password == nil) {
		return nil, errors.New("console: exactly one of Redirect and Password is required")
	}
	u, err := url.Parse(o.PublicURL)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, fmt.Errorf("console: PublicURL %q is not an absolute http(s) URL", o.PublicURL)
	}
	if o.SessionTTL <= 0 {
		o.SessionTTL = 8 * time.Hour
	}
	if o.LoginTTL <= 0 {
		o.LoginTTL = 10 * time.Minute
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	limits, _ := lru.New[string, *rate.Limiter](10_000)
	s := &Server{o: o, mux: http.NewServeMux(), secure: u.Scheme == "https", origin: u.Scheme + "://" + u.Host, limits: limits}
	if s.pages, err = parsePages(); err != nil {
		return nil, err
	}
	static, _ := fs.Sub(staticFS, "static")
	s.mux.Handle("GET /ui/static/", http.StripPrefix("/ui/static/", http.FileServerFS(static)))
	s.mux.HandleFunc("GET /ui/login", s.loginPage)
	s.mux.HandleFunc("POST /ui/login", s.passwordLogin)
	s.mux.HandleFunc("GET /ui/login/start", s.startLogin)
	s.mux.HandleFunc("GET /ui/callback", s.callback)
	s.mux.HandleFunc("POST /ui/logout", s.signedIn(s.logout))
	s.mux.HandleFunc("GET /ui/{$}", func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, "/ui/access", http.StatusSeeOther)
	})
	s.mux.HandleFunc("GET /ui/servers", s.signedIn(s.serversPage))
	s.mux.HandleFunc("GET /ui/access", s.signedIn(s.accessPage))
	s.mux.HandleFunc("POST /ui/revoke", s.signedIn(s.revoke))
	s.mux.HandleFunc("GET /ui/audit", s.signedIn(s.auditPage))
	s.mux.HandleFunc("GET /ui/audit/export", s.signedIn(s.auditExport))
	s.mux.HandleFunc("GET /ui/audit/{seq}", s.signedIn(s.eventPage))
	s.mux.HandleFunc("GET /ui/accounts", s.signedIn(s.accountsPage))
	s.mux.HandleFunc("POST /ui/accounts/revoke", s.signedIn(s.revokeAccount))
	s.mux.HandleFunc("GET /ui/policy", s.signedIn(s.policyPage))
	s.mux.HandleFunc("POST /ui/policy/whatif", s.signedIn(s.whatIf))
	return s, nil
}

// CSP is the console's Content-Security-Policy: nothing but its own
// stylesheet and images, forms only to itself, never framed.
const CSP = "default-src 'none'; style-src 'self'; img-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'"

// ServeHTTP implements http.Handler. Every response carries the security
// headers, errors and redirects included.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	h := w.Header()
	h.Set("Content-Security-Policy", CSP)
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("X-Frame-Options", "DENY")
	// same-origin, not no-referrer: with no-referrer Chromium sends
	// "Origin: null" on the console's own form posts.
	h.Set("Referrer-Policy", "same-origin")
	h.Set("Cross-Origin-Opener-Policy", "same-origin")
	if !strings.HasPrefix(r.URL.Path, "/ui/static/") {
		h.Set("Cache-Control", "no-store")
	}
	if s.secure {
		h.Set("Strict-Transport-Security", "max-age=31536000")
	}
	if r.Method == http.MethodPost && !s.sameOrigin(r) {
		s.fail(w, r, nil, http.StatusForbidden, "This form was posted from another site.")
		return
	}
	r.Body = http.MaxBytesReader(w, r.Body, maxForm)
	s.mux.ServeHTTP(w, r)
}

// maxForm bounds a posted form (a what-if policy is the largest).
const maxForm = 1 << 20

// sameOrigin: a POST's Origin, when the browser sends one (every current
// browser does for POST), must be the console's. The CSRF token is the
// protection; this refuses a cross-site post before it is read.
func (s *Server) sameOrigin(r *http.Request) bool {
	o := r.Header.Get("Origin")
	return o == "" || o == s.origin
}

// ---- sessions ----

type session struct {
	Principal adminauth.Principal `json:"principal"`
	CSRF      string              `json:"csrf"`
	Expires   time.Time           `json:"expires"`
}

func (s *Server) cookieName(base string) string {
	if s.secure {
		// __Host-: Secure, Path=/, no Domain: no sibling host can set or
		// shadow it.
		return "__Host-" + base
	}
	return base
}

func randomToken() string {
	b := make([]byte, 32)
	_, _ = rand.Read(b)
	return base64.RawURLEncoding.EncodeToString(b)
}

// key is how a cookie value is stored: its digest, never the value.
func key(v string) string {
	sum := sha256.Sum256([]byte(v))
	return hex.EncodeToString(sum[:])
}

func (s *Server) setCookie(w http.ResponseWriter, name, value string, ttl time.Duration, sameSite http.SameSite) {
	c := &http.Cookie{Name: s.cookieName(name), Value: value, Path: "/", HttpOnly: true, Secure: s.secure, SameSite: sameSite}
	if ttl < 0 {
		c.MaxAge = -1
	} else if ttl > 0 {
		c.MaxAge = int(ttl.Seconds())
	}
	http.SetCookie(w, c)
}

// newSession signs p in: a fresh cookie (never one the browser brought:
// no session fixation) and a fresh CSRF token.
func (s *Server) newSession(ctx context.Context, w http.ResponseWriter, p adminauth.Principal) error {
	v := randomToken()
	raw, _ := json.Marshal(session{Principal: p, CSRF: randomToken(), Expires: s.o.Now().Add(s.o.SessionTTL)})
	if err := s.o.Sessions.PutSession(ctx, sessKind, key(v), raw, s.o.SessionTTL); err != nil {
		return err
	}
	s.setCookie(w, "warden_console", v, s.o.SessionTTL, http.SameSiteStrictMode)
	return nil
}

func (s *Server) session(r *http.Request) (session, bool) {
	c, err := r.Cookie(s.cookieName("warden_console"))
	if err != nil || len(c.Value) != 43 {
		return session{}, false
	}
	raw, err := s.o.Sessions.GetSession(r.Context(), sessKind, key(c.Value))
	if err != nil {
		return session{}, false
	}
	var sess session
	if json.Unmarshal(raw, &sess) != nil || !s.o.Now().Before(sess.Expires) {
		return session{}, false
	}
	return sess, true
}

type handler func(w http.ResponseWriter, r *http.Request, sess session)

// signedIn runs h for a signed-in user; others go to the sign-in page
// (GET) or are refused (POST). Every POST must carry the session's CSRF
// token.
func (s *Server) signedIn(h handler) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		sess, ok := s.session(r)
		if !ok {
			if r.Method == http.MethodGet {
				http.Redirect(w, r, "/ui/login", http.StatusSeeOther)
				return
			}
			s.fail(w, r, nil, http.StatusUnauthorized, "Your session has ended. Sign in again.")
			return
		}
		if r.Method == http.MethodPost {
			if err := r.ParseForm(); err != nil {
				s.fail(w, r, &sess, http.StatusBadRequest, "The form could not be read.")
				return
			}
			if !validCSRF(r.PostForm.Get("csrf"), sess.CSRF) {
				s.o.Logger.Warn("console: form without a valid CSRF token refused", "path", r.URL.Path, "actor", sess.Principal.Name)
				s.fail(w, r, &sess, http.StatusForbidden, "This form has expired or did not come from this console. Reload the page and try again.")
				return
			}
		}
		h(w, r, sess)
	}
}

func validCSRF(got, want string) bool {
	return got != "" && want != "" && subtle.ConstantTimeCompare([]byte(got), []byte(want)) == 1
}

func (s *Server) logout(w http.ResponseWriter, r *http.Request, sess session) {
	if c, err := r.Cookie(s.cookieName("warden_console")); err == nil {
		_, _ = s.o.Sessions.TakeSession(r.Context(), sessKind, key(c.Value))
	}
	s.setCookie(w, "warden_console", "", -1, http.SameSiteStrictMode)
	s.record(r.Context(), store.AuditEvent{Type: "console_logout", Actor: sess.Principal.Name})
	http.Redirect(w, r, "/ui/login", http.StatusSeeOther)
}

func (s *Server) record(ctx context.Context, ev store.AuditEvent) {
	if s.o.Audit == nil {
		return
	}
	if err := s.o.Audit.RecordSync(ctx, ev); err != nil {
		s.o.Logger.Error("console: audit", "type", ev.Type, "err", err)
	}
}
