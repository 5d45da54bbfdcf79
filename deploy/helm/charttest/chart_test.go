// Package charttest renders deploy/helm/warden with Helm's Go SDK for a
// few values files and decodes every object strictly into the Kubernetes
// API types: an unknown or misplaced field fails the test. It is its own
// module so that Helm and the Kubernetes API stay out of Warden's go.mod.
package charttest

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	"helm.sh/helm/v3/pkg/chart/loader"
	"helm.sh/helm/v3/pkg/chartutil"
	"helm.sh/helm/v3/pkg/engine"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	policyv1 "k8s.io/api/policy/v1"
	"sigs.k8s.io/yaml"
)

// objects is what one rendering produced, by kind.
type objects struct {
	deployments []appsv1.Deployment
	services    []corev1.Service
	configMaps  []corev1.ConfigMap
	accounts    []corev1.ServiceAccount
	pdbs        []policyv1.PodDisruptionBudget
	netpols     []networkingv1.NetworkPolicy
}

func render(t *testing.T, valuesFile string) objects {
	t.Helper()
	ch, err := loader.Load(filepath.Join("..", "warden"))
	if err != nil {
		t.Fatal(err)
	}
	raw, err := os.ReadFile(valuesFile)
	if err != nil {
		t.Fatal(err)
	}
	vals, err := chartutil.ReadValues(raw)
	if err != nil {
		t.Fatal(err)
	}
	rv, err := chartutil.ToRenderValues(ch, vals, chartutil.ReleaseOptions{Name: "w", Namespace: "warden", IsInstall: true, Revision: 1}, chartutil.DefaultCapabilities)
	if err != nil {
		t.Fatal(err)
	}
	files, err := engine.Render(ch, rv)
	if err != nil {
		t.Fatal(err)
	}
	var out objects
	docSep := regexp.MustCompile(`(?m)^---\s*$`)
	names := make([]string, 0, len(files))
	for name := range files {
		names = append(names, name)
	}
	slices.Sort(names)
	for _, name := range names {
		if !strings.HasSuffix(name, ".yaml") {
			continue
		}
		for _, doc := range docSep.Split(files[name], -1) {
			if strings.TrimSpace(stripComments(doc)) == "" {
				continue
			}
			js, err := yaml.YAMLToJSON([]byte(doc))
			if err != nil {
				t.Fatalf("%s: %v\n%s", name, err, doc)
			}
			var meta struct{ APIVersion, Kind string }
			if err := json.Unmarshal(js, &meta); err != nil {
				t.Fatal(err)
			}
			switch meta.APIVersion + "/" + meta.Kind {
			case "apps/v1/Deployment":
				out.deployments = append(out.deployments, strict[appsv1.Deployment](t, name, js))
			case "v1/Service":
				out.services = append(out.services, strict[corev1.Service](t, name, js))
			case "v1/ConfigMap":
				out.configMaps = append(out.configMaps, strict[corev1.ConfigMap](t, name, js))
			case "v1/ServiceAccount":
				out.accounts = append(out.accounts, strict[corev1.ServiceAccount](t, name, js))
			case "policy/v1/PodDisruptionBudget":
				out.pdbs = append(out.pdbs, strict[policyv1.PodDisruptionBudget](t, name, js))
			case "networking.k8s.io/v1/NetworkPolicy":
				out.netpols = append(out.netpols, strict[networkingv1.NetworkPolicy](t, name, js))
			default:
				t.Fatalf("%s: unexpected object %s %s", name, meta.APIVersion, meta.Kind)
			}
		}
	}
	return out
}

func stripComments(doc string) string {
	var b strings.Builder
	for _, l := range strings.Split(doc, "\n") {
		if !strings.HasPrefix(strings.TrimSpace(l), "#") {
			b.WriteString(l + "\n")
		}
	}
	return b.String()
}

// strict decodes js into T, failing on any field T does not have.
func strict[T any](t *testing.T, file string, js []byte) T {
	t.Helper()
	var v T
	dec := json.NewDecoder(bytes.NewReader(js))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&v); err != nil {
		t.Fatalf("%s: not a valid %T: %v\n%s", file, v, err, js)
	}
	return v
}

func env(c corev1.Container, name string) *corev1.EnvVar {
	for i := range c.Env {
		if c.Env[i].Name == name {
			return &c.Env[i]
		}
	}
	return nil
}

