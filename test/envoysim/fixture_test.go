package envoysim

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"io"
	"math/big"
	"net"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	endpointv3 "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"
	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	extauthzv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/ext_authz/v3"
	routerv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/router/v3"
	hcmv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	tlsv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/transport_sockets/tls/v3"
	httpv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/upstreams/http/v3"
	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	discoveryv3 "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	procv3 "github.com/envoyproxy/go-control-plane/envoy/service/ext_proc/v3"
	typev3 "github.com/envoyproxy/go-control-plane/envoy/type/v3"
	"github.com/envoyproxy/go-control-plane/pkg/cache/types"
	cachev3 "github.com/envoyproxy/go-control-plane/pkg/cache/v3"
	serverv3 "github.com/envoyproxy/go-control-plane/pkg/server/v3"
	"google.golang.org/genproto/googleapis/rpc/status"
	"google.golang.org/grpc"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/anypb"
	"google.golang.org/protobuf/types/known/durationpb"
)

const testNode = "envoysim-test"

// adsServer is a real go-control-plane ADS server on loopback.
type adsServer struct {
	cache cachev3.SnapshotCache
	addr  string
	srv   serverv3.Server
	g     *grpc.Server

	mu      sync.Mutex
	reqs    []*discoveryv3.DiscoveryRequest
	changed chan struct{}
}

func startADS(t *testing.T) *adsServer {
	t.Helper()
	a := &adsServer{cache: cachev3.NewSnapshotCache(true, cachev3.IDHash{}, nil), changed: make(chan struct{})}
	cb := serverv3.CallbackFuncs{
		StreamRequestFunc: func(_ int64, r *discoveryv3.DiscoveryRequest) error {
			a.mu.Lock()
			a.reqs = append(a.reqs, proto.Clone(r).(*discoveryv3.DiscoveryRequest))
			close(a.changed)
			a.changed = make(chan struct{})
			a.mu.Unlock()
			return nil
		},
	}
	ctx, cancel := context.WithCancel(context.Background())
	a.srv = serverv3.NewServer(ctx, a.cache, cb)
	a.serve(t, "127.0.0.1:0")
	t.Cleanup(func() {
		cancel()
		a.g.Stop()
	})
	return a
}

func (a *adsServer) serve(t *testing.T, addr string) {
	t.Helper()
	g := grpc.NewServer()
	discoveryv3.RegisterAggregatedDiscoveryServiceServer(g, a.srv)
	lis, err := net.Listen("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	a.addr = lis.Addr().String()
	a.g = g
	go func() { _ = g.Serve(lis) }()
}

// restart stops the gRPC server, dropping the proxy's stream, and serves
// again on the same address with the same cache.
func (a *adsServer) restart(t *testing.T) {
	t.Helper()
	a.g.Stop()
	a.serve(t, a.addr)
}

// requests returns what the proxy sent, oldest first.
func (a *adsServer) requests() []*discoveryv3.DiscoveryRequest {
	a.mu.Lock()
	defer a.mu.Unlock()
	return append([]*discoveryv3.DiscoveryRequest(nil), a.reqs...)
}

// waitFor blocks until the server received a request matching pred; the
// server records requests asynchronously from the proxy's sends.
// Only requests from index from on are considered.
func (a *adsServer) waitFor(t *testing.T, what string, from int, pred func(*discoveryv3.DiscoveryRequest) bool) *discoveryv3.DiscoveryRequest {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 20*time.Second)
	defer cancel()
	for {
		a.mu.Lock()
		ch := a.changed
		for i, r := range a.reqs {
			if i >= from && pred(r) {
				a.mu.Unlock()
				return r
			}
		}
		a.mu.Unlock()
		select {
		case <-ctx.Done():
			t.Fatalf("the ADS server never received %s", what)
		case <-ch:
		}
	}
}

// push publishes a snapshot. good snapshots must be consistent and pass
// ValidateAll, as Warden's own are; bad ones skip the checks on purpose.
func (a *adsServer) push(t *testing.T, version string, r *resources, good bool) {
	t.Helper()
	res := map[string][]types.Resource{
		ListenerType: {r.buildListener(t, good)},
		RouteType:    {r.routes},
		ClusterType:  nil,
	}
	for _, c := range r.clusters {
		res[ClusterType] = append(res[ClusterType], c)
	}
	snap, err := cachev3.NewSnapshot(version, res)
	if err != nil {
		t.Fatal(err)
	}
	if good {
		if err := snap.Consistent(); err != nil {
			t.Fatalf("snapshot %s is not consistent: %v", version, err)
		}
		for _, rs := range res {
			for _, m := range rs {
				if err := m.(interface{ ValidateAll() error }).ValidateAll(); err != nil {
					t.Fatalf("snapshot %s: %v", version, err)
				}
			}
		}
	}
	if err := a.cache.SetSnapshot(context.Background(), testNode, snap); err != nil {
		t.Fatal(err)
	}
}

