package policy

import (
	"bytes"
	"encoding/json"
	"reflect"
	"testing"

	"github.com/open-policy-agent/opa/v1/ast"
)

// fullInput sets every field, with values of every JSON type in the maps.
func fullInput() *Input {
	return &Input{
		Version: InputVersion,
		Subject: Subject{
			Sub: "00u1", Email: "alice@example.com", Name: "Alice",
			Groups: []string{"finance", "staff"},
			Claims: map[string]any{
				"team": "finance", "mfa": true, "level": float64(3), "ratio": 0.25,
				"roles":  []any{"a", float64(1), nil, map[string]any{"x": "y"}},
				"nested": map[string]any{"deep": map[string]any{"n": json.Number("12345678901234567890")}},
				"none":   nil,
			},
		},
		Client: Client{ID: "c1", Name: "Claude", Kind: ClientService},
		Server: Server{Name: "bi", Labels: map[string]string{"env": "prod", "team": "data"}},
		MCP: MCP{
			Kind: KindRequest, Method: "tools/call", ID: "req-7", Tool: "run_sql",
			Arguments: map[string]any{"query": "select 1", "limit": float64(10), "opts": map[string]any{"dry": false}, "tags": []any{}},
			Resource:  "file:///x", Prompt: "p", Session: "s1", ProtocolVersion: "2025-06-18",
			Batch: true, BatchSize: 3,
			ClientInfo: ClientInfo{Name: "ExampleClient", Version: "1.0.0"}, LogLevel: "warning",
			Traceparent:   "00-0af7651916cd43dd8448eb211c80319c-00f067aa0ba902b7-01",
			Task:          Task{ID: "t-1", Method: "tasks/get"},
			Subscriptions: Subscriptions{ToolsListChanged: true, Resources: []string{"file:///a"}, Tasks: []string{"t-1", "t-2"}},
		},
		Request: Request{ID: "r1", Method: "POST", Path: "/mcp/bi?x=1", Host: "warden.example.com",
			Headers: map[string]string{"content-type": "application/json", "x-custom": "v"},
			Time:    "2025-06-01T12:00:00.123456789Z"},
		Grant: Grant{ID: "g1", Scopes: []string{"mcp:tools", "mcp:resources"}, Servers: []string{"bi", "hr"}},
	}
}

// viaJSON is the reference conversion: the JSON document the struct tags
// describe (what docs/policy.md shows), converted by OPA.
func viaJSON(t *testing.T, in *Input) ast.Value {
	t.Helper()
	b, err := json.Marshal(in)
	if err != nil {
		t.Fatal(err)
	}
	v, err := ast.ValueFromReader(bytes.NewReader(b))
	if err != nil {
		t.Fatal(err)
	}
	return v
}

func TestInputValueMatchesJSONDocument(t *testing.T) {
	ids := []any{"req-7", float64(7), float64(1e9), float64(-1), 2.5, json.Number("42"), 9, int64(10), nil}
	for _, id := range ids {
		in := fullInput()
		in.MCP.ID = id
		got, err := in.Value()
		if err != nil {
			t.Fatal(err)
		}
		if want := viaJSON(t, in); got.Compare(want) != 0 {
			t.Fatalf("id %v (%T):\n got %v\nwant %v", id, id, got, want)
		}

		// The same with a Caller built from the same fields.
		c, err := NewCaller(in.Subject, in.Client, in.Server, in.Grant, in.Credential)
		if err != nil {
			t.Fatal(err)
		}
		slim := *in
		slim.Caller = c
		slim.Subject, slim.Client, slim.Server, slim.Grant = Subject{}, Client{}, Server{}, Grant{}
		got2, err := slim.Value()
		if err != nil {
			t.Fatal(err)
		}
		if got2.Compare(got) != 0 {
			t.Fatalf("with Caller:\n got %v\nwant %v", got2, got)
		}
	}
}

