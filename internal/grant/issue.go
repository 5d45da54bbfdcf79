package grant

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/warden-mcp/warden/internal/handle"
	"github.com/warden-mcp/warden/internal/store"
)

// Tokens are the raw handles a client receives, once. Only their digests
// are stored.
type Tokens struct {
	GrantID      string
	AccessToken  string
	RefreshToken string
	// ExpiresAt is when the access handle expires.
	ExpiresAt time.Time
	Resources []string
	Scopes    []string
}

// Access describes the handles to issue from a grant.
type Access struct {
	ClientID  string
	Resources []string
	Scopes    []string
	// Refresh also issues a refresh handle, bound to the grant's resources
	// and to RefreshScopes (Scopes when nil).
	Refresh       bool
	RefreshScopes []string
	// TTL overrides the access handle's lifetime; it never outlives the
	// grant.
	TTL time.Duration
	// Event is the audit event type (default "token_issued"); GrantType
	// and Actor are recorded with it.
	Event     string
	GrantType string
	Actor     string
}

// Issue mints the handles a describes from grant g, audits the issuance
// and only then returns the raw values. On any failure nothing issued
// survives.
func (s *Service) Issue(ctx context.Context, g store.Grant, a Access) (Tokens, error) {
	now := s.clock()
	ttl := a.TTL
	if ttl <= 0 {
		ttl = s.accessTTL
	}
	atRaw, atDigest := handle.New(handle.PrefixAccess)
	at := store.Handle{Digest: atDigest, Kind: store.HandleAccess, GrantID: g.ID, ClientID: a.ClientID,
		Resources: a.Resources, Scopes: a.Scopes, IssuedAt: now, ExpiresAt: now.Add(ttl)}
	if !g.ExpiresAt.IsZero() && g.ExpiresAt.Before(at.ExpiresAt) {
		at.ExpiresAt = g.ExpiresAt
	}
	if err := s.st.CreateHandle(ctx, at); err != nil {
		return Tokens{}, fmt.Errorf("store access handle: %w", err)
	}
	created := []string{atDigest}
	out := Tokens{GrantID: g.ID, AccessToken: atRaw, ExpiresAt: at.ExpiresAt, Resources: a.Resources, Scopes: a.Scopes}
	if a.Refresh {
		scopes := a.RefreshScopes
		if scopes == nil {
			scopes = a.Scopes
		}
		rtRaw, rtDigest := handle.New(handle.PrefixRefresh)
		rt := store.Handle{Digest: rtDigest, Kind: store.HandleRefresh, GrantID: g.ID, ClientID: a.ClientID,
			Resources: g.Resources, Scopes: scopes, IssuedAt: now, ExpiresAt: now.Add(s.refreshTTL)}
		if err := s.st.CreateHandle(ctx, rt); err != nil {
			s.drop(created)
			return Tokens{}, fmt.Errorf("store refresh handle: %w", err)
		}
		created = append(created, rtDigest)
		out.RefreshToken = rtRaw
	}
	event := a.Event
	if event == "" {
		event = "token_issued"
	}
	err := s.audit.RecordSync(ctx, store.AuditEvent{Type: event, Actor: a.Actor, Subject: g.Subject, ClientID: a.ClientID, Kind: g.Kind, GrantID: g.ID,
		Details: map[string]any{"grant_type": a.GrantType, "resources": a.Resources, "servers": g.Servers, "scopes": a.Scopes,
			"refresh": out.RefreshToken != "", "expires_at": at.ExpiresAt}})
	if err != nil {
		s.drop(created)
		return Tokens{}, fmt.Errorf("audit %s: %w", event, err)
	}
	return out, nil
}

// drop deletes handles of a failed issuance. It runs without the request's
// context: a cancelled request must not leave a live handle behind.
func (s *Service) drop(digests []string) {
	for _, d := range digests {
		_ = s.st.DeleteHandle(context.Background(), d)
	}
}

// Code is an authorization code request: what the code is bound to.
type Code struct {
	ClientID string
	// RedirectURI is set when the client sent one, so that the token
	// request must repeat it (RFC 6749 4.1.3).
	RedirectURI string
	Challenge   string
	Resources   []string
	Scopes      []string
}

