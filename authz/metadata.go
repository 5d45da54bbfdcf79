package authz

import (
	"context"
	"encoding/json"

	"google.golang.org/protobuf/types/known/structpb"

	"github.com/warden-mcp/warden/internal/mcp"
	"github.com/warden-mcp/warden/internal/mcptask"
	"github.com/warden-mcp/warden/policy"
)

// The request's classification travels to the response path (Envoy
// ext_proc, package extproc) as dynamic metadata, so the body is parsed
// once. Envoy's ext_authz filter emits CheckResponse.dynamic_metadata under
// its own name, the namespace "envoy.filters.http.ext_authz"
// (external_auth.proto, CheckResponse.dynamic_metadata; envoyproxy.io
// ext_authz filter, "Dynamic Metadata"), and the ext_proc filter forwards
// the namespaces its metadata_options.forwarding_namespaces names in
// every ProcessingRequest's metadata_context (ext_proc.proto,
// MetadataOptions). xds/translate configures both.
const (
	// MetadataNamespace is where Envoy puts what Check returns.
	MetadataNamespace = "envoy.filters.http.ext_authz"
	// MetadataKey is the one member of that namespace Warden writes: a
	// struct {server, caller, protocol, calls}.
	MetadataKey = "warden"
)

// maxMetadataArguments bounds the arguments of a tools/call carried in
// the metadata to the response path (for the task a result may create):
// Envoy copies dynamic metadata into every ext_proc message. Larger
// arguments are held in the store (Options.Arguments) and the metadata
// carries a reference and their digest; when they cannot be held, such a
// call's task is not recorded: its task requests are refused, which fails
// closed.
const maxMetadataArguments = 64 << 10

// responseMethods are the methods whose results the response path reads.
var responseMethods = map[string]bool{
	"tools/list": true, "prompts/list": true, "resources/list": true, "resources/templates/list": true,
	"tools/call": true,
	// A subscriptions/listen stream outlives its Check: the response path
	// checks on its chunks that the caller is still live.
	"subscriptions/listen": true,
}

// ResponseMethod tells whether the response path reads results of method.
func ResponseMethod(method string) bool { return responseMethods[method] }

// responseMetadata is the dynamic metadata of an allowed check, nil when no
// message of it has a result the response path reads. caller is the
// handle's digest (the handle itself never leaves the Check), by which the
// response path finds the caller again (Service.Caller) and checks it is
// still live.
func (s *Service) responseMetadata(ctx context.Context, c *check) *structpb.Struct {
	if c.req == nil {
		return nil
	}
	var calls []*structpb.Value
	lists := false
	for i := range c.req.Messages {
		m := &c.req.Messages[i]
		if m.Kind != mcp.KindRequest || !responseMethods[m.Method] {
			continue
		}
		f := map[string]*structpb.Value{
			"id":     structpb.NewStringValue(string(m.ID)),
			"method": structpb.NewStringValue(m.Method),
		}
		_, isList := listMethods[m.Method]
		lists = lists || isList
		if m.Method == "tools/call" {
			f["tool"] = structpb.NewStringValue(m.Tool)
			switch {
			case len(m.ArgumentsRaw) <= maxMetadataArguments:
				f["arguments"] = structpb.NewStringValue(string(m.ArgumentsRaw))
			case s.o.Arguments != nil:
				ref, err := s.o.Arguments.HoldArguments(ctx, m.ArgumentsRaw)
				if err != nil {
					// The call goes ahead; a task it creates is refused.
					s.o.Logger.Warn("authz: could not hold the arguments of a large tools/call; a task it creates will be refused",
						"server", c.server, "tool", m.Tool, "bytes", len(m.ArgumentsRaw), "err", err, "request_id", c.requestID)
					break
				}
				f["arguments_ref"] = structpb.NewStringValue(ref)
				f["arguments_digest"] = structpb.NewStringValue(mcptask.ArgumentsDigest(m.ArgumentsRaw))
			}
		}
		calls = append(calls, structpb.NewStructValue(&structpb.Struct{Fields: f}))
	}
	if len(calls) == 0 {
		return nil
	}
	w := &structpb.Struct{Fields: map[string]*structpb.Value{
		"server":   structpb.NewStringValue(c.server),
		"caller":   structpb.NewStringValue(c.handle.Digest),
		"protocol": structpb.NewStringValue(c.req.ProtocolVersion),
		"calls":    structpb.NewListValue(&structpb.ListValue{Values: calls}),
	}}
	if lists && c.needs.Request {
		// The visibility decisions of a list see the request part the
		// Check's input had. Carried rather than rebuilt from ext_proc
		// request headers: those would cost Envoy a further message to
		// Warden on every request, this a few hundred bytes on the list
		// requests of a policy that reads input.request. A policy that
		// does not read it gets none, and one reloaded in between to read
		// it refuses the list (policy.Engine.Visible: omitted part).
		w.Fields["request"] = structpb.NewStructValue(requestStruct(c.requestPart()))
	}
	return &structpb.Struct{Fields: map[string]*structpb.Value{MetadataKey: structpb.NewStructValue(w)}}
}

// listMethods are the list requests whose results the response path
// filters by policy.
var listMethods = map[string]struct{}{"tools/list": {}, "prompts/list": {}, "resources/list": {}, "resources/templates/list": {}}

func requestStruct(r policy.Request) *structpb.Struct {
	h := make(map[string]*structpb.Value, len(r.Headers))
	for k, v := range r.Headers {
		h[k] = structpb.NewStringValue(v)
	}
	return &structpb.Struct{Fields: map[string]*structpb.Value{
		"id":      structpb.NewStringValue(r.ID),
		"method":  structpb.NewStringValue(r.Method),
		"path":    structpb.NewStringValue(r.Path),
		"host":    structpb.NewStringValue(r.Host),
		"time":    structpb.NewStringValue(r.Time),
		"headers": structpb.NewStructValue(&structpb.Struct{Fields: h}),
	}}
}

// RequestFromMetadata is the request part a Check's metadata carried for
// its list results; ok is false when it carried none.
func RequestFromMetadata(md *structpb.Struct) (r policy.Request, ok bool) {
	v, ok := md.GetFields()["request"]
	if !ok {
		return policy.Request{}, false
	}
	f := v.GetStructValue().GetFields()
	r = policy.Request{ID: f["id"].GetStringValue(), Method: f["method"].GetStringValue(), Path: f["path"].GetStringValue(),
		Host: f["host"].GetStringValue(), Time: f["time"].GetStringValue(), Headers: map[string]string{}}
	for k, hv := range f["headers"].GetStructValue().GetFields() {
		r.Headers[k] = hv.GetStringValue()
	}
	return r, true
}

// DecodeID turns a JSON-RPC id, as the metadata carries it (raw JSON), into
// what input.mcp.id holds: a string or a json.Number; nil when empty.
func DecodeID(raw string) any { return decodeID(json.RawMessage(raw)) }
