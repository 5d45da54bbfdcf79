package oauth

import (
	"context"
	"crypto/subtle"
	"encoding/json"
	"errors"
	"net/http"
	"net/url"
	"regexp"
	"slices"
	"strings"

	"golang.org/x/oauth2"

	"github.com/warden-mcp/warden/internal/handle"
	"github.com/warden-mcp/warden/internal/store"
	"github.com/warden-mcp/warden/oauth/connector"
)

// Session kinds of the browser flow. Both are single use (TakeSession).
const (
	sessLogin   = "oauth_login"   // id: the state sent to the IdP or the login form
	sessConsent = "oauth_consent" // id: the consent page id
)

// authRequest is a validated authorization request waiting for the user
// to sign in.
type authRequest struct {
	ClientID string `json:"client_id"`
	// RedirectURI is where the answer goes; RedirectGiven records that the
	// client sent it, so the token request must repeat it (RFC 6749 4.1.3).
	RedirectURI   string   `json:"redirect_uri"`
	RedirectGiven bool     `json:"redirect_given,omitempty"`
	State         string   `json:"state,omitempty"`
	Challenge     string   `json:"code_challenge"`
	Resources     []string `json:"resources"`
	Servers       []string `json:"servers"`
	Scopes        []string `json:"scopes,omitempty"`
	// Browser is the SHA-256 of the browser-binding cookie: the callback,
	// login and consent steps must come from the browser that started.
	Browser []byte `json:"browser"`
	// Nonce and Verifier protect the round trip to the IdP (OIDC nonce,
	// PKCE toward the IdP).
	Nonce    string `json:"nonce,omitempty"`
	Verifier string `json:"verifier,omitempty"`
}

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

var codeChallengePattern = regexp.MustCompile(`^[A-Za-z0-9_-]{43}$`)

