package admin_test

import (
	"bytes"
	"encoding/csv"
	"encoding/json"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/warden-mcp/warden/internal/admin"
	"github.com/warden-mcp/warden/internal/usage"
)

func TestRolesDecideWhatATokenMayDo(t *testing.T) {
	f := setup(t, nil)
	f.do(t, "POST", "/api/v1/servers", f.token, map[string]any{"name": "payroll", "url": "http://p/mcp", "labels": map[string]string{"team": "hr"}})
	f.do(t, "POST", "/api/v1/servers", f.token, map[string]any{"name": "bi", "url": "http://bi/mcp", "labels": map[string]string{"team": "bi"}})
	cases := []struct {
		name         string
		token        func(fixture) string
		method, path string
		body         any
		status       int
	}{
		{"auditor reads servers", func(f fixture) string { return f.auditor }, "GET", "/api/v1/servers", nil, 200},
		{"auditor reads access", func(f fixture) string { return f.auditor }, "GET", "/api/v1/access", nil, 200},
		{"auditor reads audit", func(f fixture) string { return f.auditor }, "GET", "/api/v1/audit/search", nil, 200},
		{"auditor exports audit", func(f fixture) string { return f.auditor }, "GET", "/api/v1/audit/export?format=csv", nil, 200},
		{"auditor may not revoke", func(f fixture) string { return f.auditor }, "POST", "/api/v1/revoke", map[string]any{"user": "x"}, 403},
		{"auditor may not add a server", func(f fixture) string { return f.auditor }, "POST", "/api/v1/servers", map[string]any{"name": "x", "url": "http://x/mcp"}, 403},
		{"auditor may not mint tokens", func(f fixture) string { return f.auditor }, "POST", "/api/v1/tokens", map[string]any{"subject": "a", "servers": []string{"bi"}}, 403},
		{"auditor may not rotate keys", func(f fixture) string { return f.auditor }, "POST", "/api/v1/keys/rotate", map[string]any{}, 403},
		{"operator changes its server", func(f fixture) string { return f.operator }, "PUT", "/api/v1/servers/payroll", map[string]any{"url": "http://p2/mcp", "labels": map[string]string{"team": "hr"}}, 200},
		{"operator may not move its server out of scope", func(f fixture) string { return f.operator }, "PUT", "/api/v1/servers/payroll", map[string]any{"url": "http://p2/mcp", "labels": map[string]string{"team": "bi"}}, 403},
		{"operator may not change another's server", func(f fixture) string { return f.operator }, "PUT", "/api/v1/servers/bi", map[string]any{"url": "http://x/mcp", "labels": map[string]string{"team": "hr"}}, 403},
		{"operator registers in scope", func(f fixture) string { return f.operator }, "POST", "/api/v1/servers", map[string]any{"name": "hr2", "url": "http://h/mcp", "labels": map[string]string{"team": "hr"}}, 201},
		{"operator may not register out of scope", func(f fixture) string { return f.operator }, "POST", "/api/v1/servers", map[string]any{"name": "x", "url": "http://x/mcp"}, 403},
		{"operator revokes access to its server", func(f fixture) string { return f.operator }, "POST", "/api/v1/revoke", map[string]any{"server": "payroll"}, 200},
		{"operator may not revoke another's server", func(f fixture) string { return f.operator }, "POST", "/api/v1/revoke", map[string]any{"server": "bi"}, 403},
		{"operator may not revoke a user everywhere", func(f fixture) string { return f.operator }, "POST", "/api/v1/revoke", map[string]any{"user": "alice"}, 403},
		{"operator may not remove another's server", func(f fixture) string { return f.operator }, "DELETE", "/api/v1/servers/bi", nil, 403},
		{"operator may not mint tokens", func(f fixture) string { return f.operator }, "POST", "/api/v1/tokens", map[string]any{"subject": "a", "servers": []string{"payroll"}}, 403},
	}
	for _, c := range cases {
		if code, _, raw := f.do(t, c.method, c.path, c.token(f), c.body); code != c.status {
			t.Errorf("%s: %d %s, want %d", c.name, code, raw, c.status)
		}
	}
	// Every change is attributed to the token that made it.
	_, _, raw := f.do(t, "GET", "/api/v1/audit/search?type=server_updated", f.token, nil)
	var page struct {
		Events []struct{ Actor, Server string }
	}
	_ = json.Unmarshal(raw, &page)
	if len(page.Events) != 1 || page.Events[0].Actor != "token:hr-ci" || page.Events[0].Server != "payroll" {
		t.Fatalf("server_updated events: %s", raw)
	}
	for tok, want := range map[string]string{f.token: `"role": "admin"`, f.auditor: `"name": "token:siem"`} {
		if _, _, raw := f.do(t, "GET", "/api/v1/whoami", tok, nil); !strings.Contains(string(raw), want) {
			t.Errorf("whoami: %s, want %s", raw, want)
		}
	}
}

