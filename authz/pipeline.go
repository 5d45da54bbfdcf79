package authz

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"time"

	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"

	"github.com/warden-mcp/warden/internal/bearer"
	"github.com/warden-mcp/warden/internal/handle"
	"github.com/warden-mcp/warden/internal/mcp"
	"github.com/warden-mcp/warden/internal/mcptask"
	"github.com/warden-mcp/warden/internal/serverspec"
	"github.com/warden-mcp/warden/internal/store"
	"github.com/warden-mcp/warden/policy"
)

// The pipeline. Like Authorino's, it evaluates phase by phase: each phase
// reads what the earlier ones put on the check and either passes it on
// (done false) or ends it with an outcome. The last phase, attach, always
// ends it; record (respond.go) then writes the audit event and turns the
// outcome into Envoy's answer.
var phases = [...]struct {
	name string
	run  func(*Service, context.Context, *check) (outcome, bool)
}{
	{"bind", (*Service).bind},
	{"identify", (*Service).identify},
	{"audience", (*Service).audience},
	{"classify", (*Service).classify},
	{"credential", (*Service).credential},
	{"decide", (*Service).decide},
	{"attach", (*Service).attach},
}

// check carries one request through the pipeline.
type check struct {
	start     time.Time
	http      *authv3.AttributeContext_HttpRequest
	headers   map[string]string
	requestID string
	// bind
	server string
	srv    store.Server
	// identify
	handle store.Handle
	grant  store.Grant
	// classify: needs is what of the input the policy reads
	req   *mcp.Request
	needs policy.Needs
	// decide: decisive is the message the decision is about (the denied
	// one in a denied batch, the first otherwise), for the audit event;
	// origin is the call that created the decisive message's task.
	decisive  int
	origin    *mcptask.Origin
	policyRev string
	// credential: the upstream credential's mode and state
	cred credState
	// inputs is the JSON array of the input documents decided on, in
	// order, for the audit event (recorded.go); redacted the argument
	// names left out of them.
	inputs   []byte
	redacted []string
	// reqRec is the whole request part for the record, built once (when
	// haveReq) if the policy does not read it.
	reqRec  policy.Request
	haveReq bool
}

func (s *Service) run(ctx context.Context, c *check, req *authv3.CheckRequest) outcome {
	c.http = req.GetAttributes().GetRequest().GetHttp()
	if c.http == nil {
		return badRequest("check request carries no HTTP attributes")
	}
	c.headers = c.http.GetHeaders()
	// Envoy's ext_authz sets the attribute id to its stream id; the
	// x-request-id header is what its access log and the upstream see.
	c.requestID = c.headers["x-request-id"]
	if c.requestID == "" {
		c.requestID = c.http.GetId()
	}
	c.server = req.GetAttributes().GetContextExtensions()["server"]
	for _, p := range phases {
		if o, done := p.run(s, ctx, c); done {
			return o
		}
	}
	// attach always ends the pipeline.
	return unavailable(failPanic, "pipeline ended without a decision")
}

// bind ties the request to this gateway and to one registered server:
// Host and Origin must be Warden's public ones (DNS rebinding), and the
// route (context_extensions.server) or, when allowed, the path names the
// server.
func (s *Service) bind(ctx context.Context, c *check) (outcome, bool) {
	if !s.hosts[normalHost(c.http.GetScheme(), c.http.GetHost())] {
		return forbidden("request Host "+strconv.Quote(c.http.GetHost())+" is not this gateway's", "request Host is not allowed"), true
	}
	if origin, ok := c.headers["origin"]; ok && !s.origins[normalOrigin(origin)] {
		return forbidden("request Origin "+strconv.Quote(origin)+" is not allowed", "request Origin is not allowed"), true
	}
	if c.server == "" && s.o.ServerFromPath {
		name, err := serverFromPath(c.http.GetPath())
		if err != nil {
			return badRequest(err.Error()), true
		}
		c.server = name
	}
	if c.server == "" {
		return outcome{status: http.StatusForbidden, reason: "route is not bound to an MCP server (missing context_extensions.server)", body: jsonError(nil, mcp.CodeInvalidRequest, "route is not bound to an MCP server")}, true
	}
	// The server is looked up before the caller so that a 401 challenge
	// can name the scopes it needs (MCP authorization: scope in
	// WWW-Authenticate).
	srv, err := s.o.Servers.Server(ctx, c.server)
	switch {
	case errors.Is(err, store.ErrNotFound):
		return outcome{status: http.StatusNotFound, reason: "MCP server " + strconv.Quote(c.server) + " is not registered", body: jsonError(nil, mcp.CodeInvalidRequest, "unknown MCP server")}, true
	case err != nil:
		return s.failed(c, failStore, fmt.Errorf("look up server: %w", err)), true
	}
	c.srv = srv
	return outcome{}, false
}

