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
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/coreos/go-oidc/v3/oidc"

	"github.com/warden-mcp/warden/internal/store/postgres/pgtest"
	"github.com/warden-mcp/warden/oauth/oauthtest"
	"github.com/warden-mcp/warden/test/envoysim"
	"github.com/warden-mcp/warden/test/idp"
	"github.com/warden-mcp/warden/test/mcpserver"
	"github.com/warden-mcp/warden/test/wardenbin"
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
// oidc-provider) and provider (a second oidc-provider as the third party,
// connected through the URL elicitation and the static callback), used by
// the official TypeScript SDK clients at 2025-11-25 (v1) and 2026-07-28
// (v2) against go-sdk upstreams, and idp (the user's IdP token, refreshed
// single flight), with the HTTP-level negative cases (the provider's
// error= callback among them) and the no-secret-in-logs check.
func TestUpstreamCredentials(t *testing.T) { runUpstreamCredentials(t, "") }

// TestUpstreamCredentialsPostgres runs the same on PostgreSQL, whose store
// offers Lock: the single flights go through its advisory locks.
func TestUpstreamCredentialsPostgres(t *testing.T) {
	dsn, _ := pgtest.Schema(t)
	runUpstreamCredentials(t, fmt.Sprintf("store:\n  backend: postgres\n  postgres:\n    dsn: %q\n", dsn))
}

