package oauth

import (
	"context"
	"net/http"
	"slices"

	"github.com/warden-mcp/warden/internal/grant"
)

// clientCredentials issues a token to a confidential client acting as
// itself: a service or agent identity, recorded as non-human. What the
// token covers comes from the service access an administrator granted the
// client (the admin API, or servers of a pre-registered client), never
// from the client's registration or request: a request can only narrow it.
type clientCredentials struct{ s *Server }

func (clientCredentials) grantType() string { return grantCreds }

func (g clientCredentials) issue(ctx context.Context, req *tokenRequest) (tokenResponse, error) {
	s, c := g.s, req.Client
	if len(c.SecretHash) == 0 {
		return tokenResponse{}, errUnauthorizedClient("only confidential clients may use client_credentials")
	}
	access := c.ServiceAccess
	if access == nil || len(access.Servers) == 0 {
		return tokenResponse{}, errUnauthorizedClient("no administrator has granted this client access to any server")
	}
	servers := access.Servers
	if len(req.Resources) > 0 {
		tgt, err := s.resolveResources(ctx, req.Resources)
		if err != nil {
			return tokenResponse{}, oauthError(http.StatusBadRequest, "invalid_target", err.Error())
		}
		for _, name := range tgt.names() {
			if !slices.Contains(access.Servers, name) {
				return tokenResponse{}, oauthError(http.StatusBadRequest, "invalid_target", "the client was not granted access to server "+name)
			}
		}
		servers = tgt.names()
	}
	var names, resources []string
	for _, name := range servers {
		if _, err := s.servers.GetServer(ctx, name); err != nil {
			// A server removed since the grant of access is not reachable.
			continue
		}
		names = append(names, name)
		resources = append(resources, s.o.ResourceURL(name))
	}
	if len(names) == 0 {
		return tokenResponse{}, oauthError(http.StatusBadRequest, "invalid_target", "none of the servers the client was granted is registered")
	}
	scopes := access.Scopes
	if req.Scopes != nil {
		if !subset(req.Scopes, access.Scopes) {
			return tokenResponse{}, oauthError(http.StatusBadRequest, "invalid_scope", "the client was not granted that scope")
		}
		scopes = req.Scopes
	}
	name := c.Name
	if name == "" {
		name = c.ID
	}
	t, _, err := s.grants.IssueService(ctx, grant.ServiceGrant{
		Subject: "client:" + c.ID, Name: name, Groups: access.Groups, ClientID: c.ID, ClientName: c.Name,
		Servers: names, Resources: resources, Scopes: scopes, GrantType: grantCreds, Actor: "client:" + c.ID,
	})
	if err != nil {
		return tokenResponse{}, err
	}
	return s.tokenResponse(t), nil
}
