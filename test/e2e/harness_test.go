package e2e

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/warden-mcp/warden/test/envoysim"
	"github.com/warden-mcp/warden/test/idp"
	"github.com/warden-mcp/warden/test/mcpserver"
	"github.com/warden-mcp/warden/test/wardenbin"
)

const (
	// nodeID is the Envoy node id both harness proxies present.
	nodeID = "envoy-e2e"
	// idpClientSecret is Warden's static client secret at the IdP. It
	// reaches Warden through ${...} expansion in the config file, never
	// through argv.
	idpClientSecret = "warden-at-the-idp-0123456789"
	// accessTTL is oauth.access_token_ttl for the run: short, so that the
	// SDK client has to refresh within it.
	accessTTL = 5 * time.Second
)

// harness is one Warden with everything around it.
type harness struct {
	t *testing.T

	bin     string // the warden binary
	dataDir string
	admin   string // admin API base URL
	public  string // public_url: the OAuth proxy's URL

	warden *process
	idp    *idp.Provider

	// proxy carries the OAuth client's traffic; conformance carries the
	// conformance runner's, with a pre-issued handle added to every request.
	proxy           *envoysim.Proxy
	conformance     *envoysim.Proxy
	conformanceLog  *procFailures // the conformance proxy's failed ext_proc exchanges
	conformancePort string
	xdsAddr         string

	// data is test/mcpserver behind Warden as server "data"; its handler
	// records every Authorization header that reached it.
	data       *mcpserver.Server
	dataURL    string
	dataAuthzs *headerLog

	// everything is @modelcontextprotocol/server-everything.
	everything    *process
	everythingURL string

	// modern is test/mcpserver serving 2026-07-28 (stateless) as server
	// "modern"; modernEverythingURL is the go-sdk conformance server
	// (server "everything-modern"). Started by addModern.
	modern              *mcpserver.Server
	modernEverythingURL string
}