func runUpstreamCredentials(t *testing.T, storeYAML string) {
	bin := wardenbin.Path(t, raceEnabled)
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

	// Upstreams. exch and prov are real MCP servers (test/mcpserver, both
	// protocol revisions) for the SDK clients: exch verifies the exchanged
	// JWT against the IdP's JWKS and checks aud, prov verifies the
	// provider's token at the provider's userinfo endpoint and serves the
	// lists without a credential (what an unconnected user's lists bring).
	// idps records the IdP token; saas takes a pasted API key.
	ctx := t.Context()
	entOIDC, err := oidc.NewProvider(ctx, ent.Issuer)
	if err != nil {
		t.Fatal(err)
	}
	exchVerifier := entOIDC.Verifier(&oidc.Config{ClientID: "api://exch"})
	var actorsMu sync.Mutex
	exchActors := map[string]int{}
	exch, exchLog := startUpstream(t, mcpserver.Options{Verify: func(ctx context.Context, tok string) (mcpserver.Seen, error) {
		idt, err := exchVerifier.Verify(ctx, tok)
		if err != nil {
			return mcpserver.Seen{}, err
		}
		var claims struct {
			ClientID string `json:"client_id"`
			Scope    string `json:"scope"`
			Act      struct {
				Sub string `json:"sub"`
			} `json:"act"`
		}
		if err := idt.Claims(&claims); err != nil || claims.Act.Sub == "" {
			return mcpserver.Seen{}, fmt.Errorf("exchanged token names no actor")
		}
		actorsMu.Lock()
		exchActors[claims.Act.Sub]++
		actorsMu.Unlock()
		return mcpserver.Seen{Subject: idt.Subject, Audience: idt.Audience, Expiry: idt.Expiry, ClientID: claims.ClientID, Scope: claims.Scope}, nil
	}})
	provCheck := userinfoSubject(gh.Issuer, "provider")
	prov, provLog := startUpstream(t, mcpserver.Options{AllowAnonymous: true, Verify: func(ctx context.Context, tok string) (mcpserver.Seen, error) {
		sub, err := provCheck(ctx, "Bearer "+tok)
		return mcpserver.Seen{Subject: sub}, err
	}})
	idpLog := &upstreamLog{}
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

	cfgPath := serveConfig{
		DataDir: dataDir, Public: public, PolicyDir: policyDir(t), Issuer: ent.Issuer, NodeID: nodeID,
		HTTP: httpPort, Authz: authzPort, Admin: adminPort, XDS: xdsPort,
		LogLevel:  "debug",
		OIDCExtra: []string{"refresh_margin: 1s"},
		XDSExtra:  []string{"authz_timeout: 35s"},
		// 100 concurrent Checks below each wait for their audit group
		// commit (audit durability sync) on a shared 2-core machine under
		// -race: the 2s production bound is a latency budget, not what
		// this test asserts, and tripping it fails the calls closed with
		// 503.
		Extra: `authz:
  timeout: 30s
credentials:
  refresh_margin: 1s
  connect_ttl: 3s
  exchange:
    token_url: ` + ent.Issuer + `/token
    actor_token: true
` + storeYAML,
	}.write(t)
	cmd := exec.Command(bin, "serve", "-c", cfgPath)
	cmd.Env = append(wardenbin.CleanEnv(), "WARDEN_E2E_IDP_SECRET="+idpClientSecret, "WARDEN_E2E_GH_SECRET="+ghSecret)
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
	// the secret from the environment) and the servers.
	out := h.cliEnv(t, []string{"WARDEN_E2E_GH_SECRET=" + ghSecret}, "providers", "add", "gh", "--issuer", gh.Issuer, "--client-id", "warden-gh",
		"--client-secret-env", "WARDEN_E2E_GH_SECRET", "--scope", "openid")
	if !strings.Contains(out, "register this redirect URI at the provider: "+public+"/oauth/providers/gh/callback") {
		t.Fatalf("providers add said %q", out)
	}
	if out := h.cli(t, "providers", "list"); !strings.Contains(out, "gh") || strings.Contains(out, ghSecret) {
		t.Fatalf("providers list:\n%s", out)
	}
	h.cli(t, "servers", "add", "exch", "--url", exch.URL+"/mcp", "--credential", "exchange", "--idp-audience", "api://exch", "--idp-scope", "files.read")
	h.cli(t, "servers", "add", "denied", "--url", exch.URL+"/mcp", "--credential", "exchange", "--idp-audience", "api://forbidden")
	h.cli(t, "servers", "add", "prov", "--url", prov.URL+"/mcp", "--credential", "provider", "--provider", "gh")
	h.cli(t, "servers", "add", "idps", "--url", idpSrv.URL+"/mcp", "--credential", "idp")
	h.cli(t, "providers", "add", "keys", "--kind", "api_key", "--header", "X-Api-Key")
	h.cli(t, "servers", "add", "saas", "--url", saasSrv.URL+"/mcp", "--credential", "provider", "--provider", "keys")
	for _, s := range []string{"exch", "denied", "prov", "idps", "saas"} {
		waitRoute(t, proxy, "/mcp/"+s, "mcp_"+s)
	}

	// The MCP client signs alice in (DCR, PKCE, one grant for the five
	// servers) through the proxy.
	browser := oauthtest.NewBrowser()
	handle, clientID := signIn(t, public, browser, []string{"exch", "denied", "prov", "idps", "saas"})

	call := func(server, version, method string) (int, string) {
		t.Helper()
		return mcpCall(t, public, handle, server, version, method)
	}
	connectPrefix := public + "/oauth/providers/gh/connect?id="

	// ---- exchange refused by the IdP: a clear 403 with the reason,
	// nothing cached ----
	for i := 0; i < 2; i++ {
		status, body := call("denied", "2025-11-25", "tools/call")
		if status != 403 || !strings.Contains(body, "invalid_target") {
			t.Fatalf("refused exchange: %d %s", status, body)
		}
	}
	if n := ent.Counts(t)["exchange_refused"]; n != 2 {
		t.Fatalf("refused exchanges at the IdP: %d, want 2 (a refusal is not cached)", n)
	}

	// ---- provider: connect links that must not connect ----
	link := elicitedURL(t, call, "prov", "2025-11-25")
	modernLink := elicitedURL(t, call, "prov", "2026-07-28")
	if !strings.HasPrefix(link, connectPrefix) || link == modernLink {
		t.Fatalf("connect links %q %q", link, modernLink)
	}
	links := []string{link, modernLink}
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

	// ---- the provider answers the static callback with an error: alice
	// denies consent at the provider ----
	gh.DenyConsent(t, idp.Alice)
	denied := elicitedURL(t, call, "prov", "2025-11-25")
	links = append(links, denied)
	flow, err := connectFlow(t, browser.Client, denied)
	if err == nil || !strings.Contains(err.Error(), "answered 400") || !strings.Contains(err.Error(), "The provider did not grant access (access_denied)") {
		t.Fatalf("connect denied at the provider: %v", err)
	}
	if n := gh.Counts(t)["consent_denied"]; n != 1 {
		t.Fatalf("consents denied at the provider: %d, want 1", n)
	}
	cbq := flow.callbackQuery()
	if cbq.Get("error") != "access_denied" || cbq.Get("error_description") == "" || cbq.Get("state") == "" || cbq.Has("code") {
		t.Fatalf("the provider's error redirect: %q", flow.callback)
	}
	// A clear page under the strict headers, echoing neither the state nor
	// the provider's description (which carries markup).
	if csp := flow.header.Get("Content-Security-Policy"); !strings.Contains(csp, "default-src 'none'") || !strings.Contains(csp, "frame-ancestors 'none'") ||
		flow.header.Get("X-Frame-Options") != "DENY" || flow.header.Get("Cache-Control") != "no-store" {
		t.Errorf("error page headers: %v", flow.header)
	}
	if strings.Contains(flow.page, cbq.Get("state")) || strings.Contains(flow.page, "declined") || strings.Contains(flow.page, "<b>") || !strings.Contains(flow.page, "Not connected") {
		t.Errorf("error page:\n%s", flow.page)
	}
	if out := h.cli(t, "accounts", "list", "--user", idp.Alice); strings.Contains(out, "gh") {
		t.Fatalf("an account was stored after the provider's error:\n%s", out)
	}
	// Neither the callback nor the link can be used again (the link is
	// spent when it is opened, the state at the callback, error or not);
	// the next call asks again with a fresh link.
	if _, err := get(browser.Client, flow.callback); err == nil || !strings.Contains(err.Error(), "expired or was already used") {
		t.Fatalf("replayed error callback: %v", err)
	}
	if _, err := connect(t, browser.Client, denied); err == nil || !strings.Contains(err.Error(), "expired or was already used") {
		t.Fatalf("the link of the denied connection opened again: %v", err)
	}
	if again := elicitedURL(t, call, "prov", "2026-07-28"); !strings.HasPrefix(again, connectPrefix) || slices.Contains(links, again) {
		t.Fatalf("the call after the denied connection: %q", again)
	}

	// ---- the official SDK clients: exchange, and provider through the
	// URL elicitation, on both protocol versions ----
	var callbacks []string
	res := runCredentialsClient(t, public, handle, clientID, func(ev credentialsEvent) {
		switch ev.Event {
		case "connect":
			// The user's browser: IdP session, provider login, static
			// callback.
			if !strings.HasPrefix(ev.URL, connectPrefix) {
				t.Fatalf("the %s client was sent to %q", ev.Version, ev.URL)
			}
			links = append(links, ev.URL)
			callback, err := connect(t, browser.Client, ev.URL)
			if err != nil {
				t.Fatalf("connect (%s): %v", ev.Version, err)
			}
			callbacks = append(callbacks, callback)
			// The callback is single use.
			if _, err := get(browser.Client, callback); err == nil || !strings.Contains(err.Error(), "expired or was already used") {
				t.Fatalf("replayed provider callback: %v", err)
			}
		case "revoke":
			if out := h.cli(t, "accounts", "list", "--user", idp.Alice); !strings.Contains(out, "gh") {
				t.Fatalf("accounts list:\n%s", out)
			}
			if out := h.cli(t, "grants", "list", "--user", idp.Alice); !strings.Contains(out, `"accounts": [`) || !strings.Contains(out, `"gh"`) {
				t.Fatalf("grants list does not show the connected account:\n%s", out)
			}
			if out := h.cli(t, "revoke", "--provider", "gh", "--user", idp.Alice); !strings.Contains(out, "revoked 1 connected account(s) at gh") {
				t.Fatalf("revoke --provider: %s", out)
			}
		default:
			t.Fatalf("unexpected client event %q", ev.Event)
		}
	})
	checkCredentialsClient(t, res, connectPrefix)
	if len(callbacks) != 2 {
		t.Fatalf("%d connections through the SDK clients, want 2 (one per protocol version)", len(callbacks))
	}
	// One exchange served both clients' requests (cached sealed per grant
	// and server), and the IdP named the MCP client as the actor.
	if n := ent.Counts(t)["urn:ietf:params:oauth:grant-type:token-exchange"]; n != 1 {
		t.Fatalf("%d exchanges at the IdP, want 1 (cached sealed per grant and server)", n)
	}
	actorsMu.Lock()
	if len(exchActors) != 1 || exchActors[clientID] == 0 {
		t.Fatalf("act.sub of the exchanged tokens %v, want only the MCP client %q", exchActors, clientID)
	}
	actorsMu.Unlock()

	// ---- an API key pasted on the connect page ----
	keyLink := elicitedURL(t, call, "saas", "2026-07-28", "keys")
	if err := pasteKey(t, browser.Client, keyLink, pastedKey); err != nil {
		t.Fatalf("paste key: %v", err)
	}
	if status, body := call("saas", "2026-07-28", "tools/call"); status != 200 || !strings.Contains(body, "sub=key-holder") {
		t.Fatalf("api key call: %d %s", status, body)
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
	links = append(links, elicitedURL(t, call, "prov", "2025-11-25"))
	if out := h.cli(t, "accounts", "list", "--user", idp.Alice); strings.Contains(out, "gh") {
		t.Fatalf("the account survived its refused refresh:\n%s", out)
	}
	if status, body := call("idps", "2025-11-25", "tools/call"); status != 401 {
		t.Fatalf("after the IdP refused the refresh: %d %s", status, body)
	}

	// ---- what the upstreams saw ----
	// exch: every request carried a token the IdP minted for api://exch,
	// for alice.
	if exch.Rejects() != 0 || len(exch.Seen()) == 0 {
		t.Fatalf("exch upstream: %d rejected, %d verified", exch.Rejects(), len(exch.Seen()))
	}
	for _, s := range exch.Seen() {
		if s.Subject != idp.Alice || !slices.Equal(s.Audience, []string{"api://exch"}) || s.Scope != "files.read" {
			t.Fatalf("exch upstream verified %+v", s)
		}
	}
	// prov: the provider's tokens only; requests without one were never
	// calls (the lists of the unconnected user); the calls that reached it
	// are exactly the two SDK retries and the 50 concurrent ones: no
	// elicited call ever reached it.
	if prov.Rejects() != 0 {
		t.Fatalf("prov upstream rejected %d tokens", prov.Rejects())
	}
	var provCalls, anonymous int
	for _, r := range provLog.all() {
		if r.Method == "tools/call" {
			provCalls++
		}
		if r.Authz == "" {
			anonymous++
			if needs := r.Method == "tools/call" || r.Method == "resources/read" || r.Method == "prompts/get"; needs {
				t.Fatalf("a %s without the provider's token reached the upstream", r.Method)
			}
		}
	}
	if provCalls != 52 || anonymous == 0 {
		t.Fatalf("the provider upstream got %d tools/call (want 52) and %d requests without a credential", provCalls, anonymous)
	}
	for _, s := range prov.Seen() {
		if s.Subject != idp.Alice {
			t.Fatalf("prov upstream verified %+v", s)
		}
	}
	var secrets []string
	idpAuthzs, _ := idpLog.all()
	upstreamAuthzs := idpAuthzs
	for _, r := range append(exchLog.all(), provLog.all()...) {
		upstreamAuthzs = append(upstreamAuthzs, r.Authz)
	}
	for _, a := range upstreamAuthzs {
		if strings.Contains(a, handle) {
			t.Fatalf("an upstream received the client's handle")
		}
		if tok, ok := strings.CutPrefix(a, "Bearer "); ok && tok != "" && !slices.Contains(secrets, tok) {
			secrets = append(secrets, tok)
		}
	}
	if len(secrets) < 4 {
		t.Fatalf("upstream tokens seen: %d", len(secrets))
	}
	secrets = append(secrets, handle, ghSecret, idpClientSecret, pastedKey, cbq.Get("state"))
	for _, l := range links {
		secrets = append(secrets, strings.TrimPrefix(l, connectPrefix))
	}
	for _, cb := range callbacks {
		u, _ := url.Parse(cb)
		secrets = append(secrets, u.Query().Get("code"), u.Query().Get("state"))
	}

	// ---- audit: every credential event, no secret anywhere ----
	h.warden.stop()
	trail, err := os.ReadFile(filepath.Join(dataDir, "audit.jsonl"))
	if err != nil {
		t.Fatal(err)
	}
	for _, typ := range []string{"provider_added", "credential_exchanged", "credential_exchange_refused", "credential_connect_refused", "credential_connect_failed",
		"credential_connected", "credential_revoked", "credential_refreshed", "credential_refresh_failed", "idp_refresh_refused"} {
		if !bytes.Contains(trail, []byte(`"type":"`+typ+`"`)) {
			t.Errorf("audit trail has no %s event", typ)
		}
	}
	var failed int
	for _, line := range bytes.Split(trail, []byte("\n")) {
		var ev struct {
			Type, Subject, Actor, Reason string
			Details                      map[string]any
		}
		if json.Unmarshal(line, &ev) != nil || ev.Type != "credential_connect_failed" {
			continue
		}
		failed++
		if ev.Subject != idp.Alice || ev.Actor != "user:"+idp.Alice || ev.Reason != "provider answered access_denied" || ev.Details["provider"] != "gh" {
			t.Errorf("connect failed event: %s", line)
		}
	}
	if failed != 1 {
		t.Errorf("%d credential_connect_failed events, want 1 (the denied consent)", failed)
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

// rpcSeen is one request that reached an upstream.
type rpcSeen struct{ Authz, Method string }

type rpcLog struct {
	mu   sync.Mutex
	seen []rpcSeen
}

func (l *rpcLog) all() []rpcSeen {
	l.mu.Lock()
	defer l.mu.Unlock()
	return append([]rpcSeen(nil), l.seen...)
}

// startUpstream serves a test/mcpserver (both protocol revisions,
// answers as JSON) and records the Authorization and JSON-RPC method of
// every request that reached it.
func startUpstream(t *testing.T, o mcpserver.Options) (*testUpstream, *rpcLog) {
	t.Helper()
	o.Stateless, o.JSONResponse = true, true
	srv, err := mcpserver.New(t.Context(), o)
	if err != nil {
		t.Fatal(err)
	}
	log := &rpcLog{}
	hs := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		raw, _ := io.ReadAll(r.Body)
		var msg struct {
			Method string `json:"method"`
		}
		_ = json.Unmarshal(raw, &msg)
		log.mu.Lock()
		log.seen = append(log.seen, rpcSeen{Authz: r.Header.Get("Authorization"), Method: msg.Method})
		log.mu.Unlock()
		r.Body = io.NopCloser(bytes.NewReader(raw))
		srv.ServeHTTP(w, r)
	}))
	t.Cleanup(hs.Close)
	return &testUpstream{Server: srv, URL: hs.URL}, log
}

