package admin_test

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/warden-mcp/warden/internal/admin"
	"github.com/warden-mcp/warden/internal/adminauth"
	"github.com/warden-mcp/warden/internal/audit"
	"github.com/warden-mcp/warden/internal/grant"
	"github.com/warden-mcp/warden/internal/handle"
	"github.com/warden-mcp/warden/internal/registry"
	"github.com/warden-mcp/warden/internal/seal"
	"github.com/warden-mcp/warden/internal/store"
)

type fixture struct {
	url   string
	token string
	// auditor and operator are tokens of those roles; the operator's
	// scope is servers labelled team=hr.
	auditor, operator string
	st                *store.Badger
}

func setup(t *testing.T, mod func(*admin.Options)) fixture {
	t.Helper()
	ctx := context.Background()
	st, err := store.OpenBadger(t.TempDir(), store.BadgerOptions{})
	if err != nil {
		t.Fatal(err)
	}
	trail, _ := audit.Open(ctx, st, audit.Options{})
	key, _ := seal.Generate()
	ring, _ := seal.New("k", map[string][]byte{"k": key})
	reg := registry.New(st, trail, ring, nil)
	tok, _ := handle.New(handle.PrefixAdmin)
	aud, _ := handle.New(handle.PrefixAdmin)
	op, _ := handle.New(handle.PrefixAdmin)
	grants, err := grant.New(grant.Options{Store: st, Audit: trail})
	if err != nil {
		t.Fatal(err)
	}
	o := admin.Options{
		Tokens: adminauth.Tokens{
			{Name: "ops-alice", Sum: handle.Sum(tok), Role: adminauth.RoleAdmin},
			{Name: "siem", Sum: handle.Sum(aud), Role: adminauth.RoleAuditor},
			{Name: "hr-ci", Sum: handle.Sum(op), Role: adminauth.RoleOperator, ServerLabels: map[string]string{"team": "hr"}},
		},
		Store: st, Registry: reg, Grants: grants, Audit: trail,
		ResourceURL: func(s string) string { return "https://mcp.example.com/mcp/" + s },
		Gatherer:    prometheus.NewRegistry(),
		Ready:       map[string]admin.Check{"store": func() error { return nil }},
	}
	if mod != nil {
		mod(&o)
	}
	srv := httptest.NewServer(admin.New(o))
	t.Cleanup(func() {
		srv.Close()
		_ = trail.Close(ctx)
		_ = st.Close()
	})
	return fixture{url: srv.URL, token: tok, auditor: aud, operator: op, st: st}
}

func (f fixture) do(t *testing.T, method, path, token string, body any) (int, map[string]any, []byte) {
	t.Helper()
	var rd io.Reader
	switch b := body.(type) {
	case nil:
	case string:
		rd = strings.NewReader(b)
	default:
		raw, _ := json.Marshal(b)
		rd = bytes.NewReader(raw)
	}
	req, _ := http.NewRequest(method, f.url+path, rd)
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	// A client-chosen actor name is ignored: the token says who it is.
	req.Header.Set("X-Warden-Actor", "mallory")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	var m map[string]any
	_ = json.Unmarshal(raw, &m)
	return resp.StatusCode, m, raw
}

func TestAdminTokenRequired(t *testing.T) {
	f := setup(t, nil)
	for _, tok := range []string{"", "wdn_admin_wrong", f.token + "x"} {
		if code, _, _ := f.do(t, "GET", "/api/v1/servers", tok, nil); code != 401 {
			t.Errorf("token %q: status %d, want 401", tok, code)
		}
	}
	if code, _, _ := f.do(t, "GET", "/api/v1/servers", f.token, nil); code != 200 {
		t.Errorf("valid token: %d", code)
	}
	// Health endpoints are open; pprof is off unless enabled.
	if code, _, _ := f.do(t, "GET", "/healthz", "", nil); code != 200 {
		t.Errorf("healthz %d", code)
	}
	if code, m, _ := f.do(t, "GET", "/readyz", "", nil); code != 200 || m["ready"] != true {
		t.Errorf("readyz %d %v", code, m)
	}
	if code, _, _ := f.do(t, "GET", "/debug/pprof/", f.token, nil); code != 404 {
		t.Errorf("pprof served without being enabled: %d", code)
	}
}

