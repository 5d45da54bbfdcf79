package config

import (
	"fmt"

	"github.com/warden-mcp/warden/internal/serverspec"
)

// Credentials configures the upstream credential modes idp, exchange and
// provider (docs/credentials.md).
type Credentials struct {
	// RefreshMargin renews upstream tokens (IdP, exchanged, providers')
	// this long before they expire (default 1m).
	RefreshMargin Duration `json:"refresh_margin"`
	// ConnectTTL is the lifetime of a connect link handed to an MCP
	// client in a URL elicitation (single use; default 10m).
	ConnectTTL Duration `json:"connect_ttl"`
	// Exchange is token exchange at the enterprise IdP.
	Exchange TokenExchange `json:"exchange"`
}

// TokenExchange configures the exchange credential mode.
type TokenExchange struct {
	// TokenURL is the IdP's token endpoint; required for exchange servers.
	TokenURL string `json:"token_url,omitempty"`
	// ClientID and ClientSecret authenticate Warden at the IdP; the OIDC
	// connector's when empty.
	ClientID     string `json:"client_id,omitempty"`
	ClientSecret string `json:"client_secret,omitempty"`
	// Flavor is "rfc8693" (default) or "entra_obo" (Entra ID's
	// on-behalf-of flow).
	Flavor string `json:"flavor,omitempty"`
	// Resource also sends the audience as the RFC 8707 resource parameter.
	Resource bool `json:"resource,omitempty"`
}

// Provider declares a third-party credential provider in the file
// (secrets as ${VAR}).
type Provider struct {
	Name         string            `json:"name"`
	Kind         string            `json:"kind,omitempty"`
	Issuer       string            `json:"issuer,omitempty"`
	AuthorizeURL string            `json:"authorize_url,omitempty"`
	TokenURL     string            `json:"token_url,omitempty"`
	ClientID     string            `json:"client_id,omitempty"`
	ClientSecret string            `json:"client_secret,omitempty"`
	Scopes       []string          `json:"scopes,omitempty"`
	AuthParams   map[string]string `json:"auth_params,omitempty"`
	Header       string            `json:"header,omitempty"`
}

func (c Credentials) validate() []error {
	var errs []error
	switch c.Exchange.Flavor {
	case "", "rfc8693", "entra_obo":
	default:
		errs = append(errs, fmt.Errorf("credentials.exchange.flavor: %q must be rfc8693 or entra_obo", c.Exchange.Flavor))
	}
	if c.RefreshMargin < 0 || c.ConnectTTL < 0 {
		errs = append(errs, fmt.Errorf("credentials: refresh_margin and connect_ttl must not be negative"))
	}
	return errs
}

func validateProviders(ps []Provider) []error {
	var errs []error
	names := map[string]bool{}
	for i, p := range ps {
		if err := serverspec.CheckName(p.Name); err != nil {
			errs = append(errs, fmt.Errorf("providers[%d].name: %w", i, err))
		}
		if names[p.Name] {
			errs = append(errs, fmt.Errorf("providers[%d].name: duplicate %q", i, p.Name))
		}
		names[p.Name] = true
	}
	return errs
}