// serveAuthorize is the authorization endpoint (RFC 6749 4.1.1, OAuth 2.1
// 4.1.1, RFC 7636, RFC 8707).
func (s *Server) serveAuthorize(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodGet && r.Method != http.MethodPost {
		s.renderError(w, r, pageError{Status: http.StatusMethodNotAllowed, Title: "Method not allowed", Message: "Use GET or POST."})
		return
	}
	if !s.limits.authorize.allow(s.limits.source(r)) {
		s.metrics.rateLimited.WithLabelValues("authorize").Inc()
		s.renderError(w, r, pageError{Status: http.StatusTooManyRequests, Title: "Too many requests", Message: "Too many sign-in attempts from your address. Wait a minute and try again."})
		return
	}
	if err := r.ParseForm(); err != nil {
		s.renderError(w, r, pageError{Title: "Invalid request", Message: "The authorization request cannot be parsed."})
		return
	}
	q := r.Form
	for _, p := range []string{"client_id", "redirect_uri", "state", "response_type", "code_challenge", "code_challenge_method", "scope"} {
		if len(q[p]) > 1 {
			s.renderError(w, r, pageError{Title: "Invalid request", Message: "The parameter " + p + " appears more than once."})
			return
		}
	}
	client, err := s.lookupClient(r.Context(), q.Get("client_id"))
	if err != nil {
		if !errors.Is(err, store.ErrNotFound) {
			s.log.Error("authorize: client lookup", "err", err)
		}
		s.renderError(w, r, pageError{Title: "Unknown application", Message: "The application that sent you here is not registered with Warden."})
		return
	}
	redirectURI := q.Get("redirect_uri")
	given := redirectURI != ""
	switch {
	case given && !slices.ContainsFunc(client.RedirectURIs, func(reg string) bool { return redirectMatches(reg, redirectURI) }):
		s.renderError(w, r, pageError{Title: "Invalid redirect URI", Message: "The application asked to return to an address it did not register. Warden will not send you there."})
		return
	case !given && len(client.RedirectURIs) != 1:
		s.renderError(w, r, pageError{Title: "Missing redirect URI", Message: "The application did not say where to return to."})
		return
	case !given:
		redirectURI = client.RedirectURIs[0]
	}
	state := q.Get("state")
	trusted := s.redirectTrusted(client, redirectURI)
	fail := func(code, desc string) {
		if !trusted {
			s.renderError(w, r, pageError{Title: "Invalid authorization request", Message: code + ": " + desc})
			return
		}
		s.redirectError(w, r, redirectURI, state, redirectError{Code: code, Description: desc})
	}

	if q.Get("response_type") != "code" {
		fail("unsupported_response_type", "only response_type=code is supported")
		return
	}
	if !slices.Contains(client.GrantTypes, grantCode) {
		fail("unauthorized_client", "the client is not registered for the authorization_code grant")
		return
	}
	if q.Get("request") != "" || q.Get("request_uri") != "" {
		fail("request_not_supported", "request objects are not supported")
		return
	}
	challenge, method := q.Get("code_challenge"), q.Get("code_challenge_method")
	switch {
	case challenge == "":
		fail("invalid_request", "code_challenge is required (PKCE)")
		return
	case method != "S256":
		// OAuth 2.1 4.1.1: an absent method means plain, which is refused.
		fail("invalid_request", "code_challenge_method must be S256")
		return
	case !codeChallengePattern.MatchString(challenge):
		fail("invalid_request", "code_challenge must be a base64url SHA-256 value")
		return
	}
	if slices.Contains(strings.Fields(q.Get("prompt")), "none") {
		fail("login_required", "Warden keeps no sign-in session; interactive sign-in is required")
		return
	}
	tgt, err := s.resolveResources(r.Context(), q["resource"])
	if err != nil {
		fail("invalid_target", err.Error())
		return
	}
	scopes, err := s.chooseScopes(r.Context(), q.Get("scope"), tgt, client)
	if err != nil {
		fail("invalid_scope", err.Error())
		return
	}
	req := authRequest{
		ClientID: client.ID, RedirectURI: redirectURI, RedirectGiven: given, State: state,
		Challenge: challenge, Resources: tgt.Resources, Servers: tgt.names(), Scopes: scopes,
		Browser: s.bindBrowser(w, r), Nonce: randomID(24), Verifier: oauth2.GenerateVerifier(),
	}
	id := randomID(32)
	next := s.endpoint("/oauth/login?state=" + url.QueryEscape(id))
	if s.redirectConn != nil {
		next, err = s.redirectConn.AuthCodeURL(r.Context(), id, req.Nonce, req.Verifier)
		if err != nil {
			s.log.Error("authorize: identity provider", "err", err)
			fail("temporarily_unavailable", "the identity provider cannot be reached")
			return
		}
	}
	if err := s.putJSON(r.Context(), sessLogin, id, req); err != nil {
		s.log.Error("authorize: save request", "err", err)
		fail("server_error", "the authorization request could not be saved")
		return
	}
	w.Header().Set("Cache-Control", "no-store")
	http.Redirect(w, r, next, http.StatusSeeOther)
}

// redirectTrusted says whether errors found before the user signed in may
// be redirected to redirectURI. Anyone can register a client with open
// registration, so an https redirect URI of a self-registered client is
// not trusted: redirecting errors there would make Warden an open
// redirector for phishing (RFC 9700 4.11.2). Operator-declared clients,
// allow-listed registrations, and URIs that can only reach the user's own
// device (loopback, private-use schemes) are trusted.
func (s *Server) redirectTrusted(c store.Client, redirectURI string) bool {
	if c.Source == sourceConfig || (c.Source == sourceDCR && s.ocfg.Registration.Mode == "allowlist") {
		return true
	}
	u, err := url.Parse(redirectURI)
	if err != nil {
		return false
	}
	switch u.Scheme {
	case "https":
		return false
	case "http":
		return isLoopbackHost(u.Hostname())
	default:
		return true
	}
}

