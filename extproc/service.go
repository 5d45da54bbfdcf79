// Package extproc is Warden's response path: an Envoy external processor
// (envoy.service.ext_proc.v3.ExternalProcessor) on the ext_authz gRPC
// listener. Envoy opens one Process stream per MCP request and, as
// Warden's xDS configures it, sends only the response headers; when the
// Check's dynamic metadata (authz.MetadataNamespace, forwarded by the
// filter's metadata_options) names a result Warden reads, the processor
// asks for the response body by overriding the processing mode: BUFFERED
// for a JSON response, STREAMED for an SSE stream, which it then filters
// event by event. A list result keeps only the items the caller may use
// (policy.Engine.Visible and tool pinning); a tools/call result that
// creates a task is recorded (internal/mcptask).
//
// The request is never parsed again: the classification and the caller
// travel from the Check. Failure is closed: Envoy's filter does not let a
// response through when the processor fails (failure_mode_allow false),
// and a list Warden cannot filter is replaced by a JSON-RPC error.
package extproc

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"strings"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	filterv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/ext_proc/v3"
	extprocv3 "github.com/envoyproxy/go-control-plane/envoy/service/ext_proc/v3"
	typev3 "github.com/envoyproxy/go-control-plane/envoy/type/v3"
	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/warden-mcp/warden/authz"
	"github.com/warden-mcp/warden/internal/mcptask"
	"github.com/warden-mcp/warden/internal/toolpin"
	"github.com/warden-mcp/warden/policy"
)

// Callers finds a Check's caller again (authz.Service.Caller).
type Callers interface {
	Caller(ctx context.Context, digest, server string) (authz.ResponseCaller, error)
	// Live reports authz.ErrNotLive once the caller may no longer reach
	// server (revoked, expired, narrowed).
	Live(ctx context.Context, digest, server string) error
}

// Visibility decides which list items a caller sees (policy.Engine).
type Visibility interface {
	Visible(ctx context.Context, base *policy.Input, items []policy.Item) ([]bool, error)
}

// Pins records tool definitions (internal/toolpin).
type Pins interface {
	Observe(ctx context.Context, server string, defs []toolpin.Definition) ([]toolpin.State, error)
}

// Tasks records the tasks tools/call results create (internal/mcptask).
type Tasks interface {
	RecordResult(ctx context.Context, o mcptask.Origin, result json.RawMessage) (string, error)
	// TakeArguments returns the arguments the Check held for a call too
	// large for the metadata (authz.Options.Arguments), named by the
	// reference and digest the metadata carries.
	TakeArguments(ctx context.Context, ref, digest string) (json.RawMessage, error)
}

// Options configure a Service.
type Options struct {
	Callers Callers
	Policy  Visibility
	// Pins, when set, pins the tools of every tools/list result.
	Pins Pins
	// Tasks, when set, records tasks created by tools/call results.
	Tasks Tasks
	// Timeout bounds the work on one message; 0: only the stream's
	// context. Envoy's message_timeout should be larger.
	Timeout time.Duration
	// LiveEvery is how often a subscriptions/listen stream's caller is
	// checked again (on the next chunk after this long: servers send
	// keep-alives); 1s when zero, every chunk when negative.
	LiveEvery  time.Duration
	Registerer prometheus.Registerer
	Logger     *slog.Logger
}

// Service implements extprocv3.ExternalProcessorServer.
type Service struct {
	extprocv3.UnimplementedExternalProcessorServer
	o Options
	m *metrics
}

