package e2e

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"html"
	"io"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/coreos/go-oidc/v3/oidc"

	"github.com/warden-mcp/warden/internal/store/postgres/pgtest"
	"github.com/warden-mcp/warden/oauth/oauthtest"
	"github.com/warden-mcp/warden/test/envoysim"
	"github.com/warden-mcp/warden/test/idp"
)

// upstreamLog records what reached a fake upstream MCP server.
type upstreamLog struct {
	mu     sync.Mutex
	authzs []string
	subs   []string
}

func (l *upstreamLog) add(authz, sub string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.authzs = append(l.authzs, authz)
	if sub != "" {
		l.subs = append(l.subs, sub)
	}
}

func (l *upstreamLog) all() ([]string, []string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return append([]string(nil), l.authzs...), append([]string(nil), l.subs...)
}

// fakeMCP is a minimal MCP endpoint: it answers tools/list without a
// credential and tools/call only when verify accepts the Authorization it
// got, reporting the verified subject in the result.
func fakeMCP(log *upstreamLog, verify func(ctx context.Context, authz string) (string, error), header ...string) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var req struct {
			ID     json.RawMessage `json:"id"`
			Method string          `json:"method"`
		}
		_ = json.NewDecoder(r.Body).Decode(&req)
		authz := r.Header.Get("Authorization")
		if len(header) > 0 {
			// An API-key upstream: the key's header, and Authorization
			// must be gone.
			if authz != "" {
				w.WriteHeader(http.StatusBadRequest)
				_, _ = fmt.Fprint(w, "the client's Authorization reached the upstream")
				return
			}
			authz = r.Header.Get(header[0])
		}
		result := map[string]any{"resultType": "complete"}
		switch req.Method {
		case "tools/list":
			log.add(authz, "")
			result["tools"] = []any{map[string]any{"name": "whoami", "inputSchema": map[string]any{"type": "object"}}}
		default:
			sub, err := verify(r.Context(), authz)
			log.add(authz, sub)
			if err != nil {
				w.WriteHeader(http.StatusUnauthorized)
				_, _ = fmt.Fprintf(w, "upstream refused the credential: %v", err)
				return
			}
			result["content"] = []any{map[string]any{"type": "text", "text": "sub=" + sub}}
		}
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(map[string]any{"jsonrpc": "2.0", "id": req.ID, "result": result})
	})
}

// TestUpstreamCredentials runs the three brokered credential modes end to
// end through envoysim and the warden binary: exchange (RFC 8693 at a real
// oidc-provider), provider (a second oidc-provider as the third party,
// connected through the URL elicitation and the static callback) and idp
// (the user's IdP token, refreshed single flight), with the negative cases
// and the no-secret-in-logs check.
func TestUpstreamCredentials(t *testing.T) { runUpstreamCredentials(t, "") }

// TestUpstreamCredentialsPostgres runs the same on PostgreSQL, whose store
// offers Lock: the single flights go through its advisory locks.
func TestUpstreamCredentialsPostgres(t *testing.T) {
	dsn, _ := pgtest.Schema(t)
	runUpstreamCredentials(t, fmt.Sprintf("store:\n  backend: postgres\n  postgres:\n    dsn: %q\n", dsn))
}

