package store

import (
	"encoding/json"
	"time"
)

// Client is a registered OAuth client: dynamically registered (RFC 7591),
// resolved from a Client ID Metadata Document, or created by an operator.
type Client struct {
	ID   string `json:"id"`
	Name string `json:"name,omitempty"`
	// SecretHash is the SHA-256 of the client secret; empty for public
	// clients. Secrets are generated with 256 bits of entropy, so a fast hash
	// is enough and comparisons are constant-time.
	SecretHash              []byte   `json:"secret_hash,omitempty"`
	RedirectURIs            []string `json:"redirect_uris,omitempty"`
	GrantTypes              []string `json:"grant_types,omitempty"`
	ResponseTypes           []string `json:"response_types,omitempty"`
	TokenEndpointAuthMethod string   `json:"token_endpoint_auth_method,omitempty"`
	Scope                   string   `json:"scope,omitempty"`
	ClientURI               string   `json:"client_uri,omitempty"`
	LogoURI                 string   `json:"logo_uri,omitempty"`
	Kind                    Kind     `json:"kind,omitempty"`
	Source                  string   `json:"source,omitempty"` // dcr, cimd, config, admin
	// RegistrationTokenHash is the SHA-256 of the RFC 7592 registration
	// access token handed to the registering party.
	RegistrationTokenHash []byte `json:"registration_token_hash,omitempty"`
	Metadata              []byte `json:"metadata,omitempty"` // raw document for CIMD clients
	// ServiceAccess is what an administrator granted this client for the
	// client_credentials grant; nil means the client cannot act as itself.
	ServiceAccess *ServiceAccess `json:"service_access,omitempty"`
	CreatedAt     time.Time      `json:"created_at"`
	ExpiresAt     time.Time      `json:"expires_at,omitempty"`
	Version       uint64         `json:"version"`
}

// ServiceAccess bounds the tokens a service client obtains with client
// credentials: the servers and scopes come from here, never from the
// client's request or registration.
type ServiceAccess struct {
	Servers   []string  `json:"servers"`
	Scopes    []string  `json:"scopes,omitempty"`
	Groups    []string  `json:"groups,omitempty"`
	GrantedBy string    `json:"granted_by"`
	GrantedAt time.Time `json:"granted_at"`
}

// Kind tells human-delegated access apart from service and agent identities.
type Kind string

const (
	KindUser    Kind = "user"
	KindService Kind = "service"
)

// Grant is one authorization of a subject for a client: everything a handle
// resolves to. Revoking the grant cuts every handle issued from it.
type Grant struct {
	ID       string         `json:"id"`
	Subject  string         `json:"subject"`
	Email    string         `json:"email,omitempty"`
	Name     string         `json:"name,omitempty"`
	Groups   []string       `json:"groups,omitempty"`
	Claims   map[string]any `json:"claims,omitempty"`
	ClientID string         `json:"client_id"`
	// ClientName snapshots the client's display name for policy and audit,
	// so the hot path needs no client lookup.
	ClientName string   `json:"client_name,omitempty"`
	Kind       Kind     `json:"kind"`
	Scopes     []string `json:"scopes,omitempty"`
	// Resources are the canonical resource URLs (RFC 8707) the grant is
	// bound to and Servers the registered server names they resolve to.
	Resources []string `json:"resources,omitempty"`
	Servers   []string `json:"servers,omitempty"`
	// Connector names the IdP connector the user signed in through
	// ("oidc", "static"); empty for service grants.
	Connector string `json:"connector,omitempty"`
	// Upstream holds sealed credentials obtained for this grant, such as the
	// IdP's tokens, keyed by purpose.
	Upstream     map[string]Sealed `json:"upstream,omitempty"`
	CreatedAt    time.Time         `json:"created_at"`
	ExpiresAt    time.Time         `json:"expires_at,omitempty"`
	RevokedAt    time.Time         `json:"revoked_at,omitempty"`
	RevokedBy    string            `json:"revoked_by,omitempty"`
	RevokeReason string            `json:"revoke_reason,omitempty"`
	Version      uint64            `json:"version"`
}

