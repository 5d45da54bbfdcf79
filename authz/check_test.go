package authz_test

import (
	"context"
	"encoding/json"
	"strings"
	"testing"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"github.com/lestrrat-go/jwx/v2/jwk"
	"github.com/lestrrat-go/jwx/v2/jwt"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"google.golang.org/grpc/codes"

	"github.com/warden-mcp/warden/authz"
	"github.com/warden-mcp/warden/internal/registry"
	"github.com/warden-mcp/warden/internal/store"
	"github.com/warden-mcp/warden/policy"
)

const (
	toolsCall  = `{"jsonrpc":"2.0","id":7,"method":"tools/call","params":{"name":"echo","arguments":{"message":"hi"}}}`
	deniedTool = `{"jsonrpc":"2.0","id":"x-9","method":"tools/call","params":{"name":"delete_everything","arguments":{}}}`
)

// denial is what a denied CheckResponse must look like.
type denial struct {
	status    int
	wwwAuth   []string // substrings of WWW-Authenticate; nil means header absent
	bodyHas   []string // substrings of the body
	rpcCode   int      // JSON-RPC error code in the body, 0 to skip
	rpcID     string   // JSON of the expected id, "" to skip
	auditNote string   // substring of the audit reason
}

func TestCheckDenials(t *testing.T) {
	e := newEnv(t)
	e.addServer(registry.Spec{Name: "bi", URL: "http://bi.internal:8080/mcp"})
	e.addServer(registry.Spec{Name: "hr", URL: "http://hr.internal/mcp", Scopes: []string{"hr.read", "hr.write"}})
	good, _ := e.mint(tokenSpec{servers: []string{"bi"}})
	hrLow, _ := e.mint(tokenSpec{servers: []string{"hr"}, scopes: []string{"hr.read"}})
	expired, _ := e.mint(tokenSpec{servers: []string{"bi"}, ttl: 1 * time.Second})
	refresh, _ := e.mint(tokenSpec{servers: []string{"bi"}, kind: store.HandleRefresh})
	revoked, revokedGrant := e.mint(tokenSpec{servers: []string{"bi"}})
	narrowed, _ := e.mint(tokenSpec{servers: []string{"bi"}, grantServers: []string{"hr"}})
	if err := e.st.UpdateGrant(context.Background(), revokedGrant, func(g store.Grant) (store.Grant, error) {
		g.RevokedAt = time.Now()
		return g, nil
	}); err != nil {
		t.Fatal(err)
	}
	time.Sleep(1100 * time.Millisecond) // let the 1s handle expire

	meta := `resource_metadata="` + prmURL("bi") + `"`
	cases := []struct {
		name string
		req  req
		want denial
	}{
		{"no token", req{body: toolsCall}, denial{status: 401, wwwAuth: []string{"Bearer " + meta}, auditNote: "no bearer token"}},
		{"basic auth", req{authz: "Basic YWxpY2U6cHc=", body: toolsCall}, denial{status: 401, wwwAuth: []string{meta, `error="invalid_token"`}, auditNote: "malformed"}},
		{"empty bearer", req{authz: "Bearer ", body: toolsCall}, denial{status: 401, wwwAuth: []string{`error="invalid_token"`}}},
		{"unknown token", req{token: "wdn_at_forged", body: toolsCall}, denial{status: 401, wwwAuth: []string{meta, `error="invalid_token"`}, auditNote: "unknown"}},
		{"expired token", req{token: expired, body: toolsCall}, denial{status: 401, wwwAuth: []string{`error="invalid_token"`}}},
		{"refresh token as access", req{token: refresh, body: toolsCall}, denial{status: 401, wwwAuth: []string{`error="invalid_token"`}, auditNote: "not an access token"}},
		{"revoked grant", req{token: revoked, body: toolsCall}, denial{status: 401, wwwAuth: []string{`error="invalid_token"`}, auditNote: "revoked"}},
		{"wrong audience", req{token: good, server: "hr", body: toolsCall}, denial{status: 401, wwwAuth: []string{`resource_metadata="` + prmURL("hr") + `"`, `scope="hr.read hr.write"`, `error="invalid_token"`}, auditNote: "audience"}},
		{"server revoked from grant", req{token: narrowed, body: toolsCall}, denial{status: 401, wwwAuth: []string{`error="invalid_token"`}, auditNote: "audience"}},
		{"insufficient scope", req{token: hrLow, server: "hr", body: toolsCall}, denial{status: 403, wwwAuth: []string{`error="insufficient_scope"`, `scope="hr.read hr.write"`, `resource_metadata="` + prmURL("hr") + `"`}}},
		{"no server bound", req{token: good, noServer: true, body: toolsCall}, denial{status: 403, rpcCode: -32600, auditNote: "not bound"}},
		{"unknown server", req{token: good, server: "nope", body: toolsCall}, denial{status: 404, auditNote: "not registered"}},
		{"malformed JSON", req{token: good, body: `{"jsonrpc":"2.0","id":1,`}, denial{status: 400, rpcCode: -32700, bodyHas: []string{"not valid JSON"}}},
		{"invalid request", req{token: good, body: `{"jsonrpc":"2.0","id":3,"method":"tools/call","params":{}}`}, denial{status: 400, rpcCode: -32600, rpcID: "3"}},
		{"partial body", req{token: good, body: `{"jsonrpc":"2.0","id":1,"method":"tools/list"}`, partial: true}, denial{status: 413, rpcCode: -32600, bodyHas: []string{"truncated"}}},
		{"oversized body", req{token: good, body: `{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"echo","arguments":{"x":"` + strings.Repeat("a", 5000) + `"}}}`}, denial{status: 413, rpcCode: -32600, bodyHas: []string{"exceeds"}}},
		{"PUT method", req{token: good, method: "PUT", body: "{}"}, denial{status: 400, rpcCode: -32600}},
		{"policy denies tool", req{token: good, body: deniedTool}, denial{status: 403, rpcCode: authz.CodePolicyDenied, rpcID: `"x-9"`, bodyHas: []string{"tool delete_everything is not allowed for alice"}, auditNote: "not allowed"}},
		{"policy checks arguments", req{token: good, body: `{"jsonrpc":"2.0","id":11,"method":"tools/call","params":{"name":"run_sql","arguments":{"query":"drop table users"}}}`}, denial{status: 403, rpcCode: authz.CodePolicyDenied, rpcID: "11", bodyHas: []string{"DROP statements"}}},
		{"policy error fails closed", req{token: good, body: `{"jsonrpc":"2.0","id":1,"method":"conflict"}`}, denial{status: 503, rpcCode: -32603}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			resp := e.check(c.req)
			d := resp.GetDeniedResponse()
			if d == nil {
				t.Fatalf("allowed, want %d: %v", c.want.status, resp)
			}
			if resp.GetStatus().GetCode() == int32(codes.OK) {
				t.Fatal("denied response with OK status")
			}
			if int(d.GetStatus().GetCode()) != c.want.status {
				t.Fatalf("status %d, want %d (body %s)", d.GetStatus().GetCode(), c.want.status, d.GetBody())
			}
			www, _ := header(d.GetHeaders(), "www-authenticate")
			if c.want.wwwAuth == nil && www != "" && c.want.status != 401 && c.want.status != 403 {
				t.Errorf("unexpected WWW-Authenticate %q", www)
			}
			for _, w := range c.want.wwwAuth {
				if !strings.Contains(www, w) {
					t.Errorf("WWW-Authenticate %q lacks %q", www, w)
				}
			}
			if c.name == "no token" && strings.Contains(www, "error=") {
				t.Errorf("challenge without a token must not carry error=: %q", www)
			}
			for _, w := range c.want.bodyHas {
				if !strings.Contains(d.GetBody(), w) {
					t.Errorf("body %q lacks %q", d.GetBody(), w)
				}
			}
			if ct, _ := header(d.GetHeaders(), "content-type"); ct != "application/json" {
				t.Errorf("content-type %q", ct)
			}
			if c.want.rpcCode != 0 {
				var body struct {
					JSONRPC string          `json:"jsonrpc"`
					ID      json.RawMessage `json:"id"`
					Error   struct {
						Code    int    `json:"code"`
						Message string `json:"message"`
					} `json:"error"`
				}
				if err := json.Unmarshal([]byte(d.GetBody()), &body); err != nil {
					t.Fatalf("body is not a JSON-RPC error: %v: %s", err, d.GetBody())
				}
				if body.JSONRPC != "2.0" || body.Error.Code != c.want.rpcCode || body.Error.Message == "" {
					t.Errorf("JSON-RPC error %+v, want code %d", body, c.want.rpcCode)
				}
				if c.want.rpcID != "" && string(body.ID) != c.want.rpcID {
					t.Errorf("id %s, want %s", body.ID, c.want.rpcID)
				}
			}
		})
	}

	// One audit event per decision, none of them an allow, with the reasons.
	evs := e.auditEvents(t, len(cases))
	if len(evs) != len(cases) {
		t.Fatalf("%d decision events for %d checks", len(evs), len(cases))
	}
	for i, c := range cases {
		ev := evs[i]
		if ev.Decision != "deny" || ev.Status != c.want.status {
			t.Errorf("%s: audit %+v", c.name, ev)
		}
		if c.want.auditNote != "" && !strings.Contains(ev.Reason, c.want.auditNote) {
			t.Errorf("%s: audit reason %q lacks %q", c.name, ev.Reason, c.want.auditNote)
		}
	}
	policyDenied := evs[17]
	if policyDenied.Tool != "delete_everything" || policyDenied.Method != "tools/call" || policyDenied.Subject != "alice" || policyDenied.ClientID != "client-1" || policyDenied.PolicyRev == "" || policyDenied.RequestID == "" {
		t.Errorf("policy denial audit lacks context: %+v", policyDenied)
	}
	e.assertNoTokenLeak(t)
	if got := testutil.ToFloat64(e.opts.Metrics.Failures.Vec().WithLabelValues("policy")); got != 1 {
		t.Errorf("policy failures metric %v, want 1", got)
	}
}

