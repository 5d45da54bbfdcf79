package oauth

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"net/http"
	"net/url"

	"github.com/warden-mcp/warden/internal/grant"
	"github.com/warden-mcp/warden/internal/handle"
	"github.com/warden-mcp/warden/internal/store"
	"github.com/warden-mcp/warden/oauth/connector"
)

// pendingConsent is a signed-in user waiting on the consent page.
type pendingConsent struct {
	Req      authRequest        `json:"req"`
	Identity connector.Identity `json:"identity"`
	GrantID  string             `json:"grant_id"`
	// Upstream holds the IdP's tokens, already sealed for GrantID.
	Upstream   *store.Sealed `json:"upstream,omitempty"`
	CSRF       string        `json:"csrf"`
	ClientName string        `json:"client_name,omitempty"`
}

var errLoginExpired = pageError(http.StatusBadRequest, "Sign-in expired", "This sign-in request has expired or was already used.")

// serveCallback is the one static redirect URI registered at the IdP.
func (s *Server) serveCallback(w http.ResponseWriter, r *http.Request) error {
	if s.redirectConn == nil {
		return pageError(http.StatusNotFound, "Not found", "This Warden signs users in with a local form, not an identity provider.")
	}
	if len(r.URL.RawQuery) > maxFormBody {
		return errLoginExpired
	}
	q := r.URL.Query()
	if cl, ok, err := s.takeConnectLogin(r, q.Get("state")); ok {
		if err != nil {
			return err
		}
		return s.afterConnectLogin(w, r, cl, q)
	}
	req, err := s.takeLogin(r, q.Get("state"))
	if err != nil {
		return err
	}
	back := func(code, desc string) error {
		return oauthError(http.StatusBadRequest, code, desc).redirectTo(req.RedirectURI, req.State)
	}
	if e := q.Get("error"); e != "" {
		s.auditLoginFailed(r, req, "", "identity provider answered "+truncate(e, 64))
		return back("access_denied", "sign-in at the identity provider did not complete")
	}
	id, tokens, err := s.redirectConn.Exchange(r.Context(), q.Get("code"), req.Nonce, req.Verifier)
	if err != nil {
		s.metrics.logins.WithLabelValues("failed").Inc()
		s.log.Warn("callback: sign-in failed", "client_id", req.ClientID, "err", err)
		s.auditLoginFailed(r, req, "", err.Error())
		desc := "sign-in at the identity provider failed"
		if errors.Is(err, connector.ErrNotAllowed) {
			desc = "the user is not allowed to use this service"
		}
		return back("access_denied", desc)
	}
	return s.afterLogin(w, r, req, id, &tokens)
}

// serveLogin is the static connector's login form.
func (s *Server) serveLogin(w http.ResponseWriter, r *http.Request) error {
	if s.passwordConn == nil {
		return pageError(http.StatusNotFound, "Not found", "Users sign in at the identity provider.")
	}
	switch r.Method {
	case http.MethodGet:
		state := r.URL.Query().Get("state")
		req, err := s.peekLogin(r, state)
		if err != nil {
			return err
		}
		s.pages.render(w, http.StatusOK, "login.html", loginPage{Action: s.endpoint("/oauth/login"), State: state, ClientName: s.clientName(r.Context(), req.ClientID)})
		return nil
	case http.MethodPost:
		if err := parseBrowserForm(w, r); err != nil {
			return err
		}
		state, user, password := r.PostForm.Get("state"), r.PostForm.Get("username"), r.PostForm.Get("password")
		req, err := s.peekLogin(r, state)
		if err != nil {
			return err
		}
		page := loginPage{Action: s.endpoint("/oauth/login"), State: state, ClientName: s.clientName(r.Context(), req.ClientID), Username: truncate(user, maxUsername)}
		if len(user) > maxUsername || len(password) > maxPassword {
			page.Error = "The user name or password is too long."
			s.pages.render(w, http.StatusBadRequest, "login.html", page)
			return nil
		}
		if !s.limits.login.allow(s.sources.key(r)) || !s.limits.loginUser.allow(user) {
			s.metrics.rateLimited.WithLabelValues("login").Inc()
			page.Error = "Too many attempts. Wait a minute and try again."
			s.pages.render(w, http.StatusTooManyRequests, "login.html", page)
			return nil
		}
		id, err := s.passwordConn.Login(r.Context(), user, password)
		if err != nil {
			s.metrics.logins.WithLabelValues("failed").Inc()
			s.auditLoginFailed(r, req, user, err.Error())
			page.Error = "The user name or password is wrong."
			s.pages.render(w, http.StatusUnauthorized, "login.html", page)
			return nil
		}
		// Single use from here on: a replayed form post finds nothing.
		if req, err = s.takeLogin(r, state); err != nil {
			return err
		}
		return s.afterLogin(w, r, req, id, nil)
	}
	return errMethod("GET or POST")
}

func (s *Server) clientName(ctx context.Context, id string) string {
	if c, err := s.lookupClient(ctx, id); err == nil && c.Name != "" {
		return c.Name
	}
	return id
}

// peekLogin loads a pending login without consuming it and checks that it
// belongs to this browser.
func (s *Server) peekLogin(r *http.Request, id string) (authRequest, error) {
	var req authRequest
	if id == "" || len(id) > 64 || s.getJSON(r.Context(), sessLogin, id, &req) != nil {
		return req, errLoginExpired
	}
	if !s.sameBrowser(r, req.Browser) {
		return req, pageError(http.StatusForbidden, "Sign-in refused", "This sign-in was started in another browser.")
	}
	return req, nil
}

