// Package idp starts a real OpenID Provider (the npm package oidc-provider,
// driven by idp.js) for Warden's tests, and locates the Node.js tools that
// test/package.json installs. Tests fail, never skip, when `npm ci` has not
// been run in test/.
package idp

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"
)

// TestDir is the absolute path of the repository's test/ directory.
func TestDir() string {
	_, file, _, _ := runtime.Caller(0)
	return filepath.Dir(filepath.Dir(file))
}

// NodeModules returns test/node_modules, failing the test with the
// install instruction when it is missing.
func NodeModules(t testing.TB) string {
	t.Helper()
	dir := filepath.Join(TestDir(), "node_modules")
	for _, p := range []string{"oidc-provider", "@modelcontextprotocol/sdk", "node/bin/node"} {
		if _, err := os.Stat(filepath.Join(dir, p)); err != nil {
			t.Fatalf("%s is missing: run npm ci in test/ (cd %s && npm ci)", filepath.Join(dir, p), TestDir())
		}
	}
	return dir
}

// Node returns the Node.js 22 binary installed by the npm package node@22
// (the MCP conformance suite needs Node 22; everything else runs on it too).
func Node(t testing.TB) string {
	t.Helper()
	bin := filepath.Join(NodeModules(t), "node", "bin", "node")
	out, err := exec.Command(bin, "--version").Output()
	if err != nil {
		t.Fatalf("%s does not run (%v): run npm ci in test/", bin, err)
	}
	if !strings.HasPrefix(string(out), "v22.") {
		t.Fatalf("%s is %s, want Node 22: run npm ci in test/", bin, strings.TrimSpace(string(out)))
	}
	return bin
}

// Client is a client registered at the IdP.
type Client struct {
	ID           string   `json:"client_id"`
	Secret       string   `json:"client_secret,omitempty"`
	RedirectURIs []string `json:"redirect_uris"`
	// BackchannelLogoutURI receives the provider's logout tokens, with sid
	// (backchannel_logout_session_required).
	BackchannelLogoutURI             string `json:"backchannel_logout_uri,omitempty"`
	BackchannelLogoutSessionRequired bool   `json:"backchannel_logout_session_required,omitempty"`
}

// Options configure the provider.
type Options struct {
	Clients []Client
	// AccessTokenTTL is the lifetime of the IdP's access tokens (default 1h).
	AccessTokenTTL time.Duration
	// TokenExchange accepts RFC 8693 token exchange (see idp.js); the
	// audiences in RefuseAudiences are refused with invalid_target.
	TokenExchange   bool
	RefuseAudiences []string
	// ActorJWKSURL and ActorIssuer: whose actor tokens the exchange
	// accepts (Warden's JWKS and issuer).
	ActorJWKSURL, ActorIssuer string
	// Resources are resource servers (RFC 8707 indicator to its scopes)
	// the refresh token can be spent for (see idp.js).
	Resources map[string][]string
}

// Provider is a running oidc-provider.
type Provider struct {
	Issuer string
	Port   int

	cmd      *exec.Cmd
	stdin    io.WriteCloser
	stopOnce sync.Once
	mu       sync.Mutex
	stderr   bytes.Buffer
}

// Users the provider knows: alice (groups engineering, mcp-users), bob
// (sales) and mallory (unverified email). alice signs in by default.
const (
	Alice   = "alice"
	Bob     = "bob"
	Mallory = "mallory"
)

