package store

import (
	"context"
	"time"
)

// ProviderKind is how a third-party provider's credential is obtained.
type ProviderKind string

const (
	// ProviderOAuth: Warden is the provider's OAuth client (authorization
	// code with PKCE, one static callback per provider) and keeps each
	// user's tokens.
	ProviderOAuth ProviderKind = "oauth"
	// ProviderAPIKey: each user pastes a key on Warden's connect page; it
	// is attached as the header the provider names.
	ProviderAPIKey ProviderKind = "api_key"
)

// Provider is a third-party credential provider (GitHub, Atlassian, a SaaS
// API key) that servers in "provider" credential mode use. The client
// secret is sealed with the AAD "provider/<name>".
type Provider struct {
	Name string       `json:"name"`
	Kind ProviderKind `json:"kind"`
	// Issuer, when set, is where AuthorizeURL and TokenURL were discovered.
	Issuer       string   `json:"issuer,omitempty"`
	AuthorizeURL string   `json:"authorize_url,omitempty"`
	TokenURL     string   `json:"token_url,omitempty"`
	ClientID     string   `json:"client_id,omitempty"`
	ClientSecret *Sealed  `json:"client_secret,omitempty"`
	Scopes       []string `json:"scopes,omitempty"`
	// AuthParams are added to the provider's authorization request (for
	// example Atlassian's audience=api.atlassian.com, Google's
	// access_type=offline).
	AuthParams map[string]string `json:"auth_params,omitempty"`
	// Header is the request header an api_key provider's key is sent in
	// ("authorization" sends "Bearer <key>").
	Header string `json:"header,omitempty"`
	// Source is "api" or "config", as for servers.
	Source    string    `json:"source,omitempty"`
	CreatedAt time.Time `json:"created_at"`
	UpdatedAt time.Time `json:"updated_at"`
	Version   uint64    `json:"version"`
}

// Account is one user's connected account at a provider: the provider's
// tokens (or the pasted API key), sealed with the AAD
// "account/<provider>/<subject>" so a ciphertext cannot be moved to
// another user.
type Account struct {
	Subject  string `json:"subject"`
	Provider string `json:"provider"`
	Secret   Sealed `json:"secret"`
	// Expiry is when the access token expires (zero: unknown or never).
	Expiry      time.Time `json:"expiry,omitzero"`
	Scopes      []string  `json:"scopes,omitempty"`
	ConnectedAt time.Time `json:"connected_at"`
	RefreshedAt time.Time `json:"refreshed_at,omitzero"`
	Version     uint64    `json:"version"`
}

// AccountFilter selects accounts; empty fields match everything.
type AccountFilter struct {
	Subject  string
	Provider string
}

// Match reports whether a passes the filter.
func (f AccountFilter) Match(a Account) bool {
	return (f.Subject == "" || a.Subject == f.Subject) && (f.Provider == "" || a.Provider == f.Provider)
}

// Credentials is the part of the store that holds upstream credentials:
// third-party providers and the accounts users connected at them.
type Credentials interface {
	CreateProvider(ctx context.Context, p Provider) error
	GetProvider(ctx context.Context, name string) (Provider, error)
	UpdateProvider(ctx context.Context, name string, update func(Provider) (Provider, error)) error
	DeleteProvider(ctx context.Context, name string) error
	ListProviders(ctx context.Context) ([]Provider, error)

	// PutAccount creates or replaces the account of (a.Subject,
	// a.Provider); the version continues from the replaced one.
	PutAccount(ctx context.Context, a Account) error
	GetAccount(ctx context.Context, subject, provider string) (Account, error)
	UpdateAccount(ctx context.Context, subject, provider string, update func(Account) (Account, error)) error
	DeleteAccount(ctx context.Context, subject, provider string) error
	// ListAccounts returns the accounts f selects, by provider then subject.
	ListAccounts(ctx context.Context, f AccountFilter) ([]Account, error)
}

// What a "provider" server does with a request from a user who has not
// connected an account (Server.Unconnected).
const (
	// UnconnectedElicit answers tools/call, resources/read and prompts/get
	// with a URL elicitation naming the connect page; other requests
	// (initialize, lists) pass with identity headers only.
	UnconnectedElicit = ""
	// UnconnectedElicitAll answers every request with the elicitation.
	UnconnectedElicitAll = "elicit_all"
	// UnconnectedPass passes every request with identity headers only.
	UnconnectedPass = "pass"
)