type testUpstream struct {
	*mcpserver.Server
	URL string
}

// credentialsEvent is a request of credentials_client.mjs to the test.
type credentialsEvent struct{ Event, URL, Version string }

type credentialsExchange struct {
	Phase, Method, Path, Version, RPCMethod, ResultType string
	InputResponses                                      []string
	Status, ErrorCode                                   int
}

type credentialsResult struct {
	Legacy struct {
		ProtocolVersion string `json:"protocolVersion"`
		Exch, Prov      string
		Tools           []string `json:"tools"`
		Elicitation     struct {
			Unexpected   string `json:"unexpected"`
			Code         int    `json:"code"`
			Elicitations []struct {
				Mode, ElicitationID, URL, Message string
			} `json:"elicitations"`
		} `json:"elicitation"`
	} `json:"legacy"`
	Modern struct {
		Exch, Prov string
		Tools      []string `json:"tools"`
		Error      *failure `json:"error"`
		Elicited   []struct {
			Mode, URL, Message string
		} `json:"elicited"`
	} `json:"modern"`
	Exchanges []credentialsExchange `json:"exchanges"`
}

// runCredentialsClient drives test/e2e/credentials_client.mjs with alice's
// handle, answering its events with on.
func runCredentialsClient(t *testing.T, public, handle, clientID string, on func(credentialsEvent)) *credentialsResult {
	t.Helper()
	res := &credentialsResult{}
	idp.RunScript(t, "e2e/credentials_client.mjs", map[string]string{"baseUrl": public, "handle": handle, "clientId": clientID}, res, func(_ string, line []byte) any {
		var ev credentialsEvent
		if err := json.Unmarshal(line, &ev); err != nil {
			t.Fatalf("credentials client event: %v", err)
		}
		on(ev)
		return map[string]bool{"ok": true}
	})
	return res
}