func (e *env) assertNoTokenLeak(t testing.TB) {
	t.Helper()
	logs := e.logs.String()
	evs, _ := e.st.ListAudit(context.Background(), 0, 0)
	raw, _ := json.Marshal(evs)
	for _, tok := range e.tokens {
		if strings.Contains(logs, tok) || strings.Contains(string(raw), tok) {
			t.Fatalf("a raw token appears in logs or audit")
		}
	}
}

func TestCheckAllowJWT(t *testing.T) {
	e := newEnv(t)
	e.addServer(registry.Spec{Name: "bi", URL: "http://bi.internal:8080/mcp", Scopes: []string{"bi.read"}})
	tok, grantID := e.mint(tokenSpec{servers: []string{"bi"}, scopes: []string{"bi.read", "extra"}, groups: []string{"finance"}})

	resp := e.check(req{token: tok, body: toolsCall, headers: map[string]string{"x-warden-subject": "mallory", "mcp-session-id": "s-1"}})
	ok := resp.GetOkResponse()
	if ok == nil || resp.GetStatus().GetCode() != int32(codes.OK) {
		t.Fatalf("denied: %v", resp)
	}
	authzHdr, opt := header(ok.GetHeaders(), "authorization")
	if opt == nil || opt.GetAppendAction() != corev3.HeaderValueOption_OVERWRITE_IF_EXISTS_OR_ADD {
		t.Fatalf("authorization not set with OVERWRITE_IF_EXISTS_OR_ADD: %v", opt)
	}
	if !strings.HasPrefix(authzHdr, "Bearer ") || strings.Contains(authzHdr, tok) {
		t.Fatal("upstream credential is not a fresh bearer token")
	}
	pub, err := jwk.Parse(e.signer.PublicJWKS())
	if err != nil {
		t.Fatal(err)
	}
	jt, err := jwt.Parse([]byte(strings.TrimPrefix(authzHdr, "Bearer ")), jwt.WithKeySet(pub), jwt.WithValidate(true),
		jwt.WithIssuer(publicURL), jwt.WithAudience(resourceURL("bi")))
	if err != nil {
		t.Fatalf("upstream JWT does not verify against the JWKS: %v", err)
	}
	if jt.Subject() != "alice" || jt.Expiration().Sub(jt.IssuedAt()) > 5*time.Minute || jt.JwtID() == "" {
		t.Errorf("claims: sub=%s exp-iat=%s jti=%q", jt.Subject(), jt.Expiration().Sub(jt.IssuedAt()), jt.JwtID())
	}
	claims := jt.PrivateClaims()
	if claims["client_id"] != "client-1" || claims["scope"] != "bi.read extra" {
		t.Errorf("private claims %v", claims)
	}
	if act, _ := claims["act"].(map[string]any); act["sub"] != "client-1" {
		t.Errorf("act claim %v", claims["act"])
	}
	if v, _ := header(ok.GetHeaders(), "x-warden-subject"); v != "alice" {
		t.Errorf("identity header %q: a client-sent value must be overwritten", v)
	}
	if v, _ := header(ok.GetHeaders(), "x-warden-client"); v != "client-1" {
		t.Errorf("client header %q", v)
	}

	// A second check reuses the cached JWT.
	resp2 := e.check(req{token: tok, body: `{"jsonrpc":"2.0","id":8,"method":"tools/list"}`})
	again, _ := header(resp2.GetOkResponse().GetHeaders(), "authorization")
	if again != authzHdr {
		t.Error("JWT not cached per grant and server")
	}
	// GET (SSE stream) and DELETE (session end) are classified and allowed.
	for _, m := range []string{"GET", "DELETE"} {
		if r := e.check(req{token: tok, method: m, headers: map[string]string{"mcp-session-id": "s-1"}}); r.GetOkResponse() == nil {
			t.Errorf("%s denied: %v", m, r)
		}
	}
	// Batch of allowed messages, sent in the body field (no pack_as_bytes).
	batch := `[{"jsonrpc":"2.0","id":1,"method":"tools/list"},{"jsonrpc":"2.0","method":"notifications/initialized"}]`
	if r := e.check(req{token: tok, body: batch, useBodyField: true}); r.GetOkResponse() == nil {
		t.Errorf("allowed batch denied: %v", r)
	}

	evs := e.auditEvents(t, 5)
	if len(evs) != 5 {
		t.Fatalf("%d audit events for 5 checks", len(evs))
	}
	first := evs[0]
	if first.Decision != "allow" || first.Tool != "echo" || first.Method != "tools/call" || first.GrantID != grantID || first.Server != "bi" || first.Kind != store.KindUser {
		t.Errorf("allow audit event %+v", first)
	}
	if evs[2].Method != "GET (stream)" || evs[3].Method != "DELETE (session end)" {
		t.Errorf("stream/session audit methods: %q %q", evs[2].Method, evs[3].Method)
	}
	e.assertNoTokenLeak(t)
}

