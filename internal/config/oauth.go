package config

import (
	"fmt"
	"time"
)

// OAuth configures the authorization server MCP clients talk to.
type OAuth struct {
	AccessTokenTTL  Duration     `json:"access_token_ttl"`
	RefreshTokenTTL Duration     `json:"refresh_token_ttl"`
	CodeTTL         Duration     `json:"code_ttl"`
	Registration    Registration `json:"registration"`
	Connector       Connector    `json:"connector"`
}

// Registration is the Dynamic Client Registration policy.
type Registration struct {
	// Mode is "open", "token" (initial access token required) or
	// "allowlist" (redirect URI hosts must be listed).
	Mode               string   `json:"mode"`
	InitialAccessToken string   `json:"initial_access_token,omitempty"`
	AllowedHosts       []string `json:"allowed_redirect_hosts,omitempty"`
}

// Connector chooses how users sign in: "static" (local users, trials) or
// "oidc" (the enterprise IdP).
type Connector struct {
	Type string `json:"type"`
}

func defaultOAuth() OAuth {
	return OAuth{
		AccessTokenTTL:  Duration(10 * time.Minute),
		RefreshTokenTTL: Duration(30 * 24 * time.Hour),
		CodeTTL:         Duration(60 * time.Second),
		Registration:    Registration{Mode: "open"},
		Connector:       Connector{Type: "static"},
	}
}

func (o OAuth) validate() []error {
	var errs []error
	if o.AccessTokenTTL <= 0 {
		errs = append(errs, fmt.Errorf("oauth.access_token_ttl: must be positive"))
	}
	if o.CodeTTL <= 0 || o.CodeTTL.D() > time.Minute {
		errs = append(errs, fmt.Errorf("oauth.code_ttl: must be between 0 and 60s"))
	}
	switch o.Registration.Mode {
	case "open", "allowlist":
	case "token":
		if o.Registration.InitialAccessToken == "" {
			errs = append(errs, fmt.Errorf("oauth.registration.initial_access_token: required when mode is token"))
		}
	default:
		errs = append(errs, fmt.Errorf("oauth.registration.mode: must be open, token or allowlist, got %q", o.Registration.Mode))
	}
	switch o.Connector.Type {
	case "static", "oidc":
	default:
		errs = append(errs, fmt.Errorf("oauth.connector.type: must be static or oidc, got %q", o.Connector.Type))
	}
	return errs
}