// identify resolves the bearer handle to its grant.
func (s *Service) identify(ctx context.Context, c *check) (outcome, bool) {
	raw, presented := bearer.Token(c.headers["authorization"])
	if raw == "" {
		reason := "no bearer token"
		if presented {
			reason = "malformed Authorization header"
		}
		return s.unauthorized(c, reason, presented), true
	}
	h, g, err := s.o.Resolver.ResolveHandle(ctx, handle.Digest(raw))
	switch {
	case errors.Is(err, store.ErrNotFound):
		return s.unauthorized(c, "unknown or expired token", true), true
	case err != nil:
		return s.failed(c, failStore, fmt.Errorf("resolve handle: %w", err)), true
	}
	c.handle, c.grant = h, g
	switch {
	case h.Kind != store.HandleAccess:
		return s.unauthorized(c, "token is not an access token", true), true
	case g.Revoked():
		return s.unauthorized(c, "grant revoked", true), true
	case g.Expired(s.o.Now()):
		return s.unauthorized(c, "grant expired", true), true
	}
	return outcome{}, false
}

// audience (RFC 8707): the handle must have been issued for this server,
// the grant must still cover it (revoking a server narrows grants without
// touching their handles), and the handle must carry the server's scopes.
func (s *Service) audience(_ context.Context, c *check) (outcome, bool) {
	if !contains(c.handle.Resources, s.o.ResourceURL(c.server)) || !contains(c.grant.Servers, c.server) {
		return s.unauthorized(c, "token audience does not include this server", true), true
	}
	for _, r := range c.srv.Scopes {
		if !contains(c.handle.Scopes, r) {
			return s.forbiddenScope(c, c.srv.Scopes), true
		}
	}
	return outcome{}, false
}

// classifyStatus is the HTTP status of each classification failure.
var classifyStatus = map[mcp.ErrorKind]int{
	mcp.ErrorMalformed: http.StatusBadRequest,
	mcp.ErrorInvalid:   http.StatusBadRequest,
	mcp.ErrorTooLarge:  http.StatusRequestEntityTooLarge,
	mcp.ErrorTruncated: http.StatusRequestEntityTooLarge,
	// MCP 2026-07-28 (basic/transports/streamable-http, "Server
	// Validation"; basic/versioning; basic/index "_meta"): all 400.
	mcp.ErrorHeaderMismatch:     http.StatusBadRequest,
	mcp.ErrorUnsupportedVersion: http.StatusBadRequest,
	mcp.ErrorInvalidParams:      http.StatusBadRequest,
}

