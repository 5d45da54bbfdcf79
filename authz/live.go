package authz

import (
	"context"
	"errors"
	"fmt"

	"github.com/warden-mcp/warden/internal/store"
)

// ErrNotLive: the handle a stream was opened with may no longer reach its
// server (revoked, expired, or narrowed away from it).
var ErrNotLive = errors.New("authz: the caller may no longer use this server")

// Live reports whether the handle with digest may still reach server, with
// the same checks identify and audience make on a Check. It is for the
// response path: a long-lived response (a subscriptions/listen stream, an
// SSE call) outlives the Check that let it through, and a revocation must
// end it. Envoy's max_stream_duration bounds such a stream in any case;
// the response path can call Live on each chunk it sees (servers send
// keep-alives on long-lived streams) and end the stream sooner.
func (s *Service) Live(ctx context.Context, digest, server string) error {
	_, _, err := s.live(ctx, digest, server)
	return err
}

func (s *Service) live(ctx context.Context, digest, server string) (store.Handle, store.Grant, error) {
	h, g, err := s.o.Resolver.ResolveHandle(ctx, digest)
	switch {
	case errors.Is(err, store.ErrNotFound):
		return h, g, fmt.Errorf("%w: handle unknown or expired", ErrNotLive)
	case err != nil:
		return h, g, fmt.Errorf("authz: resolve handle: %w", err)
	case h.Kind != store.HandleAccess:
		return h, g, fmt.Errorf("%w: not an access handle", ErrNotLive)
	case g.Revoked():
		return h, g, fmt.Errorf("%w: grant revoked", ErrNotLive)
	case g.Expired(s.o.Now()):
		return h, g, fmt.Errorf("%w: grant expired", ErrNotLive)
	case !contains(h.Resources, s.o.ResourceURL(server)) || !contains(g.Servers, server):
		return h, g, fmt.Errorf("%w: audience no longer includes %s", ErrNotLive, server)
	}
	return h, g, nil
}
