package envoysim

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	extprocv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/ext_proc/v3"
	procv3 "github.com/envoyproxy/go-control-plane/envoy/service/ext_proc/v3"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/structpb"
)

// The ext_proc HTTP filter (extensions/filters/http/ext_proc/v3
// ExternalProcessor; service/ext_proc/v3 ExternalProcessor.Process;
// envoyproxy.io configuration/http/http_filters/ext_proc_filter), gRPC
// service only. One Process stream per HTTP request, opened with the first
// message the processing mode sends; every message waits for its answer
// within message_timeout.

// extProc is the compiled ExternalProcessor configuration.
type extProc struct {
	clusterName      string
	authority        string
	failureModeAllow bool
	statusOnError    int
	mode             *extprocv3.ProcessingMode
	messageTimeout   time.Duration
	allowOverride    bool
	allowedOverrides []*extprocv3.ProcessingMode
	forwardUntyped   []string
	forwardTyped     []string
}

// bufferLimit is Envoy's default per-connection buffer limit (1 MiB): a
// BUFFERED body over it fails the stream.
const bufferLimit = 1 << 20

func supportedMode(m *extprocv3.ProcessingMode) error {
	if m == nil {
		return nil
	}
	for _, b := range []extprocv3.ProcessingMode_BodySendMode{m.GetRequestBodyMode(), m.GetResponseBodyMode()} {
		switch b {
		case extprocv3.ProcessingMode_NONE, extprocv3.ProcessingMode_BUFFERED, extprocv3.ProcessingMode_STREAMED:
		default:
			return fmt.Errorf("body mode %s is not supported by envoysim", b)
		}
	}
	if m.GetRequestBodyMode() != extprocv3.ProcessingMode_NONE {
		return errors.New("request body modes other than NONE are not supported by envoysim")
	}
	if m.GetRequestTrailerMode() == extprocv3.ProcessingMode_SEND || m.GetResponseTrailerMode() == extprocv3.ProcessingMode_SEND {
		return errors.New("trailer mode SEND is not supported by envoysim")
	}
	return nil
}

func compileExtProc(ep *extprocv3.ExternalProcessor) (*extProc, error) {
	gs := ep.GetGrpcService()
	if gs == nil || gs.GetEnvoyGrpc() == nil {
		return nil, errors.New("only grpc_service with envoy_grpc is supported by envoysim")
	}
	switch {
	case ep.GetObservabilityMode():
		return nil, errors.New("observability_mode is not supported by envoysim")
	case ep.GetSendBodyWithoutWaitingForHeaderResponse():
		return nil, errors.New("send_body_without_waiting_for_header_response is not supported by envoysim")
	case len(ep.GetRequestAttributes()) > 0 || len(ep.GetResponseAttributes()) > 0:
		return nil, errors.New("request_attributes and response_attributes are not supported by envoysim")
	case ep.GetMutationRules() != nil || ep.GetForwardRules() != nil:
		return nil, errors.New("mutation_rules and forward_rules are not supported by envoysim")
	case ep.GetMetadataOptions().GetReceivingNamespaces() != nil:
		return nil, errors.New("metadata_options.receiving_namespaces is not supported by envoysim")
	}
	if err := supportedMode(ep.GetProcessingMode()); err != nil {
		return nil, err
	}
	for _, m := range ep.GetAllowedOverrideModes() {
		if err := supportedMode(m); err != nil {
			return nil, err
		}
	}
	c := &extProc{
		clusterName:      gs.GetEnvoyGrpc().GetClusterName(),
		authority:        gs.GetEnvoyGrpc().GetAuthority(),
		failureModeAllow: ep.GetFailureModeAllow(),
		statusOnError:    http.StatusInternalServerError,
		mode:             ep.GetProcessingMode(),
		messageTimeout:   200 * time.Millisecond, // message_timeout default
		allowOverride:    ep.GetAllowModeOverride(),
		allowedOverrides: ep.GetAllowedOverrideModes(),
		forwardUntyped:   ep.GetMetadataOptions().GetForwardingNamespaces().GetUntyped(),
		forwardTyped:     ep.GetMetadataOptions().GetForwardingNamespaces().GetTyped(),
	}
	if c.mode == nil {
		c.mode = &extprocv3.ProcessingMode{}
	}
	if s := ep.GetStatusOnError(); s != nil && s.GetCode() != 0 {
		c.statusOnError = int(s.GetCode())
	}
	if d := ep.GetMessageTimeout(); d != nil {
		c.messageTimeout = d.AsDuration()
	}
	return c, nil
}

