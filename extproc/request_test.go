package extproc_test

import (
	"reflect"
	"strings"
	"testing"

	"github.com/warden-mcp/warden/authz"
	"github.com/warden-mcp/warden/internal/registry"
)

// requestPolicy's visible rule reads what only the list request has: its
// headers, method and path (input.request) and its JSON-RPC id.
const requestPolicy = `package warden.authz

default decision := {"allow": false, "reason": "not allowed"}

decision := {"allow": true} if input.mcp.method == "tools/list"

default visible := false

visible if input.request.headers["user-agent"] == "trusted-agent/1.0"

visible if input.mcp.tool == "lookup"

visible if {
	input.mcp.id == "page-two"
	input.mcp.tool == "export"
}

visible if {
	input.mcp.id == 42
	input.mcp.tool == "run_sql"
	input.request.method == "POST"
	input.request.path == "/mcp/bi"
}
`

// The visibility decisions of a list see the list request's HTTP request
// and JSON-RPC id, as its Check did: they travel in the Check's metadata.
func TestVisibleSeesRequestAndID(t *testing.T) {
	e := newEnvPolicy(t, requestPolicy)
	e.addServer(registry.Spec{Name: "bi", URL: "http://bi.internal:8080/mcp"})
	staff, _ := e.mint("alice", "staff")
	for _, tc := range []struct {
		name, id, agent string
		want            []string
	}{
		{"trusted agent", "7", "trusted-agent/1.0", []string{"run_sql", "drop_db", "export", "lookup"}},
		{"other agent", "7", "curl/8.0", []string{"lookup"}},
		{"string id", `"page-two"`, "curl/8.0", []string{"export", "lookup"}},
		{"number id", "42", "curl/8.0", []string{"run_sql", "lookup"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			req := `{"jsonrpc":"2.0","id":` + tc.id + `,"method":"tools/list","params":{}}`
			resp := e.check(staff, req, map[string]string{"user-agent": tc.agent})
			if resp.GetStatus().GetCode() != 0 {
				t.Fatalf("tools/list denied: %v", resp.GetStatus())
			}
			body := strings.Replace(listResult(0, "tools", fourTools(), nil), `"id":0`, `"id":`+tc.id, 1)
			r := e.process(metadataContext(resp), "200", "application/json", body)
			if got := names(t, r.body(body), "tools"); !reflect.DeepEqual(got, tc.want) {
				t.Fatalf("shown %v, want %v", got, tc.want)
			}
		})
	}

	// Without the request part (a Check made before the policy read it)
	// the list is refused rather than decided on an empty request.
	resp := e.check(staff, listReq, map[string]string{"user-agent": "trusted-agent/1.0"})
	md := metadataContext(resp)
	w := md.GetFilterMetadata()[authz.MetadataNamespace].GetFields()[authz.MetadataKey].GetStructValue()
	if _, ok := w.GetFields()["request"]; !ok {
		t.Fatalf("the metadata of a list Check carries no request: %v", w)
	}
	delete(w.GetFields(), "request")
	body := listResult(7, "tools", fourTools(), nil)
	out := e.process(md, "200", "application/json", body).body(body)
	if !strings.Contains(out, `"error"`) || strings.Contains(out, "run_sql") {
		t.Fatalf("a list whose request part is missing was shown: %s", out)
	}
}

// A policy that reads neither the request nor the id gets no request in
// the metadata: nothing is carried that no decision reads.
func TestMetadataCarriesRequestOnlyWhenRead(t *testing.T) {
	e := newEnv(t)
	e.addServer(registry.Spec{Name: "bi", URL: "http://bi.internal:8080/mcp"})
	staff, _ := e.mint("alice", "staff")
	resp := e.check(staff, listReq, nil)
	w := metadataContext(resp).GetFilterMetadata()[authz.MetadataNamespace].GetFields()[authz.MetadataKey].GetStructValue()
	if _, ok := w.GetFields()["request"]; ok {
		t.Fatalf("request carried for a policy that does not read it: %v", w)
	}
	if w.GetFields()["calls"] == nil {
		t.Fatalf("no calls in the metadata: %v", w)
	}
}
