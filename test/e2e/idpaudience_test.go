package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/coreos/go-oidc/v3/oidc"

	"github.com/warden-mcp/warden/oauth/oauthtest"
	"github.com/warden-mcp/warden/test/envoysim"
	"github.com/warden-mcp/warden/test/idp"
	"github.com/warden-mcp/warden/test/wardenbin"
)

// TestIdPCredentialForAnAudience runs the idp credential mode of a server
// that names an audience and scopes, end to end through envoysim and the
// warden binary against a real oidc-provider with resource indicators:
// Warden spends the user's sealed IdP refresh token for a token for that
// resource (RFC 8707) with the scope narrowed (RFC 6749 section 6), which
// the upstream verifies against the IdP's JWKS; the token is cached
// sealed per grant and server, 50 concurrent Checks with an expired one
// cause exactly one refresh at the IdP, and an audience the IdP refuses
// yields 401, audited, with nothing cached.
func TestIdPCredentialForAnAudience(t *testing.T) {
	bin := wardenbin.Path(t, raceEnabled)
	dataDir := filepath.Join(t.TempDir(), "data")
	proxyPort, httpPort, authzPort, adminPort, xdsPort := freePort(t), freePort(t), freePort(t), freePort(t), freePort(t)
	public := "http://127.0.0.1:" + proxyPort
	const ttl = 10 * time.Second
	ent := idp.Start(t, idp.Options{
		Clients:        []idp.Client{{ID: "warden", Secret: idpClientSecret, RedirectURIs: []string{public + "/oauth/callback"}}},
		AccessTokenTTL: ttl,
		Resources:      map[string][]string{"api://files": {"files.read", "files.write"}},
	})
	ctx := t.Context()
	entOIDC, err := oidc.NewProvider(ctx, ent.Issuer)
	if err != nil {
		t.Fatal(err)
	}
	// The files upstream accepts only a JWT of the IdP for its own
	// audience, and reports the scopes it carries.
	verifier := entOIDC.Verifier(&oidc.Config{ClientID: "api://files"})
	scopes := make(chan string, 100)
	filesLog, plainLog := &upstreamLog{}, &upstreamLog{}
	filesSrv := httptest.NewServer(fakeMCP(filesLog, func(ctx context.Context, a string) (string, error) {
		tok, err := bearerOf(a)
		if err != nil {
			return "", err
		}
		at, err := verifier.Verify(ctx, tok)
		if err != nil {
			return "", err
		}
		var claims struct {
			Scope string `json:"scope"`
		}
		if err := at.Claims(&claims); err != nil {
			return "", err
		}
		scopes <- claims.Scope
		return at.Subject, nil
	}))
	t.Cleanup(filesSrv.Close)
	plainSrv := httptest.NewServer(fakeMCP(plainLog, userinfoSubject(ent.Issuer, "idp")))
	t.Cleanup(plainSrv.Close)

	cfgPath := serveConfig{
		DataDir: dataDir, Public: public, PolicyDir: policyDir(t), Issuer: ent.Issuer, NodeID: nodeID,
		HTTP: httpPort, Authz: authzPort, Admin: adminPort, XDS: xdsPort,
		Scopes:    []string{"openid", "email", "profile", "groups", "files.read", "files.write"},
		OIDCExtra: []string{"refresh_margin: 1s"},
		Extra:     "credentials:\n  refresh_margin: 1s\n",
	}.write(t)
	cmd := exec.Command(bin, "serve", "-c", cfgPath)
	cmd.Env = append(wardenbin.CleanEnv(), "WARDEN_E2E_IDP_SECRET="+idpClientSecret)
	h := &harness{t: t, bin: bin, dataDir: dataDir, admin: "http://127.0.0.1:" + adminPort, public: public}
	h.warden = startProcess(t, "warden", cmd, true)
	h.waitReady()
	proxy, err := envoysim.Start(ctx, envoysim.Options{ADSAddress: "127.0.0.1:" + xdsPort, NodeID: nodeID, Listen: "127.0.0.1:" + proxyPort})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = proxy.Close() })
	waitRoute(t, proxy, "/oauth/token", "warden_http")

	h.cli(t, "servers", "add", "files", "--url", filesSrv.URL+"/mcp", "--credential", "idp", "--idp-audience", "api://files", "--idp-scope", "files.read")
	h.cli(t, "servers", "add", "plain", "--url", plainSrv.URL+"/mcp", "--credential", "idp")
	h.cli(t, "servers", "add", "nofiles", "--url", filesSrv.URL+"/mcp", "--credential", "idp", "--idp-audience", "api://unknown")
	for _, s := range []string{"files", "plain", "nofiles"} {
		waitRoute(t, proxy, "/mcp/"+s, "mcp_"+s)
	}
	handle, _ := signIn(t, public, oauthtest.NewBrowser(), []string{"files", "plain", "nofiles"})
	call := func(server string) (int, string) {
		t.Helper()
		return mcpCall(t, public, handle, server, "2025-11-25", "tools/call")
	}
	refreshes := func() int { return ent.Counts(t)["refresh_token"] }

	// The audience token: one refresh at the IdP, then the sealed cache.
	before := refreshes()
	for i := 0; i < 2; i++ {
		if status, body := call("files"); status != 200 || !strings.Contains(body, "sub="+idp.Alice) {
			t.Fatalf("files call %d: %d %s", i, status, body)
		}
		if got := <-scopes; got != "files.read" {
			t.Fatalf("the upstream's token carries scope %q, want only the narrowed files.read", got)
		}
	}
	if n := refreshes() - before; n != 1 {
		t.Fatalf("%d refreshes at the IdP for two calls, want 1 (cached sealed per grant and server)", n)
	}
	// Without an audience the sign-in token is attached as before; the
	// rotation of the refresh token did not break it.
	if status, body := call("plain"); status != 200 || !strings.Contains(body, "sub="+idp.Alice) {
		t.Fatalf("plain idp call: %d %s", status, body)
	}

	// 50 concurrent Checks with the cached token expired: one refresh.
	time.Sleep(ttl)
	before = refreshes()
	var wg sync.WaitGroup
	failed := make(chan string, 50)
	for i := 0; i < 50; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if s, body := mcpCall(t, public, handle, "files", "2025-11-25", "tools/call"); s != 200 || !strings.Contains(body, "sub="+idp.Alice) {
				failed <- fmt.Sprintf("%d %s", s, body)
			}
		}()
	}
	wg.Wait()
	close(failed)
	for f := range failed {
		t.Fatalf("a concurrent call failed: %s", f)
	}
	if n := refreshes() - before; n != 1 {
		t.Fatalf("%d refreshes at the IdP for 50 concurrent Checks, want exactly 1", n)
	}

	// An audience the IdP refuses: 401 for the client each time (nothing
	// is cached), and the grant still serves the other servers.
	refusedBefore := ent.Counts(t)["resource_refused"]
	for i := 0; i < 2; i++ {
		if status, body := call("nofiles"); status != 401 {
			t.Fatalf("refused audience, call %d: %d %s", i, status, body)
		}
	}
	if n := ent.Counts(t)["resource_refused"] - refusedBefore; n != 2 {
		t.Fatalf("the IdP refused %d audience refreshes, want 2 (a refusal is not cached)", n)
	}
	if status, body := call("files"); status != 200 {
		t.Fatalf("files after a refused audience: %d %s", status, body)
	}

	// What the upstream saw, and the audit trail.
	authzs, _ := filesLog.all()
	plainAuthzs, _ := plainLog.all()
	secrets := []string{handle, idpClientSecret}
	for _, a := range append(authzs, plainAuthzs...) {
		if strings.Contains(a, handle) {
			t.Fatal("an upstream received the client's handle")
		}
		if tok, ok := strings.CutPrefix(a, "Bearer "); ok && tok != "" {
			secrets = append(secrets, tok)
		}
	}
	h.warden.stop()
	trail, err := os.ReadFile(filepath.Join(dataDir, "audit.jsonl"))
	if err != nil {
		t.Fatal(err)
	}
	var refreshed, refused int
	for _, line := range bytes.Split(trail, []byte("\n")) {
		var ev struct {
			Type    string         `json:"type"`
			Server  string         `json:"server"`
			Reason  string         `json:"reason"`
			Details map[string]any `json:"details"`
		}
		if json.Unmarshal(line, &ev) != nil {
			continue
		}
		switch {
		case ev.Type == "credential_refreshed" && ev.Server == "files" && ev.Details["audience"] == "api://files":
			refreshed++
		case ev.Type == "credential_refresh_failed" && ev.Server == "nofiles" && strings.Contains(ev.Reason, "invalid_target"):
			refused++
		}
	}
	if refreshed != 2 || refused != 2 {
		t.Fatalf("audit: %d credential_refreshed for files (want 2), %d credential_refresh_failed for nofiles (want 2)", refreshed, refused)
	}
	logs := h.warden.output()
	for _, s := range secrets {
		if bytes.Contains(trail, []byte(s)) || strings.Contains(logs, s) {
			t.Errorf("a raw token (%d bytes) is in the audit trail or the log", len(s))
		}
	}
}
