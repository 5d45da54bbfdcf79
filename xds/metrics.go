package xds

import (
	"errors"

	"github.com/prometheus/client_golang/prometheus"
)

type metrics struct {
	nacks     *prometheus.CounterVec
	published prometheus.Counter
	failures  prometheus.Counter
	skipped   prometheus.Gauge
	servers   prometheus.Gauge
	streams   prometheus.Gauge
	translate prometheus.Histogram
}

func newMetrics(r prometheus.Registerer) (*metrics, error) {
	m := &metrics{
		nacks: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "warden", Subsystem: "xds", Name: "nacks_total",
			Help: "xDS responses rejected by Envoy (NACK), by resource type.",
		}, []string{"type"}),
		published: prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: "warden", Subsystem: "xds", Name: "snapshots_published_total",
			Help: "Snapshots with a new version set in the xDS cache.",
		}),
		failures: prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: "warden", Subsystem: "xds", Name: "publish_failures_total",
			Help: "Publish attempts that kept the last good snapshot (registry unreadable, translation or consistency failure).",
		}),
		skipped: prometheus.NewGauge(prometheus.GaugeOpts{
			Namespace: "warden", Subsystem: "xds", Name: "servers_skipped",
			Help: "Registered MCP servers left out of the published config because they are invalid.",
		}),
		servers: prometheus.NewGauge(prometheus.GaugeOpts{
			Namespace: "warden", Subsystem: "xds", Name: "servers_published",
			Help: "MCP servers in the published config.",
		}),
		streams: prometheus.NewGauge(prometheus.GaugeOpts{
			Namespace: "warden", Subsystem: "xds", Name: "streams",
			Help: "Open ADS streams.",
		}),
		translate: prometheus.NewHistogram(prometheus.HistogramOpts{
			Namespace: "warden", Subsystem: "xds", Name: "translate_seconds",
			Help:    "Time to read the registry and translate it to Envoy resources.",
			Buckets: prometheus.ExponentialBuckets(0.0005, 2, 14),
		}),
	}
	var errs []error
	for _, c := range []prometheus.Collector{m.nacks, m.published, m.failures, m.skipped, m.servers, m.streams, m.translate} {
		errs = append(errs, r.Register(c))
	}
	return m, errors.Join(errs...)
}
