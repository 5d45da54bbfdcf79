package config

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestAdminSection(t *testing.T) {
	dir := t.TempDir()
	write := func(body string) string {
		p := filepath.Join(dir, "w.yaml")
		if err := os.WriteFile(p, []byte(body), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	c, err := Load(write(`
admin:
  public_url: https://warden-admin.example.com/
  roles:
    - role: admin
      groups: [platform]
    - role: auditor
      claim: roles
      values: [Warden.Audit]
    - role: operator
      users: [hr-lead@example.com]
      server_labels: {team: hr}
  tokens:
    - name: siem
      role: auditor
      sha256: 9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08
`))
	if err != nil {
		t.Fatal(err)
	}
	if c.AdminPublicURL() != "https://warden-admin.example.com" || len(c.Admin.Roles) != 3 || c.Admin.Tokens[0].Name != "siem" || c.Admin.SessionTTL.D().Hours() != 8 {
		t.Fatalf("%+v", c.Admin)
	}
	if d := Default(); d.AdminPublicURL() != "http://127.0.0.1:9090" {
		t.Fatalf("default admin URL %q", d.AdminPublicURL())
	}
	_, err = Load(write(`
admin:
  public_url: https://x.example.com/console
  session_ttl: 0s
  roles:
    - role: root
      groups: [a]
    - role: auditor
    - role: operator
      groups: [b]
    - role: auditor
      claim: roles
  tokens:
    - name: admin
      role: admin
      sha256: 9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08
    - name: ci
      role: admin
      sha256: nothex
`))
	for _, want := range []string{"admin.public_url", "admin.session_ttl", "roles[0].role", "roles[1]: names no groups", "roles[2].server_labels", "roles[3].values", `tokens[0].name: duplicate "admin"`, "tokens[1].sha256"} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("error lacks %q: %v", want, err)
		}
	}
}
