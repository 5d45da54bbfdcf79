package authz

import (
	"context"
	"encoding/json"
	"net/http"
	"strings"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	typev3 "github.com/envoyproxy/go-control-plane/envoy/type/v3"
	rpcstatus "google.golang.org/genproto/googleapis/rpc/status"
	"google.golang.org/grpc/codes"

	"github.com/warden-mcp/warden/internal/mcp"
	"github.com/warden-mcp/warden/internal/store"
	"github.com/warden-mcp/warden/policy"
)

// CodePolicyDenied is the JSON-RPC error code of a policy denial: in the
// implementation-defined server error range of JSON-RPC 2.0.
const CodePolicyDenied = -32003

// outcome is the result of the pipeline before it becomes a CheckResponse.
type outcome struct {
	// status is the HTTP status: http.StatusOK for an allow, the denial's
	// status otherwise.
	status int
	ok     *authv3.OkHttpResponse // shared, read-only: the upstream mutations
	reason string
	// headers and body make up a denial.
	headers []header
	body    string
	// failure names the internal failure when status is 503.
	failure failureClass
	// answered marks a 200 that Warden answers itself, for the upstream
	// (a URL elicitation): a denied response as far as Envoy is concerned.
	answered bool
	// byPolicy marks a denial the policy decided (its inputs are
	// recorded for replay, as an allow's are).
	byPolicy bool
}

func (o outcome) allowed() bool { return o.status == http.StatusOK && !o.answered }

// failureClass names why Warden could not decide; each is a label value of
// warden_authz_failures_total.
type failureClass string

const (
	failStore      failureClass = "store"
	failPolicy     failureClass = "policy"
	failTimeout    failureClass = "timeout"
	failPanic      failureClass = "panic"
	failAudit      failureClass = "audit"
	failCredential failureClass = "credential"
)

type header struct{ key, value string }

func (s *Service) unauthorized(c *check, reason string, presented bool) outcome {
	// RFC 6750 section 3 and RFC 9728 section 5.1: the challenge names the
	// metadata document so the client can discover the authorization server.
	var b strings.Builder
	b.WriteString(`Bearer resource_metadata="`)
	b.WriteString(s.o.ResourceMetadataURL(c.server))
	b.WriteString(`"`)
	if len(c.srv.Scopes) > 0 {
		b.WriteString(`, scope="` + strings.Join(c.srv.Scopes, " ") + `"`)
	}
	desc := "authentication required"
	if presented {
		// RFC 6750 section 3.1: invalid_token only when a token was sent.
		b.WriteString(`, error="invalid_token", error_description="` + reason + `"`)
		desc = reason
	}
	return outcome{
		status:  http.StatusUnauthorized,
		reason:  reason,
		headers: []header{{"www-authenticate", b.String()}, {"content-type", "application/json"}, {"cache-control", "no-store"}},
		body:    oauthError("invalid_token", desc),
	}
}

func (s *Service) forbiddenScope(c *check, required []string) outcome {
	scope := strings.Join(required, " ")
	return outcome{
		status: http.StatusForbidden,
		reason: "insufficient scope: requires " + scope,
		headers: []header{
			{"www-authenticate", `Bearer error="insufficient_scope", scope="` + scope + `", resource_metadata="` + s.o.ResourceMetadataURL(c.server) + `"`},
			{"content-type", "application/json"},
		},
		body: oauthError("insufficient_scope", "this server requires scope "+scope),
	}
}

func (s *Service) failed(c *check, class failureClass, err error) outcome {
	s.o.Metrics.failure(class)
	s.o.Logger.Error("authz: failing closed", "class", string(class), "err", err, "request_id", c.requestID, "server", c.server)
	return unavailable(class, "authorization temporarily unavailable")
}

// unavailable is the fail-closed answer: Warden could not decide.
func unavailable(class failureClass, msg string) outcome {
	return outcome{status: http.StatusServiceUnavailable, reason: msg, failure: class, body: jsonError(nil, codeInternalError, msg)}
}

// codeInternalError is JSON-RPC 2.0's internal error.
const codeInternalError = -32603

func badRequest(msg string) outcome {
	return outcome{status: http.StatusBadRequest, reason: msg, body: jsonError(nil, mcp.CodeInvalidRequest, msg)}
}

// forbidden refuses a request for what it is rather than who sent it.
func forbidden(reason, msg string) outcome {
	return outcome{status: http.StatusForbidden, reason: reason, body: jsonError(nil, mcp.CodeInvalidRequest, msg)}
}

