package xds

import (
	"bytes"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"slices"
	"testing"

	bootstrapv3 "github.com/envoyproxy/go-control-plane/envoy/config/bootstrap/v3"
	core "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	hcm "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	tlsv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/transport_sockets/tls/v3"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/testing/protocmp"

	"github.com/google/go-cmp/cmp"

	"github.com/warden-mcp/warden/internal/store"
	_ "github.com/warden-mcp/warden/xds/internal/allext" // resolve every Any in shipped YAML
	"github.com/warden-mcp/warden/xds/internal/deepvalidate"
	"github.com/warden-mcp/warden/xds/internal/protoyaml"
	"github.com/warden-mcp/warden/xds/translate"
)

// envoyDir is the repository's envoy/ folder.
var envoyDir = filepath.Join("..", "envoy")

func readEnvoy(t *testing.T, rel string) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(envoyDir, rel))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func parseBootstrap(t *testing.T, rel string) *bootstrapv3.Bootstrap {
	t.Helper()
	var b bootstrapv3.Bootstrap
	if err := protoyaml.Unmarshal(readEnvoy(t, rel), &b); err != nil {
		t.Fatalf("%s: %v", rel, err)
	}
	return &b
}

// Every Envoy config file Warden ships parses as Envoy would read it and
// passes validation, including every typed config packed in Any.
func TestShippedEnvoyConfigsValidate(t *testing.T) {
	for _, rel := range []string{"bootstrap.yaml", "compose/envoy.yaml", "examples/standalone.yaml"} {
		t.Run(rel, func(t *testing.T) {
			b := parseBootstrap(t, rel)
			if err := deepvalidate.Message(b); err != nil {
				t.Fatalf("%s does not validate: %v", rel, err)
			}
			if deepvalidate.CountAny(b) == 0 {
				t.Fatalf("%s: no typed config reached", rel)
			}
			if a := b.GetAdmin().GetAddress().GetSocketAddress(); a.GetPortValue() != 9901 {
				t.Errorf("%s: admin on %v, want port 9901", rel, a)
			}
		})
	}
}

// The shipped bootstraps are exactly what `warden envoy bootstrap` renders,
// so the files and the command cannot drift apart.
func TestShippedBootstrapsAreRendered(t *testing.T) {
	compose := DefaultBootstrapOptions()
	compose.XDSAddress = "warden:18000"
	compose.AdminAddress = "0.0.0.0:9901"
	for rel, o := range map[string]BootstrapOptions{
		"bootstrap.yaml":     DefaultBootstrapOptions(),
		"compose/envoy.yaml": compose,
	} {
		want, err := RenderBootstrap(o)
		if err != nil {
			t.Fatal(err)
		}
		if got := readEnvoy(t, rel); !bytes.Equal(got, want) {
			t.Errorf("envoy/%s is not what `warden envoy bootstrap` renders; regenerate it:\n%s", rel, want)
		}
	}
}