func TestAccessMatrix(t *testing.T) {
	var tracker *usage.Tracker
	f := setup(t, func(o *admin.Options) {
		tracker = usage.New(usage.Options{Store: o.Store.(usage.Store)})
		o.Usage = tracker
	})
	f.do(t, "POST", "/api/v1/servers", f.token, map[string]any{"name": "bi", "url": "http://bi/mcp"})
	f.do(t, "POST", "/api/v1/servers", f.token, map[string]any{"name": "hr", "url": "http://hr/mcp"})
	mint := func(subject string, groups []string, servers ...string) string {
		code, m, raw := f.do(t, "POST", "/api/v1/tokens", f.token, map[string]any{"subject": subject, "servers": servers, "groups": groups, "scopes": []string{"read"}})
		if code != 201 {
			t.Fatalf("mint: %s", raw)
		}
		return m["grant_id"].(string)
	}
	g1 := mint("report-agent", []string{"finance"}, "bi", "hr")
	mint("sync-agent", nil, "hr")
	used := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	tracker.Used(g1, "hr", used)

	get := func(q string) []admin.AccessEntry {
		code, _, raw := f.do(t, "GET", "/api/v1/access"+q, f.auditor, nil)
		var out []admin.AccessEntry
		if code != 200 || json.Unmarshal(raw, &out) != nil {
			t.Fatalf("access%s: %d %s", q, code, raw)
		}
		return out
	}
	all := get("")
	if len(all) != 3 {
		t.Fatalf("matrix: %+v", all)
	}
	if e := all[0]; e.Subject != "report-agent" || e.Server != "bi" || e.Kind != "service" || e.ClientSource != "service" || !e.LastUsed.IsZero() || e.Scopes[0] != "read" {
		t.Errorf("first row %+v", e)
	}
	if e := all[1]; e.Server != "hr" || !e.LastUsed.Equal(used) || e.GrantedAt.IsZero() {
		t.Errorf("used row %+v", e)
	}
	for q, n := range map[string]int{"?server=hr": 2, "?user=sync-agent": 1, "?group=finance": 2, "?group=finance&server=bi": 1, "?client=service:sync-agent": 1, "?user=nobody": 0} {
		if got := get(q); len(got) != n {
			t.Errorf("access%s: %d rows, want %d", q, len(got), n)
		}
	}
	// A revoked grant leaves the matrix at once.
	f.do(t, "POST", "/api/v1/revoke", f.token, map[string]any{"grant": g1})
	if got := get(""); len(got) != 1 || got[0].Subject != "sync-agent" {
		t.Errorf("after revoke: %+v", got)
	}
}

func TestAuditSearchAndExportAPI(t *testing.T) {
	f := setup(t, nil)
	for _, n := range []string{"a", "b", "c", "d"} {
		f.do(t, "POST", "/api/v1/servers", f.token, map[string]any{"name": n, "url": "http://x/mcp"})
	}
	f.do(t, "DELETE", "/api/v1/servers/b", f.token, nil)
	_, _, raw := f.do(t, "GET", "/api/v1/audit/search?type=server_added&limit=3", f.auditor, nil)
	var page struct {
		Events []struct {
			Seq    uint64
			Server string
		}
		Next uint64
	}
	_ = json.Unmarshal(raw, &page)
	if len(page.Events) != 3 || page.Events[0].Server != "d" || page.Events[2].Server != "b" || page.Next == 0 {
		t.Fatalf("first page: %s", raw)
	}
	_, _, raw = f.do(t, "GET", "/api/v1/audit/search?type=server_added&limit=3&before="+itoa(page.Next), f.auditor, nil)
	page.Next = 0
	_ = json.Unmarshal(raw, &page)
	if len(page.Events) != 1 || page.Events[0].Server != "a" || page.Next != 0 {
		t.Fatalf("second page: %s", raw)
	}
	if code, _, raw := f.do(t, "GET", "/api/v1/audit/events/1", f.auditor, nil); code != 200 || !strings.Contains(string(raw), `"hash"`) {
		t.Fatalf("event 1: %d %s", code, raw)
	}
	if code, _, _ := f.do(t, "GET", "/api/v1/audit/events/999", f.auditor, nil); code != 404 {
		t.Fatalf("missing event: %d", code)
	}
	for q, status := range map[string]int{"?since=yesterday": 400, "?decision=maybe": 400, "?format=xml": 400} {
		if code, _, _ := f.do(t, "GET", "/api/v1/audit/export"+q, f.auditor, nil); code != status {
			t.Errorf("export%s: %d, want %d", q, code, status)
		}
	}
	req, _ := http.NewRequest("GET", f.url+"/api/v1/audit/export?format=csv&type=server_removed&since=1h", nil)
	req.Header.Set("Authorization", "Bearer "+f.auditor)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var buf bytes.Buffer
	_, _ = buf.ReadFrom(resp.Body)
	rows, err := csv.NewReader(&buf).ReadAll()
	if err != nil || resp.Header.Get("Content-Type") != "text/csv; charset=utf-8" || !strings.Contains(resp.Header.Get("Content-Disposition"), ".csv") {
		t.Fatalf("export: %v %v %s", err, resp.Header, buf.String())
	}
	if len(rows) != 2 || rows[1][2] != "server_removed" || rows[1][8] != "b" || rows[1][12] != "token:ops-alice" {
		t.Fatalf("export rows: %v", rows)
	}
}

func itoa(n uint64) string { b, _ := json.Marshal(n); return string(b) }
