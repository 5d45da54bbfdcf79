package main

import (
	"context"
	"encoding/json"
	"net"
	"strings"
	"testing"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"github.com/lestrrat-go/jwx/v2/jwa"
	"github.com/lestrrat-go/jwx/v2/jwt"
	"github.com/open-policy-agent/opa/v1/logging"
	"google.golang.org/genproto/googleapis/rpc/code"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
)

// startServer loads the variant's policy into the plugin stand-in and
// serves it over gRPC on a loopback port.
func startServer(t testing.TB, v variant) authv3.AuthorizationClient {
	t.Helper()
	dir := t.TempDir()
	if err := writePolicy(dir, v); err != nil {
		t.Fatal(err)
	}
	p, err := loadPlugin(t.Context(), dir, decision, logging.NewNoOpLogger())
	if err != nil {
		t.Fatal(err)
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := newGRPCServer(p, 0)
	go func() { _ = s.Serve(l) }()
	t.Cleanup(s.Stop)
	cc, err := grpc.NewClient(l.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cc.Close() })
	return authv3.NewAuthorizationClient(cc)
}

func withHeaders(req *authv3.CheckRequest, kv ...string) *authv3.CheckRequest {
	h := req.Attributes.Request.Http.Headers
	for i := 0; i+1 < len(kv); i += 2 {
		if kv[i+1] == "" {
			delete(h, kv[i])
		} else {
			h[kv[i]] = kv[i+1]
		}
	}
	return req
}

func withBody(req *authv3.CheckRequest, body string) *authv3.CheckRequest {
	req.Attributes.Request.Http.RawBody = []byte(body)
	return req
}

func TestCheckEvaluatesPolicy(t *testing.T) {
	for _, name := range []string{"jwt-hs256", "jwt-es256", "header"} {
		t.Run(name, func(t *testing.T) {
			v, err := newVariant(name)
			if err != nil {
				t.Fatal(err)
			}
			client := startServer(t, v)
			cases := []struct {
				name       string
				req        *authv3.CheckRequest
				wantAllow  bool
				wantStatus int32  // HTTP status of a denial
				wantBody   string // substring of a denial's body
			}{
				{name: "allowed tool", req: checkRequest(1, "echo", v.headers), wantAllow: true},
				{name: "second allowed tool", req: checkRequest(1, "run_sql", v.headers), wantAllow: true},
				{name: "tool of another group", req: checkRequest(1, "deploy", v.headers), wantStatus: 403, wantBody: `"message":"tool deploy not allowed"`},
				{name: "unknown tool", req: checkRequest(1, "rm_rf", v.headers), wantStatus: 403, wantBody: `"id":7`},
				{name: "not a tool call", req: withBody(checkRequest(1, "", v.headers), `{"jsonrpc":"2.0","id":1,"method":"tools/list"}`), wantAllow: true},
				{name: "batch hiding a denied tool", req: withBody(checkRequest(1, "", v.headers),
					`[{"jsonrpc":"2.0","id":1,"method":"tools/list"},{"jsonrpc":"2.0","id":2,"method":"tools/call","params":{"name":"deploy"}}]`),
					wantStatus: 403, wantBody: "tool deploy not allowed"},
				{name: "truncated body", req: withHeaders(checkRequest(1, "echo", v.headers), "x-envoy-auth-partial-body", "true"), wantStatus: 413},
				{name: "content-length beyond the body", req: withHeaders(checkRequest(1, "echo", v.headers), "content-length", "100000"), wantStatus: 413},
				{name: "no identity", req: checkRequest(1, "echo", nil), wantStatus: 401},
				{name: "bad identity", req: checkRequest(1, "echo", v.badHeaders), wantStatus: 401},
				{name: "malformed JSON body", req: withBody(checkRequest(1, "", v.headers), `{"jsonrpc":`), wantStatus: 400},
			}
			for _, tc := range cases {
				t.Run(tc.name, func(t *testing.T) {
					resp, err := client.Check(t.Context(), tc.req)
					if err != nil {
						t.Fatal(err)
					}
					// As in the plugin, only an evaluated request gets a
					// decision ID; an input error is answered before that.
					if _, ok := resp.GetDynamicMetadata().GetFields()["decision_id"]; !ok && tc.wantStatus != 400 {
						t.Error("no decision_id in dynamic metadata")
					}
					if tc.wantAllow {
						ok := resp.GetOkResponse()
						if ok == nil || resp.GetStatus().GetCode() != int32(code.Code_OK) {
							t.Fatalf("denied, want allowed: %v", resp)
						}
						if got := header(ok.GetHeaders(), "x-mcp-subject"); got != subject {
							t.Errorf("x-mcp-subject = %q, want %q", got, subject)
						}
						if len(ok.GetHeadersToRemove()) != 1 || ok.GetHeadersToRemove()[0] != "authorization" {
							t.Errorf("headers to remove = %v, want [authorization]", ok.GetHeadersToRemove())
						}
						return
					}
					d := resp.GetDeniedResponse()
					if d == nil || resp.GetStatus().GetCode() != int32(code.Code_PERMISSION_DENIED) {
						t.Fatalf("allowed, want denied: %v", resp)
					}
					if got := int32(d.GetStatus().GetCode()); got != tc.wantStatus {
						t.Errorf("HTTP status %d, want %d (body %q)", got, tc.wantStatus, d.GetBody())
					}
					if !strings.Contains(d.GetBody(), tc.wantBody) {
						t.Errorf("body %q lacks %q", d.GetBody(), tc.wantBody)
					}
				})
			}
		})
	}
}

