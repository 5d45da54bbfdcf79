package mcp

import "testing"

// BenchmarkClassify reads the anchor mix's tools/call: allocations per
// message are the figure to compare across changes (deterministic, unlike
// time on a shared machine).
func BenchmarkClassify(b *testing.B) {
	in := post(`{"jsonrpc":"2.0","id":7,"method":"tools/call","params":{"name":"search","arguments":{"query":"quarterly revenue","limit":10}}}`)
	b.ReportAllocs()
	for b.Loop() {
		if _, err := Classify(in); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkClassifyList is a message whose params policy does not read.
func BenchmarkClassifyList(b *testing.B) {
	in := post(`{"jsonrpc":"2.0","id":8,"method":"tools/list","params":{}}`)
	b.ReportAllocs()
	for b.Loop() {
		if _, err := Classify(in); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkClassifyModern is the same tools/call in revision 2026-07-28:
// _meta read, Mcp-Method, Mcp-Name and one Mcp-Param header checked.
func BenchmarkClassifyModern(b *testing.B) {
	h := held{
		body:    `{"jsonrpc":"2.0","id":7,"method":"tools/call","params":{"name":"search","arguments":{"query":"quarterly revenue","limit":10},` + meta + `}}`,
		headers: hdr("mcp-method", "tools/call", "mcp-name", "search", "mcp-param-limit", "10"),
	}
	in := h.input(map[string][]ParamHeader{"search": {{Name: "Limit", Path: []string{"limit"}}}})
	b.ReportAllocs()
	for b.Loop() {
		if _, err := Classify(in); err != nil {
			b.Fatal(err)
		}
	}
}
