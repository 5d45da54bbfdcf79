package mcp

import (
	"encoding/json"
	"reflect"
	"strings"
	"testing"
)

// meta is the _meta of the spec's examples (basic/transports/
// streamable-http, "Standard Request Headers").
const meta = `"_meta":{"io.modelcontextprotocol/protocolVersion":"2026-07-28","io.modelcontextprotocol/clientInfo":{"name":"ExampleClient","version":"1.0.0"},"io.modelcontextprotocol/clientCapabilities":{}}`

// held is a held-back request: a body and its headers as the client sent
// them (names lowercased, as Envoy hands them over).
type held struct {
	method  string // HTTP method, POST when empty
	body    string
	headers map[string]string
}

func (h held) input(tools map[string][]ParamHeader) Input {
	method := h.method
	if method == "" {
		method = "POST"
	}
	in := Input{Method: method, Body: []byte(h.body), Limit: 1 << 20, Header: func(k string) (string, bool) {
		v, ok := h.headers[k]
		return v, ok
	}}
	if tools != nil {
		in.ParamHeaders = func(tool string) ([]ParamHeader, bool) {
			hs, ok := tools[tool]
			return hs, ok
		}
	}
	return in
}

// hdr builds a 2026-07-28 header set: the version, then name/value pairs.
func hdr(kv ...string) map[string]string {
	h := map[string]string{"mcp-protocol-version": "2026-07-28"}
	for i := 0; i+1 < len(kv); i += 2 {
		h[kv[i]] = kv[i+1]
	}
	return h
}

func call(id, name, args string) string {
	return `{"jsonrpc":"2.0","id":` + id + `,"method":"tools/call","params":{"name":` + name + `,"arguments":` + args + `,` + meta + `}}`
}

// The tools of the held-back requests: execute_sql is the spec's example
// tool definition ("Custom Headers from Tool Parameters").
var annotated = map[string][]ParamHeader{
	"execute_sql": {{Name: "Region", Path: []string{"region"}}},
	"greet":       {{Name: "Greeting", Path: []string{"greeting"}}, {Name: "Text", Path: []string{"text"}}, {Name: "Val", Path: []string{"val"}}},
	"count":       {{Name: "Count", Path: []string{"n"}}, {Name: "Flag", Path: []string{"flag"}}},
	"nested":      {{Name: "Tenant", Path: []string{"target", "tenant"}}},
	"blob":        {{Name: "Blob", Path: []string{"blob"}}},
}

