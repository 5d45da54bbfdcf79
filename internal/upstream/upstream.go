// Package upstream is the credential broker: it produces the credential
// Warden attaches on the way to an upstream MCP server for the three modes
// that act as the user at another API:
//
//   - idp: the user's access token from the enterprise IdP (sealed in the
//     grant at login, refreshed before it expires), or, for a server that
//     names an audience or scopes, one the IdP mints for them from the
//     refresh token, cached sealed per grant and server;
//   - exchange: an RFC 8693 token exchange (or Entra ID's on-behalf-of
//     flow) at the IdP's token endpoint for the server's audience and
//     scopes, cached sealed per grant and server;
//   - provider: the user's own account at a third-party provider (OAuth
//     tokens or a pasted API key), connected once on Warden's connect page.
//
// Refreshes run single flight per grant or account: across replicas when
// the store offers a Locker, in process otherwise. Every credential event
// is audited; no token, code or key ever reaches an event, a log line or
// an error string.
package upstream

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"time"

	"golang.org/x/sync/singleflight"

	"github.com/warden-mcp/warden/internal/store"
)

// Store is the part of the store the broker reads and writes.
type Store interface {
	GetProvider(ctx context.Context, name string) (store.Provider, error)
	GetAccount(ctx context.Context, subject, provider string) (store.Account, error)
	UpdateAccount(ctx context.Context, subject, provider string, update func(store.Account) (store.Account, error)) error
	PutSession(ctx context.Context, kind, id string, value []byte, ttl time.Duration) error
	GetSession(ctx context.Context, kind, id string) ([]byte, error)
}

// Locker is what a shared store offers for single flight across
// replicas; a store without it gets single flight in this process only.
type Locker interface {
	Lock(ctx context.Context, key string) (unlock func(), err error)
}

// Keyring seals and opens secrets (internal/seal).
type Keyring interface {
	Seal(plaintext, aad []byte) (store.Sealed, error)
	Open(s store.Sealed, aad []byte) ([]byte, error)
}

// Auditor records credential events durably.
type Auditor interface {
	RecordSync(ctx context.Context, ev store.AuditEvent) error
}

// IdP hands out the grant's enterprise IdP access token, refreshing it
// when it is about to expire (oauth.Server.IdPAccessToken). A refusal by
// the IdP must come back wrapping ErrRefused (the grant is revoked by then).
type IdP interface {
	IdPAccessToken(ctx context.Context, g store.Grant) (token string, expiry time.Time, err error)
	// IdPAudienceToken spends the grant's IdP refresh token for a token
	// for audience (RFC 8707 resource) with scopes narrowed to scopes
	// (oauth.Server.IdPAudienceToken); refusals wrap ErrRefused.
	IdPAudienceToken(ctx context.Context, g store.Grant, audience string, scopes []string) (token string, expiry time.Time, err error)
}

// AccountRevoker removes accounts (internal/grant's RevokeAccounts, the
// one revocation operation for upstream accounts).
type AccountRevoker interface {
	RevokeAccount(ctx context.Context, actor, subject, provider, reason string) error
}

// Exchange flavours.
const (
	// FlavorRFC8693 is OAuth 2.0 Token Exchange.
	FlavorRFC8693 = "rfc8693"
	// FlavorEntraOBO is Microsoft Entra ID's on-behalf-of flow
	// (grant_type jwt-bearer, requested_token_use=on_behalf_of).
	FlavorEntraOBO = "entra_obo"
)

// ExchangeOptions configure token exchange at the enterprise IdP.
type ExchangeOptions struct {
	// TokenURL is the IdP's token endpoint.
	TokenURL string
	// ClientID and ClientSecret authenticate Warden (client_secret_basic).
	ClientID     string
	ClientSecret string
	// Flavor is FlavorRFC8693 (default) or FlavorEntraOBO.
	Flavor string
	// Resource also sends the audience as RFC 8707 resource (IdPs that
	// read resource rather than audience).
	Resource bool
	// Actor, when set, makes the actor_token of an RFC 8693 exchange: a
	// JWT Warden signs naming the MCP client (sub = client id), for IdPs
	// that record the actor (act) in the token they mint.
	Actor func(g store.Grant, audience string) (string, error)
}

