package main

import (
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/netip"
	"os"
	"path/filepath"
	"time"

	"github.com/warden-mcp/warden/internal/config"
	"github.com/warden-mcp/warden/oauth"
	"github.com/warden-mcp/warden/oauth/connector"
)

// oauthOptions maps the config file to the authorization server's
// options; the caller adds the dependencies (store, grants, keys, audit).
// The connector is built here too: for the static connector without
// configured users, the generated admin user's one-time password is
// returned for showBootstrap.
func oauthOptions(cfg config.Config) (oauth.Options, connector.Bootstrap, error) {
	oc := cfg.OAuth
	o := oauth.Options{
		Issuer:                cfg.Issuer(),
		ResourceURL:           cfg.ResourceURL,
		UpstreamRefreshMargin: oc.Connector.OIDC.RefreshMargin.D(),
		LoginTTL:              oc.LoginTTL.D(),
		Scopes:                oc.Scopes,
		Registration: oauth.Registration{
			Mode: oauth.RegistrationMode(oc.Registration.Mode), InitialAccessToken: oc.Registration.InitialAccessToken,
			AllowedHosts: oc.Registration.AllowedHosts, UnusedClientTTL: oc.Registration.UnusedClientTTL.D(),
		},
		CIMD: oauth.CIMD{
			Enabled: oc.CIMD.Enabled, AllowPrivateAddresses: oc.CIMD.AllowPrivateAddresses, MaxBytes: oc.CIMD.MaxBytes,
			Timeout: oc.CIMD.Timeout.D(), MinCache: oc.CIMD.MinCache.D(), MaxCache: oc.CIMD.MaxCache.D(), DefaultCache: oc.CIMD.DefaultCache.D(),
		},
		RateLimit: oauth.RateLimit{
			RegisterPerMinute: oc.RateLimit.RegisterPerMinute, TokenPerMinute: oc.RateLimit.TokenPerMinute,
			AuthorizePerMinute: oc.RateLimit.AuthorizePerMinute, LoginPerMinute: oc.RateLimit.LoginPerMinute,
		},
		TrustedProxies: []netip.Prefix{},
	}
	for _, c := range oc.Clients {
		o.Clients = append(o.Clients, oauth.Client{ID: c.ID, Name: c.Name, Secret: c.Secret, RedirectURIs: c.RedirectURIs,
			GrantTypes: c.GrantTypes, Scope: c.Scope, SkipConsent: c.SkipConsent, Servers: c.Servers})
	}
	for _, p := range cfg.HTTP.TrustedProxies {
		prefix, err := config.ParsePrefix(p)
		if err != nil {
			return o, connector.Bootstrap{}, fmt.Errorf("http.trusted_proxies: %w", err)
		}
		o.TrustedProxies = append(o.TrustedProxies, prefix)
	}
	var boot connector.Bootstrap
	switch c := oc.Connector; c.Type {
	case "oidc":
		o.ConnectorID = "oidc"
		o.Connector = connector.NewOIDC(connector.OIDCOptions{
			Issuer: c.OIDC.Issuer, ClientID: c.OIDC.ClientID, ClientSecret: c.OIDC.ClientSecret,
			RedirectURL: cfg.Issuer() + oauth.CallbackPath, Scopes: c.OIDC.Scopes,
			Claims:     connector.ClaimNames{Subject: c.OIDC.Claims.Subject, Email: c.OIDC.Claims.Email, Name: c.OIDC.Claims.Name, Groups: c.OIDC.Claims.Groups},
			AuthParams: c.OIDC.AuthParams, UserInfo: c.OIDC.UserInfo, AllowedGroups: c.OIDC.AllowedGroups,
			HTTPClient: &http.Client{Timeout: 10 * time.Second},
		})
	default:
		o.ConnectorID = "static"
		var users []connector.StaticUser
		for _, u := range c.Static.Users {
			users = append(users, connector.StaticUser{Username: u.Username, Email: u.Email, Name: u.Name, Groups: u.Groups, PasswordHash: u.PasswordHash})
		}
		if len(users) == 0 {
			b, err := connector.BootstrapAdmin(cfg.DataDir, time.Now())
			if err != nil {
				return o, b, fmt.Errorf("static admin user: %w", err)
			}
			boot = b
			users = []connector.StaticUser{b.User}
		}
		o.Connector = connector.NewStatic(users)
	}
	return o, boot, nil
}

// showBootstrap hands the generated admin password to the operator once,
// never to the log stream: printed when stderr is a terminal, otherwise
// written to a 0600 file in the data directory whose path is logged.
func showBootstrap(b connector.Bootstrap, stderr io.Writer, dataDir string, log *slog.Logger) error {
	if b.Password == "" {
		return nil
	}
	if isTerminal(stderr) {
		fmt.Fprint(stderr, b.Banner())
		return nil
	}
	path := filepath.Join(dataDir, "static-admin-password")
	if err := os.WriteFile(path, []byte(b.Banner()), 0o600); err != nil {
		return fmt.Errorf("write the generated admin password: %w", err)
	}
	if err := os.Chmod(path, 0o600); err != nil {
		return err
	}
	log.Warn("created a local admin user for trials (not for production); its one-time password is in a file readable only by this user: read it, then delete it",
		"user", b.User.Username, "file", path)
	return nil
}

func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	if !ok {
		return false
	}
	st, err := f.Stat()
	return err == nil && st.Mode()&os.ModeCharDevice != 0
}
