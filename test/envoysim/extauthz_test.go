package envoysim

import (
	"bytes"
	"context"
	"net"
	"net/http"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	extauthzv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/ext_authz/v3"
	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	typev3 "github.com/envoyproxy/go-control-plane/envoy/type/v3"
	"google.golang.org/genproto/googleapis/rpc/status"
	"google.golang.org/grpc/codes"
	grpcstatus "google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/anypb"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/wrapperspb"
)

var uuidRE = regexp.MustCompile(`^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$`)

// The CheckRequest carries what Envoy fills: lowercased headers with the
// pseudo-headers, repeated values joined with ",", the generated
// x-request-id, raw_body with pack_as_bytes and the partial-body header,
// context_extensions of the route, peer addresses.
func TestCheckRequestFields(t *testing.T) {
	f := newFixture(t, nil)
	body := []byte(`{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"echo"}}`)
	status, _, resp := do(t, "POST", f.proxy.URL()+"/mcp/alpha?session=a%20b", body, map[string][]string{
		"Authorization":             {"Bearer handle-123"},
		"X-Dup":                     {"one", "two"},
		"Content-Type":              {"application/json"},
		"Mcp-Session-Id":            {"s-1"},
		"MCP-Protocol-Version":      {"2025-06-18"},
		"X-Envoy-Auth-Partial-Body": {"spoofed"},
	})
	expectStatus(t, status, 200, resp)

	req := f.authz.last(t)
	hr := req.GetAttributes().GetRequest().GetHttp()
	proxyHost := strings.TrimPrefix(f.proxy.URL(), "http://")
	wantHeaders := map[string]string{
		":method":                   "POST",
		":path":                     "/mcp/alpha?session=a%20b",
		":authority":                proxyHost,
		":scheme":                   "http",
		"authorization":             "Bearer handle-123",
		"x-dup":                     "one,two",
		"content-type":              "application/json",
		"content-length":            strconv.Itoa(len(body)),
		"mcp-session-id":            "s-1",
		"mcp-protocol-version":      "2025-06-18",
		"x-forwarded-proto":         "http",
		"x-envoy-auth-partial-body": "false", // Envoy's own value, not the client's
	}
	for k, v := range wantHeaders {
		if got, ok := hr.GetHeaders()[k]; !ok || got != v {
			t.Errorf("headers[%q] = %q (present %v), want %q", k, got, ok, v)
		}
	}
	for k := range hr.GetHeaders() {
		if k != strings.ToLower(k) {
			t.Errorf("header key %q is not lowercase", k)
		}
		if k == "host" {
			t.Error("Host must appear as :authority only")
		}
	}
	if id := hr.GetHeaders()["x-request-id"]; !uuidRE.MatchString(id) {
		t.Errorf("x-request-id %q is not a generated UUID", id)
	}
	if _, err := strconv.ParseUint(hr.GetId(), 10, 64); err != nil {
		t.Errorf("id %q is not Envoy's numeric stream id", hr.GetId())
	}
	if hr.GetMethod() != "POST" || hr.GetPath() != "/mcp/alpha?session=a%20b" || hr.GetHost() != proxyHost ||
		hr.GetScheme() != "http" || hr.GetProtocol() != "HTTP/1.1" || hr.GetSize() != int64(len(body)) {
		t.Errorf("http attributes: method %q path %q host %q scheme %q protocol %q size %d",
			hr.GetMethod(), hr.GetPath(), hr.GetHost(), hr.GetScheme(), hr.GetProtocol(), hr.GetSize())
	}
	if !bytes.Equal(hr.GetRawBody(), body) || hr.GetBody() != "" {
		t.Errorf("raw_body %q body %q; want raw_body only (pack_as_bytes)", hr.GetRawBody(), hr.GetBody())
	}
	if got := req.GetAttributes().GetContextExtensions(); len(got) != 1 || got["server"] != "alpha" {
		t.Errorf("context_extensions %v", got)
	}
	src := req.GetAttributes().GetSource().GetAddress().GetSocketAddress()
	dst := req.GetAttributes().GetDestination().GetAddress().GetSocketAddress()
	_, proxyPort, _ := net.SplitHostPort(proxyHost)
	if src.GetAddress() != "127.0.0.1" || src.GetPortValue() == 0 {
		t.Errorf("source %v", src)
	}
	if strconv.Itoa(int(dst.GetPortValue())) != proxyPort {
		t.Errorf("destination %v, want port %s", dst, proxyPort)
	}
	if req.GetAttributes().GetRequest().GetTime() == nil {
		t.Error("request.time is not set")
	}
}

