package oauth

import (
	"context"
	"log/slog"
	"net/http"
	"net/netip"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/warden-mcp/warden/internal/grant"
	"github.com/warden-mcp/warden/internal/keys"
	"github.com/warden-mcp/warden/internal/seal"
	"github.com/warden-mcp/warden/internal/store"
)

// Auditor records audit events and waits until they are stored.
// *audit.Trail satisfies it.
type Auditor interface {
	RecordSync(ctx context.Context, ev store.AuditEvent) error
}

// Servers looks up registered MCP servers. store.Store satisfies it.
type Servers interface {
	GetServer(ctx context.Context, name string) (store.Server, error)
	ListServers(ctx context.Context) ([]store.Server, error)
}

// Options are the dependencies and settings of a Server. Issuer,
// ResourceURL, Store, Grants, Signer, Keyring, Auditor and Connector are
// required; zero settings take the documented defaults.
type Options struct {
	// Issuer is the issuer identifier: an absolute URL, public_url.
	Issuer string
	// ResourceURL maps a registered server name to its canonical resource
	// URL (RFC 8707); ResourceURL("") is the prefix every one starts with.
	ResourceURL func(server string) string

	Store   store.Store
	Grants  *grant.Service
	Signer  *keys.Signer
	Keyring *seal.Keyring
	Auditor Auditor
	// Servers resolves resource indicators; defaults to Store.
	Servers Servers
	// Connector signs users in: a connector.Redirect (an IdP, through the
	// one callback <issuer>/oauth/callback) or a connector.Password.
	Connector any
	// ConnectorID names the connector in the grants it signs users in for
	// ("oidc", "static"), so they can be revoked together.
	ConnectorID string
	// UpstreamRefreshMargin renews the IdP's tokens this long before they
	// expire (default 1m).
	UpstreamRefreshMargin time.Duration

	// LoginTTL bounds how long a user has to sign in and answer the
	// consent page (default 10m).
	LoginTTL time.Duration
	// Scopes are offered in the metadata besides offline_access.
	Scopes       []string
	Registration Registration
	CIMD         CIMD
	// Clients are pre-registered clients, reconciled at start.
	Clients   []Client
	RateLimit RateLimit
	// SharedLimits, when set, counts the registration and token limits
	// for the whole deployment (the PostgreSQL store, shared by replicas)
	// instead of in this process.
	SharedLimits SharedLimiter
	// TrustedProxies are the peers (Envoy) whose X-Forwarded-For is
	// believed for the client address of rate limits and audit events.
	// Nil means loopback only; an empty non-nil list trusts no one.
	TrustedProxies []netip.Prefix
	// Limits bound requests and pending state; zero fields take defaults.
	Limits Limits

	Logger *slog.Logger
	// Registerer receives the server's metrics; nil registers nothing.
	Registerer prometheus.Registerer
	Now        func() time.Time
	// HTTPClient is used for Client ID Metadata Document fetches (behind
	// an SSRF guard); defaults to a client with a 10s timeout.
	HTTPClient *http.Client

	// ConnectTTL is the lifetime of a connect URL handed to an MCP client
	// (single use, bound to the user; default 10m).
	ConnectTTL time.Duration
	// ProviderClient makes the token requests to third-party providers;
	// defaults to a client with a 15s timeout.
	ProviderClient *http.Client
}

// RegistrationMode is the Dynamic Client Registration policy.
type RegistrationMode string

const (
	// RegistrationOpen lets anyone register a client for the
	// authorization code flow.
	RegistrationOpen RegistrationMode = "open"
	// RegistrationToken requires an initial access token (RFC 7591 3).
	RegistrationToken RegistrationMode = "token"
	// RegistrationAllowlist requires every redirect URI host to be listed.
	RegistrationAllowlist RegistrationMode = "allowlist"
	// RegistrationDisabled turns DCR off: only pre-registered clients and
	// Client ID Metadata Documents are accepted, and clients registered
	// before are refused too.
	RegistrationDisabled RegistrationMode = "disabled"
)

