package envoysim

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"net/url"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	extprocv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/ext_proc/v3"
)

// route is the router filter: direct responses, path and host rewrites,
// the upstream request and the streamed response.
func (st *stream) route() {
	if st.rr == nil {
		// No route: Envoy answers 404 with an empty body.
		st.localReply(http.StatusNotFound, nil, nil)
		return
	}
	if d := st.rr.direct; d != nil {
		h := headerMap{}
		if len(d.body) > 0 {
			h.add("content-type", "text/plain")
		}
		h.add("content-length", strconv.Itoa(len(d.body)))
		st.routeResponseHeaders(&h)
		st.finishResponseHeaders(&h)
		st.closeIfIncomplete()
		st.writeHeaders(h, d.status)
		if len(d.body) > 0 && st.r.Method != http.MethodHead {
			_, _ = st.w.Write(d.body)
		}
		return
	}
	a := st.rr.action
	c := st.s.clusters[a.clusterFor(st.h)]
	if c == nil {
		// cluster_not_found_response_code, 503 by default, empty body.
		st.localReply(a.notFoundCode, nil, nil)
		return
	}

	// finalizeRequestHeaders: header mutations of the route table levels,
	// then host and path rewrites.
	for _, m := range st.requestMutationLevels() {
		m.apply(&st.h)
	}
	origHost := st.h.value(":authority")
	if a.hostLiteral != "" {
		st.h.set(":authority", a.hostLiteral)
	}
	if a.hostHeader != "" {
		if v, ok := st.h.get(a.hostHeader); ok && v != "" {
			st.h.set(":authority", v)
		}
	}
	origPath := st.h.value(":path")
	if p, rewritten := a.rewritePath(&st.rr.match, origPath); rewritten {
		st.h.set(":path", p)
		if !st.cm.suppressEnvoyHeaders {
			st.h.set("x-envoy-original-path", origPath)
		}
	}
	if a.timeout > 0 && !st.cm.suppressEnvoyHeaders {
		st.h.set("x-envoy-expected-rq-timeout-ms", strconv.FormatInt(a.timeout.Milliseconds(), 10))
	}

	ep, ok := c.pick(nil, 0)
	if !ok {
		st.localReply(http.StatusServiceUnavailable, []byte("no healthy upstream"), nil)
		return
	}
	if a.autoHost && ep.hostname != "" {
		st.h.set(":authority", ep.hostname)
	}
	if a.appendXFH {
		if newHost := st.h.value(":authority"); newHost != origHost {
			if !st.h.appendValue("x-forwarded-host", origHost) {
				st.h.add("x-forwarded-host", origHost)
			}
		}
	}
	maxStream := st.cm.maxStreamDuration
	if a.maxStream != nil {
		maxStream = *a.maxStream
	}
	st.forward(c, ep, a, maxStream)
}

// requestMutationLevels orders the request header mutations of the route,
// virtual host and route configuration: by default the route's first, so
// that the less specific levels win, reversed with
// most_specific_header_mutations_wins.
func (st *stream) requestMutationLevels() []headerMutations {
	levels := []headerMutations{st.rr.reqHeaders, st.vh.reqHeaders, st.rt.reqHeaders}
	if st.rt.mostSpecificWins {
		levels[0], levels[2] = levels[2], levels[0]
	}
	return levels
}

func (st *stream) routeResponseHeaders(h *headerMap) {
	if st.rr == nil {
		return
	}
	levels := []headerMutations{st.rr.respHeaders, st.vh.respHeaders, st.rt.respHeaders}
	if st.rt.mostSpecificWins {
		levels[0], levels[2] = levels[2], levels[0]
	}
	for _, m := range levels {
		m.apply(h)
	}
}

// activityReader touches the idle timer on every read and reports the end
// of the request body (where the route timeout starts).
type activityReader struct {
	r     io.Reader
	idle  *idleTimer
	once  sync.Once
	onEOF func()
}

func (a *activityReader) Read(p []byte) (int, error) {
	n, err := a.r.Read(p)
	if n > 0 {
		a.idle.touch()
	}
	if err == io.EOF {
		a.once.Do(a.onEOF)
	}
	return n, err
}

func (a *activityReader) Close() error { return nil }

