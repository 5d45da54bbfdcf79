package grant

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"

	"github.com/warden-mcp/warden/internal/handle"
	"github.com/warden-mcp/warden/internal/store"
)

// ActorSystem is the actor of revocations Warden makes by itself (replays,
// an IdP refusing a refresh).
const ActorSystem = "system"

// Reasons Warden revokes grants for by itself. Admins give their own.
const (
	ReasonCodeReplay         = "authorization code used twice"
	ReasonRefreshReplay      = "rotated refresh token used again"
	ReasonRefreshOtherClient = "refresh token presented by another client"
	ReasonIdPRefused         = "identity provider refused refresh"
	ReasonByClient           = "revoked by the client"
	ReasonClientDeleted      = "client deleted"
	ReasonServerRemoved      = "server removed"
)

func reasonLabel(actor, reason string) string {
	switch reason {
	case ReasonCodeReplay:
		return "code_replay"
	case ReasonRefreshReplay, ReasonRefreshOtherClient:
		return "refresh_replay"
	case ReasonIdPRefused:
		return "idp_refused"
	case ReasonByClient:
		return "client"
	case ReasonClientDeleted:
		return "client_deleted"
	case ReasonServerRemoved:
		return "server_removed"
	}
	// Administrators act as "token:<name>" or "user:<subject>"
	// (internal/adminauth); "admin" and "admin:" are older names.
	if actor == "admin" || strings.HasPrefix(actor, "admin:") || strings.HasPrefix(actor, "token:") || strings.HasPrefix(actor, "user:") {
		return "admin"
	}
	return "other"
}

// Target selects what to revoke; exactly one field is set.
type Target struct {
	GrantID  string `json:"grant,omitempty"`
	Subject  string `json:"user,omitempty"`
	ClientID string `json:"client,omitempty"`
	// Server cuts everyone's access to one server: grants covering other
	// servers too are narrowed, not revoked.
	Server string `json:"server,omitempty"`
	// Connector cuts every grant whose user signed in through this IdP
	// connector ("oidc", "static").
	Connector string `json:"connector,omitempty"`
}

func (t Target) validate() error {
	n := 0
	for _, v := range []string{t.GrantID, t.Subject, t.ClientID, t.Server, t.Connector} {
		if v != "" {
			n++
		}
	}
	if n != 1 {
		return fmt.Errorf("%w: name exactly one of grant, user, client, server or connector", ErrInvalidTarget)
	}
	return nil
}

// Result says what a revocation did.
type Result struct {
	// Revoked lists grants now revoked.
	Revoked []string `json:"revoked"`
	// Narrowed lists grants that lost access to the revoked server but keep
	// their other servers.
	Narrowed []string `json:"narrowed,omitempty"`
	// ConsentsRemoved counts remembered consents dropped or narrowed, so
	// the user is asked again before the client gets a new grant.
	ConsentsRemoved int `json:"consents_removed"`
	// ClientsNarrowed lists service clients whose admin-granted access
	// lost the server (or, for a client target, was withdrawn).
	ClientsNarrowed []string `json:"clients_narrowed,omitempty"`
}

