package oauth

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"hash/fnv"
	"time"

	"github.com/warden-mcp/warden/internal/grant"
	"github.com/warden-mcp/warden/internal/store"
	"github.com/warden-mcp/warden/oauth/connector"
)

// upstreamIdP is the key of the sealed IdP tokens in Grant.Upstream.
const upstreamIdP = "idp"

// sealTokens seals IdP tokens for a grant; the grant id is the AAD, so the
// ciphertext cannot be moved to another grant.
func (s *Server) sealTokens(grantID string, t connector.Tokens) (store.Sealed, error) {
	raw, err := json.Marshal(t)
	if err != nil {
		return store.Sealed{}, err
	}
	return s.ring.Seal(raw, []byte(grantID))
}

// openTokens returns the grant's IdP tokens; ok is false when it has none.
func (s *Server) openTokens(g store.Grant) (connector.Tokens, bool, error) {
	sealed, ok := g.Upstream[upstreamIdP]
	if !ok {
		return connector.Tokens{}, false, nil
	}
	raw, err := s.ring.Open(sealed, []byte(g.ID))
	if err != nil {
		return connector.Tokens{}, true, fmt.Errorf("open identity provider tokens of grant %s: %w", g.ID, err)
	}
	var t connector.Tokens
	if err := json.Unmarshal(raw, &t); err != nil {
		return connector.Tokens{}, true, fmt.Errorf("decode identity provider tokens of grant %s: %w", g.ID, err)
	}
	return t, true, nil
}

// refreshUpstream renews the grant's IdP tokens when they expire within
// horizon (plus the refresh margin). A refusal by the IdP revokes the
// grant (through the grant service) and is returned as
// connector.ErrRefused.
func (s *Server) refreshUpstream(ctx context.Context, g store.Grant, horizon time.Duration) (store.Grant, error) {
	if s.redirectConn == nil || len(g.Upstream) == 0 {
		return g, nil
	}
	due := func(t connector.Tokens) bool {
		return t.RefreshToken != "" && !t.Expiry.IsZero() && !t.Expiry.After(s.now().Add(horizon+s.o.UpstreamRefreshMargin))
	}
	t, ok, err := s.openTokens(g)
	if err != nil || !ok || !due(t) {
		return g, err
	}
	// One refresh per grant at a time: IdPs rotate refresh tokens and
	// treat a second use of the old one as theft, so two concurrent
	// refreshes would get the user's grant revoked. The loser of the race
	// rereads the grant and finds the fresh tokens.
	unlock, err := s.lockGrant(ctx, g.ID)
	if err != nil {
		return g, err
	}
	defer unlock()
	if g, err = s.st.GetGrant(ctx, g.ID); err != nil {
		return g, err
	}
	if t, ok, err = s.openTokens(g); err != nil || !ok || !due(t) {
		return g, err
	}
	next, err := s.redirectConn.Refresh(ctx, t)
	if errors.Is(err, connector.ErrRefused) {
		_ = s.audit.RecordSync(ctx, store.AuditEvent{Type: "idp_refresh_refused", Subject: g.Subject, ClientID: g.ClientID, Kind: g.Kind, GrantID: g.ID, Reason: err.Error()})
		if _, rerr := s.grants.Revoke(ctx, grant.ActorSystem, grant.Target{GrantID: g.ID}, grant.ReasonIdPRefused); rerr != nil {
			return g, rerr
		}
		return g, err
	}
	if err != nil {
		return g, err
	}
	sealed, err := s.sealTokens(g.ID, next)
	if err != nil {
		return g, err
	}
	err = s.st.UpdateGrant(ctx, g.ID, func(cur store.Grant) (store.Grant, error) {
		if cur.Upstream == nil {
			cur.Upstream = map[string]store.Sealed{}
		}
		cur.Upstream[upstreamIdP] = sealed
		g = cur
		return cur, nil
	})
	return g, err
}

// lockGrant serialises the spending of one grant's IdP refresh token: in
// this process through a fixed set of striped mutexes (memory stays
// bounded; two grants sharing a stripe only wait for each other's IdP
// round trip), and across replicas through the store's lock when it has
// one (PostgreSQL advisory locks). Every path that spends it comes here:
// the MCP client's refresh_token grant, the idp credential's refresh and
// the refresh for a server's audience, so replica B answering a client's
// refresh while replica C refreshes for a Check cannot present the same
// rotated token twice (which the IdP takes as theft). The key differs
// from internal/upstream's flight locks, which may be held around this.
func (s *Server) lockGrant(ctx context.Context, id string) (func(), error) {
	h := fnv.New32a()
	_, _ = h.Write([]byte(id))
	m := &s.grantLocks[h.Sum32()%uint32(len(s.grantLocks))]
	m.Lock()
	l, ok := s.st.(grantLocker)
	if !ok {
		return m.Unlock, nil
	}
	unlock, err := l.Lock(ctx, "oauth/idp-refresh/"+id)
	if err != nil {
		m.Unlock()
		return nil, fmt.Errorf("lock the IdP refresh of grant %s: %w", id, err)
	}
	return func() { unlock(); m.Unlock() }, nil
}

