package main

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/warden-mcp/warden/internal/config"
)

func freeAddr(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}

type running struct {
	cfg    config.Config
	cancel context.CancelFunc
	done   chan error
	stderr *lockedBuffer
}

// lockedBuffer is a bytes.Buffer safe for the log writers that may outlive
// serve (a store that could not close keeps logging).
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// startServe runs serve() in process on a fresh data dir and free ports,
// exactly as `warden serve` does after loading its config.
func startServe(t *testing.T, dataDir string, mod func(*config.Config)) *running {
	t.Helper()
	cfg := config.Default()
	cfg.DataDir = dataDir
	cfg.Listen.HTTP, cfg.Listen.Authz, cfg.Listen.Admin, cfg.Listen.XDS = freeAddr(t), freeAddr(t), freeAddr(t), freeAddr(t)
	cfg.Audit.Sink = "none"
	cfg.Log.Level = "warn"
	if mod != nil {
		mod(&cfg)
	}
	cfg.Keys = config.Keys{}
	if err := reload(&cfg); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	r := &running{cfg: cfg, cancel: cancel, done: make(chan error, 1), stderr: &lockedBuffer{}}
	go func() { r.done <- serve(ctx, cfg, cfgPathOf(cfg), &bytes.Buffer{}, r.stderr) }()
	// The deadline only bounds a broken start: under -race on a loaded
	// 2-core machine a start (policy compile, keys, bcrypt) took over 20s.
	deadline := time.Now().Add(90 * time.Second)
	for {
		resp, err := http.Get("http://" + cfg.Listen.Admin + "/readyz")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == 200 {
				break
			}
		}
		select {
		case err := <-r.done:
			t.Fatalf("serve exited: %v\n%s", err, r.stderr.String())
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("not ready: %v", err)
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Cleanup(func() { r.stop(t) })
	return r
}

func cfgPathOf(c config.Config) string { return filepath.Join(c.DataDir, "cfg.yaml") }

// reload fills the derived paths the way config.Load does.
func reload(c *config.Config) error {
	p := filepath.Join(c.DataDir, "cfg.yaml")
	_ = os.MkdirAll(c.DataDir, 0o700)
	raw, _ := json.Marshal(c)
	if err := os.WriteFile(p, raw, 0o600); err != nil {
		return err
	}
	loaded, err := config.Load(p)
	if err != nil {
		return err
	}
	*c = loaded
	return nil
}

func (r *running) stop(t *testing.T) {
	r.cancel()
	select {
	case err := <-r.done:
		if err != nil {
			t.Errorf("serve returned %v", err)
		}
	case <-time.After(30 * time.Second):
		t.Error("serve did not stop")
	}
	r.done <- nil // make a second stop return at once
}

// cli runs a warden command against r's admin API and returns stdout.
func (r *running) cli(t *testing.T, args ...string) (string, error) {
	t.Helper()
	cmd := newRootCmd()
	var out, errOut bytes.Buffer
	cmd.SetOut(&out)
	cmd.SetErr(&errOut)
	all := append(args, "--admin-addr", "http://"+r.cfg.Listen.Admin, "--data-dir", r.cfg.DataDir)
	if (args[0] == "policy" && args[1] != "replay") || args[0] == "envoy" {
		all = args
	}
	cmd.SetArgs(all)
	err := cmd.ExecuteContext(context.Background())
	return out.String() + errOut.String(), err
}

func check(t *testing.T, addr, token, server, body string) *authv3.CheckResponse {
	t.Helper()
	resp, err := tryCheck(addr, token, server, body)
	if err != nil {
		t.Fatal(err)
	}
	return resp
}

// tryCheck is check for goroutines other than the test's, which must not
// call t.Fatal.
func tryCheck(addr, token, server, body string) (*authv3.CheckResponse, error) {
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		return nil, err
	}
	defer conn.Close()
	// Host is the default public_url's, as Envoy forwards it.
	h := map[string]string{":method": "POST", ":path": "/mcp/" + server, ":authority": "localhost:10000", "content-type": "application/json"}
	if token != "" {
		h["authorization"] = "Bearer " + token
	}
	resp, err := authv3.NewAuthorizationClient(conn).Check(context.Background(), &authv3.CheckRequest{Attributes: &authv3.AttributeContext{
		Request:           &authv3.AttributeContext_Request{Http: &authv3.AttributeContext_HttpRequest{Method: "POST", Path: "/mcp/" + server, Host: "localhost:10000", Headers: h, RawBody: []byte(body)}},
		ContextExtensions: map[string]string{"server": server},
	}})
	return resp, err
}

