package authz

import (
	"strconv"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// Metrics are the ext_authz metrics. Label values are resolved once so the
// hot path does no label lookups.
type Metrics struct {
	decisions *prometheus.CounterVec
	duration  prometheus.Histogram
	allowed   prometheus.Counter
	Failures  failureCounters
	byStatus  map[int]prometheus.Counter
}

type failureCounters struct {
	vec                                           *prometheus.CounterVec
	store, policy, timeout, panic, audit, credent prometheus.Counter
}

// NewMetrics registers the metrics with reg (nil: unregistered, for tests).
func NewMetrics(reg prometheus.Registerer) *Metrics {
	m := &Metrics{
		decisions: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "warden_authz_decisions_total",
			Help: "ext_authz decisions by outcome and HTTP status.",
		}, []string{"decision", "status"}),
		duration: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "warden_authz_check_duration_seconds",
			Help:    "Time to answer one Check, audit enqueue included.",
			Buckets: []float64{.00005, .0001, .00025, .0005, .001, .0025, .005, .01, .025, .1, .5},
		}),
		byStatus: map[int]prometheus.Counter{},
	}
	m.Failures.vec = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "warden_authz_failures_total",
		Help: "Checks denied because of an internal failure (fail closed), by class.",
	}, []string{"class"})
	f := &m.Failures
	label := func(c failureClass) prometheus.Counter { return f.vec.WithLabelValues(string(c)) }
	f.store, f.policy, f.timeout = label(failStore), label(failPolicy), label(failTimeout)
	f.panic, f.audit, f.credent = label(failPanic), label(failAudit), label(failCredential)
	m.allowed = m.decisions.WithLabelValues("allow", "200")
	for _, st := range []int{400, 401, 403, 404, 413, 503} {
		m.byStatus[st] = m.decisions.WithLabelValues("deny", strconv.Itoa(st))
	}
	if reg != nil {
		reg.MustRegister(m.decisions, m.duration, m.Failures.vec)
	}
	return m
}

func (m *Metrics) failure(class failureClass) {
	switch class {
	case failStore:
		m.Failures.store.Inc()
	case failPolicy:
		m.Failures.policy.Inc()
	case failTimeout:
		m.Failures.timeout.Inc()
	case failPanic:
		m.Failures.panic.Inc()
	case failAudit:
		m.Failures.audit.Inc()
	case failCredential:
		m.Failures.credent.Inc()
	default:
		m.Failures.vec.WithLabelValues(string(class)).Inc()
	}
}

func (m *Metrics) observe(o outcome, d time.Duration) {
	m.duration.Observe(d.Seconds())
	if o.allowed() {
		m.allowed.Inc()
		return
	}
	if c, ok := m.byStatus[o.status]; ok {
		c.Inc()
		return
	}
	m.decisions.WithLabelValues("deny", strconv.Itoa(o.status)).Inc()
}

// Vec exposes the failure counters by class (tests, dashboards).
func (f *failureCounters) Vec() *prometheus.CounterVec { return f.vec }
