package audit_test

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/lestrrat-go/jwx/v2/jwt"

	"github.com/warden-mcp/warden/internal/audit"
	"github.com/warden-mcp/warden/internal/keys"
	"github.com/warden-mcp/warden/internal/store"
	"github.com/warden-mcp/warden/internal/store/postgres"
	"github.com/warden-mcp/warden/internal/store/postgres/pgtest"
)

type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) Now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *clock) Add(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

// retentionBackends are the two stores pruning must keep verifiable: the
// Badger one with small segments, so that pruning deletes files.
func retentionBackends(t *testing.T) map[string]func(t *testing.T) audit.RetentionStore {
	return map[string]func(t *testing.T) audit.RetentionStore{
		"badger": func(t *testing.T) audit.RetentionStore {
			st, err := store.OpenBadger(t.TempDir(), store.BadgerOptions{AuditSegmentSize: 4 << 10})
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { _ = st.Close() })
			return st
		},
		"postgres": func(t *testing.T) audit.RetentionStore {
			dsn, _ := pgtest.Schema(t)
			st, err := postgres.Open(context.Background(), postgres.Options{DSN: dsn, MaxConns: 4})
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { _ = st.Close() })
			return st
		},
	}
}

func TestPruneKeepsTheChainVerifiable(t *testing.T) {
	for name, open := range retentionBackends(t) {
		t.Run(name, func(t *testing.T) {
			st := open(t)
			clk := &clock{t: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)}
			tr, err := audit.Open(ctx, st, audit.Options{Now: clk.Now})
			if err != nil {
				t.Fatal(err)
			}
			defer tr.Close(ctx)
			signer, err := keys.NewEphemeral()
			if err != nil {
				t.Fatal(err)
			}
			// 200 old events, a day apart from 100 new ones.
			for i := 0; i < 300; i++ {
				if i == 200 {
					clk.Add(24 * time.Hour)
				}
				if err := tr.RecordSync(ctx, store.AuditEvent{Type: "decision", Subject: "alice", Reason: strings.Repeat("x", 100)}); err != nil {
					t.Fatal(err)
				}
				clk.Add(time.Second)
			}
			res, err := audit.Prune(ctx, st, tr, signer, clk.Now().Add(-12*time.Hour))
			if err != nil {
				t.Fatal(err)
			}
			if res.Checkpoint.Seq != 200 || res.Checkpoint.Count != 200 || res.Checkpoint.JWS == "" {
				t.Fatalf("checkpoint %+v", res.Checkpoint)
			}
			if res.Deleted == 0 || res.Deleted > 200 {
				t.Fatalf("deleted %d of the 200 old events", res.Deleted)
			}
			first, _ := st.ListAudit(ctx, 0, 1)
			if first[0].Seq != uint64(res.Deleted)+1 {
				t.Fatalf("oldest stored event %d after deleting %d", first[0].Seq, res.Deleted)
			}
			last, _ := st.LastAudit(ctx)
			if last.Type != audit.CheckpointType || fmt.Sprint(last.Details["checkpoint_seq"]) != "200" {
				t.Fatalf("the chain does not record the checkpoint: %+v", last)
			}

			pub, err := signer.PublicSet()
			if err != nil {
				t.Fatal(err)
			}
			r, err := audit.VerifyTrusted(ctx, st, pub)
			if err != nil || !r.OK() {
				t.Fatalf("verify after pruning: %+v %v", r, err)
			}
			if r.Anchor.Kind != "checkpoint" || r.Anchor.Seq != 200 || r.Anchor.KeyID != signer.KeyID() || r.First != 201 || r.Last != 301 {
				t.Fatalf("report %+v", r)
			}

			// Keys that did not sign it: the checkpoint is untrusted and
			// the pruned prefix is reported missing.
			other, _ := keys.NewEphemeral()
			otherPub, _ := other.PublicSet()
			r, err = audit.VerifyTrusted(ctx, st, otherPub)
			if err != nil || r.OK() || len(r.Untrusted) != 1 || r.Anchor.Kind != "genesis" || !strings.Contains(r.Reason, "no trusted checkpoint") {
				t.Fatalf("verify with foreign keys: %+v %v", r, err)
			}

			// A forged newer checkpoint (signed by another key) is passed
			// over; the genuine one still anchors.
			tok, _ := jwt.NewBuilder().Audience([]string{"urn:warden:audit-checkpoint"}).Claim("seq", 250).Claim("hash", "f00").Claim("count", 250).Build()
			forged, _ := other.Sign(tok)
			if err := st.PutAuditCheckpoint(ctx, store.AuditCheckpoint{Seq: 250, Hash: "f00", Count: 250, JWS: string(forged)}); err != nil {
				t.Fatal(err)
			}
			r, err = audit.VerifyTrusted(ctx, st, pub)
			if err != nil || !r.OK() || r.Anchor.Seq != 200 || len(r.Untrusted) != 1 {
				t.Fatalf("verify with a forged checkpoint: %+v %v", r, err)
			}
			// A genuine signature over different claims is refused too.
			tok, _ = jwt.NewBuilder().Audience([]string{"urn:warden:audit-checkpoint"}).Claim("seq", 260).Claim("hash", "bad").Claim("count", 260).Build()
			mismatched, _ := signer.Sign(tok)
			if err := st.PutAuditCheckpoint(ctx, store.AuditCheckpoint{Seq: 260, Hash: "other", Count: 260, JWS: string(mismatched)}); err != nil {
				t.Fatal(err)
			}
			r, _ = audit.VerifyTrusted(ctx, st, pub)
			if !r.OK() || r.Anchor.Seq != 200 || len(r.Untrusted) != 2 {
				t.Fatalf("verify with mismatched claims: %+v", r)
			}
		})
	}
}

func TestPruneNothingOldEnough(t *testing.T) {
	st := openStore(t, t.TempDir())
	defer st.Close()
	tr, _ := audit.Open(ctx, st, audit.Options{})
	defer tr.Close(ctx)
	signer, _ := keys.NewEphemeral()
	for i := 0; i < 5; i++ {
		_ = tr.RecordSync(ctx, store.AuditEvent{Type: "decision"})
	}
	res, err := audit.Prune(ctx, st, tr, signer, time.Now().Add(-time.Hour))
	if err != nil || res.Deleted != 0 || res.Checkpoint.Seq != 0 {
		t.Fatalf("prune of a young trail: %+v %v", res, err)
	}
	cps, _ := st.ListAuditCheckpoints(ctx)
	if len(cps) != 0 {
		t.Fatal("checkpoint written with nothing to prune")
	}
	pub, _ := signer.PublicSet()
	r, err := audit.VerifyTrusted(ctx, st, pub)
	if err != nil || !r.OK() || r.Anchor.Kind != "genesis" || r.Events != 5 {
		t.Fatalf("verify: %+v %v", r, err)
	}
}
