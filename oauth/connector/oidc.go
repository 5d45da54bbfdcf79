package connector

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"sync"
	"time"

	"github.com/coreos/go-oidc/v3/oidc"
	"golang.org/x/oauth2"
)

// OIDCOptions configure an OIDC connector.
type OIDCOptions struct {
	Issuer       string
	ClientID     string
	ClientSecret string
	// RedirectURL is Warden's one static callback registered at the IdP.
	RedirectURL string
	// Scopes requested at the IdP; "openid" is always added.
	Scopes []string
	// Claims names the ID token (or userinfo) claims Warden reads.
	Claims ClaimNames
	// AuthParams are added to the IdP authorization request.
	AuthParams map[string]string
	// UserInfo also reads claims from the userinfo endpoint.
	UserInfo bool
	// AllowedGroups, when set, admits only users in one of these groups.
	AllowedGroups []string
	// HTTPClient makes the IdP calls; defaults to http.DefaultClient.
	HTTPClient *http.Client
	Now        func() time.Time
}

// ClaimNames maps identity attributes to IdP claim names.
type ClaimNames struct {
	Subject, Email, Name, Groups string
}

// OIDC signs users in at an OpenID Provider with the authorization code
// flow, PKCE (S256), state and nonce. Discovery happens on first use and is
// retried on failure, so Warden starts even while the IdP is unreachable.
type OIDC struct {
	cfg         OIDCOptions
	redirectURL string
	client      *http.Client
	now         func() time.Time

	mu       sync.Mutex
	provider *oidc.Provider
	verifier *oidc.IDTokenVerifier
	oauth    *oauth2.Config
}

var _ Redirect = (*OIDC)(nil)

