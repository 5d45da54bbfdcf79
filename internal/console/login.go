package console

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"net/http"
	"time"

	"golang.org/x/time/rate"

	"github.com/warden-mcp/warden/internal/adminauth"
	"github.com/warden-mcp/warden/internal/store"
)

// pendingLogin is one sign-in round trip, stored under the digest of the
// login cookie: the browser that started it is the only one that can end
// it.
type pendingLogin struct {
	State    string `json:"state"`
	Nonce    string `json:"nonce"`
	Verifier string `json:"verifier"`
	// CSRF protects the static connector's form (login CSRF).
	CSRF string `json:"csrf"`
}

const loginCookie = "warden_console_login"

// beginLogin starts a round trip, setting the login cookie. It is Lax,
// not Strict: it must come back with the IdP's top-level redirect to the
// callback, which is a cross-site navigation.
func (s *Server) beginLogin(w http.ResponseWriter, r *http.Request) (pendingLogin, error) {
	pl := pendingLogin{State: randomToken(), Nonce: randomToken(), Verifier: randomToken() + randomToken()[:20], CSRF: randomToken()}
	v := randomToken()
	raw, _ := json.Marshal(pl)
	if err := s.o.Sessions.PutSession(r.Context(), loginKind, key(v), raw, s.o.LoginTTL); err != nil {
		return pl, err
	}
	s.setCookie(w, loginCookie, v, s.o.LoginTTL, http.SameSiteLaxMode)
	return pl, nil
}

// loginOf reads the browser's pending round trip; take consumes it.
func (s *Server) loginOf(r *http.Request, take bool) (pendingLogin, bool) {
	c, err := r.Cookie(s.cookieName(loginCookie))
	if err != nil || len(c.Value) != 43 {
		return pendingLogin{}, false
	}
	get := s.o.Sessions.GetSession
	if take {
		get = s.o.Sessions.TakeSession
	}
	raw, err := get(r.Context(), loginKind, key(c.Value))
	if err != nil {
		return pendingLogin{}, false
	}
	var pl pendingLogin
	return pl, json.Unmarshal(raw, &pl) == nil
}

type loginView struct {
	Connector string
	Redirect  bool
	CSRF      string
	Username  string
	Error     string
}

// loginPage offers the IdP (a link that starts the round trip) or, for
// the static connector, the form.
func (s *Server) loginPage(w http.ResponseWriter, r *http.Request) {
	if _, ok := s.session(r); ok {
		http.Redirect(w, r, "/ui/access", http.StatusSeeOther)
		return
	}
	v := loginView{Connector: s.o.Connector, Redirect: s.o.Redirect != nil}
	if s.o.Password != nil {
		pl, err := s.beginLogin(w, r)
		if err != nil {
			s.o.Logger.Error("console: start sign-in", "err", err)
			s.fail(w, r, nil, http.StatusServiceUnavailable, "Sign-in is unavailable right now.")
			return
		}
		v.CSRF = pl.CSRF
	}
	s.render(w, http.StatusOK, "login", nil, v)
}

// startLogin sends the browser to the IdP.
func (s *Server) startLogin(w http.ResponseWriter, r *http.Request) {
	if s.o.Redirect == nil {
		http.Redirect(w, r, "/ui/login", http.StatusSeeOther)
		return
	}
	pl, err := s.beginLogin(w, r)
	if err != nil {
		s.o.Logger.Error("console: start sign-in", "err", err)
		s.fail(w, r, nil, http.StatusServiceUnavailable, "Sign-in is unavailable right now.")
		return
	}
	u, err := s.o.Redirect.AuthCodeURL(r.Context(), pl.State, pl.Nonce, pl.Verifier)
	if err != nil {
		s.o.Logger.Error("console: identity provider unavailable", "err", err)
		s.fail(w, r, nil, http.StatusBadGateway, "The identity provider cannot be reached. Try again later.")
		return
	}
	http.Redirect(w, r, u, http.StatusFound)
}

// callback is the console's redirect URI at the IdP.
func (s *Server) callback(w http.ResponseWriter, r *http.Request) {
	if s.o.Redirect == nil {
		s.fail(w, r, nil, http.StatusNotFound, "This console signs users in with a form.")
		return
	}
	q := r.URL.Query()
	pl, ok := s.loginOf(r, true)
	if !ok || !validCSRF(q.Get("state"), pl.State) {
		s.fail(w, r, nil, http.StatusBadRequest, "This sign-in has expired, was already used, or was started in another browser. Sign in again.")
		return
	}
	s.setCookie(w, loginCookie, "", -1, http.SameSiteLaxMode)
	if e := q.Get("error"); e != "" {
		s.loginFailed(r, "", "identity provider answered "+truncate(e, 64))
		s.fail(w, r, nil, http.StatusForbidden, "Sign-in at the identity provider did not complete.")
		return
	}
	id, err := s.o.Redirect.Exchange(r.Context(), q.Get("code"), pl.Nonce, pl.Verifier)
	if err != nil {
		s.o.Logger.Warn("console: sign-in failed", "err", err)
		s.loginFailed(r, "", err.Error())
		s.fail(w, r, nil, http.StatusForbidden, "Sign-in at the identity provider failed.")
		return
	}
	if !s.signIn(w, r, id) {
		return
	}
	// The session cookie is SameSite=Strict, and this response ends a
	// navigation that came from the IdP's site: the browser would not
	// send the new cookie on a redirect from here. A page of our own that
	// moves on (meta refresh: no script) makes the next request
	// same-site.
	s.render(w, http.StatusOK, "signedin", nil, nil)
}