// authzServer is a real envoy.service.auth.v3.Authorization server with
// scripted answers that records every CheckRequest.
type authzServer struct {
	authv3.UnimplementedAuthorizationServer
	addr string

	mu      sync.Mutex
	reqs    []*authv3.CheckRequest
	respond func(context.Context, *authv3.CheckRequest) (*authv3.CheckResponse, error)

	// proc is the external processor served on the same gRPC server, as
	// Warden serves both.
	proc *procServer
}

func startAuthz(t *testing.T) *authzServer {
	t.Helper()
	s := &authzServer{proc: &procServer{}}
	g := grpc.NewServer()
	authv3.RegisterAuthorizationServer(g, s)
	procv3.RegisterExternalProcessorServer(g, s.proc)
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s.addr = lis.Addr().String()
	go func() { _ = g.Serve(lis) }()
	t.Cleanup(g.Stop)
	return s
}

func (s *authzServer) Check(ctx context.Context, req *authv3.CheckRequest) (*authv3.CheckResponse, error) {
	s.mu.Lock()
	s.reqs = append(s.reqs, req)
	respond := s.respond
	s.mu.Unlock()
	if respond == nil {
		return allow(), nil
	}
	return respond(ctx, req)
}

func (s *authzServer) setResponse(f func(context.Context, *authv3.CheckRequest) (*authv3.CheckResponse, error)) {
	s.mu.Lock()
	s.respond = f
	s.mu.Unlock()
}

func (s *authzServer) requests() []*authv3.CheckRequest {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]*authv3.CheckRequest(nil), s.reqs...)
}

func (s *authzServer) last(t *testing.T) *authv3.CheckRequest {
	t.Helper()
	r := s.requests()
	if len(r) == 0 {
		t.Fatal("the authz server got no CheckRequest")
	}
	return r[len(r)-1]
}

func allow() *authv3.CheckResponse {
	return &authv3.CheckResponse{Status: &status.Status{Code: 0}, HttpResponse: &authv3.CheckResponse_OkResponse{OkResponse: &authv3.OkHttpResponse{}}}
}

// seen is a request as an upstream received it.
type seen struct {
	Method, Host, URI string
	Header            http.Header
	Body              []byte
	ProtoMajor        int
	SNI               string
}

// upstream is a real HTTP server that records what it receives.
type upstream struct {
	srv     *httptest.Server
	mu      sync.Mutex
	reqs    []seen
	handler http.HandlerFunc // optional: replaces the default 200 answer
}

type upstreamKind int

const (
	plainHTTP1 upstreamKind = iota
	h2c
	tlsServer
)

func startUpstream(t *testing.T, kind upstreamKind, cert *tls.Certificate) *upstream {
	t.Helper()
	u := &upstream{}
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_ = http.NewResponseController(w).EnableFullDuplex()
		rec := seen{Method: r.Method, Host: r.Host, URI: r.RequestURI, Header: r.Header.Clone(), ProtoMajor: r.ProtoMajor}
		if r.TLS != nil {
			rec.SNI = r.TLS.ServerName
		}
		u.mu.Lock()
		custom := u.handler
		u.mu.Unlock()
		if custom == nil {
			rec.Body, _ = io.ReadAll(r.Body)
		}
		u.mu.Lock()
		u.reqs = append(u.reqs, rec)
		u.mu.Unlock()
		if custom != nil {
			custom(w, r)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("Mcp-Session-Id", "session-from-upstream")
		_, _ = io.WriteString(w, `{"ok":true}`)
	})
	u.srv = httptest.NewUnstartedServer(h)
	switch kind {
	case h2c:
		u.srv.Config.Protocols = new(http.Protocols)
		u.srv.Config.Protocols.SetUnencryptedHTTP2(true)
		u.srv.Start()
	case tlsServer:
		u.srv.TLS = &tls.Config{Certificates: []tls.Certificate{*cert}}
		u.srv.EnableHTTP2 = true
		u.srv.StartTLS()
	default:
		u.srv.Start()
	}
	t.Cleanup(u.srv.Close)
	return u
}