func TestModernHeadersAccepted(t *testing.T) {
	cases := map[string]held{
		"spec tools/call example": {body: call("1", `"get_weather"`, `{"location":"Seattle, WA"}`),
			headers: hdr("mcp-method", "tools/call", "mcp-name", "get_weather")},
		"spec resources/read example": {body: `{"jsonrpc":"2.0","id":2,"method":"resources/read","params":{"uri":"file:///projects/myapp/config.json",` + meta + `}}`,
			headers: hdr("mcp-method", "resources/read", "mcp-name", "file:///projects/myapp/config.json")},
		"prompts/get": {body: `{"jsonrpc":"2.0","id":"p","method":"prompts/get","params":{"name":"greet",` + meta + `}}`,
			headers: hdr("mcp-method", "prompts/get", "mcp-name", "greet")},
		"spec x-mcp-header example": {body: `{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{` + meta + `,"name":"execute_sql","arguments":{"region":"us-west1","query":"SELECT * FROM users"}}}`,
			headers: hdr("mcp-method", "tools/call", "mcp-name", "execute_sql", "mcp-param-region", "us-west1")},
		"Base64 Mcp-Name for a non-ASCII tool name": {body: call("3", `"天気"`, `{}`),
			headers: hdr("mcp-method", "tools/call", "mcp-name", "=?base64?5aSp5rCX?=")},
		"Base64 Mcp-Name for a URI with spaces": {body: `{"jsonrpc":"2.0","id":2,"method":"resources/read","params":{"uri":" padded ",` + meta + `}}`,
			headers: hdr("mcp-method", "resources/read", "mcp-name", "=?base64?IHBhZGRlZCA=?=")},
		"spec encoding table": {body: call("4", `"greet"`, `{"greeting":"Hello, 世界","text":"line1\nline2","val":"=?base64?literal?="}`),
			headers: hdr("mcp-method", "tools/call", "mcp-name", "greet",
				"mcp-param-greeting", "=?base64?SGVsbG8sIOS4lueVjA==?=", "mcp-param-text", "=?base64?bGluZTEKbGluZTI=?=", "mcp-param-val", "=?base64?PT9iYXNlNjQ/bGl0ZXJhbD89?=")},
		"values that only look like the sentinel are literal": {body: call("5", `"greet"`, `{"greeting":"SGVsbG8=","text":"=?base64?SGVsbG8=","val":"=?BASE64?SGVsbG8=?="}`),
			headers: hdr("mcp-method", "tools/call", "mcp-name", "greet", "mcp-param-greeting", "SGVsbG8=", "mcp-param-text", "=?base64?SGVsbG8=", "mcp-param-val", "=?BASE64?SGVsbG8=?=")},
		"integer compared numerically (42.0 == 42)": {body: call("6", `"count"`, `{"n":42,"flag":true}`),
			headers: hdr("mcp-method", "tools/call", "mcp-name", "count", "mcp-param-count", "42.0", "mcp-param-flag", "true")},
		"integer written 4.2e1 in the body": {body: call("7", `"count"`, `{"n":4.2e1,"flag":false}`),
			headers: hdr("mcp-method", "tools/call", "mcp-name", "count", "mcp-param-count", "42", "mcp-param-flag", "false")},
		"negative integer": {body: call("8", `"count"`, `{"n":-7}`),
			headers: hdr("mcp-method", "tools/call", "mcp-name", "count", "mcp-param-count", "-7")},
		"null and absent values need no header": {body: call("9", `"count"`, `{"n":null}`),
			headers: hdr("mcp-method", "tools/call", "mcp-name", "count")},
		"nested property": {body: call("10", `"nested"`, `{"target":{"tenant":"acme","x":1}}`),
			headers: hdr("mcp-method", "tools/call", "mcp-name", "nested", "mcp-param-tenant", "acme")},
		"empty string value, empty header": {body: call("11", `"execute_sql"`, `{"region":""}`),
			headers: hdr("mcp-method", "tools/call", "mcp-name", "execute_sql", "mcp-param-region", "")},
		"surrounding whitespace in a header is not part of it": {body: call("12", `"foo"`, `{}`),
			headers: hdr("mcp-method", "tools/call", "mcp-name", "  foo ")},
		"Mcp-Param headers of an unknown tool are not checked": {body: call("13", `"unknown_tool"`, `{"region":"x"}`),
			headers: hdr("mcp-method", "tools/call", "mcp-name", "unknown_tool", "mcp-param-region", "elsewhere")},
		"an Mcp-Param header no annotation names is forwarded and ignored": {body: call("14", `"execute_sql"`, `{"region":"eu"}`),
			headers: hdr("mcp-method", "tools/call", "mcp-name", "execute_sql", "mcp-param-region", "eu", "mcp-param-other", "anything")},
		"server/discover": {body: `{"jsonrpc":"2.0","id":"discover-1","method":"server/discover","params":{` + meta + `}}`,
			headers: hdr("mcp-method", "server/discover")},
		"subscriptions/listen": {body: `{"jsonrpc":"2.0","id":1,"method":"subscriptions/listen","params":{` + meta + `,"notifications":{"toolsListChanged":true,"resourceSubscriptions":["file:///project/config.json"]}}}`,
			headers: hdr("mcp-method", "subscriptions/listen")},
		"tasks/get carries the task id in Mcp-Name": {body: `{"jsonrpc":"2.0","id":3,"method":"tasks/get","params":{"taskId":"786512e2-9e0d-44bd-8f29-789f320fe840",` + meta + `}}`,
			headers: hdr("mcp-method", "tasks/get", "mcp-name", "786512e2-9e0d-44bd-8f29-789f320fe840")},
		"a notification needs no standard headers": {body: `{"jsonrpc":"2.0","method":"notifications/cancelled","params":{"requestId":1}}`,
			headers: hdr()},
		"GET passes to the server (which answers 405)":     {method: "GET", headers: hdr()},
		"DELETE passes to the server (which answers 405)":  {method: "DELETE", headers: hdr("mcp-session-id", "s-1")},
		"MRTR retry: inputResponses and requestState pass": {body: `{"jsonrpc":"2.0","id":2,"method":"tools/call","params":{"name":"get_weather","arguments":{},"inputResponses":{"a":{"action":"accept"}},"requestState":"opaque",` + meta + `}}`, headers: hdr("mcp-method", "tools/call", "mcp-name", "get_weather")},
	}
	for name, c := range cases {
		t.Run(name, func(t *testing.T) {
			r, err := Classify(c.input(annotated))
			if err != nil {
				t.Fatalf("refused: %v (kind %s)", err, err.Kind)
			}
			if !r.Modern {
				t.Fatal("not classified as 2026-07-28")
			}
		})
	}
}

