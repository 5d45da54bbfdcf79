package xds

import (
	"bytes"
	"encoding/json"
	"net"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"testing"

	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/types/known/anypb"
	"sigs.k8s.io/yaml"

	"github.com/warden-mcp/warden/authz"
	"github.com/warden-mcp/warden/internal/config"
	"github.com/warden-mcp/warden/xds/translate"
)

// docs splits a multi-document YAML file into generic objects, keyed by
// "Kind/name".
func docs(t *testing.T, rel string) map[string]map[string]any {
	t.Helper()
	out := map[string]map[string]any{}
	for _, d := range bytes.Split(readEnvoy(t, rel), []byte("\n---\n")) {
		var m map[string]any
		if err := yaml.UnmarshalStrict(d, &m); err != nil {
			t.Fatalf("%s: %v", rel, err)
		}
		if m == nil {
			continue
		}
		name, _ := get(m, "metadata", "name").(string)
		out[get(m, "kind").(string)+"/"+name] = m
	}
	return out
}

// get walks maps by key and lists by int index.
func get(v any, path ...any) any {
	for _, p := range path {
		switch k := p.(type) {
		case string:
			m, ok := v.(map[string]any)
			if !ok {
				return nil
			}
			v = m[k]
		case int:
			l, ok := v.([]any)
			if !ok || k >= len(l) {
				return nil
			}
			v = l[k]
		}
	}
	return v
}

func num(v any) int {
	f, _ := v.(float64)
	return int(f)
}

func defaultPort(t *testing.T, addr string) int {
	t.Helper()
	_, p, err := net.SplitHostPort(addr)
	if err != nil {
		t.Fatal(err)
	}
	n, _ := strconv.Atoi(p)
	return n
}