func checkProcOverrides(o *extprocv3.ExtProcOverrides) error {
	switch {
	case o.GetGrpcService() != nil:
		return errors.New("ExtProcOverrides.grpc_service is not supported by envoysim")
	case len(o.GetRequestAttributes()) > 0 || len(o.GetResponseAttributes()) > 0:
		return errors.New("ExtProcOverrides attributes are not supported by envoysim")
	case o.GetMetadataOptions().GetReceivingNamespaces() != nil:
		return errors.New("metadata_options.receiving_namespaces is not supported by envoysim")
	}
	return supportedMode(o.GetProcessingMode())
}

// procStream is one request's exchange with the processor.
type procStream struct {
	cfg              *extProc
	mode             *extprocv3.ProcessingMode
	failureModeAllow bool
	untyped, typed   []string
	ctx              context.Context
	cancel           context.CancelFunc
	s                procv3.ExternalProcessor_ProcessClient
	cluster          *cluster
	host             *host // the ext_proc host of this stream, for outlier detection
	failed           bool  // a failure allowed by failure_mode_allow: the filter steps aside
	// abandoned is the exchange a message timeout gave up on: its
	// goroutine may still be inside Send or Recv, and gRPC forbids
	// CloseSend (or another Send) concurrently with them.
	abandoned chan struct{}
}

// modeHeaderSend reports whether a header mode sends (the defaults:
// request and response headers SEND).
func modeHeaderSend(m extprocv3.ProcessingMode_HeaderSendMode) bool {
	return m != extprocv3.ProcessingMode_SKIP
}

// extProcSetup resolves the filter's configuration for the route: the
// most specific ExtProcPerRoute wins, disabled or field by field.
func (st *stream) extProcSetup(f *httpFilter) *procStream {
	cfg := f.proc
	chain := perFilterChain(st.rt, st.vh, st.rr, f.name)
	disabled := f.disabled
	ps := &procStream{cfg: cfg, mode: cfg.mode, failureModeAllow: cfg.failureModeAllow, untyped: cfg.forwardUntyped, typed: cfg.forwardTyped}
	for _, pf := range chain {
		if pf.disabled != nil {
			disabled = *pf.disabled
		}
		if o := pf.proc; o != nil {
			disabled = false
			if m := o.GetProcessingMode(); m != nil {
				ps.mode = m
			}
			if fm := o.GetFailureModeAllow(); fm != nil {
				ps.failureModeAllow = fm.GetValue()
			}
			if fw := o.GetMetadataOptions().GetForwardingNamespaces(); fw != nil {
				ps.untyped, ps.typed = fw.GetUntyped(), fw.GetTyped()
			}
		}
	}
	if disabled {
		return nil
	}
	return ps
}

// metadataContext is ProcessingRequest.metadata_context: the dynamic
// metadata of the namespaces metadata_options.forwarding_namespaces
// names (untyped namespaces from the stream's dynamic metadata).
func (st *stream) metadataContext(ps *procStream) *corev3.Metadata {
	if len(ps.untyped) == 0 {
		return nil
	}
	md := &corev3.Metadata{FilterMetadata: map[string]*structpb.Struct{}}
	for _, ns := range ps.untyped {
		if s, ok := st.dynMeta[ns]; ok {
			md.FilterMetadata[ns] = s
		}
	}
	return md
}

var errProcClosed = errors.New("ext_proc stream closed by the processor")

