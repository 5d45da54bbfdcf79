package config

import (
	"fmt"
	"net/url"
	"strings"
	"time"
)

// OAuth configures the authorization server MCP clients talk to.
type OAuth struct {
	// AccessTokenTTL is the lifetime of the opaque access handles clients
	// hold. Short, because a handle is a bearer credential.
	AccessTokenTTL Duration `json:"access_token_ttl"`
	// RefreshTokenTTL is the lifetime of a refresh handle; every refresh
	// rotates the handle and extends the grant by this much (a sliding
	// window: a grant unused for this long expires).
	RefreshTokenTTL Duration `json:"refresh_token_ttl"`
	// CodeTTL is the lifetime of an authorization code (at most 60s).
	CodeTTL Duration `json:"code_ttl"`
	// LoginTTL bounds how long a user has to sign in at the IdP and answer
	// the consent page once an authorization request was accepted.
	LoginTTL Duration `json:"login_ttl"`
	// Scopes are offered in the metadata besides the scopes registered
	// servers require.
	Scopes       []string     `json:"scopes,omitempty"`
	Registration Registration `json:"registration"`
	CIMD         CIMD         `json:"client_id_metadata_documents"`
	// Clients are pre-registered OAuth clients, reconciled at start.
	Clients   []OAuthClient `json:"clients,omitempty"`
	RateLimit RateLimit     `json:"rate_limit"`
	Connector Connector     `json:"connector"`
}

// Registration is the Dynamic Client Registration (RFC 7591) policy.
type Registration struct {
	// Mode is "open" (anyone may register), "token" (an initial access
	// token is required as a Bearer credential), "allowlist" (every redirect
	// URI host must be listed in allowed_redirect_hosts) or "disabled"
	// (only pre-registered and metadata-document clients).
	Mode               string `json:"mode"`
	InitialAccessToken string `json:"initial_access_token,omitempty"`
	// AllowedHosts lists redirect URI host names (or, for private-use URI
	// schemes such as com.example.app:/cb, the scheme) accepted in
	// allowlist mode.
	AllowedHosts []string `json:"allowed_redirect_hosts,omitempty"`
	// UnusedClientTTL deletes a dynamically registered client that
	// completed no grant within it.
	UnusedClientTTL Duration `json:"unused_client_ttl"`
}

// CIMD configures Client ID Metadata Documents: an https client_id that
// Warden fetches to learn the client's name and redirect URIs.
type CIMD struct {
	Enabled bool `json:"enabled"`
	// AllowPrivateAddresses lets documents be fetched from loopback,
	// private and link-local addresses. Off by default: a client_id URL is
	// attacker-chosen input and must not reach the internal network (SSRF).
	AllowPrivateAddresses bool `json:"allow_private_addresses"`
	// MaxBytes bounds the document size.
	MaxBytes int `json:"max_bytes"`
	// Timeout bounds one fetch.
	Timeout Duration `json:"timeout"`
	// MinCache and MaxCache clamp the lifetime taken from the response's
	// Cache-Control max-age; DefaultCache applies when it has none.
	MinCache     Duration `json:"min_cache"`
	MaxCache     Duration `json:"max_cache"`
	DefaultCache Duration `json:"default_cache"`
}

// OAuthClient is a pre-registered client.
type OAuthClient struct {
	ID   string `json:"id"`
	Name string `json:"name,omitempty"`
	// Secret makes the client confidential (client_secret_basic or
	// client_secret_post); empty means a public client using PKCE only.
	// Use ${ENV} expansion rather than a literal secret in the file.
	Secret       string   `json:"secret,omitempty"`
	RedirectURIs []string `json:"redirect_uris,omitempty"`
	// GrantTypes defaults to authorization_code and refresh_token.
	GrantTypes []string `json:"grant_types,omitempty"`
	// Scope limits what the client may ask for (space separated); empty
	// allows every known scope.
	Scope string `json:"scope,omitempty"`
	// SkipConsent marks a first-party client whose users are not asked
	// for consent. Dynamically registered clients never skip it.
	SkipConsent bool `json:"skip_consent,omitempty"`
	// Servers grant a confidential client_credentials client access to
	// these servers (with Scope as its scopes): the operator's grant of
	// service access.
	Servers []string `json:"servers,omitempty"`
}

