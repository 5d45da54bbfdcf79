package mcp

import (
	"encoding/json"
	"fmt"
	"strings"
	"testing"
)

func post(body string) Input {
	return Input{Method: "POST", Body: []byte(body), Limit: 1 << 20, Header: func(string) (string, bool) { return "", false }}
}

func TestClassify(t *testing.T) {
	type want struct {
		kinds    []Kind
		method   string
		id       string
		tool     string
		args     string // JSON of arguments
		resource string
		prompt   string
		batch    bool
	}
	cases := []struct {
		name string
		in   Input
		want want
	}{
		{"initialize", post(`{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-06-18","capabilities":{}}}`),
			want{kinds: []Kind{KindRequest}, method: "initialize", id: "1"}},
		{"tools/call", post(`{"jsonrpc":"2.0","id":"a-7","method":"tools/call","params":{"name":"run_sql","arguments":{"query":"select 1","n":9007199254740993}}}`),
			want{kinds: []Kind{KindRequest}, method: "tools/call", id: `"a-7"`, tool: "run_sql", args: `{"n":9007199254740993,"query":"select 1"}`}},
		{"tools/call no arguments", post(`{"jsonrpc":"2.0","id":2,"method":"tools/call","params":{"name":"ping"}}`),
			want{kinds: []Kind{KindRequest}, method: "tools/call", id: "2", tool: "ping"}},
		{"resources/read", post(`{"jsonrpc":"2.0","id":3,"method":"resources/read","params":{"uri":"file:///teams/a/x"}}`),
			want{kinds: []Kind{KindRequest}, method: "resources/read", id: "3", resource: "file:///teams/a/x"}},
		{"resources/subscribe", post(`{"jsonrpc":"2.0","id":4,"method":"resources/subscribe","params":{"uri":"mem://x"}}`),
			want{kinds: []Kind{KindRequest}, method: "resources/subscribe", id: "4", resource: "mem://x"}},
		{"prompts/get", post(`{"jsonrpc":"2.0","id":5,"method":"prompts/get","params":{"name":"summarise"}}`),
			want{kinds: []Kind{KindRequest}, method: "prompts/get", id: "5", prompt: "summarise"}},
		{"notification", post(`{"jsonrpc":"2.0","method":"notifications/initialized"}`),
			want{kinds: []Kind{KindNotification}, method: "notifications/initialized"}},
		{"response", post(`{"jsonrpc":"2.0","id":9,"result":{}}`),
			want{kinds: []Kind{KindResponse}, id: "9"}},
		{"error response", post(`{"jsonrpc":"2.0","id":9,"error":{"code":-1,"message":"x"}}`),
			want{kinds: []Kind{KindResponse}, id: "9"}},
		{"batch", post(`[{"jsonrpc":"2.0","id":1,"method":"tools/list"},{"jsonrpc":"2.0","method":"notifications/x"},{"jsonrpc":"2.0","id":2,"result":{}}]`),
			want{kinds: []Kind{KindRequest, KindNotification, KindResponse}, method: "tools/list", id: "1", batch: true}},
		{"GET stream", Input{Method: "GET"}, want{kinds: []Kind{KindStream}}},
		{"DELETE session", Input{Method: "DELETE"}, want{kinds: []Kind{KindSessionEnd}}},
		{"whitespace around body", post("\n  {\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"ping\"}  \n"),
			want{kinds: []Kind{KindRequest}, method: "ping", id: "1"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			r, err := Classify(c.in)
			if err != nil {
				t.Fatalf("unexpected error: %v", err)
			}
			if len(r.Messages) != len(c.want.kinds) || r.Batch != c.want.batch {
				t.Fatalf("messages %d batch %v", len(r.Messages), r.Batch)
			}
			for i, k := range c.want.kinds {
				if r.Messages[i].Kind != k {
					t.Errorf("message %d kind %s, want %s", i, r.Messages[i].Kind, k)
				}
			}
			m := r.Messages[0]
			if m.Method != c.want.method || string(m.ID) != c.want.id || m.Tool != c.want.tool || m.Resource != c.want.resource || m.Prompt != c.want.prompt {
				t.Errorf("got %+v", m)
			}
			if c.want.args != "" {
				got, _ := json.Marshal(m.Arguments)
				if string(got) != c.want.args {
					t.Errorf("arguments %s, want %s", got, c.want.args)
				}
			}
		})
	}
}

func TestHeaders(t *testing.T) {
	h := map[string]string{"mcp-session-id": "s-1", "mcp-protocol-version": "2025-11-25"}
	r, err := Classify(Input{Method: "GET", Header: func(k string) (string, bool) { v, ok := h[k]; return v, ok }})
	if err != nil || r.SessionID != "s-1" || r.ProtocolVersion != "2025-11-25" {
		t.Fatalf("%+v %v", r, err)
	}
}

