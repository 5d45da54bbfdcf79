// Package authz answers Envoy's ext_authz Check (envoy.service.auth.v3) for
// every MCP request: identify the caller by its handle, bind the handle to
// the route's MCP server, classify the JSON-RPC body, decide with policy,
// attach the upstream credential, and record one audit event.
//
// Check maps every outcome to a CheckResponse rather than a gRPC error, so
// Envoy always gets an answer it applies as written; failures inside Warden
// deny with 503 (fail closed).
package authz

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"strings"
	"time"

	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"

	"github.com/warden-mcp/warden/internal/bearer"
	"github.com/warden-mcp/warden/internal/config"
	"github.com/warden-mcp/warden/internal/handle"
	"github.com/warden-mcp/warden/internal/mcp"
	"github.com/warden-mcp/warden/internal/store"
	"github.com/warden-mcp/warden/policy"
)

// Resolver reads the handle and its grant in one consistent read.
type Resolver interface {
	ResolveHandle(ctx context.Context, digest string) (store.Handle, store.Grant, error)
}

// Servers looks up registered servers.
type Servers interface {
	Server(ctx context.Context, name string) (store.Server, error)
}

// Decider evaluates policy.
type Decider interface {
	Decide(ctx context.Context, in *policy.Input) (policy.Decision, error)
	Revision() string
}

// Recorder queues audit events; it blocks while the trail is saturated.
type Recorder interface {
	Record(ctx context.Context, ev store.AuditEvent) error
}

// Options configure a Service.
type Options struct {
	Resolver Resolver
	Servers  Servers
	Policy   Decider
	Audit    Recorder
	Attacher *Attacher
	// ResourceURL and ResourceMetadataURL map a server name to its
	// canonical resource URL and its RFC 9728 metadata URL.
	ResourceURL         func(server string) string
	ResourceMetadataURL func(server string) string
	MaxBodyBytes        int
	// Timeout bounds one Check; 0 means only the caller's deadline.
	Timeout time.Duration
	// ServerFromPath lets a check without context_extensions.server take
	// the server from a /mcp/<name> path, for proxies that cannot set
	// context extensions (Envoy Gateway SecurityPolicy, Istio CUSTOM).
	// Only safe when the proxy routes /mcp/<name> to that server alone.
	ServerFromPath bool
	Metrics        *Metrics
	Logger         *slog.Logger
	Now            func() time.Time
}

// Service implements authv3.AuthorizationServer.
type Service struct {
	authv3.UnimplementedAuthorizationServer
	o Options
	// callers caches the policy input parts fixed for one handle on one
	// server, keyed by the versions of every record they come from.
	callers *boundedMap[callerKey, *policy.Caller]
}

type callerKey struct {
	digest                      string
	handleVer, grantVer, srvVer uint64
	server                      string
}

// New checks opts and returns a Service.
func New(o Options) (*Service, error) {
	var missing []string
	for name, v := range map[string]any{"Resolver": o.Resolver, "Servers": o.Servers, "Policy": o.Policy, "Audit": o.Audit, "Attacher": o.Attacher, "ResourceURL": o.ResourceURL, "ResourceMetadataURL": o.ResourceMetadataURL} {
		if v == nil {
			missing = append(missing, name)
		}
	}
	if len(missing) > 0 {
		return nil, fmt.Errorf("authz: missing options %v", missing)
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.Metrics == nil {
		o.Metrics = NewMetrics(nil)
	}
	if o.MaxBodyBytes <= 0 {
		o.MaxBodyBytes = 1 << 20
	}
	return &Service{o: o, callers: newBoundedMap[callerKey, *policy.Caller](50_000)}, nil
}

// check carries one request through the pipeline.
type check struct {
	start     time.Time
	requestID string
	server    string
	srv       store.Server
	headers   map[string]string
	handle    store.Handle
	grant     store.Grant
	req       *mcp.Request
	// decisive is the message the decision is about (the denied one in a
	// denied batch, the first otherwise), for the audit event.
	decisive  int
	policyRev string
}

// Check answers one ext_authz request.
func (s *Service) Check(ctx context.Context, req *authv3.CheckRequest) (resp *authv3.CheckResponse, err error) {
	c := &check{start: s.o.Now()}
	if s.o.Timeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, s.o.Timeout)
		defer cancel()
	}
	defer func() {
		if p := recover(); p != nil {
			s.o.Metrics.Failures.panic.Inc()
			s.o.Logger.Error("authz: recovered panic in Check", "panic", fmt.Sprint(p), "request_id", c.requestID)
			resp = s.finish(ctx, c, internalError("internal error"))
			err = nil
		}
	}()
	return s.finish(ctx, c, s.decide(ctx, c, req)), nil
}

