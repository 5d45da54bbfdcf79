package authz

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strings"

	"github.com/warden-mcp/warden/internal/mcp"
	"github.com/warden-mcp/warden/internal/store"
	"github.com/warden-mcp/warden/internal/upstream"
	"github.com/warden-mcp/warden/policy"
)

// Credentials produces the upstream credential of the idp, exchange and
// provider modes (internal/upstream.Broker).
type Credentials interface {
	Credential(ctx context.Context, srv store.Server, g store.Grant) (upstream.Credential, error)
}

// Accounts reads users' connected accounts at providers.
type Accounts interface {
	GetAccount(ctx context.Context, subject, provider string) (store.Account, error)
}

// ConnectLinks makes the connect URL a URL elicitation names: single use,
// short-lived, bound to the subject (oauth.Server.ConnectURL).
type ConnectLinks interface {
	ConnectURL(ctx context.Context, subject, provider string) (string, error)
}

// CodeURLElicitationRequired is MCP 2025-11-25's URLElicitationRequiredError.
const CodeURLElicitationRequired = -32042

// credState is what the credential phase learned.
type credState struct {
	mode      store.CredentialMode
	connected bool
	// version is the connected account's record version: part of the
	// cached upstream response's key, so a refreshed, reconnected or
	// revoked account is never served from the cache.
	version uint64
}

// credential finds out whether the caller has the upstream credential the
// server needs, for policy (input.credential) and for attach.
func (s *Service) credential(ctx context.Context, c *check) (outcome, bool) {
	c.cred = credState{mode: c.srv.Credential, connected: true}
	if c.cred.mode == "" {
		c.cred.mode = store.CredentialJWT
	}
	if c.srv.Credential != store.CredentialProvider {
		return outcome{}, false
	}
	if s.o.Accounts == nil {
		return s.failed(c, failCredential, errors.New("provider credential mode without an account store")), true
	}
	a, err := s.o.Accounts.GetAccount(ctx, c.grant.Subject, c.srv.Provider)
	switch {
	case errors.Is(err, store.ErrNotFound):
		c.cred.connected = false
	case err != nil:
		return s.failed(c, failStore, fmt.Errorf("look up account: %w", err)), true
	default:
		c.cred.version = a.Version
	}
	return outcome{}, false
}

func (c *credState) policy() policy.Credential {
	return policy.Credential{Mode: string(c.mode), Connected: c.connected}
}

// needsCredential reports whether the request cannot be served without
// the user's account: tools/call, resources/read and prompts/get by
// default (so initialize, server/discover and lists keep working and the
// client learns the tools first), every request with elicit_all.
func needsCredential(srv store.Server, r *mcp.Request) bool {
	switch srv.Unconnected {
	case store.UnconnectedPass:
		return false
	case store.UnconnectedElicitAll:
		return true
	}
	for _, m := range r.Messages {
		switch m.Method {
		case "tools/call", "resources/read", "prompts/get":
			return true
		}
		if m.Task != "" {
			return true
		}
	}
	return false
}

// attachBrokered attaches the credential of the idp, exchange and provider
// modes, or answers for the upstream when there is none to attach.
func (s *Service) attachBrokered(ctx context.Context, c *check) (outcome, bool) {
	if c.srv.Credential == store.CredentialProvider && !c.cred.connected {
		return s.unconnected(ctx, c)
	}
	ok, err := s.o.Attacher.attach(ctx, c.srv, c.handle, c.grant, c.cred.version)
	var re *upstream.RefusedError
	switch {
	case err == nil:
		return outcome{status: http.StatusOK, reason: "allowed", ok: ok}, true
	case errors.Is(err, upstream.ErrNotConnected):
		// The account went away (its refresh was refused): connect again.
		c.cred.connected = false
		return s.unconnected(ctx, c)
	case errors.Is(err, upstream.ErrRefused):
		return s.unauthorized(c, "identity provider refused to renew the upstream credential: sign in again", true), true
	case errors.As(err, &re):
		if re.Reauthenticate() {
			return s.unauthorized(c, "upstream token exchange refused: "+re.Code+": sign in again", true), true
		}
		reason := "upstream token exchange refused by the identity provider: " + re.Code
		var id json.RawMessage
		if c.req != nil && len(c.req.Messages) > 0 {
			id = c.req.Messages[0].ID
		}
		return outcome{status: http.StatusForbidden, reason: reason, body: jsonError(id, CodePolicyDenied, reason)}, true
	}
	return s.failed(c, failCredential, err), true
}

