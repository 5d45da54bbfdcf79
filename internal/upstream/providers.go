package upstream

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"time"

	"github.com/warden-mcp/warden/internal/serverspec"
	"github.com/warden-mcp/warden/internal/store"
)

// ProviderStore is the part of the store providers live in.
type ProviderStore interface {
	CreateProvider(ctx context.Context, p store.Provider) error
	GetProvider(ctx context.Context, name string) (store.Provider, error)
	UpdateProvider(ctx context.Context, name string, update func(store.Provider) (store.Provider, error)) error
	DeleteProvider(ctx context.Context, name string) error
	ListProviders(ctx context.Context) ([]store.Provider, error)
	ListAccounts(ctx context.Context, f store.AccountFilter) ([]store.Account, error)
}

// ProviderRemover revokes every account at a removed provider
// (internal/grant's RevokeAccounts).
type ProviderRemover func(ctx context.Context, actor, provider string) error

// ErrInvalidProvider wraps every validation failure (callers answer 400).
var ErrInvalidProvider = errors.New("invalid provider")

// ProviderSpec is what an operator gives to register a provider.
type ProviderSpec struct {
	Name string `json:"name"`
	Kind string `json:"kind,omitempty"` // oauth (default) or api_key
	// Issuer discovers AuthorizeURL and TokenURL (RFC 8414 or OpenID
	// Connect discovery) when they are not given.
	Issuer       string            `json:"issuer,omitempty"`
	AuthorizeURL string            `json:"authorize_url,omitempty"`
	TokenURL     string            `json:"token_url,omitempty"`
	ClientID     string            `json:"client_id,omitempty"`
	ClientSecret string            `json:"client_secret,omitempty"`
	Scopes       []string          `json:"scopes,omitempty"`
	AuthParams   map[string]string `json:"auth_params,omitempty"`
	// Header is the header an api_key provider's key is sent in.
	Header string `json:"header,omitempty"`
}

// Providers manages the registered providers: validation, discovery,
// sealing of the client secret, audit, and reconciliation of the config
// file's providers.
type Providers struct {
	st      ProviderStore
	ring    Keyring
	audit   Auditor
	client  *http.Client
	now     func() time.Time
	removed ProviderRemover
}

// NewProviders returns a provider manager. removed runs after a provider
// is deleted, to revoke its accounts.
func NewProviders(st ProviderStore, ring Keyring, audit Auditor, client *http.Client, removed ProviderRemover) *Providers {
	if client == nil {
		client = &http.Client{Timeout: 10 * time.Second}
	}
	return &Providers{st: st, ring: ring, audit: audit, client: client, now: time.Now, removed: removed}
}

func (m *Providers) build(ctx context.Context, spec ProviderSpec) (store.Provider, error) {
	var errs []error
	bad := func(f string, a ...any) { errs = append(errs, fmt.Errorf(f, a...)) }
	if err := serverspec.CheckName(spec.Name); err != nil {
		bad("name: %v", err)
	}
	p := store.Provider{Name: spec.Name, Kind: store.ProviderKind(spec.Kind), Issuer: spec.Issuer, AuthorizeURL: spec.AuthorizeURL,
		TokenURL: spec.TokenURL, ClientID: spec.ClientID, Scopes: slices.Clone(spec.Scopes), AuthParams: spec.AuthParams, Header: spec.Header}
	if p.Kind == "" {
		p.Kind = store.ProviderOAuth
	}
	for _, sc := range spec.Scopes {
		if sc == "" || strings.ContainsAny(sc, " \"\\") {
			bad("scope %q: must be a non-empty token without spaces or quotes", sc)
		}
	}
	switch p.Kind {
	case store.ProviderOAuth:
		if spec.Header != "" {
			bad("header: only valid for api_key providers")
		}
		if spec.ClientID == "" {
			bad("client_id: required")
		}
		if (p.AuthorizeURL == "" || p.TokenURL == "") && spec.Issuer != "" && len(errs) == 0 {
			if err := m.discover(ctx, &p); err != nil {
				bad("issuer: %v", err)
			}
		}
		for _, u := range []struct{ field, v string }{{"authorize_url", p.AuthorizeURL}, {"token_url", p.TokenURL}} {
			if u.v == "" {
				bad("%s: required (or --issuer to discover it)", u.field)
			} else if err := checkEndpoint(u.v); err != nil {
				bad("%s: %v", u.field, err)
			}
		}
	case store.ProviderAPIKey:
		if spec.AuthorizeURL != "" || spec.TokenURL != "" || spec.Issuer != "" || spec.ClientID != "" || spec.ClientSecret != "" || len(spec.Scopes) > 0 {
			bad("api_key providers take only a header")
		}
		if p.Header == "" {
			p.Header = "Authorization"
		}
		if !validHeader(p.Header) {
			bad("header %q: not a valid header name", p.Header)
		}
	default:
		bad("kind %q: must be oauth or api_key", spec.Kind)
	}
	if len(errs) > 0 {
		return p, fmt.Errorf("%w: %w", ErrInvalidProvider, errors.Join(errs...))
	}
	if spec.ClientSecret != "" {
		sealed, err := m.ring.Seal([]byte(spec.ClientSecret), []byte(ProviderAAD(p.Name)))
		if err != nil {
			return p, fmt.Errorf("seal client secret: %w", err)
		}
		p.ClientSecret = &sealed
	}
	return p, nil
}

