package oauth

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"time"

	"github.com/warden-mcp/warden/internal/grant"
	"github.com/warden-mcp/warden/internal/handle"
	"github.com/warden-mcp/warden/internal/store"
)

// Client sources recorded in store.Client.Source.
const (
	sourceDCR    = "dcr"
	sourceCIMD   = "cimd"
	sourceConfig = "config"
)

// Auth methods Warden accepts at the token endpoint.
const (
	authNone  = "none"
	authBasic = "client_secret_basic"
	authPost  = "client_secret_post"
)

func clientAllows(c store.Client, grantType string) bool {
	return slices.Contains(c.GrantTypes, grantType)
}

// validateRedirectURI enforces the redirect URI rules of OAuth 2.1 and
// RFC 8252: https anywhere, http only to a loopback host (native apps on
// an ephemeral port), or a private-use scheme in reverse-domain form. No
// fragments, no user info, no wildcards.
func validateRedirectURI(raw string) error {
	if len(raw) > maxURI {
		return fmt.Errorf("redirect URI is longer than %d bytes", maxURI)
	}
	u, err := url.Parse(raw)
	if err != nil || raw == "" {
		return fmt.Errorf("redirect URI %q cannot be parsed", raw)
	}
	if u.Fragment != "" || strings.Contains(raw, "#") {
		return fmt.Errorf("redirect URI %q must not have a fragment", raw)
	}
	if u.User != nil {
		return fmt.Errorf("redirect URI %q must not contain user info", raw)
	}
	if strings.Contains(raw, "*") {
		return fmt.Errorf("redirect URI %q must not contain wildcards", raw)
	}
	switch u.Scheme {
	case "https":
		if u.Host == "" {
			return fmt.Errorf("redirect URI %q has no host", raw)
		}
	case "http":
		if !isLoopbackHost(u.Hostname()) {
			return fmt.Errorf("redirect URI %q: http is only allowed for loopback addresses (127.0.0.1, [::1], localhost)", raw)
		}
	case "":
		return fmt.Errorf("redirect URI %q is not absolute", raw)
	default:
		// RFC 8252 7.1: private-use schemes are reverse domain names, which
		// also keeps out javascript:, data:, file: and friends.
		if !strings.Contains(u.Scheme, ".") {
			return fmt.Errorf("redirect URI %q: a private-use scheme must be a reverse domain name such as com.example.app", raw)
		}
	}
	return nil
}

func isLoopbackHost(h string) bool {
	if h == "localhost" {
		return true
	}
	ip := net.ParseIP(h)
	return ip != nil && ip.IsLoopback()
}

// redirectMatches compares a requested redirect URI with a registered one:
// exactly, except that a loopback IP literal may use any port (RFC 8252
// 7.3, OAuth 2.1 section 8.4.2).
func redirectMatches(registered, requested string) bool {
	if registered == requested {
		return true
	}
	a, err1 := url.Parse(registered)
	b, err2 := url.Parse(requested)
	if err1 != nil || err2 != nil || a.Scheme != "http" || b.Scheme != "http" {
		return false
	}
	ip := net.ParseIP(a.Hostname())
	if ip == nil || !ip.IsLoopback() {
		return false
	}
	return a.Hostname() == b.Hostname() && a.EscapedPath() == b.EscapedPath() && a.RawQuery == b.RawQuery && a.User == nil && b.User == nil && b.Fragment == ""
}

// lookupClient finds a client by id; https ids are Client ID Metadata
// Documents, fetched (and cached) on demand. With registration disabled,
// clients registered dynamically before are refused too: the deployment
// accepts only pre-registered clients and metadata documents.
func (s *Server) lookupClient(ctx context.Context, id string) (store.Client, error) {
	if id == "" || len(id) > maxClientID {
		return store.Client{}, store.ErrNotFound
	}
	if strings.HasPrefix(id, "https://") {
		if s.cimd == nil {
			return store.Client{}, fmt.Errorf("client metadata documents are disabled: %w", store.ErrNotFound)
		}
		return s.cimdClient(ctx, id)
	}
	c, err := s.st.GetClient(ctx, id)
	if err == nil && c.Source == sourceDCR && s.o.Registration.Mode == RegistrationDisabled {
		return store.Client{}, fmt.Errorf("dynamic client registration is disabled: %w", store.ErrNotFound)
	}
	return c, err
}