// unconnected serves a request from a user without an account at the
// server's provider: upstream with identity headers only, or a URL
// elicitation naming the connect page.
func (s *Service) unconnected(ctx context.Context, c *check) (outcome, bool) {
	if c.req == nil || !needsCredential(c.srv, c.req) {
		return outcome{status: http.StatusOK, reason: "allowed without upstream account", ok: s.o.Attacher.identityOnly(c.grant)}, true
	}
	if s.o.Connect == nil {
		return s.failed(c, failCredential, errors.New("no connect links configured for provider servers")), true
	}
	link, err := s.o.Connect.ConnectURL(ctx, c.grant.Subject, c.srv.Provider)
	if err != nil {
		return s.failed(c, failStore, fmt.Errorf("connect link: %w", err)), true
	}
	return elicitURL(c.req, c.srv.Provider, link), true
}

// elicitURL is Warden's answer, for the upstream, to a request that needs
// an account the user has not connected, in the form the request's
// protocol version expects. Every form is an HTTP 200 JSON-RPC response
// (a denied response as far as Envoy is concerned: nothing reaches the
// upstream), which clients read as the request's answer.
func elicitURL(r *mcp.Request, provider, link string) outcome {
	msg := "Connect your " + provider + " account to continue: open " + link + " and then retry."
	o := outcome{status: http.StatusOK, answered: true, reason: "upstream account at " + provider + " not connected: URL elicitation"}
	one := func(id json.RawMessage) string {
		switch {
		case r.Modern:
			// 2026-07-28 (basic/patterns/mrtr, client/elicitation): an
			// InputRequiredResult holding a URL-mode elicitation/create.
			res := map[string]any{"resultType": "input_required", "inputRequests": map[string]any{
				"warden_connect_" + provider: map[string]any{"method": "elicitation/create", "params": map[string]any{
					"mode": "url", "url": link, "message": "Connect your " + provider + " account to continue.",
				}},
			}}
			return jsonResult(id, res)
		case r.ProtocolVersion >= "2025-11-25":
			// 2025-11-25 client/elicitation: URLElicitationRequiredError.
			return jsonErrorData(id, CodeURLElicitationRequired, "This request requires connecting your "+provider+" account.", map[string]any{
				"elicitations": []map[string]any{{"mode": "url", "elicitationId": elicitationID(link), "url": link, "message": "Connect your " + provider + " account to continue."}},
			})
		}
		return jsonError(id, CodePolicyDenied, msg)
	}
	if !r.Batch {
		var id json.RawMessage
		if len(r.Messages) > 0 {
			id = r.Messages[0].ID
		}
		o.body = one(id)
		return o
	}
	var parts []string
	for _, m := range r.Messages {
		if m.Kind == mcp.KindRequest {
			parts = append(parts, one(m.ID))
		}
	}
	o.body = "[" + strings.Join(parts, ",") + "]"
	return o
}

// elicitationID names the elicitation after its link (the link is what
// the user completes), without repeating the link's id.
func elicitationID(link string) string {
	sum := sha256.Sum256([]byte(link))
	return "warden-" + hex.EncodeToString(sum[:12])
}

func jsonResult(id json.RawMessage, result any) string {
	if len(id) == 0 {
		id = json.RawMessage("null")
	}
	b, _ := json.Marshal(struct {
		JSONRPC string          `json:"jsonrpc"`
		ID      json.RawMessage `json:"id"`
		Result  any             `json:"result"`
	}{"2.0", id, result})
	return string(b)
}