// Registration is the Dynamic Client Registration (RFC 7591) policy.
type Registration struct {
	Mode               RegistrationMode
	InitialAccessToken string
	// AllowedHosts lists redirect URI hosts (or private-use schemes)
	// accepted in allowlist mode.
	AllowedHosts []string
	// UnusedClientTTL deletes a registered client that completed no grant
	// within it (default 24h).
	UnusedClientTTL time.Duration
}

// CIMD configures Client ID Metadata Documents.
type CIMD struct {
	Enabled bool
	// AllowPrivateAddresses lets documents come from loopback, private and
	// link-local addresses (tests, labs); off, a client_id URL cannot
	// reach the internal network.
	AllowPrivateAddresses bool
	MaxBytes              int
	Timeout               time.Duration
	// MinCache and MaxCache clamp the Cache-Control lifetime;
	// DefaultCache applies without one.
	MinCache, MaxCache, DefaultCache time.Duration
	// FailureCache remembers a failed fetch this long (default 1m), so a
	// stream of requests naming a broken document fetches it once.
	FailureCache time.Duration
	// FetchesPerHostPerMinute bounds fetches to one host (default 10).
	FetchesPerHostPerMinute int
}

// Client is a pre-registered client.
type Client struct {
	ID, Name string
	// Secret makes the client confidential; empty is a public client.
	Secret       string
	RedirectURIs []string
	// GrantTypes defaults to authorization_code and refresh_token.
	GrantTypes []string
	// Scope limits what the client may ask for (space separated).
	Scope       string
	SkipConsent bool
	// Servers are what a client_credentials client may get tokens for:
	// the operator's grant of service access, with Scope as its scopes.
	Servers []string
}

// RateLimit bounds request rates per source address.
type RateLimit struct {
	RegisterPerMinute, TokenPerMinute, AuthorizePerMinute int
	// LoginPerMinute bounds password attempts per source and per user.
	LoginPerMinute int
}

// Limits bound what an unauthenticated request can make Warden store.
type Limits struct {
	// PendingLoginsPerSource and PendingLogins bound sign-ins started and
	// not finished within LoginTTL, per source address and overall
	// (defaults 30 and 10000).
	PendingLoginsPerSource, PendingLogins int
}

func (o *Options) defaults() {
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.HTTPClient == nil {
		o.HTTPClient = &http.Client{Timeout: 10 * time.Second}
	}
	if o.Servers == nil && o.Store != nil {
		o.Servers = o.Store
	}
	if o.TrustedProxies == nil {
		o.TrustedProxies = []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8"), netip.MustParsePrefix("::1/128")}
	}
	setD := func(d *time.Duration, v time.Duration) {
		if *d <= 0 {
			*d = v
		}
	}
	setN := func(n *int, v int) {
		if *n <= 0 {
			*n = v
		}
	}
	setD(&o.UpstreamRefreshMargin, time.Minute)
	setD(&o.LoginTTL, 10*time.Minute)
	setD(&o.ConnectTTL, 10*time.Minute)
	if o.ProviderClient == nil {
		o.ProviderClient = &http.Client{Timeout: 15 * time.Second}
	}
	if o.Registration.Mode == "" {
		o.Registration.Mode = RegistrationOpen
	}
	setD(&o.Registration.UnusedClientTTL, 24*time.Hour)
	setN(&o.CIMD.MaxBytes, 16<<10)
	setD(&o.CIMD.Timeout, 5*time.Second)
	setD(&o.CIMD.MinCache, time.Minute)
	setD(&o.CIMD.MaxCache, 24*time.Hour)
	setD(&o.CIMD.DefaultCache, time.Hour)
	setD(&o.CIMD.FailureCache, time.Minute)
	setN(&o.CIMD.FetchesPerHostPerMinute, 10)
	setN(&o.RateLimit.RegisterPerMinute, 20)
	setN(&o.RateLimit.TokenPerMinute, 300)
	setN(&o.RateLimit.AuthorizePerMinute, 120)
	setN(&o.RateLimit.LoginPerMinute, 10)
	setN(&o.Limits.PendingLoginsPerSource, 30)
	setN(&o.Limits.PendingLogins, 10000)
}
