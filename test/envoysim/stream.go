package envoysim

import (
	"context"
	"crypto/rand"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	hcmv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	"google.golang.org/protobuf/types/known/structpb"
)

var (
	errRouteTimeout = errors.New("upstream request timeout")
	errIdleTimeout  = errors.New("stream idle timeout")
	errMaxDuration  = errors.New("max stream duration reached")
)

// stream is one downstream request going through the connection manager,
// the HTTP filters and the router.
type stream struct {
	p     *Proxy
	s     *state
	w     http.ResponseWriter
	r     *http.Request
	start time.Time

	cm *connManager
	rt *routeTable
	vh *virtualHost
	rr *route

	h        headerMap // request headers as Envoy's filters see them
	streamID uint64
	reqID    string

	body      io.Reader // what is left to send upstream
	bodyBytes int64     // body bytes received so far
	bodyDone  bool      // the whole request body has been read

	respMutations []respMutation // response_headers_to_add from an OK check

	// dynMeta is the stream's dynamic metadata by namespace (filled by
	// ext_authz from CheckResponse.dynamic_metadata).
	dynMeta map[string]*structpb.Struct
	// procs are the ext_proc filters active on this stream, in filter
	// order; their streams are closed when the request ends.
	procs []*procStream

	idle *idleTimer
}

// respMutation is a response header change saved from an OK CheckResponse.
type respMutation struct {
	key, value string
	action     string // add, set, add_if_absent, overwrite_if_exists
}

func (p *Proxy) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	st := &stream{p: p, s: p.state.Load(), w: w, r: r, start: time.Now(), streamID: randomUint64()}
	// Envoy streams both directions at once; Go's HTTP/1.1 server needs to
	// be told that the handler may write before the body is read.
	_ = http.NewResponseController(w).EnableFullDuplex()
	st.serve()
}

func (st *stream) serve() {
	l := st.s.active
	if l == nil {
		st.localReply(http.StatusServiceUnavailable, []byte("envoysim: no listener is active yet"), nil)
		return
	}
	st.cm = l.hcm
	st.rt = st.s.routeTable(l)
	st.h = requestHeaders(st.r)
	for k, vs := range st.p.opts.DownstreamHeaders {
		lk := strings.ToLower(k)
		st.h.remove(lk)
		for _, v := range vs {
			st.h.add(lk, v)
		}
	}
	p, action := normalizePath(st.h.value(":path"), st.cm)
	switch action {
	case pathReject:
		st.localReply(http.StatusBadRequest, nil, nil)
		return
	case pathRedirect:
		st.localReply(http.StatusTemporaryRedirect, nil, []header{{"location", p}})
		return
	}
	st.h.set(":path", p)
	st.mutateRequestHeaders()

	st.idle = newIdleTimer(st.cm.streamIdleTimeout)
	defer st.idle.stop()

	st.body = st.r.Body
	st.bodyDone = st.r.ContentLength == 0
	st.selectRoute()
	if st.rr != nil && st.rr.action != nil && st.rr.action.idleTimeout != nil {
		st.idle.reset(*st.rr.action.idleTimeout)
	}

	defer func() {
		for _, ps := range st.procs {
			ps.close()
		}
	}()
	for _, f := range st.cm.filters {
		switch {
		case f.router:
			st.route()
			return
		case f.authz != nil:
			if done := st.extAuthz(f); done {
				return
			}
		case f.proc != nil:
			if done := st.extProcRequest(f); done {
				return
			}
		}
	}
}

func (st *stream) selectRoute() {
	st.vh, st.rr = nil, nil
	if st.rt != nil {
		st.vh, st.rr = st.rt.selectRoute(st.h)
	}
}

// requestHeaders builds Envoy's header map for an HTTP/1.1 request: Host
// becomes :authority, the request target :path (raw, with query), keys
// lowercased, connection-level headers dropped.
func requestHeaders(r *http.Request) headerMap {
	path := r.RequestURI
	authority := r.Host
	if !strings.HasPrefix(path, "/") && path != "*" {
		// absolute-form: Envoy takes the authority and path from the URL.
		if u, err := url.ParseRequestURI(path); err == nil && u.Host != "" {
			authority = u.Host
			path = u.RequestURI()
		}
	}
	h := headerMap{
		{":authority", authority},
		{":path", path},
		{":method", r.Method},
		{":scheme", "http"},
	}
	keys := make([]string, 0, len(r.Header))
	for k := range r.Header {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		lk := strings.ToLower(k)
		if hopByHop[lk] || lk == "host" {
			continue
		}
		for _, v := range r.Header[k] {
			if lk == "te" && !strings.EqualFold(strings.TrimSpace(v), "trailers") {
				continue
			}
			h.add(lk, v)
		}
	}
	return h
}

