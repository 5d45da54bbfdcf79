package envoysim

import (
	"errors"
	"fmt"
	"net"
	"strconv"
	"sync"
	"time"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
)

// host is one endpoint of a cluster with the load balancer's and the
// outlier detector's view of it.
type host struct {
	endpoint
	weight uint32

	// mu guards the outlier state and the smooth weighted round robin
	// credit.
	mu           sync.Mutex
	consec5xx    uint32
	consecGW     uint32
	ejections    int
	ejectedUntil time.Time
	current      int64

	// The envoy_grpc client's connection to this host, made on first use.
	grpcOnce sync.Once
	grpcConn *grpc.ClientConn
	grpcErr  error
}

func (h *host) ejected(now time.Time) bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	return now.Before(h.ejectedUntil)
}

// outlierDetection is a compiled OutlierDetection: the consecutive 5xx and
// consecutive gateway failure detectors, with locally originated errors
// (connect failure, reset, timeout) counted as the 503/504 Envoy maps them
// to when split_external_local_origin_errors is false.
type outlierDetection struct {
	consecutive5xx     uint32
	enforce5xx         bool
	consecutiveGateway uint32
	enforceGateway     bool
	baseEjection       time.Duration
	maxEjection        time.Duration
	maxEjectionPercent uint32
	alwaysEjectOne     bool
}

func u32Or(v interface{ GetValue() uint32 }, def uint32, isNil bool) uint32 {
	if isNil {
		return def
	}
	return v.GetValue()
}

func compileOutlier(od *clusterv3.OutlierDetection, hosts int) (*outlierDetection, error) {
	if od == nil {
		return nil, nil
	}
	if od.GetSplitExternalLocalOriginErrors() {
		return nil, errors.New("outlier_detection.split_external_local_origin_errors is not supported by envoysim")
	}
	// Success rate ejection (on by default) needs success_rate_minimum_hosts
	// hosts (default 5) with enough volume in an interval; with fewer hosts
	// Envoy never applies it, with more it is refused, not approximated.
	if od.GetEnforcingSuccessRate() == nil || od.GetEnforcingSuccessRate().GetValue() != 0 {
		if int(u32Or(od.GetSuccessRateMinimumHosts(), 5, od.GetSuccessRateMinimumHosts() == nil)) <= hosts {
			return nil, errors.New("outlier_detection success rate ejection is not supported by envoysim (set enforcing_success_rate to 0)")
		}
	}
	if od.GetEnforcingFailurePercentage().GetValue() != 0 || od.GetEnforcingFailurePercentageLocalOrigin().GetValue() != 0 {
		return nil, errors.New("outlier_detection failure percentage ejection is not supported by envoysim")
	}
	if len(od.GetMonitors()) > 0 || od.GetDetectDegradedHosts().GetValue() || od.GetMaxEjectionTimeJitter().AsDuration() != 0 {
		return nil, errors.New("outlier_detection monitors, detect_degraded_hosts and max_ejection_time_jitter are not supported by envoysim")
	}
	enf := func(v interface{ GetValue() uint32 }, isNil bool, def uint32, what string) (bool, error) {
		e := u32Or(v, def, isNil)
		if e != 0 && e != 100 {
			return false, fmt.Errorf("outlier_detection.%s %d: only 0 or 100 is supported by envoysim", what, e)
		}
		return e == 100, nil
	}
	out := &outlierDetection{
		// Defaults from outlier_detection.proto.
		consecutive5xx:     u32Or(od.GetConsecutive_5Xx(), 5, od.GetConsecutive_5Xx() == nil),
		consecutiveGateway: u32Or(od.GetConsecutiveGatewayFailure(), 5, od.GetConsecutiveGatewayFailure() == nil),
		baseEjection:       durationOr(od.GetBaseEjectionTime(), 30*time.Second),
		maxEjectionPercent: u32Or(od.GetMaxEjectionPercent(), 10, od.GetMaxEjectionPercent() == nil),
		alwaysEjectOne:     od.GetAlwaysEjectOneHost().GetValue(),
	}
	out.maxEjection = max(durationOr(od.GetMaxEjectionTime(), 300*time.Second), out.baseEjection)
	var err error
	if out.enforce5xx, err = enf(od.GetEnforcingConsecutive_5Xx(), od.GetEnforcingConsecutive_5Xx() == nil, 100, "enforcing_consecutive_5xx"); err != nil {
		return nil, err
	}
	if out.enforceGateway, err = enf(od.GetEnforcingConsecutiveGatewayFailure(), od.GetEnforcingConsecutiveGatewayFailure() == nil, 0, "enforcing_consecutive_gateway_failure"); err != nil {
		return nil, err
	}
	return out, nil
}

// compileHosts reads the load assignment: priority 0 only, every locality
// flattened (locality weighted balancing is off unless configured), hosts
// marked UNHEALTHY, DRAINING or TIMEOUT left out.
func compileHosts(c *clusterv3.Cluster, dnsType bool) ([]*host, error) {
	var out []*host
	for _, loc := range c.GetLoadAssignment().GetEndpoints() {
		if loc.GetPriority() != 0 {
			return nil, errors.New("endpoint priorities other than 0 are not supported by envoysim")
		}
		for _, lbe := range loc.GetLbEndpoints() {
			switch lbe.GetHealthStatus() {
			case corev3.HealthStatus_UNHEALTHY, corev3.HealthStatus_DRAINING, corev3.HealthStatus_TIMEOUT:
				continue // Envoy does not balance onto these
			}
			ep := lbe.GetEndpoint()
			sa := ep.GetAddress().GetSocketAddress()
			if sa == nil {
				return nil, errors.New("only socket_address endpoints are supported by envoysim")
			}
			port, ok := sa.GetPortSpecifier().(*corev3.SocketAddress_PortValue)
			if !ok {
				return nil, errors.New("endpoint port_value is required by envoysim")
			}
			h := &host{
				endpoint: endpoint{addr: net.JoinHostPort(sa.GetAddress(), strconv.Itoa(int(port.PortValue))), hostname: ep.GetHostname()},
				weight:   1,
			}
			if w := lbe.GetLoadBalancingWeight(); w != nil {
				h.weight = w.GetValue()
			}
			if h.hostname == "" && dnsType {
				h.hostname = sa.GetAddress()
			}
			out = append(out, h)
		}
	}
	return out, nil
}