func TestCheckBatchWithOneDeniedMessage(t *testing.T) {
	e := newEnv(t)
	e.addServer(registry.Spec{Name: "bi", URL: "http://bi/mcp"})
	tok, _ := e.mint(tokenSpec{servers: []string{"bi"}})
	batch := `[{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"echo"}},{"jsonrpc":"2.0","id":2,"method":"tools/call","params":{"name":"rm_rf"}},{"jsonrpc":"2.0","method":"notifications/x"}]`
	d := e.check(req{token: tok, body: batch}).GetDeniedResponse()
	if d == nil || d.GetStatus().GetCode() != 403 {
		t.Fatalf("batch with a denied message: %v", d)
	}
	var errs []struct {
		ID    json.RawMessage `json:"id"`
		Error struct {
			Code    int    `json:"code"`
			Message string `json:"message"`
		} `json:"error"`
	}
	if err := json.Unmarshal([]byte(d.GetBody()), &errs); err != nil {
		t.Fatalf("batch denial is not an array of JSON-RPC errors: %s", d.GetBody())
	}
	if len(errs) != 2 || string(errs[0].ID) != "1" || string(errs[1].ID) != "2" {
		t.Fatalf("errors for requests 1 and 2 expected: %s", d.GetBody())
	}
	if !strings.Contains(errs[1].Error.Message, "rm_rf is not allowed") || !strings.Contains(errs[0].Error.Message, "batch refused") {
		t.Errorf("messages: %+v", errs)
	}
	ev := e.auditEvents(t, 1)[0]
	if ev.Tool != "rm_rf" || ev.Details["batch_size"] != float64(3) {
		t.Errorf("audit of the batch names the denied message: %+v", ev)
	}
}

