package authz_test

import (
	"context"
	"strings"
	"testing"

	"github.com/warden-mcp/warden/authz"
	"github.com/warden-mcp/warden/internal/registry"
)

// Issue 12: a nil *Attacher or a nil func is a missing option, reported by
// New, not a panic on the first allowed Check.
func TestNewReportsEachMissingOption(t *testing.T) {
	e := newEnv(t)
	cases := map[string]func(o *authz.Options){
		"Attacher":            func(o *authz.Options) { o.Attacher = nil },
		"ResourceURL":         func(o *authz.Options) { o.ResourceURL = nil },
		"ResourceMetadataURL": func(o *authz.Options) { o.ResourceMetadataURL = nil },
		"Resolver":            func(o *authz.Options) { o.Resolver = nil },
		"Servers":             func(o *authz.Options) { o.Servers = (*authz.Catalog)(nil) },
		"Policy":              func(o *authz.Options) { o.Policy = nil },
		"Audit":               func(o *authz.Options) { o.Audit = nil },
		"PublicURL":           func(o *authz.Options) { o.PublicURL = "" },
	}
	for name, mutate := range cases {
		t.Run(name, func(t *testing.T) {
			o := e.opts
			mutate(&o)
			svc, err := authz.New(o)
			if err == nil {
				t.Fatalf("New accepted options without %s (service %v)", name, svc != nil)
			}
			if !strings.Contains(err.Error(), name) {
				t.Fatalf("error %q does not name %s", err, name)
			}
		})
	}
	o := e.opts
	o.AllowedOrigins = []string{"not an origin"}
	if _, err := authz.New(o); err == nil {
		t.Fatal("an allowed origin that is not scheme://host was accepted")
	}
}

// Issue 12: the status of a classification failure follows the error's
// kind, not words in its message. Each message here carries "exceeds" or
// "truncated" from the request itself and must stay a 400.
func TestClassificationStatusIsChosenByKind(t *testing.T) {
	e := newEnv(t)
	e.addServer(registry.Spec{Name: "bi", URL: "http://bi/mcp"})
	tok, _ := e.mint(tokenSpec{servers: []string{"bi"}})
	cases := []req{
		{token: tok, method: "exceeds", body: "{}"},
		{token: tok, method: "truncated", body: "{}"},
		{token: tok, body: `{"jsonrpc":"2.0","id":1,"method":"ping","params":{"exceeds":1,"exceeds":2}}`},
		{token: tok, body: `{"jsonrpc":"2.0","id":1,"method":"ping","params":{"truncated":1,"Truncated":2}}`},
	}
	for _, r := range cases {
		d := e.check(r).GetDeniedResponse()
		if got := d.GetStatus().GetCode(); got != 400 {
			t.Errorf("%s %s: status %d, want 400 (%s)", r.method, r.body, got, d.GetBody())
		}
	}
}

// Issue 13: the audit's request id is Envoy's x-request-id (what its
// access log shows), not the ext_authz attribute id (a stream id).
func TestAuditRecordsXRequestID(t *testing.T) {
	e := newEnv(t)
	e.addServer(registry.Spec{Name: "bi", URL: "http://bi/mcp"})
	tok, _ := e.mint(tokenSpec{servers: []string{"bi"}})
	cr := req{token: tok, body: toolsCall}.build()
	cr.Attributes.Request.Http.Id = "18446744073709551615" // Envoy's stream id
	cr.Attributes.Request.Http.Headers["x-request-id"] = "8f2c1e4a-7d3b-4c55-9f1e-2b6a0c9d8e71"
	resp, err := e.client.Check(context.Background(), cr)
	if err != nil || resp.GetOkResponse() == nil {
		t.Fatalf("denied: %v %v", resp, err)
	}
	ev := e.auditEvents(t, 1)[0]
	if ev.RequestID != "8f2c1e4a-7d3b-4c55-9f1e-2b6a0c9d8e71" {
		t.Fatalf("audit request id %q, want the x-request-id", ev.RequestID)
	}
}