// Authorize stores a new user grant g (its id from NewID, so that sealed
// upstream tokens can be bound to it beforehand) and a single-use
// authorization code for it, audited, and returns the raw code.
func (s *Service) Authorize(ctx context.Context, g store.Grant, c Code) (string, error) {
	now := s.clock()
	if g.ID == "" {
		g.ID = NewID()
	}
	g.CreatedAt = now
	if g.ExpiresAt.IsZero() {
		g.ExpiresAt = now.Add(s.refreshTTL)
	}
	raw, digest := handle.New(handle.PrefixCode)
	code := store.Handle{Digest: digest, Kind: store.HandleCode, GrantID: g.ID, ClientID: c.ClientID,
		Resources: c.Resources, Scopes: c.Scopes, IssuedAt: now, ExpiresAt: now.Add(s.codeTTL),
		CodeChallenge: c.Challenge, RedirectURI: c.RedirectURI}
	if err := s.st.CreateGrant(ctx, g); err != nil {
		return "", fmt.Errorf("store grant: %w", err)
	}
	if err := s.st.CreateHandle(ctx, code); err != nil {
		return "", fmt.Errorf("store authorization code: %w", err)
	}
	if err := s.audit.RecordSync(ctx, store.AuditEvent{Type: "code_issued", Subject: g.Subject, ClientID: g.ClientID, Kind: g.Kind, GrantID: g.ID,
		Details: map[string]any{"servers": g.Servers, "scopes": g.Scopes}}); err != nil {
		s.drop([]string{digest})
		return "", fmt.Errorf("audit code_issued: %w", err)
	}
	return raw, nil
}

// Redeem consumes an authorization code before anything else about the
// request is checked. A second redemption revokes the grant and everything
// issued from it (RFC 6749 4.1.2, RFC 9700 4.5) and returns ErrReplay.
func (s *Service) Redeem(ctx context.Context, raw string) (store.Handle, error) {
	var code store.Handle
	err := s.st.UpdateHandle(ctx, handle.Digest(raw), func(h store.Handle) (store.Handle, error) {
		if h.Kind != store.HandleCode {
			return h, store.ErrNotFound
		}
		code = h
		if !h.UsedAt.IsZero() {
			return h, ErrReplay
		}
		h.UsedAt = s.clock()
		return h, nil
	})
	switch {
	case errors.Is(err, ErrReplay):
		s.revokeAfterReplay(ctx, code, "code_replay", ReasonCodeReplay)
		return code, ErrReplay
	case errors.Is(err, store.ErrNotFound):
		return code, ErrInvalid
	case err != nil:
		return code, fmt.Errorf("redeem authorization code: %w", err)
	}
	return code, nil
}

// Live returns grant id when it is neither revoked nor expired.
func (s *Service) Live(ctx context.Context, id string) (store.Grant, error) {
	g, err := s.st.GetGrant(ctx, id)
	if errors.Is(err, store.ErrNotFound) {
		return g, ErrRevoked
	}
	if err != nil {
		return g, fmt.Errorf("read grant: %w", err)
	}
	if g.Revoked() || g.Expired(s.now()) {
		return g, ErrRevoked
	}
	return g, nil
}

// RefreshHandle looks up a refresh handle presented by clientID without
// spending it, so that a transient failure before Rotate leaves the client
// able to retry. A rotated handle presented again (ErrReplay) or a handle
// of another client (ErrOtherClient) revokes the grant (RFC 9700 4.14.2).
func (s *Service) RefreshHandle(ctx context.Context, raw, clientID string) (store.Handle, store.Grant, error) {
	h, err := s.st.GetHandle(ctx, handle.Digest(raw))
	switch {
	case errors.Is(err, store.ErrNotFound) || (err == nil && h.Kind != store.HandleRefresh):
		return h, store.Grant{}, ErrInvalid
	case err != nil:
		return h, store.Grant{}, fmt.Errorf("read refresh handle: %w", err)
	case !h.UsedAt.IsZero():
		s.revokeAfterReplay(ctx, h, "refresh_replay", ReasonRefreshReplay)
		return h, store.Grant{}, ErrReplay
	case h.ClientID != clientID:
		s.revokeAfterReplay(ctx, h, "refresh_replay", ReasonRefreshOtherClient)
		return h, store.Grant{}, ErrOtherClient
	}
	g, err := s.Live(ctx, h.GrantID)
	return h, g, err
}

// Rotate spends the refresh handle h, extends the grant by the refresh
// lifetime (an authorization in use stays alive) and issues a new access
// and refresh pair as a describes. The new refresh handle keeps h's scope
// (RFC 6749 6); only the access handle may be narrower.
func (s *Service) Rotate(ctx context.Context, h store.Handle, a Access) (Tokens, error) {
	err := s.st.UpdateHandle(ctx, h.Digest, func(cur store.Handle) (store.Handle, error) {
		if !cur.UsedAt.IsZero() {
			return cur, ErrReplay
		}
		cur.UsedAt = s.clock()
		return cur, nil
	})
	switch {
	case errors.Is(err, ErrReplay):
		// Two requests raced with the same refresh token: one of them is
		// not the legitimate client.
		s.revokeAfterReplay(ctx, h, "refresh_replay", ReasonRefreshReplay)
		return Tokens{}, ErrReplay
	case errors.Is(err, store.ErrNotFound):
		return Tokens{}, ErrInvalid
	case err != nil:
		return Tokens{}, fmt.Errorf("spend refresh handle: %w", err)
	}
	exp := s.clock().Add(s.refreshTTL)
	var g store.Grant
	err = s.st.UpdateGrant(ctx, h.GrantID, func(cur store.Grant) (store.Grant, error) {
		if cur.Revoked() {
			return cur, ErrRevoked
		}
		cur.ExpiresAt = exp
		g = cur
		return cur, nil
	})
	if err != nil {
		if errors.Is(err, store.ErrNotFound) {
			err = ErrRevoked
		}
		return Tokens{}, err
	}
	a.Refresh = true
	a.RefreshScopes = h.Scopes
	if a.Event == "" {
		a.Event = "token_refreshed"
	}
	return s.Issue(ctx, g, a)
}