// forward sends the request to one host of the cluster, and to others as
// the route's retry policy allows, and streams the response back, flushing
// every chunk as it arrives.
func (st *stream) forward(c *cluster, up *host, a *routeAction, maxStream time.Duration) {
	timeout := a.timeout
	ctx, cancel := context.WithCancelCause(st.r.Context())
	defer cancel(nil)
	st.idle.bind(cancel)

	// max_stream_duration counts from the start of the downstream stream,
	// whatever else happens on it (a long-lived SSE response included).
	if maxStream > 0 {
		t := time.AfterFunc(maxStream-time.Since(st.start), func() { cancel(errMaxDuration) })
		defer t.Stop()
	}

	// The route timeout spans from the end of the downstream request to the
	// end of the upstream response.
	var timer *time.Timer
	var timerMu sync.Mutex
	startTimeout := func() {
		if timeout <= 0 {
			return
		}
		timerMu.Lock()
		timer = time.AfterFunc(timeout, func() { cancel(errRouteTimeout) })
		timerMu.Unlock()
	}
	defer func() {
		timerMu.Lock()
		if timer != nil {
			timer.Stop()
		}
		timerMu.Unlock()
	}()

	rp := a.retry
	contentLength := st.r.ContentLength
	// The router keeps the request body for retries up to the buffer
	// limit; a longer body disables them (router.cc, retry_shadow_buffer
	// limit). The harness reads the kept body before the first attempt,
	// where Envoy buffers it as it streams.
	var replay []byte
	replayable := contentLength == 0
	var stream io.ReadCloser = http.NoBody
	if contentLength != 0 {
		stream = &activityReader{r: st.body, idle: st.idle, onEOF: startTimeout}
		if rp != nil && rp.numRetries > 0 {
			buf, err := readUpTo(stream, a.bufferLimit+1)
			if err != nil {
				st.p.log.Debug("envoysim: reading request body", "err", err)
				panic(http.ErrAbortHandler) // downstream reset
			}
			if int64(len(buf)) <= a.bufferLimit {
				replay, replayable = buf, true
			} else {
				stream = &activityReader{r: io.MultiReader(bytes.NewReader(buf), st.body), idle: st.idle, onEOF: startTimeout}
			}
		}
	} else {
		startTimeout()
	}
	canRetry := rp != nil && replayable

	if c.autoSNI {
		ctx = context.WithValue(ctx, sniKey{}, hostOnly(st.h.value(":authority")))
	}
	tried := map[*host]bool{}
	var resp *http.Response
	var err error
	var sent time.Time
	for attempt := uint32(0); ; attempt++ {
		tried[up] = true
		if a.autoHost && up.hostname != "" {
			st.h.set(":authority", up.hostname)
		}
		body := stream
		if replay != nil {
			body = io.NopCloser(bytes.NewReader(replay))
		}
		req, rerr := st.upstreamRequest(ctx, c, up, body, contentLength)
		if rerr != nil {
			st.localReply(http.StatusBadRequest, nil, nil)
			return
		}
		sent = time.Now()
		resp, err = c.transport.RoundTrip(req)
		f, code := failNone, 0
		switch {
		case err == nil:
			code = resp.StatusCode
			c.report(up, code)
			st.p.countHost(c.name, up.addr)
		case ctx.Err() != nil:
			if errors.Is(context.Cause(ctx), errRouteTimeout) {
				c.report(up, http.StatusGatewayTimeout)
			}
		case isConnectFailure(err):
			f = failConnect
			c.report(up, http.StatusServiceUnavailable)
		default:
			f = failReset
			c.report(up, http.StatusServiceUnavailable)
		}
		if !canRetry || attempt >= rp.numRetries || ctx.Err() != nil || (err != nil && f == failNone) || !rp.retriable(f, code) {
			break
		}
		if resp != nil {
			_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
			_ = resp.Body.Close()
			resp = nil
		}
		if !rp.backoff(ctx, attempt+1) {
			err = context.Cause(ctx)
			break
		}
		var reject func(*host) bool
		if rp.previousHosts {
			reject = func(x *host) bool { return tried[x] }
		}
		next, ok := c.pick(reject, rp.hostSelectionAttempts)
		if !ok {
			st.localReply(http.StatusServiceUnavailable, []byte("no healthy upstream"), nil)
			return
		}
		up = next
	}
	if err != nil {
		st.upstreamFailure(ctx, err, false)
		return
	}
	defer func() { _ = resp.Body.Close() }()
	st.idle.touch()

	h := headerMap{}
	keys := make([]string, 0, len(resp.Header))
	for k := range resp.Header {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		lk := strings.ToLower(k)
		if hopByHop[lk] {
			continue
		}
		for _, v := range resp.Header[k] {
			h.add(lk, v)
		}
	}
	if !st.cm.suppressEnvoyHeaders {
		h.set("x-envoy-upstream-service-time", strconv.FormatInt(time.Since(sent).Milliseconds(), 10))
	}
	st.routeResponseHeaders(&h)
	// The encoder filters see the headers after the router: ext_proc,
	// then ext_authz's response_headers_to_add and the connection manager.
	pr, answered := st.extProcResponseHeaders(&h, resp.StatusCode)
	if answered {
		return
	}
	if pr != nil && pr.ps.mode.GetResponseBodyMode() == extprocv3.ProcessingMode_BUFFERED {
		st.forwardBuffered(ctx, pr, h, resp)
		return
	}
	st.finishResponseHeaders(&h)
	st.writeHeaders(h, resp.StatusCode)

	rc := http.NewResponseController(st.w)
	_ = rc.Flush() // response headers go out before the first body byte
	if pr != nil {
		st.forwardStreamed(ctx, pr, resp)
		return
	}
	buf := make([]byte, 32*1024)
	for {
		n, rerr := resp.Body.Read(buf)
		if n > 0 {
			st.idle.touch()
			if _, werr := st.w.Write(buf[:n]); werr != nil {
				return // downstream went away
			}
			_ = rc.Flush()
		}
		if rerr == io.EOF {
			return
		}
		if rerr != nil {
			st.upstreamFailure(ctx, rerr, true)
			return
		}
	}
}