// authenticateClient applies RFC 6749 2.3.1 (client_secret_basic,
// client_secret_post) or identifies a public client by client_id.
func (s *Server) authenticateClient(r *http.Request) (store.Client, error) {
	id, secret, basic := r.BasicAuth()
	if basic {
		var err1, err2 error
		id, err1 = url.QueryUnescape(id)
		secret, err2 = url.QueryUnescape(secret)
		if err1 != nil || err2 != nil {
			return store.Client{}, errInvalidClient("malformed client credentials")
		}
		if r.PostForm.Get("client_secret") != "" {
			return store.Client{}, errInvalidRequest("use one client authentication method")
		}
		if fid := r.PostForm.Get("client_id"); fid != "" && fid != id {
			return store.Client{}, errInvalidClient("client_id does not match the credentials")
		}
	} else {
		id, secret = r.PostForm.Get("client_id"), r.PostForm.Get("client_secret")
	}
	if id == "" {
		return store.Client{}, errInvalidClient("client authentication is required")
	}
	if len(secret) > maxHandleParam {
		return store.Client{}, errInvalidClient("client authentication failed")
	}
	c, err := s.lookupClient(r.Context(), id)
	if err != nil {
		if !errors.Is(err, store.ErrNotFound) {
			s.log.Warn("client lookup", "err", err)
		}
		return store.Client{}, errInvalidClient("unknown client")
	}
	if len(c.SecretHash) == 0 {
		if secret != "" {
			return store.Client{}, errInvalidClient("this client is public and has no secret")
		}
		return c, nil
	}
	if secret == "" || !handle.Equal(secret, c.SecretHash) {
		return store.Client{}, errInvalidClient("client authentication failed")
	}
	return c, nil
}

// markClientUsed keeps a dynamically registered client that completed a
// grant: only registrations never used expire.
func (s *Server) markClientUsed(ctx context.Context, c store.Client) {
	if c.Source != sourceDCR || c.ExpiresAt.IsZero() {
		return
	}
	err := s.st.UpdateClient(context.WithoutCancel(ctx), c.ID, func(cur store.Client) (store.Client, error) {
		cur.ExpiresAt = time.Time{}
		return cur, nil
	})
	if err != nil {
		s.log.Warn("keep used client", "client_id", c.ID, "err", err)
	}
}

// deleteClient revokes every grant of the client (which also forgets its
// consents and service access), audits and removes it.
func (s *Server) deleteClient(ctx context.Context, c store.Client, actor string) error {
	if _, err := s.grants.Revoke(ctx, actor, grant.Target{ClientID: c.ID}, grant.ReasonClientDeleted); err != nil {
		return err
	}
	if err := s.audit.RecordSync(ctx, store.AuditEvent{Type: "client_deleted", Actor: actor, ClientID: c.ID, Kind: c.Kind}); err != nil {
		return err
	}
	return s.st.DeleteClient(ctx, c.ID)
}

// reconcileClients writes the pre-registered clients to the store and
// removes those no longer declared.
func (s *Server) reconcileClients(ctx context.Context) error {
	declared := map[string]bool{}
	for _, cc := range s.o.Clients {
		declared[cc.ID] = true
		c := store.Client{
			ID:                      cc.ID,
			Name:                    cc.Name,
			RedirectURIs:            cc.RedirectURIs,
			GrantTypes:              cc.GrantTypes,
			ResponseTypes:           []string{"code"},
			TokenEndpointAuthMethod: authNone,
			Scope:                   cc.Scope,
			Kind:                    store.KindUser,
			Source:                  sourceConfig,
			CreatedAt:               s.now().UTC(),
		}
		if len(c.GrantTypes) == 0 {
			c.GrantTypes = []string{grantCode, grantRefr}
		}
		if cc.Secret != "" {
			c.SecretHash = handle.Sum(cc.Secret)
			c.TokenEndpointAuthMethod = authBasic
		}
		if slices.Contains(c.GrantTypes, grantCreds) && !slices.Contains(c.GrantTypes, grantCode) {
			c.Kind = store.KindService
		}
		if len(cc.Servers) > 0 && cc.Secret != "" {
			// The operator's declaration is the grant of service access.
			c.ServiceAccess = &store.ServiceAccess{Servers: cc.Servers, Scopes: strings.Fields(cc.Scope), GrantedBy: "config", GrantedAt: c.CreatedAt}
		}
		for _, u := range c.RedirectURIs {
			if err := validateRedirectURI(u); err != nil {
				return fmt.Errorf("oauth: client %q: %w", cc.ID, err)
			}
		}
		err := s.st.CreateClient(ctx, c)
		if errors.Is(err, store.ErrAlreadyExists) {
			err = s.st.UpdateClient(ctx, c.ID, func(old store.Client) (store.Client, error) {
				if old.Source != sourceConfig {
					return old, fmt.Errorf("client id %q is already taken by a %s client", c.ID, old.Source)
				}
				c.CreatedAt = old.CreatedAt
				c.Version = old.Version
				return c, nil
			})
		}
		if err != nil {
			return fmt.Errorf("oauth: reconcile client %q: %w", cc.ID, err)
		}
	}
	all, err := s.st.ListClients(ctx)
	if err != nil {
		return fmt.Errorf("oauth: list clients: %w", err)
	}
	for _, c := range all {
		if c.Source == sourceConfig && !declared[c.ID] {
			if err := s.deleteClient(ctx, c, "config"); err != nil {
				return fmt.Errorf("oauth: remove client %q no longer in the config: %w", c.ID, err)
			}
		}
	}
	return nil
}

func (s *Server) skipConsent(clientID string) bool {
	for _, c := range s.o.Clients {
		if c.ID == clientID {
			return c.SkipConsent
		}
	}
	return false
}

// randomID returns n random bytes, base64url encoded.
func randomID(n int) string {
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		panic("oauth: crypto/rand: " + err.Error())
	}
	return base64.RawURLEncoding.EncodeToString(b)
}
