package policy

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
)

// docExampleInput is the tools/call shown in docs/policy.md: revision
// 2026-07-28, so the client identifies itself and sends trace context.
func docExampleInput() *Input {
	return &Input{
		Version: InputVersion,
		Subject: Subject{
			Sub: "00u8f2k1x9", Email: "alice@example.com", Name: "Alice Martin",
			Groups: []string{"finance", "staff"},
			Claims: map[string]any{"team": "finance", "email_verified": true, "amr": []any{"pwd", "mfa"}},
		},
		Client: Client{ID: "mcp_7d1f0c2a", Name: "Claude Desktop", Kind: ClientUser},
		Server: Server{Name: "bi", Labels: map[string]string{"env": "prod", "owner": "data-platform"}},
		MCP: MCP{
			Kind: KindRequest, Method: "tools/call", ID: float64(7), Tool: "run_sql",
			Arguments:       map[string]any{"query": "select region, sum(amount) from sales group by region", "limit": float64(100)},
			ProtocolVersion: "2026-07-28",
			ClientInfo:      ClientInfo{Name: "claude-desktop", Version: "0.9.2"},
			Traceparent:     "00-0af7651916cd43dd8448eb211c80319c-00f067aa0ba902b7-01",
			Subscriptions:   Subscriptions{Resources: []string{}, Tasks: []string{}},
		},
		Request: Request{
			ID: "5f1c7c4e-2a4b-4f0e-9d0a-3c6b8e2f1a77", Method: "POST", Path: "/mcp/bi", Host: "mcp.example.com",
			Headers: map[string]string{"content-type": "application/json", "user-agent": "Claude/0.9"},
			Time:    "2025-06-01T12:00:00.123456789Z",
		},
		Grant:      Grant{ID: "grant_3a9e", Scopes: []string{"mcp:tools"}, Servers: []string{"bi", "hr"}},
		Credential: Credential{Mode: "jwt", Connected: true},
	}
}

// The example input in docs/policy.md is exactly what Warden builds for
// docExampleInput, and the default policy quoted there is the embedded one.
func TestDocsMatchCode(t *testing.T) {
	doc, err := os.ReadFile("../docs/policy.md")
	if err != nil {
		t.Fatal(err)
	}
	block := fencedAfter(t, string(doc), "<!-- example-input -->", "json")
	var got, want any
	if err := json.Unmarshal([]byte(block), &got); err != nil {
		t.Fatalf("docs example is not JSON: %v", err)
	}
	b, err := json.Marshal(docExampleInput())
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(b, &want); err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("docs/policy.md example input differs from docExampleInput:\n%s", b)
	}

	def, err := os.ReadFile("default/default.rego")
	if err != nil {
		t.Fatal(err)
	}
	if quoted := fencedAfter(t, string(doc), "<!-- default-policy -->", "rego"); quoted != string(bytes.TrimSpace(def)) {
		t.Errorf("docs/policy.md quotes a default policy that differs from policy/default/default.rego")
	}
	for _, f := range []string{
		"group-tools/group_tools.rego", "sql-guard/sql_guard.rego",
		"team-resources/team_resources.rego", "service-clients/service_clients.rego",
		"group-tools/data.json", "service-clients/data.yaml",
	} {
		src, err := os.ReadFile(examplesDir + "/" + f)
		if err != nil {
			t.Fatal(err)
		}
		lang := strings.TrimPrefix(filepath.Ext(f), ".")
		if quoted := fencedAfter(t, string(doc), "<!-- "+f+" -->", lang); quoted != string(bytes.TrimSpace(src)) {
			t.Errorf("docs/policy.md quotes %s differently from the file", f)
		}
	}
}

// fencedAfter returns the body of the first ```lang block after marker.
func fencedAfter(t *testing.T, doc, marker, lang string) string {
	t.Helper()
	i := strings.Index(doc, marker)
	if i < 0 {
		t.Fatalf("docs/policy.md has no %s", marker)
	}
	rest := doc[i:]
	open := "```" + lang + "\n"
	j := strings.Index(rest, open)
	if j < 0 {
		t.Fatalf("no ```%s block after %s", lang, marker)
	}
	body := rest[j+len(open):]
	k := strings.Index(body, "\n```")
	if k < 0 {
		t.Fatalf("unterminated block after %s", marker)
	}
	return strings.TrimSpace(body[:k])
}