// New returns a Service.
func New(o Options) (*Service, error) {
	if o.Callers == nil || o.Policy == nil {
		return nil, errors.New("extproc: Callers and Policy are required")
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if o.LiveEvery == 0 {
		o.LiveEvery = time.Second
	}
	m, err := newMetrics(o.Registerer)
	if err != nil {
		return nil, err
	}
	return &Service{o: o, m: m}, nil
}

// Process serves one HTTP request's stream. Every message gets its answer;
// a stream error is returned only when Envoy's side fails (Envoy then fails
// the request: failure_mode_allow is false).
func (s *Service) Process(stream extprocv3.ExternalProcessor_ProcessServer) error {
	ctx := stream.Context()
	var ex *exchange
	for {
		req, err := stream.Recv()
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return err
		}
		var resp *extprocv3.ProcessingResponse
		switch r := req.Request.(type) {
		case *extprocv3.ProcessingRequest_RequestHeaders:
			s.m.messages.WithLabelValues("request_headers").Inc()
			resp = &extprocv3.ProcessingResponse{Response: &extprocv3.ProcessingResponse_RequestHeaders{RequestHeaders: &extprocv3.HeadersResponse{}}}
		case *extprocv3.ProcessingRequest_RequestBody:
			s.m.messages.WithLabelValues("request_body").Inc()
			resp = &extprocv3.ProcessingResponse{Response: &extprocv3.ProcessingResponse_RequestBody{RequestBody: &extprocv3.BodyResponse{}}}
		case *extprocv3.ProcessingRequest_RequestTrailers:
			resp = &extprocv3.ProcessingResponse{Response: &extprocv3.ProcessingResponse_RequestTrailers{RequestTrailers: &extprocv3.TrailersResponse{}}}
		case *extprocv3.ProcessingRequest_ResponseHeaders:
			s.m.messages.WithLabelValues("response_headers").Inc()
			ex, resp = s.responseHeaders(ctx, req, r.ResponseHeaders)
		case *extprocv3.ProcessingRequest_ResponseBody:
			s.m.messages.WithLabelValues("response_body").Inc()
			if err := s.stillLive(ctx, ex); err != nil {
				// Ending the exchange with an error makes Envoy reset the
				// stream (failure_mode_allow is false): a revoked caller's
				// listen stream ends at its next chunk.
				return err
			}
			resp = s.responseBody(ctx, ex, r.ResponseBody)
		case *extprocv3.ProcessingRequest_ResponseTrailers:
			resp = &extprocv3.ProcessingResponse{Response: &extprocv3.ProcessingResponse_ResponseTrailers{ResponseTrailers: &extprocv3.TrailersResponse{}}}
		default:
			// Flow control and future messages: nothing to answer.
			continue
		}
		if err := stream.Send(resp); err != nil {
			return err
		}
	}
}

// call is one request of the exchange whose result Warden reads.
type call struct {
	method, tool string
	// id is the request's JSON-RPC id as input.mcp.id holds it.
	id        any
	arguments []byte
	hasArgs   bool
	// argsRef and argsDigest name arguments held in the store (too large
	// for the metadata).
	argsRef, argsDigest string
}

// exchange is what the response path knows of one HTTP request.
type exchange struct {
	server, protocol string
	caller           authz.ResponseCaller
	// request is the Check's input.request, when the policy read it.
	request    policy.Request
	hasRequest bool
	calls      map[string]call // by normalized JSON-RPC id
	sse        bool
	pending    []byte // SSE: bytes of an event not yet complete
	// listen: a subscriptions/listen stream, whose caller (digest) is
	// checked again at most every LiveEvery, last at checked.
	listen  bool
	digest  string
	checked time.Time
}

// stillLive checks a listen stream's caller again when LiveEvery has
// passed since the last check.
func (s *Service) stillLive(ctx context.Context, ex *exchange) error {
	if ex == nil || !ex.listen || (s.o.LiveEvery > 0 && time.Since(ex.checked) < s.o.LiveEvery) {
		return nil
	}
	ex.checked = time.Now()
	err := s.o.Callers.Live(ctx, ex.digest, ex.server)
	if err == nil {
		return nil
	}
	s.m.failures.WithLabelValues("not_live").Inc()
	s.o.Logger.Info("extproc: ending a stream whose caller is no longer live", "server", ex.server, "err", err)
	if errors.Is(err, authz.ErrNotLive) {
		return status.Error(codes.PermissionDenied, "the caller may no longer use this server")
	}
	return status.Error(codes.Unavailable, "authorization temporarily unavailable")
}

