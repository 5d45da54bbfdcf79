package authz_test

import (
	"testing"

	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"

	"github.com/warden-mcp/warden/authz"
	"github.com/warden-mcp/warden/internal/registry"
)

// Each Check over real gRPC is one span: a child of the traceparent
// Envoy forwards in the headers, or else of the 2026-07-28 message's
// _meta.traceparent, or a new trace; with the decision and no token.
func TestCheckSpansContinueTheCallersTrace(t *testing.T) {
	exp := tracetest.NewInMemoryExporter()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSyncer(exp))
	defer tp.Shutdown(t.Context())
	e := newEnv(t, func(o *authz.Options) { o.Tracer = tp.Tracer("warden/authz") })
	e.addServer(registry.Spec{Name: "bi", URL: "http://bi.internal:8080/mcp"})
	tok, _ := e.mint(tokenSpec{servers: []string{"bi"}})

	const (
		envoyTrace  = "4bf92f3577b34da6a3ce929d0e0e4736"
		envoyParent = "00f067aa0ba902b7"
		metaTrace   = "0af7651916cd43dd8448eb211c80319c"
		metaParent  = "b7ad6b7169203331"
	)
	call := `{"jsonrpc":"2.0","id":5,"method":"tools/call","params":{"name":"echo","arguments":{"message":"hi"}}}`
	withMeta := `{"jsonrpc":"2.0","id":5,"method":"tools/call","params":{"name":"echo","arguments":{"message":"hi"},"_meta":{"io.modelcontextprotocol/protocolVersion":"2026-07-28","traceparent":"00-` + metaTrace + `-` + metaParent + `-01"}}}`
	modern := modernHeaders("mcp-method", "tools/call", "mcp-name", "echo")

	cases := []struct {
		name          string
		r             req
		trace, parent string
		decision      string
	}{
		{"envoy header", req{token: tok, body: call, headers: map[string]string{"traceparent": "00-" + envoyTrace + "-" + envoyParent + "-01"}}, envoyTrace, envoyParent, "allow"},
		{"header wins over _meta", req{token: tok, body: withMeta, headers: merge(modern, map[string]string{"traceparent": "00-" + envoyTrace + "-" + envoyParent + "-01"})}, envoyTrace, envoyParent, "allow"},
		{"_meta when envoy sent none", req{token: tok, body: withMeta, headers: modern}, metaTrace, metaParent, "allow"},
		{"denied, new trace", req{token: "wdn_at_unknown", body: call}, "", "", "deny"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			exp.Reset()
			e.check(c.r)
			spans := exp.GetSpans()
			if len(spans) != 1 {
				t.Fatalf("%d spans", len(spans))
			}
			sp := spans[0]
			if c.trace != "" {
				if sp.SpanContext.TraceID().String() != c.trace || sp.Parent.SpanID().String() != c.parent || !sp.Parent.IsRemote() {
					t.Fatalf("span in trace %s under %s, want %s under %s", sp.SpanContext.TraceID(), sp.Parent.SpanID(), c.trace, c.parent)
				}
			} else if sp.Parent.IsValid() {
				t.Fatalf("span has a parent %s", sp.Parent.SpanID())
			}
			attrs := map[string]string{}
			for _, a := range sp.Attributes {
				attrs[string(a.Key)] = a.Value.String()
				if a.Value.String() == tok {
					t.Fatalf("the handle is in span attribute %s", a.Key)
				}
			}
			if attrs["warden.decision"] != c.decision || attrs["warden.server"] != "bi" {
				t.Fatalf("attributes %v", attrs)
			}
			if c.decision == "allow" && (attrs["mcp.tool.name"] != "echo" || attrs["http.response.status_code"] != "200") {
				t.Fatalf("attributes %v", attrs)
			}
			if sp.EndTime.Before(sp.StartTime) || sp.Name != "ext_authz Check" {
				t.Fatalf("span %s %v..%v", sp.Name, sp.StartTime, sp.EndTime)
			}
		})
	}
}

func merge(a, b map[string]string) map[string]string {
	out := map[string]string{}
	for k, v := range a {
		out[k] = v
	}
	for k, v := range b {
		out[k] = v
	}
	return out
}