// upstreamRequest builds one attempt's request to host h.
func (st *stream) upstreamRequest(ctx context.Context, c *cluster, h *host, body io.ReadCloser, contentLength int64) (*http.Request, error) {
	path := st.h.value(":path")
	u := &url.URL{Scheme: c.scheme(), Host: h.addr}
	if strings.HasPrefix(path, "/") && !strings.HasPrefix(path, "//") {
		p, q := splitPath(path)
		u.Opaque = p
		u.RawQuery = strings.TrimPrefix(q, "?")
		u.ForceQuery = q == "?"
	} else if pu, err := url.ParseRequestURI(path); err == nil {
		u.Path, u.RawPath, u.RawQuery = pu.Path, pu.RawPath, pu.RawQuery
	}
	req, err := http.NewRequestWithContext(ctx, st.h.value(":method"), "http://placeholder/", body)
	if err != nil {
		return nil, err
	}
	req.URL = u
	req.Host = st.h.value(":authority")
	req.ContentLength = contentLength
	req.Header = st.h.toHTTP(func(k string) bool {
		return k == "host" || k == "content-length"
	})
	if _, ok := req.Header["User-Agent"]; !ok {
		req.Header["User-Agent"] = []string{""} // keep Go from adding its own
	}
	return req, nil
}

// isConnectFailure reports whether the connection to the upstream was
// never established (refused, unreachable, TLS handshake failed).
func isConnectFailure(err error) bool {
	var op *net.OpError
	return errors.As(err, &op) && op.Op == "dial" || strings.Contains(err.Error(), "TLS error")
}

// upstreamFailure answers a failed upstream exchange the way the router
// and the connection manager do.
func (st *stream) upstreamFailure(ctx context.Context, err error, headersSent bool) {
	cause := context.Cause(ctx)
	if headersSent {
		// Too late for a status: Envoy resets the downstream stream.
		st.p.log.Debug("envoysim: upstream failed mid-response", "err", err, "cause", cause)
		panic(http.ErrAbortHandler)
	}
	switch {
	case errors.Is(cause, errRouteTimeout):
		st.localReply(http.StatusGatewayTimeout, []byte("upstream request timeout"), nil)
	case errors.Is(cause, errIdleTimeout):
		st.localReply(http.StatusRequestTimeout, []byte("stream timeout"), nil)
	case errors.Is(cause, errMaxDuration):
		st.localReply(http.StatusRequestTimeout, []byte("downstream duration timeout"), nil)
	case st.r.Context().Err() != nil:
		// The downstream went away; nobody to answer.
	default:
		if isConnectFailure(err) {
			st.localReply(http.StatusServiceUnavailable, []byte(connectFailure(err)), nil)
			return
		}
		st.localReply(http.StatusServiceUnavailable, []byte(
			"upstream connect error or disconnect/reset before headers. reset reason: connection termination"), nil)
	}
}

func hostOnly(authority string) string {
	if h, _, err := net.SplitHostPort(authority); err == nil {
		return h
	}
	return authority
}
