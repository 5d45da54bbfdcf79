package console

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/warden-mcp/warden/oauth/oauthtest"
	"github.com/warden-mcp/warden/test/idp"
	"github.com/warden-mcp/warden/test/wardenbin"
)

const (
	idpSecret = "warden-at-the-idp-0123456789"
	// auditorToken is an admin token of role auditor (admin.tokens).
	auditorToken = "wdn_admin_console-test-auditor-token-0123456789"
	clientCB     = "http://127.0.0.1:9/cb"
)

// harness is warden serve (the binary) with the real oidc-provider.
type harness struct {
	bin, dataDir  string
	public, admin string
	authz         string
	idp           *idp.Provider
	warden        *process

	mu           sync.Mutex
	logoutTokens []string // every logout token the IdP sent
}

func start(t *testing.T) *harness {
	h := &harness{bin: wardenbin.Path(t, raceEnabled), dataDir: filepath.Join(t.TempDir(), "data")}
	httpPort, authzPort, adminPort, xdsPort := freePort(t), freePort(t), freePort(t), freePort(t)
	h.public = "http://127.0.0.1:" + httpPort
	h.admin = "http://127.0.0.1:" + adminPort
	h.authz = "127.0.0.1:" + authzPort
	// One IdP client for both: Warden's callback for MCP users and the
	// console's for administrators.
	// The IdP's logout tokens reach Warden through a recorder, so that a
	// test can replay one.
	logout := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_ = r.ParseForm()
		h.mu.Lock()
		h.logoutTokens = append(h.logoutTokens, r.PostForm.Get("logout_token"))
		h.mu.Unlock()
		resp, err := http.PostForm(h.public+"/oauth/backchannel-logout", r.PostForm)
		if err != nil {
			w.WriteHeader(http.StatusBadGateway)
			return
		}
		resp.Body.Close()
		w.WriteHeader(resp.StatusCode)
	}))
	t.Cleanup(logout.Close)
	h.idp = idp.Start(t, idp.Options{Clients: []idp.Client{{
		ID: "warden", Secret: idpSecret, RedirectURIs: []string{h.public + "/oauth/callback", h.admin + "/ui/callback"},
		BackchannelLogoutURI: logout.URL, BackchannelLogoutSessionRequired: true,
	}}})
	sum := sha256.Sum256([]byte(auditorToken))
	policyDir, _ := filepath.Abs(filepath.Join("testdata", "policy"))
	cfg := fmt.Sprintf(`data_dir: %[1]s
public_url: %[2]s
listen:
  http: 127.0.0.1:%[3]s
  authz: 127.0.0.1:%[4]s
  admin: 127.0.0.1:%[5]s
  xds: 127.0.0.1:%[6]s
log: {level: info, format: json}
policy: {dir: %[7]s, watch: false}
audit: {sink: none}
oauth:
  clients:
    - id: cli
      name: Console Test CLI
      redirect_uris: [%[8]s]
  connector:
    type: oidc
    oidc:
      issuer: %[9]s
      client_id: warden
      client_secret: ${WARDEN_CONSOLE_IDP_SECRET}
      scopes: [openid, email, profile, groups]
admin:
  public_url: %[10]s
  roles:
    - role: admin
      groups: [engineering]
    - role: auditor
      groups: [sales]
  tokens:
    - name: siem
      role: auditor
      sha256: %[11]s
`, h.dataDir, h.public, httpPort, authzPort, adminPort, xdsPort, policyDir, clientCB, h.idp.Issuer, h.admin, hex.EncodeToString(sum[:]))
	cfgPath := filepath.Join(t.TempDir(), "warden.yaml")
	if err := os.WriteFile(cfgPath, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(h.bin, "serve", "-c", cfgPath)
	cmd.Env = append(wardenbin.CleanEnv(), "WARDEN_CONSOLE_IDP_SECRET="+idpSecret)
	h.warden = startProcess(t, "warden", cmd)
	deadline := time.Now().Add(90 * time.Second)
	for {
		resp, err := http.Get(h.admin + "/readyz")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				break
			}
		}
		if h.warden.exited() || time.Now().After(deadline) {
			t.Fatalf("warden not ready: %v\n%s", err, tail(h.warden.output(), 4000))
		}
		time.Sleep(50 * time.Millisecond)
	}
	return h
}

