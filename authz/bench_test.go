package authz_test

import (
	"context"
	"testing"

	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"

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

// BenchmarkCheckMix is the anchor mix of test/loadgen -anchor: tools/call
// of an allowed tool, tools/list, and two tools/call denied by policy, on
// one goroutine per CPU.
func BenchmarkCheckMix(b *testing.B) {
	e := newEnv(b)
	e.addServer(registry.Spec{Name: "bi", URL: "http://bi/mcp"})
	tok, _ := e.mint(tokenSpec{servers: []string{"bi"}, groups: []string{"finance"}})
	bodies := []string{
		`{"jsonrpc":"2.0","id":7,"method":"tools/call","params":{"name":"echo","arguments":{"message":"quarterly revenue","limit":10}}}`,
		`{"jsonrpc":"2.0","id":8,"method":"tools/list","params":{}}`,
		`{"jsonrpc":"2.0","id":9,"method":"tools/call","params":{"name":"delete_everything","arguments":{"id":"e-1042"}}}`,
		`{"jsonrpc":"2.0","id":10,"method":"tools/call","params":{"name":"rm_rf","arguments":{"month":"2026-10"}}}`,
	}
	reqs := make([]*authv3.CheckRequest, len(bodies))
	for i, body := range bodies {
		reqs[i] = req{token: tok, body: body}.build()
		resp, _ := e.service.Check(context.Background(), reqs[i])
		if (resp.GetOkResponse() != nil) != (i < 2) {
			b.Fatalf("request %d: %v", i, resp)
		}
	}
	ctx := context.Background()
	b.ReportAllocs()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		i := 0
		for pb.Next() {
			if _, err := e.service.Check(ctx, reqs[i%len(reqs)]); err != nil {
				b.Fatal(err)
			}
			i++
		}
	})
}

// BenchmarkCheckModernSerial is BenchmarkCheckAllowSerial's call from an
// MCP 2026-07-28 client: _meta in the body, Mcp-Method and Mcp-Name
// checked against it.
func BenchmarkCheckModernSerial(b *testing.B) {
	e := newEnv(b)
	e.addServer(registry.Spec{Name: "bi", URL: "http://bi/mcp"})
	tok, _ := e.mint(tokenSpec{servers: []string{"bi"}, groups: []string{"finance", "eng"}})
	r := req{token: tok, body: `{"jsonrpc":"2.0","id":7,"method":"tools/call","params":{"name":"echo","arguments":{"message":"hi"},` + modernMeta + `}}`,
		headers: modernHeaders("mcp-method", "tools/call", "mcp-name", "echo")}.build()
	ctx := context.Background()
	if resp, _ := e.service.Check(ctx, r); resp.GetOkResponse() == nil {
		b.Fatalf("denied: %v", resp)
	}
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if resp, _ := e.service.Check(ctx, r); resp.GetOkResponse() == nil {
			b.Fatal("denied")
		}
	}
}
