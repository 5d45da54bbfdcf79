package mcp

import (
	"encoding/json"
	"testing"
)

func FuzzClassify(f *testing.F) {
	seeds := []string{
		`{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"a","arguments":{"x":1}}}`,
		`[{"jsonrpc":"2.0","id":1,"method":"tools/list"},{"jsonrpc":"2.0","method":"n"}]`,
		`{"jsonrpc":"2.0","id":"x","result":{}}`,
		`{"jsonrpc":"2.0","id":2,"method":"resources/read","params":{"uri":"file:///a"}}`,
		`{"jsonrpc":"2.0","method":"prompts/get","params":{"name":"p"}}`,
		`[]`, `{`, `null`, "\xff",
	}
	for _, s := range seeds {
		f.Add("POST", []byte(s), false)
	}
	f.Add("POST", []byte(`{"jsonrpc":"2.0","id":1,"method":"tools/list","params":{"_meta":{"io.modelcontextprotocol/protocolVersion":"2026-07-28"}}}`), false)
	f.Add("POST", []byte(`{"jsonrpc":"2.0","id":1,"method":"subscriptions/listen","params":{"notifications":{"taskIds":["a"]}}}`), false)
	f.Add("GET", []byte(nil), false)
	f.Fuzz(func(t *testing.T, method string, body []byte, partial bool) {
		r, err := Classify(Input{Method: method, Body: body, Partial: partial, Limit: 1 << 16})
		if (r == nil) == (err == nil) {
			t.Fatalf("exactly one of request and error must be set: %v %v", r, err)
		}
		if err != nil {
			switch err.Code {
			case CodeParseError, CodeInvalidRequest, CodeInvalidParams, CodeHeaderMismatch:
			default:
				t.Fatalf("unexpected code %d", err.Code)
			}
			if err.ID != nil && !json.Valid(err.ID) {
				t.Fatalf("error id is not JSON: %q", err.ID)
			}
			return
		}
		if len(r.Messages) == 0 {
			t.Fatal("accepted request without messages")
		}
		if method == "POST" && (partial || !json.Valid(body)) {
			t.Fatal("accepted a partial or invalid body")
		}
		for _, m := range r.Messages {
			switch m.Kind {
			case KindRequest:
				if m.Method == "" || m.ID == nil {
					t.Fatalf("request without method or id: %+v", m)
				}
				if m.Method == "tools/call" && m.Tool == "" {
					t.Fatal("tools/call without tool name accepted")
				}
			case KindNotification:
				if m.Method == "" || m.ID != nil {
					t.Fatalf("bad notification %+v", m)
				}
			case KindResponse:
				if m.ID == nil {
					t.Fatal("response without id")
				}
			}
		}
	})
}
