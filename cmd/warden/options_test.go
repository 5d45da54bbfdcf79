package main

import (
	"bytes"
	"context"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/warden-mcp/warden/internal/config"
	"github.com/warden-mcp/warden/xds/translate"
)

// The settings a default Warden translates with. xds's tests (the
// standalone example among them) use the same values in their settings()
// helper; change both together.
func TestXDSSettingsFromDefaultConfig(t *testing.T) {
	cfg, err := config.Load("")
	if err != nil {
		t.Fatal(err)
	}
	want := translate.Settings{
		ListenerAddress: "0.0.0.0", ListenerPort: 10000,
		StreamIdleTimeout: 5 * time.Minute, RouteIdleTimeout: time.Hour, MaxStreamDuration: time.Hour, ConnectTimeout: 5 * time.Second,
		AuthzTimeout: 3 * time.Second, ExtProcTimeout: translate.DefaultExtProcTimeout, MaxRequestBytes: 1 << 20,
		WardenAuthzAddress: "127.0.0.1:9191", WardenHTTPAddress: "127.0.0.1:8080",
		UpstreamCAFile: "/etc/ssl/certs/ca-certificates.crt",
	}
	if diff := cmp.Diff(want, xdsSettings(cfg)); diff != "" {
		t.Fatalf("settings from the default config (-want +got):\n%s", diff)
	}
	// A non-default xds.extproc_timeout reaches the translator.
	t.Setenv("WARDEN_XDS_EXTPROC_TIMEOUT", "750ms")
	if cfg, err = config.Load(""); err != nil {
		t.Fatal(err)
	}
	if got := xdsSettings(cfg).ExtProcTimeout; got != 750*time.Millisecond {
		t.Fatalf("ExtProcTimeout %s from xds.extproc_timeout 750ms", got)
	}
}

// The admin CLI finds the server through the server's own configuration:
// WARDEN_LISTEN_ADMIN and WARDEN_DATA_DIR, or --config, without
// --admin-addr (issue 13: it ignored WARDEN_LISTEN_ADMIN).
func TestCLIReadsTheServerConfig(t *testing.T) {
	r := startServe(t, t.TempDir(), nil)
	run := func(args ...string) (string, error) {
		cmd := newRootCmd()
		var out bytes.Buffer
		cmd.SetOut(&out)
		cmd.SetErr(&out)
		cmd.SetArgs(args)
		err := cmd.ExecuteContext(context.Background())
		return out.String(), err
	}
	if out, err := run("servers", "add", "bi", "--url", "http://127.0.0.1:3001/mcp", "--config", cfgPathOf(r.cfg)); err != nil {
		t.Fatalf("with --config: %v %s", err, out)
	}
	t.Setenv("WARDEN_LISTEN_ADMIN", r.cfg.Listen.Admin)
	t.Setenv("WARDEN_DATA_DIR", r.cfg.DataDir)
	out, err := run("servers", "list")
	if err != nil || !strings.Contains(out, "bi") {
		t.Fatalf("with the WARDEN_* environment: %v %s", err, out)
	}
}
