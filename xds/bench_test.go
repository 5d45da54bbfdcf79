package xds

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/warden-mcp/warden/internal/store"
	"github.com/warden-mcp/warden/xds/translate"
)

func manyServers(n int, gen int) []store.Server {
	out := make([]store.Server, n)
	for i := range out {
		scheme := "http"
		if i%3 == 0 {
			scheme = "https"
		}
		out[i] = store.Server{
			Name:  fmt.Sprintf("server-%04d", i),
			URL:   fmt.Sprintf("%s://mcp-%04d.svc.cluster.local:%d/mcp", scheme, i, 8000+gen%2),
			HTTP2: i%5 == 0,
		}
	}
	return out
}

// BenchmarkTranslate1000 is both stages for 1,000 servers, with validation
// and the content hash.
func BenchmarkTranslate1000(b *testing.B) {
	servers := manyServers(1000, 0)
	b.ReportAllocs()
	for b.Loop() {
		res, err := translate.Translate(servers, settings())
		if err != nil || len(res.Resources.Servers) != 1000 {
			b.Fatal(err, len(res.Resources.Servers))
		}
	}
}

// BenchmarkPublish1000 is one full publish of a changed 1,000-server
// registry: list, translate, snapshot, consistency check, and SetSnapshot
// for 3 streams.
func BenchmarkPublish1000(b *testing.B) {
	src := &memSource{}
	x, err := New(Options{Source: src, Settings: settings()})
	if err != nil {
		b.Fatal(err)
	}
	attachStreams(x, "a", "b", "c")
	ctx := context.Background()
	gen := 0
	b.ReportAllocs()
	for b.Loop() {
		gen++
		src.servers = manyServers(1000, gen) // a real change every time
		if err := x.publish(ctx); err != nil {
			b.Fatal(err)
		}
	}
	if st := x.Status(); len(st.Servers) != 1000 {
		b.Fatalf("published %d", len(st.Servers))
	}
}

// BenchmarkRegistrationToSnapshot measures, with Run going and 1,000
// servers registered, the time from the registry's change signal for one
// new server to the snapshot being set for every stream.
func BenchmarkRegistrationToSnapshot(b *testing.B) {
	src := &memSource{servers: manyServers(1000, 0)}
	x, err := New(Options{Source: src, Settings: settings()})
	if err != nil {
		b.Fatal(err)
	}
	attachStreams(x, "a", "b", "c")
	published := make(chan string, 1)
	x.onPublish = func(v string) { published <- v }
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go func() { _ = x.Run(ctx) }()
	<-published // initial publish
	var total time.Duration
	n := 0
	for b.Loop() {
		n++
		servers := append(manyServers(1000, 0), store.Server{Name: fmt.Sprintf("new-%d", n), URL: "http://new.internal/mcp"})
		start := time.Now()
		src.Set(servers...)
		<-published
		total += time.Since(start)
	}
	b.ReportMetric(float64(total.Microseconds())/float64(n)/1000, "ms/registration")
}

// attachStreams registers one attached stream per node id, as if Envoys
// were connected, so publishes set their snapshots.
func attachStreams(x *Server, ids ...string) {
	for i, id := range ids {
		k := streamKey{id: int64(i + 1)}
		x.nodes[id] = &node{id: id, streams: 1}
		x.streams[k] = &stream{node: id, acked: map[string]string{}, sent: map[string]sentResponse{}}
	}
}