const listTools = `{"jsonrpc":"2.0","id":1,"method":"tools/list"}`

func TestServeOnDefaultsAndCLI(t *testing.T) {
	dir := t.TempDir()
	r := startServe(t, dir, nil)

	// First start generated every key file, private to the owner.
	for _, f := range []string{"sealing-keys.json", "signing-keys.jwks", "admin-token", "static-admin.json"} {
		st, err := os.Stat(filepath.Join(dir, f))
		if err != nil {
			t.Fatalf("%s: %v", f, err)
		}
		if st.Mode().Perm() != 0o600 {
			t.Errorf("%s mode %v, want 0600", f, st.Mode().Perm())
		}
	}
	// Issue 13: stderr carries the JSON log and is not a terminal here,
	// so the one-time password goes to a 0600 file, never to the log.
	boot, err := os.ReadFile(filepath.Join(dir, "static-admin-password"))
	if st, serr := os.Stat(filepath.Join(dir, "static-admin-password")); err != nil || serr != nil || st.Mode().Perm() != 0o600 || !strings.Contains(string(boot), "NOT FOR PRODUCTION") {
		t.Fatalf("password file: %v %v %s", err, serr, boot)
	}
	if strings.Contains(r.stderr.String(), "NOT FOR PRODUCTION") || strings.Contains(r.stderr.String(), "password: ") ||
		!strings.Contains(r.stderr.String(), "static-admin-password") {
		t.Errorf("the log stream shows the password or does not say where it is:\n%s", r.stderr.String())
	}

	out, err := r.cli(t, "servers", "add", "bi", "--url", "http://127.0.0.1:3001/mcp", "--scope", "bi.read")
	if err != nil || !strings.Contains(out, "server bi") {
		t.Fatalf("servers add: %v %s", err, out)
	}
	if out, err := r.cli(t, "servers", "add", "bi", "--url", "http://x"); err == nil || !strings.Contains(err.Error(), "already exists") {
		t.Fatalf("duplicate add: %v %s", err, out)
	}
	if _, err := r.cli(t, "servers", "add", "x", "--url", "http://x", "--credential", "magic"); err == nil || !strings.Contains(err.Error(), "unknown mode") {
		t.Fatalf("bad credential: %v", err)
	}
	out, _ = r.cli(t, "servers", "list")
	if !strings.Contains(out, "bi") || !strings.Contains(out, "bi.read") {
		t.Fatalf("servers list:\n%s", out)
	}
	out, err = r.cli(t, "tokens", "create", "--subject", "reporting-agent", "--server", "bi", "--scope", "bi.read", "--ttl", "1h", "-o", "json")
	if err != nil {
		t.Fatal(err)
	}
	var tok struct {
		AccessToken string `json:"access_token"`
		GrantID     string `json:"grant_id"`
	}
	if err := json.Unmarshal([]byte(out), &tok); err != nil || tok.AccessToken == "" {
		t.Fatalf("tokens create: %v %s", err, out)
	}

	if resp := check(t, r.cfg.Listen.Authz, tok.AccessToken, "bi", listTools); resp.GetOkResponse() == nil {
		t.Fatalf("minted token denied: %v", resp.GetDeniedResponse())
	}
	if out, err := r.cli(t, "revoke", "--user", "reporting-agent", "--reason", "rotated"); err != nil || !strings.Contains(out, "revoked 1 grant") {
		t.Fatalf("revoke: %v %s", err, out)
	}
	if d := check(t, r.cfg.Listen.Authz, tok.AccessToken, "bi", listTools).GetDeniedResponse(); d.GetStatus().GetCode() != 401 {
		t.Fatalf("revoked token: %v", d)
	}
	// Decisions are audited asynchronously; give the writer a moment.
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
		if out, _ = r.cli(t, "audit", "tail", "-n", "20"); strings.Contains(out, `decision="deny"`) {
			break
		}
	}
	for _, want := range []string{"server_added", "token_issued", "grant_revoked", `decision="allow"`, `decision="deny"`} {
		if !strings.Contains(out, want) {
			t.Errorf("audit tail lacks %s:\n%s", want, out)
		}
	}
	if out, err := r.cli(t, "audit", "verify"); err != nil || !strings.Contains(out, "intact") {
		t.Fatalf("audit verify: %v %s", err, out)
	}
	// Issue 13: removing a server revokes its grants like revoke
	// --server, so adding it again under the same name brings no old
	// handle back.
	out, err = r.cli(t, "tokens", "create", "--subject", "second-agent", "--server", "bi", "-o", "json")
	if err != nil {
		t.Fatal(err)
	}
	var second struct {
		AccessToken string `json:"access_token"`
		GrantID     string `json:"grant_id"`
	}
	_ = json.Unmarshal([]byte(out), &second)
	if out, err := r.cli(t, "servers", "remove", "bi"); err != nil || !strings.Contains(out, "removed") {
		t.Fatalf("remove: %v %s", err, out)
	}
	if d := check(t, r.cfg.Listen.Authz, tok.AccessToken, "bi", listTools).GetDeniedResponse(); d.GetStatus().GetCode() != 404 {
		t.Fatalf("removed server: %v", d)
	}
	if out, err := r.cli(t, "servers", "add", "bi", "--url", "http://127.0.0.1:3002/mcp"); err != nil {
		t.Fatalf("re-add: %v %s", err, out)
	}
	if d := check(t, r.cfg.Listen.Authz, second.AccessToken, "bi", listTools).GetDeniedResponse(); d.GetStatus().GetCode() != 401 {
		t.Fatalf("a handle of the removed server works on the server added again under its name: %v", d)
	}
	if out, _ := r.cli(t, "grants", "list", "--user", "second-agent", "--all"); !strings.Contains(out, "server removed") {
		t.Fatalf("grant not revoked by the removal:\n%s", out)
	}
	// A wrong admin token is refused.
	cmd := newRootCmd()
	cmd.SetArgs([]string{"servers", "list", "--admin-addr", "http://" + r.cfg.Listen.Admin, "--admin-token", "wdn_admin_nope"})
	cmd.SetOut(&bytes.Buffer{})
	if err := cmd.Execute(); err == nil || !strings.Contains(err.Error(), "401") {
		t.Fatalf("wrong admin token: %v", err)
	}

	// Restart on the same data dir: the same keys and admin token, the
	// audit chain continues, no new password banner.
	kid1, _ := os.ReadFile(filepath.Join(dir, "signing-keys.jwks"))
	tok1, _ := os.ReadFile(filepath.Join(dir, "admin-token"))
	r.stop(t)
	r2 := startServe(t, dir, func(c *config.Config) { c.Listen = r.cfg.Listen })
	kid2, _ := os.ReadFile(filepath.Join(dir, "signing-keys.jwks"))
	tok2, _ := os.ReadFile(filepath.Join(dir, "admin-token"))
	if !bytes.Equal(kid1, kid2) || !bytes.Equal(tok1, tok2) {
		t.Fatal("keys or admin token regenerated on restart")
	}
	if strings.Contains(r2.stderr.String(), "NOT FOR PRODUCTION") {
		t.Fatal("password banner printed again on restart")
	}
	if out, err := r2.cli(t, "audit", "verify"); err != nil || !strings.Contains(out, "intact") {
		t.Fatalf("audit verify after restart: %v %s", err, out)
	}
}