// classify reads the JSON-RPC body and, for MCP 2026-07-28, checks that
// the request's MCP headers say what the body says. A mismatch ends the
// check here, before policy runs: what policy would decide on is not what
// a router reading the headers acts on.
func (s *Service) classify(ctx context.Context, c *check) (outcome, bool) {
	c.needs = s.o.Policy.Needs()
	in := mcp.Input{
		Method: c.http.GetMethod(),
		Header: func(k string) (string, bool) {
			v, ok := c.headers[k]
			return v, ok
		},
		Body:          body(c.http),
		Partial:       c.headers["x-envoy-auth-partial-body"] == "true",
		Limit:         s.o.MaxBodyBytes,
		SkipArguments: !c.needs.Arguments,
	}
	if th := s.o.ToolHeaders; th != nil && c.headers["mcp-protocol-version"] == mcp.Version20260728 {
		in.ParamHeaders = func(tool string) ([]mcp.ParamHeader, bool) { return th.ParamHeaders(c.server, tool) }
	}
	req, perr := mcp.Classify(in)
	if perr != nil {
		status, ok := classifyStatus[perr.Kind]
		if !ok {
			status = http.StatusBadRequest
		}
		return outcome{status: status, reason: "invalid MCP request: " + perr.Message, body: jsonErrorData(perr.ID, perr.Code, perr.Message, perr.Data)}, true
	}
	c.req = req
	if err := ctx.Err(); err != nil {
		return s.failed(c, failTimeout, err), true
	}
	return outcome{}, false
}

// decide evaluates policy for every message: a batch is allowed only if
// every message is. A message can need more than one decision, each of
// which must allow it:
//
//   - a task request (tasks/get, tasks/update, tasks/cancel, tasks/result)
//     is decided as the tools/call that created the task, with mcp.task
//     naming the task and the request's method; a task Warden did not
//     see created for this caller on this server is refused without
//     asking policy;
//   - subscriptions/listen is decided itself, then once for each resource
//     it subscribes to, as the resources/subscribe of that URI it
//     replaces, and once for each task it listens to, as that task's
//     call. So a policy about resources/subscribe or tools/call holds for
//     2026-07-28 clients unchanged.
func (s *Service) decide(ctx context.Context, c *check) (outcome, bool) {
	c.policyRev = s.o.Policy.Revision()
	in, err := s.input(c)
	if err != nil {
		return s.failed(c, failPolicy, err), true
	}
	// c.origin follows the message being decided (the decisive one of a
	// denial); an allow's event is about the first message.
	var first *mcptask.Origin
	for i := range c.req.Messages {
		m := &c.req.Messages[i]
		c.origin = nil
		fillMCP(&in.MCP, m, c.req, c.needs.ID)
		if m.Task != "" {
			origin, o, done := s.task(ctx, c, m, m.Task)
			if done {
				c.decisive = i
				return o, true
			}
			c.origin = &origin
			if i == 0 {
				first = c.origin
			}
			if err := asTaskCall(&in.MCP, origin, m.Task, m.Method, c.needs.Arguments); err != nil {
				return s.failed(c, failStore, err), true
			}
		}
		if o, done := s.decideOne(ctx, c, in, i); done {
			return o, true
		}
		if l := m.Listen; l != nil {
			for _, uri := range l.Resources {
				fillMCP(&in.MCP, m, c.req, c.needs.ID)
				in.MCP.Method, in.MCP.Resource = "resources/subscribe", uri
				if o, done := s.decideOne(ctx, c, in, i); done {
					return o, true
				}
			}
			for _, id := range l.Tasks {
				origin, o, done := s.task(ctx, c, m, id)
				if done {
					c.decisive = i
					return o, true
				}
				fillMCP(&in.MCP, m, c.req, c.needs.ID)
				if err := asTaskCall(&in.MCP, origin, id, m.Method, c.needs.Arguments); err != nil {
					return s.failed(c, failStore, err), true
				}
				if o, done := s.decideOne(ctx, c, in, i); done {
					return o, true
				}
			}
		}
	}
	c.origin = first
	return outcome{}, false
}

// decideOne asks policy about message i as in describes it.
func (s *Service) decideOne(ctx context.Context, c *check, in *policy.Input, i int) (outcome, bool) {
	if o, done := s.pinned(ctx, c, in, i); done {
		return o, true
	}
	// Recorded after pinning, which sets in.Tool: a replay sees what the
	// policy saw.
	if err := s.recordInput(c, in, &c.req.Messages[i]); err != nil {
		return s.failed(c, failPolicy, err), true
	}
	d, err := s.o.Policy.Decide(ctx, in)
	if err != nil {
		if ctx.Err() != nil {
			return s.failed(c, failTimeout, err), true
		}
		return s.failed(c, failPolicy, err), true
	}
	if d.Revision != "" {
		c.policyRev = d.Revision
	}
	if !d.Allow {
		c.decisive = i
		o := s.denied(c, i, d)
		o.byPolicy = true
		return o, true
	}
	return outcome{}, false
}

