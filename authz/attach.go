package authz

import (
	"context"
	"fmt"
	"strings"
	"time"

	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	lru "github.com/hashicorp/golang-lru/v2"
	"github.com/lestrrat-go/jwx/v2/jwt"

	"github.com/warden-mcp/warden/internal/handle"
	"github.com/warden-mcp/warden/internal/store"
)

// Signer signs upstream JWTs.
type Signer interface {
	Sign(t jwt.Token) ([]byte, error)
}

// Opener opens sealed upstream secrets.
type Opener interface {
	Open(s store.Sealed, aad []byte) ([]byte, error)
}

// AttacherOptions configure credential attachment.
type AttacherOptions struct {
	Signer Signer
	Opener Opener
	Issuer string
	// ResourceURL maps a server name to the audience of its JWTs.
	ResourceURL func(server string) string
	// TTL is the lifetime of minted JWTs (at most 5 minutes).
	TTL time.Duration
	// SubjectHeader and ClientHeader carry the caller's identity upstream;
	// empty disables them.
	SubjectHeader string
	ClientHeader  string
	// Credentials serves the idp, exchange and provider modes; nil fails
	// them closed.
	Credentials Credentials
	// RenewBefore is how long before a brokered credential expires the
	// cached response is dropped (default 1m, the broker's margin).
	RenewBefore time.Duration
	Now         func() time.Time
}

// Attacher turns a decision into the header mutations Envoy applies on the
// way upstream: the client's Authorization is always removed (no token
// passthrough) and the server's own credential is set.
type Attacher struct {
	o     AttacherOptions
	cache *lru.Cache[attachKey, attached]
}

// attachedMax bounds cached upstream responses (one per live handle and
// server).
const attachedMax = 100_000

