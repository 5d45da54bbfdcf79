package envoysim

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	extauthzv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/ext_authz/v3"
	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/structpb"
	"google.golang.org/protobuf/types/known/timestamppb"
)

const partialBodyHeader = "x-envoy-auth-partial-body"

// extAuthzNamespace is the ext_authz filter's canonical name, the
// namespace of the dynamic metadata it emits.
const extAuthzNamespace = "envoy.filters.http.ext_authz"

func (st *stream) setDynamicMetadata(ns string, md *structpb.Struct) {
	if st.dynMeta == nil {
		st.dynMeta = map[string]*structpb.Struct{}
	}
	cur := st.dynMeta[ns]
	if cur == nil {
		cur = &structpb.Struct{Fields: map[string]*structpb.Value{}}
		st.dynMeta[ns] = cur
	}
	for k, v := range md.GetFields() {
		cur.Fields[k] = v
	}
}

// extAuthz runs the ext_authz decoder filter. It reports true when the
// filter answered the request itself (denied, error, 413, 500).
func (st *stream) extAuthz(f *httpFilter) bool {
	cfg := f.authz
	chain := perFilterChain(st.rt, st.vh, st.rr, f.name)

	// disabled: the most specific per-route setting wins over the filter's.
	disabled := f.disabled
	for _, pf := range chain {
		if pf.disabled != nil {
			disabled = *pf.disabled
		}
	}
	if disabled {
		return false
	}

	// context_extensions merge key by key, more specific levels override;
	// the other check settings come from the most specific level only.
	ctxExt := map[string]string{}
	var settings *extauthzv3.CheckSettings
	for _, pf := range chain {
		if pf.authz == nil {
			continue
		}
		for k, v := range pf.authz.GetContextExtensions() {
			ctxExt[k] = v
		}
		settings = pf.authz
	}

	withBody, maxBytes, allowPartial := cfg.withBody, cfg.maxBytes, cfg.allowPartial
	if wb := settings.GetWithRequestBody(); wb != nil {
		withBody, maxBytes, allowPartial = true, wb.GetMaxRequestBytes(), wb.GetAllowPartialMessage()
	}
	if settings.GetDisableRequestBodyBuffering() {
		withBody = false
	}

	// Envoy buffers only when the request has a body (the headers did not
	// end the stream).
	var buffered []byte
	hasBuffer := false
	partial := false
	if withBody && st.r.ContentLength != 0 {
		buf, err := readUpTo(st.r.Body, int64(maxBytes)+1)
		st.bodyBytes = int64(len(buf))
		st.bodyDone = int64(len(buf)) <= int64(maxBytes) // fewer bytes than asked for: EOF
		st.idle.touch()
		if err != nil {
			st.p.log.Debug("envoysim: reading request body", "err", err)
			panic(http.ErrAbortHandler) // downstream reset
		}
		if int64(len(buf)) > int64(maxBytes) {
			if !allowPartial {
				// The decoder buffer limit: 413 without calling the service.
				st.localReply(http.StatusRequestEntityTooLarge, []byte("Payload Too Large"), nil)
				return true
			}
			partial = true
		}
		buffered, hasBuffer = buf, true
		st.body = io.MultiReader(bytes.NewReader(buf), st.r.Body)
	}

	req := st.checkRequest(cfg, ctxExt, buffered, hasBuffer, partial, maxBytes)
	resp, err := st.callAuthz(cfg, req)
	if md := resp.GetDynamicMetadata(); err == nil && md != nil {
		// CheckResponse.dynamic_metadata lands under the filter's canonical
		// name, merged field by field (external_auth.proto; ext_authz.cc
		// setDynamicMetadata), for the filters after it.
		st.setDynamicMetadata(extAuthzNamespace, md)
	}
	switch {
	case err != nil:
		st.p.log.Debug("envoysim: ext_authz call failed", "err", err)
		return st.authzError(cfg, nil)
	case resp.GetStatus().GetCode() == int32(codes.OK):
		return st.authzOK(cfg, resp.GetOkResponse())
	case resp.GetErrorResponse() != nil:
		return st.authzError(cfg, resp.GetErrorResponse())
	default:
		return st.authzDenied(cfg, resp.GetDeniedResponse())
	}
}

func readUpTo(r io.Reader, n int64) ([]byte, error) {
	var b bytes.Buffer
	_, err := io.Copy(&b, io.LimitReader(r, n))
	return b.Bytes(), err
}