// task finds the call that created taskID and checks that this caller
// made it. Unknown and foreign tasks get the same answer, so that a
// caller learns nothing about tasks that are not its own.
func (s *Service) task(ctx context.Context, c *check, m *mcp.Message, taskID string) (mcptask.Origin, outcome, bool) {
	refuse := func() (mcptask.Origin, outcome, bool) {
		reason := "task is unknown: Warden saw no call of yours create it on this server"
		return mcptask.Origin{}, outcome{status: http.StatusForbidden, reason: reason, body: jsonError(m.ID, CodePolicyDenied, reason)}, true
	}
	if s.o.Tasks == nil {
		return refuse()
	}
	origin, err := s.o.Tasks.Lookup(ctx, c.server, taskID)
	switch {
	case errors.Is(err, mcptask.ErrNotFound):
		return refuse()
	case err != nil:
		return mcptask.Origin{}, s.failed(c, failStore, fmt.Errorf("look up task: %w", err)), true
	case !origin.Owns(c.grant.Subject, c.grant.ClientID):
		return refuse()
	}
	return origin, outcome{}, false
}

// asTaskCall makes dst describe the tools/call that created a task.
func asTaskCall(dst *policy.MCP, o mcptask.Origin, taskID, method string, withArgs bool) error {
	dst.Method, dst.Tool = "tools/call", o.Tool
	dst.Task = policy.Task{ID: taskID, Method: method}
	dst.Arguments, dst.ArgumentsJSON = nil, nil
	if len(o.Arguments) == 0 || string(o.Arguments) == "null" {
		return nil
	}
	dst.ArgumentsJSON = o.Arguments
	if !withArgs {
		return nil
	}
	dec := json.NewDecoder(bytes.NewReader(o.Arguments))
	dec.UseNumber()
	if err := dec.Decode(&dst.Arguments); err != nil {
		return fmt.Errorf("arguments of the call that created task: %w", err)
	}
	return nil
}

// attach sets the upstream credential: the allow.
func (s *Service) attach(ctx context.Context, c *check) (outcome, bool) {
	switch c.srv.Credential {
	case store.CredentialIdP, store.CredentialExchange, store.CredentialProvider:
		return s.attachBrokered(ctx, c)
	}
	ok, err := s.o.Attacher.Attach(ctx, c.srv, c.handle, c.grant)
	if err != nil {
		return s.failed(c, failCredential, err), true
	}
	return outcome{status: http.StatusOK, reason: "allowed", ok: ok}, true
}

