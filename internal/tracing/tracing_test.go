package tracing

import (
	"context"
	"net/http"
	"net/http/httptest"
	"testing"

	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
)

func TestOffIsNothing(t *testing.T) {
	tr, err := New(context.Background(), Options{})
	if err != nil {
		t.Fatal(err)
	}
	if tr.Tracer("x") != nil {
		t.Fatal("a tracer with tracing off")
	}
	h := http.NewServeMux()
	if got := tr.Handler(h, "oauth"); got != http.Handler(h) {
		t.Fatal("the handler was wrapped with tracing off")
	}
	if err := tr.Shutdown(context.Background()); err != nil {
		t.Fatal(err)
	}
}

// An OAuth request over real HTTP is a server span continuing the
// caller's traceparent.
func TestHandlerContinuesTraceparent(t *testing.T) {
	exp := tracetest.NewInMemoryExporter()
	tr := &Tracing{tp: sdktrace.NewTracerProvider(sdktrace.WithSyncer(exp))}
	srv := httptest.NewServer(tr.Handler(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(204) }), "oauth"))
	defer srv.Close()
	req, _ := http.NewRequest("GET", srv.URL+"/oauth/authorize", nil)
	req.Header.Set("traceparent", "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	spans := exp.GetSpans()
	if len(spans) != 1 || spans[0].Name != "GET /oauth/authorize" || spans[0].SpanContext.TraceID().String() != "4bf92f3577b34da6a3ce929d0e0e4736" || spans[0].Parent.SpanID().String() != "00f067aa0ba902b7" {
		t.Fatalf("spans %+v", spans)
	}
}