// checkRequest fills the CheckRequest as CheckRequestUtils::createHttpCheck
// does for the gRPC client.
func (st *stream) checkRequest(cfg *extAuthz, ctxExt map[string]string, body []byte, hasBuffer, partial bool, maxBytes uint32) *authv3.CheckRequest {
	httpReq := &authv3.AttributeContext_HttpRequest{
		Id:       strconv.FormatUint(st.streamID, 10),
		Method:   sanitizeUTF8(st.h.value(":method")),
		Path:     sanitizeUTF8(st.h.value(":path")),
		Host:     sanitizeUTF8(st.h.value(":authority")),
		Scheme:   sanitizeUTF8(st.h.value(":scheme")),
		Size:     st.bodyBytes,
		Protocol: "HTTP/1.1",
	}
	var raw *corev3.HeaderMap
	if cfg.encodeRawHeaders {
		raw = &corev3.HeaderMap{}
		httpReq.HeaderMap = raw
	} else {
		httpReq.Headers = map[string]string{}
	}
	for _, e := range st.h {
		// A client-supplied partial-body header never reaches the service.
		if e.key == partialBodyHeader {
			continue
		}
		if cfg.disallowedHeaders != nil && cfg.disallowedHeaders.match(e.key) {
			continue
		}
		if cfg.allowedHeaders != nil && !cfg.allowedHeaders.match(e.key) {
			continue
		}
		if raw != nil {
			raw.Headers = append(raw.Headers, &corev3.HeaderValue{Key: e.key, RawValue: []byte(e.value)})
			continue
		}
		v := sanitizeUTF8(e.value)
		if old, ok := httpReq.Headers[e.key]; ok {
			httpReq.Headers[e.key] = old + "," + v
		} else {
			httpReq.Headers[e.key] = v
		}
	}
	if hasBuffer && maxBytes > 0 {
		data := body
		if len(data) > int(maxBytes) {
			data = data[:maxBytes]
		}
		if cfg.packAsBytes {
			httpReq.RawBody = append([]byte(nil), data...)
		} else {
			httpReq.Body = sanitizeUTF8(string(data))
		}
		pv := strconv.FormatBool(partial)
		if raw != nil {
			raw.Headers = append(raw.Headers, &corev3.HeaderValue{Key: partialBodyHeader, RawValue: []byte(pv)})
		} else {
			httpReq.Headers[partialBodyHeader] = pv
		}
	}
	return &authv3.CheckRequest{Attributes: &authv3.AttributeContext{
		Source:      &authv3.AttributeContext_Peer{Address: socketAddress(st.r.RemoteAddr)},
		Destination: &authv3.AttributeContext_Peer{Address: socketAddress(localAddr(st.r))},
		Request: &authv3.AttributeContext_Request{
			Time: timestamppb.New(st.start),
			Http: httpReq,
		},
		ContextExtensions:    ctxExt,
		MetadataContext:      &corev3.Metadata{},
		RouteMetadataContext: &corev3.Metadata{},
	}}
}

func localAddr(r *http.Request) string {
	if a, ok := r.Context().Value(http.LocalAddrContextKey).(net.Addr); ok {
		return a.String()
	}
	return ""
}

func socketAddress(hostport string) *corev3.Address {
	host, port, err := net.SplitHostPort(hostport)
	if err != nil {
		return nil
	}
	p, _ := strconv.ParseUint(port, 10, 32)
	return &corev3.Address{Address: &corev3.Address_SocketAddress{SocketAddress: &corev3.SocketAddress{
		Address:       host,
		PortSpecifier: &corev3.SocketAddress_PortValue{PortValue: uint32(p)},
	}}}
}