func TestModernHeadersRefused(t *testing.T) {
	cases := map[string]struct {
		held
		id     string
		substr string
	}{
		"missing Mcp-Method": {held{body: call("1", `"get_weather"`, `{}`), headers: hdr("mcp-name", "get_weather")}, "1", "missing required Mcp-Method"},
		"Mcp-Method does not match the body": {held{body: `{"jsonrpc":"2.0","id":2,"method":"prompts/get","params":{"name":"x",` + meta + `}}`,
			headers: hdr("mcp-method", "tools/call", "mcp-name", "x")}, "2", "Mcp-Method header value"},
		"method values are case-sensitive": {held{body: call("3", `"a"`, `{}`), headers: hdr("mcp-method", "TOOLS/CALL", "mcp-name", "a")}, "3", "Mcp-Method"},
		"missing Mcp-Name on tools/call":   {held{body: call("4", `"a"`, `{}`), headers: hdr("mcp-method", "tools/call")}, "4", "missing required Mcp-Name"},
		"missing Mcp-Name on resources/read": {held{body: `{"jsonrpc":"2.0","id":5,"method":"resources/read","params":{"uri":"file:///a",` + meta + `}}`,
			headers: hdr("mcp-method", "resources/read")}, "5", "Mcp-Name"},
		"missing Mcp-Name on prompts/get": {held{body: `{"jsonrpc":"2.0","id":6,"method":"prompts/get","params":{"name":"p",` + meta + `}}`,
			headers: hdr("mcp-method", "prompts/get")}, "6", "Mcp-Name"},
		"missing Mcp-Name on tasks/get": {held{body: `{"jsonrpc":"2.0","id":7,"method":"tasks/get","params":{"taskId":"t-1",` + meta + `}}`,
			headers: hdr("mcp-method", "tasks/get")}, "7", "Mcp-Name"},
		"spec example: Mcp-Name foo, body bar": {held{body: call("8", `"bar"`, `{}`), headers: hdr("mcp-method", "tools/call", "mcp-name", "foo")}, "8", `Mcp-Name header value "foo" does not match body value "bar"`},
		"Base64 Mcp-Name that decodes to another name": {held{body: call("9", `"delete_all"`, `{}`),
			headers: hdr("mcp-method", "tools/call", "mcp-name", "=?base64?c2VhcmNo?=")}, "9", `"search" does not match body value "delete_all"`},
		"plain Mcp-Name for a name that needs the sentinel is compared as is": {held{body: call("10", `"=?base64?c2VhcmNo?="`, `{}`),
			headers: hdr("mcp-method", "tools/call", "mcp-name", "=?base64?c2VhcmNo?=")}, "10", "does not match"},
		"invalid Base64 padding":     {held{body: call("11", `"Hello"`, `{}`), headers: hdr("mcp-method", "tools/call", "mcp-name", "=?base64?SGVsbG8?=")}, "11", "invalid Base64"},
		"invalid Base64 characters":  {held{body: call("12", `"Hello"`, `{}`), headers: hdr("mcp-method", "tools/call", "mcp-name", "=?base64?SGVs!!!bG8=?=")}, "12", "invalid Base64"},
		"raw non-ASCII header value": {held{body: call("13", `"天気"`, `{}`), headers: hdr("mcp-method", "tools/call", "mcp-name", "天気")}, "13", "character not allowed"},
		"spec: client omits the Mcp-Param header, value in body": {held{body: call("14", `"execute_sql"`, `{"region":"us-west1","query":"x"}`),
			headers: hdr("mcp-method", "tools/call", "mcp-name", "execute_sql")}, "14", "missing Mcp-Param-Region header"},
		"Mcp-Param value does not match": {held{body: call("15", `"execute_sql"`, `{"region":"us-west1"}`),
			headers: hdr("mcp-method", "tools/call", "mcp-name", "execute_sql", "mcp-param-region", "eu-west1")}, "15", "Mcp-Param-Region header does not match"},
		"Mcp-Param header for an absent argument": {held{body: call("16", `"execute_sql"`, `{"query":"x"}`),
			headers: hdr("mcp-method", "tools/call", "mcp-name", "execute_sql", "mcp-param-region", "us-west1")}, "16", "absent or null"},
		"Mcp-Param header for a null argument": {held{body: call("17", `"execute_sql"`, `{"region":null}`),
			headers: hdr("mcp-method", "tools/call", "mcp-name", "execute_sql", "mcp-param-region", "null")}, "17", "absent or null"},
		"integers differ": {held{body: call("18", `"count"`, `{"n":42}`),
			headers: hdr("mcp-method", "tools/call", "mcp-name", "count", "mcp-param-count", "43")}, "18", "Mcp-Param-Count"},
		"integers that differ only past float64 precision": {held{body: call("19", `"count"`, `{"n":9007199254740993}`),
			headers: hdr("mcp-method", "tools/call", "mcp-name", "count", "mcp-param-count", "9007199254740992")}, "19", "Mcp-Param-Count"},
		"a number header that is not a number": {held{body: call("20", `"count"`, `{"n":1}`),
			headers: hdr("mcp-method", "tools/call", "mcp-name", "count", "mcp-param-count", "0x1")}, "20", "Mcp-Param-Count"},
		"booleans are lowercase": {held{body: call("21", `"count"`, `{"flag":true}`),
			headers: hdr("mcp-method", "tools/call", "mcp-name", "count", "mcp-param-flag", "True")}, "21", "Mcp-Param-Flag"},
		"Base64 Mcp-Param that decodes to another value": {held{body: call("22", `"greet"`, `{"greeting":"Hello, 世界"}`),
			headers: hdr("mcp-method", "tools/call", "mcp-name", "greet", "mcp-param-greeting", "=?base64?SGVsbG8=?=")}, "22", "Mcp-Param-Greeting"},
		"an object argument cannot be mirrored": {held{body: call("23", `"blob"`, `{"blob":{"a":1}}`),
			headers: hdr("mcp-method", "tools/call", "mcp-name", "blob", "mcp-param-blob", "x")}, "23", "Mcp-Param-Blob"},
		"nested value differs": {held{body: call("24", `"nested"`, `{"target":{"tenant":"acme"}}`),
			headers: hdr("mcp-method", "tools/call", "mcp-name", "nested", "mcp-param-tenant", "globex")}, "24", "target.tenant"},
		"a case variant of the mirrored argument": {held{body: call("25", `"execute_sql"`, `{"Region":"us-west1"}`),
			headers: hdr("mcp-method", "tools/call", "mcp-name", "execute_sql")}, "25", "case variant"},
		"MCP-Protocol-Version differs from _meta": {held{body: call("26", `"a"`, `{}`),
			headers: map[string]string{"mcp-protocol-version": "2025-11-25", "mcp-method": "tools/call", "mcp-name": "a"}}, "26", `header "2025-11-25" does not match the body's _meta protocol version "2026-07-28"`},
		"MCP-Protocol-Version missing while _meta names one": {held{body: call("27", `"a"`, `{}`),
			headers: map[string]string{"mcp-method": "tools/call", "mcp-name": "a"}}, "27", "MCP-Protocol-Version header is required"},
	}
	for name, c := range cases {
		t.Run(name, func(t *testing.T) {
			r, err := Classify(c.input(annotated))
			if err == nil {
				t.Fatalf("accepted: %+v", r.Messages)
			}
			if err.Code != CodeHeaderMismatch || err.Kind != ErrorHeaderMismatch {
				t.Fatalf("got %d (%s) %q, want -32020", err.Code, err.Kind, err.Message)
			}
			if string(err.ID) != c.id {
				t.Errorf("error id %s, want %s", err.ID, c.id)
			}
			if !strings.Contains(err.Message, c.substr) || !strings.HasPrefix(err.Message, "Header mismatch: ") {
				t.Errorf("message %q lacks %q", err.Message, c.substr)
			}
		})
	}
}

