package storetest

import (
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/warden-mcp/warden/internal/store"
)

// testAuditRetention: checkpoints are stored once per seq and listed
// newest first; pruning deletes only events at or before its bound, says
// how many, and never the newest event.
func testAuditRetention(t *testing.T, b Backend) {
	s := b.Open(t)
	cps, err := s.ListAuditCheckpoints(ctx)
	must(t, err)
	if len(cps) != 0 {
		t.Fatalf("empty store lists %d checkpoints", len(cps))
	}
	for i := uint64(1); i <= 300; i += 50 {
		var evs []store.AuditEvent
		for j := i; j < i+50; j++ {
			evs = append(evs, store.AuditEvent{Seq: j, Type: "decision", Hash: fmt.Sprint(j)})
		}
		must(t, s.AppendAudit(ctx, evs...))
	}
	now := time.Now().UTC().Truncate(time.Second)
	must(t, s.PutAuditCheckpoint(ctx, store.AuditCheckpoint{Seq: 100, Hash: "100", Count: 100, Time: now, JWS: "a.b.c"}))
	must(t, s.PutAuditCheckpoint(ctx, store.AuditCheckpoint{Seq: 200, Hash: "200", Count: 200, Time: now, JWS: "d.e.f"}))
	if err := s.PutAuditCheckpoint(ctx, store.AuditCheckpoint{Seq: 200, Hash: "x", Count: 200, JWS: "g.h.i"}); !errors.Is(err, store.ErrAlreadyExists) {
		t.Fatalf("second checkpoint at 200: %v", err)
	}
	if err := s.PutAuditCheckpoint(ctx, store.AuditCheckpoint{Seq: 300}); err == nil {
		t.Fatal("checkpoint without hash and signature accepted")
	}
	cps, err = s.ListAuditCheckpoints(ctx)
	must(t, err)
	if len(cps) != 2 || cps[0].Seq != 200 || cps[1].Seq != 100 || cps[0].JWS != "d.e.f" || !cps[0].Time.Equal(now) {
		t.Fatalf("checkpoints %+v", cps)
	}

	count := func() int {
		evs, err := s.ListAudit(ctx, 0, 0)
		must(t, err)
		for i, e := range evs {
			if i > 0 && e.Seq != evs[i-1].Seq+1 {
				t.Fatalf("pruning left a hole at %d", e.Seq)
			}
		}
		return len(evs)
	}
	n, err := s.PruneAudit(ctx, 150)
	must(t, err)
	if n < 0 || n > 150 || count() != 300-n {
		t.Fatalf("pruned %d through 150, %d left", n, count())
	}
	rest, err := s.ListAudit(ctx, 151, 0)
	must(t, err)
	if len(rest) != 150 || rest[0].Seq != 151 {
		t.Fatalf("events after the bound: %d from %d", len(rest), rest[0].Seq)
	}
	// Everything: the newest event stays, the next append continues it.
	_, err = s.PruneAudit(ctx, 10_000)
	must(t, err)
	last, err := s.LastAudit(ctx)
	must(t, err)
	if last.Seq != 300 {
		t.Fatalf("head after pruning all: %d", last.Seq)
	}
	if count() < 1 {
		t.Fatal("the newest event was pruned")
	}
	must(t, s.AppendAudit(ctx, store.AuditEvent{Seq: 301, Type: "decision", Hash: "301"}))
}