// x-request-id: kept when the client sends one (use_remote_address unset),
// generated when absent.
func TestRequestID(t *testing.T) {
	f := newFixture(t, nil)
	do(t, "POST", f.proxy.URL()+"/mcp/alpha", []byte(`{}`), map[string][]string{"X-Request-Id": {"client-id"}})
	if got := f.authz.last(t).GetAttributes().GetRequest().GetHttp().GetHeaders()["x-request-id"]; got != "client-id" {
		t.Errorf("x-request-id %q, want the client's", got)
	}
	if got := f.alpha.last(t).Header.Get("X-Request-Id"); got != "client-id" {
		t.Errorf("upstream x-request-id %q", got)
	}
	do(t, "POST", f.proxy.URL()+"/mcp/alpha", []byte(`{}`), nil)
	a := f.authz.last(t).GetAttributes().GetRequest().GetHttp().GetHeaders()["x-request-id"]
	if !uuidRE.MatchString(a) || f.alpha.last(t).Header.Get("X-Request-Id") != a {
		t.Errorf("generated x-request-id %q not forwarded upstream as is (%q)", a, f.alpha.last(t).Header.Get("X-Request-Id"))
	}
}

// with_request_body: the body is buffered up to max_request_bytes; beyond
// it 413 without calling the service unless allow_partial_message, then
// truncated with x-envoy-auth-partial-body: true and the upstream still
// gets the whole body.
func TestRequestBodyBuffering(t *testing.T) {
	const max = 16
	cases := []struct {
		name         string
		settings     *extauthzv3.BufferSettings
		method       string
		body         []byte
		chunked      bool
		wantStatus   int
		wantCalled   bool
		wantRaw      []byte
		wantBody     string
		wantPartial  string // "" means the header must be absent
		wantUpstream []byte
	}{
		{name: "within the limit", settings: &extauthzv3.BufferSettings{MaxRequestBytes: max, PackAsBytes: true},
			method: "POST", body: []byte("0123456789"), wantStatus: 200, wantCalled: true,
			wantRaw: []byte("0123456789"), wantPartial: "false", wantUpstream: []byte("0123456789")},
		{name: "exactly the limit", settings: &extauthzv3.BufferSettings{MaxRequestBytes: max, PackAsBytes: true},
			method: "POST", body: []byte("0123456789abcdef"), wantStatus: 200, wantCalled: true,
			wantRaw: []byte("0123456789abcdef"), wantPartial: "false", wantUpstream: []byte("0123456789abcdef")},
		{name: "over the limit is 413", settings: &extauthzv3.BufferSettings{MaxRequestBytes: max, PackAsBytes: true},
			method: "POST", body: []byte("0123456789abcdefX"), wantStatus: 413},
		{name: "over the limit chunked is 413", settings: &extauthzv3.BufferSettings{MaxRequestBytes: max, PackAsBytes: true},
			method: "POST", body: []byte("0123456789abcdefXYZ"), chunked: true, wantStatus: 413},
		{name: "over the limit with allow_partial_message", settings: &extauthzv3.BufferSettings{MaxRequestBytes: max, AllowPartialMessage: true, PackAsBytes: true},
			method: "POST", body: []byte("0123456789abcdefXYZ"), wantStatus: 200, wantCalled: true,
			wantRaw: []byte("0123456789abcdef"), wantPartial: "true", wantUpstream: []byte("0123456789abcdefXYZ")},
		{name: "string body without pack_as_bytes", settings: &extauthzv3.BufferSettings{MaxRequestBytes: max},
			method: "POST", body: []byte("h\xffllo"), wantStatus: 200, wantCalled: true,
			wantBody: "h!llo", wantPartial: "false", wantUpstream: []byte("h\xffllo")},
		{name: "chunked body within the limit", settings: &extauthzv3.BufferSettings{MaxRequestBytes: max, PackAsBytes: true},
			method: "POST", body: []byte("chunked!"), chunked: true, wantStatus: 200, wantCalled: true,
			wantRaw: []byte("chunked!"), wantPartial: "false", wantUpstream: []byte("chunked!")},
		{name: "no body: nothing buffered, no partial header", settings: &extauthzv3.BufferSettings{MaxRequestBytes: max, PackAsBytes: true},
			method: "GET", wantStatus: 200, wantCalled: true},
		{name: "without with_request_body no body is sent", settings: nil,
			method: "POST", body: []byte("0123456789abcdefXYZ"), wantStatus: 200, wantCalled: true,
			wantUpstream: []byte("0123456789abcdefXYZ")},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			f := newFixture(t, func(r *resources) { r.authz.WithRequestBody = tc.settings })
			var status int
			var body string
			if tc.chunked {
				status, body = doChunked(t, f.proxy.URL()+"/mcp/alpha", tc.body)
			} else {
				var hb []byte
				if tc.body != nil {
					hb = tc.body
				}
				status, _, body = do(t, tc.method, f.proxy.URL()+"/mcp/alpha", hb, nil)
			}
			expectStatus(t, status, tc.wantStatus, body)
			if tc.wantStatus == 413 && body != "Payload Too Large" {
				t.Errorf("413 body %q", body)
			}
			reqs := f.authz.requests()
			if called := len(reqs) > 0; called != tc.wantCalled {
				t.Fatalf("authz called = %v, want %v", called, tc.wantCalled)
			}
			if !tc.wantCalled {
				if n := len(f.alpha.requests()); n != 0 {
					t.Errorf("the upstream got %d requests", n)
				}
				return
			}
			hr := reqs[0].GetAttributes().GetRequest().GetHttp()
			if !bytes.Equal(hr.GetRawBody(), tc.wantRaw) || hr.GetBody() != tc.wantBody {
				t.Errorf("raw_body %q body %q, want %q %q", hr.GetRawBody(), hr.GetBody(), tc.wantRaw, tc.wantBody)
			}
			got, present := hr.GetHeaders()["x-envoy-auth-partial-body"]
			if tc.wantPartial == "" && present || tc.wantPartial != "" && got != tc.wantPartial {
				t.Errorf("x-envoy-auth-partial-body = %q (present %v), want %q", got, present, tc.wantPartial)
			}
			if up := f.alpha.last(t).Body; !bytes.Equal(up, tc.wantUpstream) {
				t.Errorf("upstream body %q, want %q", up, tc.wantUpstream)
			}
		})
	}
}

