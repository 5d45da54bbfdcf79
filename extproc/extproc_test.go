package extproc_test

import (
	"context"
	"encoding/json"
	"reflect"
	"strings"
	"testing"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	filterv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/ext_proc/v3"
	extprocv3 "github.com/envoyproxy/go-control-plane/envoy/service/ext_proc/v3"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	"github.com/warden-mcp/warden/internal/mcp"
	"github.com/warden-mcp/warden/internal/registry"
	"github.com/warden-mcp/warden/internal/store"
)

func fourTools() []map[string]any {
	return []map[string]any{tool("run_sql", "Run a SQL query"), tool("drop_db", "Drop the database"), tool("export", "Export a table"), tool("lookup", "Look a customer up")}
}

const listReq = `{"jsonrpc":"2.0","id":7,"method":"tools/list","params":{}}`

// A JSON tools/list result is read whole (BUFFERED) and keeps only the
// tools policy lets the caller call; the cursor stays; content-length
// goes; an admin sees every tool.
func TestToolsListBuffered(t *testing.T) {
	e := newEnv(t)
	e.addServer(registry.Spec{Name: "bi", URL: "http://bi.internal:8080/mcp"})
	staff, _ := e.mint("alice", "staff")
	admin, _ := e.mint("root", "admins")
	body := listResult(7, "tools", fourTools(), map[string]any{"nextCursor": "page-2"})

	resp := e.check(staff, listReq, nil)
	if resp.GetStatus().GetCode() != 0 {
		t.Fatalf("tools/list denied: %v", resp.GetStatus())
	}
	r := e.process(metadataContext(resp), "200", "application/json", body)
	mo := r.headers.GetModeOverride()
	if mo.GetResponseBodyMode() != filterv3.ProcessingMode_BUFFERED {
		t.Fatalf("mode override %v, want response body BUFFERED", mo)
	}
	if rm := r.headers.GetResponseHeaders().GetResponse().GetHeaderMutation().GetRemoveHeaders(); !reflect.DeepEqual(rm, []string{"content-length"}) {
		t.Errorf("removed headers %v, want content-length", rm)
	}
	out := r.body(body)
	if got, want := names(t, out, "tools"), []string{"run_sql", "export", "lookup"}; !reflect.DeepEqual(got, want) {
		t.Fatalf("staff sees %v, want %v", got, want)
	}
	var m struct {
		ID     int                        `json:"id"`
		Result map[string]json.RawMessage `json:"result"`
	}
	_ = json.Unmarshal([]byte(out), &m)
	if m.ID != 7 || string(m.Result["nextCursor"]) != `"page-2"` {
		t.Errorf("id or cursor lost: %s", out)
	}
	if _, ok := m.Result["cacheScope"]; ok {
		t.Errorf("a 2025 result got cacheScope: %s", out)
	}

	resp = e.check(admin, listReq, nil)
	r = e.process(metadataContext(resp), "200", "application/json; charset=utf-8", body)
	if got := names(t, r.body(body), "tools"); len(got) != 4 {
		t.Fatalf("admin sees %v, want all four", got)
	}
}

// A 2026-07-28 list result that was filtered says cacheScope private.
func TestModernListIsPrivate(t *testing.T) {
	e := newEnv(t)
	e.addServer(registry.Spec{Name: "bi", URL: "http://bi.internal:8080/mcp"})
	staff, _ := e.mint("alice", "staff")
	req := `{"jsonrpc":"2.0","id":"l1","method":"tools/list","params":{"_meta":{"io.modelcontextprotocol/protocolVersion":"2026-07-28"}}}`
	resp := e.check(staff, req, map[string]string{"mcp-protocol-version": "2026-07-28", "mcp-method": "tools/list"})
	if resp.GetStatus().GetCode() != 0 {
		t.Fatalf("denied: %v", resp.GetStatus())
	}
	b, _ := json.Marshal(map[string]any{"jsonrpc": "2.0", "id": "l1", "result": map[string]any{"tools": fourTools(), "resultType": "complete"}})
	r := e.process(metadataContext(resp), "200", "application/json", string(b))
	out := r.body(string(b))
	var m struct {
		Result map[string]json.RawMessage `json:"result"`
	}
	_ = json.Unmarshal([]byte(out), &m)
	if string(m.Result["cacheScope"]) != `"private"` || string(m.Result["resultType"]) != `"complete"` {
		t.Fatalf("result %s, want cacheScope private and the other members kept", out)
	}
	if got := names(t, out, "tools"); len(got) != 3 {
		t.Fatalf("tools %v", got)
	}
}

