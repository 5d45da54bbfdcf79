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