// Revoked reports whether the grant was revoked.
func (g Grant) Revoked() bool { return !g.RevokedAt.IsZero() }

// Expired reports whether the grant has expired at now.
func (g Grant) Expired(now time.Time) bool {
	return !g.ExpiresAt.IsZero() && !now.Before(g.ExpiresAt)
}

// HandleKind names what a handle may be used for.
type HandleKind string

const (
	HandleAccess  HandleKind = "access"
	HandleRefresh HandleKind = "refresh"
	HandleCode    HandleKind = "code"
)

// Handle is the stored side of an opaque value a client holds. Only the
// digest identifies it.
type Handle struct {
	Digest    string     `json:"digest"`
	Kind      HandleKind `json:"kind"`
	GrantID   string     `json:"grant_id"`
	ClientID  string     `json:"client_id"`
	Resources []string   `json:"resources,omitempty"`
	Scopes    []string   `json:"scopes,omitempty"`
	IssuedAt  time.Time  `json:"issued_at"`
	ExpiresAt time.Time  `json:"expires_at"`
	// UsedAt is set when a single-use handle (code, rotated refresh token)
	// is consumed; a second use is a replay.
	UsedAt time.Time `json:"used_at,omitempty"`
	// Authorization code binding (RFC 7636, RFC 6749 4.1.3).
	RedirectURI   string `json:"redirect_uri,omitempty"`
	CodeChallenge string `json:"code_challenge,omitempty"`
	Version       uint64 `json:"version"`
}

// CredentialMode is how Warden authenticates to an upstream MCP server.
type CredentialMode string

const (
	CredentialJWT      CredentialMode = "jwt"
	CredentialStatic   CredentialMode = "static"
	CredentialNone     CredentialMode = "none"
	CredentialIdP      CredentialMode = "idp"
	CredentialExchange CredentialMode = "exchange"
	CredentialProvider CredentialMode = "provider"
)

// Server is a registered MCP server.
type Server struct {
	Name       string         `json:"name"`
	URL        string         `json:"url"`
	Credential CredentialMode `json:"credential"`
	Scopes     []string       `json:"scopes,omitempty"`
	// StepUpScopes are scopes the server's policy may ask a call for
	// (step-up: a 403 insufficient_scope challenge): never required to
	// reach the server, but a client may be granted them for it.
	StepUpScopes []string          `json:"step_up_scopes,omitempty"`
	Labels       map[string]string `json:"labels,omitempty"`
	Description  string            `json:"description,omitempty"`
	// Pinning is the tool pinning mode, "warn" (or empty) or "block";
	// PinNewTools what block mode does with a new tool, "approve" (or
	// empty) or "wait" (internal/toolpin).
	Pinning     string `json:"pinning,omitempty"`
	PinNewTools string `json:"pin_new_tools,omitempty"`
	// StaticHeader and StaticSecret carry the credential for "static" mode:
	// the header name and its sealed value.
	StaticHeader string  `json:"static_header,omitempty"`
	StaticSecret *Sealed `json:"static_secret,omitempty"`
	// HTTP2 selects HTTP/2 to the upstream instead of HTTP/1.1.
	HTTP2          bool          `json:"http2,omitempty"`
	ConnectTimeout time.Duration `json:"connect_timeout,omitempty"`
	IdleTimeout    time.Duration `json:"idle_timeout,omitempty"`
	RequestTimeout time.Duration `json:"request_timeout,omitempty"`
	// IdPAudience and IdPScopes are what an "exchange" server's token is
	// requested for at the IdP (RFC 8693 audience and scope).
	IdPAudience string   `json:"idp_audience,omitempty"`
	IdPScopes   []string `json:"idp_scopes,omitempty"`
	// Provider names the provider of a "provider" server.
	Provider string `json:"provider,omitempty"`
	// Unconnected is what a "provider" server does with a request from a
	// user who has not connected an account: UnconnectedElicit (the
	// default), UnconnectedElicitAll or UnconnectedPass.
	Unconnected string `json:"unconnected,omitempty"`
	// Source is "api" for servers managed through the admin API and
	// "config" for servers reconciled from the config file.
	Source    string    `json:"source,omitempty"`
	CreatedAt time.Time `json:"created_at"`
	UpdatedAt time.Time `json:"updated_at"`
	Version   uint64    `json:"version"`
}

