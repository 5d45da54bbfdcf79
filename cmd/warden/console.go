package main

import (
	"context"
	"fmt"
	"log/slog"
	"net/http"
	"time"

	"github.com/warden-mcp/warden/internal/adminauth"
	"github.com/warden-mcp/warden/internal/audit"
	"github.com/warden-mcp/warden/internal/config"
	"github.com/warden-mcp/warden/internal/console"
	"github.com/warden-mcp/warden/internal/store"
	"github.com/warden-mcp/warden/oauth/connector"
)

// consoleHandler mounts the console at /ui/ beside the admin API on the
// admin listener. Administrators sign in through the same connector as
// MCP users: for oidc, the same IdP client with the console's own
// redirect URI (<admin.public_url>/ui/callback); for static, the same
// users with a form.
func consoleHandler(cfg config.Config, api http.Handler, st store.Store, trail *audit.Trail, signIn any, boot connector.Bootstrap, log *slog.Logger) (http.Handler, error) {
	bindings, err := adminBindings(cfg, boot)
	if err != nil {
		return nil, err
	}
	o := console.Options{
		API: api, Sessions: st, Audit: trail, Bindings: bindings, Connector: cfg.OAuth.Connector.Type,
		PublicURL: cfg.AdminPublicURL(), SessionTTL: cfg.Admin.SessionTTL.D(), LoginTTL: cfg.OAuth.LoginTTL.D(), Logger: log,
	}
	switch c := cfg.OAuth.Connector; c.Type {
	case "oidc":
		o.Redirect = oidcLogin{connector.NewOIDC(connector.OIDCOptions{
			Issuer: c.OIDC.Issuer, ClientID: c.OIDC.ClientID, ClientSecret: c.OIDC.ClientSecret,
			RedirectURL: cfg.AdminPublicURL() + console.CallbackPath, Scopes: c.OIDC.Scopes,
			Claims:     connector.ClaimNames{Subject: c.OIDC.Claims.Subject, Email: c.OIDC.Claims.Email, Name: c.OIDC.Claims.Name, Groups: c.OIDC.Claims.Groups},
			AuthParams: c.OIDC.AuthParams, UserInfo: c.OIDC.UserInfo,
			HTTPClient: &http.Client{Timeout: 10 * time.Second},
		})}
	default:
		pw, ok := signIn.(connector.Password)
		if !ok {
			return nil, fmt.Errorf("console: the static connector does not check passwords")
		}
		o.Password = passwordLogin{pw}
	}
	ui, err := console.New(o)
	if err != nil {
		return nil, err
	}
	if len(bindings) == 0 {
		log.Warn("admin.roles is empty: nobody can sign in to the console (admin tokens still work)")
	}
	mux := http.NewServeMux()
	mux.Handle(console.Prefix, ui)
	mux.Handle("/", api)
	return mux, nil
}

func identityOf(id connector.Identity) adminauth.Identity {
	return adminauth.Identity{Subject: id.Subject, Email: id.Email, Name: id.Name, Groups: id.Groups, Claims: id.Claims}
}

// oidcLogin adapts the OIDC connector to the console. The IdP's tokens
// are dropped: the console needs only who signed in.
type oidcLogin struct{ c *connector.OIDC }

func (l oidcLogin) AuthCodeURL(ctx context.Context, state, nonce, verifier string) (string, error) {
	return l.c.AuthCodeURL(ctx, state, nonce, verifier)
}

func (l oidcLogin) Exchange(ctx context.Context, code, nonce, verifier string) (adminauth.Identity, error) {
	id, _, err := l.c.Exchange(ctx, code, nonce, verifier)
	return identityOf(id), err
}

type passwordLogin struct{ c connector.Password }

func (l passwordLogin) Login(ctx context.Context, user, password string) (adminauth.Identity, error) {
	id, err := l.c.Login(ctx, user, password)
	return identityOf(id), err
}