// Issue 13: with server_from_path, a path an upstream could resolve to
// another server is refused, never bound to the first segment.
func TestServerFromPathRefusesAmbiguousPaths(t *testing.T) {
	e := newEnv(t, func(o *authz.Options) { o.ServerFromPath = true })
	e.addServer(registry.Spec{Name: "hr", URL: "http://hr/mcp"})
	e.addServer(registry.Spec{Name: "payroll", URL: "http://payroll/mcp"})
	tok, _ := e.mint(tokenSpec{servers: []string{"hr"}})
	for _, p := range []string{
		"/mcp/hr/../payroll", "/mcp/hr/..%2Fpayroll", "/mcp/hr/..%2fpayroll", "/mcp/hr%2F..%2Fpayroll",
		"/mcp/hr/%2e%2e/payroll", "/mcp/hr/.%2E/payroll", "/mcp/hr/./x", "/mcp/hr\\..\\payroll", "/mcp/hr%5C..%5Cpayroll",
		"/mcp/hr/%252e%252e/payroll",
	} {
		d := e.check(req{token: tok, noServer: true, path: p, body: toolsCall}).GetDeniedResponse()
		if d == nil {
			t.Errorf("%s: allowed as hr", p)
			continue
		}
		if got := d.GetStatus().GetCode(); got != 400 {
			t.Errorf("%s: status %d, want 400", p, got)
		}
	}
	if r := e.check(req{token: tok, noServer: true, path: "/mcp/hr/", body: toolsCall}); r.GetOkResponse() == nil {
		t.Errorf("plain /mcp/hr/ denied: %v", r.GetDeniedResponse())
	}
}

// Issue 13 (conformance dns-rebinding-protection): Origin and Host must be
// the gateway's own; requests without Origin (non-browser clients) pass.
func TestOriginAndHostAreValidated(t *testing.T) {
	e := newEnv(t, func(o *authz.Options) {
		o.AllowedOrigins = []string{"http://localhost:6274"}
		o.AllowedHosts = []string{"gw.internal:8443"}
	})
	e.addServer(registry.Spec{Name: "bi", URL: "http://bi/mcp"})
	tok, _ := e.mint(tokenSpec{servers: []string{"bi"}})
	cases := []struct {
		host, origin string // origin "" means no Origin header
		status       int    // 0: allowed
	}{
		{"mcp.example.com", "", 0},
		{"MCP.example.com:443", "", 0},
		{"mcp.example.com", "https://mcp.example.com", 0},
		{"mcp.example.com", "https://MCP.example.com:443", 0},
		{"mcp.example.com", "http://localhost:6274", 0},
		{"gw.internal:8443", "", 0},
		{"mcp.example.com", "http://evil.example.com", 403},
		{"mcp.example.com", "null", 403},
		{"mcp.example.com", "http://mcp.example.com", 403}, // scheme differs
		{"mcp.example.com", "https://mcp.example.com.evil.example", 403},
		{"evil.example.com", "", 403},
		{"evil.example.com", "http://evil.example.com", 403},
		{"", "", 403},
	}
	for _, c := range cases {
		cr := req{token: tok, body: toolsCall}.build()
		cr.Attributes.Request.Http.Host = c.host
		cr.Attributes.Request.Http.Headers[":authority"] = c.host
		if c.origin != "" {
			cr.Attributes.Request.Http.Headers["origin"] = c.origin
		}
		resp, err := e.client.Check(context.Background(), cr)
		if err != nil {
			t.Fatal(err)
		}
		got := int(resp.GetDeniedResponse().GetStatus().GetCode())
		if got != c.status {
			t.Errorf("Host %q Origin %q: status %d, want %d (%s)", c.host, c.origin, got, c.status, resp.GetDeniedResponse().GetBody())
		}
	}
	// Refused before the caller is looked at: no challenge to sign in.
	cr := req{body: toolsCall, headers: map[string]string{"origin": "http://evil.example.com"}}.build()
	resp, _ := e.client.Check(context.Background(), cr)
	if d := resp.GetDeniedResponse(); d.GetStatus().GetCode() != 403 {
		t.Errorf("bad Origin without a token: %v", d)
	}
}