func (u *upstream) setHandler(h http.HandlerFunc) {
	u.mu.Lock()
	u.handler = h
	u.mu.Unlock()
}

func (u *upstream) requests() []seen {
	u.mu.Lock()
	defer u.mu.Unlock()
	return append([]seen(nil), u.reqs...)
}

func (u *upstream) last(t *testing.T) seen {
	t.Helper()
	r := u.requests()
	if len(r) == 0 {
		t.Fatal("the upstream got no request")
	}
	return r[len(r)-1]
}

func (u *upstream) hostPort() (string, uint32) {
	host, port, _ := net.SplitHostPort(u.srv.Listener.Addr().String())
	p, _ := strconv.Atoi(port)
	return host, uint32(p)
}

// testCA is a throwaway CA with a server certificate for mcp.test.
type testCA struct {
	pool   *x509.CertPool
	pem    []byte
	server tls.Certificate
}

func newTestCA(t *testing.T, dnsName string) *testCA {
	t.Helper()
	caKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	caTmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: "envoysim test CA"},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(time.Hour),
		IsCA:                  true,
		KeyUsage:              x509.KeyUsageCertSign,
		BasicConstraintsValid: true,
	}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	caCert, _ := x509.ParseCertificate(caDER)
	srvKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	srvTmpl := &x509.Certificate{
		SerialNumber: big.NewInt(2),
		Subject:      pkix.Name{CommonName: dnsName},
		DNSNames:     []string{dnsName},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	srvDER, err := x509.CreateCertificate(rand.Reader, srvTmpl, caCert, &srvKey.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AddCert(caCert)
	return &testCA{
		pool:   pool,
		pem:    pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: caDER}),
		server: tls.Certificate{Certificate: [][]byte{srvDER}, PrivateKey: srvKey},
	}
}

// resources is the Warden-shaped configuration a test pushes; tests
// change fields before pushing.
type resources struct {
	authz        *extauthzv3.ExtAuthz
	router       *routerv3.Router
	extraFilters []*hcmv3.HttpFilter // inserted before ext_authz
	afterAuthz   []*hcmv3.HttpFilter // inserted between ext_authz and the router
	hcm          *hcmv3.HttpConnectionManager
	routes       *routev3.RouteConfiguration
	clusters     []*clusterv3.Cluster
}

// mcpServer is one registered MCP server in the Warden shape.
type mcpServer struct {
	name         string
	up           *upstream
	upstreamPath string // e.g. "/mcp"
	hostRewrite  string
	sni          string
	caPEM        []byte // trusted_ca of the upstream TLS context
	http2        bool
}

func mustAny(t *testing.T, m proto.Message) *anypb.Any {
	t.Helper()
	if err := validate(m); err != nil {
		t.Fatalf("%T: %v", m, err)
	}
	a, err := anypb.New(m)
	if err != nil {
		t.Fatal(err)
	}
	return a
}

func staticCluster(t *testing.T, name string, addr string, http2 bool) *clusterv3.Cluster {
	t.Helper()
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		t.Fatal(err)
	}
	p, _ := strconv.Atoi(port)
	c := &clusterv3.Cluster{
		Name:                 name,
		ClusterDiscoveryType: &clusterv3.Cluster_Type{Type: clusterv3.Cluster_STRICT_DNS},
		ConnectTimeout:       durationpb.New(2 * time.Second),
		LoadAssignment: &endpointv3.ClusterLoadAssignment{
			ClusterName: name,
			Endpoints: []*endpointv3.LocalityLbEndpoints{{LbEndpoints: []*endpointv3.LbEndpoint{{
				HostIdentifier: &endpointv3.LbEndpoint_Endpoint{Endpoint: &endpointv3.Endpoint{
					Address: &corev3.Address{Address: &corev3.Address_SocketAddress{SocketAddress: &corev3.SocketAddress{
						Address: host, PortSpecifier: &corev3.SocketAddress_PortValue{PortValue: uint32(p)},
					}}},
				}},
			}}}},
		},
	}
	if http2 {
		c.TypedExtensionProtocolOptions = map[string]*anypb.Any{
			httpProtocolOptsKey: mustAny(t, &httpv3.HttpProtocolOptions{
				UpstreamProtocolOptions: &httpv3.HttpProtocolOptions_ExplicitHttpConfig_{ExplicitHttpConfig: &httpv3.HttpProtocolOptions_ExplicitHttpConfig{
					ProtocolConfig: &httpv3.HttpProtocolOptions_ExplicitHttpConfig_Http2ProtocolOptions{Http2ProtocolOptions: &corev3.Http2ProtocolOptions{}},
				}},
			}),
		}
	}
	return c
}