// Argument values in Mcp-Param headers may be confidential: a mismatch
// names the header and the argument, never their values.
func TestParamMismatchNamesNoValue(t *testing.T) {
	h := held{body: call("1", `"execute_sql"`, `{"region":"secret-region-a"}`),
		headers: hdr("mcp-method", "tools/call", "mcp-name", "execute_sql", "mcp-param-region", "secret-region-b")}
	_, err := Classify(h.input(annotated))
	if err == nil || strings.Contains(err.Message, "secret-region") {
		t.Fatalf("got %v", err)
	}
}

func TestModernRequestShape(t *testing.T) {
	cases := map[string]struct {
		held
		code int
		kind ErrorKind
	}{
		"a request without _meta protocol version": {held{body: `{"jsonrpc":"2.0","id":1,"method":"tools/list","params":{}}`,
			headers: hdr("mcp-method", "tools/list")}, CodeInvalidParams, ErrorInvalidParams},
		"_meta that is not an object": {held{body: `{"jsonrpc":"2.0","id":1,"method":"tools/list","params":{"_meta":[1]}}`,
			headers: hdr("mcp-method", "tools/list")}, CodeInvalidParams, ErrorInvalidParams},
		"a protocol version that is not a string": {held{body: `{"jsonrpc":"2.0","id":1,"method":"tools/list","params":{"_meta":{"io.modelcontextprotocol/protocolVersion":20260728}}}`,
			headers: hdr("mcp-method", "tools/list")}, CodeInvalidParams, ErrorInvalidParams},
		"a batch":                    {held{body: `[` + call("1", `"a"`, `{}`) + `]`, headers: hdr("mcp-method", "tools/call", "mcp-name", "a")}, CodeInvalidRequest, ErrorInvalid},
		"a response from the client": {held{body: `{"jsonrpc":"2.0","id":1,"result":{}}`, headers: hdr()}, CodeInvalidRequest, ErrorInvalid},
		"a listen filter of the wrong type": {held{body: `{"jsonrpc":"2.0","id":1,"method":"subscriptions/listen","params":{` + meta + `,"notifications":{"resourceSubscriptions":"file:///a"}}}`,
			headers: hdr("mcp-method", "subscriptions/listen")}, CodeInvalidParams, ErrorInvalidParams},
	}
	for name, c := range cases {
		t.Run(name, func(t *testing.T) {
			_, err := Classify(c.input(nil))
			if err == nil || err.Code != c.code || err.Kind != c.kind {
				t.Fatalf("got %v, want %d", err, c.code)
			}
		})
	}
}