// mutateRequestHeaders is ConnectionManagerUtility::mutateRequestHeaders
// for the settings the harness models (the downstream is plaintext):
//   - with use_remote_address: x-forwarded-for gets the peer appended (the
//     listener's own address when the peer is loopback) unless
//     skip_xff_append; x-forwarded-proto is overwritten unless
//     xff_num_trusted_hops > 0; the trusted client address is the peer, or
//     the XFF entry xff_num_trusted_hops from the right;
//   - x-forwarded-proto set when absent, :scheme from it;
//   - internal requests (trusted address in internal_address_config, none
//     by default since Envoy 1.33) get x-envoy-internal; the others lose the
//     x-envoy-* control headers (cleanInternalHeaders); edge requests get
//     x-envoy-external-address;
//   - x-request-id kept or generated, replaced on edge requests unless
//     preserve_external_request_id.
func (st *stream) mutateRequestHeaders() {
	cm := st.cm
	if cm.stripAnyHostPort {
		if host, _, err := net.SplitHostPort(st.h.value(":authority")); err == nil {
			st.h.set(":authority", host)
		}
	}
	st.h.remove("x-envoy-internal")
	remoteIP, _, _ := net.SplitHostPort(st.r.RemoteAddr)
	var trusted string // the final remote address, "" when unknown
	if cm.useRemoteAddress {
		if cm.xffTrustedHops > 0 {
			trusted = xffAddress(st.h, int(cm.xffTrustedHops)-1)
		}
		if trusted == "" {
			trusted = remoteIP
		}
		if !cm.skipXFFAppend {
			appended := remoteIP
			if ip := net.ParseIP(remoteIP); ip != nil && ip.IsLoopback() {
				appended, _, _ = net.SplitHostPort(localAddr(st.r))
			}
			if !st.h.appendValue("x-forwarded-for", appended) {
				st.h.add("x-forwarded-for", appended)
			}
		}
		if cm.xffTrustedHops == 0 || !st.h.has("x-forwarded-proto") {
			st.h.set("x-forwarded-proto", "http")
		}
	}
	if !st.h.has("x-forwarded-proto") {
		st.h.set("x-forwarded-proto", "http")
	}
	scheme := st.h.value("x-forwarded-proto")
	if scheme != "http" && scheme != "https" {
		scheme = "http"
	}
	st.h.set(":scheme", scheme)

	internal := trusted != "" && cm.isInternal(trusted)
	edge := !internal && cm.useRemoteAddress
	if internal {
		st.h.set("x-envoy-internal", "true")
	} else {
		cleanInternalHeaders(&st.h, edge, st.rt)
	}
	if edge {
		st.h.set("x-envoy-external-address", trusted)
	}
	if cm.generateRequestID {
		if !st.h.has("x-request-id") || (edge && !cm.preserveExternalRequestID) {
			st.h.set("x-request-id", newUUID())
		}
	}
	st.reqID = st.h.value("x-request-id")
}

// xffAddress returns the address n entries from the right of
// x-forwarded-for (Utility::getLastAddressFromXFF), "" if there is none.
func xffAddress(h headerMap, n int) string {
	v, ok := h.joined("x-forwarded-for")
	if !ok {
		return ""
	}
	parts := strings.Split(v, ",")
	if n >= len(parts) {
		return ""
	}
	a := strings.TrimSpace(parts[len(parts)-1-n])
	if net.ParseIP(a) == nil {
		return ""
	}
	return a
}

// externalOnlyStripped are the x-envoy-* request headers Envoy removes from
// every request that is not internal; edgeOnlyStripped are removed from
// edge requests too (ConnectionManagerUtility::cleanInternalHeaders).
var (
	externalOnlyStripped = []string{
		"x-envoy-retriable-status-codes", "x-envoy-retriable-header-names", "x-envoy-retry-on",
		"x-envoy-retry-grpc-on", "x-envoy-max-retries", "x-envoy-upstream-alt-stat-name",
		"x-envoy-upstream-rq-timeout-ms", "x-envoy-upstream-rq-per-try-timeout-ms",
		"x-envoy-upstream-rq-timeout-alt-response", "x-envoy-expected-rq-timeout-ms",
		"x-envoy-force-trace", "x-envoy-ip-tags", "x-envoy-original-url", "x-envoy-hedge-on-per-try-timeout",
	}
	edgeOnlyStripped = []string{
		"x-envoy-decorator-operation", "x-envoy-downstream-service-cluster", "x-envoy-downstream-service-node",
	}
)

func cleanInternalHeaders(h *headerMap, edge bool, rt *routeTable) {
	if edge {
		for _, k := range edgeOnlyStripped {
			h.remove(k)
		}
	}
	for _, k := range externalOnlyStripped {
		h.remove(k)
	}
	if rt != nil {
		for _, k := range rt.internalOnlyHeaders {
			h.remove(k)
		}
	}
}

