package envoysim

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	extprocv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/ext_proc/v3"
	hcmv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	procv3 "github.com/envoyproxy/go-control-plane/envoy/service/ext_proc/v3"
	typev3 "github.com/envoyproxy/go-control-plane/envoy/type/v3"
	"google.golang.org/protobuf/types/known/anypb"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/structpb"
	"google.golang.org/protobuf/types/known/wrapperspb"
)

// procServer is a real envoy.service.ext_proc.v3.ExternalProcessor with a
// scripted answer per message; it records what it receives.
type procServer struct {
	procv3.UnimplementedExternalProcessorServer
	mu      sync.Mutex
	reqs    []*procv3.ProcessingRequest
	streams int
	handle  func(ctx context.Context, r *procv3.ProcessingRequest) (*procv3.ProcessingResponse, error)
}

func (s *procServer) Process(stream procv3.ExternalProcessor_ProcessServer) error {
	s.mu.Lock()
	s.streams++
	s.mu.Unlock()
	for {
		r, err := stream.Recv()
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return err
		}
		s.mu.Lock()
		s.reqs = append(s.reqs, r)
		h := s.handle
		s.mu.Unlock()
		resp := pass(r)
		if h != nil {
			if resp, err = h(stream.Context(), r); err != nil {
				return err
			}
		}
		if err := stream.Send(resp); err != nil {
			return err
		}
	}
}

func (s *procServer) set(h func(context.Context, *procv3.ProcessingRequest) (*procv3.ProcessingResponse, error)) {
	s.mu.Lock()
	s.handle = h
	s.mu.Unlock()
}

func (s *procServer) seen() ([]*procv3.ProcessingRequest, int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]*procv3.ProcessingRequest(nil), s.reqs...), s.streams
}

// pass is the answer that changes nothing.
func pass(r *procv3.ProcessingRequest) *procv3.ProcessingResponse {
	switch r.Request.(type) {
	case *procv3.ProcessingRequest_RequestHeaders:
		return &procv3.ProcessingResponse{Response: &procv3.ProcessingResponse_RequestHeaders{RequestHeaders: &procv3.HeadersResponse{}}}
	case *procv3.ProcessingRequest_ResponseHeaders:
		return &procv3.ProcessingResponse{Response: &procv3.ProcessingResponse_ResponseHeaders{ResponseHeaders: &procv3.HeadersResponse{}}}
	case *procv3.ProcessingRequest_ResponseBody:
		return &procv3.ProcessingResponse{Response: &procv3.ProcessingResponse_ResponseBody{ResponseBody: &procv3.BodyResponse{}}}
	}
	return &procv3.ProcessingResponse{}
}

func mode(reqHeaders, respHeaders extprocv3.ProcessingMode_HeaderSendMode, body extprocv3.ProcessingMode_BodySendMode) *extprocv3.ProcessingMode {
	return &extprocv3.ProcessingMode{RequestHeaderMode: reqHeaders, ResponseHeaderMode: respHeaders, ResponseBodyMode: body,
		RequestTrailerMode: extprocv3.ProcessingMode_SKIP, ResponseTrailerMode: extprocv3.ProcessingMode_SKIP}
}

const (
	send = extprocv3.ProcessingMode_SEND
	skip = extprocv3.ProcessingMode_SKIP
)

// withExtProc adds an ext_proc filter after ext_authz, Warden-style unless
// tweak changes it.
func withExtProc(t *testing.T, tweak func(*extprocv3.ExternalProcessor)) func(*resources) {
	return func(r *resources) {
		ep := &extprocv3.ExternalProcessor{
			GrpcService:       &corev3.GrpcService{TargetSpecifier: &corev3.GrpcService_EnvoyGrpc_{EnvoyGrpc: &corev3.GrpcService_EnvoyGrpc{ClusterName: "warden_authz"}}},
			ProcessingMode:    mode(skip, send, extprocv3.ProcessingMode_NONE),
			MessageTimeout:    durationpb.New(5 * time.Second),
			AllowModeOverride: true,
			MetadataOptions: &extprocv3.MetadataOptions{ForwardingNamespaces: &extprocv3.MetadataOptions_MetadataNamespaces{
				Untyped: []string{"envoy.filters.http.ext_authz"}}},
		}
		if tweak != nil {
			tweak(ep)
		}
		r.afterAuthz = []*hcmv3.HttpFilter{{Name: "envoy.filters.http.ext_proc", ConfigType: &hcmv3.HttpFilter_TypedConfig{TypedConfig: mustAny(t, ep)}}}
	}
}