func TestCheckCredentialModes(t *testing.T) {
	e := newEnv(t)
	e.addServer(registry.Spec{Name: "bi", URL: "http://bi/mcp", Credential: "static", StaticHeader: "X-Api-Key", StaticSecret: "s3cr3t-key"})
	e.addServer(registry.Spec{Name: "hr", URL: "http://hr/mcp", Credential: "static", StaticSecret: "Bearer upstream-pat"})
	e.addServer(registry.Spec{Name: "legal", URL: "http://legal/mcp", Credential: "none"})
	tok, _ := e.mint(tokenSpec{servers: []string{"bi", "hr", "legal"}})
	cases := []struct {
		server     string
		set        map[string]string
		removeAuth bool
	}{
		{"bi", map[string]string{"x-api-key": "s3cr3t-key"}, true},
		{"hr", map[string]string{"authorization": "Bearer upstream-pat"}, false},
		{"legal", map[string]string{}, true},
	}
	for _, c := range cases {
		t.Run(c.server, func(t *testing.T) {
			ok := e.check(req{token: tok, server: c.server, body: toolsCall}).GetOkResponse()
			if ok == nil {
				t.Fatal("denied")
			}
			for k, v := range c.set {
				got, opt := header(ok.GetHeaders(), k)
				if got != v || opt.GetAppendAction() != corev3.HeaderValueOption_OVERWRITE_IF_EXISTS_OR_ADD {
					t.Errorf("%s = %q (%v), want %q overwritten", k, got, opt.GetAppendAction(), v)
				}
			}
			removes := strings.Join(ok.GetHeadersToRemove(), ",")
			if c.removeAuth != strings.Contains(removes, "authorization") {
				t.Errorf("headers_to_remove %q", removes)
			}
			if v, _ := header(ok.GetHeaders(), "authorization"); strings.Contains(v, tok) {
				t.Error("client token passed through")
			}
		})
	}
	if strings.Contains(e.logs.String(), "s3cr3t-key") || strings.Contains(e.logs.String(), "upstream-pat") {
		t.Fatal("static secret in logs or audit sink")
	}
}