// startHarness brings up the IdP, Warden, the OAuth proxy and both
// upstream MCP servers, and registers the servers with the CLI. maxStream,
// when given, is xds.max_stream_duration (default 1h).
func startHarness(t *testing.T, maxStream ...string) *harness {
	streamBound := "1h"
	if len(maxStream) > 0 {
		streamBound = maxStream[0]
	}
	h := &harness{t: t, bin: wardenbin.Path(t, raceEnabled), dataDir: filepath.Join(t.TempDir(), "data")}
	node := idp.Node(t)

	proxyPort, httpPort, authzPort, adminPort, xdsPort := freePort(t), freePort(t), freePort(t), freePort(t), freePort(t)
	// The conformance proxy is a second listener in front of the same
	// servers: Warden accepts its Host and Origin (authz.allowed_*).
	h.conformancePort = freePort(t)
	h.public = "http://127.0.0.1:" + proxyPort
	h.admin = "http://127.0.0.1:" + adminPort
	h.xdsAddr = "127.0.0.1:" + xdsPort

	// The IdP knows Warden by one static registration whose one redirect
	// URI is Warden's callback, reached through the proxy.
	h.idp = idp.Start(t, idp.Options{Clients: []idp.Client{{
		ID: "warden", Secret: idpClientSecret, RedirectURIs: []string{h.public + "/oauth/callback"},
	}}})

	cfgPath := serveConfig{
		DataDir: h.dataDir, Public: h.public, PolicyDir: policyDir(t), Issuer: h.idp.Issuer, NodeID: nodeID,
		HTTP: httpPort, Authz: authzPort, Admin: adminPort, XDS: xdsPort,
		AccessTTL: accessTTL.String(),
		XDSExtra:  []string{"max_stream_duration: " + streamBound},
		Extra:     "authz:\n  allowed_hosts: [127.0.0.1:" + h.conformancePort + "]\n  allowed_origins: [http://127.0.0.1:" + h.conformancePort + "]\n",
	}.write(t)
	cmd := exec.Command(h.bin, "serve", "-c", cfgPath)
	cmd.Env = append(wardenbin.CleanEnv(), "WARDEN_E2E_IDP_SECRET="+idpClientSecret)
	h.warden = startProcess(t, "warden", cmd, true)
	h.waitReady()

	var err error
	h.proxy, err = envoysim.Start(t.Context(), envoysim.Options{ADSAddress: h.xdsAddr, NodeID: nodeID, Listen: "127.0.0.1:" + proxyPort})
	if err != nil {
		t.Fatalf("start envoysim: %v", err)
	}
	t.Cleanup(func() { _ = h.proxy.Close() })
	waitRoute(t, h.proxy, "/oauth/token", "warden_http")

	// Upstream 1: test/mcpserver, trusting only Warden's JWT for its own
	// resource URL, with the JWKS fetched through the proxy.
	h.dataAuthzs = &headerLog{}
	h.data, err = mcpserver.New(t.Context(), mcpserver.Options{
		JWKSURL: h.public + "/oauth/jwks", Issuer: h.public, Audience: h.public + "/mcp/data",
	})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(h.dataAuthzs.wrap(h.data))
	t.Cleanup(srv.Close)
	h.dataURL = srv.URL + "/mcp"

	// Upstream 2: the reference server, over streamable HTTP.
	port := freePort(t)
	se := exec.Command(node, filepath.Join(idp.NodeModules(t), "@modelcontextprotocol", "server-everything", "dist", "index.js"), "streamableHttp")
	se.Env = append(wardenbin.CleanEnv(), "PORT="+port)
	h.everything = startProcess(t, "server-everything", se, false)
	h.everything.waitFor(t, "listening on port "+port, 30*time.Second)
	h.everythingURL = "http://127.0.0.1:" + port + "/mcp"

	// Registration through the CLI; Envoy gets the routes over xDS.
	out := h.cli(t, "servers", "add", "data", "--url", h.dataURL, "--scope", "data:read", "--description", "test/mcpserver")
	if !strings.Contains(out, "server data: "+h.public+"/mcp/data -> "+h.dataURL) {
		t.Fatalf("servers add data said %q", out)
	}
	h.cli(t, "servers", "add", "everything", "--url", h.everythingURL, "--description", "server-everything")
	if out := h.cli(t, "servers", "list"); !strings.Contains(out, "everything") || !strings.Contains(out, "data:read") {
		t.Fatalf("servers list:\n%s", out)
	}
	waitRoute(t, h.proxy, "/mcp/data", "mcp_data")
	waitRoute(t, h.proxy, "/mcp/everything", "mcp_everything")
	return h
}

// startConformanceProxy starts a second proxy on the same ADS that adds
// the given handle to every request, for the conformance runner, which
// cannot authenticate.
func (h *harness) startConformanceProxy(t *testing.T, handle string) {
	var err error
	h.conformanceLog = &procFailures{}
	h.conformance, err = envoysim.Start(t.Context(), envoysim.Options{
		ADSAddress: h.xdsAddr, NodeID: nodeID, Listen: "127.0.0.1:" + h.conformancePort,
		DownstreamHeaders: http.Header{"Authorization": {"Bearer " + handle}},
		Logger:            slog.New(h.conformanceLog),
	})
	if err != nil {
		t.Fatalf("start envoysim: %v", err)
	}
	t.Cleanup(func() { _ = h.conformance.Close() })
	waitRoute(t, h.conformance, "/mcp/everything", "mcp_everything")
}

