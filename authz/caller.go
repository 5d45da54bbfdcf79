package authz

import (
	"context"
	"errors"
	"fmt"

	"github.com/warden-mcp/warden/internal/store"
	"github.com/warden-mcp/warden/policy"
)

// ResponseCaller is the caller of a request, found again by the response
// path from the handle digest the Check passed on in dynamic metadata.
type ResponseCaller struct {
	// Input has the caller's subject, client, server and grant (a cached
	// policy.Caller); its mcp part is the response path's to fill.
	Input                      policy.Input
	Subject, ClientID, GrantID string
}

// Caller finds the caller with handle digest on server, with the checks
// Live makes: a caller revoked since its Check gets ErrNotLive, and the
// response path shows it nothing. input.request and mcp.id are empty in
// its Input: the response path fills them from the Check's metadata
// (RequestFromMetadata, DecodeID).
func (s *Service) Caller(ctx context.Context, digest, server string) (ResponseCaller, error) {
	h, g, err := s.live(ctx, digest, server)
	if err != nil {
		return ResponseCaller{}, err
	}
	srv, err := s.o.Servers.Server(ctx, server)
	switch {
	case errors.Is(err, store.ErrNotFound):
		return ResponseCaller{}, fmt.Errorf("%w: server %s is not registered", ErrNotLive, server)
	case err != nil:
		return ResponseCaller{}, fmt.Errorf("authz: look up server: %w", err)
	}
	c := &check{server: server, srv: srv, handle: h, grant: g}
	in, err := s.input(c)
	if err != nil {
		return ResponseCaller{}, err
	}
	// Nothing is omitted: request and id are empty for every item alike.
	in.Omitted = policy.Needs{}
	return ResponseCaller{Input: *in, Subject: g.Subject, ClientID: g.ClientID, GrantID: g.ID}, nil
}
