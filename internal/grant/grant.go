// Package grant is the one place grants and the handles issued from them
// are written: issuance (authorization codes, access handles with refresh
// rotation, service tokens for client credentials and admin-minted agent
// identities) and revocation (RFC 7009, the admin API and CLI, the
// authorization server's own replay and IdP-refusal revocations, server
// removal, and every later caller). The OAuth server decides what the
// protocol allows; this package decides how it is stored, audited and
// revoked, with one id format and one clock.
//
// Revocation takes effect on the very next Check: Check resolves the grant
// through the store on every request, and the store's hot cache
// (internal/store/hot.go) drops an entry before a write to it completes.
package grant

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/warden-mcp/warden/internal/store"
)

// Store is the part of the store grants live in.
type Store interface {
	CreateGrant(ctx context.Context, g store.Grant) error
	GetGrant(ctx context.Context, id string) (store.Grant, error)
	UpdateGrant(ctx context.Context, id string, update func(store.Grant) (store.Grant, error)) error
	ListGrants(ctx context.Context, f store.GrantFilter) ([]store.Grant, error)

	CreateHandle(ctx context.Context, h store.Handle) error
	GetHandle(ctx context.Context, digest string) (store.Handle, error)
	UpdateHandle(ctx context.Context, digest string, update func(store.Handle) (store.Handle, error)) error
	DeleteHandle(ctx context.Context, digest string) error

	GetClient(ctx context.Context, id string) (store.Client, error)
	UpdateClient(ctx context.Context, id string, update func(store.Client) (store.Client, error)) error
	ListClients(ctx context.Context) ([]store.Client, error)

	GetConsent(ctx context.Context, subject, clientID string) (store.Consent, error)
	PutConsent(ctx context.Context, c store.Consent) error
	DeleteConsents(ctx context.Context, subject, clientID string) (int, error)

	// Connected upstream accounts (RevokeAccounts).
	ListAccounts(ctx context.Context, f store.AccountFilter) ([]store.Account, error)
	DeleteAccount(ctx context.Context, subject, provider string) error
}

// Auditor records events durably before the operation reports success:
// a credential the trail does not know about is never handed out.
type Auditor interface {
	RecordSync(ctx context.Context, ev store.AuditEvent) error
}

// Options configure a Service. Store and Audit are required.
type Options struct {
	Store Store
	Audit Auditor
	// AccessTTL is the lifetime of access handles (default 10m).
	AccessTTL time.Duration
	// RefreshTTL is the lifetime of refresh handles and the sliding
	// lifetime of a user grant: each refresh extends it (default 30 days).
	RefreshTTL time.Duration
	// CodeTTL is the lifetime of an authorization code (default 60s).
	CodeTTL time.Duration
	// Registerer receives the revocation counter; nil registers nothing.
	Registerer prometheus.Registerer
	Now        func() time.Time
}

// Service issues and revokes grants.
type Service struct {
	st          Store
	audit       Auditor
	accessTTL   time.Duration
	refreshTTL  time.Duration
	codeTTL     time.Duration
	now         func() time.Time
	revocations *prometheus.CounterVec
}

// New returns a Service.
func New(o Options) (*Service, error) {
	if o.Store == nil || o.Audit == nil {
		return nil, errors.New("grant: Store and Audit are required")
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.AccessTTL <= 0 {
		o.AccessTTL = 10 * time.Minute
	}
	if o.RefreshTTL <= 0 {
		o.RefreshTTL = 30 * 24 * time.Hour
	}
	if o.CodeTTL <= 0 {
		o.CodeTTL = time.Minute
	}
	s := &Service{
		st: o.Store, audit: o.Audit, accessTTL: o.AccessTTL, refreshTTL: o.RefreshTTL, codeTTL: o.CodeTTL, now: o.Now,
		revocations: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "warden", Name: "grant_revocations_total",
			Help: "Grants revoked, by reason (code_replay, refresh_replay, idp_refused, client, client_deleted, server_removed, admin, other).",
		}, []string{"reason"}),
	}
	if o.Registerer != nil {
		if err := o.Registerer.Register(s.revocations); err != nil {
			return nil, err
		}
	}
	return s, nil
}

// AccessTTL is the lifetime of access handles the service issues.
func (s *Service) AccessTTL() time.Duration { return s.accessTTL }

// clock is the service's time, in UTC so every record and audit event
// carries the same zone whoever wrote it.
func (s *Service) clock() time.Time { return s.now().UTC() }

// NewID returns a fresh grant id: "g_" and 128 random bits, base64url.
// Every grant has an id of this one format, whoever created it.
func NewID() string {
	var b [16]byte
	if _, err := rand.Read(b[:]); err != nil {
		panic("grant: crypto/rand: " + err.Error())
	}
	return "g_" + base64.RawURLEncoding.EncodeToString(b[:])
}

// Errors callers branch on (errors.Is). They say nothing about which check
// failed beyond what a client may learn.
var (
	// ErrInvalid: the handle is unknown, expired or of another kind.
	ErrInvalid = errors.New("grant: invalid or expired handle")
	// ErrReplay: a single-use handle was presented again; its grant is
	// revoked by the time this is returned.
	ErrReplay = errors.New("grant: handle already used")
	// ErrOtherClient: the handle belongs to another client; its grant is
	// revoked by the time this is returned (a stolen refresh token).
	ErrOtherClient = errors.New("grant: handle issued to another client")
	// ErrRevoked: the grant was revoked or has expired.
	ErrRevoked = errors.New("grant: revoked or expired")
	// ErrPublicClient: a client without a secret cannot act as a
	// service identity.
	ErrPublicClient = errors.New("client is public: only a confidential client may act as a service identity")
	// ErrInvalidTarget: a revocation target that names nothing or more
	// than one thing.
	ErrInvalidTarget = errors.New("invalid revocation target")
)
