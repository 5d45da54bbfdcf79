package oauth

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"hash/fnv"
	"time"

	"github.com/warden-mcp/warden/internal/store"
	"github.com/warden-mcp/warden/oauth/connector"
)

// upstreamIdP is the key of the sealed IdP tokens in Grant.Upstream.
const upstreamIdP = "idp"

// RevokeGrant revokes a grant, cutting every handle issued from it, and
// audits it. Revoking an already revoked grant keeps the first record.
func (s *Server) RevokeGrant(ctx context.Context, grantID, actor, reason string) error {
	return s.revokeGrant(ctx, grantID, actor, reason)
}

func (s *Server) revokeGrant(ctx context.Context, grantID, actor, reason string) error {
	var g store.Grant
	already := false
	err := s.st.UpdateGrant(ctx, grantID, func(cur store.Grant) (store.Grant, error) {
		g = cur
		if cur.Revoked() {
			already = true
			return cur, nil
		}
		cur.RevokedAt, cur.RevokedBy, cur.RevokeReason = s.now(), actor, reason
		g = cur
		return cur, nil
	})
	if err != nil {
		return fmt.Errorf("revoke grant: %w", err)
	}
	if already {
		return nil
	}
	s.metrics.revocations.WithLabelValues(revocationLabel(reason)).Inc()
	return s.audit.RecordSync(ctx, store.AuditEvent{Type: "grant_revoked", Actor: actor, Subject: g.Subject, ClientID: g.ClientID,
		Kind: g.Kind, GrantID: g.ID, Reason: reason})
}

// Reasons the authorization server revokes grants for by itself.
const (
	reasonCodeReplay         = "authorization code used twice"
	reasonRefreshReplay      = "rotated refresh token used again"
	reasonRefreshOtherClient = "refresh token presented by another client"
	reasonIdPRefused         = "identity provider refused refresh"
	reasonByClient           = "revoked by the client"
	reasonClientDeleted      = "client deleted"
)

func revocationLabel(reason string) string {
	switch reason {
	case reasonCodeReplay:
		return "code_replay"
	case reasonRefreshReplay, reasonRefreshOtherClient:
		return "refresh_replay"
	case reasonIdPRefused:
		return "idp_refused"
	case reasonByClient:
		return "client"
	case reasonClientDeleted:
		return "client_deleted"
	default:
		return "other"
	}
}

// revokeAfterReplay records a replayed code or refresh token and revokes
// the grant it belongs to.
func (s *Server) revokeAfterReplay(ctx context.Context, h store.Handle, event, reason string) {
	if err := s.audit.RecordSync(ctx, store.AuditEvent{Type: event, ClientID: h.ClientID, GrantID: h.GrantID, Reason: reason}); err != nil {
		s.log.Error("audit replay", "err", err)
	}
	if err := s.revokeGrant(ctx, h.GrantID, "system", reason); err != nil {
		s.log.Error("revoke grant after replay", "grant_id", h.GrantID, "err", err)
	}
}

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
// horizon (plus the connector's margin). A refusal by the IdP revokes the
// grant and is returned as connector.ErrRefused.
func (s *Server) refreshUpstream(ctx context.Context, g store.Grant, horizon time.Duration) (store.Grant, error) {
	if s.redirectConn == nil || len(g.Upstream) == 0 {
		return g, nil
	}
	margin := s.ocfg.Connector.OIDC.RefreshMargin.D()
	due := func(t connector.Tokens) bool {
		return t.RefreshToken != "" && !t.Expiry.IsZero() && !t.Expiry.After(s.now().Add(horizon+margin))
	}
	t, ok, err := s.openTokens(g)
	if err != nil || !ok || !due(t) {
		return g, err
	}
	// One refresh per grant at a time: IdPs rotate refresh tokens and
	// treat a second use of the old one as theft, so two concurrent
	// refreshes would get the user's grant revoked. The loser of the race
	// rereads the grant and finds the fresh tokens.
	unlock := s.lockGrant(g.ID)
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
		if rerr := s.revokeGrant(ctx, g.ID, "system", reasonIdPRefused); rerr != nil {
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

// lockGrant serialises upstream refreshes of one grant in this process.
// A fixed set of striped mutexes keeps memory bounded; two grants sharing
// a stripe only wait for each other's IdP round trip.
func (s *Server) lockGrant(id string) func() {
	h := fnv.New32a()
	_, _ = h.Write([]byte(id))
	m := &s.grantLocks[h.Sum32()%uint32(len(s.grantLocks))]
	m.Lock()
	return m.Unlock
}

// ErrNoUpstreamToken means the grant carries no IdP token (static
// connector, service identities).
var ErrNoUpstreamToken = errors.New("grant has no identity provider token")

// IdPAccessToken returns the grant's IdP access token for the "idp"
// upstream credential mode, refreshing it first when it is about to
// expire. A refusal by the IdP revokes the grant and returns an error
// wrapping connector.ErrRefused.
func (s *Server) IdPAccessToken(ctx context.Context, g store.Grant) (string, error) {
	g, err := s.refreshUpstream(ctx, g, 0)
	if err != nil {
		return "", err
	}
	t, ok, err := s.openTokens(g)
	if err != nil {
		return "", err
	}
	if !ok || t.AccessToken == "" {
		return "", ErrNoUpstreamToken
	}
	return t.AccessToken, nil
}