func headersOf(r *procv3.ProcessingRequest) map[string]string {
	var hs *corev3.HeaderMap
	switch x := r.Request.(type) {
	case *procv3.ProcessingRequest_RequestHeaders:
		hs = x.RequestHeaders.GetHeaders()
	case *procv3.ProcessingRequest_ResponseHeaders:
		hs = x.ResponseHeaders.GetHeaders()
	}
	out := map[string]string{}
	for _, h := range hs.GetHeaders() {
		out[h.GetKey()] = string(h.GetRawValue())
	}
	return out
}

// BUFFERED: the processor asks for the body from the response headers
// (mode_override), gets it whole with end_of_stream, and its mutation is
// what the client receives, with headers changed and content-length
// right; the Check's dynamic metadata arrives in metadata_context.
func TestExtProcBufferedResponse(t *testing.T) {
	f := newFixture(t, withExtProc(t, nil))
	f.authz.setResponse(func(context.Context, *authv3.CheckRequest) (*authv3.CheckResponse, error) {
		r := allow()
		r.DynamicMetadata = &structpb.Struct{Fields: map[string]*structpb.Value{"caller": structpb.NewStringValue("alice")}}
		return r, nil
	})
	f.alpha.setHandler(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		_, _ = io.WriteString(w, `{"tools":["a","b"]}`)
	})
	var metaSeen string
	f.authz.proc.set(func(_ context.Context, r *procv3.ProcessingRequest) (*procv3.ProcessingResponse, error) {
		metaSeen = r.GetMetadataContext().GetFilterMetadata()["envoy.filters.http.ext_authz"].GetFields()["caller"].GetStringValue()
		switch x := r.Request.(type) {
		case *procv3.ProcessingRequest_ResponseHeaders:
			return &procv3.ProcessingResponse{
				Response: &procv3.ProcessingResponse_ResponseHeaders{ResponseHeaders: &procv3.HeadersResponse{Response: &procv3.CommonResponse{
					HeaderMutation: &procv3.HeaderMutation{SetHeaders: []*corev3.HeaderValueOption{{Header: &corev3.HeaderValue{Key: "x-filtered", RawValue: []byte("yes")}}}},
				}}},
				ModeOverride: mode(skip, send, extprocv3.ProcessingMode_BUFFERED),
			}, nil
		case *procv3.ProcessingRequest_ResponseBody:
			if !x.ResponseBody.GetEndOfStream() || string(x.ResponseBody.GetBody()) != `{"tools":["a","b"]}` {
				return nil, fmt.Errorf("buffered body %q eos %v", x.ResponseBody.GetBody(), x.ResponseBody.GetEndOfStream())
			}
			return &procv3.ProcessingResponse{Response: &procv3.ProcessingResponse_ResponseBody{ResponseBody: &procv3.BodyResponse{Response: &procv3.CommonResponse{
				BodyMutation: &procv3.BodyMutation{Mutation: &procv3.BodyMutation_Body{Body: []byte(`{"tools":["a"],"filtered":true}`)}}}}}}, nil
		}
		return pass(r), nil
	})
	code, h, body := do(t, "POST", f.proxy.URL()+"/mcp/alpha", []byte(`{}`), nil)
	expectStatus(t, code, 200, body)
	if body != `{"tools":["a"],"filtered":true}` || h.Get("X-Filtered") != "yes" || h.Get("Content-Length") != fmt.Sprint(len(body)) {
		t.Fatalf("client got %q, headers %v", body, h)
	}
	reqs, streams := f.authz.proc.seen()
	if streams != 1 || len(reqs) != 2 || reqs[0].GetResponseHeaders() == nil || headersOf(reqs[0])[":status"] != "200" {
		t.Fatalf("processor saw %d streams, %v", streams, reqs)
	}
	if metaSeen != "alice" {
		t.Errorf("metadata_context carried %q, want the Check's dynamic metadata", metaSeen)
	}
}