// Revoke cuts access for t in one operation, audited: one event per grant
// revoked or narrowed and a summary. actor is who asked. Every revoked
// grant's remembered consent goes too, so nothing of it comes back without
// the user; a server target also drops the server from consents and from
// service clients' access, so a server registered again under the same
// name starts with nobody allowed. Every grant is attempted; errors are
// joined and the result tells what was done.
func (s *Service) Revoke(ctx context.Context, actor string, t Target, reason string) (Result, error) {
	var res Result
	if err := t.validate(); err != nil {
		return res, err
	}
	grants, err := s.find(ctx, t)
	if err != nil {
		return res, fmt.Errorf("find grants: %w", err)
	}
	var errs []error
	for _, g := range grants {
		narrowed, changed := false, false
		err := s.st.UpdateGrant(ctx, g.ID, func(cur store.Grant) (store.Grant, error) {
			narrowed, changed = false, false
			if cur.Revoked() {
				return cur, nil
			}
			changed = true
			if t.Server != "" && len(cur.Servers) > 1 {
				// Check requires the server in grant.Servers, so removing
				// it cuts this server only.
				cur.Servers = slices.DeleteFunc(slices.Clone(cur.Servers), func(s string) bool { return s == t.Server })
				narrowed = true
				return cur, nil
			}
			cur.RevokedAt, cur.RevokedBy, cur.RevokeReason = s.clock(), actor, reason
			return cur, nil
		})
		if errors.Is(err, store.ErrNotFound) && t.GrantID != "" {
			return res, fmt.Errorf("grant %s: %w", t.GrantID, store.ErrNotFound)
		}
		if err != nil {
			errs = append(errs, fmt.Errorf("revoke grant %s: %w", g.ID, err))
			continue
		}
		if !changed {
			continue
		}
		typ := "grant_revoked"
		if narrowed {
			typ = "grant_narrowed"
			res.Narrowed = append(res.Narrowed, g.ID)
		} else {
			res.Revoked = append(res.Revoked, g.ID)
			s.revocations.WithLabelValues(reasonLabel(actor, reason)).Inc()
		}
		ev := store.AuditEvent{Type: typ, Actor: actor, Subject: g.Subject, ClientID: g.ClientID, Kind: g.Kind, GrantID: g.ID, Server: t.Server, Reason: reason}
		if err := s.audit.RecordSync(ctx, ev); err != nil {
			errs = append(errs, fmt.Errorf("audit revocation of %s: %w", g.ID, err))
		}
	}
	n, err := s.forgetConsents(ctx, t, grants)
	res.ConsentsRemoved = n
	if err != nil {
		errs = append(errs, err)
	}
	if t.Server != "" || t.ClientID != "" {
		res.ClientsNarrowed, err = s.narrowServiceAccess(ctx, t)
		if err != nil {
			errs = append(errs, err)
		}
	}
	if len(res.Revoked)+len(res.Narrowed) > 0 {
		if err := s.fence(ctx); err != nil {
			errs = append(errs, err)
		}
	}
	summary := store.AuditEvent{Type: "revoke", Actor: actor, Subject: t.Subject, ClientID: t.ClientID, GrantID: t.GrantID, Server: t.Server, Reason: reason,
		Details: map[string]any{"revoked": len(res.Revoked), "narrowed": len(res.Narrowed), "consents_removed": res.ConsentsRemoved,
			"clients_narrowed": len(res.ClientsNarrowed)}}
	if t.Connector != "" {
		summary.Details["connector"] = t.Connector
	}
	if err := s.audit.RecordSync(ctx, summary); err != nil {
		errs = append(errs, fmt.Errorf("audit revocation: %w", err))
	}
	return res, errors.Join(errs...)
}

// find lists the grants a target names. A server target also lists
// revoked grants, whose consents must still be narrowed.
func (s *Service) find(ctx context.Context, t Target) ([]store.Grant, error) {
	switch {
	case t.GrantID != "":
		g, err := s.st.GetGrant(ctx, t.GrantID)
		if err != nil {
			return nil, err
		}
		return []store.Grant{g}, nil
	case t.Connector != "":
		all, err := s.st.ListGrants(ctx, store.GrantFilter{})
		if err != nil {
			return nil, err
		}
		return slices.DeleteFunc(all, func(g store.Grant) bool { return g.Connector != t.Connector }), nil
	}
	return s.st.ListGrants(ctx, store.GrantFilter{Subject: t.Subject, ClientID: t.ClientID, Server: t.Server, IncludeRevoked: t.Server != ""})
}

// forgetConsents drops the consents behind the revoked grants (for a
// server target: drops the server from them).
func (s *Service) forgetConsents(ctx context.Context, t Target, grants []store.Grant) (int, error) {
	if t.Subject != "" || t.ClientID != "" {
		n, err := s.st.DeleteConsents(ctx, t.Subject, t.ClientID)
		if err != nil {
			return n, fmt.Errorf("drop consents: %w", err)
		}
		return n, nil
	}
	type pair struct{ subject, client string }
	seen := map[pair]bool{}
	n := 0
	var errs []error
	for _, g := range grants {
		p := pair{g.Subject, g.ClientID}
		if seen[p] || g.Kind == store.KindService {
			continue
		}
		seen[p] = true
		c, err := s.st.GetConsent(ctx, g.Subject, g.ClientID)
		if errors.Is(err, store.ErrNotFound) {
			continue
		}
		if err != nil {
			errs = append(errs, fmt.Errorf("read consent: %w", err))
			continue
		}
		if t.Server != "" {
			if !slices.Contains(c.Servers, t.Server) {
				continue
			}
			c.Servers = slices.DeleteFunc(slices.Clone(c.Servers), func(s string) bool { return s == t.Server })
			if len(c.Servers) > 0 {
				if err := s.st.PutConsent(ctx, c); err != nil {
					errs = append(errs, fmt.Errorf("narrow consent: %w", err))
				} else {
					n++
				}
				continue
			}
		}
		k, err := s.st.DeleteConsents(ctx, g.Subject, g.ClientID)
		n += k
		if err != nil {
			errs = append(errs, fmt.Errorf("drop consent: %w", err))
		}
	}
	return n, errors.Join(errs...)
}