func runUpstreamCredentials(t *testing.T, storeYAML string) {
	bin := wardenBinary(t)
	dataDir := filepath.Join(t.TempDir(), "data")
	proxyPort, httpPort, authzPort, adminPort, xdsPort := freePort(t), freePort(t), freePort(t), freePort(t), freePort(t)
	public := "http://127.0.0.1:" + proxyPort
	adminURL := "http://127.0.0.1:" + adminPort
	const ghSecret = "warden-at-the-provider-0123456789"

	// The enterprise IdP: short-lived access tokens so that the idp mode
	// must refresh them; token exchange through registerGrantType.
	const idpTTL = 10 * time.Second
	ent := idp.Start(t, idp.Options{
		Clients:        []idp.Client{{ID: "warden", Secret: idpClientSecret, RedirectURIs: []string{public + "/oauth/callback"}}},
		AccessTokenTTL: idpTTL, TokenExchange: true, RefuseAudiences: []string{"api://forbidden"},
		ActorJWKSURL: public + "/oauth/jwks", ActorIssuer: public,
	})
	// The third-party provider: no DCR for Warden, one pre-registered
	// client whose only redirect URI is Warden's static callback.
	gh := idp.Start(t, idp.Options{Clients: []idp.Client{{ID: "warden-gh", Secret: ghSecret, RedirectURIs: []string{public + "/oauth/providers/gh/callback"}}},
		AccessTokenTTL: idpTTL})

	// Upstreams. exch verifies the exchanged JWT against the IdP's JWKS
	// and checks aud; prov verifies the provider's token at the
	// provider's userinfo endpoint; idps records the IdP token.
	ctx := t.Context()
	entOIDC, err := oidc.NewProvider(ctx, ent.Issuer)
	if err != nil {
		t.Fatal(err)
	}
	exchVerifier := entOIDC.Verifier(&oidc.Config{ClientID: "api://exch"})
	exchLog, provLog, idpLog := &upstreamLog{}, &upstreamLog{}, &upstreamLog{}
	exchActors := make(chan string, 10)
	exchSrv := httptest.NewServer(fakeMCP(exchLog, func(ctx context.Context, a string) (string, error) {
		tok, err := bearerOf(a)
		if err != nil {
			return "", err
		}
		idt, err := exchVerifier.Verify(ctx, tok)
		if err != nil {
			return "", err
		}
		var claims struct {
			Act struct {
				Sub string `json:"sub"`
			} `json:"act"`
		}
		if err := idt.Claims(&claims); err != nil || claims.Act.Sub == "" {
			return "", fmt.Errorf("exchanged token names no actor")
		}
		exchActors <- claims.Act.Sub
		return idt.Subject, nil
	}))
	t.Cleanup(exchSrv.Close)
	provSrv := httptest.NewServer(fakeMCP(provLog, userinfoSubject(gh.Issuer, "provider")))
	t.Cleanup(provSrv.Close)
	idpSrv := httptest.NewServer(fakeMCP(idpLog, userinfoSubject(ent.Issuer, "idp")))
	t.Cleanup(idpSrv.Close)
	const pastedKey = "user-pasted-saas-key-0123456789"
	saasLog := &upstreamLog{}
	saasSrv := httptest.NewServer(fakeMCP(saasLog, func(_ context.Context, key string) (string, error) {
		if key != pastedKey {
			return "", fmt.Errorf("wrong api key")
		}
		return "key-holder", nil
	}, "X-Api-Key"))
	t.Cleanup(saasSrv.Close)

	cfgPath := filepath.Join(t.TempDir(), "warden.yaml")
	cfg := fmt.Sprintf(`data_dir: %[1]s
public_url: %[2]s
listen:
  http: 127.0.0.1:%[3]s
  authz: 127.0.0.1:%[4]s
  admin: 127.0.0.1:%[5]s
  xds: 127.0.0.1:%[6]s
log:
  level: debug
  format: json
policy:
  dir: %[7]s
  watch: false
audit:
  sink: %[1]s/audit.jsonl
oauth:
  access_token_ttl: 10m
  connector:
    type: oidc
    oidc:
      issuer: %[8]s
      client_id: warden
      client_secret: ${WARDEN_E2E_IDP_SECRET}
      scopes: [openid, email, profile, groups]
      refresh_margin: 1s
credentials:
  refresh_margin: 1s
  connect_ttl: 3s
  exchange:
    token_url: %[8]s/token
    actor_token: true
xds:
  node_ids: [%[9]s]
  warden_authz_address: 127.0.0.1:%[4]s
  warden_http_address: 127.0.0.1:%[3]s
%[10]s`, dataDir, public, httpPort, authzPort, adminPort, xdsPort, policyDir(t), ent.Issuer, nodeID, storeYAML)
	if err := os.WriteFile(cfgPath, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bin, "serve", "-c", cfgPath)
	cmd.Env = append(cleanEnv(), "WARDEN_E2E_IDP_SECRET="+idpClientSecret, "WARDEN_E2E_GH_SECRET="+ghSecret)
	h := &harness{t: t, bin: bin, dataDir: dataDir, admin: adminURL, public: public}
	h.warden = startProcess(t, "warden", cmd, true)
	h.waitReady()
	proxy, err := envoysim.Start(ctx, envoysim.Options{ADSAddress: "127.0.0.1:" + xdsPort, NodeID: nodeID, Listen: "127.0.0.1:" + proxyPort})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = proxy.Close() })
	waitRoute(t, proxy, "/oauth/token", "warden_http")

	// The operator: one provider (endpoints discovered from its issuer,
	// the secret from the environment) and four servers.
	out := h.cliEnv(t, []string{"WARDEN_E2E_GH_SECRET=" + ghSecret}, "providers", "add", "gh", "--issuer", gh.Issuer, "--client-id", "warden-gh",
		"--client-secret-env", "WARDEN_E2E_GH_SECRET", "--scope", "openid")
	if !strings.Contains(out, "register this redirect URI at the provider: "+public+"/oauth/providers/gh/callback") {
		t.Fatalf("providers add said %q", out)
	}
	if out := h.cli(t, "providers", "list"); !strings.Contains(out, "gh") || strings.Contains(out, ghSecret) {
		t.Fatalf("providers list:\n%s", out)
	}
	h.cli(t, "servers", "add", "exch", "--url", exchSrv.URL+"/mcp", "--credential", "exchange", "--idp-audience", "api://exch", "--idp-scope", "files.read")
	h.cli(t, "servers", "add", "denied", "--url", exchSrv.URL+"/mcp", "--credential", "exchange", "--idp-audience", "api://forbidden")
	h.cli(t, "servers", "add", "prov", "--url", provSrv.URL+"/mcp", "--credential", "provider", "--provider", "gh")
	h.cli(t, "servers", "add", "idps", "--url", idpSrv.URL+"/mcp", "--credential", "idp")
	h.cli(t, "providers", "add", "keys", "--kind", "api_key", "--header", "X-Api-Key")
	h.cli(t, "servers", "add", "saas", "--url", saasSrv.URL+"/mcp", "--credential", "provider", "--provider", "keys")
	for _, s := range []string{"exch", "denied", "prov", "idps", "saas"} {
		waitRoute(t, proxy, "/mcp/"+s, "mcp_"+s)
	}

	// The MCP client signs alice in (DCR, PKCE, one grant for the four
	// servers) through the proxy.
	browser := oauthtest.NewBrowser()
	handle, clientID := signIn(t, public, browser, []string{"exch", "denied", "prov", "idps", "saas"})

	call := func(server, version, method string) (int, string) {
		t.Helper()
		return mcpCall(t, public, handle, server, version, method)
	}

	// ---- exchange ----
	status, body := call("exch", "2025-11-25", "tools/call")
	if status != 200 || !strings.Contains(body, `sub=`+idp.Alice) {
		t.Fatalf("exchange call: %d %s", status, body)
	}
	if status, body := call("exch", "2026-07-28", "tools/call"); status != 200 || !strings.Contains(body, `sub=`+idp.Alice) {
		t.Fatalf("exchange call (2026-07-28): %d %s", status, body)
	}
	if n := ent.Counts(t)["urn:ietf:params:oauth:grant-type:token-exchange"]; n != 1 {
		t.Fatalf("%d exchanges at the IdP for two calls, want 1 (cached sealed per grant and server)", n)
	}
	// The IdP verified Warden's actor token and named the MCP client.
	if actor := <-exchActors; actor != clientID {
		t.Fatalf("act.sub of the exchanged token is %q, want the MCP client %q", actor, clientID)
	}
	// Refused by the IdP: a clear 403 with the reason, nothing cached.
	for i := 0; i < 2; i++ {
		status, body = call("denied", "2025-11-25", "tools/call")
		if status != 403 || !strings.Contains(body, "invalid_target") {
			t.Fatalf("refused exchange: %d %s", status, body)
		}
	}
	if n := ent.Counts(t)["exchange_refused"]; n != 2 {
		t.Fatalf("refused exchanges at the IdP: %d, want 2 (a refusal is not cached)", n)
	}

	// ---- provider: the URL elicitation ----
	// Lists pass without the account; the upstream sees no credential.
	if status, body := call("prov", "2025-11-25", "tools/list"); status != 200 || !strings.Contains(body, "whoami") {
		t.Fatalf("tools/list without an account: %d %s", status, body)
	}
	link := elicitedURL(t, call, "prov", "2025-11-25")
	modernLink := elicitedURL(t, call, "prov", "2026-07-28")
	if !strings.HasPrefix(link, public+"/oauth/providers/gh/connect?id=") || link == modernLink {
		t.Fatalf("connect links %q %q", link, modernLink)
	}
	// Someone else's browser session (bob at the IdP) cannot connect an
	// account to alice.
	ent.LoginAs(t, idp.Bob)
	if _, err := connect(t, oauthtest.NewBrowser().Client, modernLink); err == nil || !strings.Contains(err.Error(), "made for another user") {
		t.Fatalf("alice's link in bob's session: %v", err)
	}
	ent.LoginAs(t, idp.Alice)
	// Single use: the link bob opened is spent.
	if _, err := connect(t, browser.Client, modernLink); err == nil || !strings.Contains(err.Error(), "expired or was already used") {
		t.Fatalf("replayed connect link: %v", err)
	}
	// Expired: the links live connect_ttl (3s).
	stale := elicitedURL(t, call, "prov", "2025-11-25")
	time.Sleep(4 * time.Second)
	if _, err := connect(t, browser.Client, stale); err == nil || !strings.Contains(err.Error(), "expired or was already used") {
		t.Fatalf("expired connect link: %v", err)
	}
	// Alice connects with a fresh link: IdP session, provider login,
	// static callback.
	link = elicitedURL(t, call, "prov", "2025-11-25")
	callback, err := connect(t, browser.Client, link)
	if err != nil {
		t.Fatalf("connect: %v", err)
	}
	// The callback is single use.
	if _, err := get(browser.Client, callback); err == nil || !strings.Contains(err.Error(), "expired or was already used") {
		t.Fatalf("replayed provider callback: %v", err)
	}
	for _, v := range []string{"2025-11-25", "2026-07-28"} {
		if status, body := call("prov", v, "tools/call"); status != 200 || !strings.Contains(body, "sub="+idp.Alice) {
			t.Fatalf("provider call after connecting (%s): %d %s", v, status, body)
		}
	}
	if out := h.cli(t, "accounts", "list", "--user", idp.Alice); !strings.Contains(out, "gh") {
		t.Fatalf("accounts list:\n%s", out)
	}
	if out := h.cli(t, "grants", "list", "--user", idp.Alice); !strings.Contains(out, `"accounts": [`) || !strings.Contains(out, `"gh"`) {
		t.Fatalf("grants list does not show the connected account:\n%s", out)
	}

	// ---- an API key pasted on the connect page ----
	keyLink := elicitedURL(t, call, "saas", "2026-07-28", "keys")
	if err := pasteKey(t, browser.Client, keyLink, pastedKey); err != nil {
		t.Fatalf("paste key: %v", err)
	}
	if status, body := call("saas", "2026-07-28", "tools/call"); status != 200 || !strings.Contains(body, "sub=key-holder") {
		t.Fatalf("api key call: %d %s", status, body)
	}

	// ---- revocation of the account, and connecting again ----
	if out := h.cli(t, "revoke", "--provider", "gh", "--user", idp.Alice); !strings.Contains(out, "revoked 1 connected account(s) at gh") {
		t.Fatalf("revoke --provider: %s", out)
	}
	if _, err := connect(t, browser.Client, elicitedURL(t, call, "prov", "2025-11-25")); err != nil {
		t.Fatalf("connect again: %v", err)
	}
	if status, body := call("prov", "2025-11-25", "tools/call"); status != 200 || !strings.Contains(body, "sub="+idp.Alice) {
		t.Fatalf("provider call after connecting again: %d %s", status, body)
	}

	// ---- 50 concurrent Checks per mode with expired tokens: one
	// refresh at the IdP and one at the provider ----
	if status, body := call("idps", "2025-11-25", "tools/call"); status != 200 || !strings.Contains(body, "sub="+idp.Alice) {
		t.Fatalf("idp call: %d %s", status, body)
	}
	entBefore, ghBefore := ent.Counts(t)["refresh_token"], gh.Counts(t)["refresh_token"]
	time.Sleep(idpTTL) // the IdP's and the provider's tokens have expired
	var wg sync.WaitGroup
	statuses := make(chan string, 100)
	for i := 0; i < 50; i++ {
		for _, srv := range []string{"idps", "prov"} {
			wg.Add(1)
			go func() {
				defer wg.Done()
				s, body := mcpCall(t, public, handle, srv, "2025-11-25", "tools/call")
				if s != 200 || !strings.Contains(body, "sub="+idp.Alice) {
					statuses <- fmt.Sprintf("%s: %d %s", srv, s, body)
				}
			}()
		}
	}
	wg.Wait()
	close(statuses)
	for s := range statuses {
		t.Fatalf("a concurrent call failed: %s", s)
	}
	if n := ent.Counts(t)["refresh_token"] - entBefore; n != 1 {
		t.Fatalf("%d refreshes at the IdP for 50 concurrent Checks, want exactly 1", n)
	}
	if n := gh.Counts(t)["refresh_token"] - ghBefore; n != 1 {
		t.Fatalf("%d refreshes at the provider for 50 concurrent Checks, want exactly 1", n)
	}

	// ---- refreshes refused: the provider's ends the account (the user
	// is asked to connect again), the IdP's ends the grant (401) ----
	gh.Disable(t, idp.Alice)
	ent.Disable(t, idp.Alice)
	time.Sleep(idpTTL)
	elicitedURL(t, call, "prov", "2025-11-25")
	if out := h.cli(t, "accounts", "list", "--user", idp.Alice); strings.Contains(out, "gh") {
		t.Fatalf("the account survived its refused refresh:\n%s", out)
	}
	if status, body := call("idps", "2025-11-25", "tools/call"); status != 401 {
		t.Fatalf("after the IdP refused the refresh: %d %s", status, body)
	}

	// ---- what the upstreams saw ----
	_, exchSubs := exchLog.all()
	provAuthzs, provSubs := provLog.all()
	idpAuthzs, _ := idpLog.all()
	if len(exchSubs) != 2 || len(provSubs) != 53 {
		t.Fatalf("verified calls: exch %v prov %v", exchSubs, provSubs)
	}
	// The provider upstream got the one tools/list and the 53 verified
	// calls: no elicited call ever reached it.
	if len(provAuthzs) != 54 || provAuthzs[0] != "" {
		t.Fatalf("the provider upstream got %d requests, want 54, the first (tools/list) without Authorization", len(provAuthzs))
	}
	var secrets []string
	exchAuthzs, _ := exchLog.all()
	for _, a := range append(append(provAuthzs, idpAuthzs...), exchAuthzs...) {
		if strings.Contains(a, handle) {
			t.Fatalf("an upstream received the client's handle")
		}
		if tok, ok := strings.CutPrefix(a, "Bearer "); ok && tok != "" {
			secrets = append(secrets, tok)
		}
	}
	if len(secrets) < 4 {
		t.Fatalf("upstream tokens seen: %d", len(secrets))
	}
	cb, _ := url.Parse(callback)
	secrets = append(secrets, handle, ghSecret, idpClientSecret, pastedKey, strings.TrimPrefix(link, public+"/oauth/providers/gh/connect?id="), cb.Query().Get("code"))

	// ---- audit: every credential event, no secret anywhere ----
	h.warden.stop()
	trail, err := os.ReadFile(filepath.Join(dataDir, "audit.jsonl"))
	if err != nil {
		t.Fatal(err)
	}
	for _, typ := range []string{"provider_added", "credential_exchanged", "credential_exchange_refused", "credential_connect_refused", "credential_connected",
		"credential_revoked", "credential_refreshed", "credential_refresh_failed", "idp_refresh_refused"} {
		if !bytes.Contains(trail, []byte(`"type":"`+typ+`"`)) {
			t.Errorf("audit trail has no %s event", typ)
		}
	}
	logs := h.warden.output()
	for _, s := range secrets {
		if s == "" {
			continue
		}
		if bytes.Contains(trail, []byte(s)) {
			t.Errorf("the audit trail holds a raw secret (%d bytes)", len(s))
		}
		if strings.Contains(logs, s) {
			t.Errorf("warden's log holds a raw secret (%d bytes)", len(s))
		}
	}
}