// checkCredentialsClient checks what the SDK clients saw: the exchange
// mode's token verified upstream for alice and api://exch; on the provider
// server the lists without an account, the URL elicitation in each
// version's form, and the retried call answered by the upstream with the
// provider's verdict on the token Warden attached.
func checkCredentialsClient(t *testing.T, res *credentialsResult, connectPrefix string) {
	t.Helper()
	whoami := "sub=" + idp.Alice + " "
	// 2025-11-25, the v1 SDK.
	l := res.Legacy
	if l.ProtocolVersion != "2025-11-25" || !strings.HasPrefix(l.Exch, whoami) || !strings.Contains(l.Exch, "aud=api://exch") || !strings.Contains(l.Exch, "scope=files.read") {
		t.Errorf("2025-11-25 exchange call: version %q, whoami %q", l.ProtocolVersion, l.Exch)
	}
	if !slices.Contains(l.Tools, "whoami") {
		t.Errorf("2025-11-25 tools/list without an account: %v", l.Tools)
	}
	if e := l.Elicitation; e.Code != -32042 || len(e.Elicitations) != 1 || e.Elicitations[0].Mode != "url" || e.Elicitations[0].ElicitationID == "" ||
		!strings.HasPrefix(e.Elicitations[0].URL, connectPrefix) || e.Elicitations[0].Message == "" {
		t.Errorf("2025-11-25 elicitation as the SDK surfaced it (UrlElicitationRequiredError): %+v", e)
	}
	if !strings.HasPrefix(l.Prov, whoami) {
		t.Errorf("2025-11-25 provider call after connecting: %q", l.Prov)
	}
	// 2026-07-28, the v2 SDK: its multi-round-trip driver gave the
	// elicitation to the handler and retried by itself.
	m := res.Modern
	if !strings.HasPrefix(m.Exch, whoami) || !strings.Contains(m.Exch, "aud=api://exch") {
		t.Errorf("2026-07-28 exchange call: %q", m.Exch)
	}
	if !slices.Contains(m.Tools, "whoami") {
		t.Errorf("2026-07-28 tools/list without an account: %v", m.Tools)
	}
	if len(m.Elicited) != 1 || m.Elicited[0].Mode != "url" || !strings.HasPrefix(m.Elicited[0].URL, connectPrefix) || m.Elicited[0].Message == "" {
		t.Errorf("2026-07-28 elicitations handed to the client's handler: %+v", m.Elicited)
	}
	if m.Error != nil || !strings.HasPrefix(m.Prov, whoami) {
		t.Errorf("2026-07-28 provider call: %q, error %+v", m.Prov, m.Error)
	}
	// On the wire: each client spoke its version; the provider call was
	// answered input_required / -32042 first and the retry went through,
	// the 2026-07-28 one carrying the elicitation's response.
	var provCalls []credentialsExchange
	for _, e := range res.Exchanges {
		if e.RPCMethod == "" {
			continue
		}
		want := "2025-11-25"
		if strings.HasPrefix(e.Phase, "modern") {
			want = "2026-07-28"
		}
		if e.Version != want && e.RPCMethod != "initialize" {
			t.Errorf("a %s request without MCP-Protocol-Version %s: %+v", e.Phase, want, e)
		}
		if e.Path == "/mcp/prov" && e.RPCMethod == "tools/call" {
			provCalls = append(provCalls, e)
		}
	}
	if len(provCalls) != 4 {
		t.Fatalf("provider tools/calls on the wire: %+v, want 4", provCalls)
	}
	first, retry, mfirst, mretry := provCalls[0], provCalls[1], provCalls[2], provCalls[3]
	if first.Status != 200 || first.ErrorCode != -32042 || retry.Status != 200 || retry.ErrorCode != 0 || retry.Phase != "legacy-retry" {
		t.Errorf("2025-11-25 provider calls: %+v then %+v", first, retry)
	}
	if mfirst.Status != 200 || mfirst.ResultType != "input_required" || mretry.Status != 200 || mretry.ResultType == "input_required" ||
		!slices.Equal(mretry.InputResponses, []string{"warden_connect_gh"}) || mretry.Phase != "modern-retry" {
		t.Errorf("2026-07-28 provider calls: %+v then %+v", mfirst, mretry)
	}
	t.Logf("SDK clients: %d exchanges; 2025-11-25 %d then %q; 2026-07-28 %s then %q", len(res.Exchanges), first.ErrorCode, l.Prov, mfirst.ResultType, m.Prov)
}

