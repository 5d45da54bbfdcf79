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
	// Only the OAuth listener is for clients; the others stay on loopback
	// unless the operator moves them (docs/configuration.md, "listen").
	if c.Listen.Authz != "127.0.0.1:9191" || c.Listen.HTTP != ":8080" || c.Listen.Admin != "127.0.0.1:9090" || c.Listen.XDS != "127.0.0.1:18000" {
		t.Fatalf("default listeners: %+v", c.Listen)
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
	for _, want := range []string{"public_url", "listen.http", "log.level", "authz.max_body_bytes", "authz.jwt_ttl", "initial_access_token", `name "BI"`, "url is not a valid absolute URL", `duplicate "hr"`} {
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
	for in, want := range map[string]int64{"": 0, "off": 0, "0": 0, "1048576": 1 << 20, "192MiB": 192 << 20, "2GiB": 2 << 30, "512KiB": 512 << 10, "512B": 512} {
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
	c.Runtime.MemoryLimit = "a lot"
	if err := c.Validate(); err == nil || !strings.Contains(err.Error(), "runtime.memory_limit") {
		t.Errorf("invalid memory_limit not reported: %v", err)
	}
	t.Setenv("GOMEMLIMIT", "64MiB")
	if c, err := Load(""); err != nil || c.Runtime.MemoryLimit != "64MiB" {
		t.Errorf("GOMEMLIMIT not folded into runtime.memory_limit: %q %v", c.Runtime.MemoryLimit, err)
	}
	t.Setenv("GOMEMLIMIT", "plenty")
	if _, err := Load(""); err == nil || !strings.Contains(err.Error(), "GOMEMLIMIT") {
		t.Errorf("bad GOMEMLIMIT accepted: %v", err)
	}
}

// Moving a listener moves the xDS clusters that point at it, unless they
// are set (issue 13: they stayed at 127.0.0.1:8080/9191).
func TestWardenAddressesFollowListen(t *testing.T) {
	c, err := Load(write(t, "listen: {http: \":8181\", authz: \"10.1.2.3:7191\"}\n"))
	if err != nil {
		t.Fatal(err)
	}
	if c.XDS.WardenHTTPAddress != "127.0.0.1:8181" || c.XDS.WardenAuthzAddress != "10.1.2.3:7191" {
		t.Fatalf("derived %s / %s", c.XDS.WardenHTTPAddress, c.XDS.WardenAuthzAddress)
	}
	t.Setenv("WARDEN_LISTEN_AUTHZ", "[::]:7000")
	c, err = Load(write(t, "xds: {warden_http_address: \"warden:80\"}\n"))
	if err != nil {
		t.Fatal(err)
	}
	if c.XDS.WardenHTTPAddress != "warden:80" || c.XDS.WardenAuthzAddress != "127.0.0.1:7000" {
		t.Fatalf("explicit or env-moved: %s / %s", c.XDS.WardenHTTPAddress, c.XDS.WardenAuthzAddress)
	}
}

// Secrets with no place in the file, and GOGC, are read here and nowhere
// else.
func TestEnvironmentOnlySettings(t *testing.T) {
	t.Setenv("WARDEN_ADMIN_TOKEN", "wdn_admin_from_env")
	t.Setenv("WARDEN_SEALING_KEYS", "k1:AAAA")
	t.Setenv("GOGC", "off")
	c, err := Load("")
	if err != nil {
		t.Fatal(err)
	}
	if c.Keys.AdminToken != "wdn_admin_from_env" || c.Keys.SealingKeys != "k1:AAAA" || c.Runtime.GCPercent != -1 {
		t.Fatalf("env-only settings: %+v %+v", c.Keys, c.Runtime)
	}
	t.Setenv("GOGC", "150")
	if c, _ := Load(""); c.Runtime.GCPercent != 150 {
		t.Fatalf("GOGC=150 gave %d", c.Runtime.GCPercent)
	}
	t.Setenv("GOGC", "lots")
	if _, err := Load(""); err == nil || !strings.Contains(err.Error(), "GOGC") {
		t.Fatalf("bad GOGC accepted: %v", err)
	}
	os.Unsetenv("GOGC")
	if c, _ := Load(""); c.Runtime.GCPercent != 400 {
		t.Fatalf("default gc_percent %d", c.Runtime.GCPercent)
	}
	if _, err := Load(write(t, "keys: {admin_token: x}\n")); err == nil {
		t.Fatal("a secret field was accepted in the file")
	}
}

func TestTLSAndLimitsValidation(t *testing.T) {
	_, err := Load(write(t, `
listen:
  tls:
    authz: {cert_file: /c.pem}
    xds: {cert_file: /c.pem, key_file: /k.pem, client_ca_file: /ca.pem}
  limits: {idle_timeout: 0s, max_connections: 0}
xds:
  warden_authz_tls: {ca_file: /ca.pem}
runtime: {gc_percent: -5}
`))
	if err == nil {
		t.Fatal("invalid tls and limits accepted")
	}
	for _, want := range []string{"listen.tls.authz", "listen.limits.idle_timeout", "listen.limits.max_connections", "xds.warden_authz_tls", "runtime.gc_percent"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error lacks %s:\n%v", want, err)
		}
	}
	if strings.Contains(err.Error(), "listen.tls.xds") {
		t.Errorf("complete xds tls refused: %v", err)
	}
}

// The CLI finds the admin API and its token where the server's
// configuration puts them (issue 13: WARDEN_LISTEN_ADMIN was ignored).
func TestLoadClient(t *testing.T) {
	c, err := LoadClient("")
	if err != nil {
		t.Fatal(err)
	}
	if c.AdminURL != "http://127.0.0.1:9090" || c.AdminTokenFile != filepath.Join("data", "admin-token") {
		t.Fatalf("defaults: %+v", c)
	}
	t.Setenv("WARDEN_LISTEN_ADMIN", ":9999")
	t.Setenv("WARDEN_ADMIN_TOKEN", "tok")
	os.Unsetenv("WARDEN_TEST_UNSET")
	// The operator's shell need not hold the server's secrets.
	p := write(t, "data_dir: /srv/w\noauth: {connector: {type: oidc, oidc: {issuer: https://idp.example.com, client_id: w, client_secret: \"${WARDEN_TEST_UNSET}\"}}}\n")
	c, err = LoadClient(p)
	if err != nil {
		t.Fatal(err)
	}
	if c.AdminURL != "http://127.0.0.1:9999" || c.AdminToken != "tok" || c.AdminTokenFile != "/srv/w/admin-token" {
		t.Fatalf("from file and env: %+v", c)
	}
	t.Setenv("WARDEN_ADMIN_ADDR", "https://warden-admin.internal:9090")
	if c, _ := LoadClient(p); c.AdminURL != "https://warden-admin.internal:9090" {
		t.Fatalf("WARDEN_ADMIN_ADDR not preferred: %+v", c)
	}
}