func TestUnknownProtocolVersion(t *testing.T) {
	h := held{body: `{"jsonrpc":"2.0","id":1,"method":"tools/list"}`, headers: map[string]string{"mcp-protocol-version": "2099-01-01"}}
	_, err := Classify(h.input(nil))
	if err == nil || err.Code != CodeUnsupportedProtocolVersion || err.Kind != ErrorUnsupportedVersion || string(err.ID) != "1" {
		t.Fatalf("got %v (id %s)", err, err.ID)
	}
	data, _ := json.Marshal(err.Data)
	if string(data) != `{"supported":["2026-07-28","2025-11-25","2025-06-18","2025-03-26","2024-11-05"],"requested":"2099-01-01"}` {
		t.Errorf("data %s", data)
	}
	// A known older version, or none, keeps the 2025 rules: no header is
	// required or compared.
	for _, v := range []string{"", "2025-11-25", "2025-06-18", "2025-03-26", "2024-11-05"} {
		h := held{body: `{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"a"}}`, headers: map[string]string{"mcp-method": "prompts/get", "mcp-name": "b"}}
		if v != "" {
			h.headers["mcp-protocol-version"] = v
		}
		r, err := Classify(h.input(annotated))
		if err != nil || r.Modern {
			t.Errorf("version %q: %v modern=%v", v, err, r != nil && r.Modern)
		}
	}
}