// grantLocker is a store shared by replicas (internal/store/postgres).
type grantLocker interface {
	Lock(ctx context.Context, key string) (unlock func(), err error)
}

// ErrNoUpstreamToken means the grant carries no IdP token (static
// connector, service identities).
var ErrNoUpstreamToken = errors.New("grant has no identity provider token")

// IdPAccessToken returns the grant's IdP access token for the "idp"
// upstream credential mode, refreshing it first when it is about to
// expire. A refusal by the IdP revokes the grant and returns an error
// wrapping connector.ErrRefused.
// The expiry is the token's (zero when the IdP gave none).
func (s *Server) IdPAccessToken(ctx context.Context, g store.Grant) (string, time.Time, error) {
	g, err := s.refreshUpstream(ctx, g, 0)
	if err != nil {
		return "", time.Time{}, err
	}
	t, ok, err := s.openTokens(g)
	if err != nil {
		return "", time.Time{}, err
	}
	if !ok || t.AccessToken == "" {
		return "", time.Time{}, ErrNoUpstreamToken
	}
	return t.AccessToken, t.Expiry, nil
}

// AudienceRefresher is a connector that can spend the refresh token for
// an access token for one resource server (connector.OIDC).
type AudienceRefresher interface {
	RefreshFor(ctx context.Context, t connector.Tokens, resource string, scopes []string) (connector.Tokens, error)
}

// IdPAudienceToken returns a fresh IdP access token for audience (the RFC
// 8707 resource) and scopes, for the "idp" mode of a server that names
// them. The refresh token is spent for it, so the rotated one is stored
// in the grant under the same lock as the sign-in refresh; the sign-in
// access token stays as it is. The caller caches the result. A refused
// refresh token revokes the grant (connector.ErrRefused); a refused
// audience or scope is a *connector.TargetError and leaves the grant.
func (s *Server) IdPAudienceToken(ctx context.Context, g store.Grant, audience string, scopes []string) (string, time.Time, error) {
	ar, ok := s.redirectConn.(AudienceRefresher)
	if !ok {
		return "", time.Time{}, ErrNoUpstreamToken
	}
	unlock, err := s.lockGrant(ctx, g.ID)
	if err != nil {
		return "", time.Time{}, err
	}
	defer unlock()
	g, err = s.st.GetGrant(ctx, g.ID)
	if err != nil {
		return "", time.Time{}, err
	}
	t, ok, err := s.openTokens(g)
	if err != nil {
		return "", time.Time{}, err
	}
	if !ok || t.RefreshToken == "" {
		return "", time.Time{}, ErrNoUpstreamToken
	}
	next, err := ar.RefreshFor(ctx, t, audience, scopes)
	if errors.Is(err, connector.ErrRefused) {
		_ = s.audit.RecordSync(ctx, store.AuditEvent{Type: "idp_refresh_refused", Subject: g.Subject, ClientID: g.ClientID, Kind: g.Kind, GrantID: g.ID, Reason: err.Error(),
			Details: map[string]any{"audience": audience}})
		if _, rerr := s.grants.Revoke(ctx, grant.ActorSystem, grant.Target{GrantID: g.ID}, grant.ReasonIdPRefused); rerr != nil {
			return "", time.Time{}, rerr
		}
		return "", time.Time{}, err
	}
	if err != nil {
		return "", time.Time{}, err
	}
	if next.RefreshToken != t.RefreshToken {
		kept := t
		kept.RefreshToken = next.RefreshToken
		sealed, err := s.sealTokens(g.ID, kept)
		if err != nil {
			return "", time.Time{}, err
		}
		if err := s.st.UpdateGrant(ctx, g.ID, func(cur store.Grant) (store.Grant, error) {
			if cur.Upstream == nil {
				cur.Upstream = map[string]store.Sealed{}
			}
			cur.Upstream[upstreamIdP] = sealed
			return cur, nil
		}); err != nil {
			// The IdP has rotated the token: losing the new one loses the
			// grant's upstream access at the next refresh.
			return "", time.Time{}, fmt.Errorf("store rotated identity provider refresh token of grant %s: %w", g.ID, err)
		}
	}
	return next.AccessToken, next.Expiry, nil
}