// NewOIDC returns an OIDC connector.
func NewOIDC(o OIDCOptions) *OIDC {
	if o.HTTPClient == nil {
		o.HTTPClient = http.DefaultClient
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.Claims == (ClaimNames{}) {
		o.Claims = ClaimNames{Subject: "sub", Email: "email", Name: "name", Groups: "groups"}
	}
	return &OIDC{cfg: o, redirectURL: o.RedirectURL, client: o.HTTPClient, now: o.Now}
}

func (o *OIDC) ctx(ctx context.Context) context.Context {
	ctx = oidc.ClientContext(ctx, o.client)
	return context.WithValue(ctx, oauth2.HTTPClient, o.client)
}

// discover loads the provider metadata once.
func (o *OIDC) discover(ctx context.Context) (*oauth2.Config, *oidc.IDTokenVerifier, *oidc.Provider, error) {
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.provider != nil {
		return o.oauth, o.verifier, o.provider, nil
	}
	// The provider keeps the context for its key set fetches: give it one
	// that is not cancelled with this request.
	p, err := oidc.NewProvider(o.ctx(context.WithoutCancel(ctx)), o.cfg.Issuer)
	if err != nil {
		return nil, nil, nil, fmt.Errorf("oidc discovery at %s: %w", o.cfg.Issuer, err)
	}
	scopes := []string{oidc.ScopeOpenID}
	for _, s := range o.cfg.Scopes {
		if !slices.Contains(scopes, s) {
			scopes = append(scopes, s)
		}
	}
	o.provider = p
	o.verifier = p.Verifier(&oidc.Config{ClientID: o.cfg.ClientID, Now: o.now})
	o.oauth = &oauth2.Config{
		ClientID:     o.cfg.ClientID,
		ClientSecret: o.cfg.ClientSecret,
		Endpoint:     p.Endpoint(),
		RedirectURL:  o.redirectURL,
		Scopes:       scopes,
	}
	return o.oauth, o.verifier, o.provider, nil
}

// AuthCodeURL implements Redirect.
func (o *OIDC) AuthCodeURL(ctx context.Context, state, nonce, verifier string) (string, error) {
	oc, _, _, err := o.discover(ctx)
	if err != nil {
		return "", err
	}
	opts := []oauth2.AuthCodeOption{oidc.Nonce(nonce), oauth2.S256ChallengeOption(verifier)}
	for k, v := range o.cfg.AuthParams {
		opts = append(opts, oauth2.SetAuthURLParam(k, v))
	}
	return oc.AuthCodeURL(state, opts...), nil
}

// Exchange implements Redirect: it redeems the code with the PKCE verifier
// and verifies the ID token's signature, alg, iss, aud, exp and nonce.
func (o *OIDC) Exchange(ctx context.Context, code, nonce, verifier string) (Identity, Tokens, error) {
	oc, v, p, err := o.discover(ctx)
	if err != nil {
		return Identity{}, Tokens{}, err
	}
	ctx = o.ctx(ctx)
	tok, err := oc.Exchange(ctx, code, oauth2.VerifierOption(verifier))
	if err != nil {
		return Identity{}, Tokens{}, fmt.Errorf("redeem code at identity provider: %w", redact(err))
	}
	rawID, _ := tok.Extra("id_token").(string)
	if rawID == "" {
		return Identity{}, Tokens{}, errors.New("identity provider returned no id_token")
	}
	idt, err := v.Verify(ctx, rawID)
	if err != nil {
		return Identity{}, Tokens{}, fmt.Errorf("verify id_token: %w", err)
	}
	if nonce == "" || idt.Nonce != nonce {
		return Identity{}, Tokens{}, errors.New("verify id_token: nonce does not match the authorization request")
	}
	claims := map[string]any{}
	if err := idt.Claims(&claims); err != nil {
		return Identity{}, Tokens{}, fmt.Errorf("decode id_token claims: %w", err)
	}
	if o.cfg.UserInfo && p.UserInfoEndpoint() != "" {
		ui, err := p.UserInfo(ctx, oauth2.StaticTokenSource(tok))
		if err != nil {
			return Identity{}, Tokens{}, fmt.Errorf("userinfo: %w", err)
		}
		if ui.Subject != idt.Subject {
			return Identity{}, Tokens{}, errors.New("userinfo subject differs from the id_token subject")
		}
		extra := map[string]any{}
		if err := ui.Claims(&extra); err != nil {
			return Identity{}, Tokens{}, fmt.Errorf("decode userinfo claims: %w", err)
		}
		for k, val := range extra {
			if _, ok := claims[k]; !ok {
				claims[k] = val
			}
		}
	}
	id, err := MapClaims(claims, o.cfg.Claims)
	if err != nil {
		return Identity{}, Tokens{}, err
	}
	id.Session, _ = claims["sid"].(string)
	if len(o.cfg.AllowedGroups) > 0 && !slices.ContainsFunc(id.Groups, func(g string) bool { return slices.Contains(o.cfg.AllowedGroups, g) }) {
		return Identity{}, Tokens{}, ErrNotAllowed
	}
	return id, tokensOf(tok, rawID), nil
}

// Refresh implements Redirect.
func (o *OIDC) Refresh(ctx context.Context, t Tokens) (Tokens, error) {
	if t.RefreshToken == "" {
		return t, errors.New("no identity provider refresh token")
	}
	oc, v, _, err := o.discover(ctx)
	if err != nil {
		return t, err
	}
	ctx = o.ctx(ctx)
	// An already expired token forces the token source to refresh.
	tok, err := oc.TokenSource(ctx, &oauth2.Token{RefreshToken: t.RefreshToken, Expiry: time.Unix(1, 0)}).Token()
	if err != nil {
		var re *oauth2.RetrieveError
		if errors.As(err, &re) && (re.ErrorCode == "invalid_grant" || re.ErrorCode == "unauthorized_client") {
			return t, fmt.Errorf("%w: %s", ErrRefused, re.ErrorCode)
		}
		return t, fmt.Errorf("refresh at identity provider: %w", redact(err))
	}
	next := tokensOf(tok, "")
	if next.RefreshToken == "" {
		next.RefreshToken = t.RefreshToken
	}
	next.IDToken = t.IDToken
	if rawID, _ := tok.Extra("id_token").(string); rawID != "" {
		// A refreshed ID token must still be about the same user (OIDC
		// Core 12.2); the nonce is absent by design.
		idt, err := v.Verify(ctx, rawID)
		if err != nil {
			return t, fmt.Errorf("verify refreshed id_token: %w", err)
		}
		if old := subjectOf(t.IDToken); old != "" && old != idt.Subject {
			return t, fmt.Errorf("%w: refreshed id_token is about another subject", ErrRefused)
		}
		next.IDToken = rawID
	}
	return next, nil
}

func tokensOf(tok *oauth2.Token, idToken string) Tokens {
	return Tokens{AccessToken: tok.AccessToken, RefreshToken: tok.RefreshToken, IDToken: idToken, TokenType: tok.TokenType, Expiry: tok.Expiry}
}

// subjectOf reads sub from a JWT without verifying it: the token was
// verified when it was received and comes from sealed storage.
func subjectOf(raw string) string {
	var c struct {
		Sub string `json:"sub"`
	}
	if err := decodeJWTPayload(raw, &c); err != nil {
		return ""
	}
	return c.Sub
}

// redact drops the response body oauth2 includes in RetrieveError, which
// can echo tokens or personal data into logs.
func redact(err error) error {
	var re *oauth2.RetrieveError
	if errors.As(err, &re) {
		code := re.ErrorCode
		if code == "" {
			code = "unknown error"
		}
		status := 0
		if re.Response != nil {
			status = re.Response.StatusCode
		}
		return fmt.Errorf("identity provider answered %d: %s", status, code)
	}
	return err
}

// MapClaims turns IdP claims into an Identity using the configured claim
// names. An email whose email_verified claim is false is dropped: policies
// must not trust an address the IdP itself did not verify.
func MapClaims(claims map[string]any, names ClaimNames) (Identity, error) {
	str := func(name string) string {
		if name == "" {
			return ""
		}
		s, _ := claims[name].(string)
		return s
	}
	id := Identity{Subject: str(names.Subject), Email: str(names.Email), Name: str(names.Name), Claims: claims}
	if id.Subject == "" {
		return Identity{}, fmt.Errorf("id_token has no %q claim", names.Subject)
	}
	if v, ok := claims["email_verified"].(bool); ok && !v {
		id.Email = ""
	}
	switch g := claims[names.Groups].(type) {
	case []any:
		for _, v := range g {
			if s, ok := v.(string); ok {
				id.Groups = append(id.Groups, s)
			}
		}
	case string:
		if g != "" {
			id.Groups = []string{g}
		}
	}
	return id, nil
}