// takeLogin consumes a pending login. The browser check comes first, so a
// request from another browser cannot burn the victim's login.
func (s *Server) takeLogin(r *http.Request, id string) (authRequest, error) {
	req, err := s.peekLogin(r, id)
	if err != nil {
		return req, err
	}
	if _, err := s.st.TakeSession(r.Context(), sessLogin, id); err != nil {
		return req, errLoginExpired
	}
	return req, nil
}

// auditLoginFailed records a failed sign-in. The typed user name is kept
// only as a short digest: a password typed into the name field must not
// land in the trail, while attempts on one name can still be correlated
// (compare with the first 8 hex digits of SHA-256 of the name).
func (s *Server) auditLoginFailed(r *http.Request, req authRequest, user, reason string) {
	ev := store.AuditEvent{Type: "login_failed", ClientID: req.ClientID, Kind: store.KindUser, Reason: reason,
		Details: map[string]any{"source_addr": s.sources.of(r)}}
	if user != "" {
		ev.Details["username_sha256_prefix"] = usernameDigest(user)
	}
	if err := s.audit.RecordSync(r.Context(), ev); err != nil {
		s.log.Error("audit login failure", "err", err)
	}
}

func usernameDigest(user string) string {
	sum := sha256.Sum256([]byte(user))
	return hex.EncodeToString(sum[:4])
}

func truncate(v string, n int) string {
	if len(v) <= n {
		return v
	}
	return v[:n]
}

// afterLogin continues once the user is known: straight to the client when
// consent is already on record (or the client is first-party), otherwise
// to the consent page.
func (s *Server) afterLogin(w http.ResponseWriter, r *http.Request, req authRequest, id connector.Identity, tokens *connector.Tokens) error {
	s.metrics.logins.WithLabelValues("succeeded").Inc()
	back := func(desc string) error {
		return oauthError(http.StatusInternalServerError, "server_error", desc).redirectTo(req.RedirectURI, req.State)
	}
	pc := pendingConsent{Req: req, Identity: id, GrantID: grant.NewID()}
	pc.Identity.Claims = trimClaims(id.Claims)
	if tokens != nil {
		sealed, err := s.sealTokens(pc.GrantID, *tokens)
		if err != nil {
			s.log.Error("seal identity provider tokens", "err", err)
			return back("sign-in could not be completed")
		}
		pc.Upstream = &sealed
	}
	client, err := s.lookupClient(r.Context(), req.ClientID)
	if err != nil {
		return pageError(http.StatusBadRequest, "Unknown application", "The application is no longer registered.")
	}
	pc.ClientName = client.Name
	if s.skipConsent(client.ID) || s.consentCovers(r.Context(), id.Subject, client.ID, req) {
		return s.issueCode(w, r, pc)
	}
	pc.CSRF = randomID(32)
	cid := randomID(32)
	if err := s.putJSON(r.Context(), sessConsent, cid, pc); err != nil {
		s.log.Error("save pending consent", "err", err)
		return back("sign-in could not be completed")
	}
	w.Header().Set("Cache-Control", "no-store")
	http.Redirect(w, r, s.endpoint("/oauth/consent?id="+url.QueryEscape(cid)), http.StatusSeeOther)
	return nil
}

// trimClaims drops protocol claims that say nothing about the user.
func trimClaims(c map[string]any) map[string]any {
	out := make(map[string]any, len(c))
	for k, v := range c {
		switch k {
		case "nonce", "at_hash", "c_hash", "exp", "iat", "nbf", "auth_time", "sid":
		default:
			out[k] = v
		}
	}
	return out
}

// ---- browser binding ----

func (s *Server) cookieName() string {
	if s.secure {
		return "__Host-warden_oauth"
	}
	return "warden_oauth"
}

// bindBrowser returns the digest of the browser-binding cookie, setting a
// fresh cookie when the browser has none. One cookie serves every flow of
// the browser, so parallel sign-ins do not clobber each other.
func (s *Server) bindBrowser(w http.ResponseWriter, r *http.Request) []byte {
	if c, err := r.Cookie(s.cookieName()); err == nil && len(c.Value) == 43 {
		return handle.Sum(c.Value)
	}
	v := randomID(32)
	http.SetCookie(w, &http.Cookie{
		Name: s.cookieName(), Value: v, Path: "/", HttpOnly: true, Secure: s.secure,
		// Lax: sent on the top-level redirect back from the IdP, not on
		// cross-site form posts.
		SameSite: http.SameSiteLaxMode,
	})
	return handle.Sum(v)
}

func (s *Server) sameBrowser(r *http.Request, want []byte) bool {
	c, err := r.Cookie(s.cookieName())
	return err == nil && len(want) > 0 && handle.Equal(c.Value, want)
}

// ---- session helpers ----

func (s *Server) putJSON(ctx context.Context, kind, id string, v any) error {
	raw, err := json.Marshal(v)
	if err != nil {
		return err
	}
	return s.st.PutSession(ctx, kind, id, raw, s.o.LoginTTL)
}

func (s *Server) getJSON(ctx context.Context, kind, id string, v any) error {
	raw, err := s.st.GetSession(ctx, kind, id)
	if err != nil {
		return err
	}
	return json.Unmarshal(raw, v)
}