// Options configure a Broker. Store, Keyring and Audit are required.
type Options struct {
	Store   Store
	Keyring Keyring
	Audit   Auditor
	// IdP serves the idp and exchange modes; nil refuses them.
	IdP      IdP
	Exchange ExchangeOptions
	// Revoker removes an account whose provider refused its refresh.
	Revoker AccountRevoker
	// Margin is how long before expiry a token is renewed (default 60s).
	Margin     time.Duration
	HTTPClient *http.Client
	Logger     *slog.Logger
	Now        func() time.Time
}

// Credential is what is attached upstream: one header.
type Credential struct {
	Header string // lower case
	Value  string
	// Expiry is when Value stops being valid; zero when unknown (API keys).
	Expiry time.Time
}

// Errors callers branch on.
var (
	// ErrNotConnected: the user has no account at the server's provider.
	ErrNotConnected = errors.New("no connected account at the provider")
	// ErrRefused: the IdP or provider refused a refresh; the grant's (or
	// account's) upstream access has been revoked and the user must sign
	// in (or connect) again.
	ErrRefused = errors.New("upstream credential refresh refused")
	// ErrUnsupported: the mode cannot be served (no IdP token, no exchange
	// configured).
	ErrUnsupported = errors.New("upstream credential mode not available")
)

// RefusedError is a token exchange the IdP refused: nothing is cached.
type RefusedError struct {
	Status int    // the IdP's HTTP status
	Code   string // OAuth error code
	// Description is the IdP's error_description, cut short.
	Description string
}

func (e *RefusedError) Error() string {
	msg := "identity provider refused the token exchange: " + e.Code
	if e.Description != "" {
		msg += " (" + e.Description + ")"
	}
	return msg
}

// Reauthenticate reports whether a new sign-in can cure the refusal: the
// subject token itself was refused.
func (e *RefusedError) Reauthenticate() bool { return e.Code == "invalid_grant" }

// Broker produces upstream credentials.
type Broker struct {
	o      Options
	flight singleflight.Group
}