// serveCallback is the one static redirect URI registered at the IdP.
func (s *Server) serveCallback(w http.ResponseWriter, r *http.Request) {
	if s.redirectConn == nil {
		s.renderError(w, r, pageError{Status: http.StatusNotFound, Title: "Not found", Message: "This Warden signs users in with a local form, not an identity provider."})
		return
	}
	q := r.URL.Query()
	req, ok := s.takeLogin(w, r, q.Get("state"))
	if !ok {
		return
	}
	if e := q.Get("error"); e != "" {
		s.auditLoginFailed(r, req, "", "identity provider answered "+e)
		s.redirectError(w, r, req.RedirectURI, req.State, redirectError{Code: "access_denied", Description: "sign-in at the identity provider did not complete"})
		return
	}
	id, tokens, err := s.redirectConn.Exchange(r.Context(), q.Get("code"), req.Nonce, req.Verifier)
	if err != nil {
		s.metrics.logins.WithLabelValues("failed").Inc()
		s.log.Warn("callback: sign-in failed", "client_id", req.ClientID, "err", err)
		s.auditLoginFailed(r, req, "", err.Error())
		code, desc := "access_denied", "sign-in at the identity provider failed"
		if errors.Is(err, connector.ErrNotAllowed) {
			desc = "the user is not allowed to use this service"
		}
		s.redirectError(w, r, req.RedirectURI, req.State, redirectError{Code: code, Description: desc})
		return
	}
	s.afterLogin(w, r, req, id, &tokens)
}

// serveLogin is the static connector's login form.
func (s *Server) serveLogin(w http.ResponseWriter, r *http.Request) {
	if s.passwordConn == nil {
		s.renderError(w, r, pageError{Status: http.StatusNotFound, Title: "Not found", Message: "Users sign in at the identity provider."})
		return
	}
	switch r.Method {
	case http.MethodGet:
		state := r.URL.Query().Get("state")
		req, ok := s.peekLogin(w, r, state)
		if !ok {
			return
		}
		s.pages.render(w, http.StatusOK, "login.html", loginPage{Action: s.endpoint("/oauth/login"), State: state, ClientName: s.clientName(r.Context(), req.ClientID)})
	case http.MethodPost:
		if err := r.ParseForm(); err != nil {
			s.renderError(w, r, pageError{Title: "Invalid request", Message: "The form cannot be parsed."})
			return
		}
		state, user := r.PostForm.Get("state"), r.PostForm.Get("username")
		req, ok := s.peekLogin(w, r, state)
		if !ok {
			return
		}
		page := loginPage{Action: s.endpoint("/oauth/login"), State: state, ClientName: s.clientName(r.Context(), req.ClientID), Username: user}
		if !s.limits.login.allow(s.limits.source(r)) || !s.limits.loginUser.allow(user) {
			s.metrics.rateLimited.WithLabelValues("login").Inc()
			page.Error = "Too many attempts. Wait a minute and try again."
			s.pages.render(w, http.StatusTooManyRequests, "login.html", page)
			return
		}
		id, err := s.passwordConn.Login(r.Context(), user, r.PostForm.Get("password"))
		if err != nil {
			s.metrics.logins.WithLabelValues("failed").Inc()
			s.auditLoginFailed(r, req, user, err.Error())
			page.Error = "The user name or password is wrong."
			s.pages.render(w, http.StatusUnauthorized, "login.html", page)
			return
		}
		// Single use from here on: a replayed form post finds nothing.
		if req, ok = s.takeLogin(w, r, state); !ok {
			return
		}
		s.afterLogin(w, r, req, id, nil)
	default:
		s.renderError(w, r, pageError{Status: http.StatusMethodNotAllowed, Title: "Method not allowed", Message: "Use GET or POST."})
	}
}

