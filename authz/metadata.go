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
}

// ResponseMethod tells whether the response path reads results of method.
func ResponseMethod(method string) bool { return responseMethods[method] }

// responseMetadata is the dynamic metadata of an allowed check, nil when no
// message of it has a result the response path reads. caller is the
// handle's digest (the handle itself never leaves the Check), by which the
// response path finds the caller again (Service.Caller) and checks it is
// still live.
func (s *Service) responseMetadata(c *check) *structpb.Struct {
	if c.req == nil {
		return nil
	}
	var calls []*structpb.Value
	for i := range c.req.Messages {
		m := &c.req.Messages[i]
		if m.Kind != mcp.KindRequest || !responseMethods[m.Method] {
			continue
		}
		f := map[string]*structpb.Value{
			"id":     structpb.NewStringValue(string(m.ID)),
			"method": structpb.NewStringValue(m.Method),
		}
		if m.Method == "tools/call" {
			f["tool"] = structpb.NewStringValue(m.Tool)
			if len(m.ArgumentsRaw) <= maxMetadataArguments {
				f["arguments"] = structpb.NewStringValue(string(m.ArgumentsRaw))
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
	return &structpb.Struct{Fields: map[string]*structpb.Value{MetadataKey: structpb.NewStructValue(w)}}
}