// checkEndpoint: an absolute https URL (http only for loopback, for tests
// and local providers); the error never repeats the URL.
func checkEndpoint(raw string) error {
	u, err := url.Parse(raw)
	if err != nil || u.Host == "" || u.Fragment != "" || u.User != nil {
		return errors.New("must be an absolute URL without credentials or fragment")
	}
	switch {
	case u.Scheme == "https":
	case u.Scheme == "http" && (u.Hostname() == "127.0.0.1" || u.Hostname() == "localhost" || u.Hostname() == "::1"):
	default:
		return errors.New("must be https (http only on loopback)")
	}
	return nil
}

func validHeader(h string) bool {
	if h == "" {
		return false
	}
	for _, c := range h {
		if !(c == '-' || c >= '0' && c <= '9' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z') {
			return false
		}
	}
	return true
}

// discover reads the provider's authorization server metadata (RFC 8414,
// then OpenID Connect discovery).
func (m *Providers) discover(ctx context.Context, p *store.Provider) error {
	if err := checkEndpoint(p.Issuer); err != nil {
		return err
	}
	iss := strings.TrimRight(p.Issuer, "/")
	u, _ := url.Parse(iss)
	candidates := []string{
		u.Scheme + "://" + u.Host + "/.well-known/oauth-authorization-server" + u.Path,
		iss + "/.well-known/openid-configuration",
	}
	var last error
	for _, c := range candidates {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, c, nil)
		if err != nil {
			return err
		}
		resp, err := m.client.Do(req)
		if err != nil {
			last = redactURLError(err)
			continue
		}
		raw, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			last = fmt.Errorf("metadata answered %d", resp.StatusCode)
			continue
		}
		var md struct {
			Issuer                string `json:"issuer"`
			AuthorizationEndpoint string `json:"authorization_endpoint"`
			TokenEndpoint         string `json:"token_endpoint"`
		}
		if err := json.Unmarshal(raw, &md); err != nil {
			last = errors.New("metadata is not JSON")
			continue
		}
		if strings.TrimRight(md.Issuer, "/") != iss {
			last = errors.New("metadata names another issuer")
			continue
		}
		if p.AuthorizeURL == "" {
			p.AuthorizeURL = md.AuthorizationEndpoint
		}
		if p.TokenURL == "" {
			p.TokenURL = md.TokenEndpoint
		}
		return nil
	}
	return fmt.Errorf("discovery failed: %w", last)
}

// Add registers a provider.
func (m *Providers) Add(ctx context.Context, actor string, spec ProviderSpec) (store.Provider, error) {
	return m.add(ctx, actor, spec, "api")
}