func (s *Server) clientName(ctx context.Context, id string) string {
	if c, err := s.lookupClient(ctx, id); err == nil && c.Name != "" {
		return c.Name
	}
	return id
}

// peekLogin loads a pending login without consuming it and checks that it
// belongs to this browser.
func (s *Server) peekLogin(w http.ResponseWriter, r *http.Request, id string) (authRequest, bool) {
	var req authRequest
	if id == "" || s.getJSON(r.Context(), sessLogin, id, &req) != nil {
		s.renderError(w, r, pageError{Title: "Sign-in expired", Message: "This sign-in request has expired or was already used."})
		return req, false
	}
	if !s.sameBrowser(r, req.Browser) {
		s.renderError(w, r, pageError{Status: http.StatusForbidden, Title: "Sign-in refused", Message: "This sign-in was started in another browser."})
		return req, false
	}
	return req, true
}

// takeLogin consumes a pending login. The browser check comes first, so a
// request from another browser cannot burn the victim's login.
func (s *Server) takeLogin(w http.ResponseWriter, r *http.Request, id string) (authRequest, bool) {
	req, ok := s.peekLogin(w, r, id)
	if !ok {
		return req, false
	}
	if _, err := s.st.TakeSession(r.Context(), sessLogin, id); err != nil {
		s.renderError(w, r, pageError{Title: "Sign-in expired", Message: "This sign-in request has expired or was already used."})
		return req, false
	}
	return req, true
}

func (s *Server) auditLoginFailed(r *http.Request, req authRequest, user, reason string) {
	ev := store.AuditEvent{Type: "login_failed", ClientID: req.ClientID, Kind: store.KindUser, Reason: reason,
		Details: map[string]any{"source_addr": s.limits.source(r)}}
	if user != "" {
		ev.Details["username"] = user
	}
	if err := s.audit.RecordSync(r.Context(), ev); err != nil {
		s.log.Error("audit login failure", "err", err)
	}
}

// afterLogin continues once the user is known: straight to the client when
// consent is already on record (or the client is first-party), otherwise
// to the consent page.
func (s *Server) afterLogin(w http.ResponseWriter, r *http.Request, req authRequest, id connector.Identity, tokens *connector.Tokens) {
	s.metrics.logins.WithLabelValues("succeeded").Inc()
	pc := pendingConsent{Req: req, Identity: id, GrantID: "g_" + randomID(16)}
	pc.Identity.Claims = trimClaims(id.Claims)
	if tokens != nil {
		sealed, err := s.sealTokens(pc.GrantID, *tokens)
		if err != nil {
			s.log.Error("seal identity provider tokens", "err", err)
			s.redirectError(w, r, req.RedirectURI, req.State, redirectError{Code: "server_error", Description: "sign-in could not be completed"})
			return
		}
		pc.Upstream = &sealed
	}
	client, err := s.lookupClient(r.Context(), req.ClientID)
	if err != nil {
		s.renderError(w, r, pageError{Title: "Unknown application", Message: "The application is no longer registered."})
		return
	}
	pc.ClientName = client.Name
	if s.skipConsent(client.ID) || s.consentCovers(r.Context(), id.Subject, client.ID, req) {
		s.issueCode(w, r, pc)
		return
	}
	pc.CSRF = randomID(32)
	cid := randomID(32)
	if err := s.putJSON(r.Context(), sessConsent, cid, pc); err != nil {
		s.log.Error("save pending consent", "err", err)
		s.redirectError(w, r, req.RedirectURI, req.State, redirectError{Code: "server_error", Description: "sign-in could not be completed"})
		return
	}
	w.Header().Set("Cache-Control", "no-store")
	http.Redirect(w, r, s.endpoint("/oauth/consent?id="+url.QueryEscape(cid)), http.StatusSeeOther)
}

