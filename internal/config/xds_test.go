package config

import (
	"strings"
	"testing"
	"time"
)

func TestXDSDefaultsAndOverrides(t *testing.T) {
	c, err := Load("")
	if err != nil {
		t.Fatal(err)
	}
	x := c.XDS
	if x.ListenerAddress != "0.0.0.0" || x.ListenerPort != 10000 || x.MaxRequestBytes != c.Authz.MaxBodyBytes ||
		x.AuthzTimeout.D() <= c.Authz.Timeout.D() || x.WardenAuthzAddress != "127.0.0.1:9191" || x.WardenHTTPAddress != "127.0.0.1:8080" {
		t.Fatalf("xds defaults %+v", x)
	}
	t.Setenv("WARDEN_XDS_AUTHZ_TIMEOUT", "750ms")
	t.Setenv("WARDEN_XDS_WARDEN_AUTHZ_ADDRESS", "warden:9191")
	p := write(t, "xds:\n  route_idle_timeout: 2h\n  upstream_ca_file: /etc/pki/tls/certs/ca-bundle.crt\n")
	c, err = Load(p)
	if err != nil {
		t.Fatal(err)
	}
	if c.XDS.AuthzTimeout.D() != 750*time.Millisecond || c.XDS.WardenAuthzAddress != "warden:9191" ||
		c.XDS.RouteIdleTimeout.D() != 2*time.Hour || c.XDS.UpstreamCAFile != "/etc/pki/tls/certs/ca-bundle.crt" {
		t.Fatalf("overrides not applied: %+v", c.XDS)
	}
}

func TestXDSValidationReportsEveryProblem(t *testing.T) {
	p := write(t, `
xds:
  listener_address: localhost
  listener_port: 70000
  max_request_bytes: 0
  authz_timeout: 0s
  warden_authz_address: ":9191"
  warden_http_address: "warden"
  upstream_ca_file: ""
  node_ids: [a, a]
`)
	_, err := Load(p)
	if err == nil {
		t.Fatal("invalid xds section accepted")
	}
	for _, want := range []string{
		"xds.listener_address", "xds.listener_port", "xds.max_request_bytes", "xds.authz_timeout",
		"xds.warden_authz_address", "xds.warden_http_address", "xds.upstream_ca_file", "xds.node_ids[1]",
	} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("missing %s in:\n%v", want, err)
		}
	}
}

// xds.extproc_timeout (the ext_proc message_timeout) defaults to 2s and
// must be positive and at most a minute.
func TestXDSExtProcTimeout(t *testing.T) {
	c, err := Load("")
	if err != nil {
		t.Fatal(err)
	}
	if c.XDS.ExtProcTimeout.D() != 2*time.Second {
		t.Fatalf("default extproc_timeout %s", c.XDS.ExtProcTimeout.D())
	}
	c, err = Load(write(t, "xds:\n  extproc_timeout: 5s\n"))
	if err != nil || c.XDS.ExtProcTimeout.D() != 5*time.Second {
		t.Fatalf("extproc_timeout 5s: %v %v", c.XDS.ExtProcTimeout.D(), err)
	}
	for _, v := range []string{"0s", "-1s", "2m"} {
		_, err := Load(write(t, "xds:\n  extproc_timeout: "+v+"\n"))
		if err == nil || !strings.Contains(err.Error(), "xds.extproc_timeout") {
			t.Errorf("extproc_timeout %s: %v", v, err)
		}
	}
}