// New returns a Broker.
func New(o Options) (*Broker, error) {
	if o.Store == nil || o.Keyring == nil || o.Audit == nil {
		return nil, errors.New("upstream: Store, Keyring and Audit are required")
	}
	if o.Margin <= 0 {
		o.Margin = time.Minute
	}
	if o.HTTPClient == nil {
		o.HTTPClient = &http.Client{Timeout: 15 * time.Second}
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.Exchange.Flavor == "" {
		o.Exchange.Flavor = FlavorRFC8693
	}
	return &Broker{o: o}, nil
}

// Credential returns the credential for grant g at server srv.
func (b *Broker) Credential(ctx context.Context, srv store.Server, g store.Grant) (Credential, error) {
	switch srv.Credential {
	case store.CredentialIdP:
		return b.idp(ctx, srv, g)
	case store.CredentialExchange:
		return b.exchange(ctx, srv, g)
	case store.CredentialProvider:
		return b.provider(ctx, srv, g)
	}
	return Credential{}, fmt.Errorf("%w: %q", ErrUnsupported, srv.Credential)
}

// once runs fn once at a time per key: in this process through
// singleflight (concurrent callers share the one result), and across
// replicas under the store's lock when it has one, taken by the one
// caller per process, so that a burst of Checks holds one store
// connection, not one each. fn must re-read the state it acts on, since
// the caller before it (here or on another replica) may have done the
// work.
func (b *Broker) once(ctx context.Context, key string, fn func() (any, error)) (any, error) {
	return b.onceLocked(ctx, key, key, fn)
}

// onceLocked is once with a store lock other than the flight's key: the
// flights of one grant's audiences share the grant's refresh token, so
// they take one lock across replicas.
func (b *Broker) onceLocked(ctx context.Context, key, lockKey string, fn func() (any, error)) (any, error) {
	v, err, _ := b.flight.Do(key, func() (any, error) {
		l, ok := b.o.Store.(Locker)
		if !ok {
			return fn()
		}
		unlock, err := l.Lock(ctx, "upstream/"+lockKey)
		if err != nil {
			return nil, fmt.Errorf("lock %s: %w", lockKey, err)
		}
		defer unlock()
		return fn()
	})
	return v, err
}

func (b *Broker) record(ctx context.Context, ev store.AuditEvent) error {
	ev.Time = b.o.Now().UTC()
	if ev.Actor == "" {
		ev.Actor = "system"
	}
	if err := b.o.Audit.RecordSync(ctx, ev); err != nil {
		return fmt.Errorf("audit %s: %w", ev.Type, err)
	}
	return nil
}

// idp attaches the grant's own IdP access token, or the one for the
// server's audience and scopes.
func (b *Broker) idp(ctx context.Context, srv store.Server, g store.Grant) (Credential, error) {
	if b.o.IdP == nil {
		return Credential{}, fmt.Errorf("%w: no identity provider connector", ErrUnsupported)
	}
	if srv.Credential == store.CredentialIdP && (srv.IdPAudience != "" || len(srv.IdPScopes) > 0) {
		return b.idpAudience(ctx, srv, g)
	}
	v, err := b.once(ctx, "idp/"+g.ID, func() (any, error) {
		tok, exp, err := b.o.IdP.IdPAccessToken(ctx, g)
		return Credential{Header: "authorization", Value: "Bearer " + tok, Expiry: exp}, err
	})
	if errors.Is(err, ErrRefused) {
		_ = b.record(ctx, store.AuditEvent{Type: "credential_refresh_failed", Subject: g.Subject, ClientID: g.ClientID, GrantID: g.ID, Server: srv.Name,
			Reason: "identity provider refused the refresh: the grant was revoked", Details: map[string]any{"mode": string(srv.Credential)}})
		return Credential{}, err
	}
	if err != nil {
		return Credential{}, err
	}
	return v.(Credential), nil
}

// Secret is the sealed plaintext of an account or a cached exchange.
type Secret struct {
	AccessToken  string    `json:"access_token,omitempty"`
	RefreshToken string    `json:"refresh_token,omitempty"`
	TokenType    string    `json:"token_type,omitempty"`
	Expiry       time.Time `json:"expiry,omitzero"`
	APIKey       string    `json:"api_key,omitempty"`
}

func (b *Broker) seal(v Secret, aad string) (store.Sealed, error) {
	raw, err := json.Marshal(v)
	if err != nil {
		return store.Sealed{}, err
	}
	return b.o.Keyring.Seal(raw, []byte(aad))
}

func (b *Broker) open(s store.Sealed, aad string) (Secret, error) {
	var v Secret
	raw, err := b.o.Keyring.Open(s, []byte(aad))
	if err != nil {
		return v, err
	}
	err = json.Unmarshal(raw, &v)
	return v, err
}

// AccountAAD is the associated data an account's secret is sealed with.
func AccountAAD(subject, provider string) string { return "account/" + provider + "/" + subject }

// due reports whether a token expiring at exp must be renewed now.
func (b *Broker) due(exp time.Time) bool {
	return !exp.IsZero() && !b.o.Now().Add(b.o.Margin).Before(exp)
}

// SealAccount seals an account's secret for (subject, provider).
func SealAccount(k Keyring, subject, provider string, v Secret) (store.Sealed, error) {
	raw, err := json.Marshal(v)
	if err != nil {
		return store.Sealed{}, err
	}
	return k.Seal(raw, []byte(AccountAAD(subject, provider)))
}