func TestBootstrapContents(t *testing.T) {
	b, err := RenderBootstrap(BootstrapOptions{XDSAddress: "xds.example:18000", NodeID: "edge-7", Delta: true,
		AuthzAddress: "authz.example:9999"})
	if err != nil {
		t.Fatal(err)
	}
	var bs bootstrapv3.Bootstrap
	if err := protoyaml.Unmarshal(b, &bs); err != nil {
		t.Fatal(err)
	}
	if bs.GetNode().GetId() != "edge-7" || bs.GetNode().GetCluster() != "warden" {
		t.Fatalf("node %v", bs.GetNode())
	}
	ads := bs.GetDynamicResources().GetAdsConfig()
	if ads.GetApiType().String() != "DELTA_GRPC" || ads.GetGrpcServices()[0].GetEnvoyGrpc().GetClusterName() != "warden_xds" {
		t.Fatalf("ads config %v", ads)
	}
	if bs.GetDynamicResources().GetCdsConfig().GetAds() == nil || bs.GetDynamicResources().GetLdsConfig().GetAds() == nil {
		t.Fatal("CDS and LDS must come over ADS")
	}
	addrs := map[string]string{}
	for _, c := range bs.GetStaticResources().GetClusters() {
		sa := c.GetLoadAssignment().GetEndpoints()[0].GetLbEndpoints()[0].GetEndpoint().GetAddress().GetSocketAddress()
		addrs[c.GetName()] = net.JoinHostPort(sa.GetAddress(), fmt.Sprint(sa.GetPortValue()))
	}
	want := map[string]string{
		"warden_xds": "xds.example:18000", translate.AuthzCluster: "authz.example:9999",
		translate.HTTPCluster: "xds.example:8080", // defaults to the xDS host
	}
	if diff := cmp.Diff(want, addrs); diff != "" {
		t.Fatalf("static clusters (-want +got):\n%s", diff)
	}
	for _, bad := range []BootstrapOptions{
		{XDSAddress: "x:1"},
		{XDSAddress: "no-port", NodeID: "n"},
		{XDSAddress: "x:0", NodeID: "n"},
		{XDSAddress: "x:1", NodeID: "n\n  evil: true"},
		{XDSAddress: "x:1", NodeID: "n", AdminAddress: ":9901"},
	} {
		if _, err := RenderBootstrap(bad); err == nil {
			t.Errorf("accepted %+v", bad)
		}
	}
}

// The standalone example is the resource contract written out by hand; it
// must say exactly what the translator says for the same server.
func TestStandaloneMatchesTranslator(t *testing.T) {
	b := parseBootstrap(t, "examples/standalone.yaml")
	res, err := translate.Translate([]store.Server{{Name: "everything", URL: "http://everything:3001/mcp"}}, settings())
	if err != nil || len(res.Skipped) > 0 {
		t.Fatal(err, res.Skipped)
	}
	opts := cmp.Options{protocmp.Transform()}

	// Listener: same, except the example carries its routes inline.
	if n := len(b.GetStaticResources().GetListeners()); n != 1 {
		t.Fatalf("%d listeners", n)
	}
	gotL := b.GetStaticResources().GetListeners()[0]
	wantL := res.Resources.Listeners[0]
	gotHCM, wantHCM := unpackHCM(t, gotL.GetFilterChains()[0].GetFilters()[0].GetTypedConfig()), unpackHCM(t, wantL.GetFilterChains()[0].GetFilters()[0].GetTypedConfig())
	inline := gotHCM.GetRouteConfig()
	if inline == nil {
		t.Fatal("standalone listener has no inline route_config")
	}
	gotHCM.RouteSpecifier = wantHCM.RouteSpecifier
	// protocmp unpacks Any, so typed configs compare by content.
	if diff := cmp.Diff(wantHCM, gotHCM, opts); diff != "" {
		t.Errorf("http connection manager differs (-translator +example):\n%s", diff)
	}
	if gotL.GetName() != wantL.GetName() || !proto.Equal(gotL.GetAddress(), wantL.GetAddress()) {
		t.Errorf("listener %s %v, want %s %v", gotL.GetName(), gotL.GetAddress(), wantL.GetName(), wantL.GetAddress())
	}
	if diff := cmp.Diff(res.Resources.Routes[0], inline, opts); diff != "" {
		t.Errorf("routes differ (-translator +example):\n%s", diff)
	}
	if diff := cmp.Diff(res.Resources.Clusters, b.GetStaticResources().GetClusters(), opts); diff != "" {
		t.Errorf("clusters differ (-translator +example):\n%s", diff)
	}
}

func unpackHCM(t *testing.T, a interface{ UnmarshalTo(proto.Message) error }) *hcm.HttpConnectionManager {
	t.Helper()
	var m hcm.HttpConnectionManager
	if err := a.UnmarshalTo(&m); err != nil {
		t.Fatal(err)
	}
	return &m
}