func TestMetaAndNewMethods(t *testing.T) {
	body := `{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"get_weather","arguments":{},"_meta":{"io.modelcontextprotocol/protocolVersion":"2026-07-28","io.modelcontextprotocol/clientInfo":{"name":"ExampleClient","version":"1.0.0","title":"x"},"io.modelcontextprotocol/clientCapabilities":{},"io.modelcontextprotocol/logLevel":"warning","traceparent":"00-0af7651916cd43dd8448eb211c80319c-00f067aa0ba902b7-01"}}}`
	r, err := Classify(held{body: body, headers: hdr("mcp-method", "tools/call", "mcp-name", "get_weather")}.input(nil))
	if err != nil {
		t.Fatal(err)
	}
	want := Meta{ProtocolVersion: "2026-07-28", ClientName: "ExampleClient", ClientVersion: "1.0.0", LogLevel: "warning", Traceparent: "00-0af7651916cd43dd8448eb211c80319c-00f067aa0ba902b7-01"}
	if *r.Messages[0].Metadata() != want {
		t.Errorf("meta %+v", r.Messages[0].Meta)
	}

	// A 2025 initialize names its client in params.clientInfo.
	r, err = Classify(post(`{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-11-25","capabilities":{},"clientInfo":{"name":"claude-ai","version":"0.1.0"}}}`))
	if err != nil || r.Messages[0].Metadata().ClientName != "claude-ai" || r.Messages[0].Metadata().ClientVersion != "0.1.0" {
		t.Fatalf("%v %+v", err, r)
	}

	listen := `{"jsonrpc":"2.0","id":1,"method":"subscriptions/listen","params":{` + meta + `,"notifications":{"toolsListChanged":true,"promptsListChanged":false,"resourceSubscriptions":["file:///a","file:///b"],"taskIds":["t-1"]}}}`
	r, err = Classify(held{body: listen, headers: hdr("mcp-method", "subscriptions/listen")}.input(nil))
	if err != nil {
		t.Fatal(err)
	}
	if l := r.Messages[0].Listen; l == nil || !reflect.DeepEqual(*l, Listen{ToolsListChanged: true, Resources: []string{"file:///a", "file:///b"}, Tasks: []string{"t-1"}}) {
		t.Errorf("listen %+v", r.Messages[0].Listen)
	}

	// tasks/result is no method in 2026-07-28: not a task request there.
	r, err = Classify(held{body: `{"jsonrpc":"2.0","id":1,"method":"tasks/result","params":{"taskId":"abc",` + meta + `}}`, headers: hdr("mcp-method", "tasks/result")}.input(nil))
	if err != nil || r.Messages[0].Task != "" {
		t.Errorf("2026-07-28 tasks/result: %v %+v", err, r)
	}
	for _, m := range []string{"tasks/get", "tasks/update", "tasks/cancel"} {
		r, err := Classify(post(`{"jsonrpc":"2.0","id":1,"method":"` + m + `","params":{"taskId":"abc","inputResponses":{}}}`))
		if err != nil || r.Messages[0].Task != "abc" {
			t.Errorf("%s: %v %+v", m, err, r)
		}
		if _, err := Classify(post(`{"jsonrpc":"2.0","id":1,"method":"` + m + `","params":{}}`)); err == nil || err.Code != CodeInvalidRequest {
			t.Errorf("%s without taskId: %v", m, err)
		}
		if _, err := Classify(post(`{"jsonrpc":"2.0","id":1,"method":"` + m + `","params":{"taskid":"abc"}}`)); err == nil || !strings.Contains(err.Message, "case variant") {
			t.Errorf("%s with a case variant of taskId: %v", m, err)
		}
	}
	if _, err := Classify(post(`{"jsonrpc":"2.0","id":1,"method":"tools/list","params":{"_META":{}}}`)); err == nil || !strings.Contains(err.Message, "case variant") {
		t.Errorf("a case variant of _meta: %v", err)
	}
}

