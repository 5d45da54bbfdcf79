package oauth

import (
	"errors"
	"net/http"
	"net/url"
	"regexp"
	"slices"
	"strings"

	"golang.org/x/oauth2"

	"github.com/warden-mcp/warden/internal/store"
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

var codeChallengePattern = regexp.MustCompile(`^[A-Za-z0-9_-]{43}$`)

// serveAuthorize is the authorization endpoint (RFC 6749 4.1.1, OAuth 2.1
// 4.1.1, RFC 7636, RFC 8707).
func (s *Server) serveAuthorize(w http.ResponseWriter, r *http.Request) error {
	if r.Method != http.MethodGet && r.Method != http.MethodPost {
		return errMethod("GET or POST")
	}
	src := s.sources.key(r)
	if !s.limits.authorize.allow(src) {
		s.metrics.rateLimited.WithLabelValues("authorize").Inc()
		return pageError(http.StatusTooManyRequests, "Too many requests", "Too many sign-in attempts from your address. Wait a minute and try again.")
	}
	if err := parseBrowserForm(w, r); err != nil {
		return err
	}
	q := r.Form
	for _, p := range []string{"client_id", "redirect_uri", "state", "response_type", "code_challenge", "code_challenge_method", "scope", "prompt"} {
		if len(q[p]) > 1 {
			return pageError(http.StatusBadRequest, "Invalid request", "The parameter "+p+" appears more than once.")
		}
	}
	if len(q.Get("client_id")) > maxClientID || len(q.Get("redirect_uri")) > maxURI {
		return pageError(http.StatusBadRequest, "Invalid request", "The client_id or redirect_uri is too long.")
	}
	client, err := s.lookupClient(r.Context(), q.Get("client_id"))
	if err != nil {
		if !errors.Is(err, store.ErrNotFound) {
			s.log.Error("authorize: client lookup", "err", err)
		}
		return pageError(http.StatusBadRequest, "Unknown application", "The application that sent you here is not registered with Warden.")
	}
	redirectURI := q.Get("redirect_uri")
	given := redirectURI != ""
	switch {
	case given && !slices.ContainsFunc(client.RedirectURIs, func(reg string) bool { return redirectMatches(reg, redirectURI) }):
		return pageError(http.StatusBadRequest, "Invalid redirect URI", "The application asked to return to an address it did not register. Warden will not send you there.")
	case !given && len(client.RedirectURIs) != 1:
		return pageError(http.StatusBadRequest, "Missing redirect URI", "The application did not say where to return to.")
	case !given:
		redirectURI = client.RedirectURIs[0]
	}
	state := q.Get("state")
	trusted := s.redirectTrusted(client, redirectURI)
	fail := func(code, desc string) error {
		e := oauthError(http.StatusBadRequest, code, desc)
		if !trusted || len(state) > maxState {
			// A state too long to echo goes nowhere either: the client
			// would not recognise the answer.
			e.Title, e.Message = "Invalid authorization request", code+": "+desc
			return e
		}
		return e.redirectTo(redirectURI, state)
	}
	if len(state) > maxState {
		return fail("invalid_request", "state is too long")
	}
	if q.Get("response_type") != "code" {
		return fail("unsupported_response_type", "only response_type=code is supported")
	}
	if !clientAllows(client, grantCode) {
		return fail("unauthorized_client", "the client is not registered for the authorization_code grant")
	}
	if q.Get("request") != "" || q.Get("request_uri") != "" {
		return fail("request_not_supported", "request objects are not supported")
	}
	challenge, method := q.Get("code_challenge"), q.Get("code_challenge_method")
	switch {
	case challenge == "":
		return fail("invalid_request", "code_challenge is required (PKCE)")
	case method != "S256":
		// OAuth 2.1 4.1.1: an absent method means plain, which is refused.
		return fail("invalid_request", "code_challenge_method must be S256")
	case !codeChallengePattern.MatchString(challenge):
		return fail("invalid_request", "code_challenge must be a base64url SHA-256 value")
	}
	if len(q.Get("prompt")) > maxParam {
		return fail("invalid_request", "prompt is too long")
	}
	if slices.Contains(strings.Fields(q.Get("prompt")), "none") {
		return fail("login_required", "Warden keeps no sign-in session; interactive sign-in is required")
	}
	if err := checkResources(q["resource"]); err != nil {
		var e *Error
		errors.As(err, &e)
		return fail(e.Code, e.Description)
	}
	tgt, err := s.resolveResources(r.Context(), q["resource"])
	if err != nil {
		return fail("invalid_target", err.Error())
	}
	requested, err := parseScope(q.Get("scope"))
	if err != nil {
		return fail("invalid_scope", "the scope parameter is malformed or too long")
	}
	scopes, err := s.chooseScopes(r.Context(), requested, tgt, client)
	if err != nil {
		return fail("invalid_scope", err.Error())
	}
	// Only now, with everything checked, may the request cost storage:
	// a pending sign-in per source and overall is bounded.
	if !s.limits.pending.allow(src) || !s.limits.pendingAll.allow("") {
		s.metrics.rateLimited.WithLabelValues("pending_login").Inc()
		return pageError(http.StatusTooManyRequests, "Too many sign-ins", "Too many sign-ins were started and not finished. Wait a few minutes and try again.")
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
			return fail("temporarily_unavailable", "the identity provider cannot be reached")
		}
	}
	if err := s.putJSON(r.Context(), sessLogin, id, req); err != nil {
		s.log.Error("authorize: save request", "err", err)
		return fail("server_error", "the authorization request could not be saved")
	}
	w.Header().Set("Cache-Control", "no-store")
	http.Redirect(w, r, next, http.StatusSeeOther)
	return nil
}

// redirectTrusted says whether errors found before the user signed in may
// be redirected to redirectURI. Anyone can register a client with open
// registration, so an https redirect URI of a self-registered client is
// not trusted: redirecting errors there would make Warden an open
// redirector for phishing (RFC 9700 4.11.2). Operator-declared clients,
// allow-listed registrations, and URIs that can only reach the user's own
// device (loopback, private-use schemes) are trusted.
func (s *Server) redirectTrusted(c store.Client, redirectURI string) bool {
	if c.Source == sourceConfig || (c.Source == sourceDCR && s.o.Registration.Mode == RegistrationAllowlist) {
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