// A 2025-11-25 list result that carries the server's own cacheScope
// (the go-sdk stamps "public" whatever the revision) is filtered for one
// caller, so it leaves Warden private; one without the member gets none
// (the revision does not define it).
func TestOlderListKeepsNoPublicScope(t *testing.T) {
	e := newEnv(t)
	e.addServer(registry.Spec{Name: "bi", URL: "http://bi.internal:8080/mcp"})
	staff, _ := e.mint("alice", "staff")
	for _, c := range []struct {
		name  string
		extra map[string]any
		want  string
	}{
		{"server said public", map[string]any{"cacheScope": "public", "ttlMs": 60000}, `"private"`},
		{"no scope", nil, ""},
	} {
		t.Run(c.name, func(t *testing.T) {
			resp := e.check(staff, listReq, map[string]string{"mcp-protocol-version": "2025-11-25"})
			if resp.GetStatus().GetCode() != 0 {
				t.Fatalf("denied: %v", resp.GetStatus())
			}
			b := listResult(7, "tools", fourTools(), c.extra)
			out := e.process(metadataContext(resp), "200", "application/json", b).body(b)
			var m struct {
				Result map[string]json.RawMessage `json:"result"`
			}
			if err := json.Unmarshal([]byte(out), &m); err != nil {
				t.Fatalf("body %q: %v", out, err)
			}
			if got := string(m.Result["cacheScope"]); got != c.want {
				t.Fatalf("cacheScope %q, want %q in %s", got, c.want, out)
			}
			if got := names(t, out, "tools"); len(got) != 3 {
				t.Fatalf("tools %v", got)
			}
		})
	}
}

// An SSE response is STREAMED: chunks cut anywhere (inside an event,
// inside a CRLF) come back as whole events, the list event filtered, a
// server notification and the event's id untouched.
func TestSSEStreamedEventByEvent(t *testing.T) {
	e := newEnv(t)
	e.addServer(registry.Spec{Name: "bi", URL: "http://bi.internal:8080/mcp"})
	staff, _ := e.mint("alice", "staff")
	resp := e.check(staff, listReq, nil)
	note := "event: message\r\nid: 1\r\ndata: {\"jsonrpc\":\"2.0\",\"method\":\"notifications/progress\",\"params\":{}}\r\n\r\n"
	list := "id: 2\ndata: " + listResult(7, "tools", fourTools(), nil) + "\n\n"
	stream := note + list
	for _, cut := range [][]int{{len(note) - 1}, {10, len(note) + 5, len(stream) - 1}, {len(note)}} {
		var chunks []string
		prev := 0
		for _, c := range cut {
			chunks = append(chunks, stream[prev:c])
			prev = c
		}
		chunks = append(chunks, stream[prev:])
		r := e.process(metadataContext(resp), "200", "text/event-stream", chunks...)
		if r.headers.GetModeOverride().GetResponseBodyMode() != filterv3.ProcessingMode_STREAMED {
			t.Fatalf("mode %v, want STREAMED", r.headers.GetModeOverride())
		}
		out := r.body(chunks...)
		if !strings.HasPrefix(out, note) {
			t.Fatalf("cut %v: the notification event changed: %q", cut, out)
		}
		ev := strings.TrimPrefix(out, note)
		if !strings.HasPrefix(ev, "id: 2\ndata: ") || !strings.HasSuffix(ev, "\n\n") {
			t.Fatalf("cut %v: list event %q", cut, ev)
		}
		data := strings.TrimSuffix(strings.TrimPrefix(ev, "id: 2\ndata: "), "\n\n")
		if got := names(t, data, "tools"); !reflect.DeepEqual(got, []string{"run_sql", "export", "lookup"}) {
			t.Fatalf("cut %v: tools %v", cut, got)
		}
	}
}

// The priming event a server opens an SSE response with (an id and empty
// data, so that the client can resume) carries no message and passes
// unchanged; the list after it is filtered.
func TestSSEPrimingEventPasses(t *testing.T) {
	e := newEnv(t)
	e.addServer(registry.Spec{Name: "bi", URL: "http://bi.internal:8080/mcp"})
	staff, _ := e.mint("alice", "staff")
	resp := e.check(staff, listReq, nil)
	for _, priming := range []string{"id: 0_abc\ndata: \n\n", "id: 0_abc\ndata:\n\n", "retry: 1000\n\n"} {
		list := "id: 1_abc\ndata: " + listResult(7, "tools", fourTools(), nil) + "\n\n"
		r := e.process(metadataContext(resp), "200", "text/event-stream", priming, list)
		if got := r.body(priming, list); !strings.HasPrefix(got, priming) {
			t.Fatalf("priming event %q became %q", priming, got)
		}
		data := strings.TrimSuffix(strings.TrimPrefix(r.body(priming, list), priming+"id: 1_abc\ndata: "), "\n\n")
		if got := names(t, data, "tools"); !reflect.DeepEqual(got, []string{"run_sql", "export", "lookup"}) {
			t.Fatalf("after priming %q: tools %v", priming, got)
		}
	}
}

