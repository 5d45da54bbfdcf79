package oauth

import (
	"context"
	"errors"
	"time"

	"github.com/warden-mcp/warden/internal/store"
	"github.com/warden-mcp/warden/oauth/connector"
)

// RefreshRevoker is a connector that can revoke an IdP refresh token at
// the IdP (RFC 7009; *connector.OIDC).
type RefreshRevoker interface {
	RevokeRefreshToken(ctx context.Context, token string) error
}

// idpRevokeAttempts bounds the tries of one IdP revocation.
const idpRevokeAttempts = 6

// RevokeAtIdP is the grant service's OnRevoke hook: when the revoked
// grant holds an IdP refresh token, that token is revoked at the IdP too
// (when its discovery document advertises revocation_endpoint), so that
// the user's IdP session cannot be renewed through it. It runs in its own
// goroutine with retries and exponential backoff
// (Options.IdPRevokeBackoff, doubling, up to six tries): the local
// revocation is in force already and never waits for the IdP. Every
// outcome is logged (never the token) and counted in
// warden_oauth_idp_token_revocations_total{result}.
func (s *Server) RevokeAtIdP(g store.Grant) {
	rr, ok := s.redirectConn.(RefreshRevoker)
	if !ok || len(g.Upstream) == 0 {
		return
	}
	t, ok, err := s.openTokens(g)
	if err != nil {
		s.metrics.idpRevocations.WithLabelValues("failed").Inc()
		s.log.Error("idp token revocation: cannot open the grant's IdP tokens", "grant", g.ID, "err", err)
		return
	}
	if !ok || t.RefreshToken == "" {
		return
	}
	go s.revokeAtIdP(rr, g.ID, t.RefreshToken)
}

func (s *Server) revokeAtIdP(rr RefreshRevoker, grantID, token string) {
	wait := s.o.IdPRevokeBackoff
	for attempt := 1; ; attempt++ {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		err := rr.RevokeRefreshToken(ctx, token)
		cancel()
		switch {
		case err == nil:
			s.metrics.idpRevocations.WithLabelValues("revoked").Inc()
			s.log.Info("idp refresh token revoked at the identity provider", "grant", grantID, "attempt", attempt)
			return
		case errors.Is(err, connector.ErrNoRevocationEndpoint):
			s.metrics.idpRevocations.WithLabelValues("unsupported").Inc()
			s.log.Debug("idp advertises no revocation_endpoint; its refresh token stays valid there", "grant", grantID)
			return
		case attempt == idpRevokeAttempts:
			s.metrics.idpRevocations.WithLabelValues("failed").Inc()
			s.log.Error("idp refresh token revocation failed; giving up", "grant", grantID, "attempts", attempt, "err", err)
			return
		}
		s.metrics.idpRevocations.WithLabelValues("retry").Inc()
		s.log.Warn("idp refresh token revocation failed; retrying", "grant", grantID, "attempt", attempt, "retry_in", wait, "err", err)
		time.Sleep(wait)
		wait *= 2
	}
}
