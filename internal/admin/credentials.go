package admin

import (
	"context"
	"errors"
	"net/http"

	"github.com/warden-mcp/warden/internal/adminauth"
	"github.com/warden-mcp/warden/internal/grant"
	"github.com/warden-mcp/warden/internal/store"
	"github.com/warden-mcp/warden/internal/upstream"
)

// Providers manages third-party credential providers and lists connected
// accounts (*upstream.Providers).
type Providers interface {
	Add(ctx context.Context, actor string, spec upstream.ProviderSpec) (store.Provider, error)
	Remove(ctx context.Context, actor, name string) error
	List(ctx context.Context) ([]store.Provider, error)
	Accounts(ctx context.Context, f store.AccountFilter) ([]store.Account, error)
}

// AccountRevoker is internal/grant's revocation of connected accounts.
type AccountRevoker interface {
	RevokeAccounts(ctx context.Context, actor string, t grant.AccountTarget, reason string) (grant.AccountResult, error)
}

// ProviderView is a provider as the API shows it: the client secret only
// as whether there is one.
type ProviderView struct {
	store.Provider
	ClientSecret bool   `json:"client_secret"`
	CallbackURL  string `json:"callback_url,omitempty"`
}

// AccountView is a connected account without its sealed secret.
type AccountView struct {
	Subject     string   `json:"user"`
	Provider    string   `json:"provider"`
	Scopes      []string `json:"scopes,omitempty"`
	ConnectedAt string   `json:"connected_at"`
	RefreshedAt string   `json:"refreshed_at,omitempty"`
	ExpiresAt   string   `json:"expires_at,omitempty"`
}

func (s *Server) credentialRoutes() {
	if s.o.Providers == nil {
		return
	}
	s.api("GET /api/v1/providers", adminauth.Read, s.listProviders)
	s.api("POST /api/v1/providers", adminauth.Administer, s.addProvider)
	s.api("DELETE /api/v1/providers/{name}", adminauth.Administer, s.removeProvider)
	s.api("GET /api/v1/accounts", adminauth.Read, s.listAccounts)
}

func (s *Server) providerView(p store.Provider) ProviderView {
	v := ProviderView{Provider: p, ClientSecret: p.ClientSecret != nil}
	v.Provider.ClientSecret = nil
	if s.o.ProviderCallbackURL != nil && p.Kind == store.ProviderOAuth {
		v.CallbackURL = s.o.ProviderCallbackURL(p.Name)
	}
	return v
}

func (s *Server) listProviders(w http.ResponseWriter, r *http.Request, _ string) error {
	all, err := s.o.Providers.List(r.Context())
	if err != nil {
		return err
	}
	out := make([]ProviderView, 0, len(all))
	for _, p := range all {
		out = append(out, s.providerView(p))
	}
	writeJSON(w, http.StatusOK, out)
	return nil
}

func (s *Server) addProvider(w http.ResponseWriter, r *http.Request, actor string) error {
	var spec upstream.ProviderSpec
	if err := decode(r, &spec); err != nil {
		return err
	}
	p, err := s.o.Providers.Add(r.Context(), actor, spec)
	if errors.Is(err, upstream.ErrInvalidProvider) {
		return errStatus(http.StatusBadRequest, "%v", err)
	}
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusCreated, s.providerView(p))
	return nil
}

func (s *Server) removeProvider(w http.ResponseWriter, r *http.Request, actor string) error {
	if err := s.o.Providers.Remove(r.Context(), actor, r.PathValue("name")); err != nil {
		return err
	}
	w.WriteHeader(http.StatusNoContent)
	return nil
}

func (s *Server) accountViews(ctx context.Context, f store.AccountFilter) ([]AccountView, error) {
	all, err := s.o.Providers.Accounts(ctx, f)
	if err != nil {
		return nil, err
	}
	out := make([]AccountView, 0, len(all))
	const layout = "2006-01-02T15:04:05Z"
	for _, a := range all {
		v := AccountView{Subject: a.Subject, Provider: a.Provider, Scopes: a.Scopes, ConnectedAt: a.ConnectedAt.UTC().Format(layout)}
		if !a.RefreshedAt.IsZero() {
			v.RefreshedAt = a.RefreshedAt.UTC().Format(layout)
		}
		if !a.Expiry.IsZero() {
			v.ExpiresAt = a.Expiry.UTC().Format(layout)
		}
		out = append(out, v)
	}
	return out, nil
}

func (s *Server) listAccounts(w http.ResponseWriter, r *http.Request, _ string) error {
	q := r.URL.Query()
	out, err := s.accountViews(r.Context(), store.AccountFilter{Subject: q.Get("user"), Provider: q.Get("provider")})
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, out)
	return nil
}

// revokeAccounts is POST /api/v1/revoke with a provider: the accounts at
// it (of one user, or everyone's).
func (s *Server) revokeAccounts(w http.ResponseWriter, r *http.Request, actor string, req RevokeRequest) error {
	if p, _ := adminauth.FromContext(r.Context()); p.Role != adminauth.RoleAdmin {
		return errStatus(http.StatusForbidden, "%s (role %s) may not revoke connected accounts", p.Name, p.Role)
	}
	if req.GrantID != "" || req.ClientID != "" || req.Server != "" || req.Connector != "" {
		return errStatus(http.StatusBadRequest, "a provider revocation takes only --user besides --provider")
	}
	rv, ok := s.o.Grants.(AccountRevoker)
	if !ok {
		return errStatus(http.StatusNotImplemented, "connected accounts are not supported by this server")
	}
	res, err := rv.RevokeAccounts(r.Context(), actor, grant.AccountTarget{Provider: req.Provider, Subject: req.Subject}, req.Reason)
	if err != nil && len(res.Revoked) == 0 {
		return err
	}
	if res.Revoked == nil {
		res.Revoked = []string{}
	}
	if err != nil {
		writeJSON(w, http.StatusInternalServerError, map[string]any{"result": res, "error": err.Error()})
		return nil
	}
	writeJSON(w, http.StatusOK, res)
	return nil
}