// exchange sends one message and waits for its answer (message_timeout).
func (st *stream) procExchange(ps *procStream, req *procv3.ProcessingRequest) (*procv3.ProcessingResponse, error) {
	if ps.s == nil {
		c := st.s.clusters[ps.cfg.clusterName]
		if c == nil {
			return nil, fmt.Errorf("ext_proc cluster %q is unknown", ps.cfg.clusterName)
		}
		// One host for the whole stream, from the cluster's load balancer.
		h, ok := c.pick(nil, 0)
		if !ok {
			return nil, fmt.Errorf("ext_proc cluster %q: no healthy upstream", ps.cfg.clusterName)
		}
		conn, err := c.grpcClient(h, ps.cfg.authority)
		if err != nil {
			return nil, err
		}
		ps.cluster, ps.host = c, h
		ps.ctx, ps.cancel = context.WithCancel(st.r.Context())
		if ps.s, err = procv3.NewExternalProcessorClient(conn).Process(ps.ctx); err != nil {
			return nil, err
		}
		st.p.procStreams.Add(1)
	}
	if ps.abandoned != nil {
		return nil, errProcClosed
	}
	req.MetadataContext = st.metadataContext(ps)
	type result struct {
		resp *procv3.ProcessingResponse
		err  error
	}
	done := make(chan result, 1)
	finished := make(chan struct{})
	go func() {
		defer close(finished)
		if err := ps.s.Send(req); err != nil {
			done <- result{nil, err}
			return
		}
		resp, err := ps.s.Recv()
		if errors.Is(err, io.EOF) {
			err = errProcClosed
		}
		done <- result{resp, err}
	}()
	t := time.NewTimer(ps.cfg.messageTimeout)
	defer t.Stop()
	select {
	case r := <-done:
		st.idle.touch()
		if r.err == nil {
			st.p.procMessages.Add(1)
		}
		if !errors.Is(r.err, errProcClosed) {
			ps.cluster.report(ps.host, grpcToHTTP(status.Code(r.err)))
		}
		return r.resp, r.err
	case <-t.C:
		ps.cluster.report(ps.host, http.StatusGatewayTimeout)
		ps.cancel()
		ps.abandoned = finished
		return nil, errors.New("ext_proc message timeout")
	}
}

func (ps *procStream) close() {
	if ps == nil || ps.s == nil {
		return
	}
	if ps.abandoned != nil {
		// Cancelled at the timeout: the stream is reset; wait for the
		// exchange's goroutine rather than race it with CloseSend.
		<-ps.abandoned
		return
	}
	_ = ps.s.CloseSend()
	ps.cancel()
}

// procHeaderMap is how the filter sends headers: keys lowercased, values
// in raw_value.
func procHeaderMap(h headerMap) *corev3.HeaderMap {
	out := &corev3.HeaderMap{}
	for _, kv := range h {
		out.Headers = append(out.Headers, &corev3.HeaderValue{Key: kv.key, RawValue: []byte(kv.value)})
	}
	return out
}

// applyHeaderMutation applies a HeaderMutation: set_headers by their
// append_action, remove_headers; pseudo-headers and host may be neither
// set nor removed (mutation rules' defaults), which fails the message.
func applyHeaderMutation(h *headerMap, m *procv3.HeaderMutation) error {
	if m == nil {
		return nil
	}
	for _, o := range m.GetSetHeaders() {
		k := strings.ToLower(o.GetHeader().GetKey())
		if strings.HasPrefix(k, ":") || k == "host" || k == "" {
			return fmt.Errorf("header mutation of %q is not allowed", k)
		}
		v := string(o.GetHeader().GetRawValue())
		if v == "" {
			v = o.GetHeader().GetValue()
		}
		action, _ := appendAction(o, true)
		switch action {
		case "add":
			h.add(k, v)
		case "add_if_absent":
			if _, ok := h.get(k); !ok {
				h.add(k, v)
			}
		case "overwrite_if_exists":
			if _, ok := h.get(k); ok {
				h.set(k, v)
			}
		default:
			h.set(k, v)
		}
	}
	for _, k := range m.GetRemoveHeaders() {
		k = strings.ToLower(k)
		if strings.HasPrefix(k, ":") || k == "host" {
			return fmt.Errorf("removal of %q is not allowed", k)
		}
		h.remove(k)
	}
	return nil
}