// STREAMED: each upstream chunk reaches the processor as it comes, and its
// answer is forwarded before the upstream sends the next one; the end of
// the body is an empty end_of_stream chunk.
func TestExtProcStreamedResponse(t *testing.T) {
	f := newFixture(t, withExtProc(t, nil))
	release := make(chan struct{})
	events := []string{"one", "two", "three"}
	sseUpstream(f.alpha, events, release, nil)
	f.authz.proc.set(func(_ context.Context, r *procv3.ProcessingRequest) (*procv3.ProcessingResponse, error) {
		switch x := r.Request.(type) {
		case *procv3.ProcessingRequest_ResponseHeaders:
			return &procv3.ProcessingResponse{Response: pass(r).Response, ModeOverride: mode(skip, send, extprocv3.ProcessingMode_STREAMED)}, nil
		case *procv3.ProcessingRequest_ResponseBody:
			out := bytes.ToUpper(x.ResponseBody.GetBody())
			return &procv3.ProcessingResponse{Response: &procv3.ProcessingResponse_ResponseBody{ResponseBody: &procv3.BodyResponse{Response: &procv3.CommonResponse{
				BodyMutation: &procv3.BodyMutation{Mutation: &procv3.BodyMutation_Body{Body: out}}}}}}, nil
		}
		return pass(r), nil
	})
	ctx, cancel := context.WithTimeout(t.Context(), 20*time.Second)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, "GET", f.proxy.URL()+"/mcp/alpha", nil)
	resp, err := client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = resp.Body.Close() }()
	br := bufio.NewReader(resp.Body)
	for i, want := range events {
		if got := readEvent(t, br); got != fmt.Sprintf("ID: %d\nDATA: %s\n", i+1, strings.ToUpper(want)) {
			t.Fatalf("event %d = %q", i+1, got)
		}
		if i < len(events)-1 {
			select {
			case release <- struct{}{}:
			case <-ctx.Done():
				t.Fatal("the upstream never asked for the next event")
			}
		}
	}
	_, _ = io.ReadAll(br)
	reqs, _ := f.authz.proc.seen()
	last := reqs[len(reqs)-1].GetResponseBody()
	if last == nil || !last.GetEndOfStream() {
		t.Fatalf("last message %v, want the end_of_stream body chunk", reqs[len(reqs)-1])
	}
}

// mode_override is honoured only with allow_mode_override and, when
// allowed_override_modes is set, only for a mode it lists exactly.
func TestExtProcModeOverrideRules(t *testing.T) {
	for _, c := range []struct {
		name     string
		tweak    func(*extprocv3.ExternalProcessor)
		wantBody bool
	}{
		{"allowed", nil, true},
		{"allow_mode_override false", func(ep *extprocv3.ExternalProcessor) { ep.AllowModeOverride = false }, false},
		{"listed", func(ep *extprocv3.ExternalProcessor) {
			ep.AllowedOverrideModes = []*extprocv3.ProcessingMode{mode(skip, send, extprocv3.ProcessingMode_BUFFERED)}
		}, true},
		{"not listed", func(ep *extprocv3.ExternalProcessor) {
			ep.AllowedOverrideModes = []*extprocv3.ProcessingMode{mode(skip, send, extprocv3.ProcessingMode_STREAMED)}
		}, false},
	} {
		t.Run(c.name, func(t *testing.T) {
			f := newFixture(t, withExtProc(t, c.tweak))
			f.authz.proc.set(func(_ context.Context, r *procv3.ProcessingRequest) (*procv3.ProcessingResponse, error) {
				if r.GetResponseHeaders() != nil {
					return &procv3.ProcessingResponse{Response: pass(r).Response, ModeOverride: mode(skip, send, extprocv3.ProcessingMode_BUFFERED)}, nil
				}
				return pass(r), nil
			})
			code, _, body := do(t, "POST", f.proxy.URL()+"/mcp/alpha", []byte(`{}`), nil)
			expectStatus(t, code, 200, body)
			reqs, _ := f.authz.proc.seen()
			gotBody := len(reqs) == 2 && reqs[1].GetResponseBody() != nil
			if gotBody != c.wantBody {
				t.Fatalf("body sent to the processor: %v, want %v (%d messages)", gotBody, c.wantBody, len(reqs))
			}
		})
	}
}