// SIGTERM (here: the serve context ending) drains in-flight checks: a
// Check that is being evaluated when shutdown starts still gets its answer.
func TestShutdownDrainsInFlightChecks(t *testing.T) {
	dir := t.TempDir()
	pdir := filepath.Join(dir, "policy")
	_ = os.MkdirAll(pdir, 0o755)
	// A deliberately slow policy keeps the Check in flight while shutdown
	// begins. time.now_ns makes it non-deterministic, so its decision is
	// not memoized and every Check evaluates it.
	slow := "package warden.authz\n\nimport rego.v1\n\nallow if {\n\ttime.now_ns() > 0\n\tcount([x | some x in numbers.range(1, 300000)]) > 0\n}\n"
	_ = os.WriteFile(filepath.Join(pdir, "slow.rego"), []byte(slow), 0o644)
	r := startServe(t, dir, func(c *config.Config) {
		c.Policy.Dir = pdir
		c.Authz.Timeout = config.Duration(60 * time.Second)
	})
	_, _ = r.cli(t, "servers", "add", "bi", "--url", "http://127.0.0.1:3001/mcp")
	out, _ := r.cli(t, "tokens", "create", "--subject", "a", "--server", "bi", "-o", "json")
	var tok struct {
		AccessToken string `json:"access_token"`
	}
	_ = json.Unmarshal([]byte(out), &tok)

	type result struct {
		resp *authv3.CheckResponse
		err  error
		at   time.Time
	}
	// How long one evaluation takes on this machine now (the race
	// detector and other load change it tenfold): shutdown starts a third
	// of the way in, and the drain timeout (15s) must cover the rest.
	t0 := time.Now()
	if resp := check(t, r.cfg.Listen.Authz, tok.AccessToken, "bi", listTools); resp.GetOkResponse() == nil {
		t.Fatalf("slow policy denied: %v", resp)
	}
	evaluation := time.Since(t0)
	got := make(chan result, 1)
	started := time.Now()
	go func() {
		resp, err := tryCheck(r.cfg.Listen.Authz, tok.AccessToken, "bi", listTools)
		got <- result{resp, err, time.Now()}
	}()
	time.Sleep(evaluation / 3)
	shutdownAt := time.Now()
	r.cancel()
	res := <-got
	if res.err != nil {
		t.Fatalf("in-flight check failed during shutdown after %s: %v (a policy slower than the drain timeout is cut off)", res.at.Sub(started), res.err)
	}
	if res.resp.GetOkResponse() == nil {
		t.Fatalf("in-flight check not answered with its decision: %v", res.resp)
	}
	if !res.at.After(shutdownAt) {
		t.Fatalf("the check finished %s after it started (one evaluation took %s), before shutdown began: the test proves nothing", res.at.Sub(started), evaluation)
	}
	// New connections are refused once serve has returned.
	if err := <-r.done; err != nil {
		t.Fatal(err)
	}
	r.done <- nil
	conn, err := net.DialTimeout("tcp", r.cfg.Listen.Authz, time.Second)
	if err == nil {
		conn.Close()
		t.Fatal("ext_authz still accepting after shutdown")
	}
	t.Logf("the in-flight check was answered %s after shutdown began", res.at.Sub(shutdownAt))
}