// serverFromPath returns <name> of a /mcp/<name>[/...][?...] path, "" when
// the path is not of that shape, and an error for a path whose meaning an
// upstream could read differently: dot segments (/mcp/hr/../payroll) and
// percent-encoded '/', '\', '.' or '%' (/mcp/hr/..%2Fpayroll) anywhere
// in it, or a backslash.
func serverFromPath(p string) (string, error) {
	p, _, _ = strings.Cut(p, "?")
	if strings.ContainsRune(p, '\\') {
		return "", errors.New("request path holds a backslash")
	}
	for i := strings.IndexByte(p, '%'); i >= 0; i = strings.IndexByte(p, '%') {
		if len(p) >= i+3 {
			switch strings.ToLower(p[i+1 : i+3]) {
			case "2f", "5c", "2e", "25": // '/', '\', '.', and '%' (decoded twice by some)
				return "", errors.New("request path holds an encoded '/', '\\', '.' or '%'")
			}
		}
		p = p[:i] + p[i+1:] // look past this escape
	}
	for _, seg := range strings.Split(p, "/") {
		if seg == "." || seg == ".." {
			return "", errors.New("request path holds a dot segment")
		}
	}
	rest, ok := strings.CutPrefix(p, "/mcp/")
	if !ok {
		return "", nil
	}
	name, _, _ := strings.Cut(rest, "/")
	if !serverspec.ValidName(name) {
		return "", nil
	}
	return name, nil
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

// selectedHeaders are the request headers policy sees. Credentials and
// cookies are never exposed to policy (or to decision logs).
var selectedHeaders = []string{"user-agent", "origin", "content-type", "accept", "x-forwarded-for", "mcp-session-id", "mcp-protocol-version", "last-event-id"}

func (s *Service) input(c *check) (*policy.Input, error) {
	g, h := c.grant, c.handle
	key := callerKey{digest: h.Digest, handleVer: h.Version, grantVer: g.Version, srvVer: c.srv.Version, server: c.srv.Name, connected: c.cred.connected}
	caller, ok := s.callers.Get(key)
	if !ok {
		var err error
		caller, err = policy.NewCaller(
			policy.Subject{Sub: g.Subject, Email: g.Email, Name: g.Name, Groups: g.Groups, Claims: g.Claims},
			policy.Client{ID: g.ClientID, Name: g.ClientName, Kind: string(g.Kind)},
			policy.Server{Name: c.srv.Name, Labels: c.srv.Labels},
			policy.Grant{ID: g.ID, Scopes: h.Scopes, Servers: g.Servers},
			c.cred.policy(),
		)
		if err != nil {
			return nil, fmt.Errorf("policy input for grant %s: %w", g.ID, err)
		}
		s.callers.Add(key, caller)
	}
	in := &policy.Input{
		Version: policy.InputVersion,
		Caller:  caller,
		// What the policy cannot read is not built.
		Omitted: policy.Needs{Request: !c.needs.Request, ID: !c.needs.ID, Arguments: !c.needs.Arguments},
	}
	if c.needs.Request {
		in.Request = c.request()
	}
	return in, nil
}

// requestPart is the request part built once for the check's audit
// record and response metadata.
func (c *check) requestPart() policy.Request {
	if !c.haveReq {
		c.reqRec, c.haveReq = c.request(), true
	}
	return c.reqRec
}

// request is the input's request part.
func (c *check) request() policy.Request {
	hdrs := make(map[string]string, 4)
	for _, k := range selectedHeaders {
		if v, ok := c.headers[k]; ok {
			hdrs[k] = v
		}
	}
	return policy.Request{ID: c.requestID, Method: c.http.GetMethod(), Path: c.http.GetPath(), Host: c.http.GetHost(), Headers: hdrs, Time: c.start.UTC().Format(time.RFC3339Nano)}
}

func fillMCP(dst *policy.MCP, m *mcp.Message, r *mcp.Request, withID bool) {
	var id any
	if withID {
		id = decodeID(m.ID)
	}
	meta := m.Metadata()
	var subs policy.Subscriptions
	if l := m.Listen; l != nil {
		subs = policy.Subscriptions{ToolsListChanged: l.ToolsListChanged, PromptsListChanged: l.PromptsListChanged,
			ResourcesListChanged: l.ResourcesListChanged, Resources: l.Resources, Tasks: l.Tasks}
	}
	*dst = policy.MCP{
		Kind:            string(m.Kind),
		Method:          m.Method,
		ID:              id,
		Tool:            m.Tool,
		Arguments:       m.Arguments,
		ArgumentsJSON:   m.ArgumentsRaw,
		Resource:        m.Resource,
		Prompt:          m.Prompt,
		Session:         r.SessionID,
		ProtocolVersion: r.ProtocolVersion,
		Batch:           r.Batch,
		BatchSize:       len(r.Messages),
		ClientInfo:      policy.ClientInfo{Name: meta.ClientName, Version: meta.ClientVersion},
		LogLevel:        meta.LogLevel,
		Traceparent:     meta.Traceparent,
		Subscriptions:   subs,
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