// Start runs the provider on a free loopback port and stops it when the
// test ends.
func Start(t testing.TB, o Options) *Provider {
	t.Helper()
	node := Node(t)
	cfg := map[string]any{"port": 0, "clients": o.Clients}
	if o.AccessTokenTTL > 0 {
		cfg["access_token_ttl"] = int(o.AccessTokenTTL.Seconds())
	}
	if o.TokenExchange {
		cfg["token_exchange"] = true
		cfg["refuse_audiences"] = o.RefuseAudiences
		cfg["actor_jwks_url"], cfg["actor_issuer"] = o.ActorJWKSURL, o.ActorIssuer
	}
	if len(o.Resources) > 0 {
		cfg["resources"] = o.Resources
	}
	raw, _ := json.Marshal(cfg)
	p := &Provider{}
	p.cmd = exec.Command(node, filepath.Join(TestDir(), "idp", "idp.js"), string(raw))
	p.cmd.Dir = TestDir()
	p.cmd.Stderr = &lockedWriter{mu: &p.mu, w: &p.stderr}
	stdout, err := p.cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if p.stdin, err = p.cmd.StdinPipe(); err != nil {
		t.Fatal(err)
	}
	if err := p.cmd.Start(); err != nil {
		t.Fatalf("start oidc-provider: %v", err)
	}
	t.Cleanup(p.Stop)
	ready := make(chan error, 1)
	go func() {
		line, err := bufio.NewReader(stdout).ReadString('\n')
		if err != nil {
			ready <- fmt.Errorf("oidc-provider exited before it was ready: %v", err)
			return
		}
		var hello struct {
			Issuer string `json:"issuer"`
			Port   int    `json:"port"`
		}
		if err := json.Unmarshal([]byte(line), &hello); err != nil {
			ready <- fmt.Errorf("oidc-provider said %q: %v", line, err)
			return
		}
		p.Issuer, p.Port = hello.Issuer, hello.Port
		ready <- nil
		_, _ = io.Copy(io.Discard, stdout)
	}()
	select {
	case err := <-ready:
		if err != nil {
			t.Fatalf("%v\nstderr:\n%s", err, p.Stderr())
		}
	case <-time.After(30 * time.Second):
		t.Fatalf("oidc-provider did not start within 30s\nstderr:\n%s", p.Stderr())
	}
	return p
}

// Stop ends the provider before the test does: an IdP that is down.
func (p *Provider) Stop() { p.stopOnce.Do(p.stop) }

func (p *Provider) stop() {
	_ = p.stdin.Close()
	done := make(chan struct{})
	go func() { _ = p.cmd.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		_ = p.cmd.Process.Kill()
		<-done
	}
}

// Stderr returns what the provider printed on stderr so far.
func (p *Provider) Stderr() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.stderr.String()
}

// Counts returns the successful grants by grant_type the provider made so
// far, "exchange_refused" and "resource_refused".
func (p *Provider) Counts(t testing.TB) map[string]int {
	t.Helper()
	resp, err := http.Get(p.Issuer + "/__test/counts")
	if err != nil {
		t.Fatalf("idp counts: %v", err)
	}
	defer resp.Body.Close()
	out := map[string]int{}
	if err := json.NewDecoder(resp.Body).Decode(&out); err != nil {
		t.Fatalf("idp counts: %v", err)
	}
	return out
}

// LoginAs makes the next sign-in at the provider sign in sub.
func (p *Provider) LoginAs(t testing.TB, sub string) { p.control(t, "login-as", sub) }

// Disable removes the account: the provider then refuses its refresh
// tokens with invalid_grant, as an IdP does for a disabled user.
func (p *Provider) Disable(t testing.TB, sub string) { p.control(t, "disable", sub) }

// DenyConsent makes sub deny the next consent prompt: the provider
// redirects to the client with error=access_denied, as when a user
// presses Deny.
func (p *Provider) DenyConsent(t testing.TB, sub string) { p.control(t, "deny-consent", sub) }

// BackchannelLogout has the provider end sub's newest session: it signs a
// logout token and posts it to the client's backchannel_logout_uri, and
// fails the test unless the client answered 200.
func (p *Provider) BackchannelLogout(t testing.TB, sub string) {
	p.control(t, "backchannel-logout", sub)
}

func (p *Provider) control(t testing.TB, op, sub string) {
	t.Helper()
	body, _ := json.Marshal(map[string]string{"sub": sub})
	resp, err := http.Post(p.Issuer+"/__test/"+op, "application/json", bytes.NewReader(body))
	if err != nil {
		t.Fatalf("idp %s: %v", op, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusNoContent {
		msg, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
		t.Fatalf("idp %s: status %d: %s", op, resp.StatusCode, msg)
	}
}

type lockedWriter struct {
	mu *sync.Mutex
	w  io.Writer
}

func (l *lockedWriter) Write(b []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(b)
}