// ServiceGrant describes a non-human identity's grant: an agent or
// service acting as itself.
type ServiceGrant struct {
	// Subject is the identity; ClientID the client it acts through.
	Subject    string
	Name       string
	Groups     []string
	ClientID   string
	ClientName string
	// Servers and Resources name what the grant covers (same order);
	// Scopes what it may do there.
	Servers   []string
	Resources []string
	Scopes    []string
	// TTL is the lifetime of the grant and its one access handle.
	TTL time.Duration
	// GrantType and Actor are recorded in the audit event
	// ("client_credentials" by the client itself, "admin" by an admin).
	GrantType string
	Actor     string
}

// IssueService creates a service grant and its access handle. Service
// grants never get a refresh handle: the client authenticates again.
func (s *Service) IssueService(ctx context.Context, sg ServiceGrant) (Tokens, store.Grant, error) {
	if sg.Subject == "" || len(sg.Servers) == 0 || len(sg.Servers) != len(sg.Resources) {
		return Tokens{}, store.Grant{}, errors.New("grant: a service grant needs a subject and servers with their resources")
	}
	ttl := sg.TTL
	if ttl <= 0 {
		ttl = s.accessTTL
	}
	now := s.clock()
	name := sg.Name
	if name == "" {
		name = sg.Subject
	}
	g := store.Grant{
		ID: NewID(), Subject: sg.Subject, Name: name, Groups: sg.Groups, ClientID: sg.ClientID, ClientName: sg.ClientName,
		Kind: store.KindService, Scopes: sg.Scopes, Resources: sg.Resources, Servers: sg.Servers,
		CreatedAt: now, ExpiresAt: now.Add(ttl),
	}
	if err := s.st.CreateGrant(ctx, g); err != nil {
		return Tokens{}, g, fmt.Errorf("store grant: %w", err)
	}
	t, err := s.Issue(ctx, g, Access{ClientID: sg.ClientID, Resources: sg.Resources, Scopes: sg.Scopes, TTL: ttl,
		GrantType: sg.GrantType, Actor: sg.Actor})
	return t, g, err
}

// SetServiceAccess records what an administrator grants a client for the
// client_credentials grant: the servers and scopes its tokens may carry,
// whatever the client asks for. Empty servers withdraws the access (and
// leaves existing grants to Revoke).
func (s *Service) SetServiceAccess(ctx context.Context, actor, clientID string, servers, scopes, groups []string) (store.Client, error) {
	var out store.Client
	err := s.st.UpdateClient(ctx, clientID, func(c store.Client) (store.Client, error) {
		if len(c.SecretHash) == 0 {
			return c, fmt.Errorf("client %q: %w", clientID, ErrPublicClient)
		}
		if len(servers) == 0 {
			c.ServiceAccess = nil
		} else {
			c.ServiceAccess = &store.ServiceAccess{Servers: slices.Clone(servers), Scopes: slices.Clone(scopes), Groups: slices.Clone(groups),
				GrantedBy: actor, GrantedAt: s.clock()}
		}
		out = c
		return c, nil
	})
	if err != nil {
		return out, err
	}
	typ := "service_access_granted"
	if len(servers) == 0 {
		typ = "service_access_withdrawn"
	}
	if err := s.audit.RecordSync(ctx, store.AuditEvent{Type: typ, Actor: actor, ClientID: clientID, Kind: out.Kind,
		Details: map[string]any{"servers": servers, "scopes": scopes, "groups": groups}}); err != nil {
		return out, fmt.Errorf("audit %s: %w", typ, err)
	}
	return out, nil
}

// revokeAfterReplay records a replayed code or refresh token and revokes
// the grant it belongs to. Failures are part of the trail's own problem
// and of the caller's error answer; the replay is refused either way.
func (s *Service) revokeAfterReplay(ctx context.Context, h store.Handle, event, reason string) {
	ctx = context.WithoutCancel(ctx)
	_ = s.audit.RecordSync(ctx, store.AuditEvent{Type: event, ClientID: h.ClientID, GrantID: h.GrantID, Reason: reason})
	_, _ = s.Revoke(ctx, ActorSystem, Target{GrantID: h.GrantID}, reason)
}
