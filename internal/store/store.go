// Package store defines Warden's persistent state and the contract every
// storage backend must honour. Callers depend on the Store interface only;
// the Badger backend lives beside it and a conformance suite in storetest
// holds every backend to the same behaviour.
package store

import (
	"context"
	"errors"
	"time"
)

// Sentinel errors are part of the contract: backends return them (possibly
// wrapped) so callers can branch with errors.Is.
var (
	ErrNotFound      = errors.New("not found")
	ErrAlreadyExists = errors.New("already exists")
)

// Store is the whole persistent state of Warden. Every method is safe for
// concurrent use. Update methods are compare-and-swap: the updater sees the
// current value and the write only lands if nobody changed the record in
// between (backends retry the updater on conflict). An updater returning an
// error aborts the update and that error is returned unchanged.
//
// Records with an expiry (handles, sessions) are reported as ErrNotFound once
// expired, whether or not the backend has physically removed them yet.
type Store interface {
	CreateClient(ctx context.Context, c Client) error
	GetClient(ctx context.Context, id string) (Client, error)
	UpdateClient(ctx context.Context, id string, update func(Client) (Client, error)) error
	DeleteClient(ctx context.Context, id string) error
	ListClients(ctx context.Context) ([]Client, error)

	CreateGrant(ctx context.Context, g Grant) error
	GetGrant(ctx context.Context, id string) (Grant, error)
	UpdateGrant(ctx context.Context, id string, update func(Grant) (Grant, error)) error
	DeleteGrant(ctx context.Context, id string) error
	ListGrants(ctx context.Context, f GrantFilter) ([]Grant, error)

	// Handles are keyed by the hex SHA-256 digest of the raw handle; the raw
	// value never reaches the store.
	CreateHandle(ctx context.Context, h Handle) error
	GetHandle(ctx context.Context, digest string) (Handle, error)
	UpdateHandle(ctx context.Context, digest string, update func(Handle) (Handle, error)) error
	DeleteHandle(ctx context.Context, digest string) error
	// ResolveHandle reads a handle and its grant in one consistent read: the
	// hot path of every Check.
	ResolveHandle(ctx context.Context, digest string) (Handle, Grant, error)

	CreateServer(ctx context.Context, s Server) error
	GetServer(ctx context.Context, name string) (Server, error)
	UpdateServer(ctx context.Context, name string, update func(Server) (Server, error)) error
	// DeleteServer deletes the server and, in the same transaction, its
	// tool pins, so that a server added again under the name inherits none.
	DeleteServer(ctx context.Context, name string) error
	ListServers(ctx context.Context) ([]Server, error)

	// Sessions hold short-lived protocol state (pending authorizations,
	// login round trips, CSRF state) as opaque bytes under a kind.
	PutSession(ctx context.Context, kind, id string, value []byte, ttl time.Duration) error
	GetSession(ctx context.Context, kind, id string) ([]byte, error)
	// TakeSession reads and deletes atomically, so single-use state is used
	// at most once even under concurrent callers.
	TakeSession(ctx context.Context, kind, id string) ([]byte, error)

	PutConsent(ctx context.Context, c Consent) error
	GetConsent(ctx context.Context, subject, clientID string) (Consent, error)
	DeleteConsents(ctx context.Context, subject, clientID string) (int, error)

	// PutLastUse records uses of grants on servers; a stored time is only
	// ever moved forward. DeleteGrant deletes the grant's uses.
	PutLastUse(ctx context.Context, uses ...LastUse) error
	// ListLastUse returns every recorded use.
	ListLastUse(ctx context.Context) ([]LastUse, error)

	// Tool pins (tool pinning on the response path).
	ToolPins

	// AppendAudit stores events whose Seq continue the chain exactly
	// (Seq = last Seq + 1, in order); anything else is ErrConflict-like
	// and returns ErrAlreadyExists.
	AppendAudit(ctx context.Context, events ...AuditEvent) error
	// ListAudit returns up to limit events with Seq >= from, oldest first.
	ListAudit(ctx context.Context, from uint64, limit int) ([]AuditEvent, error)
	// LastAudit returns the newest event, or ErrNotFound on an empty trail.
	LastAudit(ctx context.Context) (AuditEvent, error)
	// PutAuditCheckpoint stores a signed checkpoint of the chain (written
	// before the events it covers are pruned); one per Seq.
	PutAuditCheckpoint(ctx context.Context, c AuditCheckpoint) error
	// ListAuditCheckpoints returns every stored checkpoint, newest first.
	ListAuditCheckpoints(ctx context.Context) ([]AuditCheckpoint, error)
	// PruneAudit deletes events with Seq <= through, never the newest
	// event, and returns how many it deleted. A backend may delete less
	// (Badger deletes whole segment files only).
	PruneAudit(ctx context.Context, through uint64) (int, error)

	// Credentials: third-party providers and users' connected accounts.
	Credentials

	Close() error
}

// GrantFilter selects grants; empty fields match everything.
type GrantFilter struct {
	Subject  string
	ClientID string
	Server   string
	// IncludeRevoked also returns revoked grants.
	IncludeRevoked bool
}

// Match reports whether g passes the filter.
func (f GrantFilter) Match(g Grant) bool {
	if f.Subject != "" && g.Subject != f.Subject {
		return false
	}
	if f.ClientID != "" && g.ClientID != f.ClientID {
		return false
	}
	if f.Server != "" && !contains(g.Servers, f.Server) {
		return false
	}
	if !f.IncludeRevoked && g.Revoked() {
		return false
	}
	return true
}

func contains(list []string, s string) bool {
	for _, v := range list {
		if v == s {
			return true
		}
	}
	return false
}
