package config

import (
	"errors"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"golang.org/x/crypto/bcrypt"
	"sigs.k8s.io/yaml"
)

// A `$` outside ${NAME} is kept as written: the documented static user's
// bcrypt hash used to come out as "y2..." because the whole file went
// through os.Expand (issue 12).
func TestDollarSignsOutsideReferencesAreKept(t *testing.T) {
	hash, err := bcrypt.GenerateFromPassword([]byte("correct horse"), bcrypt.MinCost)
	if err != nil {
		t.Fatal(err)
	}
	t.Setenv("WARDEN_TEST_SECRET", "s3cret")
	p := write(t, `
oauth:
  clients:
    - id: svc
      secret: ${WARDEN_TEST_SECRET}-and-$$-and-$${WARDEN_TEST_SECRET}
      grant_types: [client_credentials]
      redirect_uris: ["http://127.0.0.1/cb?a=$1"]
  connector:
    type: static
    static:
      users:
        - username: alice
          password_hash: "`+string(hash)+`"
          groups: ["team-${WARDEN_TEST_SECRET}"]
    oidc:
      auth_params: {hint: "${WARDEN_TEST_SECRET}"}
`)
	c, err := Load(p)
	if err != nil {
		t.Fatal(err)
	}
	u := c.OAuth.Connector.Static.Users[0]
	if u.PasswordHash != string(hash) {
		t.Fatalf("bcrypt hash changed on load: %q, want %q", u.PasswordHash, hash)
	}
	if err := bcrypt.CompareHashAndPassword([]byte(u.PasswordHash), []byte("correct horse")); err != nil {
		t.Fatalf("loaded hash does not verify: %v", err)
	}
	cl := c.OAuth.Clients[0]
	if want := "s3cret-and-$$-and-${WARDEN_TEST_SECRET}"; cl.Secret != want {
		t.Errorf("secret %q, want %q ($${ is the escape for a literal ${)", cl.Secret, want)
	}
	if cl.RedirectURIs[0] != "http://127.0.0.1/cb?a=$1" {
		t.Errorf("redirect uri %q", cl.RedirectURIs[0])
	}
	if u.Groups[0] != "team-s3cret" || c.OAuth.Connector.OIDC.AuthParams["hint"] != "s3cret" {
		t.Errorf("list item or map value not expanded: %v %v", u.Groups, c.OAuth.Connector.OIDC.AuthParams)
	}
}

func TestExpansionErrorsNameTheField(t *testing.T) {
	os.Unsetenv("WARDEN_TEST_UNSET")
	for body, want := range map[string]string{
		"audit: {sink: \"${WARDEN_TEST_UNSET}\"}\n":      "audit.sink: ${WARDEN_TEST_UNSET}: environment variable is not set",
		"audit: {sink: \"${WARDEN-SINK}\"}\n":            "audit.sink: ${WARDEN-SINK}: not a variable name",
		"servers: [{name: a, url: \"http://${x\"}]\n":    "servers[0].url: unterminated ${",
		"xds: {listener_port: \"${WARDEN_TEST_UNSET}\"}": "listener_port", // numbers are not expanded: a parse error
	} {
		_, err := Load(write(t, body))
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%s: got %v, want an error containing %q", body, err, want)
		}
	}
	_, err := Load(write(t, "audit: {sink: \"${WARDEN_TEST_UNSET}\"}\n"))
	if !errors.Is(err, ErrUnsetVariable) {
		t.Errorf("unset variable: %v does not wrap ErrUnsetVariable", err)
	}
	// Comments are not configuration: a reference there is not looked at.
	if _, err := Load(write(t, "# ${WARDEN_TEST_UNSET} and ${not a name\ndata_dir: ./d\n")); err != nil {
		t.Errorf("reference in a comment: %v", err)
	}
}

// The configuration examples the documentation shows load as written (with
// the variables they reference set), so an operator can copy them.
func TestDocumentedExamplesLoad(t *testing.T) {
	files := map[string]string{}
	for _, rel := range []string{"docs/warden.example.yaml", "envoy/compose/warden.yaml"} {
		files[rel] = read(t, rel)
	}
	// Top-level ```yaml blocks of the configuration docs are whole config
	// files; indented ones are fragments shown inside a list item and must
	// at least be YAML.
	fence := regexp.MustCompile("(?ms)^( *)```yaml\n(.*?)^ *```")
	for _, rel := range []string{"docs/configuration.md", "docs/oauth.md", "docs/envoy.md"} {
		for i, m := range fence.FindAllStringSubmatch(read(t, rel), -1) {
			name := rel + "#" + string(rune('a'+i))
			if m[1] != "" {
				var v any
				if err := yamlUnmarshal([]byte(m[2]), &v); err != nil {
					t.Errorf("%s: fragment is not YAML: %v", name, err)
				}
				continue
			}
			files[name] = m[2]
		}
	}
	for _, rel := range []string{"envoy/examples/envoy-gateway.yaml", "envoy/examples/istio.yaml"} {
		if cm := configMapFile(t, read(t, rel)); cm != "" {
			files[rel+"#warden.yaml"] = cm
		}
	}
	if len(files) < 6 {
		t.Fatalf("found only %d examples: %v", len(files), files)
	}
	ref := regexp.MustCompile(`\$\{([A-Za-z_][A-Za-z0-9_]*)\}`)
	for name, body := range files {
		t.Run(name, func(t *testing.T) {
			for _, m := range ref.FindAllStringSubmatch(body, -1) {
				t.Setenv(m[1], "value-of-"+m[1])
			}
			p := filepath.Join(t.TempDir(), "warden.yaml")
			if err := os.WriteFile(p, []byte(body), 0o600); err != nil {
				t.Fatal(err)
			}
			c, err := Load(p)
			if err != nil {
				t.Fatalf("documented example does not load:\n%v\n---\n%s", err, body)
			}
			for _, u := range c.OAuth.Connector.Static.Users {
				if !strings.HasPrefix(u.PasswordHash, "$2") {
					t.Errorf("password hash read as %q", u.PasswordHash)
				}
			}
		})
	}
}

func read(t *testing.T, rel string) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("..", "..", rel))
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func yamlUnmarshal(b []byte, v any) error { return yaml.Unmarshal(b, v) }

// configMapFile returns data["warden.yaml"] of the ConfigMap in a
// multi-document Kubernetes file, or "".
func configMapFile(t *testing.T, body string) string {
	t.Helper()
	for _, doc := range strings.Split(body, "\n---\n") {
		var m struct {
			Kind string            `json:"kind"`
			Data map[string]string `json:"data"`
		}
		if err := yaml.Unmarshal([]byte(doc), &m); err != nil {
			t.Fatal(err)
		}
		if m.Kind == "ConfigMap" && m.Data["warden.yaml"] != "" {
			return m.Data["warden.yaml"]
		}
	}
	return ""
}