func TestParamHeadersFromSchema(t *testing.T) {
	ok := map[string]struct {
		schema string
		want   []ParamHeader
	}{
		"spec example": {`{"type":"object","properties":{"region":{"type":"string","description":"The region","x-mcp-header":"Region"},"query":{"type":"string"}},"required":["region","query"]}`,
			[]ParamHeader{{Name: "Region", Path: []string{"region"}}}},
		"nested, integer and boolean": {`{"type":"object","properties":{"t":{"type":"object","properties":{"tenant":{"type":"string","x-mcp-header":"Tenant"}}},"n":{"type":"integer","x-mcp-header":"Count"},"f":{"type":"boolean","x-mcp-header":"Flag"}}}`,
			[]ParamHeader{{Name: "Count", Path: []string{"n"}}, {Name: "Flag", Path: []string{"f"}}, {Name: "Tenant", Path: []string{"t", "tenant"}}}},
		"a property named x-mcp-header":       {`{"type":"object","properties":{"x-mcp-header":{"type":"string"}}}`, nil},
		"header name matching a standard one": {`{"type":"object","properties":{"m":{"type":"string","x-mcp-header":"Method"}}}`, []ParamHeader{{Name: "Method", Path: []string{"m"}}}},
		"no annotations":                      {`{"type":"object","properties":{"a":{"type":"string"}}}`, nil},
		"annotation-like text in a default":   {`{"type":"object","properties":{"a":{"type":"object","default":{"x-mcp-header":"X"}}}}`, nil},
	}
	for name, c := range ok {
		got, err := ParamHeadersFromSchema(json.RawMessage(c.schema))
		if err != nil || !reflect.DeepEqual(got, c.want) {
			t.Errorf("%s: %+v %v", name, got, err)
		}
	}
	bad := map[string]string{
		"duplicate names":               `{"properties":{"a":{"type":"string","x-mcp-header":"Region"},"b":{"type":"string","x-mcp-header":"Region"}}}`,
		"duplicate names, another case": `{"properties":{"a":{"type":"string","x-mcp-header":"Region"},"b":{"type":"string","x-mcp-header":"REGION"}}}`,
		"empty name":                    `{"properties":{"a":{"type":"string","x-mcp-header":""}}}`,
		"space":                         `{"properties":{"a":{"type":"string","x-mcp-header":"My Region"}}}`,
		"colon":                         `{"properties":{"a":{"type":"string","x-mcp-header":"Region:Primary"}}}`,
		"non-ASCII":                     `{"properties":{"a":{"type":"string","x-mcp-header":"Région"}}}`,
		"control character":             `{"properties":{"a":{"type":"string","x-mcp-header":"Region\t1"}}}`,
		"array type":                    `{"properties":{"a":{"type":"array","x-mcp-header":"A"}}}`,
		"object type":                   `{"properties":{"a":{"type":"object","x-mcp-header":"A"}}}`,
		"number type":                   `{"properties":{"a":{"type":"number","x-mcp-header":"A"}}}`,
		"null type":                     `{"properties":{"a":{"type":"null","x-mcp-header":"A"}}}`,
		"through items":                 `{"properties":{"a":{"type":"array","items":{"type":"string","x-mcp-header":"A"}}}}`,
		"through anyOf":                 `{"properties":{"a":{"anyOf":[{"type":"string","x-mcp-header":"A"}]}}}`,
		"in $defs":                      `{"$defs":{"r":{"type":"string","x-mcp-header":"A"}},"properties":{"a":{"$ref":"#/$defs/r"}}}`,
		"at the root":                   `{"type":"string","x-mcp-header":"A"}`,
		"not a string":                  `{"properties":{"a":{"type":"string","x-mcp-header":7}}}`,
	}
	for name, s := range bad {
		if got, err := ParamHeadersFromSchema(json.RawMessage(s)); err == nil {
			t.Errorf("%s: accepted %+v", name, got)
		}
	}
}