func (m *Providers) add(ctx context.Context, actor string, spec ProviderSpec, source string) (store.Provider, error) {
	p, err := m.build(ctx, spec)
	if err != nil {
		return store.Provider{}, err
	}
	p.Source = source
	p.CreatedAt = m.now().UTC()
	p.UpdatedAt = p.CreatedAt
	if err := m.st.CreateProvider(ctx, p); err != nil {
		return store.Provider{}, err
	}
	if err := m.record(ctx, actor, "provider_added", p); err != nil {
		return store.Provider{}, err
	}
	return m.st.GetProvider(ctx, p.Name)
}

// update replaces a provider's settings, keeping its client secret unless
// spec gives a new one.
func (m *Providers) update(ctx context.Context, actor string, spec ProviderSpec) error {
	next, err := m.build(ctx, spec)
	if err != nil {
		return err
	}
	err = m.st.UpdateProvider(ctx, spec.Name, func(cur store.Provider) (store.Provider, error) {
		n := next
		if n.ClientSecret == nil && n.Kind == cur.Kind {
			n.ClientSecret = cur.ClientSecret
		}
		n.Source, n.CreatedAt, n.UpdatedAt = cur.Source, cur.CreatedAt, m.now().UTC()
		return n, nil
	})
	if err != nil {
		return err
	}
	return m.record(ctx, actor, "provider_updated", next)
}

// Remove deletes a provider and revokes every account connected at it.
func (m *Providers) Remove(ctx context.Context, actor, name string) error {
	p, err := m.st.GetProvider(ctx, name)
	if err != nil {
		return err
	}
	if err := m.st.DeleteProvider(ctx, name); err != nil {
		return err
	}
	if err := m.record(ctx, actor, "provider_removed", p); err != nil {
		return err
	}
	if m.removed != nil {
		if err := m.removed(ctx, actor, name); err != nil {
			return fmt.Errorf("provider %s removed, but its accounts were not all revoked (run warden revoke --provider %s): %w", name, name, err)
		}
	}
	return nil
}

// List returns every provider, sorted by name (client secrets stay sealed;
// callers that show them must drop them).
func (m *Providers) List(ctx context.Context) ([]store.Provider, error) {
	return m.st.ListProviders(ctx)
}

// Accounts lists connected accounts.
func (m *Providers) Accounts(ctx context.Context, f store.AccountFilter) ([]store.Account, error) {
	return m.st.ListAccounts(ctx, f)
}

// Reconcile makes the providers from the config file match decl, as the
// registry does for servers: API-managed providers are left alone.
func (m *Providers) Reconcile(ctx context.Context, decl []ProviderSpec) error {
	const actor = "config"
	current, err := m.st.ListProviders(ctx)
	if err != nil {
		return err
	}
	byName := map[string]store.Provider{}
	for _, p := range current {
		byName[p.Name] = p
	}
	want := map[string]bool{}
	var errs []error
	for _, spec := range decl {
		want[spec.Name] = true
		cur, exists := byName[spec.Name]
		switch {
		case !exists:
			_, err = m.add(ctx, actor, spec, "config")
		case cur.Source != "config":
			err = fmt.Errorf("provider %q is managed through the API; the config file entry is ignored", spec.Name)
		default:
			err = m.update(ctx, actor, spec)
		}
		if err != nil {
			errs = append(errs, fmt.Errorf("providers: %s: %w", spec.Name, err))
		}
	}
	for _, p := range current {
		if p.Source == "config" && !want[p.Name] {
			if err := m.Remove(ctx, actor, p.Name); err != nil {
				errs = append(errs, fmt.Errorf("providers: remove %s: %w", p.Name, err))
			}
		}
	}
	return errors.Join(errs...)
}

func (m *Providers) record(ctx context.Context, actor, typ string, p store.Provider) error {
	err := m.audit.RecordSync(ctx, store.AuditEvent{Type: typ, Actor: actor, Details: map[string]any{
		"provider": p.Name, "kind": string(p.Kind), "authorize_url": p.AuthorizeURL, "token_url": p.TokenURL, "client_id": p.ClientID, "scopes": p.Scopes,
	}})
	if err != nil {
		return fmt.Errorf("audit %s: %w", typ, err)
	}
	return nil
}