func withTLS(t *testing.T, c *clusterv3.Cluster, sni string, caPEM []byte) *clusterv3.Cluster {
	t.Helper()
	utc := &tlsv3.UpstreamTlsContext{Sni: sni, CommonTlsContext: &tlsv3.CommonTlsContext{}}
	if caPEM != nil {
		utc.CommonTlsContext.ValidationContextType = &tlsv3.CommonTlsContext_ValidationContext{ValidationContext: &tlsv3.CertificateValidationContext{
			TrustedCa: &corev3.DataSource{Specifier: &corev3.DataSource_InlineBytes{InlineBytes: caPEM}},
		}}
	}
	c.TransportSocket = &corev3.TransportSocket{Name: tlsTransportSocket, ConfigType: &corev3.TransportSocket_TypedConfig{TypedConfig: mustAny(t, utc)}}
	return c
}

func perRouteAuthz(t *testing.T, ext map[string]string) map[string]*anypb.Any {
	return map[string]*anypb.Any{"envoy.filters.http.ext_authz": mustAny(t, &extauthzv3.ExtAuthzPerRoute{
		Override: &extauthzv3.ExtAuthzPerRoute_CheckSettings{CheckSettings: &extauthzv3.CheckSettings{ContextExtensions: ext}},
	})}
}

func authzDisabled(t *testing.T) map[string]*anypb.Any {
	return map[string]*anypb.Any{"envoy.filters.http.ext_authz": mustAny(t, &extauthzv3.ExtAuthzPerRoute{
		Override: &extauthzv3.ExtAuthzPerRoute_Disabled{Disabled: true},
	})}
}

func clusterRoute(cluster string) *routev3.Route_Route {
	return &routev3.Route_Route{Route: &routev3.RouteAction{ClusterSpecifier: &routev3.RouteAction_Cluster{Cluster: cluster}}}
}

