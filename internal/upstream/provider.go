package upstream

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strings"

	"github.com/warden-mcp/warden/internal/store"
)

// provider attaches the user's own account at the server's provider,
// refreshing its token first when it is about to expire.
func (b *Broker) provider(ctx context.Context, srv store.Server, g store.Grant) (Credential, error) {
	if srv.Provider == "" {
		return Credential{}, fmt.Errorf("%w: server %q names no provider", ErrUnsupported, srv.Name)
	}
	p, err := b.o.Store.GetProvider(ctx, srv.Provider)
	if err != nil {
		return Credential{}, fmt.Errorf("provider %q: %w", srv.Provider, err)
	}
	a, err := b.o.Store.GetAccount(ctx, g.Subject, p.Name)
	if errors.Is(err, store.ErrNotFound) {
		return Credential{}, ErrNotConnected
	}
	if err != nil {
		return Credential{}, err
	}
	aad := AccountAAD(a.Subject, a.Provider)
	sec, err := b.open(a.Secret, aad)
	if err != nil {
		return Credential{}, fmt.Errorf("open account at %s: %w", p.Name, err)
	}
	if p.Kind == store.ProviderAPIKey {
		return apiKeyCredential(p, sec.APIKey), nil
	}
	if b.due(a.Expiry) && sec.RefreshToken != "" {
		v, err := b.once(ctx, "account/"+p.Name+"/"+g.Subject, func() (any, error) { return b.refreshAccount(ctx, p, g) })
		if err != nil {
			return Credential{}, err
		}
		sec = v.(Secret)
	}
	if b.due(sec.Expiry) && sec.RefreshToken == "" {
		// Expired and not renewable: the user connects again.
		return Credential{}, ErrNotConnected
	}
	return Credential{Header: "authorization", Value: "Bearer " + sec.AccessToken, Expiry: sec.Expiry}, nil
}

func apiKeyCredential(p store.Provider, key string) Credential {
	h := strings.ToLower(p.Header)
	if h == "" || h == "authorization" {
		return Credential{Header: "authorization", Value: "Bearer " + key}
	}
	return Credential{Header: h, Value: key}
}

// refreshAccount renews an account's token at its provider. It re-reads
// the account first: the caller before it in the flight may have renewed
// it already (providers rotate refresh tokens and may treat a second use
// of the old one as theft).
func (b *Broker) refreshAccount(ctx context.Context, p store.Provider, g store.Grant) (Secret, error) {
	a, err := b.o.Store.GetAccount(ctx, g.Subject, p.Name)
	if errors.Is(err, store.ErrNotFound) {
		return Secret{}, ErrNotConnected
	}
	if err != nil {
		return Secret{}, err
	}
	aad := AccountAAD(a.Subject, a.Provider)
	sec, err := b.open(a.Secret, aad)
	if err != nil {
		return Secret{}, fmt.Errorf("open account at %s: %w", p.Name, err)
	}
	if !b.due(a.Expiry) {
		return sec, nil
	}
	clientSecret, err := b.ClientSecret(p)
	if err != nil {
		return Secret{}, err
	}
	form := url.Values{"grant_type": {"refresh_token"}, "refresh_token": {sec.RefreshToken}}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, p.TokenURL, strings.NewReader(form.Encode()))
	if err != nil {
		return Secret{}, fmt.Errorf("refresh request: %w", err)
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set("Accept", "application/json")
	req.SetBasicAuth(url.QueryEscape(p.ClientID), url.QueryEscape(clientSecret))
	next, err := tokenResponse(b.o.HTTPClient, req, b.o.Now())
	var re *RefusedError
	if errors.As(err, &re) {
		_ = b.record(ctx, store.AuditEvent{Type: "credential_refresh_failed", Subject: g.Subject, ClientID: g.ClientID, GrantID: g.ID,
			Reason: "provider refused the refresh: " + re.Code, Details: map[string]any{"provider": p.Name, "mode": "provider"}})
		if b.o.Revoker != nil {
			if rerr := b.o.Revoker.RevokeAccount(ctx, "system", g.Subject, p.Name, "provider refused refresh"); rerr != nil {
				return Secret{}, rerr
			}
		}
		return Secret{}, ErrNotConnected
	}
	if err != nil {
		return Secret{}, err
	}
	if next.RefreshToken == "" {
		next.RefreshToken = sec.RefreshToken
	}
	sealed, err := b.seal(next, aad)
	if err != nil {
		return Secret{}, fmt.Errorf("seal refreshed tokens: %w", err)
	}
	now := b.o.Now().UTC()
	if err := b.o.Store.UpdateAccount(ctx, g.Subject, p.Name, func(cur store.Account) (store.Account, error) {
		cur.Secret, cur.Expiry, cur.RefreshedAt = sealed, next.Expiry, now
		return cur, nil
	}); err != nil {
		return Secret{}, fmt.Errorf("store refreshed tokens: %w", err)
	}
	if err := b.record(ctx, store.AuditEvent{Type: "credential_refreshed", Subject: g.Subject, ClientID: g.ClientID, GrantID: g.ID,
		Details: map[string]any{"provider": p.Name, "mode": "provider", "expires_at": next.Expiry}}); err != nil {
		return Secret{}, err
	}
	return next, nil
}

// ClientSecret opens a provider's client secret ("" when it has none).
func (b *Broker) ClientSecret(p store.Provider) (string, error) {
	if p.ClientSecret == nil {
		return "", nil
	}
	raw, err := b.o.Keyring.Open(*p.ClientSecret, []byte(ProviderAAD(p.Name)))
	if err != nil {
		return "", fmt.Errorf("open client secret of provider %s: %w", p.Name, err)
	}
	return string(raw), nil
}

// ProviderAAD is the associated data a provider's client secret is sealed with.
func ProviderAAD(name string) string { return "provider/" + name }