// overrideMode applies a mode_override from a header response when the
// filter allows it (allow_mode_override, and allowed_override_modes
// names exactly that mode when it is set); otherwise it is ignored.
func (ps *procStream) overrideMode(m *extprocv3.ProcessingMode) {
	if m == nil || !ps.cfg.allowOverride || supportedMode(m) != nil {
		return
	}
	if len(ps.cfg.allowedOverrides) > 0 {
		ok := false
		for _, a := range ps.cfg.allowedOverrides {
			ok = ok || proto.Equal(a, m)
		}
		if !ok {
			return
		}
	}
	ps.mode = m
}

// procFailed handles a failed exchange: with failure_mode_allow the filter
// steps aside for the rest of the request; otherwise a local reply with
// status_on_error (500) before response headers, a stream reset after.
// It reports true when the request was answered.
func (st *stream) procFailed(ps *procStream, err error, headersSent bool) bool {
	st.p.log.Debug("envoysim: ext_proc failed", "err", err)
	st.p.procFailures.Add(1)
	if ps.failureModeAllow {
		ps.failed = true
		return false
	}
	if headersSent {
		panic(http.ErrAbortHandler)
	}
	st.localReply(ps.cfg.statusOnError, nil, nil)
	return true
}

// immediate sends an ImmediateResponse as a local reply.
func (st *stream) procImmediate(ir *procv3.ImmediateResponse) {
	status := int(ir.GetStatus().GetCode())
	if status == 0 {
		status = http.StatusOK
	}
	var hs []header
	tmp := headerMap{}
	_ = applyHeaderMutation(&tmp, ir.GetHeaders())
	for _, kv := range tmp {
		hs = append(hs, header{kv.key, kv.value})
	}
	st.localReply(status, ir.GetBody(), hs)
}

// extProcRequest runs the decoder side: the request headers when the mode
// sends them. It reports true when the request was answered.
func (st *stream) extProcRequest(f *httpFilter) bool {
	ps := st.extProcSetup(f)
	if ps == nil {
		return false
	}
	st.procs = append(st.procs, ps)
	if !modeHeaderSend(ps.mode.GetRequestHeaderMode()) {
		return false
	}
	resp, err := st.procExchange(ps, &procv3.ProcessingRequest{Request: &procv3.ProcessingRequest_RequestHeaders{
		RequestHeaders: &procv3.HttpHeaders{Headers: procHeaderMap(st.h), EndOfStream: st.r.ContentLength == 0}}})
	if err != nil {
		return st.procFailed(ps, err, false)
	}
	if ir := resp.GetImmediateResponse(); ir != nil {
		st.procImmediate(ir)
		return true
	}
	rh := resp.GetRequestHeaders()
	if rh == nil {
		return st.procFailed(ps, errors.New("answer to request headers is not a request headers response"), false)
	}
	if err := applyHeaderMutation(&st.h, rh.GetResponse().GetHeaderMutation()); err != nil {
		return st.procFailed(ps, err, false)
	}
	ps.overrideMode(resp.GetModeOverride())
	return false
}

// procResponse is the encoder side of the filters for one response.
type procResponse struct {
	st *stream
	ps *procStream
}

// extProcResponseHeaders runs the encoder side for the response headers
// (filters in reverse order; Warden's chain has one). It returns the
// processor that wants the body, if any, and true when the response was
// answered locally.
func (st *stream) extProcResponseHeaders(h *headerMap, status int) (*procResponse, bool) {
	var body *procResponse
	for i := len(st.procs) - 1; i >= 0; i-- {
		ps := st.procs[i]
		if ps.failed || !modeHeaderSend(ps.mode.GetResponseHeaderMode()) {
			if !ps.failed && ps.mode.GetResponseBodyMode() != extprocv3.ProcessingMode_NONE {
				body = &procResponse{st: st, ps: ps}
			}
			continue
		}
		sent := headerMap{{key: ":status", value: strconv.Itoa(status)}}
		sent = append(sent, (*h)...)
		resp, err := st.procExchange(ps, &procv3.ProcessingRequest{Request: &procv3.ProcessingRequest_ResponseHeaders{
			ResponseHeaders: &procv3.HttpHeaders{Headers: procHeaderMap(sent)}}})
		if err != nil {
			if st.procFailed(ps, err, false) {
				return nil, true
			}
			continue
		}
		if ir := resp.GetImmediateResponse(); ir != nil {
			st.procImmediate(ir)
			return nil, true
		}
		rh := resp.GetResponseHeaders()
		if rh == nil {
			if st.procFailed(ps, errors.New("answer to response headers is not a response headers response"), false) {
				return nil, true
			}
			continue
		}
		if err := applyHeaderMutation(h, rh.GetResponse().GetHeaderMutation()); err != nil {
			if st.procFailed(ps, err, false) {
				return nil, true
			}
			continue
		}
		ps.overrideMode(resp.GetModeOverride())
		if ps.mode.GetResponseBodyMode() != extprocv3.ProcessingMode_NONE {
			body = &procResponse{st: st, ps: ps}
		}
	}
	return body, false
}

