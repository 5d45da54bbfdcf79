package xds

import (
	"context"
	"errors"
	"log/slog"
	"net"
	"os"
	"slices"
	"sync"
	"testing"
	"time"

	cluster "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	core "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	discovery "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	"github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/genproto/googleapis/rpc/status"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/warden-mcp/warden/internal/store"
	"github.com/warden-mcp/warden/xds/translate"
)

// memSource is an in-memory registry with the same contract as
// internal/registry: List, and a coalesced change signal with one slot.
type memSource struct {
	mu      sync.Mutex
	servers []store.Server
	err     error
	subs    []chan struct{}
}

func (m *memSource) List(context.Context) ([]store.Server, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.err != nil {
		return nil, m.err
	}
	return slices.Clone(m.servers), nil
}

func (m *memSource) Subscribe() (<-chan struct{}, func()) {
	m.mu.Lock()
	defer m.mu.Unlock()
	ch := make(chan struct{}, 1)
	m.subs = append(m.subs, ch)
	return ch, func() {}
}

// Set replaces the registry and signals a change.
func (m *memSource) Set(servers ...store.Server) {
	m.mu.Lock()
	m.servers = servers
	m.err = nil
	subs := slices.Clone(m.subs)
	m.mu.Unlock()
	for _, ch := range subs {
		select {
		case ch <- struct{}{}:
		default:
		}
	}
}

func (m *memSource) Fail(err error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.err = err
}

// settings are the translation settings `warden serve` derives from the
// default configuration; cmd/warden's TestXDSSettingsFromDefaultConfig
// holds the same values, so the standalone example compared with them is
// what a default Warden pushes.
func settings() translate.Settings {
	return translate.Settings{
		ListenerAddress: "0.0.0.0", ListenerPort: 10000,
		StreamIdleTimeout: 5 * time.Minute, RouteIdleTimeout: time.Hour, MaxStreamDuration: time.Hour, ConnectTimeout: 5 * time.Second,
		AuthzTimeout: 3 * time.Second, MaxRequestBytes: 1 << 20,
		WardenAuthzAddress: "127.0.0.1:9191", WardenHTTPAddress: "127.0.0.1:8080",
		UpstreamCAFile: "/etc/ssl/certs/ca-certificates.crt",
	}
}

func srv(name string) store.Server {
	return store.Server{Name: name, URL: "http://" + name + ".internal:8080/mcp", Credential: store.CredentialJWT}
}

type harness struct {
	src  *memSource
	xds  *Server
	reg  *prometheus.Registry
	addr string
}

func testLogger(t *testing.T) *slog.Logger {
	if testing.Verbose() {
		return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	return slog.New(slog.DiscardHandler)
}

// start runs a real Warden xDS server on loopback gRPC.
func start(t *testing.T, src *memSource, nodeIDs ...string) *harness {
	t.Helper()
	reg := prometheus.NewRegistry()
	x, err := New(Options{Source: src, Settings: settings(), NodeIDs: nodeIDs, Logger: testLogger(t),
		Registerer: reg, RetryInterval: 20 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	h := serve(t, x)
	h.src, h.reg = src, reg
	return h
}

// serve runs x on a loopback gRPC server until the test ends.
func serve(t *testing.T, x *Server) *harness {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	g := grpc.NewServer(GRPCServerOptions()...)
	x.Register(g)
	go func() { _ = g.Serve(lis) }()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- x.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run: %v", err)
		}
		g.Stop()
	})
	return &harness{xds: x, addr: lis.Addr().String()}
}

