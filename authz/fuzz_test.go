package authz_test

import (
	"context"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/warden-mcp/warden/internal/mcp"
	"github.com/warden-mcp/warden/internal/registry"
)

// FuzzCheck drives the whole Check input handling with arbitrary methods,
// headers, bodies and route bindings. The placeholder VALID in the
// Authorization value is replaced by a live handle so the fuzzer reaches the
// classifier and policy. Check must always answer, never panic, and allow
// only what a correct request looks like.
func FuzzCheck(f *testing.F) {
	e := newEnv(f)
	e.addServer(registry.Spec{Name: "bi", URL: "http://bi/mcp"})
	tok, _ := e.mint(tokenSpec{servers: []string{"bi"}})
	ctx := context.Background()

	f.Add("POST", "Bearer VALID", "bi", []byte(toolsCall), false, "mcp-session-id", "s")
	f.Add("POST", "Bearer VALID", "bi", []byte(deniedTool), false, "", "")
	f.Add("GET", "Bearer VALID", "bi", []byte(nil), false, "accept", "text/event-stream")
	f.Add("POST", "bearer  VALID", "bi", []byte(`[{"jsonrpc":"2.0","id":1,"method":"ping"}]`), false, "", "")
	f.Add("POST", "Bearer VALID", "", []byte(`{}`), true, "x", "y")
	f.Add("DELETE", "Basic x", "nope", []byte(`{`), false, "authorization", "Bearer VALID")
	f.Fuzz(func(t *testing.T, method, authz, server string, body []byte, partial bool, hk, hv string) {
		authz = strings.ReplaceAll(authz, "VALID", tok)
		hv = strings.ReplaceAll(hv, "VALID", tok)
		r := req{method: method, authz: authz, body: string(body), server: server, noServer: server == "", partial: partial,
			headers: map[string]string{strings.ToLower(hk): hv}}
		cr := r.build()
		resp, err := e.service.Check(ctx, cr)
		if err != nil || resp == nil {
			t.Fatalf("Check must always answer: %v", err)
		}
		if n := testutil.ToFloat64(e.opts.Metrics.Failures.Vec().WithLabelValues("panic")); n != 0 {
			t.Fatalf("Check panicked (%v recovered panics)", n)
		}
		if ok := resp.GetOkResponse(); ok != nil {
			h := cr.Attributes.Request.Http.Headers
			if cr.Attributes.ContextExtensions["server"] != "bi" || !strings.Contains(h["authorization"], tok) {
				t.Fatalf("allowed without a valid token for a bound server: server=%q", server)
			}
			hr := cr.Attributes.Request.Http
			_, perr := mcp.Classify(mcp.Input{Method: hr.Method, Body: hr.RawBody, Partial: h["x-envoy-auth-partial-body"] == "true", Limit: 4096,
				Header: func(k string) (string, bool) { v, ok := h[k]; return v, ok }})
			if perr != nil {
				t.Fatalf("allowed a request the classifier rejects: %v", perr)
			}
			if v, _ := header(ok.GetHeaders(), "authorization"); !strings.HasPrefix(v, "Bearer ey") {
				t.Fatal("allowed without attaching the upstream JWT")
			}
			return
		}
		d := resp.GetDeniedResponse()
		switch d.GetStatus().GetCode() {
		case 400, 401, 403, 404, 413, 503:
		default:
			t.Fatalf("unexpected denial status %d", d.GetStatus().GetCode())
		}
		if d.GetBody() == "" {
			t.Fatal("denial without a body")
		}
	})
}