// policyDenied answers a denied message with a JSON-RPC error carrying its
// id and the policy's reason, so the client and its model see why. A denied
// batch answers every request of the batch (the others were not executed).
func policyDenied(r *mcp.Request, i int, reason string) outcome {
	if reason == "" {
		reason = "denied by policy"
	}
	o := outcome{status: http.StatusForbidden, reason: reason}
	if !r.Batch {
		o.body = jsonError(r.Messages[i].ID, CodePolicyDenied, reason)
		return o
	}
	var parts []string
	for j, m := range r.Messages {
		if m.Kind != mcp.KindRequest {
			continue
		}
		msg := reason
		if j != i {
			msg = "batch refused: another message in it was denied (" + reason + ")"
		}
		parts = append(parts, jsonError(m.ID, CodePolicyDenied, msg))
	}
	if len(parts) == 0 {
		o.body = jsonError(nil, CodePolicyDenied, reason)
	} else {
		o.body = "[" + strings.Join(parts, ",") + "]"
	}
	return o
}

type rpcError struct {
	JSONRPC string          `json:"jsonrpc"`
	ID      json.RawMessage `json:"id"`
	Error   struct {
		Code    int    `json:"code"`
		Message string `json:"message"`
		Data    any    `json:"data,omitempty"`
	} `json:"error"`
}

func jsonError(id json.RawMessage, code int, msg string) string {
	return jsonErrorData(id, code, msg, nil)
}

// jsonErrorData is a JSON-RPC error response with a data member (nil:
// none).
func jsonErrorData(id json.RawMessage, code int, msg string, data any) string {
	e := rpcError{JSONRPC: "2.0", ID: id}
	if len(id) == 0 {
		e.ID = json.RawMessage("null")
	}
	e.Error.Code, e.Error.Message, e.Error.Data = code, msg, data
	b, _ := json.Marshal(e)
	return string(b)
}

// denied answers a policy denial. When the decision names scopes the call
// needs and the caller's handle lacks one of them, the denial is a
// step-up challenge (MCP authorization, "Scope Challenge Handling",
// SEP-835): 403 with WWW-Authenticate error="insufficient_scope" naming
// every scope the operation needs in one challenge (the server's required
// scopes and the policy's), so that the client re-authorizes once with
// them and retries. offline_access is never challenged for: it grants
// refresh, not access. When the handle already has them all, re-authorizing
// would change nothing, and the denial is final.
func (s *Service) denied(c *check, i int, d policy.Decision) outcome {
	if len(d.Scopes) == 0 {
		return policyDenied(c.req, i, d.Reason)
	}
	need := make([]string, 0, len(c.srv.Scopes)+len(d.Scopes))
	for _, list := range [][]string{c.srv.Scopes, d.Scopes} {
		for _, sc := range list {
			if sc != "offline_access" && !contains(need, sc) {
				need = append(need, sc)
			}
		}
	}
	missing := false
	for _, sc := range need {
		missing = missing || !contains(c.handle.Scopes, sc)
	}
	if !missing {
		return policyDenied(c.req, i, d.Reason)
	}
	scope := strings.Join(need, " ")
	reason := d.Reason
	if reason == "" || reason == "denied by policy" {
		reason = "this call needs scope " + scope
	}
	return outcome{
		status: http.StatusForbidden,
		reason: "insufficient scope (step-up to " + scope + "): " + reason,
		headers: []header{
			{"www-authenticate", `Bearer error="insufficient_scope", scope="` + scope + `", resource_metadata="` + s.o.ResourceMetadataURL(c.server) + `", error_description="` + quotedText(reason) + `"`},
			{"content-type", "application/json"},
		},
		body: jsonError(c.req.Messages[i].ID, CodePolicyDenied, reason),
	}
}

// quotedText makes s safe inside an RFC 9110 quoted-string: printable
// ASCII only, without double quotes or backslashes.
func quotedText(s string) string {
	b := []byte(s)
	for i, ch := range b {
		if ch < 0x20 || ch > 0x7e || ch == '"' || ch == '\\' {
			b[i] = '?'
		}
	}
	return string(b)
}

func oauthError(code, desc string) string {
	b, _ := json.Marshal(map[string]string{"error": code, "error_description": desc})
	return string(b)
}

func hvo(h header) *corev3.HeaderValueOption {
	return &corev3.HeaderValueOption{
		Header: &corev3.HeaderValue{Key: h.key, Value: h.value},
		// The zero value appends a second header instead of replacing the
		// client's: the token swap must overwrite (ENVOY-EXTAUTHZ.md).
		AppendAction: corev3.HeaderValueOption_OVERWRITE_IF_EXISTS_OR_ADD,
	}
}

// record writes the decision's audit event and turns the outcome into
// Envoy's answer. An allow is answered only once its event is stored: an
// allow the trail cannot hold is a 503, so that the trail has every request
// that reached a server. A denial goes through Record, which in
// audit.durability: sync (audit.Trail.Decisions) also waits for the group
// commit; a denial the trail cannot hold is still refused, and logged.
func (s *Service) record(ctx context.Context, c *check, o outcome) *authv3.CheckResponse {
	ev := s.event(c, o)
	var err error
	if o.allowed() {
		err = s.o.Audit.RecordSync(ctx, ev)
	} else {
		err = s.o.Audit.Record(ctx, ev)
	}
	if err != nil {
		s.o.Metrics.failure(failAudit)
		s.o.Logger.Error("authz: audit unavailable, failing closed", "err", err, "request_id", c.requestID)
		if o.allowed() {
			o = unavailable(failAudit, "audit trail unavailable")
		}
	}
	if o.allowed() && s.o.LastUse != nil {
		s.o.LastUse.Used(c.grant.ID, c.server, c.start)
	}
	s.o.Metrics.observe(o, s.o.Now().Sub(c.start))
	if s.o.Tracer != nil {
		s.span(ctx, c, o)
	}
	resp := respond(o)
	if o.allowed() {
		resp.DynamicMetadata = s.responseMetadata(ctx, c)
	}
	return resp
}

