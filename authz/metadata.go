package authz

import (
	"google.golang.org/protobuf/types/known/structpb"

	"github.com/warden-mcp/warden/internal/mcp"
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

// maxMetadataArguments bounds the arguments of a tools/call carried to
// the response path (for the task a result may create). Larger arguments
// are left out and such a call's task is not recorded: its task requests
// are refused, which fails closed.
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
// built (gRPC marshals it).
func (s *Service) responseMetadata(c *check) *structpb.Struct {
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
	for i := range c.req.Messages {
		m := &c.req.Messages[i]
		if m.Kind != mcp.KindRequest || !responseMethods[m.Method] {
			continue
		}
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
			if len(m.ArgumentsRaw) <= maxMetadataArguments {
				f["arguments"] = mc.args.of(string(m.ArgumentsRaw))
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