func TestChart(t *testing.T) {
	tests := []struct {
		values                string
		replicas              int32
		pdb, netpol, account  bool
		dsnSecret, image      string
		extraEnv, saName, tol string
	}{
		{values: "default.yaml", replicas: 3, pdb: true, netpol: true, account: true, dsnSecret: "warden-postgres/dsn", image: "ghcr.io/warden-mcp/warden:0.1.0", saName: "w-warden"},
		{values: "two-replicas.yaml", replicas: 2, dsnSecret: "warden-postgres/dsn", image: "ghcr.io/warden-mcp/warden:0.1.0", saName: "platform"},
		{values: "istio.yaml", replicas: 5, pdb: true, netpol: true, account: true, dsnSecret: "pg/url", image: "ghcr.io/warden-mcp/warden:1.2.3",
			extraEnv: "WARDEN_AUTHZ_SERVER_FROM_PATH", saName: "w-warden", tol: "dedicated"},
	}
	for _, tc := range tests {
		t.Run(tc.values, func(t *testing.T) {
			o := render(t, filepath.Join("testdata", tc.values))
			if len(o.deployments) != 1 || len(o.configMaps) != 1 {
				t.Fatalf("%d deployments, %d config maps", len(o.deployments), len(o.configMaps))
			}
			d := o.deployments[0]
			if d.Spec.Replicas == nil || *d.Spec.Replicas != tc.replicas {
				t.Fatalf("replicas %v, want %d", d.Spec.Replicas, tc.replicas)
			}
			if d.Spec.Template.Spec.ServiceAccountName != tc.saName {
				t.Fatalf("service account %q", d.Spec.Template.Spec.ServiceAccountName)
			}
			c := d.Spec.Template.Spec.Containers[0]
			if c.Image != tc.image {
				t.Fatalf("image %q", c.Image)
			}
			for name, secret := range map[string]string{"WARDEN_STORE_POSTGRES_DSN": tc.dsnSecret, "WARDEN_SEALING_KEYS": "warden-kek/sealing-keys", "WARDEN_ADMIN_TOKEN": "warden-admin/token"} {
				e := env(c, name)
				if e == nil || e.Value != "" || e.ValueFrom == nil || e.ValueFrom.SecretKeyRef == nil ||
					e.ValueFrom.SecretKeyRef.Name+"/"+e.ValueFrom.SecretKeyRef.Key != secret {
					t.Fatalf("%s must come from secret %s: %+v", name, secret, e)
				}
			}
			if e := env(c, "WARDEN_STORE_BACKEND"); e == nil || e.Value != "postgres" {
				t.Fatal("the replicas must run on postgres")
			}
			if tc.extraEnv != "" && env(c, tc.extraEnv) == nil {
				t.Fatalf("extra env %s missing", tc.extraEnv)
			}
			if p := c.ReadinessProbe; p == nil || p.HTTPGet == nil || p.HTTPGet.Path != "/readyz" || p.HTTPGet.Port.String() != "admin" {
				t.Fatalf("readiness probe: %+v", p)
			}
			if p := c.LivenessProbe; p == nil || p.HTTPGet == nil || p.HTTPGet.Path != "/healthz" {
				t.Fatalf("liveness probe: %+v", p)
			}
			if c.Resources.Requests.Cpu().IsZero() || c.Resources.Requests.Memory().IsZero() {
				t.Fatal("no resource requests")
			}
			if tc.tol != "" && (len(d.Spec.Template.Spec.Tolerations) != 1 || d.Spec.Template.Spec.Tolerations[0].Key != tc.tol) {
				t.Fatalf("tolerations %+v", d.Spec.Template.Spec.Tolerations)
			}
			ports := map[string]int32{}
			for _, s := range o.services {
				if len(s.Spec.Ports) != 1 || s.Spec.Type != corev1.ServiceTypeClusterIP {
					t.Fatalf("service %s: %+v", s.Name, s.Spec)
				}
				ports[strings.TrimPrefix(s.Name, "w-warden-")] = s.Spec.Ports[0].Port
			}
			if want := map[string]int32{"http": 8080, "authz": 9191, "xds": 18000, "admin": 9090}; !mapsEqual(ports, want) {
				t.Fatalf("services %v, want %v", ports, want)
			}
			if (len(o.pdbs) == 1) != tc.pdb || (len(o.accounts) == 1) != tc.account {
				t.Fatalf("pdbs %d, service accounts %d", len(o.pdbs), len(o.accounts))
			}
			if tc.pdb && o.pdbs[0].Spec.MinAvailable.IntValue() != 1 {
				t.Fatalf("pdb %+v", o.pdbs[0].Spec)
			}
			if (len(o.netpols) == 1) != tc.netpol {
				t.Fatalf("network policies: %d", len(o.netpols))
			}
			if tc.netpol {
				checkNetworkPolicy(t, o.netpols[0])
			}
		})
	}
}

// checkNetworkPolicy: HTTP open, ext_authz and xDS only from Envoy's
// pods, admin only from the admin pods, nothing else.
func checkNetworkPolicy(t *testing.T, np networkingv1.NetworkPolicy) {
	t.Helper()
	if !slices.Equal(np.Spec.PolicyTypes, []networkingv1.PolicyType{networkingv1.PolicyTypeIngress}) {
		t.Fatalf("policy types %v", np.Spec.PolicyTypes)
	}
	open := map[string]bool{}
	for _, rule := range np.Spec.Ingress {
		for _, p := range rule.Ports {
			port := p.Port.String()
			switch {
			case len(rule.From) == 0:
				open[port] = true
			case port == "admin" && rule.From[0].PodSelector != nil && rule.From[0].PodSelector.MatchLabels["warden.dev/admin"] == "true":
			case (port == "authz" || port == "xds") && rule.From[0].PodSelector != nil && len(rule.From[0].PodSelector.MatchLabels) > 0:
			default:
				t.Fatalf("port %s reachable by %+v", port, rule.From)
			}
		}
	}
	if !open["http"] || open["admin"] || open["xds"] || open["authz"] || len(open) != 1 {
		t.Fatalf("ports open to all: %v", open)
	}
}

func mapsEqual(a, b map[string]int32) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if b[k] != v {
			return false
		}
	}
	return true
}