func TestRejects(t *testing.T) {
	big := `{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"x","arguments":{"q":"` + strings.Repeat("a", 200) + `"}}}`
	cases := []struct {
		name   string
		in     Input
		code   int
		id     string
		substr string
	}{
		{"malformed", post(`{"jsonrpc":"2.0",`), CodeParseError, "", "not valid JSON"},
		{"empty", post(``), CodeParseError, "", "empty"},
		{"bad utf8", post("{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"x\xff\"}"), CodeParseError, "", "UTF-8"},
		{"scalar", post(`42`), CodeInvalidRequest, "", "object or a batch"},
		{"empty batch", post(`[]`), CodeInvalidRequest, "", "empty batch"},
		{"batch with scalar", post(`[{"jsonrpc":"2.0","method":"a"}, 3]`), CodeInvalidRequest, "", "must be an object"},
		{"wrong version", post(`{"jsonrpc":"1.0","id":1,"method":"ping"}`), CodeInvalidRequest, "1", "jsonrpc"},
		{"no version", post(`{"id":1,"method":"ping"}`), CodeInvalidRequest, "1", "jsonrpc"},
		{"null id", post(`{"jsonrpc":"2.0","id":null,"method":"ping"}`), CodeInvalidRequest, "", "string or a number"},
		{"object id", post(`{"jsonrpc":"2.0","id":{},"method":"ping"}`), CodeInvalidRequest, "", "string or a number"},
		{"method not string", post(`{"jsonrpc":"2.0","id":1,"method":5}`), CodeInvalidRequest, "1", "method"},
		{"method and result", post(`{"jsonrpc":"2.0","id":1,"method":"a","result":{}}`), CodeInvalidRequest, "1", "both"},
		{"neither", post(`{"jsonrpc":"2.0","id":1}`), CodeInvalidRequest, "1", "neither"},
		{"response without id", post(`{"jsonrpc":"2.0","result":{}}`), CodeInvalidRequest, "", "needs an id"},
		{"tools/call no name", post(`{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{}}`), CodeInvalidRequest, "1", "params.name"},
		{"tools/call name not string", post(`{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":1}}`), CodeInvalidRequest, "1", "params.name"},
		{"tools/call args not object", post(`{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"a","arguments":[1]}}`), CodeInvalidRequest, "1", "arguments"},
		{"tools/call params array", post(`{"jsonrpc":"2.0","id":1,"method":"tools/call","params":["a"]}`), CodeInvalidRequest, "1", "object in params"},
		{"resources/read no uri", post(`{"jsonrpc":"2.0","id":1,"method":"resources/read","params":{"url":"x"}}`), CodeInvalidRequest, "1", "params.uri"},
		{"case trick", post(`{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"Name":"evil"}}`), CodeInvalidRequest, "1", "case variant"},
		{"params scalar", post(`{"jsonrpc":"2.0","id":1,"method":"ping","params":"x"}`), CodeInvalidRequest, "1", "params"},
		{"partial", Input{Method: "POST", Body: []byte(`{"jsonrpc":"2.0","id":1,"method":"ping"}`), Partial: true}, CodeInvalidRequest, "", "truncated"},
		{"too big", Input{Method: "POST", Body: []byte(big), Limit: 100}, CodeInvalidRequest, "", "exceeds"},
		{"PUT", Input{Method: "PUT"}, CodeInvalidRequest, "", "not part of"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			r, err := Classify(c.in)
			if err == nil {
				t.Fatalf("accepted: %+v", r)
			}
			if err.Code != c.code || string(err.ID) != c.id || !strings.Contains(err.Message, c.substr) {
				t.Fatalf("got %d %q id=%s, want %d containing %q id=%s", err.Code, err.Message, err.ID, c.code, c.substr, c.id)
			}
		})
	}
}

