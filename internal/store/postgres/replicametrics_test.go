package postgres_test

import (
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/warden-mcp/warden/internal/store/postgres/pgtest"
)

// metric reads one unlabelled gauge or counter from reg.
func metric(t *testing.T, reg *prometheus.Registry, name string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		m := mf.GetMetric()[0]
		if g := m.GetGauge(); g != nil {
			return g.GetValue()
		}
		return m.GetCounter().GetValue()
	}
	t.Fatalf("no metric %s", name)
	return 0
}

// A partitioned replica reports itself not ready and its lease metric
// drops to 0 once its lease lapses by its own clock; when the network is
// back it renews, is ready again, and the lapse is counted. The epoch it
// acknowledged for a revocation before the partition is exported.
func TestPartitionedReplicaIsNotReady(t *testing.T) {
	dsn, _ := pgtest.Schema(t)
	p := newProxy(t, dsn)
	const lease = 1500 * time.Millisecond
	a := openReplica(t, dsn, "a", lease)
	b := openReplica(t, p.dsn(t, dsn), "b", lease)
	reg := prometheus.NewRegistry()
	if err := b.RegisterReplicaMetrics(reg); err != nil {
		t.Fatal(err)
	}
	if err := b.ReplicaReady(); err != nil {
		t.Fatalf("a replica with a live lease is not ready: %v", err)
	}
	if live, listening := metric(t, reg, "warden_replica_lease_live"), metric(t, reg, "warden_replica_listening"); live != 1 || listening != 1 {
		t.Fatalf("live replica: lease_live %v, listening %v; want 1 and 1", live, listening)
	}
	seedGrants(t, a, 1)
	revoke(t, a, "g000") // returns once b acknowledged epoch 1
	waitFor(t, "b's acknowledged epoch exported", func() bool { return metric(t, reg, "warden_replica_acked_epoch") == 1 })
	if seen := metric(t, reg, "warden_replica_seen_epoch"); seen != 1 {
		t.Fatalf("seen epoch %v after one revocation, want 1", seen)
	}
	lapses := metric(t, reg, "warden_replica_lease_lapses_total")

	p.freeze(true)
	waitFor(t, "b not ready", func() bool { return b.ReplicaReady() != nil })
	if err := b.ReplicaReady(); !strings.Contains(err.Error(), "lease lapsed") {
		t.Fatalf("readiness of the partitioned replica: %v", err)
	}
	if live := metric(t, reg, "warden_replica_lease_live"); live != 0 {
		t.Fatalf("lease_live %v while not ready, want 0", live)
	}
	if st, _ := b.Replica(); st.SinceRenewal <= 0 || metric(t, reg, "warden_replica_lease_renewal_age_seconds") < st.SinceRenewal.Seconds() {
		t.Fatalf("renewal age not exported while lapsed: status %v", st.SinceRenewal)
	}

	p.freeze(false)
	waitFor(t, "b ready again", func() bool { return b.ReplicaReady() == nil })
	if live := metric(t, reg, "warden_replica_lease_live"); live != 1 {
		t.Fatalf("lease_live %v after recovery, want 1", live)
	}
	waitFor(t, "b listening again", func() bool { return metric(t, reg, "warden_replica_listening") == 1 })
	if got := metric(t, reg, "warden_replica_lease_lapses_total"); got <= lapses {
		t.Fatalf("lapses %v after a partition, %v before", got, lapses)
	}
}