// defaultPanicThreshold is CommonLbConfig.healthy_panic_threshold's
// default: below 50% healthy hosts Envoy balances over all of them.
const defaultPanicThreshold = 50.0

// pick chooses the host for one request with ROUND_ROBIN: plain rotation
// when every weight is equal, weighted (smooth weighted round robin, the
// same proportions as Envoy's EDF scheduler) otherwise. Ejected hosts are
// left out unless fewer than healthy_panic_threshold percent remain.
// reject, when non-nil, is a retry host predicate: a host it rejects is
// re-picked up to attempts more times, then used anyway (Envoy's
// host_selection_retry_max_attempts).
func (c *cluster) pick(reject func(*host) bool, attempts int64) (*host, bool) {
	var h *host
	for i := int64(0); i <= attempts; i++ {
		var ok bool
		if h, ok = c.pickOnce(); !ok {
			return nil, false
		}
		if reject == nil || !reject(h) {
			break
		}
	}
	return h, true
}

func (c *cluster) pickOnce() (*host, bool) {
	if len(c.hosts) == 0 {
		return nil, false
	}
	now := time.Now()
	healthy := make([]*host, 0, len(c.hosts))
	for _, h := range c.hosts {
		if !h.ejected(now) {
			healthy = append(healthy, h)
		}
	}
	candidates := healthy
	if 100*float64(len(healthy)) < c.panicThreshold*float64(len(c.hosts)) {
		candidates = c.hosts // panic mode: all hosts, healthy or not
	}
	if len(candidates) == 0 {
		return nil, false
	}
	if !c.weighted {
		n := c.next.Add(1) - 1
		return candidates[n%uint64(len(candidates))], true
	}
	c.wrrMu.Lock()
	defer c.wrrMu.Unlock()
	var total int64
	var best *host
	for _, h := range candidates {
		h.mu.Lock()
		h.current += int64(h.weight)
		total += int64(h.weight)
		if best == nil || h.current > best.current {
			best = h
		}
		h.mu.Unlock()
	}
	best.mu.Lock()
	best.current -= total
	best.mu.Unlock()
	return best, true
}

// report feeds the outcome of one request to a host to the cluster's
// outlier detector: an HTTP status (gRPC statuses mapped by grpcToHTTP), or
// for a locally originated failure the status Envoy maps it to: 503 for a
// connect failure or reset, 504 for a timeout.
func (c *cluster) report(h *host, status int) {
	od := c.outlier
	if od == nil || h == nil {
		return
	}
	h.mu.Lock()
	if status < 500 {
		h.consec5xx, h.consecGW = 0, 0
		h.mu.Unlock()
		return
	}
	h.consec5xx++
	if status >= 502 && status <= 504 {
		h.consecGW++
	} else {
		h.consecGW = 0
	}
	trip := (od.enforce5xx && h.consec5xx >= od.consecutive5xx) || (od.enforceGateway && h.consecGW >= od.consecutiveGateway)
	if trip {
		h.consec5xx, h.consecGW = 0, 0
	}
	h.mu.Unlock()
	if trip {
		c.eject(h)
	}
}

// eject takes a host out of balancing for base_ejection_time times the
// number of times it has been ejected (capped by max_ejection_time), if
// max_ejection_percent allows it.
func (c *cluster) eject(h *host) {
	c.ejectMu.Lock()
	defer c.ejectMu.Unlock()
	now := time.Now()
	active := 0
	for _, o := range c.hosts {
		if o != h && o.ejected(now) {
			active++
		}
	}
	if h.ejected(now) {
		return
	}
	od := c.outlier
	pct := 100 * float64(active+1) / float64(len(c.hosts))
	if pct > float64(od.maxEjectionPercent) && !(od.alwaysEjectOne && active == 0) {
		return
	}
	h.mu.Lock()
	h.ejections++
	d := min(od.baseEjection*time.Duration(h.ejections), od.maxEjection)
	h.ejectedUntil = now.Add(d)
	h.mu.Unlock()
}

// grpcToHTTP is Envoy's Grpc::Utility::grpcToHttpStatus, which the router
// uses to feed gRPC answers to outlier detection.
func grpcToHTTP(c codes.Code) int {
	switch c {
	case codes.OK:
		return 200
	case codes.Canceled:
		return 499
	case codes.InvalidArgument, codes.FailedPrecondition, codes.OutOfRange:
		return 400
	case codes.DeadlineExceeded:
		return 504
	case codes.NotFound:
		return 404
	case codes.AlreadyExists, codes.Aborted:
		return 409
	case codes.PermissionDenied:
		return 403
	case codes.ResourceExhausted:
		return 429
	case codes.Unimplemented:
		return 501
	case codes.Unavailable:
		return 503
	case codes.Unauthenticated:
		return 401
	}
	return 500 // Unknown, Internal, DataLoss
}