func TestFailClosed(t *testing.T) {
	t.Run("store failure", func(t *testing.T) {
		e := newEnv(t)
		e.addServer(registry.Spec{Name: "bi", URL: "http://bi/mcp"})
		tok, _ := e.mint(tokenSpec{servers: []string{"bi"}})
		// Warm the catalog, then take the database away under the service.
		if r := e.check(req{token: tok, body: toolsCall}); r.GetOkResponse() == nil {
			t.Fatal("warm-up denied")
		}
		_ = e.st.Close()
		d := e.check(req{token: tok, body: toolsCall}).GetDeniedResponse()
		if d == nil || d.GetStatus().GetCode() != 503 {
			t.Fatalf("closed store: %v", d)
		}
		if got := testutil.ToFloat64(e.opts.Metrics.Failures.Vec().WithLabelValues("store")); got != 1 {
			t.Errorf("store failure metric %v", got)
		}
	})
	t.Run("timeout", func(t *testing.T) {
		e := newEnv(t, func(o *authz.Options) { o.Timeout = time.Nanosecond })
		e.addServer(registry.Spec{Name: "bi", URL: "http://bi/mcp"})
		tok, _ := e.mint(tokenSpec{servers: []string{"bi"}})
		d := e.check(req{token: tok, body: toolsCall}).GetDeniedResponse()
		if d == nil || d.GetStatus().GetCode() != 503 {
			t.Fatalf("expired deadline: %v", d)
		}
	})
	t.Run("panic", func(t *testing.T) {
		e := newEnv(t, func(o *authz.Options) { o.Policy = panicky{} })
		e.addServer(registry.Spec{Name: "bi", URL: "http://bi/mcp"})
		tok, _ := e.mint(tokenSpec{servers: []string{"bi"}})
		d := e.check(req{token: tok, body: toolsCall}).GetDeniedResponse()
		if d == nil || d.GetStatus().GetCode() != 503 {
			t.Fatalf("panic: %v", d)
		}
		if got := testutil.ToFloat64(e.opts.Metrics.Failures.Vec().WithLabelValues("panic")); got != 1 {
			t.Errorf("panic metric %v", got)
		}
		// The server survived and still answers.
		if d := e.check(req{body: toolsCall}).GetDeniedResponse(); d.GetStatus().GetCode() != 401 {
			t.Errorf("after panic: %v", d)
		}
	})
	t.Run("audit unavailable", func(t *testing.T) {
		e := newEnv(t)
		e.addServer(registry.Spec{Name: "bi", URL: "http://bi/mcp"})
		tok, _ := e.mint(tokenSpec{servers: []string{"bi"}})
		_ = e.trail.Close(context.Background())
		d := e.check(req{token: tok, body: toolsCall}).GetDeniedResponse()
		if d == nil || d.GetStatus().GetCode() != 503 {
			t.Fatalf("allow without audit: %v", d)
		}
	})
}

