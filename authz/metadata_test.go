package authz_test

import (
	"testing"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/structpb"

	"github.com/warden-mcp/warden/authz"
	"github.com/warden-mcp/warden/internal/handle"
	"github.com/warden-mcp/warden/internal/registry"
)

// TestResponseMetadataTree checks the dynamic metadata of an allowed batch
// against the tree structpb builds from plain values: the response path
// reads it, and responseMetadata assembles it by hand.
func TestResponseMetadataTree(t *testing.T) {
	e := newEnv(t)
	e.addServer(registry.Spec{Name: "bi", URL: "http://bi/mcp"})
	tok, _ := e.mint(tokenSpec{servers: []string{"bi"}, groups: []string{"finance", "eng"}})
	batch := `[{"jsonrpc":"2.0","id":"a-1","method":"tools/call","params":{"name":"echo","arguments":{"message":"hi <b>"}}},` +
		`{"jsonrpc":"2.0","method":"notifications/initialized"},` +
		`{"jsonrpc":"2.0","id":2,"method":"tools/list"},` +
		`{"jsonrpc":"2.0","id":3,"method":"ping"}]`
	resp := e.check(req{token: tok, body: batch, headers: map[string]string{"mcp-protocol-version": "2025-06-18"}})
	if resp.GetOkResponse() == nil {
		t.Fatalf("denied: %v", resp)
	}
	want, err := structpb.NewStruct(map[string]any{authz.MetadataKey: map[string]any{
		"server":   "bi",
		"caller":   handle.Digest(tok),
		"protocol": "2025-06-18",
		"calls": []any{
			map[string]any{"id": `"a-1"`, "method": "tools/call", "tool": "echo", "arguments": `{"message":"hi <b>"}`},
			map[string]any{"id": "2", "method": "tools/list"},
		},
	}})
	if err != nil {
		t.Fatal(err)
	}
	if got := resp.GetDynamicMetadata(); !proto.Equal(got, want) {
		t.Errorf("dynamic metadata:\n got %v\nwant %v", got, want)
	}
	// A check with no result the response path reads carries none.
	ping := e.check(req{token: tok, body: `{"jsonrpc":"2.0","id":4,"method":"ping"}`})
	if ping.GetOkResponse() == nil {
		t.Fatalf("ping denied: %v", ping)
	}
	if md := ping.GetDynamicMetadata(); md != nil {
		t.Errorf("ping carries metadata: %v", md)
	}
}