// wardenResources builds the configuration Warden's xDS pushes: listener
// warden_mcp with ext_authz + router and routes over RDS, one virtual host
// with per-server routes, the OAuth routes with ext_authz disabled and a
// 404 direct response.
func wardenResources(t *testing.T, authzAddr, wardenHTTPAddr string, servers ...mcpServer) *resources {
	t.Helper()
	r := &resources{
		router: &routerv3.Router{},
		authz: &extauthzv3.ExtAuthz{
			Services: &extauthzv3.ExtAuthz_GrpcService{GrpcService: &corev3.GrpcService{
				TargetSpecifier: &corev3.GrpcService_EnvoyGrpc_{EnvoyGrpc: &corev3.GrpcService_EnvoyGrpc{ClusterName: "warden_authz"}},
				Timeout:         durationpb.New(5 * time.Second),
			}},
			WithRequestBody:     &extauthzv3.BufferSettings{MaxRequestBytes: 1024, AllowPartialMessage: false, PackAsBytes: true},
			FailureModeAllow:    false,
			StatusOnError:       &typev3.HttpStatus{Code: typev3.StatusCode_ServiceUnavailable},
			TransportApiVersion: corev3.ApiVersion_V3,
		},
		hcm: &hcmv3.HttpConnectionManager{
			StatPrefix: "warden_mcp",
			RouteSpecifier: &hcmv3.HttpConnectionManager_Rds{Rds: &hcmv3.Rds{
				RouteConfigName: "warden_mcp_routes",
				ConfigSource: &corev3.ConfigSource{
					ConfigSourceSpecifier: &corev3.ConfigSource_Ads{Ads: &corev3.AggregatedConfigSource{}},
					ResourceApiVersion:    corev3.ApiVersion_V3,
				},
			}},
		},
	}
	vh := &routev3.VirtualHost{Name: "warden_mcp", Domains: []string{"*"}}
	for _, s := range servers {
		up := strings.TrimSuffix(s.upstreamPath, "/")
		common := func(rewrite string) *routev3.Route_Route {
			a := &routev3.RouteAction{
				ClusterSpecifier: &routev3.RouteAction_Cluster{Cluster: "mcp_" + s.name},
				PrefixRewrite:    rewrite,
				Timeout:          durationpb.New(0),
				IdleTimeout:      durationpb.New(5 * time.Minute),
			}
			if s.hostRewrite != "" {
				a.HostRewriteSpecifier = &routev3.RouteAction_HostRewriteLiteral{HostRewriteLiteral: s.hostRewrite}
			}
			return &routev3.Route_Route{Route: a}
		}
		vh.Routes = append(vh.Routes,
			&routev3.Route{
				Name:                 "mcp_" + s.name + "_exact",
				Match:                &routev3.RouteMatch{PathSpecifier: &routev3.RouteMatch_Path{Path: "/mcp/" + s.name}},
				Action:               common(up),
				TypedPerFilterConfig: perRouteAuthz(t, map[string]string{"server": s.name}),
			},
			&routev3.Route{
				Name:                 "mcp_" + s.name + "_prefix",
				Match:                &routev3.RouteMatch{PathSpecifier: &routev3.RouteMatch_Prefix{Prefix: "/mcp/" + s.name + "/"}},
				Action:               common(up + "/"),
				TypedPerFilterConfig: perRouteAuthz(t, map[string]string{"server": s.name}),
			},
		)
		host, port := s.up.hostPort()
		c := staticCluster(t, "mcp_"+s.name, net.JoinHostPort(host, strconv.Itoa(int(port))), s.http2)
		if s.sni != "" || s.caPEM != nil {
			c = withTLS(t, c, s.sni, s.caPEM)
		}
		r.clusters = append(r.clusters, c)
	}
	vh.Routes = append(vh.Routes,
		&routev3.Route{Name: "well_known", Match: &routev3.RouteMatch{PathSpecifier: &routev3.RouteMatch_Prefix{Prefix: "/.well-known/"}},
			Action: clusterRoute("warden_http"), TypedPerFilterConfig: authzDisabled(t)},
		&routev3.Route{Name: "oauth", Match: &routev3.RouteMatch{PathSpecifier: &routev3.RouteMatch_Prefix{Prefix: "/oauth/"}},
			Action: clusterRoute("warden_http"), TypedPerFilterConfig: authzDisabled(t)},
		&routev3.Route{Name: "not_found", Match: &routev3.RouteMatch{PathSpecifier: &routev3.RouteMatch_Prefix{Prefix: "/"}},
			Action: &routev3.Route_DirectResponse{DirectResponse: &routev3.DirectResponseAction{
				Status: 404,
				Body:   &corev3.DataSource{Specifier: &corev3.DataSource_InlineString{InlineString: `{"error":"not_found"}`}},
			}},
			ResponseHeadersToAdd: []*corev3.HeaderValueOption{{
				Header:       &corev3.HeaderValue{Key: "content-type", Value: "application/json"},
				AppendAction: corev3.HeaderValueOption_OVERWRITE_IF_EXISTS_OR_ADD,
			}},
		},
	)
	r.routes = &routev3.RouteConfiguration{Name: "warden_mcp_routes", VirtualHosts: []*routev3.VirtualHost{vh}}
	r.clusters = append(r.clusters,
		staticCluster(t, "warden_authz", authzAddr, true),
		staticCluster(t, "warden_http", wardenHTTPAddr, false),
	)
	return r
}

// buildListener packs the HTTP connection manager with its filters.
func (r *resources) buildListener(t *testing.T, good bool) *listenerv3.Listener {
	t.Helper()
	pack := func(m proto.Message) *anypb.Any {
		if good {
			return mustAny(t, m)
		}
		a, err := anypb.New(m)
		if err != nil {
			t.Fatal(err)
		}
		return a
	}
	hcm := proto.Clone(r.hcm).(*hcmv3.HttpConnectionManager)
	hcm.HttpFilters = append(hcm.HttpFilters, r.extraFilters...)
	hcm.HttpFilters = append(hcm.HttpFilters,
		&hcmv3.HttpFilter{Name: "envoy.filters.http.ext_authz", ConfigType: &hcmv3.HttpFilter_TypedConfig{TypedConfig: pack(r.authz)}})
	hcm.HttpFilters = append(hcm.HttpFilters, r.afterAuthz...)
	hcm.HttpFilters = append(hcm.HttpFilters,
		&hcmv3.HttpFilter{Name: "envoy.filters.http.router", ConfigType: &hcmv3.HttpFilter_TypedConfig{TypedConfig: pack(r.router)}},
	)
	return &listenerv3.Listener{
		Name: "warden_mcp",
		Address: &corev3.Address{Address: &corev3.Address_SocketAddress{SocketAddress: &corev3.SocketAddress{
			Address: "0.0.0.0", PortSpecifier: &corev3.SocketAddress_PortValue{PortValue: 10000},
		}}},
		FilterChains: []*listenerv3.FilterChain{{Filters: []*listenerv3.Filter{{
			Name:       "envoy.filters.network.http_connection_manager",
			ConfigType: &listenerv3.Filter_TypedConfig{TypedConfig: pack(hcm)},
		}}}},
	}
}

