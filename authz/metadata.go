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
//
// Every allowed tools/call builds one, so its messages are allocated
// together (metaCall, metaTop) rather than one structpb constructor call
// per value: a third of an allow's allocations went here. The result is
// the same tree structpb.NewStringValue and friends build, read only once
// built (gRPC marshals it). The rare parts (held arguments, the request
// part for a list) use the plain constructors.
func (s *Service) responseMetadata(ctx context.Context, c *check) *structpb.Struct {
	if c.req == nil {
		return nil
	}
	n := 0
	for i := range c.req.Messages {
		if m := &c.req.Messages[i]; m.Kind == mcp.KindRequest && responseMethods[m.Method] {
			n++
		}
	}
	if n == 0 {
		return nil
	}
	t := &metaTop{}
	// The common check has one call: it is part of the top's allocation.
	slab, calls := t.one[:], t.oneValue[:0]
	if n > 1 {
		slab, calls = make([]metaCall, n), make([]*structpb.Value, 0, n)
	}
	lists := false
	for i := range c.req.Messages {
		m := &c.req.Messages[i]
		if m.Kind != mcp.KindRequest || !responseMethods[m.Method] {
			continue
		}
		_, isList := listMethods[m.Method]
		lists = lists || isList
		mc := &slab[len(calls)]
		size := 2
		if m.Method == "tools/call" {
			size = 4
		}
		f := make(map[string]*structpb.Value, size)
		f["id"] = mc.id.of(string(m.ID))
		f["method"] = mc.method.of(m.Method)
		if m.Method == "tools/call" {
			f["tool"] = mc.tool.of(m.Tool)
			switch {
			case len(m.ArgumentsRaw) <= maxMetadataArguments:
				f["arguments"] = mc.args.of(string(m.ArgumentsRaw))
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
		mc.fields.Fields = f
		calls = append(calls, mc.value.of(&mc.fields))
	}
	t.list.Values = calls
	t.calls.Kind = &t.callsKind
	t.callsKind.ListValue = &t.list
	t.warden.Fields = map[string]*structpb.Value{
		"server":   t.server.of(c.server),
		"caller":   t.caller.of(c.handle.Digest),
		"protocol": t.protocol.of(c.req.ProtocolVersion),
		"calls":    &t.calls,
	}
	if lists && c.needs.Request {
		// The visibility decisions of a list see the request part the
		// Check's input had. Carried rather than rebuilt from ext_proc
		// request headers: those would cost Envoy a further message to
		// Warden on every request, this a few hundred bytes on the list
		// requests of a policy that reads input.request. A policy that
		// does not read it gets none, and one reloaded in between to read
		// it refuses the list (policy.Engine.Visible: omitted part).
		t.warden.Fields["request"] = structpb.NewStructValue(requestStruct(c.requestPart()))
	}
	t.top.Fields = map[string]*structpb.Value{MetadataKey: t.wardenValue.of(&t.warden)}
	return &t.top
}

// stringValue is a string structpb.Value and its kind in one allocation.
type stringValue struct {
	v structpb.Value
	k structpb.Value_StringValue
}

func (s *stringValue) of(str string) *structpb.Value {
	s.k.StringValue = str
	s.v.Kind = &s.k
	return &s.v
}

// structValue is a struct structpb.Value and its kind in one allocation.
type structValue struct {
	v structpb.Value
	k structpb.Value_StructValue
}

func (s *structValue) of(st *structpb.Struct) *structpb.Value {
	s.k.StructValue = st
	s.v.Kind = &s.k
	return &s.v
}

// metaCall is the messages of one call's entry in the metadata.
type metaCall struct {
	id, method, tool, args stringValue
	fields                 structpb.Struct
	value                  structValue
}

// metaTop is the messages around the calls.
type metaTop struct {
	server, caller, protocol stringValue
	list                     structpb.ListValue
	calls                    structpb.Value
	callsKind                structpb.Value_ListValue
	warden                   structpb.Struct
	wardenValue              structValue
	top                      structpb.Struct
	one                      [1]metaCall
	oneValue                 [1]*structpb.Value
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
