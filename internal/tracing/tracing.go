// Package tracing sets up OpenTelemetry tracing: spans exported over OTLP
// (gRPC) when an endpoint is configured, and nothing at all otherwise: the
// callers get a nil Tracer and skip tracing on the hot path.
package tracing

import (
	"context"
	"fmt"
	"net/http"

	"go.opentelemetry.io/contrib/instrumentation/net/http/otelhttp"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracegrpc"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/sdk/resource"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	semconv "go.opentelemetry.io/otel/semconv/v1.26.0"
	"go.opentelemetry.io/otel/trace"
)

// Options configure tracing.
type Options struct {
	// Endpoint is the OTLP/gRPC collector (host:port); empty turns
	// tracing off.
	Endpoint string
	// Insecure sends without TLS (a collector on localhost or a sidecar).
	Insecure bool
	// SampleRatio is the share of new traces sampled (0 < r <= 1);
	// a caller's sampled flag is followed.
	SampleRatio float64
	Service     string
	Version     string
}

// Tracing is the configured provider, or nothing.
type Tracing struct {
	tp *sdktrace.TracerProvider
}

// New starts the exporter when o.Endpoint is set.
func New(ctx context.Context, o Options) (*Tracing, error) {
	if o.Endpoint == "" {
		return &Tracing{}, nil
	}
	opts := []otlptracegrpc.Option{otlptracegrpc.WithEndpoint(o.Endpoint)}
	if o.Insecure {
		opts = append(opts, otlptracegrpc.WithInsecure())
	}
	exp, err := otlptracegrpc.New(ctx, opts...)
	if err != nil {
		return nil, fmt.Errorf("tracing: %w", err)
	}
	if o.SampleRatio <= 0 || o.SampleRatio > 1 {
		o.SampleRatio = 1
	}
	res := resource.NewSchemaless(semconv.ServiceName(o.Service), semconv.ServiceVersion(o.Version))
	tp := sdktrace.NewTracerProvider(sdktrace.WithBatcher(exp), sdktrace.WithResource(res),
		sdktrace.WithSampler(sdktrace.ParentBased(sdktrace.TraceIDRatioBased(o.SampleRatio))))
	return &Tracing{tp: tp}, nil
}

// Tracer returns the named tracer, or nil when tracing is off.
func (t *Tracing) Tracer(name string) trace.Tracer {
	if t.tp == nil {
		return nil
	}
	return t.tp.Tracer(name)
}

// Handler wraps h in otelhttp spans (continuing a request's traceparent),
// or returns h itself when tracing is off.
func (t *Tracing) Handler(h http.Handler, name string) http.Handler {
	if t.tp == nil {
		return h
	}
	return otelhttp.NewHandler(h, name, otelhttp.WithTracerProvider(t.tp), otelhttp.WithPropagators(propagation.TraceContext{}),
		otelhttp.WithSpanNameFormatter(func(_ string, r *http.Request) string { return r.Method + " " + r.URL.Path }))
}

// Shutdown flushes and stops the exporter.
func (t *Tracing) Shutdown(ctx context.Context) error {
	if t.tp == nil {
		return nil
	}
	return t.tp.Shutdown(ctx)
}