// callAuthz sends the Check over the envoy_grpc cluster with the
// grpc_service timeout.
func (st *stream) callAuthz(cfg *extAuthz, req *authv3.CheckRequest) (*authv3.CheckResponse, error) {
	c := st.s.clusters[cfg.clusterName]
	if c == nil {
		return nil, fmt.Errorf("ext_authz cluster %q is unknown", cfg.clusterName)
	}
	// One host per call, from the cluster's load balancer; a failed call is
	// not retried (the filter answers status_on_error), it only feeds
	// outlier detection.
	h, ok := c.pick(nil, 0)
	if !ok {
		return nil, fmt.Errorf("ext_authz cluster %q: no healthy upstream", cfg.clusterName)
	}
	conn, err := c.grpcClient(h, cfg.authority)
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithTimeout(st.r.Context(), cfg.timeout)
	defer cancel()
	if len(cfg.initialMetadata) > 0 {
		kv := make([]string, 0, 2*len(cfg.initialMetadata))
		for _, m := range cfg.initialMetadata {
			kv = append(kv, m.key, m.value)
		}
		ctx = metadata.AppendToOutgoingContext(ctx, kv...)
	}
	start := time.Now()
	resp, err := authv3.NewAuthorizationClient(conn).Check(ctx, req)
	st.idle.touch()
	c.report(h, grpcToHTTP(status.Code(err)))
	rec := CheckRecord{RequestID: st.h.value("x-request-id"), Path: st.h.value(":path"), Host: h.addr, Start: start}
	if err != nil {
		rec.Err = err.Error()
	} else {
		rec.Allowed = resp.GetStatus().GetCode() == int32(codes.OK)
	}
	st.p.recordCheck(rec)
	if err == nil {
		st.p.countHost(c.name, h.addr)
	}
	if err == nil {
		st.p.checks.Add(1)
	}
	return resp, err
}

// appendAction maps a HeaderValueOption to the action Envoy's ext_authz
// gRPC client derives: the deprecated append wins when set (true appends
// to an existing request header, or adds a response header; false
// overwrites), otherwise append_action.
func appendAction(o *corev3.HeaderValueOption, response bool) (string, bool) {
	//lint:ignore SA1019 Envoy still honours the deprecated append when set
	if o.GetAppend() != nil {
		//lint:ignore SA1019 see above
		if !o.GetAppend().GetValue() {
			return "set", true
		}
		if response {
			return "add", true
		}
		return "append", true
	}
	switch o.GetAppendAction() {
	case corev3.HeaderValueOption_APPEND_IF_EXISTS_OR_ADD:
		return "add", true
	case corev3.HeaderValueOption_ADD_IF_ABSENT:
		return "add_if_absent", true
	case corev3.HeaderValueOption_OVERWRITE_IF_EXISTS_OR_ADD:
		return "set", true
	case corev3.HeaderValueOption_OVERWRITE_IF_EXISTS:
		return "overwrite_if_exists", true
	}
	return "set", false // unknown enum value: Envoy treats it as set, or rejects with validate_mutations
}

var errInvalidMutation = errors.New("invalid header mutation")

// authzOK applies an OkHttpResponse to the request and lets it continue.
func (st *stream) authzOK(cfg *extAuthz, ok *authv3.OkHttpResponse) bool {
	if err := st.applyOK(cfg, ok); err != nil {
		// rejectResponse(): a local 500.
		st.p.log.Debug("envoysim: rejecting ext_authz response", "err", err)
		st.localReply(http.StatusInternalServerError, nil, nil)
		return true
	}
	return false
}