func passHeaders() *extprocv3.ProcessingResponse {
	return &extprocv3.ProcessingResponse{Response: &extprocv3.ProcessingResponse_ResponseHeaders{ResponseHeaders: &extprocv3.HeadersResponse{}}}
}

// responseHeaders decides whether the body is needed. Without Warden's
// metadata, for a status other than 200, or for a content type that is
// neither JSON nor SSE, the response passes unread (body mode stays NONE).
func (s *Service) responseHeaders(ctx context.Context, req *extprocv3.ProcessingRequest, h *extprocv3.HttpHeaders) (*exchange, *extprocv3.ProcessingResponse) {
	md := req.GetMetadataContext().GetFilterMetadata()[authz.MetadataNamespace].GetFields()[authz.MetadataKey].GetStructValue()
	if md == nil || h.GetEndOfStream() {
		return nil, passHeaders()
	}
	if header(h, ":status") != "200" {
		return nil, passHeaders()
	}
	ct := strings.ToLower(header(h, "content-type"))
	mediaType, _, _ := strings.Cut(ct, ";")
	var mode filterv3.ProcessingMode_BodySendMode
	switch strings.TrimSpace(mediaType) {
	case "application/json":
		mode = filterv3.ProcessingMode_BUFFERED
	case "text/event-stream":
		mode = filterv3.ProcessingMode_STREAMED
	default:
		return nil, passHeaders()
	}
	ex := &exchange{sse: mode == filterv3.ProcessingMode_STREAMED, calls: map[string]call{}}
	f := md.GetFields()
	ex.server, ex.protocol = f["server"].GetStringValue(), f["protocol"].GetStringValue()
	ex.request, ex.hasRequest = authz.RequestFromMetadata(md)
	for _, v := range f["calls"].GetListValue().GetValues() {
		cf := v.GetStructValue().GetFields()
		c := call{method: cf["method"].GetStringValue(), tool: cf["tool"].GetStringValue(), id: authz.DecodeID(cf["id"].GetStringValue())}
		if a, ok := cf["arguments"]; ok {
			c.arguments, c.hasArgs = []byte(a.GetStringValue()), true
		}
		c.argsRef, c.argsDigest = cf["arguments_ref"].GetStringValue(), cf["arguments_digest"].GetStringValue()
		if c.method == "subscriptions/listen" {
			ex.listen = true
			continue
		}
		if id, ok := normalID([]byte(cf["id"].GetStringValue())); ok {
			ex.calls[id] = c
		}
	}
	if len(ex.calls) == 0 && !(ex.listen && ex.sse) {
		return nil, passHeaders()
	}
	ex.digest, ex.checked = f["caller"].GetStringValue(), time.Now()
	ctx, cancel := s.bound(ctx)
	defer cancel()
	caller, err := s.o.Callers.Caller(ctx, f["caller"].GetStringValue(), ex.server)
	if err != nil {
		// Revoked since its Check, or Warden cannot tell: nothing of the
		// result reaches the client.
		s.m.failures.WithLabelValues("caller").Inc()
		s.o.Logger.Warn("extproc: refusing a response whose caller is not live", "server", ex.server, "err", err)
		status, msg := typev3.StatusCode_Forbidden, "the caller may no longer use this server"
		if !errors.Is(err, authz.ErrNotLive) {
			status, msg = typev3.StatusCode_ServiceUnavailable, "authorization temporarily unavailable"
		}
		return nil, immediate(status, rpcError(nil, codeInternalError, msg))
	}
	ex.caller = caller
	// The body changes length: content-length goes (Envoy's ext_proc
	// filter: in BUFFERED mode with headers sent it must be removed or
	// right; in STREAMED mode it is not allowed).
	return ex, &extprocv3.ProcessingResponse{
		Response: &extprocv3.ProcessingResponse_ResponseHeaders{ResponseHeaders: &extprocv3.HeadersResponse{Response: &extprocv3.CommonResponse{
			HeaderMutation: &extprocv3.HeaderMutation{RemoveHeaders: []string{"content-length"}},
		}}},
		ModeOverride: &filterv3.ProcessingMode{
			RequestHeaderMode:   filterv3.ProcessingMode_SKIP,
			ResponseHeaderMode:  filterv3.ProcessingMode_SEND,
			ResponseBodyMode:    mode,
			RequestTrailerMode:  filterv3.ProcessingMode_SKIP,
			ResponseTrailerMode: filterv3.ProcessingMode_SKIP,
		},
	}
}