// Prompts, resources and resource templates are filtered as the call
// that would use them.
func TestOtherLists(t *testing.T) {
	e := newEnv(t)
	e.addServer(registry.Spec{Name: "bi", URL: "http://bi.internal:8080/mcp"})
	staff, _ := e.mint("alice", "staff")
	for _, c := range []struct {
		method, key string
		items       []map[string]any
		want        []string
	}{
		{"prompts/list", "prompts", []map[string]any{{"name": "summary"}}, []string{"summary"}},
		{"resources/list", "resources", []map[string]any{{"uri": "file:///public/a", "name": "a"}, {"uri": "file:///secret/b", "name": "b"}}, []string{"afile:///public/a"}},
		{"resources/templates/list", "resourceTemplates", []map[string]any{{"uriTemplate": "file:///public/{x}"}, {"uriTemplate": "db://{table}"}}, []string{"file:///public/{x}"}},
	} {
		resp := e.check(staff, `{"jsonrpc":"2.0","id":3,"method":"`+c.method+`"}`, nil)
		body := listResult(3, c.key, c.items, nil)
		r := e.process(metadataContext(resp), "200", "application/json", body)
		if got := names(t, r.body(body), c.key); !reflect.DeepEqual(got, c.want) {
			t.Errorf("%s: %v, want %v", c.method, got, c.want)
		}
	}
}

// What the response path does not read passes without its body being
// sent: no metadata (a method Warden does not filter), an error status,
// another content type.
func TestUnreadResponsesPass(t *testing.T) {
	e := newEnv(t)
	e.addServer(registry.Spec{Name: "bi", URL: "http://bi.internal:8080/mcp"})
	staff, _ := e.mint("alice", "staff")
	ping := e.check(staff, `{"jsonrpc":"2.0","id":1,"method":"prompts/get","params":{"name":"summary"}}`, nil)
	if ping.GetStatus().GetCode() != 0 || ping.GetDynamicMetadata() != nil {
		t.Fatalf("prompts/get: %v, metadata %v (want allowed, none)", ping.GetStatus(), ping.GetDynamicMetadata())
	}
	list := e.check(staff, listReq, nil)
	for _, c := range []struct {
		name     string
		resp     bool
		status   string
		ct       string
		noHeader bool
	}{
		{"no metadata", false, "200", "application/json", false},
		{"status 500", true, "500", "application/json", false},
		{"text/plain", true, "200", "text/plain", false},
	} {
		md := metadataContext(list)
		if !c.resp {
			md = metadataContext(ping)
		}
		r := e.process(md, c.status, c.ct, "x")
		if r.headers.GetModeOverride() != nil || r.headers.GetResponseHeaders() == nil || len(r.bodies) != 0 {
			t.Errorf("%s: %v, want the headers passed unchanged and no body asked for", c.name, r.headers)
		}
	}
}

// A list Warden cannot read, or a caller revoked since its Check, shows
// nothing: fail closed.
func TestFailsClosed(t *testing.T) {
	e := newEnv(t)
	e.addServer(registry.Spec{Name: "bi", URL: "http://bi.internal:8080/mcp"})
	staff, grantID := e.mint("alice", "staff")
	resp := e.check(staff, listReq, nil)
	for _, body := range []string{`{"jsonrpc":"2.0","id":7,"result":{"tools":"not a list"}}`, `{"jsonrpc":"2.0","id":7,"result":{"tools":[{"description":"no name"}]}}`, `not json`} {
		r := e.process(metadataContext(resp), "200", "application/json", body)
		out := r.body(body)
		if !strings.Contains(out, `"error"`) || !strings.Contains(out, "-32603") || strings.Contains(out, "description") {
			t.Errorf("body %s became %s, want a JSON-RPC error", body, out)
		}
	}
	if err := e.st.UpdateGrant(context.Background(), grantID, func(g store.Grant) (store.Grant, error) {
		g.RevokedAt = g.CreatedAt
		return g, nil
	}); err != nil {
		t.Fatal(err)
	}
	r := e.process(metadataContext(resp), "200", "application/json", listResult(7, "tools", fourTools(), nil))
	ir := r.headers.GetImmediateResponse()
	if ir == nil || ir.GetStatus().GetCode() != 403 || strings.Contains(string(ir.GetBody()), "run_sql") {
		t.Fatalf("revoked caller: %v, want an immediate 403 without the list", r.headers)
	}
}