// passwordLogin is the static connector's form post.
func (s *Server) passwordLogin(w http.ResponseWriter, r *http.Request) {
	if s.o.Password == nil {
		s.fail(w, r, nil, http.StatusNotFound, "Sign in at the identity provider.")
		return
	}
	if err := r.ParseForm(); err != nil {
		s.fail(w, r, nil, http.StatusBadRequest, "The form could not be read.")
		return
	}
	user, password := r.PostForm.Get("username"), r.PostForm.Get("password")
	pl, ok := s.loginOf(r, false)
	if !ok || !validCSRF(r.PostForm.Get("csrf"), pl.CSRF) {
		s.fail(w, r, nil, http.StatusForbidden, "This sign-in form has expired or did not come from this console. Reload it and try again.")
		return
	}
	view := loginView{Connector: s.o.Connector, CSRF: pl.CSRF, Username: truncate(user, 128)}
	if len(user) > 128 || len(password) > 1024 {
		view.Error = "The user name or password is too long."
		s.render(w, http.StatusBadRequest, "login", nil, view)
		return
	}
	if !s.allow("user:"+user) || !s.allow("addr:"+sourceOf(r)) {
		view.Error = "Too many attempts. Wait a minute and try again."
		s.render(w, http.StatusTooManyRequests, "login", nil, view)
		return
	}
	id, err := s.o.Password.Login(r.Context(), user, password)
	if err != nil {
		s.loginFailed(r, user, err.Error())
		view.Error = "The user name or password is wrong."
		s.render(w, http.StatusUnauthorized, "login", nil, view)
		return
	}
	if _, ok := s.loginOf(r, true); !ok {
		s.fail(w, r, nil, http.StatusForbidden, "This sign-in form was already used. Reload it and try again.")
		return
	}
	s.setCookie(w, loginCookie, "", -1, http.SameSiteLaxMode)
	if !s.signIn(w, r, id) {
		return
	}
	http.Redirect(w, r, "/ui/access", http.StatusSeeOther)
}

// signIn maps the identity to a role and opens a session. A user with no
// role is refused (and the refusal audited).
func (s *Server) signIn(w http.ResponseWriter, r *http.Request, id adminauth.Identity) bool {
	p, ok := s.o.Bindings.Principal(id)
	if !ok {
		s.loginFailed(r, id.Subject, "no admin role for this user")
		s.fail(w, r, nil, http.StatusForbidden, "You signed in, but you have no role in this console. Ask a Warden administrator to give you one (admin.roles).")
		return false
	}
	if err := s.newSession(r.Context(), w, p); err != nil {
		s.o.Logger.Error("console: save session", "err", err)
		s.fail(w, r, nil, http.StatusServiceUnavailable, "Sign-in could not be completed.")
		return false
	}
	s.record(r.Context(), store.AuditEvent{Type: "console_login", Actor: p.Name, Subject: id.Subject,
		Details: map[string]any{"role": string(p.Role), "source_addr": sourceOf(r)}})
	return true
}

// loginFailed audits a refused sign-in. A typed user name is kept only as
// a short digest (a password typed into the name field must not land in
// the trail), as the OAuth server does.
func (s *Server) loginFailed(r *http.Request, user, reason string) {
	ev := store.AuditEvent{Type: "console_login_failed", Reason: reason, Details: map[string]any{"source_addr": sourceOf(r)}}
	if user != "" {
		sum := sha256.Sum256([]byte(user))
		ev.Details["username_sha256_prefix"] = hex.EncodeToString(sum[:4])
	}
	s.record(r.Context(), ev)
}

// allow is a per-key limit of ten attempts a minute.
func (s *Server) allow(k string) bool {
	l, ok := s.limits.Get(k)
	if !ok {
		l = rate.NewLimiter(rate.Every(6*time.Second), 10)
		s.limits.Add(k, l)
	}
	return l.Allow()
}

// sourceOf is the peer address: the admin listener is private and not
// behind a proxy Warden would trust.
func sourceOf(r *http.Request) string {
	addr := r.RemoteAddr
	for i := len(addr) - 1; i >= 0; i-- {
		if addr[i] == ':' {
			return addr[:i]
		}
	}
	return addr
}

func truncate(v string, n int) string {
	if len(v) <= n {
		return v
	}
	return v[:n]
}