// TestExpiredJWTDenied shows the JWT variant checks expiry, not only the
// signature.
func TestExpiredJWTDenied(t *testing.T) {
	v, err := newVariant("jwt-hs256")
	if err != nil {
		t.Fatal(err)
	}
	client := startServer(t, v)
	secret := v.jwt["constraints"].(map[string]any)["secret"].(string)
	past := time.Now().Add(-2 * time.Hour)
	tok, err := jwt.NewBuilder().Issuer(issuer).Audience([]string{audience}).Subject(subject).
		IssuedAt(past).Expiration(past.Add(time.Hour)).Claim("groups", []string{"finance"}).Build()
	if err != nil {
		t.Fatal(err)
	}
	signed, err := jwt.Sign(tok, jwt.WithKey(jwa.HS256, []byte(secret)))
	if err != nil {
		t.Fatal(err)
	}
	resp, err := client.Check(t.Context(), checkRequest(1, "echo", map[string]string{"authorization": "Bearer " + string(signed)}))
	if err != nil {
		t.Fatal(err)
	}
	if got := resp.GetDeniedResponse().GetStatus().GetCode(); got != 401 {
		t.Fatalf("expired token: HTTP %d, want 401", got)
	}
}

// TestInputShape pins the parts of the input the policy relies on, in the
// shape the plugin produces.
func TestInputShape(t *testing.T) {
	req := checkRequest(3, "echo", map[string]string{"authorization": "Bearer x"})
	req.Attributes.Request.Http.Path = "/mcp/bi?a=1&a=2"
	in, err := requestToInput(req)
	if err != nil {
		t.Fatal(err)
	}
	raw, err := json.Marshal(in)
	if err != nil {
		t.Fatal(err)
	}
	var got struct {
		Attributes struct {
			Request struct {
				HTTP struct {
					Method  string            `json:"method"`
					Headers map[string]string `json:"headers"`
					RawBody []byte            `json:"rawBody"`
				} `json:"http"`
			} `json:"request"`
			ContextExtensions map[string]string `json:"contextExtensions"`
		} `json:"attributes"`
		ParsedPath  []string            `json:"parsed_path"`
		ParsedQuery map[string][]string `json:"parsed_query"`
		ParsedBody  struct {
			Method string `json:"method"`
			Params struct {
				Name string `json:"name"`
			} `json:"params"`
		} `json:"parsed_body"`
		Truncated *bool `json:"truncated_body"`
	}
	if err := json.Unmarshal(raw, &got); err != nil {
		t.Fatal(err)
	}
	h := got.Attributes.Request.HTTP
	switch {
	case h.Method != "POST" || h.Headers["authorization"] != "Bearer x" || len(h.RawBody) == 0:
		t.Errorf("attributes.request.http = %+v", h)
	case got.Attributes.ContextExtensions["server"] != "bi":
		t.Errorf("contextExtensions = %v", got.Attributes.ContextExtensions)
	case strings.Join(got.ParsedPath, "/") != "mcp/bi":
		t.Errorf("parsed_path = %v", got.ParsedPath)
	case strings.Join(got.ParsedQuery["a"], ",") != "1,2":
		t.Errorf("parsed_query = %v", got.ParsedQuery)
	case got.ParsedBody.Method != "tools/call" || got.ParsedBody.Params.Name != "echo":
		t.Errorf("parsed_body = %+v", got.ParsedBody)
	case got.Truncated == nil || *got.Truncated:
		t.Errorf("truncated_body = %v", got.Truncated)
	}
}

func header(hs []*corev3.HeaderValueOption, k string) string {
	for _, h := range hs {
		if h.GetHeader().GetKey() == k {
			return h.GetHeader().GetValue()
		}
	}
	return ""
}

// BenchmarkCheck is the plugin stand-in's Check in process (no gRPC) on
// the allow path, per identity variant.
func BenchmarkCheck(b *testing.B) {
	for _, name := range []string{"jwt-hs256", "jwt-es256", "header"} {
		b.Run(name, func(b *testing.B) {
			v, err := newVariant(name)
			if err != nil {
				b.Fatal(err)
			}
			dir := b.TempDir()
			if err := writePolicy(dir, v); err != nil {
				b.Fatal(err)
			}
			p, err := loadPlugin(b.Context(), dir, decision, logging.NewNoOpLogger())
			if err != nil {
				b.Fatal(err)
			}
			req := checkRequest(1, "echo", v.headers)
			b.ReportAllocs()
			for b.Loop() {
				resp, err := p.Check(context.Background(), req)
				if err != nil || resp.GetOkResponse() == nil {
					b.Fatalf("not allowed: %v %v", resp, err)
				}
			}
		})
	}
}