func (s *Service) bound(ctx context.Context) (context.Context, context.CancelFunc) {
	if s.o.Timeout > 0 {
		return context.WithTimeout(ctx, s.o.Timeout)
	}
	return ctx, func() {}
}

func immediate(code typev3.StatusCode, body []byte) *extprocv3.ProcessingResponse {
	return &extprocv3.ProcessingResponse{Response: &extprocv3.ProcessingResponse_ImmediateResponse{ImmediateResponse: &extprocv3.ImmediateResponse{
		Status: &typev3.HttpStatus{Code: code},
		Headers: &extprocv3.HeaderMutation{SetHeaders: []*corev3.HeaderValueOption{{
			Header:       &corev3.HeaderValue{Key: "content-type", RawValue: []byte("application/json")},
			AppendAction: corev3.HeaderValueOption_OVERWRITE_IF_EXISTS_OR_ADD,
		}}},
		Body:    body,
		Details: "warden_response_path",
	}}}
}

// header returns a response header's value: Envoy sends raw_value (and
// older versions value).
func header(h *extprocv3.HttpHeaders, name string) string {
	for _, hv := range h.GetHeaders().GetHeaders() {
		if strings.EqualFold(hv.GetKey(), name) {
			if len(hv.GetRawValue()) > 0 {
				return string(hv.GetRawValue())
			}
			return hv.GetValue()
		}
	}
	return ""
}

func bodyResponse(b []byte, changed bool) *extprocv3.ProcessingResponse {
	br := &extprocv3.BodyResponse{}
	if changed {
		m := &extprocv3.BodyMutation{Mutation: &extprocv3.BodyMutation_Body{Body: b}}
		if len(b) == 0 {
			m.Mutation = &extprocv3.BodyMutation_ClearBody{ClearBody: true}
		}
		br.Response = &extprocv3.CommonResponse{BodyMutation: m}
	}
	return &extprocv3.ProcessingResponse{Response: &extprocv3.ProcessingResponse_ResponseBody{ResponseBody: br}}
}

// responseBody filters one body message: the whole JSON body (BUFFERED),
// or the next chunk of an SSE stream (STREAMED), of which only complete
// events are passed on, the rest held until the next chunk.
func (s *Service) responseBody(ctx context.Context, ex *exchange, b *extprocv3.HttpBody) *extprocv3.ProcessingResponse {
	if ex == nil {
		// Body without the headers' override: Envoy was configured to send
		// it; nothing is known of the request, so it passes as is.
		return bodyResponse(nil, false)
	}
	ctx, cancel := s.bound(ctx)
	defer cancel()
	if !ex.sse {
		out, changed := s.rewriteJSON(ctx, ex, b.GetBody())
		return bodyResponse(out, changed)
	}
	ex.pending = append(ex.pending, b.GetBody()...)
	var out []byte
	for {
		ev, rest, ok := nextEvent(ex.pending)
		if !ok {
			break
		}
		out = append(out, s.rewriteEvent(ctx, ex, ev)...)
		ex.pending = rest
	}
	if b.GetEndOfStream() && len(ex.pending) > 0 {
		// An event cut off by the end of the stream is never dispatched by
		// an SSE client; it is still filtered, never passed unread.
		out = append(out, s.rewriteEvent(ctx, ex, ex.pending)...)
		ex.pending = nil
	}
	// Copy: ex.pending may alias the chunk.
	ex.pending = append([]byte(nil), ex.pending...)
	return bodyResponse(out, true)
}