// An empty Input still has every field: "" for strings, [] for lists, {}
// for maps, null for the id, so policies need no "is it defined" guards.
func TestInputValueEmptyHasEveryField(t *testing.T) {
	got, err := (&Input{}).Value()
	if err != nil {
		t.Fatal(err)
	}
	want := ast.MustParseTerm(`{
		"version": 0,
		"subject": {"sub": "", "email": "", "name": "", "groups": [], "claims": {}},
		"client": {"id": "", "name": "", "kind": ""},
		"server": {"name": "", "labels": {}},
		"mcp": {"kind": "", "method": "", "id": null, "tool": "", "arguments": {}, "resource": "",
			"prompt": "", "session": "", "protocol_version": "", "batch": false, "batch_size": 0,
			"client_info": {"name": "", "version": ""}, "log_level": "", "traceparent": "",
			"task": {"id": "", "method": ""},
			"subscriptions": {"tools_list_changed": false, "prompts_list_changed": false, "resources_list_changed": false, "resources": [], "tasks": []}},
		"request": {"id": "", "method": "", "path": "", "host": "", "headers": {}, "time": ""},
		"grant": {"id": "", "scopes": [], "servers": []},
		"credential": {"mode": "", "connected": false},
		"tool": {"pinned": false, "changed": false}
	}`).Value
	if got.Compare(want) != 0 {
		t.Fatalf("\n got %v\nwant %v", got, want)
	}
}

// The schema in Go and in the docs must not drift: every field has a json
// tag, and the top level is exactly the documented sections.
func TestInputJSONNames(t *testing.T) {
	var walk func(reflect.Type, string)
	walk = func(ty reflect.Type, path string) {
		for i := range ty.NumField() {
			f := ty.Field(i)
			tag := f.Tag.Get("json")
			if tag == "" {
				t.Errorf("%s.%s has no json tag", path, f.Name)
			}
			if f.Type.Kind() == reflect.Struct {
				walk(f.Type, path+"."+tag)
			}
		}
	}
	walk(reflect.TypeFor[Input](), "input")

	obj := viaJSON(t, &Input{}).(ast.Object)
	var keys []string
	for _, k := range obj.Keys() {
		keys = append(keys, string(k.Value.(ast.String)))
	}
	want := []string{"client", "credential", "grant", "mcp", "request", "server", "subject", "tool", "version"}
	if !reflect.DeepEqual(keys, want) {
		t.Fatalf("top-level keys %v want %v", keys, want)
	}
}

func TestInputRejectsNonJSON(t *testing.T) {
	for name, in := range map[string]*Input{
		"argument":   {MCP: MCP{Arguments: map[string]any{"a": []any{1 + 2i}}}},
		"claim":      {Subject: Subject{Claims: map[string]any{"c": map[string]int{"x": 1}}}},
		"id":         {MCP: MCP{ID: true}},
		"bad number": {MCP: MCP{ID: json.Number("1x")}},
	} {
		t.Run(name, func(t *testing.T) {
			if v, err := in.Value(); err == nil {
				t.Fatalf("accepted: %v", v)
			}
		})
	}
	if _, err := NewCaller(Subject{Claims: map[string]any{"x": make(chan int)}}, Client{}, Server{}, Grant{}, Credential{}); err == nil {
		t.Fatal("NewCaller accepted a channel")
	}
}

func FuzzInputArguments(f *testing.F) {
	for _, s := range []string{`{}`, `{"query":"select 1"}`, `{"a":[1,2.5,-3e10,null,true,{"b":"c"}],"d":{}}`, `{"n":1e400}`, `{"s":"\u00e9\ud83d\ude00"}`} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		var args map[string]any
		if err := json.Unmarshal([]byte(s), &args); err != nil || args == nil {
			return
		}
		in := fullInput()
		in.MCP.Arguments = args
		got, err := in.Value()
		if err != nil {
			t.Fatalf("JSON-decoded arguments rejected: %v", err)
		}
		if want := viaJSON(t, in); got.Compare(want) != 0 {
			t.Fatalf("\n got %v\nwant %v", got, want)
		}
	})
}