// A tools/call result that creates a task records its origin, so that
// tasks/get is decided like the call.
func TestTaskRecordedFromCallResult(t *testing.T) {
	e := newEnv(t)
	e.addServer(registry.Spec{Name: "bi", URL: "http://bi.internal:8080/mcp"})
	staff, _ := e.mint("alice", "staff")
	resp := e.check(staff, `{"jsonrpc":"2.0","id":9,"method":"tools/call","params":{"name":"run_sql","arguments":{"q":"select 1"}}}`, nil)
	if resp.GetStatus().GetCode() != 0 {
		t.Fatalf("call denied: %v", resp.GetStatus())
	}
	body := `{"jsonrpc":"2.0","id":9,"result":{"resultType":"task","taskId":"task-42","ttlMs":60000}}`
	r := e.process(metadataContext(resp), "200", "application/json", body)
	if out := r.body(body); out != body {
		t.Errorf("a call result changed: %s", out)
	}
	o, err := e.tasks.Lookup(context.Background(), "bi", "task-42")
	if err != nil {
		t.Fatal(err)
	}
	if o.Subject != "alice" || o.Tool != "run_sql" || string(o.Arguments) != `{"q":"select 1"}` {
		t.Fatalf("origin %+v", o)
	}
	get := e.check(staff, `{"jsonrpc":"2.0","id":10,"method":"tasks/get","params":{"taskId":"task-42"}}`, nil)
	if get.GetStatus().GetCode() != 0 {
		t.Fatalf("tasks/get of the recorded task: %v", get.GetStatus())
	}
}

// The request path learns a tool's x-mcp-header annotations from the
// definitions the response path recorded.
func TestParamHeadersFromRecordedTools(t *testing.T) {
	e := newEnv(t)
	e.addServer(registry.Spec{Name: "bi", URL: "http://bi.internal:8080/mcp"})
	staff, _ := e.mint("alice", "staff")
	if _, ok := e.pins.ParamHeaders("bi", "run_sql"); ok {
		t.Fatal("a tool never listed has known headers")
	}
	sql := tool("run_sql", "Run SQL")
	sql["inputSchema"] = map[string]any{"type": "object", "properties": map[string]any{"region": map[string]any{"type": "string", "x-mcp-header": "Region"}}}
	body := listResult(7, "tools", []map[string]any{sql}, nil)
	e.process(metadataContext(e.check(staff, listReq, nil)), "200", "application/json", body)
	got, ok := e.pins.ParamHeaders("bi", "run_sql")
	if !ok || !reflect.DeepEqual(got, []mcp.ParamHeader{{Name: "Region", Path: []string{"region"}}}) {
		t.Fatalf("headers %+v %v", got, ok)
	}
	call := func(region string) uint32 {
		req := `{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"run_sql","arguments":{"region":"eu"},"_meta":{"io.modelcontextprotocol/protocolVersion":"2026-07-28"}}}`
		r := e.check(staff, req, map[string]string{"mcp-protocol-version": "2026-07-28", "mcp-method": "tools/call", "mcp-name": "run_sql", "mcp-param-region": region})
		return uint32(r.GetStatus().GetCode())
	}
	if c := call("eu"); c != 0 {
		t.Errorf("matching Mcp-Param-Region denied: %d", c)
	}
	if c := call("us"); c == 0 {
		t.Errorf("mismatched Mcp-Param-Region allowed")
	}
}

