package main

import (
	"encoding/csv"
	"encoding/json"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/warden-mcp/warden/internal/store"
)

// warden access list and warden audit search/export answer from the same
// API as the console, attributed to the admin token that asked.
func TestAccessAndAuditExportCLI(t *testing.T) {
	r := startServe(t, t.TempDir(), nil)
	if out, err := r.cli(t, "servers", "add", "bi", "--url", "http://127.0.0.1:3001/mcp"); err != nil {
		t.Fatalf("servers add: %v %s", err, out)
	}
	out, err := r.cli(t, "tokens", "create", "--subject", "etl-agent", "--server", "bi", "--group", "data", "-o", "json")
	if err != nil {
		t.Fatal(err)
	}
	var tok struct {
		AccessToken string `json:"access_token"`
		GrantID     string `json:"grant_id"`
	}
	_ = json.Unmarshal([]byte(out), &tok)
	if resp := check(t, r.cfg.Listen.Authz, tok.AccessToken, "bi", listTools); resp.GetOkResponse() == nil {
		t.Fatalf("denied: %v", resp)
	}
	out, err = r.cli(t, "access", "list", "--group", "data")
	if err != nil || !strings.Contains(out, "etl-agent") || !strings.Contains(out, "service") || !strings.Contains(out, tok.GrantID) || strings.Contains(out, "never") {
		t.Fatalf("access list (the allowed Check is its last use):\n%s %v", out, err)
	}
	if out, _ := r.cli(t, "access", "list", "--group", "nobody"); strings.Contains(out, "etl-agent") {
		t.Fatalf("group filter ignored:\n%s", out)
	}
	out, err = r.cli(t, "audit", "search", "--user", "etl-agent", "--decision", "allow", "--json")
	if err != nil || strings.Count(strings.TrimSpace(out), "\n") != 0 || !strings.Contains(out, `"decision":"allow"`) {
		t.Fatalf("audit search:\n%s %v", out, err)
	}
	file := filepath.Join(t.TempDir(), "audit.csv")
	if out, err := r.cli(t, "audit", "export", "--since", "1h", "--type", "token_issued", "--format", "csv", "-o", file); err != nil {
		t.Fatalf("audit export: %v %s", err, out)
	}
	f, _ := os.Open(file)
	defer f.Close()
	rows, err := csv.NewReader(f).ReadAll()
	if err != nil || len(rows) != 2 || rows[1][2] != "token_issued" || rows[1][5] != "etl-agent" || rows[1][12] != "token:admin" {
		t.Fatalf("export rows %v %v", rows, err)
	}
	out, err = r.cli(t, "audit", "export", "--server", "bi", "--format", "ndjson")
	if err != nil {
		t.Fatal(err)
	}
	var types []string
	for _, line := range strings.Split(strings.TrimSpace(out), "\n") {
		var ev store.AuditEvent
		if err := json.Unmarshal([]byte(line), &ev); err != nil {
			t.Fatalf("line %q: %v", line, err)
		}
		types = append(types, ev.Type)
	}
	if strings.Join(types, ",") != "server_added,decision" {
		t.Fatalf("ndjson export of server bi: %v", types)
	}
	if _, err := r.cli(t, "audit", "export", "--format", "xml"); err == nil {
		t.Fatal("an unknown format was accepted")
	}
	// With no configuration the console is on the admin listener, with the
	// static connector's form (the generated trial user is its admin).
	resp, err := http.Get("http://" + r.cfg.Listen.Admin + "/ui/login")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || !strings.Contains(string(body), `id="login"`) || resp.Header.Get("Content-Security-Policy") == "" {
		t.Fatalf("console sign-in page: %d %s", resp.StatusCode, body)
	}
}