func TestReadyzReportsFailingChecks(t *testing.T) {
	f := setup(t, func(o *admin.Options) {
		o.Ready["policy"] = func() error { return io.ErrUnexpectedEOF }
	})
	code, m, _ := f.do(t, "GET", "/readyz", "", nil)
	checks, _ := m["checks"].(map[string]any)
	if code != 503 || checks["policy"] != io.ErrUnexpectedEOF.Error() || checks["store"] != "ok" {
		t.Fatalf("readyz %d %v", code, m)
	}
}

func TestServersAPI(t *testing.T) {
	f := setup(t, func(o *admin.Options) {
		o.ServerProblem = func(s store.Server) error {
			if s.Name == "odd" {
				return io.ErrShortWrite
			}
			return nil
		}
	})
	cases := []struct {
		method, path string
		body         any
		status       int
		has          string
	}{
		{"POST", "/api/v1/servers", map[string]any{"name": "bi", "url": "http://bi/mcp", "scopes": []string{"bi.read"}}, 201, `"resource": "https://mcp.example.com/mcp/bi"`},
		{"POST", "/api/v1/servers", map[string]any{"name": "bi", "url": "http://bi/mcp"}, 409, "already exists"},
		{"POST", "/api/v1/servers", map[string]any{"name": "Bad Name", "url": "ftp://x"}, 400, "scheme must be http or https"},
		{"POST", "/api/v1/servers", `{"name": "x", "url": "http://x", "surprise": 1}`, 400, "unknown field"},
		{"POST", "/api/v1/servers", `{"name": `, 400, "invalid JSON"},
		{"POST", "/api/v1/servers", `{"name": "big", "description": "` + strings.Repeat("a", 2<<20) + `"}`, 413, ""},
		{"POST", "/api/v1/servers", map[string]any{"name": "hr", "url": "http://hr/mcp", "credential": "static", "static_secret": "s3cret"}, 201, `"has_static_secret": true`},
		{"POST", "/api/v1/servers", map[string]any{"name": "odd", "url": "http://odd/mcp"}, 201, `"xds_error"`},
		{"GET", "/api/v1/servers/bi", nil, 200, `"bi.read"`},
		{"GET", "/api/v1/servers/nope", nil, 404, "not found"},
		{"PUT", "/api/v1/servers/bi", map[string]any{"url": "http://bi2/mcp"}, 200, "http://bi2/mcp"},
		{"PUT", "/api/v1/servers/bi", map[string]any{"name": "other", "url": "http://x"}, 400, "cannot be renamed"},
		{"DELETE", "/api/v1/servers/odd", nil, 204, ""},
		{"DELETE", "/api/v1/servers/odd", nil, 404, ""},
	}
	for _, c := range cases {
		code, _, raw := f.do(t, c.method, c.path, f.token, c.body)
		if code != c.status || !strings.Contains(string(raw), c.has) {
			t.Errorf("%s %s: %d %s, want %d containing %q", c.method, c.path, code, raw, c.status, c.has)
		}
		if strings.Contains(string(raw), "s3cret") || strings.Contains(string(raw), `"ct"`) {
			t.Errorf("%s %s leaked the static secret: %s", c.method, c.path, raw)
		}
	}
	_, _, raw := f.do(t, "GET", "/api/v1/servers", f.token, nil)
	var list []map[string]any
	_ = json.Unmarshal(raw, &list)
	if len(list) != 2 {
		t.Fatalf("servers after the table: %s", raw)
	}
	evs, _ := f.st.ListAudit(context.Background(), 0, 0)
	if len(evs) == 0 || evs[0].Actor != "token:ops-alice" {
		t.Fatalf("admin changes not audited with the token's name: %+v", evs)
	}
}

