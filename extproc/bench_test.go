package extproc_test

import (
	"fmt"
	"testing"

	"github.com/warden-mcp/warden/internal/registry"
)

// BenchmarkToolsList50 is one filtered 50-tool tools/list over real gRPC:
// the response headers and the BUFFERED body, as Envoy sends them.
func BenchmarkToolsList50(b *testing.B) {
	e := newEnv(b)
	e.addServer(registry.Spec{Name: "bi", URL: "http://bi.internal:8080/mcp"})
	staff, _ := e.mint("alice", "staff")
	tools := make([]map[string]any, 50)
	for i := range tools {
		tools[i] = tool(fmt.Sprintf("tool_%02d", i), "Tool number of the benchmark")
	}
	tools[0]["name"], tools[1]["name"] = "run_sql", "export"
	body := listResult(7, "tools", tools, nil)
	md := metadataContext(e.check(staff, listReq, nil))
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		r := e.process(md, "200", "application/json", body)
		if got := names(b, r.body(body), "tools"); len(got) != 2 {
			b.Fatalf("%v", got)
		}
	}
}