// outcome is the result of the pipeline before it becomes a CheckResponse.
type outcome struct {
	allow  bool
	ok     *authv3.OkHttpResponse // shared, read-only: the upstream mutations
	status int                    // HTTP status of a denial
	reason string
	// headers and body make up a denial.
	headers []header
	body    string
	// failure names the internal failure class when status is 503.
	failure string
}

type header struct{ key, value string }

func (s *Service) decide(ctx context.Context, c *check, req *authv3.CheckRequest) outcome {
	http := req.GetAttributes().GetRequest().GetHttp()
	if http == nil {
		return badRequest("check request carries no HTTP attributes")
	}
	c.headers = http.GetHeaders()
	c.requestID = http.GetId()
	if c.requestID == "" {
		c.requestID = c.headers["x-request-id"]
	}

	// Bind: the route names the server; without it nothing can be decided.
	c.server = req.GetAttributes().GetContextExtensions()["server"]
	if c.server == "" && s.o.ServerFromPath {
		c.server = serverFromPath(http.GetPath())
	}
	if c.server == "" {
		return outcome{status: 403, reason: "route is not bound to an MCP server (missing context_extensions.server)", body: jsonError(nil, -32600, "route is not bound to an MCP server")}
	}

	// The server is looked up first so that a 401 challenge can name the
	// scopes it needs (MCP authorization: scope in WWW-Authenticate).
	srv, err := s.o.Servers.Server(ctx, c.server)
	switch {
	case errors.Is(err, store.ErrNotFound):
		return outcome{status: 404, reason: "MCP server " + strconv.Quote(c.server) + " is not registered", body: jsonError(nil, -32600, "unknown MCP server")}
	case err != nil:
		return s.failed(c, "store", fmt.Errorf("look up server: %w", err))
	}
	c.srv = srv

	// Identify.
	raw, presented := bearer.Token(c.headers["authorization"])
	if raw == "" {
		reason := "no bearer token"
		if presented {
			reason = "malformed Authorization header"
		}
		return s.unauthorized(c, reason, presented)
	}
	h, g, err := s.o.Resolver.ResolveHandle(ctx, handle.Digest(raw))
	switch {
	case errors.Is(err, store.ErrNotFound):
		return s.unauthorized(c, "unknown or expired token", true)
	case err != nil:
		return s.failed(c, "store", fmt.Errorf("resolve handle: %w", err))
	}
	c.handle, c.grant = h, g
	now := s.o.Now()
	switch {
	case h.Kind != store.HandleAccess:
		return s.unauthorized(c, "token is not an access token", true)
	case g.Revoked():
		return s.unauthorized(c, "grant revoked", true)
	case g.Expired(now):
		return s.unauthorized(c, "grant expired", true)
	}

	// Audience (RFC 8707): the handle must have been issued for this
	// server, and the grant must still cover it (revoking a server narrows
	// grants without touching their handles).
	if !contains(h.Resources, s.o.ResourceURL(c.server)) || !contains(g.Servers, c.server) {
		return s.unauthorized(c, "token audience does not include this server", true)
	}
	if missing := missingScopes(srv.Scopes, h.Scopes); len(missing) > 0 {
		return s.forbiddenScope(c, srv.Scopes)
	}

	// Classify.
	mreq, perr := mcp.Classify(mcp.Input{
		Method:  http.GetMethod(),
		Header:  func(k string) string { return c.headers[k] },
		Body:    body(http),
		Partial: c.headers["x-envoy-auth-partial-body"] == "true",
		Limit:   s.o.MaxBodyBytes,
	})
	if perr != nil {
		status := 400
		if strings.Contains(perr.Message, "exceeds") || strings.Contains(perr.Message, "truncated") {
			status = 413
		}
		return outcome{status: status, reason: "invalid MCP request: " + perr.Message, body: jsonError(perr.ID, perr.Code, perr.Message)}
	}
	c.req = mreq
	if err := ctx.Err(); err != nil {
		return s.failed(c, "timeout", err)
	}

	// Decide: every message of a batch must be allowed.
	c.policyRev = s.o.Policy.Revision()
	in, err := s.input(c, http.GetMethod(), http.GetPath(), http.GetHost(), now)
	if err != nil {
		return s.failed(c, "policy", err)
	}
	for i := range mreq.Messages {
		fillMCP(&in.MCP, &mreq.Messages[i], mreq)
		d, err := s.o.Policy.Decide(ctx, in)
		if err != nil {
			if ctx.Err() != nil {
				return s.failed(c, "timeout", err)
			}
			return s.failed(c, "policy", err)
		}
		if d.Revision != "" {
			c.policyRev = d.Revision
		}
		if !d.Allow {
			c.decisive = i
			return policyDenied(mreq, i, d.Reason)
		}
	}

	// Attach the upstream credential.
	ok, err := s.o.Attacher.Attach(ctx, srv, h, g)
	if err != nil {
		return s.failed(c, "credential", err)
	}
	return outcome{allow: true, status: 200, reason: "allowed", ok: ok}
}

