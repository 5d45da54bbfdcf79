package oauth

import (
	"context"
	"crypto/subtle"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strings"

	"golang.org/x/oauth2"

	"github.com/warden-mcp/warden/internal/grant"
	"github.com/warden-mcp/warden/internal/store"
	"github.com/warden-mcp/warden/internal/upstream"
)

// The connect flow: a user connects an account at a third-party provider
// (or pastes an API key) for servers in "provider" credential mode.
//
//  1. Check finds no account and answers with a URL elicitation naming a
//     connect link (ConnectURL): single use, short-lived, bound to the
//     subject, and not pre-authenticated (MCP 2025-11-25 client/elicitation,
//     "Safe URL Handling").
//  2. Opening the link signs the browser in at the enterprise IdP; the
//     signed-in subject must be the link's, so a link opened in someone
//     else's browser session connects nothing to this user.
//  3. The connect page (CSRF token, same-browser cookie) sends the browser
//     to the provider with PKCE and state; the provider comes back to the
//     one static callback of the provider, /oauth/providers/<name>/callback.
//  4. The callback (same browser, single-use state) redeems the code and
//     stores the tokens sealed for (subject, provider), audited.

const (
	sessConnectLink   = "connect_link"
	sessConnectLogin  = "connect_login"
	sessConnectPage   = "connect_page"
	sessProviderState = "provider_state"
)

type connectLink struct {
	Subject  string `json:"sub"`
	Provider string `json:"provider"`
}

type connectLogin struct {
	connectLink
	Browser  []byte `json:"browser"`
	Nonce    string `json:"nonce"`
	Verifier string `json:"verifier"`
}

type connectPageState struct {
	connectLink
	Browser []byte `json:"browser"`
	CSRF    string `json:"csrf"`
}

type providerState struct {
	connectLink
	Browser  []byte `json:"browser"`
	Verifier string `json:"verifier"`
}

// connectView is what the connect template shows.
type connectView struct {
	ProviderName string
	User         string
	Connected    bool
	ConnectedAt  string
	APIKey       bool
	Done         string
	Action       string
	ID           string
	CSRF         string
}

var errConnectExpired = pageError(http.StatusBadRequest, "Link expired", "This connect link has expired or was already used. Retry the request in your MCP client to get a new one.")

// ConnectURL returns a fresh connect link for subject at provider.
func (s *Server) ConnectURL(ctx context.Context, subject, provider string) (string, error) {
	id := randomID(32)
	raw, err := json.Marshal(connectLink{Subject: subject, Provider: provider})
	if err != nil {
		return "", err
	}
	if err := s.st.PutSession(ctx, sessConnectLink, id, raw, s.o.ConnectTTL); err != nil {
		return "", fmt.Errorf("store connect link: %w", err)
	}
	return s.endpoint("/oauth/providers/" + url.PathEscape(provider) + "/connect?id=" + url.QueryEscape(id)), nil
}

// ProviderCallbackURL is the one redirect URI to register at provider name.
func (s *Server) ProviderCallbackURL(name string) string {
	return s.endpoint("/oauth/providers/" + url.PathEscape(name) + "/callback")
}

// serveConnect: GET opens a connect link (sign-in at the IdP first), POST
// is the connect page's form.
func (s *Server) serveConnect(w http.ResponseWriter, r *http.Request) error {
	switch r.Method {
	case http.MethodGet:
		return s.openConnectLink(w, r)
	case http.MethodPost:
		return s.postConnect(w, r)
	}
	return errMethod("GET or POST")
}