func (st *stream) applyOK(cfg *extAuthz, ok *authv3.OkHttpResponse) error {
	if ok == nil {
		return nil
	}
	// Validate first so that a rejected response changes nothing. Envoy
	// validates only with validate_mutations; without it an invalid value
	// would be forwarded, which Go's HTTP client refuses, so the harness
	// always fails closed.
	for _, o := range append(append([]*corev3.HeaderValueOption(nil), ok.GetHeaders()...), ok.GetResponseHeadersToAdd()...) {
		if _, known := appendAction(o, false); !known && cfg.validateMutations {
			return fmt.Errorf("%w: unknown append_action %d", errInvalidMutation, o.GetAppendAction())
		}
		k, v := o.GetHeader().GetKey(), headerValueOf(o.GetHeader())
		if !validHeaderName(k) || !validHeaderValue(v) {
			return fmt.Errorf("%w: %q", errInvalidMutation, k)
		}
	}
	if cfg.validateMutations {
		for _, q := range ok.GetQueryParametersToSet() {
			if !queryEncoded(q.GetKey()) || !queryEncoded(q.GetValue()) {
				return fmt.Errorf("%w: query parameter %q", errInvalidMutation, q.GetKey())
			}
		}
	}

	changed := false
	for _, o := range ok.GetHeaders() {
		k, v := strings.ToLower(o.GetHeader().GetKey()), headerValueOf(o.GetHeader())
		action, _ := appendAction(o, false)
		changed = true
		switch action {
		case "append":
			// Only an existing header is appended to, joined with ",".
			st.h.appendValue(k, v)
		case "add":
			st.h.add(k, v)
		case "add_if_absent":
			if !st.h.has(k) {
				st.h.add(k, v)
			}
		case "set":
			st.h.set(k, v)
		case "overwrite_if_exists":
			if st.h.has(k) {
				st.h.set(k, v)
			}
		}
	}
	for _, k := range ok.GetHeadersToRemove() {
		k = strings.ToLower(k)
		// Pseudo-headers and Host may not be removed.
		if strings.HasPrefix(k, ":") || k == "host" || (cfg.validateMutations && !validHeaderName(k)) {
			continue
		}
		st.h.remove(k)
		changed = true
	}
	for _, o := range ok.GetResponseHeadersToAdd() {
		action, _ := appendAction(o, true)
		st.respMutations = append(st.respMutations, respMutation{
			key: strings.ToLower(o.GetHeader().GetKey()), value: headerValueOf(o.GetHeader()), action: action,
		})
	}
	if len(ok.GetQueryParametersToSet()) > 0 || len(ok.GetQueryParametersToRemove()) > 0 {
		path := st.h.value(":path")
		_, query := splitPath(path)
		q := parseQuery(strings.TrimPrefix(query, "?"))
		for _, p := range ok.GetQueryParametersToSet() {
			q[p.GetKey()] = []string{p.GetValue()}
		}
		for _, k := range ok.GetQueryParametersToRemove() {
			delete(q, k)
		}
		st.h.set(":path", replaceQuery(path, q))
		changed = true
	}
	if cfg.clearRouteCache && changed {
		st.selectRoute()
	}
	return nil
}

func headerValueOf(h *corev3.HeaderValue) string {
	if len(h.GetRawValue()) > 0 {
		return string(h.GetRawValue())
	}
	return h.GetValue()
}

// queryEncoded reports whether s is a valid URL-encoded query component
// (PercentEncoding::queryParameterIsUrlEncoded).
func queryEncoded(s string) bool {
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9':
		case strings.IndexByte("-._~!$'()*+,;:@/?", c) >= 0:
		case c == '%':
			if i+2 >= len(s) || !isHex(s[i+1]) || !isHex(s[i+2]) {
				return false
			}
			i += 2
		default:
			return false
		}
	}
	return true
}

func isHex(c byte) bool {
	return c >= '0' && c <= '9' || c >= 'a' && c <= 'f' || c >= 'A' && c <= 'F'
}

// authzDenied sends the DeniedHttpResponse: its status (0 or unset means
// 403), its headers replacing same-name headers, its body as is.
func (st *stream) authzDenied(cfg *extAuthz, d *authv3.DeniedHttpResponse) bool {
	status := http.StatusForbidden
	if c := int(d.GetStatus().GetCode()); c > 0 {
		status = c
	}
	body := []byte(d.GetBody())
	if cfg.maxDeniedBodyBytes > 0 && len(body) > int(cfg.maxDeniedBodyBytes) {
		body = body[:cfg.maxDeniedBodyBytes]
	}
	var replace []header
	for _, o := range d.GetHeaders() {
		k, v := o.GetHeader().GetKey(), headerValueOf(o.GetHeader())
		if !validHeaderName(k) || !validHeaderValue(v) {
			st.localReply(http.StatusInternalServerError, nil, nil)
			return true
		}
		replace = append(replace, header{strings.ToLower(k), v})
	}
	st.localReply(status, body, replace)
	return true
}

// authzError handles a failed call (unreachable, timeout, gRPC error) or a
// CheckResponse.error_response: failure_mode_allow lets the request
// through, otherwise status_on_error (or the error_response's status).
func (st *stream) authzError(cfg *extAuthz, er *authv3.DeniedHttpResponse) bool {
	if cfg.failureModeAllow {
		if cfg.failureModeAllowHeaderAdd {
			st.h.set("x-envoy-auth-failure-mode-allowed", "true")
		}
		return false
	}
	status := cfg.statusOnError
	var body []byte
	var replace []header
	if er != nil {
		if c := int(er.GetStatus().GetCode()); c > 0 {
			status = c
		}
		body = []byte(er.GetBody())
		for _, o := range er.GetHeaders() {
			replace = append(replace, header{strings.ToLower(o.GetHeader().GetKey()), headerValueOf(o.GetHeader())})
		}
	}
	st.localReply(status, body, replace)
	return true
}
