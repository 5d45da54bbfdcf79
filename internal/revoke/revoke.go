// Package revoke is the one revocation operation: a grant, everything of a
// user, everything of a client, or everyone's access to a server, cut in one
// call that takes effect on the very next Check (Check reads grant state
// from the store on every request; nothing caches it).
package revoke

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/warden-mcp/warden/internal/store"
)

// Store is what revocation touches.
type Store interface {
	GetGrant(ctx context.Context, id string) (store.Grant, error)
	ListGrants(ctx context.Context, f store.GrantFilter) ([]store.Grant, error)
	UpdateGrant(ctx context.Context, id string, update func(store.Grant) (store.Grant, error)) error
	DeleteConsents(ctx context.Context, subject, clientID string) (int, error)
}

// Auditor records each revocation durably before it is reported done.
type Auditor interface {
	RecordSync(ctx context.Context, ev store.AuditEvent) error
}

// Target selects what to revoke; exactly one field is set.
type Target struct {
	GrantID  string `json:"grant,omitempty"`
	Subject  string `json:"user,omitempty"`
	ClientID string `json:"client,omitempty"`
	Server   string `json:"server,omitempty"`
}

func (t Target) validate() error {
	n := 0
	for _, v := range []string{t.GrantID, t.Subject, t.ClientID, t.Server} {
		if v != "" {
			n++
		}
	}
	if n != 1 {
		return errors.New("name exactly one of grant, user, client or server")
	}
	return nil
}

// ErrInvalidTarget is returned for a malformed target.
var ErrInvalidTarget = errors.New("invalid revocation target")

// Result says what a revocation did.
type Result struct {
	// Revoked lists grants now revoked.
	Revoked []string `json:"revoked"`
	// Narrowed lists grants that lost access to the revoked server but keep
	// their other servers.
	Narrowed []string `json:"narrowed,omitempty"`
	// ConsentsRemoved counts remembered consents dropped, so the user is
	// asked again before the client gets a new grant.
	ConsentsRemoved int `json:"consents_removed"`
}

// Revoker performs revocations.
type Revoker struct {
	st    Store
	audit Auditor
	now   func() time.Time
}

// New returns a Revoker.
func New(st Store, audit Auditor, now func() time.Time) *Revoker {
	if now == nil {
		now = time.Now
	}
	return &Revoker{st: st, audit: audit, now: now}
}

// Revoke cuts access for t. actor is who asked, recorded in the audit trail.
func (r *Revoker) Revoke(ctx context.Context, actor string, t Target, reason string) (Result, error) {
	var res Result
	if err := t.validate(); err != nil {
		return res, fmt.Errorf("%w: %w", ErrInvalidTarget, err)
	}
	var grants []store.Grant
	var err error
	if t.GrantID != "" {
		var g store.Grant
		g, err = r.st.GetGrant(ctx, t.GrantID)
		grants = []store.Grant{g}
	} else {
		grants, err = r.st.ListGrants(ctx, store.GrantFilter{Subject: t.Subject, ClientID: t.ClientID, Server: t.Server})
	}
	if err != nil {
		return res, fmt.Errorf("find grants: %w", err)
	}
	var errs []error
	for _, g := range grants {
		narrowed := false
		err := r.st.UpdateGrant(ctx, g.ID, func(cur store.Grant) (store.Grant, error) {
			narrowed = false
			if cur.Revoked() {
				return cur, nil
			}
			if t.Server != "" && len(cur.Servers) > 1 {
				// The grant stays valid for its other servers; Check
				// requires the server in grant.Servers, so removing it
				// cuts this server only.
				cur.Servers = slices.DeleteFunc(slices.Clone(cur.Servers), func(s string) bool { return s == t.Server })
				narrowed = true
				return cur, nil
			}
			cur.RevokedAt = r.now().UTC()
			cur.RevokedBy = actor
			cur.RevokeReason = reason
			return cur, nil
		})
		if err != nil {
			errs = append(errs, fmt.Errorf("revoke grant %s: %w", g.ID, err))
			continue
		}
		typ := "grant_revoked"
		if narrowed {
			typ = "grant_narrowed"
			res.Narrowed = append(res.Narrowed, g.ID)
		} else {
			res.Revoked = append(res.Revoked, g.ID)
		}
		ev := store.AuditEvent{Type: typ, Actor: actor, Subject: g.Subject, ClientID: g.ClientID, Kind: g.Kind, GrantID: g.ID, Server: t.Server, Reason: reason}
		if err := r.audit.RecordSync(ctx, ev); err != nil {
			errs = append(errs, fmt.Errorf("audit revocation of %s: %w", g.ID, err))
		}
	}
	if t.Subject != "" || t.ClientID != "" {
		n, err := r.st.DeleteConsents(ctx, t.Subject, t.ClientID)
		if err != nil {
			errs = append(errs, fmt.Errorf("drop consents: %w", err))
		}
		res.ConsentsRemoved = n
	}
	summary := store.AuditEvent{Type: "revoke", Actor: actor, Subject: t.Subject, ClientID: t.ClientID, GrantID: t.GrantID, Server: t.Server, Reason: reason,
		Details: map[string]any{"revoked": len(res.Revoked), "narrowed": len(res.Narrowed), "consents_removed": res.ConsentsRemoved}}
	if err := r.audit.RecordSync(ctx, summary); err != nil {
		errs = append(errs, fmt.Errorf("audit revocation: %w", err))
	}
	return res, errors.Join(errs...)
}