// fixture runs the whole arrangement: ADS server, authz server, upstreams
// and the proxy, with the Warden-shaped configuration applied.
type fixture struct {
	ads    *adsServer
	authz  *authzServer
	alpha  *upstream // MCP server "alpha": /mcp/alpha -> /mcp
	warden *upstream // Warden's HTTP listener (OAuth routes)
	res    *resources
	proxy  *Proxy
	n      int
}

// newFixture starts everything; tweak changes the resources before the
// first push.
func newFixture(t *testing.T, tweak func(*resources)) *fixture {
	t.Helper()
	return newFixtureWith(t, tweak, Options{})
}

// newFixtureWith is newFixture with extra proxy options.
func newFixtureWith(t *testing.T, tweak func(*resources), opts Options) *fixture {
	t.Helper()
	f := &fixture{ads: startADS(t), authz: startAuthz(t)}
	f.alpha = startUpstream(t, plainHTTP1, nil)
	f.warden = startUpstream(t, plainHTTP1, nil)
	f.res = wardenResources(t, f.authz.addr, f.warden.srv.Listener.Addr().String(),
		mcpServer{name: "alpha", up: f.alpha, upstreamPath: "/mcp", hostRewrite: "alpha.internal"})
	if tweak != nil {
		tweak(f.res)
	}
	f.ads.push(t, "v1", f.res, true)
	opts.ADSAddress, opts.NodeID = f.ads.addr, testNode
	p, err := Start(t.Context(), opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = p.Close() })
	f.proxy = p
	f.n = 1
	f.wait(t, "v1")
	return f
}

func (f *fixture) wait(t *testing.T, version string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 20*time.Second)
	defer cancel()
	if _, err := f.proxy.WaitForVersion(ctx, version); err != nil {
		t.Fatal(err)
	}
}

// update pushes the next version after tweak and waits until it is served.
func (f *fixture) update(t *testing.T, tweak func(*resources)) string {
	t.Helper()
	tweak(f.res)
	f.n++
	v := "v" + strconv.Itoa(f.n)
	f.ads.push(t, v, f.res, true)
	f.wait(t, v)
	return v
}

// client never uses an environment proxy and never decompresses.
var client = &http.Client{Transport: &http.Transport{Proxy: nil, DisableCompression: true}}

// do sends a request through the proxy and returns status, headers, body.
func do(t *testing.T, method, url string, body []byte, hdr map[string][]string) (int, http.Header, string) {
	t.Helper()
	var rd io.Reader
	if body != nil {
		rd = bytes.NewReader(body)
	}
	req, err := http.NewRequestWithContext(t.Context(), method, url, rd)
	if err != nil {
		t.Fatal(err)
	}
	for k, vs := range hdr {
		for _, v := range vs {
			if strings.EqualFold(k, "host") {
				req.Host = v
				continue
			}
			req.Header.Add(k, v)
		}
	}
	resp, err := client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = resp.Body.Close() }()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp.StatusCode, resp.Header, string(b)
}

// doChunked POSTs a body of unknown length (Transfer-Encoding: chunked).
func doChunked(t *testing.T, url string, body []byte) (int, string) {
	t.Helper()
	req, err := http.NewRequestWithContext(t.Context(), "POST", url, io.MultiReader(bytes.NewReader(body)))
	if err != nil {
		t.Fatal(err)
	}
	req.ContentLength = -1
	resp, err := client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = resp.Body.Close() }()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

func expectStatus(t *testing.T, got, want int, body string) {
	t.Helper()
	if got != want {
		t.Fatalf("status %d, want %d (body %q)", got, want, body)
	}
}
