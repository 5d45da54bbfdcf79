package policy

import (
	"fmt"

	"github.com/prometheus/client_golang/prometheus"
)

type engineMetrics struct {
	reloads    *prometheus.CounterVec
	stale      prometheus.Gauge
	evalErrors prometheus.Counter
	evalTime   prometheus.Histogram
	memoHits   prometheus.Counter
}

func newMetrics(reg prometheus.Registerer) (*engineMetrics, error) {
	m := &engineMetrics{
		reloads: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "warden", Subsystem: "policy", Name: "reloads_total",
			Help: "Policy loads by result (ok, failed). A failed load keeps the last good policy.",
		}, []string{"result"}),
		stale: prometheus.NewGauge(prometheus.GaugeOpts{
			Namespace: "warden", Subsystem: "policy", Name: "stale",
			Help: "1 while the newest policy on disk failed to load and the last good one is still in use.",
		}),
		evalErrors: prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: "warden", Subsystem: "policy", Name: "eval_errors_total",
			Help: "Policy evaluations that failed (the request is denied).",
		}),
		memoHits: prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: "warden", Subsystem: "policy", Name: "memo_hits_total",
			Help: "Decisions reused for an identical caller and MCP message (memoizable policies only).",
		}),
		// Few buckets: this is observed on every request.
		evalTime: prometheus.NewHistogram(prometheus.HistogramOpts{
			Namespace: "warden", Subsystem: "policy", Name: "eval_duration_seconds",
			Help:    "Time to evaluate the policy for one MCP message.",
			Buckets: []float64{5e-6, 10e-6, 25e-6, 50e-6, 100e-6, 250e-6, 1e-3, 10e-3},
		}),
	}
	// Both label values exist from the start so rate() and alerts work
	// before the first failure.
	m.reloads.WithLabelValues("ok")
	m.reloads.WithLabelValues("failed")
	if reg == nil {
		return m, nil
	}
	for _, c := range []prometheus.Collector{m.reloads, m.stale, m.evalErrors, m.evalTime, m.memoHits} {
		if err := reg.Register(c); err != nil {
			return nil, fmt.Errorf("register policy metrics: %w", err)
		}
	}
	return m, nil
}
