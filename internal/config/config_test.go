package config

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func write(t *testing.T, body string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "warden.yaml")
	if err := os.WriteFile(p, []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestDefaultsAreValid(t *testing.T) {
	c, err := Load("")
	if err != nil {
		t.Fatal(err)
	}
	if c.Listen.Authz != ":9191" || c.Listen.HTTP != ":8080" || c.Listen.Admin != ":9090" {
		t.Fatalf("default ports: %+v", c.Listen)
	}
	if c.Keys.SigningFile != filepath.Join("data", "signing-keys.jwks") {
		t.Fatalf("key path not under data dir: %s", c.Keys.SigningFile)
	}
}

func TestFileAndEnvOverrides(t *testing.T) {
	t.Setenv("IDP_SECRET", "s3cret")
	t.Setenv("WARDEN_LISTEN_AUTHZ", "127.0.0.1:7000")
	t.Setenv("WARDEN_AUTHZ_TIMEOUT", "750ms")
	t.Setenv("WARDEN_XDS_NODE_IDS", "a, b")
	p := write(t, `
data_dir: /tmp/w
public_url: https://mcp.example.com
audit:
  sink: ${IDP_SECRET}
authz:
  max_body_bytes: 2048
`)
	c, err := Load(p)
	if err != nil {
		t.Fatal(err)
	}
	if c.Listen.Authz != "127.0.0.1:7000" || c.Authz.Timeout.D() != 750*time.Millisecond {
		t.Fatalf("env overrides not applied: %+v %v", c.Listen, c.Authz.Timeout.D())
	}
	if c.Audit.Sink != "s3cret" || c.Authz.MaxBodyBytes != 2048 || c.PublicURL != "https://mcp.example.com" {
		t.Fatalf("file values: %+v", c)
	}
	if len(c.XDS.NodeIDs) != 2 || c.XDS.NodeIDs[1] != "b" {
		t.Fatalf("list override: %v", c.XDS.NodeIDs)
	}
}

func TestEveryProblemReportedAtOnce(t *testing.T) {
	p := write(t, `
public_url: "ftp://x"
listen: {http: "nope"}
log: {level: loud}
authz: {max_body_bytes: -1, jwt_ttl: 1h}
oauth: {registration: {mode: token}}
servers:
  - {name: BI, url: "not a url"}
  - {name: hr, url: "http://hr"}
  - {name: hr, url: "http://hr2"}
`)
	_, err := Load(p)
	if err == nil {
		t.Fatal("invalid config accepted")
	}
	for _, want := range []string{"public_url", "listen.http", "log.level", "authz.max_body_bytes", "authz.jwt_ttl", "initial_access_token", `name "BI"`, `url "not a url"`, `duplicate "hr"`} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error does not mention %s:\n%v", want, err)
		}
	}
}

func TestUnknownFieldsAndBadEnvAreErrors(t *testing.T) {
	if _, err := Load(write(t, "listne: {}\n")); err == nil || !strings.Contains(err.Error(), "listne") {
		t.Fatalf("typo in key accepted: %v", err)
	}
	t.Setenv("WARDEN_AUTHZ_TIMEOUT", "soon")
	if _, err := Load(""); err == nil || !strings.Contains(err.Error(), "WARDEN_AUTHZ_TIMEOUT") {
		t.Fatalf("bad env value accepted: %v", err)
	}
}

// docs/warden.example.yaml must stay a valid configuration.
func TestExampleConfigLoads(t *testing.T) {
	t.Setenv("WARDEN_IDP_SECRET", "from-env")
	c, err := Load("../../docs/warden.example.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if c.OAuth.Connector.OIDC.ClientSecret != "from-env" || len(c.Servers) != 1 || c.PublicURL != "https://mcp.example.com" {
		t.Fatalf("example not read as written: %+v", c.OAuth.Connector.OIDC)
	}
}

func TestParseBytes(t *testing.T) {
	for in, want := range map[string]int64{"": 0, "off": 0, "0": 0, "1048576": 1 << 20, "192MiB": 192 << 20, "2GiB": 2 << 30, "512KiB": 512 << 10} {
		if got, err := ParseBytes(in); err != nil || got != want {
			t.Errorf("ParseBytes(%q) = %d, %v; want %d", in, got, err, want)
		}
	}
	for _, bad := range []string{"lots", "-1", "12MB", "1.5GiB"} {
		if _, err := ParseBytes(bad); err == nil {
			t.Errorf("ParseBytes(%q) accepted", bad)
		}
	}
	c := Default()
	c.MemoryLimit = "a lot"
	if err := c.Validate(); err == nil || !strings.Contains(err.Error(), "memory_limit") {
		t.Errorf("invalid memory_limit not reported: %v", err)
	}
}