// With --tls-*, the bootstrap has Envoy speak mutual TLS to Warden's xDS
// and ext_authz listeners: a client certificate, Warden's CA, its name as
// SAN and SNI, ALPN h2. The warden_authz socket is exactly what the xDS
// translation publishes for the same settings, and everything validates.
func TestBootstrapMutualTLS(t *testing.T) {
	tlsOpts := &translate.ClientTLS{CertFile: "/etc/envoy/tls/envoy.pem", KeyFile: "/etc/envoy/tls/envoy-key.pem", CAFile: "/etc/envoy/tls/warden-ca.pem", ServerName: "warden.internal"}
	raw, err := RenderBootstrap(BootstrapOptions{XDSAddress: "warden.internal:18000", NodeID: "edge-1", TLS: tlsOpts})
	if err != nil {
		t.Fatal(err)
	}
	var b bootstrapv3.Bootstrap
	if err := protoyaml.Unmarshal(raw, &b); err != nil {
		t.Fatal(err)
	}
	if err := deepvalidate.Message(&b); err != nil {
		t.Fatalf("bootstrap with TLS does not validate: %v", err)
	}
	sockets := map[string]*core.TransportSocket{}
	for _, c := range b.GetStaticResources().GetClusters() {
		sockets[c.GetName()] = c.GetTransportSocket()
	}
	if sockets[translate.HTTPCluster] != nil {
		t.Error("warden_http got TLS: Warden's HTTP listener is plain")
	}
	for _, name := range []string{"warden_xds", translate.AuthzCluster} {
		ts := sockets[name]
		var ctx tlsv3.UpstreamTlsContext
		if ts == nil || ts.GetTypedConfig().UnmarshalTo(&ctx) != nil {
			t.Fatalf("%s: no UpstreamTlsContext: %v", name, ts)
		}
		c := ctx.GetCommonTlsContext()
		if ctx.GetSni() != "warden.internal" || !slices.Equal(c.GetAlpnProtocols(), []string{"h2"}) ||
			c.GetTlsCertificates()[0].GetCertificateChain().GetFilename() != tlsOpts.CertFile ||
			c.GetTlsCertificates()[0].GetPrivateKey().GetFilename() != tlsOpts.KeyFile ||
			c.GetValidationContext().GetTrustedCa().GetFilename() != tlsOpts.CAFile ||
			c.GetValidationContext().GetMatchTypedSubjectAltNames()[0].GetMatcher().GetExact() != "warden.internal" {
			t.Errorf("%s: TLS context %v", name, &ctx)
		}
	}
	s := settings()
	s.WardenAuthzAddress = "warden.internal:9191"
	s.WardenAuthzTLS = tlsOpts
	res, err := translate.Translate(nil, s)
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range res.Resources.Clusters {
		if c.GetName() == translate.AuthzCluster {
			if diff := cmp.Diff(c.GetTransportSocket(), sockets[translate.AuthzCluster], protocmp.Transform()); diff != "" {
				t.Errorf("bootstrap and xDS disagree on warden_authz TLS (-xds +bootstrap):\n%s", diff)
			}
		}
	}
	// An IP address is checked as an IP SAN and sends no SNI.
	raw, err = RenderBootstrap(BootstrapOptions{XDSAddress: "10.0.0.5:18000", NodeID: "edge-1",
		TLS: &translate.ClientTLS{CertFile: "/c", KeyFile: "/k", CAFile: "/ca"}})
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Contains(raw, []byte("san_type: IP_ADDRESS")) || bytes.Contains(raw, []byte("sni:")) {
		t.Errorf("IP address without IP SAN or with SNI:\n%s", raw)
	}
	if _, err := RenderBootstrap(BootstrapOptions{XDSAddress: "x:1", NodeID: "n", TLS: &translate.ClientTLS{CertFile: "/c"}}); err == nil {
		t.Error("incomplete TLS accepted")
	}
}
