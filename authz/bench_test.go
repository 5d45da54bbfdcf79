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