// OkHttpResponse mutations reach the upstream request (and response) with
// Envoy's append_action semantics.
func TestOkResponseMutations(t *testing.T) {
	hv := func(k, v string, a corev3.HeaderValueOption_HeaderAppendAction) *corev3.HeaderValueOption {
		return &corev3.HeaderValueOption{Header: &corev3.HeaderValue{Key: k, Value: v}, AppendAction: a}
	}
	legacy := func(k, v string, appendValue bool) *corev3.HeaderValueOption {
		//lint:ignore SA1019 the deprecated append is what this case tests
		return &corev3.HeaderValueOption{Header: &corev3.HeaderValue{Key: k, Value: v}, Append: wrapperspb.Bool(appendValue)}
	}
	cases := []struct {
		name       string
		path       string
		reqHeaders map[string][]string
		ok         *authv3.OkHttpResponse
		check      func(t *testing.T, up seen, respHeader map[string][]string)
		wantStatus int
	}{
		{
			name:       "OVERWRITE_IF_EXISTS_OR_ADD swaps the client's Authorization",
			reqHeaders: map[string][]string{"Authorization": {"Bearer client-handle"}},
			ok:         &authv3.OkHttpResponse{Headers: []*corev3.HeaderValueOption{hv("authorization", "Bearer upstream-jwt", corev3.HeaderValueOption_OVERWRITE_IF_EXISTS_OR_ADD)}},
			check: func(t *testing.T, up seen, _ map[string][]string) {
				if got := up.Header.Values("Authorization"); !slices.Equal(got, []string{"Bearer upstream-jwt"}) {
					t.Errorf("upstream Authorization %q", got)
				}
			},
		},
		{
			name:       "APPEND_IF_EXISTS_OR_ADD (the zero value) adds a second header",
			reqHeaders: map[string][]string{"X-A": {"1"}},
			ok:         &authv3.OkHttpResponse{Headers: []*corev3.HeaderValueOption{hv("x-a", "2", corev3.HeaderValueOption_APPEND_IF_EXISTS_OR_ADD)}},
			check: func(t *testing.T, up seen, _ map[string][]string) {
				if got := up.Header.Values("X-A"); !slices.Equal(got, []string{"1", "2"}) {
					t.Errorf("x-a %q", got)
				}
			},
		},
		{
			name:       "ADD_IF_ABSENT keeps an existing header and adds a missing one",
			reqHeaders: map[string][]string{"X-A": {"1"}},
			ok: &authv3.OkHttpResponse{Headers: []*corev3.HeaderValueOption{
				hv("x-a", "2", corev3.HeaderValueOption_ADD_IF_ABSENT),
				hv("x-b", "3", corev3.HeaderValueOption_ADD_IF_ABSENT),
			}},
			check: func(t *testing.T, up seen, _ map[string][]string) {
				if got := up.Header.Values("X-A"); !slices.Equal(got, []string{"1"}) {
					t.Errorf("x-a %q", got)
				}
				if got := up.Header.Values("X-B"); !slices.Equal(got, []string{"3"}) {
					t.Errorf("x-b %q", got)
				}
			},
		},
		{
			name:       "OVERWRITE_IF_EXISTS changes only an existing header",
			reqHeaders: map[string][]string{"X-A": {"1"}},
			ok: &authv3.OkHttpResponse{Headers: []*corev3.HeaderValueOption{
				hv("x-a", "2", corev3.HeaderValueOption_OVERWRITE_IF_EXISTS),
				hv("x-b", "3", corev3.HeaderValueOption_OVERWRITE_IF_EXISTS),
			}},
			check: func(t *testing.T, up seen, _ map[string][]string) {
				if got := up.Header.Values("X-A"); !slices.Equal(got, []string{"2"}) {
					t.Errorf("x-a %q", got)
				}
				if got := up.Header.Values("X-B"); len(got) != 0 {
					t.Errorf("x-b %q, want absent", got)
				}
			},
		},
		{
			name:       "deprecated append true joins onto an existing header only; false overwrites",
			reqHeaders: map[string][]string{"X-A": {"1"}, "X-C": {"old"}},
			ok: &authv3.OkHttpResponse{Headers: []*corev3.HeaderValueOption{
				legacy("x-a", "2", true),
				legacy("x-b", "3", true),
				legacy("x-c", "new", false),
			}},
			check: func(t *testing.T, up seen, _ map[string][]string) {
				if got := up.Header.Values("X-A"); !slices.Equal(got, []string{"1,2"}) {
					t.Errorf("x-a %q", got)
				}
				if got := up.Header.Values("X-B"); len(got) != 0 {
					t.Errorf("x-b %q, want absent", got)
				}
				if got := up.Header.Values("X-C"); !slices.Equal(got, []string{"new"}) {
					t.Errorf("x-c %q", got)
				}
			},
		},
		{
			name:       "headers_to_remove ignores pseudo-headers and Host",
			reqHeaders: map[string][]string{"Authorization": {"Bearer client-handle"}, "Cookie": {"a=b"}},
			ok:         &authv3.OkHttpResponse{HeadersToRemove: []string{"Authorization", "cookie", ":path", ":authority", "host"}},
			check: func(t *testing.T, up seen, _ map[string][]string) {
				if up.Header.Get("Authorization") != "" || up.Header.Get("Cookie") != "" {
					t.Errorf("headers not removed: %v", up.Header)
				}
				if up.URI != "/mcp" || up.Host != "alpha.internal" {
					t.Errorf("path %q host %q changed", up.URI, up.Host)
				}
			},
		},
		{
			name: "query_parameters_to_set and _remove",
			path: "/mcp/alpha?z=1&drop=x&a=2",
			ok: &authv3.OkHttpResponse{
				QueryParametersToSet:    []*corev3.QueryParameter{{Key: "z", Value: "9"}, {Key: "new", Value: "v"}},
				QueryParametersToRemove: []string{"drop"},
			},
			check: func(t *testing.T, up seen, _ map[string][]string) {
				// Envoy rebuilds the query from a key-ordered map.
				if up.URI != "/mcp?a=2&new=v&z=9" {
					t.Errorf("upstream URI %q", up.URI)
				}
			},
		},
		{
			name: "response_headers_to_add reach the client",
			ok: &authv3.OkHttpResponse{ResponseHeadersToAdd: []*corev3.HeaderValueOption{
				hv("x-authz", "checked", corev3.HeaderValueOption_APPEND_IF_EXISTS_OR_ADD),
				hv("mcp-session-id", "overridden", corev3.HeaderValueOption_OVERWRITE_IF_EXISTS_OR_ADD),
			}},
			check: func(t *testing.T, _ seen, resp map[string][]string) {
				if got := resp["X-Authz"]; !slices.Equal(got, []string{"checked"}) {
					t.Errorf("x-authz %q", got)
				}
				if got := resp["Mcp-Session-Id"]; !slices.Equal(got, []string{"overridden"}) {
					t.Errorf("mcp-session-id %q", got)
				}
			},
		},
		{
			name:       "an invalid header value is a 500 and nothing reaches the upstream",
			ok:         &authv3.OkHttpResponse{Headers: []*corev3.HeaderValueOption{hv("x-a", "bad\r\nvalue", corev3.HeaderValueOption_OVERWRITE_IF_EXISTS_OR_ADD)}},
			wantStatus: 500,
		},
		{
			name:       "an invalid header name is a 500",
			ok:         &authv3.OkHttpResponse{Headers: []*corev3.HeaderValueOption{hv("bad name", "v", corev3.HeaderValueOption_OVERWRITE_IF_EXISTS_OR_ADD)}},
			wantStatus: 500,
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			f := newFixture(t, nil)
			f.authz.setResponse(func(context.Context, *authv3.CheckRequest) (*authv3.CheckResponse, error) {
				return &authv3.CheckResponse{Status: &status.Status{}, HttpResponse: &authv3.CheckResponse_OkResponse{OkResponse: tc.ok}}, nil
			})
			path := tc.path
			if path == "" {
				path = "/mcp/alpha"
			}
			code, hdr, body := do(t, "POST", f.proxy.URL()+path, []byte(`{}`), tc.reqHeaders)
			want := tc.wantStatus
			if want == 0 {
				want = 200
			}
			expectStatus(t, code, want, body)
			if want != 200 {
				if n := len(f.alpha.requests()); n != 0 {
					t.Errorf("the upstream got %d requests", n)
				}
				return
			}
			tc.check(t, f.alpha.last(t), hdr)
		})
	}
}

