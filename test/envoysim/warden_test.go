package envoysim

import (
	"context"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	cachev3 "github.com/envoyproxy/go-control-plane/pkg/cache/v3"

	"github.com/warden-mcp/warden/internal/store"
	"github.com/warden-mcp/warden/xds/translate"
)

// The resources Warden's own translator produces are ACKed and served:
// the contract between xds/translate and this harness.
func TestWardenTranslatedResources(t *testing.T) {
	ca := newTestCA(t, "localhost")
	caFile := filepath.Join(t.TempDir(), "ca.pem")
	if err := os.WriteFile(caFile, ca.pem, 0o600); err != nil {
		t.Fatal(err)
	}
	authz := startAuthz(t)
	wardenHTTP := startUpstream(t, plainHTTP1, nil)
	plain := startUpstream(t, plainHTTP1, nil)
	secure := startUpstream(t, tlsServer, &ca.server)
	_, securePort := secure.hostPort()

	res, err := translate.Translate([]store.Server{
		{Name: "alpha", URL: plain.srv.URL + "/mcp", Credential: store.CredentialJWT},
		{Name: "secure", URL: "https://localhost:" + strconv.Itoa(int(securePort)) + "/v1/mcp", Credential: store.CredentialJWT, HTTP2: true},
	}, translate.Settings{
		ListenerAddress:    "0.0.0.0",
		ListenerPort:       10000,
		StreamIdleTimeout:  5 * time.Minute,
		RouteIdleTimeout:   time.Hour,
		ConnectTimeout:     5 * time.Second,
		AuthzTimeout:       3 * time.Second,
		MaxRequestBytes:    1 << 20,
		WardenAuthzAddress: authz.addr,
		WardenHTTPAddress:  wardenHTTP.srv.Listener.Addr().String(),
		UpstreamCAFile:     caFile,
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Skipped) != 0 {
		t.Fatalf("servers skipped: %v", res.Skipped)
	}
	ads := startADS(t)
	snap, err := cachev3.NewSnapshot(res.Resources.Version, res.Resources.ByType())
	if err != nil {
		t.Fatal(err)
	}
	if err := snap.Consistent(); err != nil {
		t.Fatal(err)
	}
	if err := ads.cache.SetSnapshot(context.Background(), testNode, snap); err != nil {
		t.Fatal(err)
	}
	p, err := Start(t.Context(), Options{ADSAddress: ads.addr, NodeID: testNode})
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = p.Close() }()
	ctx, cancel := context.WithTimeout(t.Context(), 20*time.Second)
	defer cancel()
	if _, err := p.WaitForVersion(ctx, res.Resources.Version); err != nil {
		t.Fatal(err)
	}
	if n := p.Nacks(); len(n) != 0 {
		t.Fatalf("NACKs of Warden's resources: %+v", n)
	}

	code, _, body := do(t, "POST", p.URL()+"/mcp/alpha/x?y=1", []byte(`{"jsonrpc":"2.0","id":1,"method":"ping"}`), nil)
	expectStatus(t, code, 200, body)
	if got := plain.last(t).URI; got != "/mcp/x?y=1" {
		t.Errorf("alpha upstream saw %q", got)
	}
	if host := plain.last(t).Host; host != plain.srv.Listener.Addr().String() {
		t.Errorf("alpha upstream Host %q", host)
	}
	if ext := authz.last(t).GetAttributes().GetContextExtensions()["server"]; ext != "alpha" {
		t.Errorf("context_extensions server = %q", ext)
	}

	code, _, body = do(t, "POST", p.URL()+"/mcp/secure", []byte(`{}`), nil)
	expectStatus(t, code, 200, body)
	got := secure.last(t)
	if got.URI != "/v1/mcp" || got.SNI != "localhost" || got.ProtoMajor != 2 {
		t.Errorf("secure upstream saw %q SNI %q HTTP/%d", got.URI, got.SNI, got.ProtoMajor)
	}

	// The response path: each MCP response's headers went to the
	// processor (and only they: request headers are skipped).
	procReqs, streams := authz.proc.seen()
	if streams != 2 || len(procReqs) != 2 || procReqs[0].GetResponseHeaders() == nil || procReqs[1].GetResponseHeaders() == nil {
		t.Errorf("ext_proc on MCP routes: %d streams, %v", streams, procReqs)
	}

	checks := len(authz.requests())
	code, _, body = do(t, "GET", p.URL()+"/.well-known/oauth-protected-resource/mcp/alpha", nil, nil)
	expectStatus(t, code, 200, body)
	if _, streams := authz.proc.seen(); streams != 2 {
		t.Errorf("ext_proc ran on Warden's own route (%d streams)", streams)
	}
	code, _, body = do(t, "GET", p.URL()+"/nothing", nil, nil)
	if code != 404 || len(authz.requests()) != checks {
		t.Errorf("unknown path: %d %q, checks %d -> %d", code, body, checks, len(authz.requests()))
	}
	if got := p.Checks(); got != int64(len(authz.requests())) {
		t.Errorf("Checks() = %d, the authorization service answered %d", got, len(authz.requests()))
	}
	_, port, _ := net.SplitHostPort(p.Addr())
	if port == "10000" {
		t.Error("the harness must listen on its own address, not the Listener's")
	}
}