// NewAttacher returns an Attacher.
func NewAttacher(o AttacherOptions) (*Attacher, error) {
	if o.Signer == nil || o.Opener == nil || o.ResourceURL == nil || o.Issuer == "" {
		return nil, fmt.Errorf("authz: attacher needs Signer, Opener, ResourceURL and Issuer")
	}
	if o.TTL <= 0 || o.TTL > 5*time.Minute {
		o.TTL = 5 * time.Minute
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.RenewBefore <= 0 {
		o.RenewBefore = time.Minute
	}
	cache, err := lru.New[attachKey, attached](attachedMax)
	if err != nil {
		return nil, fmt.Errorf("authz: %w", err)
	}
	return &Attacher{o: o, cache: cache}, nil
}

// attachKey names everything an OkHttpResponse depends on: the handle
// (subject, client and scopes come with it) and the server record version
// (credential mode and static secret).
type attachKey struct {
	digest     string
	server     string
	srvVersion uint64
	// grantVersion and credVersion are set for brokered credentials: the
	// grant holds the IdP tokens, the account record the provider's.
	grantVersion, credVersion uint64
}

type attached struct {
	ok        *authv3.OkHttpResponse
	refreshAt time.Time
}

// Attach returns the upstream header mutations for an allowed request. The
// response is cached per handle and server until its JWT nears expiry and
// is shared between concurrent Checks: callers must not modify it.
func (a *Attacher) Attach(ctx context.Context, srv store.Server, h store.Handle, g store.Grant) (*authv3.OkHttpResponse, error) {
	return a.attach(ctx, srv, h, g, 0)
}

// attach is Attach with the version of the account a provider server's
// credential comes from.
func (a *Attacher) attach(ctx context.Context, srv store.Server, h store.Handle, g store.Grant, credVersion uint64) (*authv3.OkHttpResponse, error) {
	now := a.o.Now()
	key := attachKey{digest: h.Digest, server: srv.Name, srvVersion: srv.Version}
	brokered := srv.Credential == store.CredentialIdP || srv.Credential == store.CredentialExchange || srv.Credential == store.CredentialProvider
	if brokered {
		key.grantVersion, key.credVersion = g.Version, credVersion
	}
	if e, ok := a.cache.Get(key); ok && now.Before(e.refreshAt) {
		return e.ok, nil
	}
	ok := &authv3.OkHttpResponse{}
	set := func(k, v string) { ok.Headers = append(ok.Headers, hvo(header{k, v})) }
	// Static and none credentials do not expire; re-check them hourly so
	// an idle entry does not live forever.
	refreshAt := now.Add(time.Hour)
	switch srv.Credential {
	case store.CredentialJWT, "":
		tok, exp, err := a.mint(srv, h, g, now)
		if err != nil {
			return nil, err
		}
		set("authorization", "Bearer "+tok)
		// Re-mint once a fifth of the lifetime is left, so upstreams never
		// get a token that expires in flight.
		refreshAt = exp.Add(-exp.Sub(now) / 5)
	case store.CredentialStatic:
		if srv.StaticSecret == nil || srv.StaticHeader == "" {
			return nil, fmt.Errorf("server %q: static credential not configured", srv.Name)
		}
		secret, err := a.o.Opener.Open(*srv.StaticSecret, []byte("server/"+srv.Name))
		if err != nil {
			return nil, fmt.Errorf("server %q: open static secret: %w", srv.Name, err)
		}
		name := strings.ToLower(srv.StaticHeader)
		if name != "authorization" {
			ok.HeadersToRemove = append(ok.HeadersToRemove, "authorization")
		}
		set(name, string(secret))
	case store.CredentialNone:
		ok.HeadersToRemove = append(ok.HeadersToRemove, "authorization")
	case store.CredentialIdP, store.CredentialExchange, store.CredentialProvider:
		if a.o.Credentials == nil {
			return nil, fmt.Errorf("server %q: credential mode %q is not configured", srv.Name, srv.Credential)
		}
		cred, err := a.o.Credentials.Credential(ctx, srv, g)
		if err != nil {
			return nil, err
		}
		if cred.Header != "authorization" {
			ok.HeadersToRemove = append(ok.HeadersToRemove, "authorization")
		}
		set(cred.Header, cred.Value)
		if !cred.Expiry.IsZero() {
			// Dropped as the broker would renew it, so that the upstream
			// never gets a token about to expire.
			refreshAt = cred.Expiry.Add(-a.o.RenewBefore)
		}
		// A handle's response never outlives the handle.
		if h.ExpiresAt.Before(refreshAt) {
			refreshAt = h.ExpiresAt
		}
	default:
		return nil, fmt.Errorf("server %q: credential mode %q is not supported", srv.Name, srv.Credential)
	}
	// Identity headers are always overwritten so a client cannot forge them.
	if a.o.SubjectHeader != "" {
		set(a.o.SubjectHeader, g.Subject)
	}
	if a.o.ClientHeader != "" {
		set(a.o.ClientHeader, g.ClientID)
	}
	a.cache.Add(key, attached{ok: ok, refreshAt: refreshAt})
	return ok, nil
}

// identityOnly is the response for a request passed upstream without a
// credential (a provider server's unconnected user): the client's
// Authorization removed, identity headers set.
func (a *Attacher) identityOnly(g store.Grant) *authv3.OkHttpResponse {
	ok := &authv3.OkHttpResponse{HeadersToRemove: []string{"authorization"}}
	if a.o.SubjectHeader != "" {
		ok.Headers = append(ok.Headers, hvo(header{a.o.SubjectHeader, g.Subject}))
	}
	if a.o.ClientHeader != "" {
		ok.Headers = append(ok.Headers, hvo(header{a.o.ClientHeader, g.ClientID}))
	}
	return ok
}

// mint signs a JWT standing for handle h at server srv.
func (a *Attacher) mint(srv store.Server, h store.Handle, g store.Grant, now time.Time) (string, time.Time, error) {
	exp := now.Add(a.o.TTL)
	// A JWT never outlives the handle it stands for.
	if h.ExpiresAt.Before(exp) {
		exp = h.ExpiresAt
	}
	jti, _ := handle.New("")
	b := jwt.NewBuilder().
		Issuer(a.o.Issuer).
		Audience([]string{a.o.ResourceURL(srv.Name)}).
		Subject(g.Subject).
		IssuedAt(now).
		NotBefore(now.Add(-5*time.Second)).
		Expiration(exp).
		JwtID(jti[:22]).
		Claim("client_id", g.ClientID).
		Claim("act", map[string]any{"sub": g.ClientID})
	if len(h.Scopes) > 0 {
		b = b.Claim("scope", strings.Join(h.Scopes, " "))
	}
	if g.Email != "" {
		b = b.Claim("email", g.Email)
	}
	if len(g.Groups) > 0 {
		b = b.Claim("groups", g.Groups)
	}
	t, err := b.Build()
	if err != nil {
		return "", exp, fmt.Errorf("build upstream jwt: %w", err)
	}
	signed, err := a.o.Signer.Sign(t)
	if err != nil {
		return "", exp, fmt.Errorf("sign upstream jwt: %w", err)
	}
	return string(signed), exp, nil
}