func TestPolicyTestCommand(t *testing.T) {
	cmd := newRootCmd()
	var out bytes.Buffer
	cmd.SetOut(&out)
	cmd.SetArgs([]string{"policy", "test", "../../examples/policies/sql-guard"})
	if err := cmd.Execute(); err != nil || !strings.Contains(out.String(), "PASS") {
		t.Fatalf("policy test: %v\n%s", err, out.String())
	}
	dir := t.TempDir()
	_ = os.WriteFile(filepath.Join(dir, "p.rego"), []byte("package warden.authz\n\nimport rego.v1\n\nallow := true\n"), 0o644)
	_ = os.WriteFile(filepath.Join(dir, "p_test.rego"), []byte("package warden.authz_test\n\nimport rego.v1\n\ntest_fails if data.warden.authz.allow == false\n"), 0o644)
	cmd = newRootCmd()
	cmd.SetOut(&bytes.Buffer{})
	cmd.SetArgs([]string{"policy", "test", dir})
	if err := cmd.Execute(); err == nil || !strings.Contains(err.Error(), "1 policy test(s) failed") {
		t.Fatalf("failing policy test not reported: %v", err)
	}
}

func TestConfigServersReconciledLive(t *testing.T) {
	dir := t.TempDir()
	r := startServe(t, dir, func(c *config.Config) {
		c.Servers = []config.Server{{Name: "bi", URL: "http://bi/mcp"}}
	})
	if out, _ := r.cli(t, "servers", "list"); !strings.Contains(out, "bi") || !strings.Contains(out, "config") {
		t.Fatalf("declared server not registered at start:\n%s", out)
	}
	next := r.cfg
	next.Servers = []config.Server{{Name: "hr", URL: "http://hr/mcp", Scopes: []string{"hr.read"}}}
	raw, _ := json.Marshal(next)
	tmp := cfgPathOf(r.cfg) + ".tmp"
	_ = os.WriteFile(tmp, raw, 0o600)
	if err := os.Rename(tmp, cfgPathOf(r.cfg)); err != nil {
		t.Fatal(err)
	}
	var out string
	for deadline := time.Now().Add(15 * time.Second); time.Now().Before(deadline); time.Sleep(100 * time.Millisecond) {
		out, _ = r.cli(t, "servers", "list")
		if strings.Contains(out, "hr.read") && !strings.Contains(out, "http://bi/mcp") {
			return
		}
	}
	t.Fatalf("file change not reconciled:\n%s", out)
}