func (h *harness) cliEnv(t *testing.T, env []string, args ...string) string {
	t.Helper()
	cmd := exec.CommandContext(t.Context(), h.bin, append(args, "--admin-addr", h.admin, "--data-dir", h.dataDir)...)
	cmd.Env = append(cleanEnv(), env...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("warden %s: %v\n%s%s", strings.Join(args, " "), err, stdout.String(), stderr.String())
	}
	return stdout.String()
}

// signIn registers a public client, walks the authorization code flow in
// browser and returns the access handle for servers.
func signIn(t *testing.T, public string, browser *oauthtest.Browser, servers []string) (string, string) {
	t.Helper()
	const redirect = "http://127.0.0.1:9/cb"
	reg, _ := json.Marshal(map[string]any{"redirect_uris": []string{redirect}, "token_endpoint_auth_method": "none",
		"grant_types": []string{"authorization_code", "refresh_token"}, "response_types": []string{"code"}, "client_name": "cred-e2e"})
	resp, err := http.Post(public+"/oauth/register", "application/json", bytes.NewReader(reg))
	if err != nil {
		t.Fatal(err)
	}
	var client struct {
		ID string `json:"client_id"`
	}
	_ = json.NewDecoder(resp.Body).Decode(&client)
	resp.Body.Close()
	if client.ID == "" {
		t.Fatalf("registration answered %d", resp.StatusCode)
	}
	var b [32]byte
	_, _ = rand.Read(b[:])
	verifier := base64.RawURLEncoding.EncodeToString(b[:])
	sum := sha256.Sum256([]byte(verifier))
	q := url.Values{"response_type": {"code"}, "client_id": {client.ID}, "redirect_uri": {redirect}, "state": {"s1"},
		"code_challenge": {base64.RawURLEncoding.EncodeToString(sum[:])}, "code_challenge_method": {"S256"}}
	for _, s := range servers {
		q.Add("resource", public+"/mcp/"+s)
	}
	back, err := browser.Authorize(public+"/oauth/authorize?"+q.Encode(), redirect)
	if err != nil {
		t.Fatalf("authorize: %v", err)
	}
	form := url.Values{"grant_type": {"authorization_code"}, "code": {back.Query().Get("code")}, "redirect_uri": {redirect},
		"client_id": {client.ID}, "code_verifier": {verifier}}
	for _, s := range servers {
		form.Add("resource", public+"/mcp/"+s)
	}
	resp, err = http.PostForm(public+"/oauth/token", form)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var tok struct {
		AccessToken string `json:"access_token"`
	}
	raw, _ := io.ReadAll(resp.Body)
	if json.Unmarshal(raw, &tok) != nil || tok.AccessToken == "" {
		t.Fatalf("token: %d %s", resp.StatusCode, raw)
	}
	return tok.AccessToken, client.ID
}

