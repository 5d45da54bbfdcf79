package upstream

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"

	"github.com/warden-mcp/warden/internal/store"
)

// idpKind is the session kind of cached per-audience IdP tokens; the id
// is "<grant>/<server>".
const idpKind = "upstream_idp"

// idpAAD binds a cached token to its grant, server, audience and scopes:
// a server re-registered for another audience opens nothing and fetches
// anew.
func idpAAD(g store.Grant, srv store.Server) string {
	return "idp/" + g.ID + "/" + srv.Name + "/" + srv.IdPAudience + "/" + strings.Join(srv.IdPScopes, " ")
}

// idpAudience returns the token the IdP mints from the grant's refresh
// token for the server's audience (RFC 8707 resource) and scopes (RFC
// 6749 section 6), cached sealed until shortly before it expires. One
// refresh per grant and server at a time (the flight), and one per grant
// across replicas (the lock: the refresh token rotates).
func (b *Broker) idpAudience(ctx context.Context, srv store.Server, g store.Grant) (Credential, error) {
	id, aad := g.ID+"/"+srv.Name, idpAAD(g, srv)
	if c, ok := b.cachedToken(ctx, idpKind, id, aad); ok {
		return c, nil
	}
	v, err := b.onceLocked(ctx, "idp/"+id, "idp/"+g.ID, func() (any, error) {
		if c, ok := b.cachedToken(ctx, idpKind, id, aad); ok {
			return c, nil
		}
		tok, exp, err := b.o.IdP.IdPAudienceToken(ctx, g, srv.IdPAudience, srv.IdPScopes)
		details := map[string]any{"mode": "idp", "audience": srv.IdPAudience, "scopes": srv.IdPScopes}
		if errors.Is(err, ErrRefused) {
			_ = b.record(ctx, store.AuditEvent{Type: "credential_refresh_failed", Subject: g.Subject, ClientID: g.ClientID, GrantID: g.ID, Server: srv.Name,
				Reason: err.Error(), Details: details})
			return nil, err
		}
		if err != nil {
			return nil, err
		}
		details["expires_at"] = exp
		if err := b.record(ctx, store.AuditEvent{Type: "credential_refreshed", Subject: g.Subject, ClientID: g.ClientID, GrantID: g.ID, Server: srv.Name,
			Details: details}); err != nil {
			return nil, err
		}
		if err := b.cacheToken(ctx, idpKind, id, aad, Secret{AccessToken: tok, Expiry: exp}); err != nil {
			return nil, err
		}
		return Credential{Header: "authorization", Value: "Bearer " + tok, Expiry: exp}, nil
	})
	if err != nil {
		return Credential{}, err
	}
	return v.(Credential), nil
}

// cacheToken seals tok under kind/id until Margin before it expires; a
// token without an expiry, or one already due, is not cached.
func (b *Broker) cacheToken(ctx context.Context, kind, id, aad string, tok Secret) error {
	ttl := tok.Expiry.Sub(b.o.Now()) - b.o.Margin
	if tok.Expiry.IsZero() || ttl <= 0 {
		return nil
	}
	sealed, err := b.seal(tok, aad)
	if err != nil {
		return fmt.Errorf("seal %s token: %w", kind, err)
	}
	raw, err := json.Marshal(sealed)
	if err != nil {
		return err
	}
	if err := b.o.Store.PutSession(ctx, kind, id, raw, ttl); err != nil {
		return fmt.Errorf("cache %s token: %w", kind, err)
	}
	return nil
}

// cachedToken opens the token cached under kind/id unless it is due.
func (b *Broker) cachedToken(ctx context.Context, kind, id, aad string) (Credential, bool) {
	raw, err := b.o.Store.GetSession(ctx, kind, id)
	if err != nil {
		return Credential{}, false
	}
	var sealed store.Sealed
	if json.Unmarshal(raw, &sealed) != nil {
		return Credential{}, false
	}
	tok, err := b.open(sealed, aad)
	if err != nil || b.due(tok.Expiry) {
		return Credential{}, false
	}
	return Credential{Header: "authorization", Value: "Bearer " + tok.AccessToken, Expiry: tok.Expiry}, true
}