// Failure closed: an unreachable processor, one that misses
// message_timeout, or one that ends the stream fails the response with
// 500 (status_on_error); failure_mode_allow lets the response through
// unprocessed; an immediate response replaces the upstream's.
func TestExtProcFailures(t *testing.T) {
	closedPort := func() string {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		a := l.Addr().String()
		_ = l.Close()
		return a
	}
	unreachable := func(ep *extprocv3.ExternalProcessor) {
		ep.GrpcService = &corev3.GrpcService{TargetSpecifier: &corev3.GrpcService_EnvoyGrpc_{EnvoyGrpc: &corev3.GrpcService_EnvoyGrpc{ClusterName: "nowhere"}}}
	}
	for _, c := range []struct {
		name       string
		tweak      func(*extprocv3.ExternalProcessor)
		handle     func(context.Context, *procv3.ProcessingRequest) (*procv3.ProcessingResponse, error)
		wantStatus int
		wantBody   string
	}{
		{"unreachable", unreachable, nil, 500, ""},
		{"unreachable, failure_mode_allow", func(ep *extprocv3.ExternalProcessor) { unreachable(ep); ep.FailureModeAllow = true }, nil, 200, "ok"},
		{"message timeout", func(ep *extprocv3.ExternalProcessor) { ep.MessageTimeout = durationpb.New(50 * time.Millisecond) },
			func(ctx context.Context, _ *procv3.ProcessingRequest) (*procv3.ProcessingResponse, error) {
				<-ctx.Done()
				return nil, ctx.Err()
			}, 500, ""},
		{"stream ended", nil, func(context.Context, *procv3.ProcessingRequest) (*procv3.ProcessingResponse, error) {
			return nil, errors.New("processor gives up")
		}, 500, ""},
		{"status_on_error", func(ep *extprocv3.ExternalProcessor) {
			unreachable(ep)
			ep.StatusOnError = &typev3.HttpStatus{Code: typev3.StatusCode_ServiceUnavailable}
		}, nil, 503, ""},
		{"immediate response", nil, func(_ context.Context, r *procv3.ProcessingRequest) (*procv3.ProcessingResponse, error) {
			return &procv3.ProcessingResponse{Response: &procv3.ProcessingResponse_ImmediateResponse{ImmediateResponse: &procv3.ImmediateResponse{
				Status: &typev3.HttpStatus{Code: typev3.StatusCode_Forbidden}, Body: []byte(`{"error":"no"}`)}}}, nil
		}, 403, `{"error":"no"}`},
	} {
		t.Run(c.name, func(t *testing.T) {
			f := newFixture(t, func(r *resources) {
				withExtProc(t, c.tweak)(r)
				r.clusters = append(r.clusters, staticCluster(t, "nowhere", closedPort(), true))
			})
			f.alpha.setHandler(func(w http.ResponseWriter, r *http.Request) { _, _ = io.WriteString(w, "ok") })
			f.authz.proc.set(c.handle)
			code, _, body := do(t, "POST", f.proxy.URL()+"/mcp/alpha", []byte(`{}`), nil)
			if code != c.wantStatus || body != c.wantBody {
				t.Fatalf("status %d body %q, want %d %q", code, body, c.wantStatus, c.wantBody)
			}
		})
	}
}

