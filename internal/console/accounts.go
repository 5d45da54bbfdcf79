package console

import (
	"errors"
	"net/http"
	"net/url"
	"slices"
	"strings"

	"github.com/warden-mcp/warden/internal/admin"
	"github.com/warden-mcp/warden/internal/adminauth"
	"github.com/warden-mcp/warden/internal/grant"
)

// ---- providers and connected accounts ----

type accountsData struct {
	Providers []admin.ProviderView
	Accounts  []admin.AccountView
	// Filter is the user the accounts are narrowed to ("" for everyone).
	Filter string
}

// accountsPage lists the providers (never their client secret: the API
// shows only whether there is one) and the connected accounts (never
// their tokens or keys: the API has no field for them).
func (s *Server) accountsPage(w http.ResponseWriter, r *http.Request, sess session) {
	d := accountsData{Filter: strings.TrimSpace(r.URL.Query().Get("user"))}
	if err := s.call(r.Context(), sess.Principal, "GET", "/api/v1/providers", nil, &d.Providers); err != nil {
		s.apiFailed(w, r, sess, err)
		return
	}
	path := "/api/v1/accounts"
	if d.Filter != "" {
		path += "?user=" + url.QueryEscape(d.Filter)
	}
	if err := s.call(r.Context(), sess.Principal, "GET", path, nil, &d.Accounts); err != nil {
		s.apiFailed(w, r, sess, err)
		return
	}
	slices.SortFunc(d.Accounts, func(a, b admin.AccountView) int {
		if c := strings.Compare(a.Subject, b.Subject); c != 0 {
			return c
		}
		return strings.Compare(a.Provider, b.Provider)
	})
	s.render(w, http.StatusOK, "accounts", &sess, d)
}

type accountRevokedData struct {
	What   string
	Result grant.AccountResult
}

// revokeAccount removes connected accounts through the admin API's
// revocation (grant.RevokeAccounts), as the signed-in user: one user's
// account at a provider, or everyone's at it.
func (s *Server) revokeAccount(w http.ResponseWriter, r *http.Request, sess session) {
	provider, user := strings.TrimSpace(r.PostForm.Get("provider")), strings.TrimSpace(r.PostForm.Get("user"))
	if provider == "" {
		s.fail(w, r, &sess, http.StatusBadRequest, "No provider was named.")
		return
	}
	d := accountRevokedData{What: "everyone's accounts at " + provider}
	if user != "" {
		d.What = user + "'s account at " + provider
	}
	req := admin.RevokeRequest{Target: grant.Target{Subject: user}, Provider: provider, Reason: revokeReason}
	if err := s.call(r.Context(), sess.Principal, "POST", "/api/v1/revoke", req, &d.Result); err != nil {
		var ae *apiError
		if errors.As(err, &ae) && ae.status == http.StatusForbidden {
			s.fail(w, r, &sess, http.StatusForbidden, ae.msg)
			return
		}
		s.apiFailed(w, r, sess, err)
		return
	}
	s.render(w, http.StatusOK, "accountrevoked", &sess, d)
}

// connectedAccounts maps subjects to the providers they have connected,
// for the access matrix; nil when the server has no upstream credentials
// (the API does not serve accounts) or the role may not read them.
func (s *Server) connectedAccounts(r *http.Request, p adminauth.Principal) map[string][]string {
	var all []admin.AccountView
	if err := s.call(r.Context(), p, "GET", "/api/v1/accounts", nil, &all); err != nil {
		return nil
	}
	out := map[string][]string{}
	for _, a := range all {
		out[a.Subject] = append(out[a.Subject], a.Provider)
	}
	for k := range out {
		slices.Sort(out[k])
	}
	return out
}
