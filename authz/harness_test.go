package authz_test

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"log/slog"

	"github.com/warden-mcp/warden/authz"
	"github.com/warden-mcp/warden/internal/audit"
	"github.com/warden-mcp/warden/internal/handle"
	"github.com/warden-mcp/warden/internal/keys"
	"github.com/warden-mcp/warden/internal/registry"
	"github.com/warden-mcp/warden/internal/seal"
	"github.com/warden-mcp/warden/internal/store"
	"github.com/warden-mcp/warden/policy"
)

const publicURL = "https://mcp.example.com"

func resourceURL(s string) string { return publicURL + "/mcp/" + s }
func prmURL(s string) string {
	return publicURL + "/.well-known/oauth-protected-resource/mcp/" + s
}

// env is a running ext_authz server on loopback with real components.
type env struct {
	t        testing.TB
	service  *authz.Service
	st       *store.Badger
	trail    *audit.Trail
	reg      *registry.Registry
	signer   *keys.Signer
	client   authv3.AuthorizationClient
	logs     *syncBuffer
	metrics  *prometheus.Registry
	opts     authz.Options
	tokens   []string // every raw token minted, to grep logs for leaks
	stopOnce sync.Once
	stop     func()
}

type envOption func(*authz.Options)

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

func newEnv(t testing.TB, opts ...envOption) *env {
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
	metrics := prometheus.NewRegistry()
	engine, err := policy.New(policy.Options{Dir: "testdata/policy", Logger: log, Registerer: metrics})
	if err != nil {
		t.Fatal(err)
	}
	att, err := authz.NewAttacher(authz.AttacherOptions{
		Signer: signer, Opener: ring, Issuer: publicURL, ResourceURL: resourceURL, TTL: 5 * time.Minute,
		SubjectHeader: "x-warden-subject", ClientHeader: "x-warden-client",
	})
	if err != nil {
		t.Fatal(err)
	}
	o := authz.Options{
		Resolver: st, Servers: catalog, Policy: engine, Audit: trail, Attacher: att,
		ResourceURL: resourceURL, ResourceMetadataURL: prmURL, PublicURL: publicURL, MaxBodyBytes: 4096,
		Timeout: 5 * time.Second, Metrics: authz.NewMetrics(metrics), Logger: log,
	}
	for _, fn := range opts {
		fn(&o)
	}
	svc, err := authz.New(o)
	if err != nil {
		t.Fatal(err)
	}
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	gs := grpc.NewServer(authz.ServerOptions(1 << 20)...)
	authv3.RegisterAuthorizationServer(gs, svc)
	go func() { _ = gs.Serve(lis) }()
	conn, err := grpc.NewClient(lis.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	e := &env{t: t, service: svc, st: st, trail: trail, reg: reg, signer: signer, client: authv3.NewAuthorizationClient(conn), logs: logs, metrics: metrics, opts: o}
	e.stop = func() {
		_ = conn.Close()
		gs.Stop()
		// A test may have broken the store on purpose; do not wait for
		// the trail to drain into it forever.
		ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
		defer cancel()
		_ = trail.Close(ctx)
		_ = st.Close()
	}
	t.Cleanup(func() { e.stopOnce.Do(e.stop) })
	return e
}

func (e *env) addServer(spec registry.Spec) {
	e.t.Helper()
	if _, err := e.reg.Add(context.Background(), "test", spec); err != nil {
		e.t.Fatal(err)
	}
}

type tokenSpec struct {
	subject, client string
	servers         []string // resources the handle is bound to
	grantServers    []string // defaults to servers
	scopes          []string
	kind            store.HandleKind
	ttl             time.Duration
	groups          []string
	clientKind      store.Kind // default store.KindUser
	claims          map[string]any
}

// mint stores a grant and a handle the way the OAuth server does and
// returns the raw handle.
func (e *env) mint(ts tokenSpec) (raw string, grantID string) {
	e.t.Helper()
	ctx := context.Background()
	if ts.subject == "" {
		ts.subject = "alice"
	}
	if ts.client == "" {
		ts.client = "client-1"
	}
	if ts.kind == "" {
		ts.kind = store.HandleAccess
	}
	if ts.ttl == 0 {
		ts.ttl = 10 * time.Minute
	}
	if ts.grantServers == nil {
		ts.grantServers = ts.servers
	}
	var resources []string
	for _, s := range ts.servers {
		resources = append(resources, resourceURL(s))
	}
	gid, _ := handle.New("g_")
	if ts.clientKind == "" {
		ts.clientKind = store.KindUser
	}
	g := store.Grant{ID: gid[:24], Subject: ts.subject, Email: ts.subject + "@example.com", Groups: ts.groups, Claims: ts.claims, ClientID: ts.client, ClientName: "Test Client",
		Kind: ts.clientKind, Scopes: ts.scopes, Resources: resources, Servers: ts.grantServers, CreatedAt: time.Now()}
	if err := e.st.CreateGrant(ctx, g); err != nil {
		e.t.Fatal(err)
	}
	raw, digest := handle.New(handle.PrefixAccess)
	h := store.Handle{Digest: digest, Kind: ts.kind, GrantID: g.ID, ClientID: ts.client, Resources: resources, Scopes: ts.scopes,
		IssuedAt: time.Now(), ExpiresAt: time.Now().Add(ts.ttl)}
	if err := e.st.CreateHandle(ctx, h); err != nil {
		e.t.Fatal(err)
	}
	e.tokens = append(e.tokens, raw)
	return raw, g.ID
}

// req builds a CheckRequest the way Envoy's ext_authz HTTP filter does:
// lowercased header keys with pseudo-headers, x-request-id, raw_body
// (pack_as_bytes) and the route's context_extensions.
type req struct {
	method, path string
	token        string
	authz        string // raw Authorization header value, overrides token
	body         string
	server       string
	headers      map[string]string
	partial      bool
	noServer     bool
	useBodyField bool
}

var reqSeq atomic.Int64

func (r req) build() *authv3.CheckRequest {
	if r.method == "" {
		r.method = "POST"
	}
	if r.server == "" && !r.noServer {
		r.server = "bi"
	}
	if r.path == "" {
		r.path = "/mcp/" + r.server
	}
	id := fmt.Sprintf("req-%d", reqSeq.Add(1))
	h := map[string]string{
		":method": r.method, ":path": r.path, ":authority": "mcp.example.com", ":scheme": "https",
		"x-request-id": id, "content-type": "application/json", "accept": "application/json, text/event-stream",
		"user-agent": "mcp-client/1.0", "x-forwarded-proto": "https",
		"x-envoy-auth-partial-body": "false",
	}
	if r.partial {
		h["x-envoy-auth-partial-body"] = "true"
	}
	if r.token != "" {
		h["authorization"] = "Bearer " + r.token
	}
	if r.authz != "" {
		h["authorization"] = r.authz
	}
	for k, v := range r.headers {
		h[k] = v
	}
	httpReq := &authv3.AttributeContext_HttpRequest{
		Id: id, Method: r.method, Path: r.path, Host: "mcp.example.com", Scheme: "https", Protocol: "HTTP/1.1",
		Headers: h, Size: int64(len(r.body)),
	}
	if r.useBodyField {
		httpReq.Body = r.body
	} else {
		httpReq.RawBody = []byte(r.body)
	}
	ce := map[string]string{}
	if !r.noServer {
		ce["server"] = r.server
	}
	return &authv3.CheckRequest{Attributes: &authv3.AttributeContext{
		Source:            &authv3.AttributeContext_Peer{Address: &corev3.Address{Address: &corev3.Address_SocketAddress{SocketAddress: &corev3.SocketAddress{Address: "10.0.0.7", PortSpecifier: &corev3.SocketAddress_PortValue{PortValue: 51000}}}}},
		Request:           &authv3.AttributeContext_Request{Http: httpReq},
		ContextExtensions: ce,
	}}
}

func (e *env) check(r req) *authv3.CheckResponse {
	e.t.Helper()
	resp, err := e.client.Check(context.Background(), r.build())
	if err != nil {
		e.t.Fatalf("Check returned a gRPC error (must always answer with a CheckResponse): %v", err)
	}
	return resp
}

// waitAudit waits until n decision events are stored.
func (e *env) auditEvents(t testing.TB, n int) []store.AuditEvent {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		evs, err := e.st.ListAudit(context.Background(), 0, 0)
		if err != nil {
			t.Fatal(err)
		}
		var dec []store.AuditEvent
		for _, ev := range evs {
			if ev.Type == "decision" {
				dec = append(dec, ev)
			}
		}
		if len(dec) >= n || time.Now().After(deadline) {
			return dec
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func header(hs []*corev3.HeaderValueOption, key string) (string, *corev3.HeaderValueOption) {
	for _, h := range hs {
		if h.GetHeader().GetKey() == key {
			return h.GetHeader().GetValue(), h
		}
	}
	return "", nil
}
