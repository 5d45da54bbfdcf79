package extproc_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	extprocv3 "github.com/envoyproxy/go-control-plane/envoy/service/ext_proc/v3"
	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/protobuf/types/known/structpb"

	"github.com/warden-mcp/warden/authz"
	"github.com/warden-mcp/warden/extproc"
	"github.com/warden-mcp/warden/internal/audit"
	"github.com/warden-mcp/warden/internal/handle"
	"github.com/warden-mcp/warden/internal/keys"
	"github.com/warden-mcp/warden/internal/mcptask"
	"github.com/warden-mcp/warden/internal/registry"
	"github.com/warden-mcp/warden/internal/seal"
	"github.com/warden-mcp/warden/internal/store"
	"github.com/warden-mcp/warden/internal/toolpin"
	"github.com/warden-mcp/warden/policy"
)

const publicURL = "https://mcp.example.com"

func resourceURL(s string) string { return publicURL + "/mcp/" + s }
func prmURL(s string) string      { return publicURL + "/.well-known/oauth-protected-resource/mcp/" + s }

// testPolicy: staff may call the tools in data.staff_tools, admins every
// tool; prompts and resources under file:///public/ are for everyone;
// a tool whose definition changed is refused (warn mode lets policy see it).
const testPolicy = `package warden.authz

default decision := {"allow": false, "reason": "not allowed"}

decision := {"allow": true} if {
	input.mcp.method == "tools/call"
	input.mcp.tool in data.staff_tools
	"staff" in input.subject.groups
	not input.tool.changed
}

decision := {"allow": true} if {
	input.mcp.method == "tools/call"
	"admins" in input.subject.groups
}

decision := {"allow": true} if input.mcp.method in {"tools/list", "prompts/list", "resources/list", "resources/templates/list", "prompts/get", "subscriptions/listen"}

decision := {"allow": true} if {
	input.mcp.method == "resources/read"
	startswith(input.mcp.resource, "file:///public/")
}
`

// env runs ext_authz and ext_proc on one gRPC server, as warden serve
// does, over a real Badger store, audit trail, registry and policy.
type env struct {
	t      testing.TB
	st     *store.Badger
	reg    *registry.Registry
	pins   *toolpin.Pins
	tasks  *mcptask.Store
	authz  authv3.AuthorizationClient
	proc   extprocv3.ExternalProcessorClient
	svc    *authz.Service
	logs   *syncBuffer
	tokens []string
}

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

func newEnv(t testing.TB) *env {
	t.Helper()
	return newEnvPolicy(t, testPolicy)
}