// Issue 13: the classifier and the upstream must read the same message.
// Duplicate keys (JavaScript keeps the last, some parsers the first) and
// keys that differ only in case (Go's encoding/json folds case into struct
// fields) are refused with -32600, wherever they are.
func TestRejectsAmbiguousKeys(t *testing.T) {
	cases := map[string]string{
		"case variant of params.name beside it": `{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"search","Name":"delete_employee"}}`,
		"upper-case variant":                    `{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"safe","NAME":"evil"}}`,
		"duplicated name":                       `{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"first","name":"last"}}`,
		"duplicated method":                     `{"jsonrpc":"2.0","id":1,"method":"tools/list","method":"tools/call","params":{"name":"x"}}`,
		"escaped duplicate":                     `{"jsonrpc":"2.0","id":1,"method":"tools/list","m\u0065thod":"tools/call"}`,
		"case variant of id alone":              `{"jsonrpc":"2.0","ID":5,"method":"tools/call","params":{"name":"x"}}`,
		"case variant of method":                `{"jsonrpc":"2.0","id":1,"Method":"tools/call","method":"ping"}`,
		"case variant of params alone":          `{"jsonrpc":"2.0","id":1,"method":"ping","Params":{}}`,
		"case variant of arguments":             `{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"x","Arguments":{"q":1}}}`,
		"case variant of uri":                   `{"jsonrpc":"2.0","id":1,"method":"resources/read","params":{"uri":"a://1","URI":"a://2"}}`,
		"kelvin sign folds to k":                "{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"tools/call\",\"params\":{\"name\":\"x\",\"arguments\":{\"k\":1,\"\u212a\":2}}}",
		"duplicate inside arguments":            `{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"x","arguments":{"query":"select 1","query":"drop table"}}}`,
		"case variant inside arguments":         `{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"x","arguments":{"query":"select 1","Query":"drop table"}}}`,
		"duplicate deep inside a batch":         `[{"jsonrpc":"2.0","id":1,"method":"ping"},{"jsonrpc":"2.0","id":2,"method":"tools/call","params":{"name":"x","arguments":{"a":[{"b":1,"b":2}]}}}]`,
		"duplicate jsonrpc":                     `{"jsonrpc":"1.0","jsonrpc":"2.0","id":1,"method":"ping"}`,
		"duplicate among many keys (indexed)":   `{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"x","arguments":{` + manyKeys(40) + `,"K7":0}}}`,
	}
	for name, body := range cases {
		t.Run(name, func(t *testing.T) {
			r, err := Classify(post(body))
			if err == nil {
				t.Fatalf("accepted: %+v", r.Messages)
			}
			if err.Code != CodeInvalidRequest || err.Kind != ErrorInvalid {
				t.Fatalf("got %d (%s) %q, want -32600", err.Code, err.Kind, err.Message)
			}
		})
	}
	// Distinct keys that only share a prefix or a fold of other members
	// stay accepted.
	r, err := Classify(post(`{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"x","arguments":{` + manyKeys(40) + `,"names":1,"Nam":2}}}`))
	if err != nil || r.Messages[0].Tool != "x" || len(r.Messages[0].Arguments) != 42 {
		t.Fatalf("distinct keys refused: %v", err)
	}
}

func manyKeys(n int) string {
	var b strings.Builder
	for i := 0; i < n; i++ {
		if i > 0 {
			b.WriteByte(',')
		}
		fmt.Fprintf(&b, `"k%d":%d`, i, i)
	}
	return b.String()
}

// Issue 13: the classifier reads what policy needs and lets the server
// answer for what it does not decide on. resources/subscribe is gone from
// MCP 2026-07-28; a client of that revision may send it bare, and the
// server's -32601 must reach it, not a 400 from Warden.
func TestUndecidedParamsPassToTheServer(t *testing.T) {
	for _, body := range []string{
		`{"jsonrpc":"2.0","id":4,"method":"resources/subscribe"}`,
		`{"jsonrpc":"2.0","id":4,"method":"resources/subscribe","params":{}}`,
		`{"jsonrpc":"2.0","id":4,"method":"resources/unsubscribe","params":null}`,
		`{"jsonrpc":"2.0","id":4,"method":"vendor/unknown","params":{"uri":5,"name":[]}}`,
	} {
		r, err := Classify(post(body))
		if err != nil {
			t.Errorf("%s: refused: %v", body, err)
			continue
		}
		if m := r.Messages[0]; m.Kind != KindRequest || m.Resource != "" {
			t.Errorf("%s: %+v", body, m)
		}
	}
	// What policy does read stays strict: a uri that is there but not a
	// string, and the methods that mean nothing without their name.
	for _, body := range []string{
		`{"jsonrpc":"2.0","id":4,"method":"resources/subscribe","params":{"uri":5}}`,
		`{"jsonrpc":"2.0","id":4,"method":"resources/read","params":{}}`,
		`{"jsonrpc":"2.0","id":4,"method":"prompts/get"}`,
	} {
		if _, err := Classify(post(body)); err == nil || err.Code != CodeInvalidRequest {
			t.Errorf("%s: want -32600, got %v", body, err)
		}
	}
}

// Callers choose a response by kind, never by message text.
func TestErrorKinds(t *testing.T) {
	cases := []struct {
		in   Input
		kind ErrorKind
	}{
		{post(`{"jsonrpc":`), ErrorMalformed},
		{post(""), ErrorMalformed},
		{post("\xff"), ErrorMalformed},
		{post(`{"jsonrpc":"2.0","id":1}`), ErrorInvalid},
		{Input{Method: "PUT"}, ErrorInvalid},
		{Input{Method: "POST", Body: []byte(`{"jsonrpc":"2.0","id":1,"method":"ping"}`), Partial: true}, ErrorTruncated},
		{Input{Method: "POST", Body: []byte(`{"jsonrpc":"2.0","id":1,"method":"ping"}`), Limit: 10}, ErrorTooLarge},
	}
	for _, c := range cases {
		_, err := Classify(c.in)
		if err == nil || err.Kind != c.kind {
			t.Errorf("%s %q: got %v, want kind %s", c.in.Method, c.in.Body, err, c.kind)
		}
	}
}