func TestKeysRotate(t *testing.T) {
	dir := t.TempDir()
	r := startServe(t, dir, nil)
	jwks := func() int {
		resp, err := http.Get("http://" + r.cfg.Listen.HTTP + "/oauth/jwks")
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var doc struct{ Keys []json.RawMessage }
		_ = json.NewDecoder(resp.Body).Decode(&doc)
		return len(doc.Keys)
	}
	if n := jwks(); n != 1 {
		t.Fatalf("%d published keys at start", n)
	}
	out, err := r.cli(t, "keys", "rotate")
	if err != nil || !strings.Contains(out, "signing key rotated") || !strings.Contains(out, "sealing key rotated") {
		t.Fatalf("keys rotate: %v %s", err, out)
	}
	if n := jwks(); n != 2 {
		t.Fatalf("%d published keys after rotation, want old and new", n)
	}
	raw, _ := os.ReadFile(filepath.Join(dir, "sealing-keys.json"))
	var ring struct{ Keys map[string]string }
	_ = json.Unmarshal(raw, &ring)
	if len(ring.Keys) != 2 {
		t.Fatalf("sealing keyring has %d keys", len(ring.Keys))
	}
	// A static secret sealed after rotation still opens (the server works).
	if _, err := r.cli(t, "servers", "add", "hr", "--url", "http://hr/mcp", "--credential", "static", "--static-secret-env", "HOME"); err != nil {
		t.Fatal(err)
	}
	out, _ = r.cli(t, "tokens", "create", "--subject", "a", "--server", "hr", "-o", "json")
	var tok struct {
		AccessToken string `json:"access_token"`
	}
	_ = json.Unmarshal([]byte(out), &tok)
	if resp := check(t, r.cfg.Listen.Authz, tok.AccessToken, "hr", listTools); resp.GetOkResponse() == nil {
		t.Fatalf("static credential after sealing rotation: %v", resp.GetDeniedResponse())
	}
}

func TestPolicyStatusOnAdminAPI(t *testing.T) {
	r := startServe(t, t.TempDir(), nil)
	req, _ := http.NewRequest("GET", "http://"+r.cfg.Listen.Admin+"/api/v1/policy", nil)
	tok, _ := os.ReadFile(filepath.Join(r.cfg.DataDir, "admin-token"))
	req.Header.Set("Authorization", "Bearer "+strings.TrimSpace(string(tok)))
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var st struct {
		Revision string `json:"revision"`
		Memoized bool   `json:"memoized"`
	}
	_ = json.NewDecoder(resp.Body).Decode(&st)
	if resp.StatusCode != 200 || st.Revision == "" || !st.Memoized {
		t.Fatalf("policy status %d %+v", resp.StatusCode, st)
	}
}

