package extproc

import (
	"fmt"

	"github.com/prometheus/client_golang/prometheus"
)

type metrics struct {
	messages *prometheus.CounterVec
	items    *prometheus.CounterVec
	failures *prometheus.CounterVec
}

func newMetrics(reg prometheus.Registerer) (*metrics, error) {
	m := &metrics{
		messages: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "warden_extproc_messages_total",
			Help: "ext_proc messages Envoy sent to the response path, by kind.",
		}, []string{"kind"}),
		items: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "warden_extproc_list_items_total",
			Help: "Items of list results, shown or hidden from the caller, by list method.",
		}, []string{"method", "outcome"}),
		failures: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "warden_extproc_failures_total",
			Help: "Responses the response path refused or could not fully process, by class.",
		}, []string{"class"}),
	}
	if reg != nil {
		for _, c := range []prometheus.Collector{m.messages, m.items, m.failures} {
			if err := reg.Register(c); err != nil {
				return nil, fmt.Errorf("extproc: %w", err)
			}
		}
	}
	return m, nil
}