func TestTokensAndRevocation(t *testing.T) {
	f := setup(t, nil)
	f.do(t, "POST", "/api/v1/servers", f.token, map[string]any{"name": "bi", "url": "http://bi/mcp"})
	bad := []struct {
		body any
		has  string
	}{
		{map[string]any{"servers": []string{"bi"}}, "subject is required"},
		{map[string]any{"subject": "agent"}, "at least one server"},
		{map[string]any{"subject": "agent", "servers": []string{"nope"}}, "is not registered"},
		{map[string]any{"subject": "agent", "servers": []string{"bi"}, "ttl": "forever"}, "not a positive duration"},
		{map[string]any{"subject": "agent", "servers": []string{"bi"}, "ttl": "10000h"}, "exceeds the maximum"},
	}
	for _, b := range bad {
		if code, _, raw := f.do(t, "POST", "/api/v1/tokens", f.token, b.body); code != 400 || !strings.Contains(string(raw), b.has) {
			t.Errorf("%v: %d %s", b.body, code, raw)
		}
	}
	code, m, _ := f.do(t, "POST", "/api/v1/tokens", f.token, map[string]any{"subject": "agent", "servers": []string{"bi"}, "groups": []string{"ops"}, "ttl": "1h"})
	if code != 201 {
		t.Fatalf("mint: %d %v", code, m)
	}
	raw := m["access_token"].(string)
	h, g, err := f.st.ResolveHandle(context.Background(), handle.Digest(raw))
	if err != nil || g.Kind != store.KindService || g.Groups[0] != "ops" || h.Resources[0] != "https://mcp.example.com/mcp/bi" {
		t.Fatalf("minted handle: %v %+v %+v", err, h, g)
	}
	if time.Until(h.ExpiresAt) > time.Hour+time.Minute {
		t.Fatalf("ttl ignored: %v", h.ExpiresAt)
	}
	// Only the digest is stored: the raw token appears nowhere in the trail.
	evs, _ := f.st.ListAudit(context.Background(), 0, 0)
	all, _ := json.Marshal(evs)
	if strings.Contains(string(all), raw) {
		t.Fatal("raw token in the audit trail")
	}
	if _, _, raw := f.do(t, "GET", "/api/v1/grants?user=agent", f.token, nil); !strings.Contains(string(raw), `"subject": "agent"`) {
		t.Fatalf("grants list: %s", raw)
	}
	if code, _, raw := f.do(t, "POST", "/api/v1/revoke", f.token, map[string]any{"user": "agent", "client": "x"}); code != 400 || !strings.Contains(string(raw), "exactly one") {
		t.Fatalf("ambiguous revoke: %d %s", code, raw)
	}
	code, m, _ = f.do(t, "POST", "/api/v1/revoke", f.token, map[string]any{"user": "agent", "reason": "offboarded"})
	if code != 200 || len(m["revoked"].([]any)) != 1 {
		t.Fatalf("revoke: %d %v", code, m)
	}
	if _, g, _ := f.st.ResolveHandle(context.Background(), handle.Digest(raw)); !g.Revoked() || g.RevokedBy != "token:ops-alice" {
		t.Fatalf("grant not revoked by the actor: %+v", g)
	}
	_, _, listRaw := f.do(t, "GET", "/api/v1/grants?user=agent&all=true", f.token, nil)
	if !strings.Contains(string(listRaw), "offboarded") {
		t.Fatalf("revoked grant not listed with its reason: %s", listRaw)
	}
}

func TestAuditAPI(t *testing.T) {
	f := setup(t, nil)
	for i := 0; i < 5; i++ {
		f.do(t, "POST", "/api/v1/servers", f.token, map[string]any{"name": "s" + string(rune('a'+i)), "url": "http://x/mcp"})
	}
	_, _, raw := f.do(t, "GET", "/api/v1/audit?limit=2", f.token, nil)
	var evs []store.AuditEvent
	_ = json.Unmarshal(raw, &evs)
	if len(evs) != 2 || evs[0].Seq != 4 || evs[1].Seq != 5 {
		t.Fatalf("tail: %s", raw)
	}
	_, _, raw = f.do(t, "GET", "/api/v1/audit?from=2&limit=2", f.token, nil)
	evs = nil
	_ = json.Unmarshal(raw, &evs)
	if len(evs) != 2 || evs[0].Seq != 2 {
		t.Fatalf("page: %s", raw)
	}
	if code, _, _ := f.do(t, "GET", "/api/v1/audit?limit=0", f.token, nil); code != 400 {
		t.Fatalf("bad limit: %d", code)
	}
	code, m, _ := f.do(t, "GET", "/api/v1/audit/verify", f.token, nil)
	if code != 200 || m["events"] != float64(5) {
		t.Fatalf("verify: %d %v", code, m)
	}
}
