package config

import (
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
)

func TestAuditRedact(t *testing.T) {
	p := filepath.Join(t.TempDir(), "w.yaml")
	write := func(body string) {
		if err := os.WriteFile(p, []byte(body), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	write(`
audit:
  redact:
    - arguments: [password]
    - server: hr
      arguments: [ssn]
    - server: vault
`)
	c, err := Load(p)
	if err != nil {
		t.Fatal(err)
	}
	want := []AuditRedact{{Arguments: []string{"password"}}, {Server: "hr", Arguments: []string{"ssn"}}, {Server: "vault"}}
	if !reflect.DeepEqual(c.Audit.Redact, want) {
		t.Fatalf("redact %+v", c.Audit.Redact)
	}
	write(`
audit:
  redact:
    - {}
    - server: "not a name!"
    - arguments: [""]
`)
	_, err = Load(p)
	for _, s := range []string{"audit.redact[0]: needs a server", "audit.redact[1].server", "audit.redact[2].arguments[0]"} {
		if err == nil || !strings.Contains(err.Error(), s) {
			t.Errorf("want %q in %v", s, err)
		}
	}
}