// serverFromPath returns <name> of a /mcp/<name>[/...][?...] path, or "".
func serverFromPath(p string) string {
	p, _, _ = strings.Cut(p, "?")
	rest, ok := strings.CutPrefix(p, "/mcp/")
	if !ok {
		return ""
	}
	name, _, _ := strings.Cut(rest, "/")
	if !config.ServerNamePattern.MatchString(name) {
		return ""
	}
	return name
}

func body(h *authv3.AttributeContext_HttpRequest) []byte {
	if b := h.GetRawBody(); len(b) > 0 {
		return b
	}
	return []byte(h.GetBody())
}

func contains(list []string, s string) bool {
	for _, v := range list {
		if v == s {
			return true
		}
	}
	return false
}

func missingScopes(required, have []string) []string {
	var missing []string
	for _, r := range required {
		if !contains(have, r) {
			missing = append(missing, r)
		}
	}
	return missing
}

// selectedHeaders are the request headers policy sees. Credentials and
// cookies are never exposed to policy (or to decision logs).
var selectedHeaders = []string{"user-agent", "origin", "content-type", "accept", "x-forwarded-for", "mcp-session-id", "mcp-protocol-version", "last-event-id"}

func (s *Service) input(c *check, method, path, host string, now time.Time) (*policy.Input, error) {
	g, h := c.grant, c.handle
	key := callerKey{digest: h.Digest, handleVer: h.Version, grantVer: g.Version, srvVer: c.srv.Version, server: c.srv.Name}
	caller, ok := s.callers.get(key)
	if !ok {
		var err error
		caller, err = policy.NewCaller(
			policy.Subject{Sub: g.Subject, Email: g.Email, Name: g.Name, Groups: g.Groups, Claims: g.Claims},
			policy.Client{ID: g.ClientID, Name: g.ClientName, Kind: string(g.Kind)},
			policy.Server{Name: c.srv.Name, Labels: c.srv.Labels},
			policy.Grant{ID: g.ID, Scopes: h.Scopes, Servers: g.Servers},
		)
		if err != nil {
			return nil, fmt.Errorf("policy input for grant %s: %w", g.ID, err)
		}
		s.callers.put(key, caller)
	}
	hdrs := make(map[string]string, 4)
	for _, k := range selectedHeaders {
		if v, ok := c.headers[k]; ok {
			hdrs[k] = v
		}
	}
	return &policy.Input{
		Version: policy.InputVersion,
		Caller:  caller,
		Request: policy.Request{ID: c.requestID, Method: method, Path: path, Host: host, Headers: hdrs, Time: now.UTC().Format(time.RFC3339Nano)},
	}, nil
}

func fillMCP(dst *policy.MCP, m *mcp.Message, r *mcp.Request) {
	*dst = policy.MCP{
		Kind:            string(m.Kind),
		Method:          m.Method,
		ID:              decodeID(m.ID),
		Tool:            m.Tool,
		Arguments:       m.Arguments,
		ArgumentsJSON:   m.ArgumentsRaw,
		Resource:        m.Resource,
		Prompt:          m.Prompt,
		Session:         r.SessionID,
		ProtocolVersion: r.ProtocolVersion,
		Batch:           r.Batch,
		BatchSize:       len(r.Messages),
	}
}

// decodeID turns a raw JSON-RPC id into a string or a json.Number.
func decodeID(raw json.RawMessage) any {
	if len(raw) == 0 {
		return nil
	}
	if raw[0] == '"' {
		var s string
		if json.Unmarshal(raw, &s) == nil {
			return s
		}
		return nil
	}
	return json.Number(raw)
}