// RateLimit bounds request rates per source address.
type RateLimit struct {
	RegisterPerMinute  int `json:"register_per_minute"`
	TokenPerMinute     int `json:"token_per_minute"`
	AuthorizePerMinute int `json:"authorize_per_minute"`
	// LoginPerMinute bounds password attempts on the static connector, per
	// source and per user name.
	LoginPerMinute int `json:"login_per_minute"`
}

// Connector chooses how users sign in: "static" (local users, trials) or
// "oidc" (the enterprise IdP).
type Connector struct {
	Type   string          `json:"type"`
	OIDC   OIDCConnector   `json:"oidc"`
	Static StaticConnector `json:"static"`
}

// OIDCConnector signs users in at an OpenID Provider with one static
// client registration and one redirect URI, <public_url>/oauth/callback.
type OIDCConnector struct {
	Issuer       string `json:"issuer"`
	ClientID     string `json:"client_id"`
	ClientSecret string `json:"client_secret"`
	// Scopes requested at the IdP; "openid" is always added.
	Scopes []string `json:"scopes,omitempty"`
	// Claims names the ID token (or userinfo) claims Warden reads.
	Claims ClaimNames `json:"claims"`
	// AuthParams are added to the IdP authorization request, for example
	// prompt, domain_hint or access_type=offline (Google).
	AuthParams map[string]string `json:"auth_params,omitempty"`
	// UserInfo also reads claims from the userinfo endpoint (for IdPs that
	// keep groups out of the ID token).
	UserInfo bool `json:"userinfo"`
	// AllowedGroups, when set, admits only users in one of these groups.
	AllowedGroups []string `json:"allowed_groups,omitempty"`
	// RefreshMargin refreshes the IdP's access token when it expires
	// within this margin.
	RefreshMargin Duration `json:"refresh_margin"`
}

// ClaimNames maps identity attributes to IdP claim names.
type ClaimNames struct {
	Subject string `json:"subject"`
	Email   string `json:"email"`
	Name    string `json:"name"`
	Groups  string `json:"groups"`
}

// StaticConnector holds local users for trials. With no users, Warden
// creates an "admin" user with a random password on first start, prints it
// once and keeps its bcrypt hash in the data directory.
type StaticConnector struct {
	Users []StaticUser `json:"users,omitempty"`
}

// StaticUser is one local user. PasswordHash is a bcrypt hash
// (htpasswd -nbBC 12 "" 'password' | tr -d ':\n').
type StaticUser struct {
	Username     string   `json:"username"`
	Email        string   `json:"email,omitempty"`
	Name         string   `json:"name,omitempty"`
	Groups       []string `json:"groups,omitempty"`
	PasswordHash string   `json:"password_hash"`
}

func defaultOAuth() OAuth {
	return OAuth{
		AccessTokenTTL:  Duration(10 * time.Minute),
		RefreshTokenTTL: Duration(30 * 24 * time.Hour),
		CodeTTL:         Duration(60 * time.Second),
		LoginTTL:        Duration(10 * time.Minute),
		Registration:    Registration{Mode: "open", UnusedClientTTL: Duration(24 * time.Hour)},
		CIMD: CIMD{
			Enabled:      true,
			MaxBytes:     16 << 10,
			Timeout:      Duration(5 * time.Second),
			MinCache:     Duration(time.Minute),
			MaxCache:     Duration(24 * time.Hour),
			DefaultCache: Duration(time.Hour),
		},
		RateLimit: RateLimit{
			RegisterPerMinute:  20,
			TokenPerMinute:     300,
			AuthorizePerMinute: 120,
			LoginPerMinute:     10,
		},
		Connector: Connector{
			Type: "static",
			OIDC: OIDCConnector{
				Scopes:        []string{"openid", "email", "profile"},
				Claims:        ClaimNames{Subject: "sub", Email: "email", Name: "name", Groups: "groups"},
				RefreshMargin: Duration(time.Minute),
			},
		},
	}
}

