package e2e

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"sigs.k8s.io/yaml"

	"github.com/warden-mcp/warden/internal/config"
)

// serveConfig is the part of the warden serve configuration every process
// test here shares: loopback listeners, the test policy, the audit sink,
// the OIDC connector to the test IdP (its secret from
// WARDEN_E2E_IDP_SECRET) and the xDS node. A test adds its own lines to a
// section through the *Extra fields rather than writing the file again.
type serveConfig struct {
	DataDir, Public, PolicyDir, Issuer, NodeID string
	// Ports of the http, authz, admin and xds listeners on 127.0.0.1.
	HTTP, Authz, Admin, XDS string
	LogLevel                string   // default info
	AccessTTL               string   // default 10m
	Scopes                  []string // default openid, email, profile, groups
	// OIDCExtra are more lines under oauth.connector.oidc, XDSExtra under
	// xds, each "key: value" at the section's own level.
	OIDCExtra, XDSExtra []string
	// Extra is appended at the top level (whole sections).
	Extra string
}

func (c serveConfig) yaml() string {
	level, ttl, scopes := c.LogLevel, c.AccessTTL, c.Scopes
	if level == "" {
		level = "info"
	}
	if ttl == "" {
		ttl = "10m"
	}
	if len(scopes) == 0 {
		scopes = []string{"openid", "email", "profile", "groups"}
	}
	indent := func(lines []string, by string) string {
		var b strings.Builder
		for _, l := range lines {
			b.WriteString(by + l + "\n")
		}
		return b.String()
	}
	return fmt.Sprintf(`data_dir: %[1]s
public_url: %[2]s
listen:
  http: 127.0.0.1:%[3]s
  authz: 127.0.0.1:%[4]s
  admin: 127.0.0.1:%[5]s
  xds: 127.0.0.1:%[6]s
log:
  level: %[7]s
  format: json
policy:
  dir: %[8]s
  watch: false
audit:
  sink: %[1]s/audit.jsonl
oauth:
  access_token_ttl: %[9]s
  connector:
    type: oidc
    oidc:
      issuer: %[10]s
      client_id: warden
      client_secret: ${WARDEN_E2E_IDP_SECRET}
      scopes: [%[11]s]
%[12]sxds:
  node_ids: [%[13]s]
  warden_authz_address: 127.0.0.1:%[4]s
  warden_http_address: 127.0.0.1:%[3]s
%[14]s%[15]s`, c.DataDir, c.Public, c.HTTP, c.Authz, c.Admin, c.XDS, level, c.PolicyDir, ttl, c.Issuer,
		strings.Join(scopes, ", "), indent(c.OIDCExtra, "      "), c.NodeID, indent(c.XDSExtra, "  "), c.Extra)
}

// write puts the configuration in a file of the test's and returns its path.
func (c serveConfig) write(t *testing.T) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "warden.yaml")
	if err := os.WriteFile(path, []byte(c.yaml()), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// The shared configuration is one warden serve accepts (strict parsing,
// validation), and each test's extra lines land in the section they name.
func TestServeConfigLoads(t *testing.T) {
	t.Setenv("WARDEN_E2E_IDP_SECRET", "s3cret")
	c := serveConfig{
		DataDir: t.TempDir(), Public: "http://127.0.0.1:1", PolicyDir: policyDir(t), Issuer: "http://127.0.0.1:2", NodeID: "node-1",
		HTTP: "3", Authz: "4", Admin: "5", XDS: "6",
		OIDCExtra: []string{"refresh_margin: 1s"}, XDSExtra: []string{"max_stream_duration: 7m"},
		Extra: "authz:\n  timeout: 30s\n",
	}
	path := c.write(t)
	if _, err := config.Load(path); err != nil {
		t.Fatalf("warden serve would refuse the test configuration: %v\n%s", err, c.yaml())
	}
	raw, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var got struct {
		Listen map[string]string `json:"listen"`
		OAuth  struct {
			Connector struct {
				OIDC map[string]any `json:"oidc"`
			} `json:"connector"`
		} `json:"oauth"`
		XDS   map[string]any `json:"xds"`
		Authz map[string]any `json:"authz"`
	}
	if err := yaml.Unmarshal(raw, &got); err != nil {
		t.Fatal(err)
	}
	oidc := got.OAuth.Connector.OIDC
	for _, check := range []struct {
		what      string
		got, want any
	}{
		{"listen.authz", got.Listen["authz"], "127.0.0.1:4"},
		{"oidc.refresh_margin", oidc["refresh_margin"], "1s"},
		{"oidc.client_secret", oidc["client_secret"], "${WARDEN_E2E_IDP_SECRET}"},
		{"oidc.scopes", fmt.Sprint(oidc["scopes"]), "[openid email profile groups]"},
		{"xds.max_stream_duration", got.XDS["max_stream_duration"], "7m"},
		{"xds.warden_http_address", got.XDS["warden_http_address"], "127.0.0.1:3"},
		{"authz.timeout", got.Authz["timeout"], "30s"},
	} {
		if check.got != check.want {
			t.Errorf("%s = %v, want %v", check.what, check.got, check.want)
		}
	}
}