// cli runs a warden admin command beside the server.
func (h *harness) cli(t *testing.T, args ...string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, h.bin, append(args, "--admin-addr", h.admin, "--data-dir", h.dataDir)...)
	cmd.Env = wardenbin.CleanEnv()
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("warden %s: %v\n%s%s", strings.Join(args, " "), err, stdout.String(), stderr.String())
	}
	return stdout.String()
}

// handleFor signs sub in at the IdP through Warden's authorization server
// (the pre-registered client cli, PKCE, consent) and returns the access
// handle for server.
func (h *harness) handleFor(t *testing.T, sub, server string) string {
	t.Helper()
	h.idp.LoginAs(t, sub)
	verifier, challenge := oauthtest.PKCE()
	q := url.Values{"response_type": {"code"}, "client_id": {"cli"}, "redirect_uri": {clientCB}, "code_challenge": {challenge},
		"code_challenge_method": {"S256"}, "resource": {h.public + "/mcp/" + server}, "state": {"s1"}}
	back, err := oauthtest.NewBrowser().Authorize(h.public+"/oauth/authorize?"+q.Encode(), clientCB)
	if err != nil {
		t.Fatalf("authorize %s: %v\n%s", sub, err, h.idp.Stderr())
	}
	resp, err := http.PostForm(h.public+"/oauth/token", url.Values{"grant_type": {"authorization_code"}, "code": {back.Query().Get("code")},
		"redirect_uri": {clientCB}, "client_id": {"cli"}, "code_verifier": {verifier}})
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var tok struct {
		AccessToken string `json:"access_token"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&tok); err != nil || tok.AccessToken == "" {
		t.Fatalf("token for %s: %d %v", sub, resp.StatusCode, err)
	}
	return tok.AccessToken
}

// check sends Envoy's ext_authz Check for a tools/call over real gRPC and
// returns the HTTP status Envoy would answer with (200 for an allow).
func (h *harness) check(t *testing.T, token, server, tool string) int {
	t.Helper()
	conn, err := grpc.NewClient(h.authz, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	host := strings.TrimPrefix(h.public, "http://")
	body := fmt.Sprintf(`{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":%q,"arguments":{}}}`, tool)
	hdr := map[string]string{":method": "POST", ":path": "/mcp/" + server, ":authority": host, "content-type": "application/json",
		"authorization": "Bearer " + token, "x-request-id": fmt.Sprintf("console-%d", time.Now().UnixNano())}
	resp, err := authv3.NewAuthorizationClient(conn).Check(t.Context(), &authv3.CheckRequest{Attributes: &authv3.AttributeContext{
		Request:           &authv3.AttributeContext_Request{Http: &authv3.AttributeContext_HttpRequest{Method: "POST", Path: "/mcp/" + server, Host: host, Headers: hdr, RawBody: []byte(body)}},
		ContextExtensions: map[string]string{"server": server},
	}})
	if err != nil {
		t.Fatalf("Check: %v", err)
	}
	if resp.GetOkResponse() != nil {
		return http.StatusOK
	}
	return int(resp.GetDeniedResponse().GetStatus().GetCode())
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

// process is a child process whose output is kept for the test log; it
// must exit 0 on SIGTERM without a race report.
type process struct {
	name string
	cmd  *exec.Cmd
	mu   sync.Mutex
	out  bytes.Buffer
	done chan struct{}
	err  error
}

func startProcess(t *testing.T, name string, cmd *exec.Cmd) *process {
	p := &process{name: name, cmd: cmd, done: make(chan struct{})}
	cmd.Stdout, cmd.Stderr = p, p
	if err := cmd.Start(); err != nil {
		t.Fatalf("start %s: %v", name, err)
	}
	go func() { p.err = cmd.Wait(); close(p.done) }()
	t.Cleanup(func() {
		if !p.exited() {
			_ = p.cmd.Process.Signal(syscall.SIGTERM)
			select {
			case <-p.done:
			case <-time.After(20 * time.Second):
				_ = p.cmd.Process.Kill()
				<-p.done
			}
		}
		if p.err != nil || strings.Contains(p.output(), "WARNING: DATA RACE") {
			t.Errorf("%s did not shut down cleanly: %v", name, p.err)
		}
		if t.Failed() {
			t.Logf("---- %s output ----\n%s", name, tail(p.output(), 6000))
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

func tail(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return "…" + s[len(s)-n:]
}