// DeniedHttpResponse: status (0 or unset means 403), headers replacing
// same-name headers of the local reply, body as is; the upstream is not
// called.
func TestDeniedResponse(t *testing.T) {
	cases := []struct {
		name       string
		resp       *authv3.CheckResponse
		wantStatus int
		wantBody   string
		wantHeader map[string]string
	}{
		{
			name: "401 with WWW-Authenticate and a JSON body",
			resp: &authv3.CheckResponse{Status: &status.Status{Code: int32(codes.Unauthenticated)}, HttpResponse: &authv3.CheckResponse_DeniedResponse{DeniedResponse: &authv3.DeniedHttpResponse{
				Status: &typev3.HttpStatus{Code: typev3.StatusCode_Unauthorized},
				Headers: []*corev3.HeaderValueOption{
					{Header: &corev3.HeaderValue{Key: "WWW-Authenticate", Value: `Bearer resource_metadata="https://w/.well-known/oauth-protected-resource/mcp/alpha"`}},
					{Header: &corev3.HeaderValue{Key: "content-type", Value: "application/json"}},
				},
				Body: `{"error":"invalid_token"}`,
			}}},
			wantStatus: 401,
			wantBody:   `{"error":"invalid_token"}`,
			wantHeader: map[string]string{
				"Www-Authenticate": `Bearer resource_metadata="https://w/.well-known/oauth-protected-resource/mcp/alpha"`,
				"Content-Type":     "application/json",
				"Server":           "envoy",
			},
		},
		{
			name: "no HTTP status means 403",
			resp: &authv3.CheckResponse{Status: &status.Status{Code: int32(codes.PermissionDenied)}, HttpResponse: &authv3.CheckResponse_DeniedResponse{DeniedResponse: &authv3.DeniedHttpResponse{
				Body: "policy says no",
			}}},
			wantStatus: 403,
			wantBody:   "policy says no",
			wantHeader: map[string]string{"Content-Type": "text/plain"},
		},
		{
			name: "status code 0 means 403",
			resp: &authv3.CheckResponse{Status: &status.Status{Code: int32(codes.PermissionDenied)}, HttpResponse: &authv3.CheckResponse_DeniedResponse{DeniedResponse: &authv3.DeniedHttpResponse{
				Status: &typev3.HttpStatus{Code: typev3.StatusCode_Empty},
			}}},
			wantStatus: 403,
		},
		{
			name:       "a non-OK status without denied_response is a bare 403",
			resp:       &authv3.CheckResponse{Status: &status.Status{Code: int32(codes.PermissionDenied)}},
			wantStatus: 403,
		},
		{
			name: "the JSON-RPC error body of a policy denial passes through unchanged",
			resp: &authv3.CheckResponse{Status: &status.Status{Code: int32(codes.PermissionDenied)}, HttpResponse: &authv3.CheckResponse_DeniedResponse{DeniedResponse: &authv3.DeniedHttpResponse{
				Status:  &typev3.HttpStatus{Code: typev3.StatusCode_OK},
				Headers: []*corev3.HeaderValueOption{{Header: &corev3.HeaderValue{Key: "content-type", Value: "application/json"}}},
				Body:    "{\"jsonrpc\":\"2.0\",\"id\":7,\"error\":{\"code\":-32001,\"message\":\"denied: tool delete is not allowed\"}}\n",
			}}},
			wantStatus: 200,
			wantBody:   "{\"jsonrpc\":\"2.0\",\"id\":7,\"error\":{\"code\":-32001,\"message\":\"denied: tool delete is not allowed\"}}\n",
			wantHeader: map[string]string{"Content-Type": "application/json"},
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			f := newFixture(t, nil)
			f.authz.setResponse(func(context.Context, *authv3.CheckRequest) (*authv3.CheckResponse, error) { return tc.resp, nil })
			code, hdr, body := do(t, "POST", f.proxy.URL()+"/mcp/alpha", []byte(`{}`), nil)
			expectStatus(t, code, tc.wantStatus, body)
			if body != tc.wantBody {
				t.Errorf("body %q, want %q", body, tc.wantBody)
			}
			for k, v := range tc.wantHeader {
				if got := hdr.Values(k); !slices.Equal(got, []string{v}) {
					t.Errorf("header %s = %q, want exactly [%q]", k, got, v)
				}
			}
			if n := len(f.alpha.requests()); n != 0 {
				t.Errorf("the upstream got %d requests", n)
			}
		})
	}
}

