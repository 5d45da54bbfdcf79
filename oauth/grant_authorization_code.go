package oauth

import (
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"regexp"

	"github.com/warden-mcp/warden/internal/grant"
	"github.com/warden-mcp/warden/internal/store"
)

var verifierPattern = regexp.MustCompile(`^[A-Za-z0-9._~-]{43,128}$`)

// authorizationCode redeems an authorization code (RFC 6749 4.1.3, RFC
// 7636 4.6, RFC 8707 2.2). The code is consumed before anything else is
// checked; a second redemption revokes the grant and everything issued
// from it (RFC 6749 4.1.2, RFC 9700 4.5).
type authorizationCode struct{ s *Server }

func (authorizationCode) grantType() string { return grantCode }

func (g authorizationCode) issue(ctx context.Context, req *tokenRequest) (tokenResponse, error) {
	s := g.s
	if req.Code == "" {
		return tokenResponse{}, errInvalidRequest("code is required")
	}
	code, err := s.grants.Redeem(ctx, req.Code)
	if err != nil {
		return tokenResponse{}, grantError(err, "the authorization code was already used; everything issued from it is revoked")
	}
	// From here the code is spent; a failed check also ends its grant so
	// that nothing dangles from a code an attacker may hold.
	reject := func(desc string) (tokenResponse, error) {
		if _, err := s.grants.Revoke(context.WithoutCancel(ctx), grant.ActorSystem, grant.Target{GrantID: code.GrantID}, "authorization code redemption failed: "+desc); err != nil {
			s.log.Error("revoke grant after failed redemption", "err", err)
		}
		return tokenResponse{}, errInvalidGrant(desc)
	}
	if code.ClientID != req.Client.ID {
		return reject("the code was issued to another client")
	}
	if code.RedirectURI != "" && req.RedirectURI != code.RedirectURI {
		return reject("redirect_uri does not match the authorization request")
	}
	if !verifierPattern.MatchString(req.CodeVerifier) {
		return reject("code_verifier is missing or malformed (PKCE)")
	}
	sum := sha256.Sum256([]byte(req.CodeVerifier))
	if subtle.ConstantTimeCompare([]byte(base64.RawURLEncoding.EncodeToString(sum[:])), []byte(code.CodeChallenge)) != 1 {
		return reject("code_verifier does not match the code_challenge (PKCE)")
	}
	gr, err := s.grants.Live(ctx, code.GrantID)
	if err != nil {
		return tokenResponse{}, grantError(err, "")
	}
	resources := s.liveResources(gr, code.Resources)
	if len(req.Resources) > 0 {
		tgt, err := s.resolveResources(ctx, req.Resources)
		if err != nil || !subset(tgt.Resources, code.Resources) {
			return reject("resource was not part of the authorization request")
		}
		resources = s.liveResources(gr, tgt.Resources)
	}
	if len(resources) == 0 {
		return tokenResponse{}, errInvalidGrant("access to the requested servers was revoked")
	}
	t, err := s.grants.Issue(ctx, gr, grant.Access{ClientID: req.Client.ID, Resources: resources, Scopes: code.Scopes,
		Refresh: refreshes(gr, req.Client), GrantType: grantCode})
	if err != nil {
		return tokenResponse{}, err
	}
	return s.tokenResponse(t), nil
}

// refreshes says whether a grant gets refresh handles: user grants of
// clients registered for the refresh_token grant.
func refreshes(g store.Grant, c store.Client) bool {
	return g.Kind == store.KindUser && clientAllows(c, grantRefr)
}

// liveResources keeps the resources whose server the grant still covers:
// revoking one server of a grant removes it from grant.Servers only.
func (s *Server) liveResources(g store.Grant, resources []string) []string {
	var out []string
	for _, r := range resources {
		for _, name := range g.Servers {
			if r == s.o.ResourceURL(name) {
				out = append(out, r)
				break
			}
		}
	}
	return out
}