// mcpCall sends one JSON-RPC request the way an MCP client of that
// protocol version does.
func mcpCall(t *testing.T, public, handle, server, version, method string) (int, string) {
	params := `{"name":"whoami","arguments":{}}`
	if method == "tools/list" {
		params = `{}`
	}
	req, _ := http.NewRequest(http.MethodPost, public+"/mcp/"+server, nil)
	if version == "2026-07-28" {
		meta := `"_meta":{"io.modelcontextprotocol/protocolVersion":"2026-07-28","io.modelcontextprotocol/clientInfo":{"name":"cred-e2e","version":"1.0.0"},"io.modelcontextprotocol/clientCapabilities":{"elicitation":{"url":{}}}}`
		params = "{" + meta + "," + strings.TrimPrefix(params, "{")
		params = strings.Replace(params, ",}", "}", 1)
		req.Header.Set("Mcp-Method", method)
		if method == "tools/call" {
			req.Header.Set("Mcp-Name", "whoami")
		}
	}
	body := `{"jsonrpc":"2.0","id":7,"method":"` + method + `","params":` + params + `}`
	req.Body = io.NopCloser(strings.NewReader(body))
	req.ContentLength = int64(len(body))
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Accept", "application/json, text/event-stream")
	req.Header.Set("MCP-Protocol-Version", version)
	req.Header.Set("Authorization", "Bearer "+handle)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Errorf("%s %s: %v", server, method, err)
		return 0, ""
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(raw)
}