// localReply sends a response generated by the proxy itself, shaped like
// Envoy's sendLocalReply: text/plain when there is a body, content-length,
// server. replace are headers that replace same-name headers (a denied
// CheckResponse's headers).
func (st *stream) localReply(status int, body []byte, replace []header) {
	h := headerMap{}
	if len(body) > 0 {
		h.add("content-type", "text/plain")
	}
	h.add("content-length", strconv.Itoa(len(body)))
	st.finishResponseHeaders(&h)
	for _, r := range replace {
		h.remove(r.key)
	}
	for _, r := range replace {
		h.add(r.key, r.value)
	}
	st.closeIfIncomplete()
	st.writeHeaders(h, status)
	if len(body) > 0 && st.r.Method != http.MethodHead {
		_, _ = st.w.Write(body)
	}
}

// finishResponseHeaders applies what the connection manager and the
// ext_authz encoder add to every response.
func (st *stream) finishResponseHeaders(h *headerMap) {
	if st.cm != nil {
		switch st.cm.serverTransform {
		case hcmv3.HttpConnectionManager_OVERWRITE:
			h.set("server", st.cm.serverName)
		case hcmv3.HttpConnectionManager_APPEND_IF_ABSENT:
			if !h.has("server") {
				h.add("server", st.cm.serverName)
			}
		}
		if st.cm.alwaysSetRequestID && st.reqID != "" {
			h.set("x-request-id", st.reqID)
		}
	} else {
		h.set("server", "envoy")
	}
	for _, m := range st.respMutations {
		switch m.action {
		case "add":
			h.add(m.key, m.value)
		case "set":
			h.set(m.key, m.value)
		case "add_if_absent":
			if !h.has(m.key) {
				h.add(m.key, m.value)
			}
		case "overwrite_if_exists":
			if h.has(m.key) {
				h.set(m.key, m.value)
			}
		}
	}
}

func (st *stream) writeHeaders(h headerMap, status int) {
	out := st.w.Header()
	for k, v := range h.toHTTP(nil) {
		out[k] = v
	}
	st.w.WriteHeader(status)
}

// closeIfIncomplete marks a local reply sent before the request body was
// read: like Envoy's HTTP/1.1 codec, the connection is closed after it
// rather than reused with unread bytes on it.
func (st *stream) closeIfIncomplete() {
	if !st.bodyDone {
		st.w.Header().Set("Connection", "close")
	}
}

// idleTimer implements the stream idle timeout: it fires when no request
// or response activity happened for the duration.
type idleTimer struct {
	mu     sync.Mutex
	d      time.Duration
	t      *time.Timer
	fired  chan struct{}
	once   sync.Once
	cancel context.CancelCauseFunc
}

func newIdleTimer(d time.Duration) *idleTimer {
	it := &idleTimer{fired: make(chan struct{})}
	it.reset(d)
	return it
}

// reset changes the duration (0 disables) and restarts the timer.
func (it *idleTimer) reset(d time.Duration) {
	it.mu.Lock()
	defer it.mu.Unlock()
	it.d = d
	if it.t != nil {
		it.t.Stop()
		it.t = nil
	}
	if d > 0 {
		it.t = time.AfterFunc(d, it.fire)
	}
}

// touch records activity.
func (it *idleTimer) touch() {
	it.mu.Lock()
	defer it.mu.Unlock()
	if it.t != nil {
		it.t.Reset(it.d)
	}
}

func (it *idleTimer) fire() {
	it.once.Do(func() {
		close(it.fired)
		it.mu.Lock()
		c := it.cancel
		it.mu.Unlock()
		if c != nil {
			c(errIdleTimeout)
		}
	})
}

// bind makes the timer cancel ctx when it fires.
func (it *idleTimer) bind(c context.CancelCauseFunc) {
	it.mu.Lock()
	it.cancel = c
	it.mu.Unlock()
	select {
	case <-it.fired:
		c(errIdleTimeout)
	default:
	}
}

func (it *idleTimer) stop() {
	it.mu.Lock()
	defer it.mu.Unlock()
	if it.t != nil {
		it.t.Stop()
	}
}

func randomUint64() uint64 {
	var b [8]byte
	_, _ = rand.Read(b[:])
	return binary.BigEndian.Uint64(b[:])
}

// newUUID returns a random (version 4) UUID, the format of Envoy's
// generated x-request-id.
func newUUID() string {
	var b [16]byte
	_, _ = rand.Read(b[:])
	b[6] = b[6]&0x0f | 0x40
	b[8] = b[8]&0x3f | 0x80
	return fmt.Sprintf("%x-%x-%x-%x-%x", b[0:4], b[4:6], b[6:8], b[8:10], b[10:16])
}
