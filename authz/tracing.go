package authz

import (
	"context"
	"strconv"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"
)

// traceContext reads the W3C traceparent (and tracestate) Envoy forwards.
var traceContext = propagation.TraceContext{}

// span records one Check as a span from its start to its answer, child
// of the traceparent Envoy sent in the request headers, or else of the one
// a 2026-07-28 message carries in _meta.traceparent. It is called once
// the outcome is known (after the audit write), so it runs only when a
// Tracer is configured and costs nothing otherwise.
func (s *Service) span(ctx context.Context, c *check, o outcome) {
	parent := traceContext.Extract(ctx, propagation.MapCarrier(c.headers))
	if !trace.SpanContextFromContext(parent).IsValid() && c.req != nil {
		if m := c.req.Messages; c.decisive < len(m) && m[c.decisive].Meta != nil && m[c.decisive].Meta.Traceparent != "" {
			parent = traceContext.Extract(ctx, propagation.MapCarrier{"traceparent": m[c.decisive].Meta.Traceparent})
		}
	}
	_, sp := s.o.Tracer.Start(parent, "ext_authz Check", trace.WithSpanKind(trace.SpanKindServer), trace.WithTimestamp(c.start))
	decision := "deny"
	if o.allowed() {
		decision = "allow"
	}
	status := o.status
	if status == 0 {
		status = 200
	}
	attrs := []attribute.KeyValue{
		attribute.String("warden.decision", decision),
		attribute.Int("http.response.status_code", status),
		attribute.String("warden.request_id", c.requestID),
	}
	if c.server != "" {
		attrs = append(attrs, attribute.String("warden.server", c.server))
	}
	if c.req != nil && c.decisive < len(c.req.Messages) {
		m := c.req.Messages[c.decisive]
		if m.Method != "" {
			attrs = append(attrs, attribute.String("mcp.method.name", m.Method))
		}
		if m.Tool != "" {
			attrs = append(attrs, attribute.String("mcp.tool.name", m.Tool))
		}
	}
	if c.policyRev != "" {
		attrs = append(attrs, attribute.String("warden.policy_revision", c.policyRev))
	}
	sp.SetAttributes(attrs...)
	if status >= 500 {
		sp.SetStatus(codes.Error, "failed closed: "+strconv.Itoa(status))
	}
	sp.End(trace.WithTimestamp(s.o.Now()))
}