func (h *harness) waitReady() {
	t := h.t
	deadline := time.Now().Add(60 * time.Second)
	for {
		resp, err := http.Get(h.admin + "/readyz")
		if err == nil {
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return
			}
			err = fmt.Errorf("readyz %d: %s", resp.StatusCode, body)
		}
		if h.warden.exited() || time.Now().After(deadline) {
			t.Fatalf("warden did not become ready: %v", err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// cli runs a warden admin command against the running server, the way an
// operator does beside it (the admin token comes from the data directory).
func (h *harness) cli(t *testing.T, args ...string) string {
	t.Helper()
	out, err := h.tryCLI(t, args...)
	if err != nil {
		t.Fatalf("warden %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return out
}

func (h *harness) tryCLI(t *testing.T, args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, h.bin, append(args, "--admin-addr", h.admin, "--data-dir", h.dataDir)...)
	// The actor recorded is the admin token's name ("token:admin"), not
	// a name the client chooses: a WARDEN_ACTOR would change nothing.
	cmd.Env = append(wardenbin.CleanEnv(), "WARDEN_ACTOR=e2e-operator")
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	if err != nil {
		return stdout.String() + stderr.String(), err
	}
	return stdout.String(), nil
}

func waitRoute(t *testing.T, p *envoysim.Proxy, path, cluster string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 20*time.Second)
	defer cancel()
	if _, err := p.WaitForRoutes(ctx, func(c *envoysim.Config) bool {
		m, ok := c.Match("127.0.0.1", path)
		return ok && m.Cluster == cluster
	}); err != nil {
		t.Fatalf("the proxy never routed %s to %s: %v (NACKs: %+v)", path, cluster, err, p.Nacks())
	}
}

func policyDir(t *testing.T) string {
	dir, err := filepath.Abs(filepath.Join("testdata", "policy"))
	if err != nil {
		t.Fatal(err)
	}
	return dir
}

func freePort(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return strconv.Itoa(l.Addr().(*net.TCPAddr).Port)
}

// process is a child process whose output is kept for the test log.
type process struct {
	name string
	cmd  *exec.Cmd
	mu   sync.Mutex
	out  bytes.Buffer
	done chan struct{}
	err  error // from Wait, once done is closed
	// graceful: the process must exit 0 on SIGTERM, without a race
	// detector report.
	graceful bool
}

func startProcess(t *testing.T, name string, cmd *exec.Cmd, graceful bool) *process {
	p := &process{name: name, cmd: cmd, done: make(chan struct{}), graceful: graceful}
	cmd.Stdout, cmd.Stderr = p, p
	if err := cmd.Start(); err != nil {
		t.Fatalf("start %s: %v", name, err)
	}
	go func() { p.err = cmd.Wait(); close(p.done) }()
	t.Cleanup(func() {
		p.stop()
		if p.graceful && (p.err != nil || strings.Contains(p.output(), "WARNING: DATA RACE")) {
			t.Errorf("%s did not shut down cleanly: %v (race reports: %d)", name, p.err, strings.Count(p.output(), "WARNING: DATA RACE"))
		}
		if t.Failed() {
			t.Logf("---- %s output (last 6000 bytes) ----\n%s", name, tail(p.output(), 6000))
		}
	})
	return p
}

func (p *process) Write(b []byte) (int, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.out.Write(b)
}

func (p *process) output() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.out.String()
}

func (p *process) exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// stop asks the process to shut down (SIGTERM: Warden drains checks and
// the audit queue) and kills it if it does not.
func (p *process) stop() {
	if p.exited() {
		return
	}
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.done:
	case <-time.After(20 * time.Second):
		_ = p.cmd.Process.Kill()
		<-p.done
	}
}

// waitHTTP waits until addr accepts connections (the process prints
// nothing when it listens).
func waitHTTP(t *testing.T, p *process, addr string) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		c, err := net.DialTimeout("tcp", addr, time.Second)
		if err == nil {
			_ = c.Close()
			return
		}
		if p.exited() || time.Now().After(deadline) {
			t.Fatalf("%s does not listen on %s: %v\n%s", p.name, addr, err, tail(p.output(), 4000))
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func (p *process) waitFor(t *testing.T, text string, d time.Duration) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !strings.Contains(p.output(), text) {
		if p.exited() || time.Now().After(deadline) {
			t.Fatalf("%s did not print %q:\n%s", p.name, text, tail(p.output(), 4000))
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func tail(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return "…" + s[len(s)-n:]
}

// headerLog wraps a handler and keeps every Authorization header it saw.
type headerLog struct {
	mu   sync.Mutex
	seen []string
}

func (l *headerLog) wrap(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		l.mu.Lock()
		l.seen = append(l.seen, r.Header.Get("Authorization"))
		l.mu.Unlock()
		next.ServeHTTP(w, r)
	})
}

func (l *headerLog) values() []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return append([]string(nil), l.seen...)
}