// panicky is a policy that panics: the only way to prove the recover path,
// since the real engine does not panic on demand.
type panicky struct{}

func (panicky) Decide(context.Context, *policyInput) (policyDecision, error) { panic("boom") }
func (panicky) Revision() string                                             { return "panicky" }
func (panicky) Needs() policy.Needs                                          { return policy.Needs{} }

type (
	policyInput    = policy.Input
	policyDecision = policy.Decision
)

var _ = authv3.CheckRequest{}

func TestServerFromPath(t *testing.T) {
	on := newEnv(t, func(o *authz.Options) { o.ServerFromPath = true })
	off := newEnv(t)
	for _, e := range []*env{on, off} {
		e.addServer(registry.Spec{Name: "bi", URL: "http://bi/mcp"})
	}
	tokOn, _ := on.mint(tokenSpec{servers: []string{"bi"}})
	tokOff, _ := off.mint(tokenSpec{servers: []string{"bi"}})
	cases := []struct {
		path   string
		status int // 0 means allowed
	}{
		{"/mcp/bi", 0},
		{"/mcp/bi/", 0},
		{"/mcp/bi?x=1", 0},
		{"/mcp/hr", 404},
		{"/mcp/", 403},
		{"/other/bi", 403},
		{"/mcp/BI", 403},
	}
	for _, c := range cases {
		resp := on.check(req{token: tokOn, noServer: true, path: c.path, body: toolsCall})
		got := int(resp.GetDeniedResponse().GetStatus().GetCode())
		if got != c.status {
			t.Errorf("server_from_path on, %s: status %d, want %d", c.path, got, c.status)
		}
	}
	// Off by default: the route must bind the server.
	if d := off.check(req{token: tokOff, noServer: true, path: "/mcp/bi", body: toolsCall}).GetDeniedResponse(); d.GetStatus().GetCode() != 403 {
		t.Errorf("server_from_path off: %v", d)
	}
}