func (h *harness) conn(t *testing.T) *grpc.ClientConn {
	t.Helper()
	c, err := grpc.NewClient("passthrough:///"+h.addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// counter reads a counter or gauge from the registry (labels as k, v pairs).
func (h *harness) metric(t *testing.T, name string, labels ...string) float64 {
	t.Helper()
	mfs, err := h.reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
	next:
		for _, m := range mf.GetMetric() {
			for i := 0; i+1 < len(labels); i += 2 {
				found := false
				for _, lp := range m.GetLabel() {
					if lp.GetName() == labels[i] && lp.GetValue() == labels[i+1] {
						found = true
					}
				}
				if !found {
					continue next
				}
			}
			switch {
			case m.GetCounter() != nil:
				return m.GetCounter().GetValue()
			case m.GetGauge() != nil:
				return m.GetGauge().GetValue()
			}
		}
	}
	return 0
}

// eventually polls cond; the deadline only bounds a broken test, it asserts
// no latency.
func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// adsClient speaks state-of-the-world ADS like Envoy: one stream, requests
// per type, ACK/NACK with version_info and response_nonce.
type adsClient struct {
	t      *testing.T
	stream discovery.AggregatedDiscoveryService_StreamAggregatedResourcesClient
	node   *core.Node
	// pending holds responses read while waiting for another type.
	pending []*discovery.DiscoveryResponse
	// accepted is the last ACKed version per type.
	accepted map[string]string
}

func newADSClient(t *testing.T, conn *grpc.ClientConn, nodeID string) *adsClient {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	t.Cleanup(cancel)
	st, err := discovery.NewAggregatedDiscoveryServiceClient(conn).StreamAggregatedResources(ctx)
	if err != nil {
		t.Fatal(err)
	}
	return &adsClient{t: t, stream: st, node: &core.Node{Id: nodeID, Cluster: "test"}, accepted: map[string]string{}}
}

func (c *adsClient) send(req *discovery.DiscoveryRequest) {
	c.t.Helper()
	req.Node = c.node
	if err := c.stream.Send(req); err != nil {
		c.t.Fatal(err)
	}
}

// subscribe sends the first request of a type (names empty: wildcard).
func (c *adsClient) subscribe(typeURL string, names ...string) {
	c.send(&discovery.DiscoveryRequest{TypeUrl: typeURL, ResourceNames: names})
}

// next returns the next response of typeURL.
func (c *adsClient) next(typeURL string) *discovery.DiscoveryResponse {
	c.t.Helper()
	for i, r := range c.pending {
		if r.GetTypeUrl() == typeURL {
			c.pending = slices.Delete(c.pending, i, i+1)
			return r
		}
	}
	for {
		r, err := c.stream.Recv()
		if err != nil {
			c.t.Fatalf("recv %s: %v", typeURL, err)
		}
		if r.GetTypeUrl() == typeURL {
			return r
		}
		c.pending = append(c.pending, r)
	}
}

func (c *adsClient) ack(r *discovery.DiscoveryResponse, names ...string) {
	c.accepted[r.GetTypeUrl()] = r.GetVersionInfo()
	c.send(&discovery.DiscoveryRequest{TypeUrl: r.GetTypeUrl(), VersionInfo: r.GetVersionInfo(),
		ResponseNonce: r.GetNonce(), ResourceNames: names})
}

func (c *adsClient) nack(r *discovery.DiscoveryResponse, reason string, names ...string) {
	c.send(&discovery.DiscoveryRequest{TypeUrl: r.GetTypeUrl(), VersionInfo: c.accepted[r.GetTypeUrl()],
		ResponseNonce: r.GetNonce(), ResourceNames: names, ErrorDetail: &status.Status{Code: 3, Message: reason}})
}

// bootstrap does what Envoy does on start: CDS, LDS, then RDS for the
// listener's route config, ACKing each.
func (c *adsClient) bootstrap() (clusters, listeners, routes *discovery.DiscoveryResponse) {
	c.subscribe(resource.ClusterType)
	clusters = c.next(resource.ClusterType)
	c.ack(clusters)
	c.subscribe(resource.ListenerType)
	listeners = c.next(resource.ListenerType)
	c.ack(listeners)
	c.subscribe(resource.RouteType, translate.RouteConfigName)
	routes = c.next(resource.RouteType)
	c.ack(routes, translate.RouteConfigName)
	return clusters, listeners, routes
}

func clusterNames(t *testing.T, r *discovery.DiscoveryResponse) []string {
	t.Helper()
	var names []string
	for _, a := range r.GetResources() {
		var c cluster.Cluster
		if err := a.UnmarshalTo(&c); err != nil {
			t.Fatal(err)
		}
		names = append(names, c.GetName())
	}
	slices.Sort(names)
	return names
}

var errBoom = errors.New("store unavailable")