// wardenConfig loads the Warden config file a Kubernetes example ships in
// its ConfigMap. It must take the server from the path (the gateway sets no
// context_extensions) and listen where the gateway dials it.
func wardenConfig(t *testing.T, d map[string]map[string]any) config.Config {
	t.Helper()
	body, _ := get(d["ConfigMap/warden-config"], "data", "warden.yaml").(string)
	if body == "" {
		t.Fatalf("no ConfigMap warden-config with warden.yaml in %v", keys(d))
	}
	p := filepath.Join(t.TempDir(), "warden.yaml")
	if err := os.WriteFile(p, []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg, err := config.Load(p)
	if err != nil {
		t.Fatalf("the example's Warden config does not load: %v", err)
	}
	if !cfg.Authz.ServerFromPath {
		t.Error("authz.server_from_path must be on: the gateway sets no context_extensions")
	}
	for name, addr := range map[string]string{"listen.authz": cfg.Listen.Authz, "listen.http": cfg.Listen.HTTP} {
		if h, _, _ := net.SplitHostPort(addr); h != "" && h != "0.0.0.0" {
			t.Errorf("%s %q: the gateway reaches Warden over the pod network", name, addr)
		}
	}
	return cfg
}

// The Kubernetes examples cannot be applied here; check that what they say
// about Warden matches Warden's config and contract.
func TestEnvoyGatewayExample(t *testing.T) {
	d := docs(t, "examples/envoy-gateway.yaml")
	def := wardenConfig(t, d)
	sp := d["SecurityPolicy/mcp-everything-warden"]
	if sp == nil {
		t.Fatalf("no SecurityPolicy in %v", keys(d))
	}
	ext := get(sp, "spec", "extAuth")
	if num(get(ext, "grpc", "backendRefs", 0, "port")) != defaultPort(t, def.Listen.Authz) {
		t.Errorf("ext_authz port %v, want Warden's %s", get(ext, "grpc", "backendRefs", 0, "port"), def.Listen.Authz)
	}
	if get(ext, "failOpen") != false {
		t.Error("SecurityPolicy must fail closed")
	}
	if num(get(ext, "bodyToExtAuth", "maxRequestBytes")) != def.Authz.MaxBodyBytes {
		t.Errorf("maxRequestBytes %v, want authz.max_body_bytes %d", get(ext, "bodyToExtAuth", "maxRequestBytes"), def.Authz.MaxBodyBytes)
	}
	if get(sp, "spec", "targetRefs", 0, "name") != "mcp-everything" {
		t.Error("SecurityPolicy must target the MCP route")
	}
	route := d["HTTPRoute/mcp-everything"]
	if get(route, "spec", "rules", 0, "matches", 0, "path", "value") != translate.MCPPath("everything") {
		t.Errorf("MCP route path %v", get(route, "spec", "rules", 0, "matches", 0, "path", "value"))
	}
	oauth := d["HTTPRoute/warden-oauth"]
	var prefixes []string
	for i := 0; get(oauth, "spec", "rules", 0, "matches", i) != nil; i++ {
		prefixes = append(prefixes, get(oauth, "spec", "rules", 0, "matches", i, "path", "value").(string))
	}
	if !slices.Equal(prefixes, []string{"/.well-known/", "/oauth/"}) {
		t.Errorf("OAuth prefixes %v", prefixes)
	}
	if num(get(oauth, "spec", "rules", 0, "backendRefs", 0, "port")) != defaultPort(t, def.Listen.HTTP) {
		t.Error("OAuth route must go to Warden's HTTP port")
	}

	// The response path: ext_proc on the same route, to Warden's gRPC
	// port, fail closed, response headers only with mode overrides, the
	// ext_authz namespace forwarded, Warden's message timeout.
	eep := d["EnvoyExtensionPolicy/mcp-everything-warden"]
	if get(eep, "spec", "targetRefs", 0, "name") != "mcp-everything" {
		t.Error("EnvoyExtensionPolicy must target the MCP route")
	}
	ep := get(eep, "spec", "extProc", 0)
	if num(get(ep, "backendRefs", 0, "port")) != defaultPort(t, def.Listen.Authz) {
		t.Errorf("ext_proc port %v, want Warden's %s", get(ep, "backendRefs", 0, "port"), def.Listen.Authz)
	}
	if get(ep, "failOpen") != false {
		t.Error("ext_proc must fail closed")
	}
	if get(ep, "messageTimeout") != def.XDS.ExtProcTimeout.D().String() {
		t.Errorf("ext_proc messageTimeout %v, want xds.extproc_timeout %s", get(ep, "messageTimeout"), def.XDS.ExtProcTimeout.D())
	}
	mode := get(ep, "processingMode")
	if resp, ok := get(mode, "response").(map[string]any); !ok || len(resp) != 0 || get(mode, "request") != nil || get(mode, "allowModeOverride") != true {
		t.Errorf("processingMode %v: want response headers only (response: {}), no request, allowModeOverride", mode)
	}
	if ns := get(ep, "metadata", "accessibleNamespaces"); !reflect.DeepEqual(ns, []any{authz.MetadataNamespace}) {
		t.Errorf("accessibleNamespaces %v, want [%s]", ns, authz.MetadataNamespace)
	}
	var grantsEEP bool
	for i := 0; get(d["ReferenceGrant/mcp-to-warden"], "spec", "from", i) != nil; i++ {
		grantsEEP = grantsEEP || get(d["ReferenceGrant/mcp-to-warden"], "spec", "from", i, "kind") == "EnvoyExtensionPolicy"
	}
	if !grantsEEP {
		t.Error("the ReferenceGrant must let the EnvoyExtensionPolicy reach the warden Service")
	}
}

// findFilter returns the typed_config of the HTTP filter named name
// anywhere in v.
func findFilter(v any, name string) map[string]any {
	switch x := v.(type) {
	case map[string]any:
		if x["name"] == name {
			if tc, ok := x["typed_config"].(map[string]any); ok {
				return tc
			}
		}
		for _, c := range x {
			if f := findFilter(c, name); f != nil {
				return f
			}
		}
	case []any:
		for _, c := range x {
			if f := findFilter(c, name); f != nil {
				return f
			}
		}
	}
	return nil
}

func TestIstioExample(t *testing.T) {
	d := docs(t, "examples/istio.yaml")
	def := wardenConfig(t, d)
	prov := get(d["IstioOperator/warden"], "spec", "meshConfig", "extensionProviders", 0)
	grpc := get(prov, "envoyExtAuthzGrpc")
	if num(get(grpc, "port")) != defaultPort(t, def.Listen.Authz) || get(grpc, "failOpen") != false ||
		get(grpc, "statusOnError") != "503" {
		t.Errorf("provider %v", grpc)
	}
	body := get(grpc, "includeRequestBodyInCheck")
	if num(get(body, "maxRequestBytes")) != def.Authz.MaxBodyBytes || get(body, "packAsBytes") != true || get(body, "allowPartialMessage") != false {
		t.Errorf("body settings %v", body)
	}
	ap := d["AuthorizationPolicy/warden-mcp"]
	if get(ap, "spec", "action") != "CUSTOM" || get(ap, "spec", "provider", "name") != get(prov, "name") {
		t.Errorf("authorization policy %v", get(ap, "spec"))
	}
	if p := get(ap, "spec", "rules", 0, "to", 0, "operation", "paths", 0); p != "/mcp/*" {
		t.Errorf("policy paths %v", p)
	}
	vs := d["VirtualService/mcp"]
	if get(vs, "spec", "http", 0, "rewrite", "uri") != "/mcp" || get(vs, "spec", "http", 1, "rewrite", "uri") != "/mcp/" {
		t.Error("rewrites must map /mcp/everything to /mcp and /mcp/everything/ to /mcp/")
	}

	// The response path: an ext_proc filter right after ext_authz, the
	// same as Warden's own xDS publishes (the golden listener), but for
	// the cluster, which is Istio's name for the warden Service.
	patch := get(d["EnvoyFilter/warden-extproc"], "spec", "configPatches", 0)
	if get(patch, "applyTo") != "HTTP_FILTER" || get(patch, "patch", "operation") != "INSERT_AFTER" ||
		get(patch, "match", "listener", "filterChain", "filter", "subFilter", "name") != "envoy.filters.http.ext_authz" {
		t.Errorf("EnvoyFilter must insert ext_proc after ext_authz: %v", patch)
	}
	got, _ := get(patch, "patch", "value", "typed_config").(map[string]any)
	if get(patch, "patch", "value", "name") != "envoy.filters.http.ext_proc" || got == nil {
		t.Fatalf("EnvoyFilter value %v", get(patch, "patch", "value"))
	}
	// Field names and values as Envoy's API has them.
	raw, err := json.Marshal(got)
	if err != nil {
		t.Fatal(err)
	}
	var packed anypb.Any
	if err := protojson.Unmarshal(raw, &packed); err != nil {
		t.Fatalf("the EnvoyFilter's ext_proc config is not an Envoy ExternalProcessor: %v", err)
	}
	var golden []any
	if err := yaml.Unmarshal(readFile(t, filepath.Join("translate", "testdata", "out", "one-server.listeners.yaml")), &golden); err != nil {
		t.Fatal(err)
	}
	want := findFilter(golden, "envoy.filters.http.ext_proc")
	if want == nil {
		t.Fatal("no ext_proc filter in the golden listener")
	}
	if c := get(got, "grpc_service", "envoy_grpc", "cluster_name"); c != "outbound|"+strconv.Itoa(defaultPort(t, def.Listen.Authz))+"||warden.warden.svc.cluster.local" {
		t.Errorf("ext_proc cluster %v", c)
	}
	if get(got, "failure_mode_allow") != false {
		t.Error("ext_proc must fail closed (failure_mode_allow: false)")
	}
	cp := map[string]any{}
	for k, v := range got {
		cp[k] = v
	}
	delete(cp, "grpc_service")
	delete(cp, "failure_mode_allow") // false: left out of the golden (proto3 default)
	delete(want, "grpc_service")
	if !reflect.DeepEqual(cp, want) {
		t.Errorf("the EnvoyFilter's ext_proc differs from Warden's xDS:\n got %v\nwant %v", cp, want)
	}
}

func readFile(t *testing.T, p string) []byte {
	t.Helper()
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// The compose file cannot run here; its Warden config must load, and the
// pieces must point at each other.
func TestComposeFiles(t *testing.T) {
	cfg, err := config.Load(filepath.Join(envoyDir, "compose", "warden.yaml"))
	if err != nil {
		t.Fatalf("compose Warden config does not load: %v", err)
	}
	var compose map[string]any
	if err := yaml.UnmarshalStrict(readEnvoy(t, "compose.yaml"), &compose); err != nil {
		t.Fatal(err)
	}
	services := get(compose, "services").(map[string]any)
	for _, addr := range []string{cfg.XDS.WardenAuthzAddress, cfg.XDS.WardenHTTPAddress} {
		host, _, _ := net.SplitHostPort(addr)
		if services[host] == nil {
			t.Errorf("%s: no compose service %q", addr, host)
		}
	}
	if len(cfg.Servers) != 1 || !strings.HasPrefix(cfg.Servers[0].URL, "http://everything:"+get(services, "everything", "environment", "PORT").(string)+"/") {
		t.Errorf("sample server %v does not point at the everything service", cfg.Servers)
	}
	ports, _ := get(services, "envoy", "ports").([]any)
	if !slices.ContainsFunc(ports, func(p any) bool {
		return strings.HasSuffix(p.(string), ":"+strconv.Itoa(cfg.XDS.ListenerPort))
	}) {
		t.Errorf("envoy does not publish the listener port %d: %v", cfg.XDS.ListenerPort, ports)
	}
	vols, _ := get(services, "envoy", "volumes").([]any)
	if len(vols) == 0 || !strings.HasPrefix(vols[0].(string), "./compose/envoy.yaml:") {
		t.Errorf("envoy volumes %v", vols)
	}
	if _, err := os.Stat(filepath.Join(envoyDir, "compose", "envoy.yaml")); err != nil {
		t.Fatal(err)
	}
	// The bootstrap dials Warden's xDS port as configured.
	if !bytes.Contains(readEnvoy(t, "compose/envoy.yaml"), []byte(`address: "warden", port_value: `+strconv.Itoa(defaultPort(t, cfg.Listen.XDS))+` }`)) {
		t.Error("compose bootstrap does not dial warden's xds port")
	}
}

func keys(m map[string]map[string]any) []string {
	var k []string
	for x := range m {
		k = append(k, x)
	}
	slices.Sort(k)
	return k
}