func (s *Server) openConnectLink(w http.ResponseWriter, r *http.Request) error {
	if s.redirectConn == nil {
		return pageError(http.StatusNotFound, "Not available", "Connecting accounts needs sign-in through an identity provider.")
	}
	id := r.URL.Query().Get("id")
	if id == "" || len(id) > 64 {
		return errConnectExpired
	}
	var link connectLink
	raw, err := s.st.TakeSession(r.Context(), sessConnectLink, id)
	if err != nil || json.Unmarshal(raw, &link) != nil || link.Provider != r.PathValue("name") {
		return errConnectExpired
	}
	cl := connectLogin{connectLink: link, Browser: s.bindBrowser(w, r), Nonce: randomID(16), Verifier: oauth2.GenerateVerifier()}
	state := randomID(32)
	if err := s.putJSON(r.Context(), sessConnectLogin, state, cl); err != nil {
		return err
	}
	u, err := s.redirectConn.AuthCodeURL(r.Context(), state, cl.Nonce, cl.Verifier)
	if err != nil {
		return err
	}
	w.Header().Set("Cache-Control", "no-store")
	http.Redirect(w, r, u, http.StatusSeeOther)
	return nil
}

// takeConnectLogin consumes the IdP sign-in of a connect link; ok is false
// when state names no such sign-in (an ordinary login's state).
func (s *Server) takeConnectLogin(r *http.Request, state string) (connectLogin, bool, error) {
	var cl connectLogin
	if state == "" || len(state) > 64 || s.getJSON(r.Context(), sessConnectLogin, state, &cl) != nil {
		return cl, false, nil
	}
	if !s.sameBrowser(r, cl.Browser) {
		return cl, true, pageError(http.StatusForbidden, "Connect refused", "This connect link was opened in another browser.")
	}
	if _, err := s.st.TakeSession(r.Context(), sessConnectLogin, state); err != nil {
		return cl, true, errConnectExpired
	}
	return cl, true, nil
}

func (s *Server) afterConnectLogin(w http.ResponseWriter, r *http.Request, cl connectLogin, q url.Values) error {
	if e := q.Get("error"); e != "" {
		return pageError(http.StatusBadRequest, "Sign-in failed", "Sign-in at the identity provider did not complete.")
	}
	id, _, err := s.redirectConn.Exchange(r.Context(), q.Get("code"), cl.Nonce, cl.Verifier)
	if err != nil {
		s.log.Warn("connect: sign-in failed", "provider", cl.Provider, "err", err)
		return pageError(http.StatusBadRequest, "Sign-in failed", "Sign-in at the identity provider failed.")
	}
	if subtle.ConstantTimeCompare([]byte(id.Subject), []byte(cl.Subject)) != 1 {
		s.auditCredential(r.Context(), store.AuditEvent{Type: "credential_connect_refused", Actor: "user:" + id.Subject, Subject: cl.Subject,
			Reason: "connect link opened by another signed-in user", Details: map[string]any{"provider": cl.Provider}})
		return pageError(http.StatusForbidden, "Connect refused", "This connect link was made for another user. Retry the request in your own MCP client.")
	}
	return s.renderConnect(w, r, cl.connectLink, cl.Browser, "")
}

// renderConnect shows the connect page with a fresh page session.
func (s *Server) renderConnect(w http.ResponseWriter, r *http.Request, link connectLink, browser []byte, done string) error {
	p, err := s.st.GetProvider(r.Context(), link.Provider)
	if err != nil {
		return pageError(http.StatusNotFound, "Unknown provider", "This provider is no longer configured.")
	}
	v := connectView{ProviderName: p.Name, User: link.Subject, APIKey: p.Kind == store.ProviderAPIKey, Done: done}
	if a, err := s.st.GetAccount(r.Context(), link.Subject, p.Name); err == nil {
		v.Connected, v.ConnectedAt = true, a.ConnectedAt.UTC().Format("2006-01-02 15:04 UTC")
	}
	ps := connectPageState{connectLink: link, Browser: browser, CSRF: randomID(32)}
	v.ID = randomID(32)
	if err := s.putJSON(r.Context(), sessConnectPage, v.ID, ps); err != nil {
		return err
	}
	v.CSRF = ps.CSRF
	v.Action = s.endpoint("/oauth/providers/" + url.PathEscape(p.Name) + "/connect")
	s.pages.render(w, http.StatusOK, "connect.html", v)
	return nil
}

// maxAPIKey bounds a pasted key.
const maxAPIKey = 4096