// connectOutcome is where opening a connect link and pressing Connect
// ended: the provider callback it went through and the last page.
type connectOutcome struct {
	callback string
	page     string
	header   http.Header
}

func (o connectOutcome) callbackQuery() url.Values {
	u, err := url.Parse(o.callback)
	if err != nil {
		return nil
	}
	return u.Query()
}

func (h *harness) cliEnv(t *testing.T, env []string, args ...string) string {
	t.Helper()
	cmd := exec.CommandContext(t.Context(), h.bin, append(args, "--admin-addr", h.admin, "--data-dir", h.dataDir)...)
	cmd.Env = append(wardenbin.CleanEnv(), env...)
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
// its page and its headers (an error page too, with the error).
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
			return req.URL.String(), string(raw), resp.Header, fmt.Errorf("%s answered %d: %s", req.URL.Path, resp.StatusCode, strings.Join(strings.Fields(text), " "))
		}
		return req.URL.String(), string(raw), resp.Header, nil
	}
	return "", "", nil, fmt.Errorf("too many redirects")
}

// connect opens a connect link in a browser (client with cookies) and
// presses Connect; it returns the provider callback URL it went through.
func connect(t *testing.T, client *http.Client, link string) (string, error) {
	t.Helper()
	o, err := connectFlow(t, client, link)
	return o.callback, err
}

// connectFlow is connect, with where it ended.
func connectFlow(t *testing.T, client *http.Client, link string) (connectOutcome, error) {
	t.Helper()
	var o connectOutcome
	if client.Jar == nil {
		client.Jar, _ = cookiejar.New(nil)
	}
	_, page, hdr, err := walk(client, mustGet(link))
	if err != nil {
		return o, err
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
		return o, fmt.Errorf("no connect form on %q", page)
	}
	// Record the callback URL on the way.
	orig := client.CheckRedirect
	client.CheckRedirect = func(r *http.Request, via []*http.Request) error {
		if strings.Contains(r.URL.Path, "/oauth/providers/") && strings.HasSuffix(r.URL.Path, "/callback") {
			o.callback = r.URL.String()
		}
		return http.ErrUseLastResponse
	}
	defer func() { client.CheckRedirect = orig }()
	req, _ := http.NewRequest(http.MethodPost, html.UnescapeString(action[1]), strings.NewReader(form.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	_, o.page, o.header, err = walk(client, req)
	if err != nil {
		return o, err
	}
	if !strings.Contains(o.page, "Connected.") {
		return o, fmt.Errorf("after connecting: %s", tagRE.ReplaceAllString(o.page, " "))
	}
	return o, nil
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