// newEnvPolicy is newEnv with policyText in place of testPolicy.
func newEnvPolicy(t testing.TB, policyText string) *env {
	t.Helper()
	ctx := context.Background()
	st, err := store.OpenBadger(t.TempDir(), store.BadgerOptions{})
	if err != nil {
		t.Fatal(err)
	}
	logs := &syncBuffer{}
	log := slog.New(slog.NewJSONHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	trail, err := audit.Open(ctx, st, audit.Options{Sink: logs, Logger: log})
	if err != nil {
		t.Fatal(err)
	}
	key, _ := seal.Generate()
	ring, _ := seal.New("k1", map[string][]byte{"k1": key})
	reg := registry.New(st, trail, ring, nil)
	catalog := authz.NewCatalog(reg)
	reg.OnChange(catalog.Invalidate)
	signer, err := keys.NewEphemeral()
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	for name, content := range map[string]string{"p.rego": policyText, "data.json": `{"staff_tools": ["run_sql", "export", "lookup"]}`} {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	metrics := prometheus.NewRegistry()
	engine, err := policy.New(policy.Options{Dir: dir, Logger: log, Registerer: metrics})
	if err != nil {
		t.Fatal(err)
	}
	att, err := authz.NewAttacher(authz.AttacherOptions{Signer: signer, Opener: ring, Issuer: publicURL, ResourceURL: resourceURL, TTL: 5 * time.Minute})
	if err != nil {
		t.Fatal(err)
	}
	pins, err := toolpin.New(toolpin.Options{Store: st, Audit: trail, Registerer: metrics, Logger: log,
		Setting: func(ctx context.Context, server string) (toolpin.Setting, error) {
			srv, err := catalog.Server(ctx, server)
			if err != nil {
				return toolpin.Setting{}, err
			}
			return toolpin.ParseSetting(srv.Pinning, srv.PinNewTools)
		}})
	if err != nil {
		t.Fatal(err)
	}
	// As warden serve does: a removed server's pins leave the memory too.
	reg.OnRemove(func(_ context.Context, _, name string) error { pins.Forget(name); return nil })
	tasks := mcptask.New(st, mcptask.Options{})
	svc, err := authz.New(authz.Options{
		Resolver: st, Servers: catalog, Policy: engine, Audit: trail, Attacher: att,
		ResourceURL: resourceURL, ResourceMetadataURL: prmURL, PublicURL: publicURL, MaxBodyBytes: 1 << 20,
		Timeout: 5 * time.Second, Logger: log, Tasks: tasks, Arguments: tasks, ToolHeaders: pins, Pins: pins,
	})
	if err != nil {
		t.Fatal(err)
	}
	ep, err := extproc.New(extproc.Options{Callers: svc, Policy: engine, Pins: pins, Tasks: tasks, Registerer: metrics, Logger: log, LiveEvery: -1})
	if err != nil {
		t.Fatal(err)
	}
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	gs := grpc.NewServer(authz.ServerOptions(4 << 20)...)
	authv3.RegisterAuthorizationServer(gs, svc)
	extprocv3.RegisterExternalProcessorServer(gs, ep)
	go func() { _ = gs.Serve(lis) }()
	conn, err := grpc.NewClient(lis.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	e := &env{t: t, st: st, reg: reg, pins: pins, tasks: tasks, authz: authv3.NewAuthorizationClient(conn),
		proc: extprocv3.NewExternalProcessorClient(conn), svc: svc, logs: logs}
	t.Cleanup(func() {
		_ = conn.Close()
		gs.Stop()
		ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
		defer cancel()
		_ = trail.Close(ctx)
		_ = st.Close()
		for _, tok := range e.tokens {
			if strings.Contains(logs.String(), tok) {
				t.Errorf("a raw token reached the logs or audit sink")
			}
		}
	})
	return e
}

func (e *env) addServer(spec registry.Spec) {
	e.t.Helper()
	if spec.Credential == "" {
		spec.Credential = "none"
	}
	if _, err := e.reg.Add(context.Background(), "test", spec); err != nil {
		e.t.Fatal(err)
	}
}

// mint stores a grant and an access handle for subject in groups on bi.
func (e *env) mint(subject string, groups ...string) (raw, grantID string) {
	e.t.Helper()
	ctx := context.Background()
	gid, _ := handle.New("g_")
	g := store.Grant{ID: gid[:24], Subject: subject, Groups: groups, ClientID: "client-1", ClientName: "Test", Kind: store.KindUser,
		Resources: []string{resourceURL("bi")}, Servers: []string{"bi"}, CreatedAt: time.Now()}
	if err := e.st.CreateGrant(ctx, g); err != nil {
		e.t.Fatal(err)
	}
	raw, digest := handle.New(handle.PrefixAccess)
	h := store.Handle{Digest: digest, Kind: store.HandleAccess, GrantID: g.ID, ClientID: "client-1", Resources: g.Resources,
		IssuedAt: time.Now(), ExpiresAt: time.Now().Add(10 * time.Minute)}
	if err := e.st.CreateHandle(ctx, h); err != nil {
		e.t.Fatal(err)
	}
	e.tokens = append(e.tokens, raw)
	return raw, g.ID
}

var seq atomic.Int64

// check sends a Check for body as Envoy's ext_authz filter does.
func (e *env) check(token, body string, headers map[string]string) *authv3.CheckResponse {
	e.t.Helper()
	id := fmt.Sprintf("req-%d", seq.Add(1))
	h := map[string]string{":method": "POST", ":path": "/mcp/bi", ":authority": "mcp.example.com", ":scheme": "https",
		"x-request-id": id, "content-type": "application/json", "authorization": "Bearer " + token, "x-envoy-auth-partial-body": "false"}
	for k, v := range headers {
		h[k] = v
	}
	resp, err := e.authz.Check(context.Background(), &authv3.CheckRequest{Attributes: &authv3.AttributeContext{
		Request: &authv3.AttributeContext_Request{Http: &authv3.AttributeContext_HttpRequest{
			Id: id, Method: "POST", Path: "/mcp/bi", Host: "mcp.example.com", Scheme: "https", Headers: h, RawBody: []byte(body)}},
		ContextExtensions: map[string]string{"server": "bi"},
	}})
	if err != nil {
		e.t.Fatal(err)
	}
	return resp
}

// metadataContext is what Envoy's ext_proc filter sends with each
// message when metadata_options.forwarding_namespaces.untyped names the
// ext_authz namespace: the Check's dynamic_metadata under it.
func metadataContext(resp *authv3.CheckResponse) *corev3.Metadata {
	md := resp.GetDynamicMetadata()
	if md == nil {
		return nil
	}
	return &corev3.Metadata{FilterMetadata: map[string]*structpb.Struct{authz.MetadataNamespace: md}}
}

// exchange runs one ext_proc stream: response headers, then the body in
// chunks (one chunk: BUFFERED), and returns the answers.
type exchangeResult struct {
	headers *extprocv3.ProcessingResponse
	bodies  []*extprocv3.ProcessingResponse
}

func (e *env) process(md *corev3.Metadata, status, contentType string, chunks ...string) exchangeResult {
	e.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	stream, err := e.proc.Process(ctx)
	if err != nil {
		e.t.Fatal(err)
	}
	hm := &corev3.HeaderMap{Headers: []*corev3.HeaderValue{
		{Key: ":status", RawValue: []byte(status)}, {Key: "content-type", RawValue: []byte(contentType)},
		{Key: "content-length", RawValue: []byte("123")},
	}}
	if err := stream.Send(&extprocv3.ProcessingRequest{MetadataContext: md, Request: &extprocv3.ProcessingRequest_ResponseHeaders{
		ResponseHeaders: &extprocv3.HttpHeaders{Headers: hm}}}); err != nil {
		e.t.Fatal(err)
	}
	var r exchangeResult
	if r.headers, err = stream.Recv(); err != nil {
		e.t.Fatal(err)
	}
	if r.headers.GetImmediateResponse() != nil || r.headers.GetModeOverride() == nil {
		_ = stream.CloseSend()
		return r
	}
	for i, c := range chunks {
		if err := stream.Send(&extprocv3.ProcessingRequest{MetadataContext: md, Request: &extprocv3.ProcessingRequest_ResponseBody{
			ResponseBody: &extprocv3.HttpBody{Body: []byte(c), EndOfStream: i == len(chunks)-1}}}); err != nil {
			e.t.Fatal(err)
		}
		b, err := stream.Recv()
		if err != nil {
			e.t.Fatal(err)
		}
		r.bodies = append(r.bodies, b)
	}
	_ = stream.CloseSend()
	return r
}

// body applies the body answers to the chunks as Envoy does: a mutation
// replaces its chunk, none leaves it.
func (r exchangeResult) body(chunks ...string) string {
	var b strings.Builder
	for i, resp := range r.bodies {
		m := resp.GetResponseBody().GetResponse().GetBodyMutation()
		switch {
		case m == nil:
			b.WriteString(chunks[i])
		case m.GetClearBody():
		default:
			b.Write(m.GetBody())
		}
	}
	return b.String()
}

func tool(name, desc string) map[string]any {
	return map[string]any{"name": name, "description": desc, "inputSchema": map[string]any{"type": "object"}}
}

func listResult(id int, key string, items []map[string]any, extra map[string]any) string {
	res := map[string]any{key: items}
	for k, v := range extra {
		res[k] = v
	}
	b, _ := json.Marshal(map[string]any{"jsonrpc": "2.0", "id": id, "result": res})
	return string(b)
}

func names(t testing.TB, body, key string) []string {
	t.Helper()
	var m struct {
		Result map[string]json.RawMessage `json:"result"`
		Error  *struct{ Message string }  `json:"error"`
	}
	if err := json.Unmarshal([]byte(body), &m); err != nil {
		t.Fatalf("body %q: %v", body, err)
	}
	if m.Error != nil {
		t.Fatalf("body is an error: %s", m.Error.Message)
	}
	var items []struct {
		Name string `json:"name"`
		URI  string `json:"uri"`
		T    string `json:"uriTemplate"`
	}
	if err := json.Unmarshal(m.Result[key], &items); err != nil {
		t.Fatalf("result.%s: %v", key, err)
	}
	out := []string{}
	for _, it := range items {
		out = append(out, it.Name+it.URI+it.T)
	}
	return out
}