// bodyChunk sends one response body chunk and returns what replaces it.
func (pr *procResponse) bodyChunk(b []byte, eos, headersSent bool) ([]byte, bool, error) {
	resp, err := pr.st.procExchange(pr.ps, &procv3.ProcessingRequest{Request: &procv3.ProcessingRequest_ResponseBody{
		ResponseBody: &procv3.HttpBody{Body: b, EndOfStream: eos}}})
	if err != nil {
		return nil, false, err
	}
	if ir := resp.GetImmediateResponse(); ir != nil {
		if headersSent {
			return nil, false, errors.New("immediate response after the response headers were sent")
		}
		pr.st.procImmediate(ir)
		return nil, true, nil
	}
	rb := resp.GetResponseBody()
	if rb == nil {
		return nil, false, errors.New("answer to a response body is not a response body response")
	}
	switch m := rb.GetResponse().GetBodyMutation().GetMutation().(type) {
	case *procv3.BodyMutation_Body:
		return m.Body, false, nil
	case *procv3.BodyMutation_ClearBody:
		if m.ClearBody {
			return nil, false, nil
		}
	case *procv3.BodyMutation_StreamedResponse:
		return nil, false, errors.New("streamed_response is for FULL_DUPLEX_STREAMED, not supported by envoysim")
	}
	return b, false, nil
}

// forwardBuffered is the BUFFERED response body: the whole body is read
// (up to the buffer limit: over it the stream fails with 500), sent in one
// message with end_of_stream, and the headers go out only with the
// processed body. A content-length the processor left in place is set to
// the length of the body sent.
func (st *stream) forwardBuffered(ctx context.Context, pr *procResponse, h headerMap, resp *http.Response) {
	body, err := readUpTo(resp.Body, bufferLimit+1)
	st.idle.touch()
	if err != nil {
		st.upstreamFailure(ctx, err, false)
		return
	}
	if len(body) > bufferLimit {
		st.localReply(http.StatusInternalServerError, nil, nil)
		return
	}
	out, answered, err := pr.bodyChunk(body, true, false)
	if answered {
		return
	}
	if err != nil {
		if st.procFailed(pr.ps, err, false) {
			return
		}
		out = body
	}
	if h.has("content-length") {
		h.set("content-length", strconv.Itoa(len(out)))
	}
	st.finishResponseHeaders(&h)
	st.writeHeaders(h, resp.StatusCode)
	_, _ = st.w.Write(out)
}

// forwardStreamed is the STREAMED response body: each upstream chunk is
// sent as it arrives and what the processor answers is written in its
// place and flushed; the end of the body is an empty chunk with
// end_of_stream. A failure after the headers went out resets the stream.
func (st *stream) forwardStreamed(ctx context.Context, pr *procResponse, resp *http.Response) {
	rc := http.NewResponseController(st.w)
	buf := make([]byte, 32*1024)
	for {
		n, rerr := resp.Body.Read(buf)
		eos := errors.Is(rerr, io.EOF)
		if n > 0 || eos {
			st.idle.touch()
			chunk := buf[:n]
			if !pr.ps.failed {
				out, _, err := pr.bodyChunk(chunk, eos, true)
				if err != nil {
					st.procFailed(pr.ps, err, true) // resets unless failure_mode_allow
				} else {
					chunk = out
				}
			}
			if len(chunk) > 0 {
				if _, werr := st.w.Write(chunk); werr != nil {
					return
				}
				_ = rc.Flush()
			}
		}
		if eos {
			return
		}
		if rerr != nil {
			st.upstreamFailure(ctx, rerr, true)
			return
		}
	}
}
