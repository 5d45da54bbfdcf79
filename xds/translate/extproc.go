package translate

import (
	core "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	extproc "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/ext_proc/v3"
	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/warden-mcp/warden/xds/ir"
)

// The response path (Envoy ext_proc filter, extensions/filters/http/
// ext_proc/v3 ExternalProcessor; envoyproxy.io "External Processing"):
//
//   - MCP routes send only the response headers to Warden (mcpProcessing):
//     no request message (ext_authz has read the request), no body unless
//     Warden asks for it. Warden's answer to the headers overrides the
//     mode for the rest of the exchange (allow_mode_override, limited to
//     allowedOverrides): response body BUFFERED for a JSON list result,
//     STREAMED for an SSE stream, which it filters event by event.
//   - The Check's dynamic metadata, which Envoy keeps under the ext_authz
//     filter's name, is forwarded with every message
//     (metadata_options.forwarding_namespaces.untyped), so Warden knows
//     the request's methods and caller without reading the request again.
//   - failure_mode_allow false: when Warden is unreachable, or answers no
//     message within message_timeout, Envoy fails the response (500) and
//     no unfiltered list reaches the client.
//   - Routes that are not MCP routes disable the filter per route.

// mcpProcessing is what Envoy sends Warden on an MCP route before Warden
// asks for more.
func mcpProcessing() *extproc.ProcessingMode {
	return processing(extproc.ProcessingMode_NONE)
}

func processing(body extproc.ProcessingMode_BodySendMode) *extproc.ProcessingMode {
	return &extproc.ProcessingMode{
		RequestHeaderMode:   extproc.ProcessingMode_SKIP,
		ResponseHeaderMode:  extproc.ProcessingMode_SEND,
		RequestBodyMode:     extproc.ProcessingMode_NONE,
		ResponseBodyMode:    body,
		RequestTrailerMode:  extproc.ProcessingMode_SKIP,
		ResponseTrailerMode: extproc.ProcessingMode_SKIP,
	}
}

// allowedOverrides are the only modes Warden's mode_override may set: the
// response body buffered or streamed, nothing about the request.
func allowedOverrides() []*extproc.ProcessingMode {
	return []*extproc.ProcessingMode{processing(extproc.ProcessingMode_BUFFERED), processing(extproc.ProcessingMode_STREAMED)}
}

// extProc is the filter's listener-level config.
func extProc(p ir.ExtProc) *extproc.ExternalProcessor {
	return &extproc.ExternalProcessor{
		GrpcService: &core.GrpcService{
			TargetSpecifier: &core.GrpcService_EnvoyGrpc_{EnvoyGrpc: &core.GrpcService_EnvoyGrpc{ClusterName: AuthzCluster}},
		},
		FailureModeAllow:     false,
		ProcessingMode:       mcpProcessing(),
		MessageTimeout:       durationpb.New(p.MessageTimeout),
		AllowModeOverride:    true,
		AllowedOverrideModes: allowedOverrides(),
		MetadataOptions: &extproc.MetadataOptions{
			ForwardingNamespaces: &extproc.MetadataOptions_MetadataNamespaces{Untyped: []string{ExtAuthzMetadataNamespace}},
		},
	}
}

// extProcPerRoute is an MCP route's override: the processing mode set
// again on the route, so that a listener-level change cannot widen what
// an MCP route sends.
func extProcPerRoute() *extproc.ExtProcPerRoute {
	return &extproc.ExtProcPerRoute{Override: &extproc.ExtProcPerRoute_Overrides{Overrides: &extproc.ExtProcOverrides{
		ProcessingMode: mcpProcessing(),
	}}}
}

func extProcDisabled() *extproc.ExtProcPerRoute {
	return &extproc.ExtProcPerRoute{Override: &extproc.ExtProcPerRoute_Disabled{Disabled: true}}
}
