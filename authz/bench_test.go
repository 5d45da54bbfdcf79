package authz_test

import (
	"context"
	"testing"

	"github.com/warden-mcp/warden/internal/registry"
)

// BenchmarkCheckAllow measures one in-process Check on the allow path:
// handle lookup in Badger, tools/call classification, the per-tool test
// policy, the cached upstream JWT and the audit enqueue.
func BenchmarkCheckAllow(b *testing.B) {
	e := newEnv(b)
	e.addServer(registry.Spec{Name: "bi", URL: "http://bi/mcp"})
	tok, _ := e.mint(tokenSpec{servers: []string{"bi"}, groups: []string{"finance", "eng"}})
	r := req{token: tok, body: toolsCall}.build()
	svc := e.service
	ctx := context.Background()
	if resp, _ := svc.Check(ctx, r); resp.GetOkResponse() == nil {
		b.Fatalf("denied: %v", resp)
	}
	b.ReportAllocs()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if resp, _ := svc.Check(ctx, r); resp.GetOkResponse() == nil {
				b.Fatal("denied")
			}
		}
	})
}

// BenchmarkCheckGRPC is the same allow path over a real loopback gRPC
// connection, client and server in one process (the load generator in
// test/loadgen runs them as separate processes).
func BenchmarkCheckGRPC(b *testing.B) {
	e := newEnv(b)
	e.addServer(registry.Spec{Name: "bi", URL: "http://bi/mcp"})
	tok, _ := e.mint(tokenSpec{servers: []string{"bi"}, groups: []string{"finance", "eng"}})
	r := req{token: tok, body: toolsCall}.build()
	ctx := context.Background()
	b.ReportAllocs()
	b.SetParallelism(8)
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if resp, err := e.client.Check(ctx, r); err != nil || resp.GetOkResponse() == nil {
				b.Fatal("denied")
			}
		}
	})
}

// BenchmarkCheckAllowSerial runs the allow path on one goroutine: ns/op is
// then the CPU cost of one Check, the figure to compare across changes on a
// noisy machine.
func BenchmarkCheckAllowSerial(b *testing.B) {
	e := newEnv(b)
	e.addServer(registry.Spec{Name: "bi", URL: "http://bi/mcp"})
	tok, _ := e.mint(tokenSpec{servers: []string{"bi"}, groups: []string{"finance", "eng"}})
	r := req{token: tok, body: toolsCall}.build()
	ctx := context.Background()
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if resp, _ := e.service.Check(ctx, r); resp.GetOkResponse() == nil {
			b.Fatal("denied")
		}
	}
}