// A broken policy file never replaces the last good one; Warden stays ready
// and says so in /readyz.
func TestBrokenPolicyReloadKeepsServing(t *testing.T) {
	dir := t.TempDir()
	pdir := filepath.Join(dir, "policy")
	_ = os.MkdirAll(pdir, 0o755)
	_ = os.WriteFile(filepath.Join(pdir, "p.rego"), []byte("package warden.authz\n\nimport rego.v1\n\nallow := true\n"), 0o644)
	r := startServe(t, dir, func(c *config.Config) { c.Policy.Dir = pdir })
	_ = os.WriteFile(filepath.Join(pdir, "p.rego"), []byte("package warden.authz\n\nallow := \n"), 0o644)
	var body map[string]any
	for deadline := time.Now().Add(15 * time.Second); time.Now().Before(deadline); time.Sleep(100 * time.Millisecond) {
		resp, err := http.Get("http://" + r.cfg.Listen.Admin + "/readyz")
		if err != nil {
			t.Fatal(err)
		}
		body = nil
		_ = json.NewDecoder(resp.Body).Decode(&body)
		resp.Body.Close()
		if w, _ := body["warnings"].(map[string]any); w["policy"] != nil {
			if resp.StatusCode != 200 || body["ready"] != true {
				t.Fatalf("a failed reload made Warden unready: %d %v", resp.StatusCode, body)
			}
			if !strings.Contains(w["policy"].(string), "p.rego") {
				t.Fatalf("warning does not name the file: %v", w["policy"])
			}
			return
		}
	}
	t.Fatalf("failed reload not reported in /readyz: %v", body)
}

// Issue 13: with a store that cannot write (its directory removed under
// load), Warden denies, stays up, reports not ready, and on SIGTERM exits
// within the drain timeout with an error and a clear log line, instead of
// hanging while Badger retries its flush.
func TestShutdownIsBoundedWhenTheStoreCannotWrite(t *testing.T) {
	dir := t.TempDir()
	r := startServe(t, dir, nil)
	if _, err := r.cli(t, "servers", "add", "bi", "--url", "http://127.0.0.1:3001/mcp"); err != nil {
		t.Fatal(err)
	}
	out, err := r.cli(t, "tokens", "create", "--subject", "agent", "--server", "bi", "--ttl", "1h", "-o", "json")
	if err != nil {
		t.Fatal(err)
	}
	var tok struct {
		AccessToken string `json:"access_token"`
	}
	if err := json.Unmarshal([]byte(out), &tok); err != nil || tok.AccessToken == "" {
		t.Fatalf("tokens create: %v %s", err, out)
	}
	if resp := check(t, r.cfg.Listen.Authz, tok.AccessToken, "bi", listTools); resp.GetOkResponse() == nil {
		t.Fatalf("allowed before the failure: %v", resp.GetDeniedResponse())
	}
	if err := os.RemoveAll(filepath.Join(dir, "store")); err != nil {
		t.Fatal(err)
	}
	// Denials of an unknown server are audited with its name: large names
	// fill Badger's memtable, which then cannot be replaced.
	name := strings.Repeat("n", 15<<10)
	failed := false
	for i := 0; i < 2000 && !failed; i++ {
		resp := check(t, r.cfg.Listen.Authz, "", name, listTools)
		if resp.GetOkResponse() != nil {
			t.Fatal("an unknown server was allowed")
		}
		if i%10 == 9 {
			res, err := http.Get("http://" + r.cfg.Listen.Admin + "/readyz")
			if err != nil {
				t.Fatal(err)
			}
			body, _ := io.ReadAll(res.Body)
			res.Body.Close()
			failed = res.StatusCode == http.StatusServiceUnavailable && strings.Contains(string(body), "store")
		}
	}
	if !failed {
		t.Fatal("the store never reported its write failure on /readyz")
	}
	// Still answering, and failing closed.
	if d := check(t, r.cfg.Listen.Authz, tok.AccessToken, "bi", listTools).GetDeniedResponse(); d.GetStatus().GetCode() != 503 {
		t.Errorf("check on a failed store: %v", d)
	}

	start := time.Now()
	r.cancel()
	select {
	case err := <-r.done:
		if err == nil {
			t.Error("serve exited cleanly although its store could not flush")
		}
		if d := time.Since(start); d > drainTimeout+2*time.Second {
			t.Errorf("shutdown took %s, drain timeout is %s", d, drainTimeout)
		}
	case <-time.After(drainTimeout + 10*time.Second):
		t.Fatal("serve did not exit")
	}
	r.done <- nil // the cleanup's stop returns at once
	if !strings.Contains(r.stderr.String(), "store not closed cleanly") {
		t.Errorf("no clear log line about the store:\n%s", tail(r.stderr.String(), 2000))
	}
}

func tail(s string, n int) string {
	if len(s) > n {
		return s[len(s)-n:]
	}
	return s
}
