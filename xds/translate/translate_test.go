package translate

import (
	"bytes"
	"errors"
	"flag"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/envoyproxy/go-control-plane/pkg/cache/v3"
	"google.golang.org/protobuf/proto"
	"sigs.k8s.io/yaml"

	"github.com/warden-mcp/warden/internal/serverspec"
	"github.com/warden-mcp/warden/internal/store"
	"github.com/warden-mcp/warden/xds/internal/deepvalidate"
	"github.com/warden-mcp/warden/xds/internal/protoyaml"
	"github.com/warden-mcp/warden/xds/ir"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata/out")

// testSettings are the defaults of internal/config's xds section.
func testSettings() Settings {
	return Settings{
		ListenerAddress:    "0.0.0.0",
		ListenerPort:       10000,
		StreamIdleTimeout:  5 * time.Minute,
		RouteIdleTimeout:   time.Hour,
		MaxStreamDuration:  time.Hour,
		ConnectTimeout:     5 * time.Second,
		AuthzTimeout:       3 * time.Second,
		MaxRequestBytes:    1 << 20,
		WardenAuthzAddress: "127.0.0.1:9191",
		WardenHTTPAddress:  "127.0.0.1:8080",
		UpstreamCAFile:     "/etc/ssl/certs/ca-certificates.crt",
	}
}

// inServer is a registry entry as written in testdata/in (durations as text).
type inServer struct {
	Name           string `json:"name"`
	URL            string `json:"url"`
	HTTP2          bool   `json:"http2,omitempty"`
	ConnectTimeout string `json:"connect_timeout,omitempty"`
	IdleTimeout    string `json:"idle_timeout,omitempty"`
}

// inCase is one testdata/in file. Previous, when set, is translated first:
// the case then checks that the change produced a new version.
type inCase struct {
	Previous []inServer `json:"previous,omitempty"`
	Servers  []inServer `json:"servers"`
}

func (s inServer) store(t *testing.T) store.Server {
	t.Helper()
	d := func(v string) time.Duration {
		if v == "" {
			return 0
		}
		x, err := time.ParseDuration(v)
		if err != nil {
			t.Fatal(err)
		}
		return x
	}
	return store.Server{Name: s.Name, URL: s.URL, Credential: store.CredentialJWT, HTTP2: s.HTTP2,
		ConnectTimeout: d(s.ConnectTimeout), IdleTimeout: d(s.IdleTimeout)}
}

func storeServers(t *testing.T, in []inServer) []store.Server {
	var out []store.Server
	for _, s := range in {
		out = append(out, s.store(t))
	}
	return out
}

func TestGolden(t *testing.T) {
	cases := []string{"one-server", "many-servers", "https-upstream", "invalid-among-valid", "removal"}
	for _, name := range cases {
		t.Run(name, func(t *testing.T) {
			raw, err := os.ReadFile(filepath.Join("testdata", "in", name+".yaml"))
			if err != nil {
				t.Fatal(err)
			}
			var in inCase
			if err := yaml.UnmarshalStrict(raw, &in); err != nil {
				t.Fatal(err)
			}
			if in.Previous != nil {
				prev, err := Translate(storeServers(t, in.Previous), testSettings())
				if err != nil {
					t.Fatal(err)
				}
				defer func(prevVersion string) {
					cur, _ := Translate(storeServers(t, in.Servers), testSettings())
					if cur.Resources.Version == prevVersion {
						t.Errorf("version did not change after the registry changed: %s", prevVersion)
					}
				}(prev.Resources.Version)
			}
			res, err := Translate(storeServers(t, in.Servers), testSettings())
			if err != nil {
				t.Fatal(err)
			}
			checkValid(t, res.Resources)

			var skipped []map[string]string
			for _, s := range res.Skipped {
				skipped = append(skipped, map[string]string{"name": s.Name, "reason": s.Err.Error()})
			}
			outputs := map[string][]proto.Message{}
			for _, l := range res.Resources.Listeners {
				outputs["listeners"] = append(outputs["listeners"], l)
			}
			for _, r := range res.Resources.Routes {
				outputs["routes"] = append(outputs["routes"], r)
			}
			for _, c := range res.Resources.Clusters {
				outputs["clusters"] = append(outputs["clusters"], c)
			}
			for _, kind := range []string{"listeners", "routes", "clusters"} {
				got, err := protoyaml.Marshal(outputs[kind]...)
				if err != nil {
					t.Fatal(err)
				}
				golden(t, filepath.Join("testdata", "out", name+"."+kind+".yaml"), got)
			}
			if len(skipped) > 0 {
				got, err := yaml.Marshal(skipped)
				if err != nil {
					t.Fatal(err)
				}
				golden(t, filepath.Join("testdata", "out", name+".skipped.yaml"), got)
			}
		})
	}
}

func golden(t *testing.T, path string, got []byte) {
	t.Helper()
	if *update {
		if err := os.WriteFile(path, got, 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run go test ./xds/translate -update to create it)", err)
	}
	if !bytes.Equal(got, want) {
		t.Errorf("%s differs from the golden file (run with -update and review the diff):\n%s", path, got)
	}
}

// checkValid is the publication gate the ADS server applies too: every
// resource, and every message packed in an Any inside it, passes ValidateAll,
// and the snapshot is consistent.
func checkValid(t *testing.T, r *Resources) {
	t.Helper()
	anys := 0
	for _, list := range r.ByType() {
		for _, m := range list {
			if err := deepvalidate.Message(m); err != nil {
				t.Errorf("invalid resource: %v", err)
			}
			anys += deepvalidate.CountAny(m)
		}
	}
	if anys == 0 {
		t.Error("no Any reached: the deep validation checked nothing packed")
	}
	snap, err := cache.NewSnapshot(r.Version, r.ByType())
	if err != nil {
		t.Fatal(err)
	}
	if err := snap.Consistent(); err != nil {
		t.Errorf("snapshot not consistent: %v", err)
	}
}

func TestDeterministicAndOrderFree(t *testing.T) {
	servers := []store.Server{
		{Name: "b", URL: "https://b.example.com/mcp"},
		{Name: "a", URL: "http://a.internal:9000"},
		{Name: "c", URL: "http://10.0.0.7:8080/x/", HTTP2: true},
	}
	first, err := Translate(servers, testSettings())
	if err != nil {
		t.Fatal(err)
	}
	reversed := slices.Clone(servers)
	slices.Reverse(reversed)
	for range 5 {
		again, err := Translate(reversed, testSettings())
		if err != nil {
			t.Fatal(err)
		}
		if again.Resources.Version != first.Resources.Version {
			t.Fatalf("version depends on input order or map order: %s vs %s", again.Resources.Version, first.Resources.Version)
		}
		if !again.IR.Equal(first.IR) {
			t.Fatal("IR depends on input order")
		}
	}
	if got := first.Resources.Servers; !slices.Equal(got, []string{"a", "b", "c"}) {
		t.Fatalf("published servers %v", got)
	}
}

func TestNoOpChangeKeepsVersion(t *testing.T) {
	base := store.Server{Name: "a", URL: "http://a.internal:9000/mcp", Credential: store.CredentialJWT}
	before, err := Translate([]store.Server{base}, testSettings())
	if err != nil {
		t.Fatal(err)
	}
	// Fields Envoy never sees: metadata, scopes, credential mode.
	changed := base
	changed.Description = "now described"
	changed.Labels = map[string]string{"team": "x"}
	changed.Scopes = []string{"tools:read"}
	changed.Credential = store.CredentialNone
	changed.Version = 7
	changed.UpdatedAt = time.Unix(1e9, 0)
	after, err := Translate([]store.Server{changed}, testSettings())
	if err != nil {
		t.Fatal(err)
	}
	if after.Resources.Version != before.Resources.Version {
		t.Fatalf("a change invisible to Envoy changed the version: %s -> %s", before.Resources.Version, after.Resources.Version)
	}
	// And one Envoy does see.
	changed.HTTP2 = true
	after, err = Translate([]store.Server{changed}, testSettings())
	if err != nil {
		t.Fatal(err)
	}
	if after.Resources.Version == before.Resources.Version {
		t.Fatal("switching to HTTP/2 did not change the version")
	}
}

func TestInvalidServersAreSkippedWithReasons(t *testing.T) {
	servers := []store.Server{
		{Name: "good", URL: "http://good.internal/mcp"},
		{Name: "creds", URL: "https://alice:hunter2@creds.example.com/mcp"},
		{Name: "ftp", URL: "ftp://files.example.com/"},
		{Name: "query", URL: "http://q.example.com/mcp?token=abc"},
		{Name: "Upper", URL: "http://u.example.com/"},
		{Name: "badport", URL: "http://p.example.com:70000/"},
		{Name: "neg", URL: "http://n.example.com/", IdleTimeout: -time.Second},
		{Name: "garbage", URL: "http://[::1/mcp"},
		{Name: "good", URL: "http://dup.internal/"},
	}
	res, err := Translate(servers, testSettings())
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(res.Resources.Servers, []string{"good"}) {
		t.Fatalf("published %v, want only good", res.Resources.Servers)
	}
	want := map[string]error{
		"creds": serverspec.ErrURLUserinfo, "ftp": serverspec.ErrURLScheme, "query": serverspec.ErrURLQuery,
		"Upper": ir.ErrServerNameInvalid, "badport": serverspec.ErrURLPort,
		"neg": ErrTimeoutNegative, "garbage": serverspec.ErrURLInvalid, "good": ir.ErrServerNameDuplicate,
	}
	if len(res.Skipped) != len(want) {
		t.Fatalf("skipped %v, want %d", res.Skipped, len(want))
	}
	for _, s := range res.Skipped {
		if !errors.Is(s.Err, want[s.Name]) {
			t.Errorf("%s: reason %v, want %v", s.Name, s.Err, want[s.Name])
		}
		for _, secret := range []string{"hunter2", "alice", "token=abc"} {
			if strings.Contains(s.Error(), secret) {
				t.Errorf("reason leaks URL secret: %v", s)
			}
		}
	}
	// The survivor's resources are complete.
	if n := len(res.Resources.Clusters); n != 3 {
		t.Fatalf("clusters: %d, want mcp_good + 2 warden clusters", n)
	}
	checkValid(t, res.Resources)
}

func TestInvalidSettingsFailEverything(t *testing.T) {
	for name, mutate := range map[string]func(*Settings){
		"authz address":  func(s *Settings) { s.WardenAuthzAddress = "no-port" },
		"http address":   func(s *Settings) { s.WardenHTTPAddress = ":8080" },
		"listener port":  func(s *Settings) { s.ListenerPort = 0 },
		"listener addr":  func(s *Settings) { s.ListenerAddress = "localhost" },
		"max bytes":      func(s *Settings) { s.MaxRequestBytes = 0 },
		"authz timeout":  func(s *Settings) { s.AuthzTimeout = 0 },
		"ca file":        func(s *Settings) { s.UpstreamCAFile = "" },
		"stream timeout": func(s *Settings) { s.StreamIdleTimeout = 0 },
	} {
		t.Run(name, func(t *testing.T) {
			s := testSettings()
			mutate(&s)
			if _, err := Translate([]store.Server{{Name: "a", URL: "http://a/"}}, s); err == nil {
				t.Fatal("invalid settings translated")
			}
		})
	}
}

func TestCheckServer(t *testing.T) {
	if err := CheckServer(store.Server{Name: "ok", URL: "https://ok.example.com/mcp"}, testSettings()); err != nil {
		t.Fatalf("valid server rejected: %v", err)
	}
	err := CheckServer(store.Server{Name: "bad", URL: "https://u:p@ok.example.com/mcp"}, testSettings())
	if !errors.Is(err, serverspec.ErrURLUserinfo) {
		t.Fatalf("got %v", err)
	}
}

func TestRewrites(t *testing.T) {
	for _, tc := range []struct{ url, exact, prefix, authority string }{
		{"http://h:8080/mcp", "/mcp", "/mcp/", "h:8080"},
		{"http://h", "/", "/", "h"},
		{"http://h/", "/", "/", "h"},
		{"https://H.Example.com/a/b/", "/a/b/", "/a/b/", "h.example.com"},
		{"http://[::1]:9000/x", "/x", "/x/", "[::1]:9000"},
	} {
		c, skipped, err := BuildIR([]store.Server{{Name: "s", URL: tc.url}}, testSettings())
		if err != nil || len(skipped) > 0 {
			t.Fatalf("%s: %v %v", tc.url, err, skipped)
		}
		routes, err := serverRoutes(c.Servers[0])
		if err != nil {
			t.Fatal(err)
		}
		if got := routes[0].GetRoute().GetPrefixRewrite(); got != tc.exact {
			t.Errorf("%s exact rewrite %q want %q", tc.url, got, tc.exact)
		}
		if got := routes[1].GetRoute().GetPrefixRewrite(); got != tc.prefix {
			t.Errorf("%s prefix rewrite %q want %q", tc.url, got, tc.prefix)
		}
		if got := routes[0].GetRoute().GetHostRewriteLiteral(); got != tc.authority {
			t.Errorf("%s host %q want %q", tc.url, got, tc.authority)
		}
	}
}

// A server whose routes Envoy would reject (here a header-unsafe rewrite
// that ir validation would have caught) is skipped by its own validation.
func TestServerRejectedByEnvoyValidationIsSkipped(t *testing.T) {
	c, _, err := BuildIR(nil, testSettings())
	if err != nil {
		t.Fatal(err)
	}
	out := buildServer(c, ir.Server{Name: "bad", Upstream: ir.Endpoint{Host: "bad", Port: 80}, Authority: "bad",
		Path: "/mcp\r\nx-injected: 1", ConnectTimeout: time.Second, IdleTimeout: time.Hour})
	if out.err == nil {
		t.Fatal("ir validation rejects this path first")
	}
	// Bypass ir validation to reach Envoy's own rules.
	rs, err := serverRoutes(ir.Server{Name: "bad", Authority: "bad", Path: "/mcp\r\nx-injected: 1", IdleTimeout: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	if err := validateRoutes(rs); err == nil {
		t.Fatal("Envoy validation accepted a CRLF in prefix_rewrite")
	}
}

// The memoizing Translator gives exactly Build's output, call after call.
func TestTranslatorMatchesBuild(t *testing.T) {
	tr := NewTranslator()
	steps := [][]store.Server{
		{{Name: "a", URL: "http://a/"}, {Name: "b", URL: "https://b.example.com/mcp"}},
		{{Name: "a", URL: "http://a/"}, {Name: "b", URL: "https://b.example.com/mcp"}, {Name: "c", URL: "http://c:81/x"}},
		{{Name: "a", URL: "http://a/", HTTP2: true}, {Name: "c", URL: "http://c:81/x"}},
		{{Name: "a", URL: "http://a/", HTTP2: true}, {Name: "c", URL: "http://c:81/x"}},
	}
	for i, servers := range steps {
		c, _, err := BuildIR(servers, testSettings())
		if err != nil {
			t.Fatal(err)
		}
		want, _, err := Build(c)
		if err != nil {
			t.Fatal(err)
		}
		got, _, err := tr.Build(c)
		if err != nil {
			t.Fatal(err)
		}
		if got.Version != want.Version {
			t.Fatalf("step %d: version %s, pure build %s", i, got.Version, want.Version)
		}
		for _, pair := range [][2][]proto.Message{
			{msgs(got.Listeners), msgs(want.Listeners)}, {msgs(got.Routes), msgs(want.Routes)}, {msgs(got.Clusters), msgs(want.Clusters)},
		} {
			if len(pair[0]) != len(pair[1]) {
				t.Fatalf("step %d: %d vs %d resources", i, len(pair[0]), len(pair[1]))
			}
			for j := range pair[0] {
				if !proto.Equal(pair[0][j], pair[1][j]) {
					t.Fatalf("step %d: resource %d differs", i, j)
				}
			}
		}
	}
	// The hash covers the route configuration's own fields, not only its routes.
	c, _, _ := BuildIR(steps[0], testSettings())
	a, _, _ := Build(c)
	b, _, _ := Build(c)
	b.Routes[0].VirtualHosts[0].Domains = []string{"example.com"}
	if v, _ := contentHash(b, nil); v == a.Version {
		t.Fatal("a change outside the routes did not change the hash")
	}
}

func msgs[T proto.Message](in []T) []proto.Message {
	out := make([]proto.Message, len(in))
	for i, m := range in {
		out[i] = m
	}
	return out
}
