package config

import (
	"encoding/hex"
	"fmt"
	"net/url"
	"strings"
	"time"
)

// Admin configures who may administer Warden: the admin tokens beside the
// generated one, and the console's sign-in through the configured IdP
// connector with roles from the IdP's groups or claims.
type Admin struct {
	// PublicURL is where browsers reach the admin listener (the console
	// at /ui/); its /ui/callback is the console's redirect URI, to be
	// registered at the IdP for oauth.connector.oidc.client_id beside
	// Warden's /oauth/callback. Default: http:// and listen.admin.
	PublicURL string `json:"public_url"`
	// SessionTTL is how long a console sign-in lasts.
	SessionTTL Duration `json:"session_ttl"`
	// Roles give console users a role: admin, operator or auditor. A user
	// no binding matches cannot sign in. With none configured and the
	// static connector's generated trial user, that user is admin.
	Roles []AdminRole `json:"roles,omitempty"`
	// Tokens are further named admin tokens, each with a role, for
	// automation and the CLI. The generated token (keys.admin_token_file,
	// WARDEN_ADMIN_TOKEN) is always there, named "admin", role admin.
	Tokens []AdminToken `json:"tokens,omitempty"`
}

// AdminRole gives a role to the users that match any of its groups, users
// or claim values.
type AdminRole struct {
	Role   string   `json:"role"`
	Groups []string `json:"groups,omitempty"`
	// Users are subjects or email addresses.
	Users []string `json:"users,omitempty"`
	// Claim and Values match an ID token claim (a string, or a list such
	// as Entra ID's roles).
	Claim  string   `json:"claim,omitempty"`
	Values []string `json:"values,omitempty"`
	// ServerLabels scope an operator: it manages only servers with all of
	// these labels.
	ServerLabels map[string]string `json:"server_labels,omitempty"`
}

// AdminToken is a named admin token, given by the SHA-256 of its value
// (so the file holds no secret): `printf %s "$TOKEN" | sha256sum`.
type AdminToken struct {
	Name         string            `json:"name"`
	Role         string            `json:"role"`
	SHA256       string            `json:"sha256"`
	ServerLabels map[string]string `json:"server_labels,omitempty"`
}

func defaultAdmin() Admin {
	return Admin{SessionTTL: Duration(8 * time.Hour)}
}

// AdminPublicURL is the console's base URL without a trailing slash.
func (c Config) AdminPublicURL() string {
	if c.Admin.PublicURL != "" {
		return strings.TrimRight(c.Admin.PublicURL, "/")
	}
	return "http://" + DialAddress(c.Listen.Admin)
}

func validRole(r string) bool { return r == "admin" || r == "operator" || r == "auditor" }

func (a Admin) validate() []error {
	var errs []error
	bad := func(field, f string, args ...any) {
		errs = append(errs, fmt.Errorf("admin.%s: "+f, append([]any{field}, args...)...))
	}
	if a.PublicURL != "" {
		if u, err := url.Parse(a.PublicURL); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || (u.Path != "" && u.Path != "/") {
			bad("public_url", "must be an absolute http(s) URL with no path, got %q", a.PublicURL)
		}
	}
	if a.SessionTTL <= 0 {
		bad("session_ttl", "must be positive")
	}
	for i, r := range a.Roles {
		f := fmt.Sprintf("roles[%d]", i)
		if !validRole(r.Role) {
			bad(f+".role", "must be admin, operator or auditor, got %q", r.Role)
		}
		if len(r.Groups) == 0 && len(r.Users) == 0 && r.Claim == "" {
			bad(f, "names no groups, users or claim: it would match nobody")
		}
		if r.Claim != "" && len(r.Values) == 0 {
			bad(f+".values", "required with claim")
		}
		if r.Role == "operator" && len(r.ServerLabels) == 0 {
			bad(f+".server_labels", "an operator needs the labels of the servers it manages")
		}
	}
	names := map[string]bool{"admin": true}
	for i, t := range a.Tokens {
		f := fmt.Sprintf("tokens[%d]", i)
		if t.Name == "" || strings.ContainsAny(t.Name, " :/") {
			bad(f+".name", "must be set, without spaces, colons or slashes")
		} else if names[t.Name] {
			bad(f+".name", "duplicate %q (admin is the generated token's)", t.Name)
		}
		names[t.Name] = true
		if !validRole(t.Role) {
			bad(f+".role", "must be admin, operator or auditor, got %q", t.Role)
		}
		if raw, err := hex.DecodeString(t.SHA256); err != nil || len(raw) != 32 {
			bad(f+".sha256", "must be the hex SHA-256 of the token (64 hex digits)")
		}
		if t.Role == "operator" && len(t.ServerLabels) == 0 {
			bad(f+".server_labels", "an operator needs the labels of the servers it manages")
		}
	}
	return errs
}