// elicitedURL makes a tools/call that must be answered with a URL
// elicitation in the form of version and returns its URL.
func elicitedURL(t *testing.T, call func(server, version, method string) (int, string), server, version string, provider ...string) string {
	t.Helper()
	prov := "gh"
	if len(provider) > 0 {
		prov = provider[0]
	}
	status, body := call(server, version, "tools/call")
	if status != 200 {
		t.Fatalf("%s tools/call without an account (%s): %d %s", server, version, status, body)
	}
	var msg struct {
		ID     json.RawMessage `json:"id"`
		Result struct {
			ResultType    string `json:"resultType"`
			InputRequests map[string]struct {
				Method string `json:"method"`
				Params struct {
					Mode string `json:"mode"`
					URL  string `json:"url"`
				} `json:"params"`
			} `json:"inputRequests"`
		} `json:"result"`
		Error struct {
			Code int `json:"code"`
			Data struct {
				Elicitations []struct {
					Mode          string `json:"mode"`
					ElicitationID string `json:"elicitationId"`
					URL           string `json:"url"`
				} `json:"elicitations"`
			} `json:"data"`
		} `json:"error"`
	}
	if err := json.Unmarshal([]byte(body), &msg); err != nil || string(msg.ID) != "7" {
		t.Fatalf("elicitation body %s: %v", body, err)
	}
	if version == "2026-07-28" {
		r := msg.Result.InputRequests["warden_connect_"+prov]
		if msg.Result.ResultType != "input_required" || r.Method != "elicitation/create" || r.Params.Mode != "url" || r.Params.URL == "" {
			t.Fatalf("2026-07-28 elicitation: %s", body)
		}
		return r.Params.URL
	}
	if msg.Error.Code != -32042 || len(msg.Error.Data.Elicitations) != 1 || msg.Error.Data.Elicitations[0].Mode != "url" || msg.Error.Data.Elicitations[0].ElicitationID == "" {
		t.Fatalf("2025-11-25 elicitation: %s", body)
	}
	return msg.Error.Data.Elicitations[0].URL
}