// Transport errors, timeouts and error responses give status_on_error
// (default 403), unless failure_mode_allow lets the request through.
func TestAuthzErrors(t *testing.T) {
	deadPort := func(t *testing.T) string {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		addr := l.Addr().String()
		_ = l.Close()
		return addr
	}
	cases := []struct {
		name       string
		tweak      func(t *testing.T, r *resources)
		respond    func(context.Context, *authv3.CheckRequest) (*authv3.CheckResponse, error)
		wantStatus int
		wantBody   string
		wantHeader map[string]string
		wantUp     bool
		upHeader   map[string]string
	}{
		{
			name: "authz service unreachable gives status_on_error",
			tweak: func(t *testing.T, r *resources) {
				r.clusters[len(r.clusters)-2] = staticCluster(t, "warden_authz", deadPort(t), true)
			},
			wantStatus: 503,
		},
		{
			name: "authz slower than the grpc_service timeout gives status_on_error",
			tweak: func(t *testing.T, r *resources) {
				r.authz.GetGrpcService().Timeout = durationpb.New(50 * time.Millisecond)
			},
			respond: func(ctx context.Context, _ *authv3.CheckRequest) (*authv3.CheckResponse, error) {
				<-ctx.Done() // never answers before the deadline
				return nil, ctx.Err()
			},
			wantStatus: 503,
		},
		{
			name: "a gRPC error gives status_on_error",
			respond: func(context.Context, *authv3.CheckRequest) (*authv3.CheckResponse, error) {
				return nil, grpcstatus.Error(codes.Internal, "boom")
			},
			wantStatus: 503,
		},
		{
			name:  "status_on_error unset defaults to 403",
			tweak: func(t *testing.T, r *resources) { r.authz.StatusOnError = nil },
			respond: func(context.Context, *authv3.CheckRequest) (*authv3.CheckResponse, error) {
				return nil, grpcstatus.Error(codes.Unavailable, "down")
			},
			wantStatus: 403,
		},
		{
			name: "the ext_authz cluster missing from CDS gives status_on_error",
			tweak: func(t *testing.T, r *resources) {
				r.authz.GetGrpcService().GetEnvoyGrpc().ClusterName = "no_such_cluster"
			},
			wantStatus: 503,
		},
		{
			name: "error_response is an error with its own status, headers and body",
			respond: func(context.Context, *authv3.CheckRequest) (*authv3.CheckResponse, error) {
				return &authv3.CheckResponse{Status: &status.Status{Code: int32(codes.Internal)}, HttpResponse: &authv3.CheckResponse_ErrorResponse{ErrorResponse: &authv3.DeniedHttpResponse{
					Status:  &typev3.HttpStatus{Code: typev3.StatusCode_BadGateway},
					Headers: []*corev3.HeaderValueOption{{Header: &corev3.HeaderValue{Key: "x-why", Value: "store down"}}},
					Body:    "try later",
				}}}, nil
			},
			wantStatus: 502,
			wantBody:   "try later",
			wantHeader: map[string]string{"X-Why": "store down"},
		},
		{
			name: "failure_mode_allow lets the request through on error",
			tweak: func(t *testing.T, r *resources) {
				r.authz.FailureModeAllow = true
				r.authz.FailureModeAllowHeaderAdd = true
			},
			respond: func(context.Context, *authv3.CheckRequest) (*authv3.CheckResponse, error) {
				return nil, grpcstatus.Error(codes.Unavailable, "down")
			},
			wantStatus: 200,
			wantUp:     true,
			upHeader:   map[string]string{"X-Envoy-Auth-Failure-Mode-Allowed": "true"},
		},
		{
			name:  "failure_mode_allow does not turn a denial into an allow",
			tweak: func(t *testing.T, r *resources) { r.authz.FailureModeAllow = true },
			respond: func(context.Context, *authv3.CheckRequest) (*authv3.CheckResponse, error) {
				return &authv3.CheckResponse{Status: &status.Status{Code: int32(codes.PermissionDenied)}}, nil
			},
			wantStatus: 403,
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			f := newFixture(t, func(r *resources) {
				if tc.tweak != nil {
					tc.tweak(t, r)
				}
			})
			if tc.respond != nil {
				f.authz.setResponse(tc.respond)
			}
			code, hdr, body := do(t, "POST", f.proxy.URL()+"/mcp/alpha", []byte(`{}`), nil)
			expectStatus(t, code, tc.wantStatus, body)
			if tc.wantStatus != 200 && body != tc.wantBody {
				t.Errorf("body %q, want %q", body, tc.wantBody)
			}
			for k, v := range tc.wantHeader {
				if hdr.Get(k) != v {
					t.Errorf("header %s = %q, want %q", k, hdr.Get(k), v)
				}
			}
			if got := len(f.alpha.requests()) > 0; got != tc.wantUp {
				t.Fatalf("upstream called = %v, want %v", got, tc.wantUp)
			}
			for k, v := range tc.upHeader {
				if got := f.alpha.last(t).Header.Get(k); got != v {
					t.Errorf("upstream header %s = %q, want %q", k, got, v)
				}
			}
		})
	}
}

