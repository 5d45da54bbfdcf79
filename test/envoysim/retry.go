package envoysim

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"strings"
	"time"

	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	previoushostsv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/retry/host/previous_hosts/v3"
)

var previousHostsTypeURL = typeURLOf(&previoushostsv3.PreviousHostsPredicate{})

// defaultBufferLimit is the listener's per_connection_buffer_limit_bytes
// default (1 MiB): the most request body the router keeps for a retry
// unless the route or virtual host sets per_request_buffer_limit_bytes.
const defaultBufferLimit = 1 << 20

// retryPolicy is a compiled RetryPolicy (router filter, "x-envoy-retry-on"
// policies from route configuration only).
type retryPolicy struct {
	on5xx, onGateway, onConnect, onReset, onStatus bool
	statusCodes                                    map[int]bool
	numRetries                                     uint32
	previousHosts                                  bool
	hostSelectionAttempts                          int64
	base, maxInterval                              time.Duration
}

func compileRetryPolicy(rp *routev3.RetryPolicy) (*retryPolicy, error) {
	if rp == nil {
		return nil, nil
	}
	out := &retryPolicy{
		numRetries:            1, // RetryPolicy.num_retries default
		hostSelectionAttempts: rp.GetHostSelectionRetryMaxAttempts(),
		base:                  25 * time.Millisecond, // RetryBackOff.base_interval default
		statusCodes:           map[int]bool{},
	}
	if rp.GetNumRetries() != nil {
		out.numRetries = rp.GetNumRetries().GetValue()
	}
	if out.hostSelectionAttempts == 0 {
		out.hostSelectionAttempts = 1 // "If unspecified, this will default to retrying once."
	}
	for _, on := range strings.Split(rp.GetRetryOn(), ",") {
		switch strings.TrimSpace(on) {
		case "":
		case "5xx":
			out.on5xx = true
		case "gateway-error":
			out.onGateway = true
		case "connect-failure":
			out.onConnect = true
		case "reset":
			out.onReset = true
		case "refused-stream":
			// HTTP/2 REFUSED_STREAM: Go's HTTP/2 client already retries a
			// refused stream on a new connection, before the router sees it.
		case "retriable-status-codes":
			out.onStatus = true
		default:
			return nil, fmt.Errorf("retry_on %q is not supported by envoysim", on)
		}
	}
	for _, c := range rp.GetRetriableStatusCodes() {
		out.statusCodes[int(c)] = true
	}
	if bo := rp.GetRetryBackOff(); bo != nil {
		out.base = bo.GetBaseInterval().AsDuration()
		out.maxInterval = bo.GetMaxInterval().AsDuration()
	}
	if out.maxInterval == 0 {
		out.maxInterval = 10 * out.base // max_interval default: 10 times base_interval
	}
	for _, p := range rp.GetRetryHostPredicate() {
		if p.GetTypedConfig().GetTypeUrl() != previousHostsTypeURL {
			return nil, fmt.Errorf("retry_host_predicate %q is not supported by envoysim (only previous_hosts)", p.GetName())
		}
		out.previousHosts = true
	}
	switch {
	case rp.GetRetryPriority() != nil:
		return nil, errors.New("retry_priority is not supported by envoysim")
	case rp.GetPerTryTimeout() != nil || rp.GetPerTryIdleTimeout() != nil:
		return nil, errors.New("per_try_timeout and per_try_idle_timeout are not supported by envoysim")
	case len(rp.GetRetriableHeaders()) > 0 || len(rp.GetRetriableRequestHeaders()) > 0:
		return nil, errors.New("retriable_headers and retriable_request_headers are not supported by envoysim")
	case rp.GetRateLimitedRetryBackOff() != nil || len(rp.GetRetryOptionsPredicates()) > 0:
		return nil, errors.New("rate_limited_retry_back_off and retry_options_predicates are not supported by envoysim")
	}
	return out, nil
}

// failure is how one upstream attempt ended, for the retry decision.
type failure int

const (
	failNone    failure = iota // a response arrived
	failConnect                // the connection was never established (refused, TLS)
	failReset                  // the connection ended before response headers
)

// retriable reports whether the router retries an attempt that ended with
// f, or with response status code when f is failNone. The policies as
// router_filter.rst (x-envoy-retry-on) defines them: 5xx covers every 5xx
// and also connect failures and resets; gateway-error 502, 503, 504 and
// also connect failures and resets; connect-failure and reset only those.
func (p *retryPolicy) retriable(f failure, code int) bool {
	switch f {
	case failConnect:
		return p.on5xx || p.onGateway || p.onConnect
	case failReset:
		return p.on5xx || p.onGateway || p.onReset
	}
	switch {
	case p.on5xx && code >= 500:
		return true
	case p.onGateway && code >= 502 && code <= 504:
		return true
	case p.onStatus && p.statusCodes[code]:
		return true
	}
	return false
}

// backoff waits before retry n (1-based): fully jittered exponential,
// uniform in [0, (2^n - 1) * base_interval], capped at max_interval. It
// reports false when ctx ended first.
func (p *retryPolicy) backoff(ctx context.Context, n uint32) bool {
	upper := p.base * time.Duration((int64(1)<<min(n, 30))-1)
	if upper > p.maxInterval || upper <= 0 {
		upper = p.maxInterval
	}
	var d time.Duration
	if upper > 0 {
		d = time.Duration(rand.Int64N(int64(upper) + 1))
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	}
}
