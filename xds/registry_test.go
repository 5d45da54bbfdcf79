package xds

import (
	"context"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/warden-mcp/warden/internal/audit"
	"github.com/warden-mcp/warden/internal/registry"
	"github.com/warden-mcp/warden/internal/seal"
	"github.com/warden-mcp/warden/internal/store"
)

// The lead's registry is a Source as it is.
var _ Source = (*registry.Registry)(nil)

func newRegistry(tb testing.TB) *registry.Registry {
	tb.Helper()
	st, err := store.OpenBadger(tb.TempDir(), store.BadgerOptions{})
	if err != nil {
		tb.Fatal(err)
	}
	trail, err := audit.Open(context.Background(), st, audit.Options{})
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { _ = trail.Close(context.Background()); _ = st.Close() })
	key, err := seal.Generate()
	if err != nil {
		tb.Fatal(err)
	}
	ring, err := seal.New("k1", map[string][]byte{"k1": key})
	if err != nil {
		tb.Fatal(err)
	}
	return registry.New(st, trail, ring, nil)
}

// End to end on the real registry over Badger: `warden servers add` through
// the registry reaches an ADS client as a new cluster, remove takes it away.
func TestRegistryToADS(t *testing.T) {
	reg := newRegistry(t)
	ctx := context.Background()
	if _, err := reg.Add(ctx, "admin", registry.Spec{Name: "alpha", URL: "http://alpha.internal:8080/mcp", Credential: "jwt"}); err != nil {
		t.Fatal(err)
	}
	x, err := New(Options{Source: reg, Settings: settings(), Logger: testLogger(t), Registerer: prometheus.NewRegistry()})
	if err != nil {
		t.Fatal(err)
	}
	h := serve(t, x)
	eventually(t, "first publish", func() bool { return x.Status().Ready })
	c := newADSClient(t, h.conn(t), "edge")
	cds, _, _ := c.bootstrap()
	if got := clusterNames(t, cds); !slices.Contains(got, "mcp_alpha") {
		t.Fatalf("clusters %v", got)
	}
	if _, err := reg.Add(ctx, "admin", registry.Spec{Name: "bravo", URL: "https://bravo.example.com/mcp", Credential: "jwt", HTTP2: true}); err != nil {
		t.Fatal(err)
	}
	next := c.next(resource.ClusterType)
	if got := clusterNames(t, next); !slices.Contains(got, "mcp_bravo") {
		t.Fatalf("after add: %v", got)
	}
	c.ack(next)
	if err := reg.Remove(ctx, "admin", "alpha"); err != nil {
		t.Fatal(err)
	}
	after := c.next(resource.ClusterType)
	if got := clusterNames(t, after); slices.Contains(got, "mcp_alpha") {
		t.Fatalf("after remove: %v", got)
	}
}

// BenchmarkRegistryAddToSnapshot: with 1,000 servers in the real registry
// (Badger on disk), the time from calling Add for one more server to the
// new snapshot being set for every stream (3 streams).
func BenchmarkRegistryAddToSnapshot(b *testing.B) {
	reg := newRegistry(b)
	ctx := context.Background()
	for i := range 1000 {
		if _, err := reg.Add(ctx, "bench", registry.Spec{Name: fmt.Sprintf("server-%04d", i),
			URL: fmt.Sprintf("http://mcp-%04d.svc.cluster.local:8000/mcp", i), Credential: "jwt"}); err != nil {
			b.Fatal(err)
		}
	}
	x, err := New(Options{Source: reg, Settings: settings()})
	if err != nil {
		b.Fatal(err)
	}
	attachStreams(x, "a", "b", "c")
	published := make(chan string, 1)
	x.onPublish = func(v string) { published <- v }
	runCtx, cancel := context.WithCancel(ctx)
	defer cancel()
	go func() { _ = x.Run(runCtx) }()
	<-published
	var total time.Duration
	n := 0
	for b.Loop() {
		n++
		start := time.Now()
		if _, err := reg.Add(ctx, "bench", registry.Spec{Name: fmt.Sprintf("new-%d", n), URL: "http://new.internal/mcp", Credential: "jwt"}); err != nil {
			b.Fatal(err)
		}
		<-published
		total += time.Since(start)
	}
	b.ReportMetric(float64(total.Microseconds())/float64(n)/1000, "ms/registration")
}