var (
	hiddenField = regexp.MustCompile(`<input type="hidden" name="([a-z_]+)" value="([^"]*)">`)
	postAction  = regexp.MustCompile(`<form method="post" action="([^"]+)">`)
	tagRE       = regexp.MustCompile(`<[^>]+>`)
)

// get follows redirects from u with client and returns the final page,
// or an error carrying the text of an error page.
func get(client *http.Client, u string) (string, error) {
	req, _ := http.NewRequest(http.MethodGet, u, nil)
	_, page, _, err := walk(client, req)
	return page, err
}

// walk follows redirects one by one; it returns the last URL requested,
// its page and its headers.
func walk(client *http.Client, req *http.Request) (string, string, http.Header, error) {
	for i := 0; i < 30; i++ {
		resp, err := client.Do(req)
		if err != nil {
			return "", "", nil, err
		}
		raw, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if loc := resp.Header.Get("Location"); resp.StatusCode >= 300 && resp.StatusCode < 400 && loc != "" {
			next, err := req.URL.Parse(loc)
			if err != nil {
				return "", "", nil, err
			}
			req, _ = http.NewRequest(http.MethodGet, next.String(), nil)
			continue
		}
		text := html.UnescapeString(tagRE.ReplaceAllString(string(raw), " "))
		if resp.StatusCode != http.StatusOK {
			return req.URL.String(), "", resp.Header, fmt.Errorf("%s answered %d: %s", req.URL.Path, resp.StatusCode, strings.Join(strings.Fields(text), " "))
		}
		return req.URL.String(), string(raw), resp.Header, nil
	}
	return "", "", nil, fmt.Errorf("too many redirects")
}