// Sealed is ciphertext produced by internal/seal: AES-256-GCM under the key
// named by KeyID.
type Sealed struct {
	KeyID      string `json:"kid"`
	Nonce      []byte `json:"nonce"`
	Ciphertext []byte `json:"ct"`
}

// Consent records that a user approved a client for scopes and servers, so
// the consent page is not shown again for the same or a narrower request.
type Consent struct {
	Subject   string    `json:"subject"`
	ClientID  string    `json:"client_id"`
	Scopes    []string  `json:"scopes,omitempty"`
	Servers   []string  `json:"servers,omitempty"`
	GrantedAt time.Time `json:"granted_at"`
}

// AuditEvent is one link of the tamper-evident trail. Hash covers PrevHash
// and the event's canonical encoding (computed by internal/audit).
//
// Input is, for a decision the policy made, the JSON array of the input
// documents it decided on (one per evaluation, in order; a denial's last
// is the denied one), for policy replay; Redacted names the tool arguments
// replaced in them (policy.AppendRecord).
type AuditEvent struct {
	Seq       uint64         `json:"seq"`
	Time      time.Time      `json:"time"`
	Type      string         `json:"type"` // decision, revoke, token, admin, ...
	RequestID string         `json:"request_id,omitempty"`
	Actor     string         `json:"actor,omitempty"` // who did it (admin actions)
	Subject   string         `json:"subject,omitempty"`
	ClientID  string         `json:"client_id,omitempty"`
	Kind      Kind           `json:"kind,omitempty"`
	Server    string         `json:"server,omitempty"`
	Method    string         `json:"method,omitempty"`
	Tool      string         `json:"tool,omitempty"`
	Decision  string         `json:"decision,omitempty"` // allow, deny
	Status    int            `json:"status,omitempty"`
	Reason    string         `json:"reason,omitempty"`
	PolicyRev string         `json:"policy_revision,omitempty"`
	LatencyUS int64          `json:"latency_us,omitempty"`
	GrantID   string         `json:"grant_id,omitempty"`
	Details   map[string]any `json:"details,omitempty"`
	Redacted  []string       `json:"redacted,omitempty"` // arguments redacted in Input
	Input     RawJSON        `json:"input,omitempty"`    // decision inputs, see below; must stay before PrevHash
	PrevHash  string         `json:"prev_hash"`
	Hash      string         `json:"hash"`
}

// RawJSON is JSON kept as encoded (json.RawMessage).
type RawJSON = json.RawMessage

// LastUse is when a grant was last used (an allowed Check) on a server.
// Warden tracks uses in memory and writes them in batches, so a LastUse is
// at most one flush interval old.
type LastUse struct {
	GrantID string    `json:"grant_id"`
	Server  string    `json:"server"`
	At      time.Time `json:"at"`
}

// AuditCheckpoint vouches for the chain up to Seq: the event at Seq had
// Hash, and Count events (Seq 1 to Seq) came before and with it. JWS is
// the same statement signed with Warden's signing key (a compact JWT,
// internal/audit), so a verifier can start from it once the events it
// covers are pruned.
type AuditCheckpoint struct {
	Seq   uint64    `json:"seq"`
	Hash  string    `json:"hash"`
	Count uint64    `json:"count"`
	Time  time.Time `json:"time"`
	JWS   string    `json:"jws"`
}