// ExtProcPerRoute: disabled routes open no stream; overrides replace the
// processing mode (here: request headers sent, and the processor's header
// mutation reaches the upstream); the most specific level wins.
func TestExtProcPerRoute(t *testing.T) {
	f := newFixture(t, func(r *resources) {
		withExtProc(t, nil)(r)
		vh := r.routes.VirtualHosts[0]
		for _, rt := range vh.Routes {
			if rt.TypedPerFilterConfig == nil {
				rt.TypedPerFilterConfig = map[string]*anypb.Any{}
			}
			switch {
			case strings.HasPrefix(rt.Name, "mcp_alpha_exact"):
				rt.TypedPerFilterConfig["envoy.filters.http.ext_proc"] = mustAny(t, &extprocv3.ExtProcPerRoute{Override: &extprocv3.ExtProcPerRoute_Overrides{
					Overrides: &extprocv3.ExtProcOverrides{ProcessingMode: mode(send, skip, extprocv3.ProcessingMode_NONE), FailureModeAllow: wrapperspb.Bool(false)}}})
			case rt.Name == "oauth" || rt.Name == "well_known":
				rt.TypedPerFilterConfig["envoy.filters.http.ext_proc"] = mustAny(t, &extprocv3.ExtProcPerRoute{Override: &extprocv3.ExtProcPerRoute_Disabled{Disabled: true}})
			}
		}
	})
	f.authz.proc.set(func(_ context.Context, r *procv3.ProcessingRequest) (*procv3.ProcessingResponse, error) {
		if r.GetRequestHeaders() != nil {
			return &procv3.ProcessingResponse{Response: &procv3.ProcessingResponse_RequestHeaders{RequestHeaders: &procv3.HeadersResponse{Response: &procv3.CommonResponse{
				HeaderMutation: &procv3.HeaderMutation{
					SetHeaders:    []*corev3.HeaderValueOption{{Header: &corev3.HeaderValue{Key: "x-from-proc", RawValue: []byte("1")}, AppendAction: corev3.HeaderValueOption_OVERWRITE_IF_EXISTS_OR_ADD}},
					RemoveHeaders: []string{"x-secret"},
				}}}}}, nil
		}
		return pass(r), nil
	})
	code, _, body := do(t, "GET", f.proxy.URL()+"/oauth/authorize", nil, nil)
	expectStatus(t, code, 200, body)
	if _, streams := f.authz.proc.seen(); streams != 0 {
		t.Fatalf("a disabled route opened %d ext_proc streams", streams)
	}
	code, _, body = do(t, "POST", f.proxy.URL()+"/mcp/alpha", []byte(`{}`), map[string][]string{"X-Secret": {"s"}})
	expectStatus(t, code, 200, body)
	reqs, _ := f.authz.proc.seen()
	if len(reqs) != 1 || reqs[0].GetRequestHeaders() == nil || headersOf(reqs[0])[":path"] != "/mcp/alpha" {
		t.Fatalf("the route override should send only the request headers: %v", reqs)
	}
	up := f.alpha.last(t)
	if up.Header.Get("X-From-Proc") != "1" || up.Header.Get("X-Secret") != "" {
		t.Fatalf("upstream headers %v", up.Header)
	}
	// The prefix route has no override: the listener's mode (response
	// headers only).
	code, _, body = do(t, "POST", f.proxy.URL()+"/mcp/alpha/x", []byte(`{}`), nil)
	expectStatus(t, code, 200, body)
	reqs, _ = f.authz.proc.seen()
	if len(reqs) != 2 || reqs[1].GetResponseHeaders() == nil {
		t.Fatalf("listener mode on the prefix route: %v", reqs[1:])
	}
}

// What envoysim cannot do like Envoy is refused when configured, not
// silently ignored.
func TestExtProcUnsupportedIsRefused(t *testing.T) {
	for name, tweak := range map[string]func(*extprocv3.ExternalProcessor){
		"request body": func(ep *extprocv3.ExternalProcessor) {
			ep.ProcessingMode.RequestBodyMode = extprocv3.ProcessingMode_BUFFERED
		},
		"full duplex": func(ep *extprocv3.ExternalProcessor) {
			ep.ProcessingMode.ResponseBodyMode = extprocv3.ProcessingMode_FULL_DUPLEX_STREAMED
		},
		"observability": func(ep *extprocv3.ExternalProcessor) { ep.ObservabilityMode = true },
		"trailers":      func(ep *extprocv3.ExternalProcessor) { ep.ProcessingMode.ResponseTrailerMode = send },
		"receiving ns": func(ep *extprocv3.ExternalProcessor) {
			ep.MetadataOptions.ReceivingNamespaces = &extprocv3.MetadataOptions_MetadataNamespaces{Untyped: []string{"x"}}
		},
		"attributes": func(ep *extprocv3.ExternalProcessor) { ep.ResponseAttributes = []string{"response.code"} },
		"no grpc service": func(ep *extprocv3.ExternalProcessor) {
			ep.GrpcService = nil
			ep.HttpService = &extprocv3.ExtProcHttpService{}
		},
	} {
		t.Run(name, func(t *testing.T) {
			r := &resources{}
			withExtProc(t, tweak)(r)
			if _, err := compileHTTPFilter(r.afterAuthz[0]); err == nil {
				t.Fatal("accepted")
			}
		})
	}
}
