package oauth

import (
	"context"
	"errors"
	"net/http"

	"github.com/warden-mcp/warden/internal/grant"
	"github.com/warden-mcp/warden/oauth/connector"
)

// refreshToken redeems a refresh token (RFC 6749 6, OAuth 2.1 4.3).
// Refresh tokens rotate on every use; presenting a rotated one again is a
// replay and revokes the whole grant (RFC 9700 4.14.2).
type refreshToken struct{ s *Server }

func (refreshToken) grantType() string { return grantRefr }

func (g refreshToken) issue(ctx context.Context, req *tokenRequest) (tokenResponse, error) {
	s := g.s
	if req.RefreshToken == "" {
		return tokenResponse{}, errInvalidRequest("refresh_token is required")
	}
	h, gr, err := s.grants.RefreshHandle(ctx, req.RefreshToken, req.Client.ID)
	switch {
	case errors.Is(err, grant.ErrOtherClient):
		return tokenResponse{}, errInvalidGrant("the refresh token was issued to another client")
	case errors.Is(err, grant.ErrInvalid):
		return tokenResponse{}, errInvalidGrant("the refresh token is invalid or expired")
	case err != nil:
		return tokenResponse{}, grantError(err, "the refresh token was already used; the authorization is revoked")
	}
	scopes := h.Scopes
	if req.Scopes != nil {
		if !subset(req.Scopes, h.Scopes) {
			return tokenResponse{}, oauthError(http.StatusBadRequest, "invalid_scope", "a refresh may only narrow the scope")
		}
		scopes = req.Scopes
	}
	resources := s.liveResources(gr, gr.Resources)
	if len(req.Resources) > 0 {
		tgt, err := s.resolveResources(ctx, req.Resources)
		if err != nil || !subset(tgt.Resources, gr.Resources) {
			return tokenResponse{}, oauthError(http.StatusBadRequest, "invalid_target", "resource was not part of the authorization")
		}
		resources = s.liveResources(gr, tgt.Resources)
	}
	if len(resources) == 0 {
		return tokenResponse{}, errInvalidGrant("access to every server of this authorization was revoked")
	}
	// Ask the IdP before spending the refresh token: a transient IdP
	// failure must leave the client able to retry.
	if _, err := s.refreshUpstream(ctx, gr, s.grants.AccessTTL()); err != nil {
		if errors.Is(err, connector.ErrRefused) {
			return tokenResponse{}, errInvalidGrant("the identity provider no longer accepts this user; the authorization is revoked")
		}
		s.log.Warn("refresh: identity provider", "grant_id", gr.ID, "err", err)
		return tokenResponse{}, oauthError(http.StatusServiceUnavailable, "temporarily_unavailable", "the identity provider cannot be reached; retry later")
	}
	t, err := s.grants.Rotate(ctx, h, grant.Access{ClientID: req.Client.ID, Resources: resources, Scopes: scopes, GrantType: grantRefr})
	if err != nil {
		return tokenResponse{}, grantError(err, "the refresh token was already used; the authorization is revoked")
	}
	return s.tokenResponse(t), nil
}