// consentCovers reports whether the user already approved this client for
// at least these scopes and servers.
func (s *Server) consentCovers(ctx context.Context, subject, clientID string, req authRequest) bool {
	c, err := s.st.GetConsent(ctx, subject, clientID)
	if err != nil {
		return false
	}
	return subset(req.Scopes, c.Scopes) && subset(req.Servers, c.Servers)
}

// serveConsent shows (GET) and answers (POST) the consent page. The POST
// must carry the page's CSRF token and come from the browser that signed
// in (SameSite cookie), so another site cannot approve on the user's
// behalf.
func (s *Server) serveConsent(w http.ResponseWriter, r *http.Request) {
	var id string
	switch r.Method {
	case http.MethodGet:
		id = r.URL.Query().Get("id")
	case http.MethodPost:
		if err := r.ParseForm(); err != nil {
			s.renderError(w, r, pageError{Title: "Invalid request", Message: "The form cannot be parsed."})
			return
		}
		id = r.PostForm.Get("id")
	default:
		s.renderError(w, r, pageError{Status: http.StatusMethodNotAllowed, Title: "Method not allowed", Message: "Use GET or POST."})
		return
	}
	var pc pendingConsent
	if id == "" || s.getJSON(r.Context(), sessConsent, id, &pc) != nil {
		s.renderError(w, r, pageError{Title: "Request expired", Message: "This authorization request has expired or was already answered."})
		return
	}
	if !s.sameBrowser(r, pc.Req.Browser) {
		s.renderError(w, r, pageError{Status: http.StatusForbidden, Title: "Request refused", Message: "This authorization was started in another browser."})
		return
	}
	client, err := s.lookupClient(r.Context(), pc.Req.ClientID)
	if err != nil {
		s.renderError(w, r, pageError{Title: "Unknown application", Message: "The application is no longer registered."})
		return
	}
	if r.Method == http.MethodGet {
		s.pages.render(w, http.StatusOK, "consent.html", s.consentPage(r.Context(), id, pc, client))
		return
	}
	if subtle.ConstantTimeCompare([]byte(r.PostForm.Get("csrf")), []byte(pc.CSRF)) != 1 || pc.CSRF == "" {
		s.renderError(w, r, pageError{Status: http.StatusForbidden, Title: "Request refused", Message: "The consent form could not be verified. Start again from your application."})
		return
	}
	if _, err := s.st.TakeSession(r.Context(), sessConsent, id); err != nil {
		s.renderError(w, r, pageError{Title: "Request expired", Message: "This authorization request has expired or was already answered."})
		return
	}
	ev := store.AuditEvent{Subject: pc.Identity.Subject, ClientID: client.ID, Kind: store.KindUser,
		Details: map[string]any{"servers": pc.Req.Servers, "scopes": pc.Req.Scopes, "client_source": client.Source}}
	if r.PostForm.Get("decision") != "approve" {
		ev.Type = "consent_denied"
		if err := s.audit.RecordSync(r.Context(), ev); err != nil {
			s.log.Error("audit consent", "err", err)
		}
		s.redirectError(w, r, pc.Req.RedirectURI, pc.Req.State, redirectError{Code: "access_denied", Description: "the user denied the request"})
		return
	}
	ev.Type = "consent_granted"
	if err := s.audit.RecordSync(r.Context(), ev); err != nil {
		s.log.Error("audit consent", "err", err)
		s.redirectError(w, r, pc.Req.RedirectURI, pc.Req.State, redirectError{Code: "server_error", Description: "consent could not be recorded"})
		return
	}
	// Remember the union with what was approved before, so a narrower
	// request later does not ask again.
	prev, _ := s.st.GetConsent(r.Context(), pc.Identity.Subject, client.ID)
	if err := s.st.PutConsent(r.Context(), store.Consent{
		Subject: pc.Identity.Subject, ClientID: client.ID, GrantedAt: s.now(),
		Scopes: union(prev.Scopes, pc.Req.Scopes), Servers: union(prev.Servers, pc.Req.Servers),
	}); err != nil {
		s.log.Error("remember consent", "err", err)
	}
	s.issueCode(w, r, pc)
}