func (s *Server) postConnect(w http.ResponseWriter, r *http.Request) error {
	if err := parseBrowserForm(w, r); err != nil {
		return err
	}
	id, csrf := r.PostForm.Get("id"), r.PostForm.Get("csrf")
	var ps connectPageState
	if id == "" || len(id) > 64 || s.getJSON(r.Context(), sessConnectPage, id, &ps) != nil || ps.Provider != r.PathValue("name") {
		return errConnectExpired
	}
	if !s.sameBrowser(r, ps.Browser) || subtle.ConstantTimeCompare([]byte(csrf), []byte(ps.CSRF)) != 1 {
		return pageError(http.StatusForbidden, "Request refused", "This form was not sent from the connect page in this browser.")
	}
	if _, err := s.st.TakeSession(r.Context(), sessConnectPage, id); err != nil {
		return errConnectExpired
	}
	p, err := s.st.GetProvider(r.Context(), ps.Provider)
	if err != nil {
		return pageError(http.StatusNotFound, "Unknown provider", "This provider is no longer configured.")
	}
	ctx := r.Context()
	switch r.PostForm.Get("action") {
	case "disconnect":
		if _, err := s.grants.RevokeAccounts(ctx, "user:"+ps.Subject, grant.AccountTarget{Provider: p.Name, Subject: ps.Subject, ByUser: true}, grant.ReasonDisconnected); err != nil {
			return err
		}
		return s.renderConnect(w, r, ps.connectLink, ps.Browser, "Disconnected.")
	case "key":
		key := strings.TrimSpace(r.PostForm.Get("key"))
		if p.Kind != store.ProviderAPIKey || key == "" || len(key) > maxAPIKey || strings.ContainsAny(key, "\r\n") {
			return s.renderConnect(w, r, ps.connectLink, ps.Browser, "Enter the key on one line.")
		}
		if err := s.storeAccount(ctx, ps.Subject, p.Name, upstream.Secret{APIKey: key}, nil); err != nil {
			return err
		}
		return s.renderConnect(w, r, ps.connectLink, ps.Browser, "Saved. Return to your MCP client and retry the request.")
	case "connect":
		if p.Kind != store.ProviderOAuth {
			return pageError(http.StatusBadRequest, "Invalid request", "This provider takes a key, not a sign-in.")
		}
		st := providerState{connectLink: ps.connectLink, Browser: ps.Browser, Verifier: oauth2.GenerateVerifier()}
		state := randomID(32)
		if err := s.putJSON(ctx, sessProviderState, state, st); err != nil {
			return err
		}
		oc, err := s.providerConfig(p)
		if err != nil {
			return err
		}
		opts := []oauth2.AuthCodeOption{oauth2.S256ChallengeOption(st.Verifier)}
		for k, v := range p.AuthParams {
			opts = append(opts, oauth2.SetAuthURLParam(k, v))
		}
		w.Header().Set("Cache-Control", "no-store")
		http.Redirect(w, r, oc.AuthCodeURL(state, opts...), http.StatusSeeOther)
		return nil
	}
	return pageError(http.StatusBadRequest, "Invalid request", "Unknown action.")
}

func (s *Server) providerConfig(p store.Provider) (*oauth2.Config, error) {
	secret := ""
	if p.ClientSecret != nil {
		raw, err := s.ring.Open(*p.ClientSecret, []byte(upstream.ProviderAAD(p.Name)))
		if err != nil {
			return nil, fmt.Errorf("open client secret of provider %s: %w", p.Name, err)
		}
		secret = string(raw)
	}
	return &oauth2.Config{
		ClientID: p.ClientID, ClientSecret: secret,
		Endpoint:    oauth2.Endpoint{AuthURL: p.AuthorizeURL, TokenURL: p.TokenURL},
		RedirectURL: s.ProviderCallbackURL(p.Name),
		Scopes:      p.Scopes,
	}, nil
}

