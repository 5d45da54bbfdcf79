package main

import (
	"encoding/hex"
	"fmt"

	"github.com/warden-mcp/warden/internal/adminauth"
	"github.com/warden-mcp/warden/internal/config"
	"github.com/warden-mcp/warden/internal/handle"
	"github.com/warden-mcp/warden/oauth/connector"
)

// adminTokens are the generated admin token, named "admin", and the named
// tokens of admin.tokens.
func adminTokens(cfg config.Config, generated string) (adminauth.Tokens, error) {
	ts := adminauth.Tokens{{Name: "admin", Sum: handle.Sum(generated), Role: adminauth.RoleAdmin}}
	for i, t := range cfg.Admin.Tokens {
		role, err := adminauth.ParseRole(t.Role)
		if err != nil {
			return nil, fmt.Errorf("admin.tokens[%d]: %w", i, err)
		}
		sum, err := hex.DecodeString(t.SHA256)
		if err != nil {
			return nil, fmt.Errorf("admin.tokens[%d].sha256: %w", i, err)
		}
		ts = append(ts, adminauth.Token{Name: t.Name, Sum: sum, Role: role, ServerLabels: t.ServerLabels})
	}
	return ts, nil
}

// adminBindings map console users to roles. With none configured, the
// static connector's generated trial user is admin, so that a trial can
// open the console; no IdP user is ever admin by default.
func adminBindings(cfg config.Config, boot connector.Bootstrap) (adminauth.Bindings, error) {
	var bs adminauth.Bindings
	for i, r := range cfg.Admin.Roles {
		role, err := adminauth.ParseRole(r.Role)
		if err != nil {
			return nil, fmt.Errorf("admin.roles[%d]: %w", i, err)
		}
		bs = append(bs, adminauth.Binding{Role: role, Groups: r.Groups, Users: r.Users, Claim: r.Claim, Values: r.Values, ServerLabels: r.ServerLabels})
	}
	if len(bs) == 0 && cfg.OAuth.Connector.Type == "static" && len(cfg.OAuth.Connector.Static.Users) == 0 && boot.User.Username != "" {
		bs = adminauth.Bindings{{Role: adminauth.RoleAdmin, Users: []string{boot.User.Username}}}
	}
	return bs, nil
}