// A subscriptions/listen stream is streamed through the response path,
// which checks its caller again on each chunk: once the grant is revoked
// the exchange ends with an error, and Envoy resets the stream.
func TestListenStreamEndsWhenRevoked(t *testing.T) {
	e := newEnv(t)
	e.addServer(registry.Spec{Name: "bi", URL: "http://bi.internal:8080/mcp"})
	staff, grantID := e.mint("alice", "staff")
	meta := `"_meta":{"io.modelcontextprotocol/protocolVersion":"2026-07-28"}`
	resp := e.check(staff, `{"jsonrpc":"2.0","id":1,"method":"subscriptions/listen","params":{`+meta+`,"notifications":{"toolsListChanged":true}}}`,
		map[string]string{"mcp-protocol-version": "2026-07-28", "mcp-method": "subscriptions/listen"})
	if resp.GetStatus().GetCode() != 0 {
		t.Fatalf("listen denied: %v", resp.GetStatus())
	}
	md := metadataContext(resp)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	stream, err := e.proc.Process(ctx)
	if err != nil {
		t.Fatal(err)
	}
	hm := &corev3.HeaderMap{Headers: []*corev3.HeaderValue{{Key: ":status", RawValue: []byte("200")}, {Key: "content-type", RawValue: []byte("text/event-stream")}}}
	if err := stream.Send(&extprocv3.ProcessingRequest{MetadataContext: md, Request: &extprocv3.ProcessingRequest_ResponseHeaders{ResponseHeaders: &extprocv3.HttpHeaders{Headers: hm}}}); err != nil {
		t.Fatal(err)
	}
	h, err := stream.Recv()
	if err != nil || h.GetModeOverride().GetResponseBodyMode() != filterv3.ProcessingMode_STREAMED {
		t.Fatalf("listen headers: %v %v", h, err)
	}
	chunk := func(s string) error {
		if err := stream.Send(&extprocv3.ProcessingRequest{MetadataContext: md, Request: &extprocv3.ProcessingRequest_ResponseBody{ResponseBody: &extprocv3.HttpBody{Body: []byte(s)}}}); err != nil {
			return err
		}
		_, err := stream.Recv()
		return err
	}
	if err := chunk(": keep-alive\n\n"); err != nil {
		t.Fatalf("a live caller's chunk: %v", err)
	}
	if err := e.st.UpdateGrant(context.Background(), grantID, func(g store.Grant) (store.Grant, error) {
		g.RevokedAt = g.CreatedAt
		return g, nil
	}); err != nil {
		t.Fatal(err)
	}
	if err := chunk(": keep-alive\n\n"); status.Code(err) != codes.PermissionDenied {
		t.Fatalf("after revocation: %v, want the stream ended with PermissionDenied", err)
	}
}

// A tools/call whose arguments are too large for Envoy's metadata (100
// KiB) still records the task its result creates: the Check holds the
// arguments in the store and the metadata names them by reference and
// digest; tasks/get is then decided like the call, with its arguments.
func TestTaskOfLargeCallRecorded(t *testing.T) {
	e := newEnv(t)
	e.addServer(registry.Spec{Name: "bi", URL: "http://bi.internal:8080/mcp"})
	staff, _ := e.mint("alice", "staff")
	args := `{"q":"select '` + strings.Repeat("x", 100<<10) + `'"}`
	resp := e.check(staff, `{"jsonrpc":"2.0","id":9,"method":"tools/call","params":{"name":"run_sql","arguments":`+args+`}}`, nil)
	if resp.GetStatus().GetCode() != 0 {
		t.Fatalf("call denied: %v", resp.GetStatus())
	}
	md := metadataContext(resp)
	if n := proto.Size(md); n > 4<<10 {
		t.Errorf("the metadata of a 100 KiB call is %d bytes: the arguments went into it", n)
	}
	body := `{"jsonrpc":"2.0","id":9,"result":{"resultType":"task","taskId":"task-big","ttlMs":60000}}`
	if out := e.process(md, "200", "application/json", body).body(body); out != body {
		t.Errorf("a call result changed: %s", out)
	}
	o, err := e.tasks.Lookup(context.Background(), "bi", "task-big")
	if err != nil {
		t.Fatal(err)
	}
	if o.Subject != "alice" || o.Tool != "run_sql" || string(o.Arguments) != args {
		t.Fatalf("origin of the task: subject %q tool %q, %d bytes of arguments (want %d)", o.Subject, o.Tool, len(o.Arguments), len(args))
	}
	get := e.check(staff, `{"jsonrpc":"2.0","id":10,"method":"tasks/get","params":{"taskId":"task-big"}}`, nil)
	if get.GetStatus().GetCode() != 0 {
		t.Fatalf("tasks/get of the task of a large call: %v", get.GetStatus())
	}
	other, _ := e.mint("bob", "staff")
	if r := e.check(other, `{"jsonrpc":"2.0","id":11,"method":"tasks/get","params":{"taskId":"task-big"}}`, nil); r.GetStatus().GetCode() == 0 {
		t.Fatalf("another user's tasks/get of the task was allowed")
	}
	// The held arguments served that result; a replayed result finds none
	// and records nothing.
	replay := `{"jsonrpc":"2.0","id":9,"result":{"resultType":"task","taskId":"task-replayed","ttlMs":60000}}`
	e.process(md, "200", "application/json", replay)
	if _, err := e.tasks.Lookup(context.Background(), "bi", "task-replayed"); err == nil {
		t.Fatalf("a second result of the same call recorded a task")
	}
}
