package postgres

import (
	"fmt"

	"github.com/prometheus/client_golang/prometheus"
)

// RegisterReplicaMetrics exports this replica's side of the protocol
// (ReplicaStatus) to r: whether the lease is live, how long since it was
// renewed, the epochs seen and acknowledged, and whether the notification
// session listens. Nothing is registered without ReplicaOptions.
func (s *Store) RegisterReplicaMetrics(r prometheus.Registerer) error {
	rep := s.replica
	if rep == nil {
		return nil
	}
	status := func() ReplicaStatus { st, _ := s.Replica(); return st }
	bit := func(b bool) float64 {
		if b {
			return 1
		}
		return 0
	}
	for _, c := range []prometheus.Collector{
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "warden_replica_lease_live",
			Help: "1 while this replica's lease is live and its hot cache answers; 0 when it lapsed (reads go to PostgreSQL and fail closed without it)."},
			func() float64 { return bit(status().CacheUsable) }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "warden_replica_lease_renewal_age_seconds",
			Help: "Seconds since the lease was last renewed (since the replica started, before the first renewal)."},
			func() float64 {
				if st := status(); st.SinceRenewal >= 0 {
					return st.SinceRenewal.Seconds()
				}
				return float64(rep.mono()) / 1e9
			}),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "warden_replica_seen_epoch",
			Help: "Newest revocation epoch whose notification this replica handled."},
			func() float64 { return float64(status().SeenEpoch) }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "warden_replica_acked_epoch",
			Help: "Newest revocation epoch the replicas table holds as acknowledged by this replica (what a revocation waits for)."},
			func() float64 { return float64(status().AckedEpoch) }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "warden_replica_listening",
			Help: "1 while the notification session is connected and LISTENs; a partition may leave it at 1 until a renewal times out."},
			func() float64 { return bit(status().Listening) }),
		prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "warden_replica_lease_lapses_total",
			Help: "Times the lease lapsed or the notification session was lost (the hot cache was emptied each time)."},
			func() float64 { return float64(status().Lapses) }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "warden_replica_cached_handles",
			Help: "Handles in this replica's hot cache."},
			func() float64 { return float64(status().Cached) }),
	} {
		if err := r.Register(c); err != nil {
			return fmt.Errorf("replica metrics: %w", err)
		}
	}
	return nil
}
