package authz

import (
	"encoding/json"
	"net/http"
	"strings"
	"testing"

	"github.com/warden-mcp/warden/internal/mcp"
	"github.com/warden-mcp/warden/internal/store"
)

// The URL elicitation in each protocol version's form (MCP 2025-11-25
// client/elicitation "URL Elicitation Required Error"; 2026-07-28
// basic/patterns/mrtr and client/elicitation; older: an error naming the
// URL), always an HTTP 200 that is still a denial.
func TestElicitURLPerVersion(t *testing.T) {
	const link = "https://warden.example/oauth/providers/gh/connect?id=abc"
	one := []mcp.Message{{Kind: mcp.KindRequest, Method: "tools/call", ID: json.RawMessage(`7`)}}
	for _, tc := range []struct {
		name string
		req  mcp.Request
		want string
	}{
		{"2025-11-25", mcp.Request{ProtocolVersion: "2025-11-25", Messages: one},
			`{"jsonrpc":"2.0","id":7,"error":{"code":-32042,"message":"This request requires connecting your gh account.","data":{"elicitations":[{"elicitationId":"` + elicitationID(link) + `","message":"Connect your gh account to continue.","mode":"url","url":"` + link + `"}]}}}`},
		{"2026-07-28", mcp.Request{ProtocolVersion: "2026-07-28", Modern: true, Messages: one},
			`{"jsonrpc":"2.0","id":7,"result":{"inputRequests":{"warden_connect_gh":{"method":"elicitation/create","params":{"message":"Connect your gh account to continue.","mode":"url","url":"` + link + `"}}},"resultType":"input_required"}}`},
		{"2025-06-18", mcp.Request{ProtocolVersion: "2025-06-18", Messages: one},
			`{"jsonrpc":"2.0","id":7,"error":{"code":-32003,"message":"Connect your gh account to continue: open ` + link + ` and then retry."}}`},
		{"no version", mcp.Request{Messages: one},
			`{"jsonrpc":"2.0","id":7,"error":{"code":-32003,"message":"Connect your gh account to continue: open ` + link + ` and then retry."}}`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			o := elicitURL(&tc.req, "gh", link)
			if o.status != http.StatusOK || !o.answered || o.allowed() {
				t.Fatalf("status %d answered %v allowed %v", o.status, o.answered, o.allowed())
			}
			if o.body != tc.want {
				t.Fatalf("\n got %s\nwant %s", o.body, tc.want)
			}
			// The Envoy answer is a denial carrying the body.
			resp := respond(o)
			if resp.GetDeniedResponse() == nil || resp.GetDeniedResponse().GetStatus().GetCode() != 200 || resp.GetDeniedResponse().GetBody() != tc.want {
				t.Fatalf("check response: %v", resp)
			}
		})
	}
	// A batch (2025-03-26) answers each request of it.
	batch := mcp.Request{ProtocolVersion: "2025-03-26", Batch: true, Messages: []mcp.Message{
		{Kind: mcp.KindRequest, Method: "tools/call", ID: json.RawMessage(`1`)},
		{Kind: mcp.KindNotification, Method: "notifications/progress"},
		{Kind: mcp.KindRequest, Method: "tools/list", ID: json.RawMessage(`"b"`)},
	}}
	o := elicitURL(&batch, "gh", link)
	var parts []map[string]any
	if err := json.Unmarshal([]byte(o.body), &parts); err != nil || len(parts) != 2 || parts[0]["id"] != float64(1) || parts[1]["id"] != "b" {
		t.Fatalf("batch answer %s: %v", o.body, err)
	}
}

func TestNeedsCredential(t *testing.T) {
	req := func(methods ...string) *mcp.Request {
		r := &mcp.Request{}
		for _, m := range methods {
			r.Messages = append(r.Messages, mcp.Message{Kind: mcp.KindRequest, Method: m})
		}
		return r
	}
	for _, tc := range []struct {
		unconnected string
		r           *mcp.Request
		want        bool
	}{
		{store.UnconnectedElicit, req("tools/call"), true},
		{store.UnconnectedElicit, req("resources/read"), true},
		{store.UnconnectedElicit, req("prompts/get"), true},
		{store.UnconnectedElicit, req("initialize"), false},
		{store.UnconnectedElicit, req("tools/list"), false},
		{store.UnconnectedElicit, req("server/discover"), false},
		{store.UnconnectedElicit, req("tools/list", "tools/call"), true},
		{store.UnconnectedElicitAll, req("tools/list"), true},
		{store.UnconnectedPass, req("tools/call"), false},
	} {
		name := tc.unconnected + "/" + tc.r.Messages[0].Method
		if got := needsCredential(store.Server{Unconnected: tc.unconnected}, tc.r); got != tc.want {
			t.Errorf("%s (%d messages): %v, want %v", name, len(tc.r.Messages), got, tc.want)
		}
	}
	if strings.Contains(elicitationID("https://x/?id=secretid"), "secretid") {
		t.Fatal("the elicitation id repeats the link's id")
	}
}