// connect opens a connect link in a browser (client with cookies) and
// presses Connect; it returns the provider callback URL it went through.
func connect(t *testing.T, client *http.Client, link string) (string, error) {
	t.Helper()
	if client.Jar == nil {
		client.Jar, _ = cookiejar.New(nil)
	}
	_, page, hdr, err := walk(client, mustGet(link))
	if err != nil {
		return "", err
	}
	// The connect page: never framed, no script, not cached.
	if csp := hdr.Get("Content-Security-Policy"); !strings.Contains(csp, "default-src 'none'") || !strings.Contains(csp, "frame-ancestors 'none'") ||
		hdr.Get("X-Frame-Options") != "DENY" || hdr.Get("Cache-Control") != "no-store" || strings.Contains(page, "<script") {
		t.Errorf("connect page headers: %v", hdr)
	}
	form := url.Values{"action": {"connect"}}
	for _, m := range hiddenField.FindAllStringSubmatch(page, -1) {
		form.Set(m[1], html.UnescapeString(m[2]))
	}
	action := postAction.FindStringSubmatch(page)
	if action == nil || !form.Has("csrf") {
		return "", fmt.Errorf("no connect form on %q", page)
	}
	// Record the callback URL on the way.
	var callback string
	orig := client.CheckRedirect
	client.CheckRedirect = func(r *http.Request, via []*http.Request) error {
		if strings.Contains(r.URL.Path, "/oauth/providers/") && strings.HasSuffix(r.URL.Path, "/callback") {
			callback = r.URL.String()
		}
		return http.ErrUseLastResponse
	}
	defer func() { client.CheckRedirect = orig }()
	req, _ := http.NewRequest(http.MethodPost, html.UnescapeString(action[1]), strings.NewReader(form.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	_, page, _, err = walk(client, req)
	if err != nil {
		return callback, err
	}
	if !strings.Contains(page, "Connected.") {
		return callback, fmt.Errorf("after connecting: %s", tagRE.ReplaceAllString(page, " "))
	}
	return callback, nil
}

// pasteKey opens a connect link and saves an API key on the page.
func pasteKey(t *testing.T, client *http.Client, link, key string) error {
	t.Helper()
	_, page, _, err := walk(client, mustGet(link))
	if err != nil {
		return err
	}
	if !strings.Contains(page, `type="password" id="key" name="key"`) {
		return fmt.Errorf("no key field on the connect page")
	}
	form := url.Values{"action": {"key"}, "key": {key}}
	for _, m := range hiddenField.FindAllStringSubmatch(page, -1) {
		form.Set(m[1], html.UnescapeString(m[2]))
	}
	action := postAction.FindStringSubmatch(page)
	if action == nil {
		return fmt.Errorf("no form on the connect page")
	}
	req, _ := http.NewRequest(http.MethodPost, html.UnescapeString(action[1]), strings.NewReader(form.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	_, page, _, err = walk(client, req)
	if err != nil {
		return err
	}
	if !strings.Contains(page, "Saved.") {
		return fmt.Errorf("after saving: %s", tagRE.ReplaceAllString(page, " "))
	}
	return nil
}

func mustGet(u string) *http.Request {
	req, _ := http.NewRequest(http.MethodGet, u, nil)
	return req
}

// userinfoSubject is an upstream's check of the token it received: the
// subject the issuer's /me endpoint names for it.
func userinfoSubject(issuer, who string) func(ctx context.Context, a string) (string, error) {
	return func(ctx context.Context, a string) (string, error) {
		tok, err := bearerOf(a)
		if err != nil {
			return "", err
		}
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, issuer+"/me", nil)
		req.Header.Set("Authorization", "Bearer "+tok)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			return "", err
		}
		defer resp.Body.Close()
		var me struct {
			Sub string `json:"sub"`
		}
		if resp.StatusCode != http.StatusOK || json.NewDecoder(resp.Body).Decode(&me) != nil {
			return "", fmt.Errorf("%s userinfo answered %d", who, resp.StatusCode)
		}
		return me.Sub, nil
	}
}

func bearerOf(a string) (string, error) {
	tok, ok := strings.CutPrefix(a, "Bearer ")
	if !ok || tok == "" {
		return "", fmt.Errorf("no bearer token")
	}
	return tok, nil
}