// serveProviderCallback is the static redirect URI of every provider.
func (s *Server) serveProviderCallback(w http.ResponseWriter, r *http.Request) error {
	if len(r.URL.RawQuery) > maxFormBody {
		return errConnectExpired
	}
	q := r.URL.Query()
	state := q.Get("state")
	var st providerState
	if state == "" || len(state) > 64 || s.getJSON(r.Context(), sessProviderState, state, &st) != nil || st.Provider != r.PathValue("name") {
		return errConnectExpired
	}
	// The browser check comes first, so another browser cannot burn the
	// user's state.
	if !s.sameBrowser(r, st.Browser) {
		s.auditCredential(r.Context(), store.AuditEvent{Type: "credential_connect_refused", Subject: st.Subject,
			Reason: "provider callback from another browser", Details: map[string]any{"provider": st.Provider}})
		return pageError(http.StatusForbidden, "Connect refused", "This connection was started in another browser.")
	}
	if _, err := s.st.TakeSession(r.Context(), sessProviderState, state); err != nil {
		return errConnectExpired
	}
	fail := func(reason string) {
		s.auditCredential(r.Context(), store.AuditEvent{Type: "credential_connect_failed", Actor: "user:" + st.Subject, Subject: st.Subject,
			Reason: reason, Details: map[string]any{"provider": st.Provider}})
	}
	if e := q.Get("error"); e != "" {
		fail("provider answered " + truncate(e, 64))
		return pageError(http.StatusBadRequest, "Not connected", "The provider did not grant access ("+truncate(e, 64)+").")
	}
	p, err := s.st.GetProvider(r.Context(), st.Provider)
	if err != nil {
		return pageError(http.StatusNotFound, "Unknown provider", "This provider is no longer configured.")
	}
	oc, err := s.providerConfig(p)
	if err != nil {
		return err
	}
	ctx := context.WithValue(r.Context(), oauth2.HTTPClient, s.o.ProviderClient)
	tok, err := oc.Exchange(ctx, q.Get("code"), oauth2.VerifierOption(st.Verifier))
	if err != nil {
		reason := "code exchange failed"
		var re *oauth2.RetrieveError
		if errors.As(err, &re) && re.ErrorCode != "" {
			reason += ": " + truncate(re.ErrorCode, 64)
		}
		fail(reason)
		return pageError(http.StatusBadGateway, "Not connected", "The provider did not complete the connection. Try again from your MCP client.")
	}
	sec := upstream.Secret{AccessToken: tok.AccessToken, RefreshToken: tok.RefreshToken, TokenType: tok.TokenType, Expiry: tok.Expiry}
	var scopes []string
	if sc, _ := tok.Extra("scope").(string); sc != "" {
		scopes = strings.Fields(sc)
	}
	if err := s.storeAccount(r.Context(), st.Subject, p.Name, sec, scopes); err != nil {
		return err
	}
	return s.renderConnect(w, r, st.connectLink, st.Browser, "Connected. Return to your MCP client and retry the request.")
}

// storeAccount seals and stores an account, audited.
func (s *Server) storeAccount(ctx context.Context, subject, provider string, sec upstream.Secret, scopes []string) error {
	sealed, err := upstream.SealAccount(s.ring, subject, provider, sec)
	if err != nil {
		return fmt.Errorf("seal account: %w", err)
	}
	now := s.now().UTC()
	if err := s.st.PutAccount(ctx, store.Account{Subject: subject, Provider: provider, Secret: sealed, Expiry: sec.Expiry, Scopes: scopes, ConnectedAt: now}); err != nil {
		return fmt.Errorf("store account: %w", err)
	}
	kind := "oauth"
	if sec.APIKey != "" {
		kind = "api_key"
	}
	return s.audit.RecordSync(ctx, store.AuditEvent{Type: "credential_connected", Actor: "user:" + subject, Subject: subject,
		Details: map[string]any{"provider": provider, "kind": kind, "scopes": scopes}})
}

func (s *Server) auditCredential(ctx context.Context, ev store.AuditEvent) {
	if err := s.audit.RecordSync(ctx, ev); err != nil {
		s.log.Error("audit "+ev.Type, "err", err)
	}
}