// narrowServiceAccess removes the server from the access administrators
// granted service clients, or withdraws a client's access.
func (s *Service) narrowServiceAccess(ctx context.Context, t Target) ([]string, error) {
	var ids []string
	if t.ClientID != "" {
		ids = []string{t.ClientID}
	} else {
		all, err := s.st.ListClients(ctx)
		if err != nil {
			return nil, fmt.Errorf("list clients: %w", err)
		}
		for _, c := range all {
			if c.ServiceAccess != nil && slices.Contains(c.ServiceAccess.Servers, t.Server) {
				ids = append(ids, c.ID)
			}
		}
	}
	var out []string
	var errs []error
	for _, id := range ids {
		changed := false
		err := s.st.UpdateClient(ctx, id, func(c store.Client) (store.Client, error) {
			changed = false
			if c.ServiceAccess == nil {
				return c, nil
			}
			changed = true
			if t.ClientID != "" {
				c.ServiceAccess = nil
				return c, nil
			}
			a := *c.ServiceAccess
			a.Servers = slices.DeleteFunc(slices.Clone(a.Servers), func(s string) bool { return s == t.Server })
			c.ServiceAccess = &a
			if len(a.Servers) == 0 {
				c.ServiceAccess = nil
			}
			return c, nil
		})
		if errors.Is(err, store.ErrNotFound) {
			continue
		}
		if err != nil {
			errs = append(errs, fmt.Errorf("narrow access of client %s: %w", id, err))
			continue
		}
		if changed {
			out = append(out, id)
		}
	}
	return out, errors.Join(errs...)
}

// RevokeToken is RFC 7009 for an authenticated client: revoking a refresh
// token (or a code) ends the whole grant, revoking an access token ends
// that token. Unknown tokens and tokens of other clients change nothing
// and return nil, so the endpoint cannot be used to probe tokens.
func (s *Service) RevokeToken(ctx context.Context, clientID, raw string) error {
	digest := handle.Digest(raw)
	h, err := s.st.GetHandle(ctx, digest)
	if errors.Is(err, store.ErrNotFound) || (err == nil && h.ClientID != clientID) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("read handle: %w", err)
	}
	actor := "client:" + clientID
	tokenType := string(h.Kind)
	if h.Kind == store.HandleAccess {
		tokenType = "access_token"
		if err := s.st.DeleteHandle(ctx, digest); err != nil && !errors.Is(err, store.ErrNotFound) {
			return fmt.Errorf("delete handle: %w", err)
		}
		if err := s.fence(ctx); err != nil {
			return err
		}
	}
	if err := s.audit.RecordSync(ctx, store.AuditEvent{Type: "token_revoked", Actor: actor, ClientID: clientID, GrantID: h.GrantID,
		Details: map[string]any{"token_type": tokenType}}); err != nil {
		return fmt.Errorf("audit token_revoked: %w", err)
	}
	if h.Kind == store.HandleAccess {
		return nil
	}
	_, err = s.Revoke(ctx, actor, Target{GrantID: h.GrantID}, ReasonByClient)
	if errors.Is(err, store.ErrNotFound) {
		return nil
	}
	return err
}

// fencer is a store whose handles and grants other processes cache
// (PostgreSQL replicas with hot caches): Fence returns once none of them
// can answer from what it cached before the call.
type fencer interface {
	Fence(ctx context.Context) error
}

// fence makes a revocation exact across replicas: it returns once no
// replica can still allow from a cache that predates the revocation. On
// a store held by one process (Badger) the write itself is enough.
func (s *Service) fence(ctx context.Context) error {
	f, ok := s.st.(fencer)
	if !ok {
		return nil
	}
	if err := f.Fence(ctx); err != nil {
		return fmt.Errorf("revocation stored, but not confirmed by every replica: %w", err)
	}
	return nil
}
