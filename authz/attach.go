package authz

import (
	"context"
	"fmt"
	"strings"
	"time"

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
	Now           func() time.Time
}

// Attacher turns a decision into the header mutations Envoy applies on the
// way upstream: the client's Authorization is always removed (no token
// passthrough) and the server's own credential is set.
type Attacher struct {
	o     AttacherOptions
	cache *boundedMap[string, cachedJWT]
}

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
	return &Attacher{o: o, cache: newBoundedMap[string, cachedJWT](100_000)}, nil
}

type mutations struct {
	set    []header
	remove []string
}

// Attach computes the upstream header mutations for an allowed request.
func (a *Attacher) Attach(ctx context.Context, srv store.Server, h store.Handle, g store.Grant) (mutations, error) {
	var m mutations
	switch srv.Credential {
	case store.CredentialJWT, "":
		tok, err := a.jwt(srv, h, g)
		if err != nil {
			return m, err
		}
		m.set = append(m.set, header{"authorization", "Bearer " + tok})
	case store.CredentialStatic:
		if srv.StaticSecret == nil || srv.StaticHeader == "" {
			return m, fmt.Errorf("server %q: static credential not configured", srv.Name)
		}
		secret, err := a.o.Opener.Open(*srv.StaticSecret, []byte("server/"+srv.Name))
		if err != nil {
			return m, fmt.Errorf("server %q: open static secret: %w", srv.Name, err)
		}
		name := strings.ToLower(srv.StaticHeader)
		if name != "authorization" {
			m.remove = append(m.remove, "authorization")
		}
		m.set = append(m.set, header{name, string(secret)})
	case store.CredentialNone:
		m.remove = append(m.remove, "authorization")
	default:
		return m, fmt.Errorf("server %q: credential mode %q is not supported", srv.Name, srv.Credential)
	}
	// Identity headers are always overwritten so a client cannot forge them.
	if a.o.SubjectHeader != "" {
		m.set = append(m.set, header{a.o.SubjectHeader, g.Subject})
	}
	if a.o.ClientHeader != "" {
		m.set = append(m.set, header{a.o.ClientHeader, g.ClientID})
	}
	return m, nil
}

// jwt returns a cached JWT for this handle and server, minting a new one
// when none is cached or the cached one is within its refresh margin.
func (a *Attacher) jwt(srv store.Server, h store.Handle, g store.Grant) (string, error) {
	now := a.o.Now()
	key := h.Digest + "\x00" + srv.Name
	if e, ok := a.cache.get(key); ok && now.Before(e.refreshAt) {
		return e.token, nil
	}
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
		return "", fmt.Errorf("build upstream jwt: %w", err)
	}
	signed, err := a.o.Signer.Sign(t)
	if err != nil {
		return "", fmt.Errorf("sign upstream jwt: %w", err)
	}
	// Refresh once a fifth of the lifetime is left, so upstreams never get
	// a token that expires in flight.
	refreshAt := exp.Add(-exp.Sub(now) / 5)
	a.cache.put(key, cachedJWT{token: string(signed), refreshAt: refreshAt})
	return string(signed), nil
}

type cachedJWT struct {
	token     string
	refreshAt time.Time
}