// ExtAuthzPerRoute{disabled: true} skips the filter on the OAuth routes.
func TestPerRouteDisabled(t *testing.T) {
	f := newFixture(t, nil)
	f.authz.setResponse(func(context.Context, *authv3.CheckRequest) (*authv3.CheckResponse, error) {
		return &authv3.CheckResponse{Status: &status.Status{Code: int32(codes.PermissionDenied)}}, nil
	})
	for _, p := range []string{"/.well-known/oauth-authorization-server", "/oauth/token"} {
		code, _, body := do(t, "POST", f.proxy.URL()+p, []byte("grant_type=x"), nil)
		expectStatus(t, code, 200, body)
		if got := f.warden.last(t).URI; got != p {
			t.Errorf("warden_http saw %q, want %q", got, p)
		}
	}
	if n := len(f.authz.requests()); n != 0 {
		t.Errorf("the authz service was called %d times on disabled routes", n)
	}
	code, _, _ := do(t, "POST", f.proxy.URL()+"/mcp/alpha", []byte(`{}`), nil)
	if code != 403 || len(f.authz.requests()) != 1 {
		t.Errorf("the MCP route was not checked: status %d, checks %d", code, len(f.authz.requests()))
	}
}

// context_extensions merge from the route configuration, the virtual host
// and the route, most specific winning key by key; a route-level
// disabled: false re-enables a filter disabled on the virtual host.
func TestContextExtensionsMerge(t *testing.T) {
	f := newFixture(t, func(r *resources) {
		r.routes.TypedPerFilterConfig = perRouteAuthz(t, map[string]string{"a": "config", "b": "config", "c": "config"})
		vh := r.routes.VirtualHosts[0]
		vh.TypedPerFilterConfig = perRouteAuthz(t, map[string]string{"b": "vhost", "c": "vhost"})
		vh.Routes = append([]*routev3.Route{
			{
				Match:                &routev3.RouteMatch{PathSpecifier: &routev3.RouteMatch_Path{Path: "/merged"}},
				Action:               clusterRoute("mcp_alpha"),
				TypedPerFilterConfig: perRouteAuthz(t, map[string]string{"c": "route"}),
			},
			{
				Match:  &routev3.RouteMatch{PathSpecifier: &routev3.RouteMatch_Path{Path: "/vhost-only"}},
				Action: clusterRoute("mcp_alpha"),
			},
		}, vh.Routes...)
	})
	do(t, "GET", f.proxy.URL()+"/merged", nil, nil)
	got := f.authz.last(t).GetAttributes().GetContextExtensions()
	want := map[string]string{"a": "config", "b": "vhost", "c": "route"}
	if len(got) != len(want) {
		t.Errorf("context_extensions %v, want %v", got, want)
	}
	for k, v := range want {
		if got[k] != v {
			t.Errorf("context_extensions[%s] = %q, want %q", k, got[k], v)
		}
	}
	do(t, "GET", f.proxy.URL()+"/vhost-only", nil, nil)
	got = f.authz.last(t).GetAttributes().GetContextExtensions()
	if got["b"] != "vhost" || got["c"] != "vhost" || got["a"] != "config" {
		t.Errorf("vhost-only context_extensions %v", got)
	}

	// The most specific disabled setting wins.
	f.update(t, func(r *resources) {
		vh := r.routes.VirtualHosts[0]
		vh.TypedPerFilterConfig = authzDisabled(t)
		vh.Routes[0].TypedPerFilterConfig = map[string]*anypb.Any{"envoy.filters.http.ext_authz": mustAny(t, &extauthzv3.ExtAuthzPerRoute{
			Override: &extauthzv3.ExtAuthzPerRoute_Disabled{Disabled: false},
		})}
	})
	before := len(f.authz.requests())
	do(t, "GET", f.proxy.URL()+"/vhost-only", nil, nil)
	if len(f.authz.requests()) != before {
		t.Error("the virtual host's disabled: true did not skip the filter")
	}
	do(t, "GET", f.proxy.URL()+"/merged", nil, nil)
	if len(f.authz.requests()) != before+1 {
		t.Error("the route's disabled: false did not re-enable the filter")
	}
}

// Options.DownstreamHeaders act as if the client had sent them: the
// check and the upstream see them, replacing the client's value.
func TestDownstreamHeadersOption(t *testing.T) {
	f := newFixtureWith(t, nil, Options{DownstreamHeaders: http.Header{"Authorization": {"Bearer pre-issued"}}})
	do(t, "POST", f.proxy.URL()+"/mcp/alpha", []byte(`{}`), map[string][]string{"Authorization": {"Bearer from-client"}})
	if got := f.authz.last(t).GetAttributes().GetRequest().GetHttp().GetHeaders()["authorization"]; got != "Bearer pre-issued" {
		t.Errorf("check saw authorization %q", got)
	}
	if got := f.alpha.last(t).Header.Values("Authorization"); !slices.Equal(got, []string{"Bearer pre-issued"}) {
		t.Errorf("upstream saw authorization %q", got)
	}
}
