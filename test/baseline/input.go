package main

import (
	"net/url"
	"strconv"
	"strings"

	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"github.com/open-policy-agent/opa/v1/ast"
	"github.com/open-policy-agent/opa/v1/util"
	"google.golang.org/protobuf/reflect/protoreflect"
)

// versionInfo is input.version for ext_authz v3, as the plugin sets it.
var versionInfo = ast.NewObject(
	[2]*ast.Term{ast.StringTerm("ext_authz"), ast.StringTerm("v3")},
	[2]*ast.Term{ast.StringTerm("encoding"), ast.StringTerm("protojson")},
)

// requestToInput builds the policy input from a CheckRequest the way
// opa-envoy-plugin's envoyauth.RequestToInput does for v3 requests (current
// version): the whole request as a map keyed by protobuf JSON names, then
// version, parsed_path, parsed_query, parsed_body, truncated_body and, when
// present, source_principal. Only the JSON body branch is implemented:
// MCP streamable HTTP bodies are JSON, so the plugin's form, multipart and
// gRPC branches would never run for this traffic.
func requestToInput(req *authv3.CheckRequest) (map[string]any, error) {
	httpReq := req.GetAttributes().GetRequest().GetHttp()
	input := protoToMap(req.ProtoReflect())
	input["version"] = versionInfo

	parsedPath, parsedQuery, err := parsePathAndQuery(httpReq.GetPath())
	if err != nil {
		return nil, err
	}
	input["parsed_path"] = parsedPath
	input["parsed_query"] = parsedQuery

	body, truncated, err := parseBody(httpReq.GetHeaders(), httpReq.GetBody(), httpReq.GetRawBody())
	if err != nil {
		return nil, err
	}
	input["parsed_body"] = body
	input["truncated_body"] = truncated

	if p := req.GetAttributes().GetSource().GetPrincipal(); p != "" {
		input["source_principal"] = p
	}
	return input, nil
}

// protoToMap walks a message with protobuf reflection into map[string]any
// keyed by JSON field names, leaving scalars as their Go values (bytes stay
// []byte, enums stay enum numbers); ast.InterfaceToValue later converts the
// leftovers through a JSON round trip. This is the plugin's protomap
// approach, which replaced protojson.Marshal + util.UnmarshalJSON because it
// is cheaper; following it keeps the baseline at its fastest.
func protoToMap(msg protoreflect.Message) map[string]any {
	if s, ok := msg.Interface().(interface{ AsMap() map[string]any }); ok {
		return s.AsMap() // google.protobuf.Struct (metadata_context)
	}
	out := make(map[string]any, msg.Descriptor().Fields().Len())
	msg.Range(func(fd protoreflect.FieldDescriptor, v protoreflect.Value) bool {
		switch {
		case fd.IsMap():
			m := v.Map()
			mm := make(map[string]any, m.Len())
			isMsg := fd.MapValue().Kind() == protoreflect.MessageKind
			m.Range(func(k protoreflect.MapKey, e protoreflect.Value) bool {
				if isMsg {
					mm[k.String()] = protoToMap(e.Message())
				} else {
					mm[k.String()] = e.Interface()
				}
				return true
			})
			out[fd.JSONName()] = mm
		case fd.IsList():
			l := v.List()
			ll := make([]any, l.Len())
			for i := range ll {
				if fd.Kind() == protoreflect.MessageKind {
					ll[i] = protoToMap(l.Get(i).Message())
				} else {
					ll[i] = l.Get(i).Interface()
				}
			}
			out[fd.JSONName()] = ll
		case fd.Kind() == protoreflect.MessageKind:
			out[fd.JSONName()] = protoToMap(v.Message())
		default:
			out[fd.JSONName()] = v.Interface()
		}
		return true
	})
	return out
}

// parsePathAndQuery splits the request path into unescaped segments and
// the query into name → values, as the plugin's getParsedPathAndQuery.
func parsePathAndQuery(path string) ([]string, map[string]any, error) {
	rawPath, rawQuery, _ := strings.Cut(path, "?")
	p, err := url.PathUnescape(rawPath)
	if err != nil {
		return nil, nil, err
	}
	q, err := url.ParseQuery(rawQuery)
	if err != nil {
		return nil, nil, err
	}
	query := make(map[string]any, len(q))
	for k, v := range q {
		query[k] = v
	}
	return strings.Split(strings.TrimLeft(p, "/"), "/"), query, nil
}

// parseBody decodes a JSON body (body, else raw_body) with OPA's
// util.UnmarshalJSON, reporting truncation from Envoy's partial-body header
// or a content-length larger than what was sent, as the plugin's
// getParsedBody does for application/json.
func parseBody(headers map[string]string, body string, raw []byte) (any, bool, error) {
	if headers["x-envoy-auth-partial-body"] == "true" {
		return nil, true, nil
	}
	if !strings.Contains(headers["content-type"], "application/json") {
		return nil, false, nil
	}
	if body == "" {
		if len(raw) == 0 {
			return nil, false, nil
		}
		body = string(raw)
	}
	if cl, ok := headers["content-length"]; ok {
		n, err := strconv.ParseInt(cl, 10, 64)
		if err != nil {
			return nil, false, err
		}
		if n != -1 && n > int64(len(body)) {
			return nil, true, nil
		}
	}
	var v any
	if err := util.UnmarshalJSON([]byte(body), &v); err != nil {
		return nil, false, err
	}
	return v, false, nil
}
