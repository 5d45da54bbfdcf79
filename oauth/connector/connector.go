// Package connector signs users in at an identity provider on behalf of
// Warden's authorization server. Two shapes exist: Redirect connectors send
// the browser to an external IdP and come back through Warden's single
// static callback (OIDC), Password connectors check credentials Warden
// holds itself (static users, for trials).
package connector

import (
	"context"
	"errors"
	"time"
)

// Identity is who signed in, as mapped from the IdP's claims.
type Identity struct {
	Subject string         `json:"sub"`
	Email   string         `json:"email,omitempty"`
	Name    string         `json:"name,omitempty"`
	Groups  []string       `json:"groups,omitempty"`
	Claims  map[string]any `json:"claims,omitempty"`
	// Session is the IdP's session id (the ID token's sid), which a
	// back-channel logout names.
	Session string `json:"sid,omitempty"`
}

// Tokens are the IdP's tokens for a signed-in user. They never leave
// Warden: they are sealed into the grant and used only for upstream calls.
type Tokens struct {
	AccessToken  string    `json:"access_token,omitempty"`
	RefreshToken string    `json:"refresh_token,omitempty"`
	IDToken      string    `json:"id_token,omitempty"`
	TokenType    string    `json:"token_type,omitempty"`
	Expiry       time.Time `json:"expiry,omitzero"`
}

// Redirect is a connector that signs users in at an external IdP.
type Redirect interface {
	// AuthCodeURL is where the browser goes to sign in. state travels
	// back to the callback; nonce must come back in the ID token; verifier
	// is the PKCE code verifier Warden keeps for the exchange.
	AuthCodeURL(ctx context.Context, state, nonce, verifier string) (string, error)
	// Exchange redeems the IdP's code and verifies the ID token.
	Exchange(ctx context.Context, code, nonce, verifier string) (Identity, Tokens, error)
	// Refresh renews the IdP tokens. ErrRefused means the IdP said no for
	// good (user disabled, consent withdrawn): the grant must end.
	Refresh(ctx context.Context, t Tokens) (Tokens, error)
}

// Password is a connector that checks a user name and password itself.
type Password interface {
	Login(ctx context.Context, username, password string) (Identity, error)
}

var (
	// ErrRefused means the IdP refused a refresh permanently.
	ErrRefused = errors.New("identity provider refused the refresh")
	// ErrBadCredentials means the user name or password is wrong. It never
	// says which.
	ErrBadCredentials = errors.New("invalid user name or password")
	// ErrNotAllowed means the user signed in but is not admitted (group
	// restriction).
	ErrNotAllowed = errors.New("user is not allowed to sign in")
)