func (o OAuth) validate() []error {
	var errs []error
	bad := func(field, f string, a ...any) {
		errs = append(errs, fmt.Errorf("oauth.%s: "+f, append([]any{field}, a...)...))
	}
	if o.AccessTokenTTL <= 0 {
		bad("access_token_ttl", "must be positive")
	}
	if o.RefreshTokenTTL <= 0 {
		bad("refresh_token_ttl", "must be positive")
	}
	if o.CodeTTL <= 0 || o.CodeTTL.D() > time.Minute {
		bad("code_ttl", "must be between 0 and 60s")
	}
	if o.Registration.UnusedClientTTL <= 0 {
		bad("registration.unused_client_ttl", "must be positive")
	}
	if o.LoginTTL <= 0 {
		bad("login_ttl", "must be positive")
	}
	for i, s := range o.Scopes {
		if !validScopeToken(s) {
			bad(fmt.Sprintf("scopes[%d]", i), "invalid scope %q", s)
		}
	}
	switch o.Registration.Mode {
	case "open", "disabled":
	case "allowlist":
		if len(o.Registration.AllowedHosts) == 0 {
			bad("registration.allowed_redirect_hosts", "required when mode is allowlist")
		}
	case "token":
		if len(o.Registration.InitialAccessToken) < 16 {
			bad("registration.initial_access_token", "required (at least 16 characters) when mode is token")
		}
	default:
		bad("registration.mode", "must be open, token, allowlist or disabled, got %q", o.Registration.Mode)
	}
	if o.CIMD.Enabled {
		if o.CIMD.MaxBytes <= 0 {
			bad("client_id_metadata_documents.max_bytes", "must be positive")
		}
		if o.CIMD.Timeout <= 0 {
			bad("client_id_metadata_documents.timeout", "must be positive")
		}
		if o.CIMD.MinCache <= 0 || o.CIMD.MaxCache < o.CIMD.MinCache {
			bad("client_id_metadata_documents.min_cache", "must be positive and not above max_cache")
		}
	}
	ids := map[string]bool{}
	for i, c := range o.Clients {
		field := fmt.Sprintf("clients[%d]", i)
		if c.ID == "" || strings.ContainsAny(c.ID, "/ ") || strings.HasPrefix(c.ID, "https:") {
			bad(field+".id", "must be set, without spaces or slashes, and not an https URL (those are metadata documents)")
		}
		if ids[c.ID] {
			bad(field+".id", "duplicate %q", c.ID)
		}
		ids[c.ID] = true
		for _, g := range c.GrantTypes {
			switch g {
			case "authorization_code", "refresh_token":
			case "client_credentials":
				if c.Secret == "" {
					bad(field+".grant_types", "client_credentials needs a secret")
				}
			default:
				bad(field+".grant_types", "unsupported grant type %q", g)
			}
		}
		if len(c.Servers) > 0 && c.Secret == "" {
			bad(field+".servers", "only a confidential client (with a secret) may be granted servers for client_credentials")
		}
		if c.Secret != "" && len(c.Secret) < 16 {
			bad(field+".secret", "must be at least 16 characters")
		}
	}
	r := o.RateLimit
	if r.RegisterPerMinute <= 0 || r.TokenPerMinute <= 0 || r.AuthorizePerMinute <= 0 || r.LoginPerMinute <= 0 {
		bad("rate_limit", "every per-minute limit must be positive")
	}
	switch o.Connector.Type {
	case "static":
		for i, u := range o.Connector.Static.Users {
			field := fmt.Sprintf("connector.static.users[%d]", i)
			if u.Username == "" {
				bad(field+".username", "must be set")
			}
			if !strings.HasPrefix(u.PasswordHash, "$2") {
				bad(field+".password_hash", "must be a bcrypt hash")
			}
		}
	case "oidc":
		c := o.Connector.OIDC
		if u, err := url.Parse(c.Issuer); err != nil || u.Host == "" || (u.Scheme != "https" && u.Scheme != "http") {
			bad("connector.oidc.issuer", "must be an absolute URL, got %q", c.Issuer)
		}
		if c.ClientID == "" {
			bad("connector.oidc.client_id", "must be set")
		}
		if c.Claims.Subject == "" {
			bad("connector.oidc.claims.subject", "must be set")
		}
	default:
		bad("connector.type", "must be static or oidc, got %q", o.Connector.Type)
	}
	return errs
}

// validScopeToken reports whether s is a scope-token (RFC 6749 3.3).
func validScopeToken(s string) bool {
	if s == "" {
		return false
	}
	for _, r := range s {
		if r < 0x21 || r > 0x7e || r == '"' || r == '\\' {
			return false
		}
	}
	return true
}