// respond builds the CheckResponse of an outcome.
func respond(o outcome) *authv3.CheckResponse {
	if o.allowed() {
		// The response and its oneof wrapper in one allocation.
		r := &okResponse{}
		r.ok.OkResponse = o.ok
		r.resp.Status, r.resp.HttpResponse = okStatus, &r.ok
		return &r.resp
	}
	denied := &authv3.DeniedHttpResponse{Status: &typev3.HttpStatus{Code: typev3.StatusCode(o.status)}, Body: o.body}
	hasCT := false
	denied.Headers = make([]*corev3.HeaderValueOption, 0, len(o.headers)+1)
	for _, h := range o.headers {
		hasCT = hasCT || h.key == "content-type"
		denied.Headers = append(denied.Headers, hvo(h))
	}
	if !hasCT && o.body != "" {
		denied.Headers = append(denied.Headers, jsonContentType)
	}
	code := codes.PermissionDenied
	switch {
	case o.status == http.StatusUnauthorized:
		code = codes.Unauthenticated
	case o.status >= 500:
		code = codes.Unavailable
	}
	return &authv3.CheckResponse{
		Status:       &rpcstatus.Status{Code: int32(code), Message: o.reason},
		HttpResponse: &authv3.CheckResponse_DeniedResponse{DeniedResponse: denied},
	}
}

type okResponse struct {
	resp authv3.CheckResponse
	ok   authv3.CheckResponse_OkResponse
}

// okStatus is shared by every allow, like jsonContentType below.
var okStatus = &rpcstatus.Status{Code: int32(codes.OK)}

// jsonContentType is shared by every denial: responses are only read once
// built (gRPC marshals them), never changed.
var jsonContentType = hvo(header{"content-type", "application/json"})

func (s *Service) event(c *check, o outcome) store.AuditEvent {
	ev := store.AuditEvent{
		Time:      c.start,
		Type:      "decision",
		RequestID: c.requestID,
		Subject:   c.grant.Subject,
		ClientID:  c.grant.ClientID,
		Kind:      c.grant.Kind,
		GrantID:   c.grant.ID,
		Server:    c.server,
		Decision:  "deny",
		Status:    o.status,
		Reason:    o.reason,
		PolicyRev: c.policyRev,
		LatencyUS: s.o.Now().Sub(c.start).Microseconds(),
	}
	if o.allowed() {
		ev.Decision = "allow"
	}
	if o.allowed() || o.byPolicy {
		// What the policy decided on, for replay: only when the outcome is
		// the policy's (not a failure after it, nor a refusal before it).
		ev.Input, ev.Redacted = c.inputs, c.redacted
	}
	if c.req != nil && len(c.req.Messages) > 0 {
		m := &c.req.Messages[c.decisive]
		ev.Method, ev.Tool = m.Method, m.Tool
		detail := func(k string, v any) {
			if ev.Details == nil {
				ev.Details = map[string]any{}
			}
			ev.Details[k] = v
		}
		switch {
		case m.Kind == mcp.KindStream:
			ev.Method = "GET (stream)"
		case m.Kind == mcp.KindSessionEnd:
			ev.Method = "DELETE (session end)"
		case m.Resource != "":
			detail("resource", m.Resource)
		case m.Prompt != "":
			detail("prompt", m.Prompt)
		case m.Task != "":
			// The task id is a handle to the server's state: the trail
			// names the call that created the task, not the id.
			if o := c.origin; o != nil {
				ev.Tool = o.Tool
			}
		case m.Listen != nil && len(m.Listen.Resources) > 0:
			detail("resources", m.Listen.Resources)
		}
		if c.req.Batch {
			detail("batch_size", len(c.req.Messages))
		}
		// Who the client says it is, per call (self-reported), and the
		// trace it belongs to.
		if mt := m.Meta; mt != nil {
			if mt.ClientName != "" {
				detail("client_name", mt.ClientName)
			}
			if mt.ClientVersion != "" {
				detail("client_version", mt.ClientVersion)
			}
			if mt.Traceparent != "" {
				detail("traceparent", mt.Traceparent)
			}
		}
		if c.req.ProtocolVersion != "" && c.req.Modern {
			detail("protocol_version", c.req.ProtocolVersion)
		}
	}
	return ev
}
