package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"time"

	"github.com/lestrrat-go/jwx/v2/jwt"

	"github.com/warden-mcp/warden/internal/config"
	"github.com/warden-mcp/warden/internal/grant"
	"github.com/warden-mcp/warden/internal/handle"
	"github.com/warden-mcp/warden/internal/keys"
	"github.com/warden-mcp/warden/internal/store"
	"github.com/warden-mcp/warden/internal/upstream"
	"github.com/warden-mcp/warden/oauth"
	"github.com/warden-mcp/warden/oauth/connector"
)

// lateOAuth hands the authorization server to the broker (IdP tokens) and
// to ext_authz (connect links), which are built before it. s is set
// before any listener serves.
type lateOAuth struct{ s *oauth.Server }

func (a *lateOAuth) ConnectURL(ctx context.Context, subject, provider string) (string, error) {
	return a.s.ConnectURL(ctx, subject, provider)
}

// IdPAccessToken adapts the authorization server's IdP tokens to the
// broker: a refusal by the IdP is upstream.ErrRefused.
func (a *lateOAuth) IdPAccessToken(ctx context.Context, g store.Grant) (string, time.Time, error) {
	tok, exp, err := a.s.IdPAccessToken(ctx, g)
	if errors.Is(err, connector.ErrRefused) {
		return "", exp, fmt.Errorf("%w: %w", upstream.ErrRefused, err)
	}
	if errors.Is(err, oauth.ErrNoUpstreamToken) {
		return "", exp, fmt.Errorf("%w: %w", upstream.ErrUnsupported, err)
	}
	return tok, exp, err
}

// IdPAudienceToken adapts the authorization server's per-audience IdP
// tokens to the broker: a refused refresh token or a refused audience is
// upstream.ErrRefused (the client signs in again).
func (a *lateOAuth) IdPAudienceToken(ctx context.Context, g store.Grant, audience string, scopes []string) (string, time.Time, error) {
	tok, exp, err := a.s.IdPAudienceToken(ctx, g, audience, scopes)
	var te *connector.TargetError
	switch {
	case errors.Is(err, connector.ErrRefused):
		return "", exp, fmt.Errorf("%w: the grant was revoked: %w", upstream.ErrRefused, err)
	case errors.As(err, &te):
		return "", exp, fmt.Errorf("%w: %w", upstream.ErrRefused, err)
	case errors.Is(err, oauth.ErrNoUpstreamToken):
		return "", exp, fmt.Errorf("%w: %w", upstream.ErrUnsupported, err)
	}
	return tok, exp, err
}

// accountRevoker is grant.Service's RevokeAccounts for one account.
type accountRevoker struct{ g *grant.Service }

func (a accountRevoker) RevokeAccount(ctx context.Context, actor, subject, provider, reason string) error {
	_, err := a.g.RevokeAccounts(ctx, actor, grant.AccountTarget{Provider: provider, Subject: subject}, reason)
	return err
}

// actorTokens signs the actor_token of a token exchange: the MCP client,
// as Warden vouches for it, for one minute and one token endpoint.
func actorTokens(signer *keys.Signer, issuer string) func(store.Grant, string) (string, error) {
	return func(g store.Grant, audience string) (string, error) {
		now := time.Now()
		jti, _ := handle.New("")
		t, err := jwt.NewBuilder().Issuer(issuer).Subject(g.ClientID).Audience([]string{audience}).
			IssuedAt(now).Expiration(now.Add(time.Minute)).JwtID(jti[:22]).Build()
		if err != nil {
			return "", err
		}
		raw, err := signer.Sign(t)
		return string(raw), err
	}
}

// brokerOptions maps the config file to the credential broker's options.
func brokerOptions(cfg config.Config, log *slog.Logger) upstream.Options {
	x := cfg.Credentials.Exchange
	if x.ClientID == "" && cfg.OAuth.Connector.Type == "oidc" {
		x.ClientID, x.ClientSecret = cfg.OAuth.Connector.OIDC.ClientID, cfg.OAuth.Connector.OIDC.ClientSecret
	}
	return upstream.Options{
		Exchange: upstream.ExchangeOptions{TokenURL: x.TokenURL, ClientID: x.ClientID, ClientSecret: x.ClientSecret, Flavor: x.Flavor, Resource: x.Resource},
		Margin:   cfg.Credentials.RefreshMargin.D(), HTTPClient: &http.Client{Timeout: 15 * time.Second}, Logger: log,
	}
}

// providerCallbackURL is the one redirect URI of provider name.
func providerCallbackURL(cfg config.Config) func(string) string {
	return func(name string) string {
		return cfg.Issuer() + "/oauth/providers/" + url.PathEscape(name) + "/callback"
	}
}

func providerSpecs(ps []config.Provider) []upstream.ProviderSpec {
	out := make([]upstream.ProviderSpec, 0, len(ps))
	for _, p := range ps {
		out = append(out, upstream.ProviderSpec{Name: p.Name, Kind: p.Kind, Issuer: p.Issuer, AuthorizeURL: p.AuthorizeURL, TokenURL: p.TokenURL,
			ClientID: p.ClientID, ClientSecret: p.ClientSecret, Scopes: p.Scopes, AuthParams: p.AuthParams, Header: p.Header})
	}
	return out
}