func (s *Server) consentPage(ctx context.Context, id string, pc pendingConsent, c store.Client) consentPage {
	p := consentPage{
		Action: s.endpoint("/oauth/consent"), ID: id, CSRF: pc.CSRF,
		ClientName: c.Name, ClientID: c.ID, ClientSource: c.Source, Scopes: pc.Req.Scopes,
		User: pc.Identity.Subject,
	}
	if p.ClientName == "" {
		p.ClientName = "An unnamed application"
	}
	if pc.Identity.Email != "" {
		p.User = pc.Identity.Email
	}
	if u, err := url.Parse(pc.Req.RedirectURI); err == nil {
		p.RedirectHost = u.Host
		if p.RedirectHost == "" {
			p.RedirectHost = u.Scheme + ":"
		}
	}
	for i, name := range pc.Req.Servers {
		cs := consentServer{Name: name, Resource: pc.Req.Resources[i]}
		if srv, err := s.servers.GetServer(ctx, name); err == nil {
			cs.Description = srv.Description
		}
		p.Servers = append(p.Servers, cs)
	}
	return p
}

// issueCode creates the grant and a single-use authorization code bound to
// the client, redirect URI, PKCE challenge and resources, and sends the
// browser back to the client with code, state and iss (RFC 9207).
func (s *Server) issueCode(w http.ResponseWriter, r *http.Request, pc pendingConsent) {
	now := s.now()
	req := pc.Req
	g := store.Grant{
		ID: pc.GrantID, Subject: pc.Identity.Subject, Email: pc.Identity.Email, Name: pc.Identity.Name,
		Groups: pc.Identity.Groups, Claims: pc.Identity.Claims, ClientID: req.ClientID, ClientName: pc.ClientName, Kind: store.KindUser,
		Scopes: req.Scopes, Resources: req.Resources, Servers: req.Servers,
		CreatedAt: now, ExpiresAt: now.Add(s.ocfg.RefreshTokenTTL.D()),
	}
	if pc.Upstream != nil {
		g.Upstream = map[string]store.Sealed{upstreamIdP: *pc.Upstream}
	}
	raw, digest := handle.New(handle.PrefixCode)
	code := store.Handle{
		Digest: digest, Kind: store.HandleCode, GrantID: g.ID, ClientID: req.ClientID,
		Resources: req.Resources, Scopes: req.Scopes, IssuedAt: now, ExpiresAt: now.Add(s.ocfg.CodeTTL.D()),
		CodeChallenge: req.Challenge,
	}
	if req.RedirectGiven {
		code.RedirectURI = req.RedirectURI
	}
	ctx := r.Context()
	err := s.st.CreateGrant(ctx, g)
	if err == nil {
		err = s.st.CreateHandle(ctx, code)
	}
	if err == nil {
		err = s.audit.RecordSync(ctx, store.AuditEvent{Type: "code_issued", Subject: g.Subject, ClientID: g.ClientID, Kind: g.Kind, GrantID: g.ID,
			Details: map[string]any{"servers": g.Servers, "scopes": g.Scopes}})
	}
	if err != nil {
		s.log.Error("issue authorization code", "err", err)
		s.redirectError(w, r, req.RedirectURI, req.State, redirectError{Code: "server_error", Description: "the authorization could not be stored"})
		return
	}
	s.redirectTo(w, r, req.RedirectURI, req.State, url.Values{"code": {raw}})
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
	return s.st.PutSession(ctx, kind, id, raw, s.ocfg.LoginTTL.D())
}

func (s *Server) getJSON(ctx context.Context, kind, id string, v any) error {
	raw, err := s.st.GetSession(ctx, kind, id)
	if err != nil {
		return err
	}
	return json.Unmarshal(raw, v)
}
