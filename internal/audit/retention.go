package audit

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/lestrrat-go/jwx/v2/jwk"
	"github.com/lestrrat-go/jwx/v2/jws"
	"github.com/lestrrat-go/jwx/v2/jwt"

	"github.com/warden-mcp/warden/internal/store"
)

// CheckpointType is the type of the chain event that records a checkpoint
// and the pruning that follows it.
const CheckpointType = "audit_checkpoint"

// checkpointAudience marks a Warden-signed JWT as an audit checkpoint: it
// is no resource URL, so no upstream accepts it as a credential, and a
// credential is not taken for a checkpoint.
const checkpointAudience = "urn:warden:audit-checkpoint"

// RetentionStore is the part of the store pruning needs.
type RetentionStore interface {
	Store
	PutAuditCheckpoint(ctx context.Context, c store.AuditCheckpoint) error
	ListAuditCheckpoints(ctx context.Context) ([]store.AuditCheckpoint, error)
	PruneAudit(ctx context.Context, through uint64) (int, error)
}

// Signer signs checkpoints with Warden's signing key (internal/keys).
type Signer interface {
	Sign(t jwt.Token) ([]byte, error)
}

// PruneResult says what Prune did; zero when nothing was old enough.
type PruneResult struct {
	Checkpoint store.AuditCheckpoint
	Deleted    int
}

// Prune deletes the events older than before, keeping the chain
// verifiable: first it signs a checkpoint of the newest event to go (its
// seq, hash and the count of events up to it), stores it, and records it
// in the chain through t; only then does it delete. A crash in between
// leaves a checkpoint and events it covers, which verify accepts.
func Prune(ctx context.Context, st RetentionStore, t *Trail, signer Signer, before time.Time) (PruneResult, error) {
	bound, ok, err := pruneBound(ctx, st, before)
	if err != nil || !ok {
		return PruneResult{}, err
	}
	now := t.opts.Now().UTC()
	cp := store.AuditCheckpoint{Seq: bound.Seq, Hash: bound.Hash, Count: bound.Seq, Time: now}
	tok, err := jwt.NewBuilder().Audience([]string{checkpointAudience}).Subject("audit-checkpoint").IssuedAt(now).
		Claim("seq", cp.Seq).Claim("hash", cp.Hash).Claim("count", cp.Count).Build()
	if err != nil {
		return PruneResult{}, fmt.Errorf("prune audit: %w", err)
	}
	signed, err := signer.Sign(tok)
	if err != nil {
		return PruneResult{}, fmt.Errorf("prune audit: sign checkpoint: %w", err)
	}
	cp.JWS = string(signed)
	if err := st.PutAuditCheckpoint(ctx, cp); err != nil && !errors.Is(err, store.ErrAlreadyExists) {
		return PruneResult{}, fmt.Errorf("prune audit: %w", err)
	}
	if err := t.RecordSync(ctx, store.AuditEvent{
		Type: CheckpointType, Actor: "warden",
		Reason:  fmt.Sprintf("events up to seq %d (older than %s) pruned after a signed checkpoint", cp.Seq, before.UTC().Format(time.RFC3339)),
		Details: map[string]any{"checkpoint_seq": cp.Seq, "checkpoint_hash": cp.Hash, "count": cp.Count, "before": before.UTC().Format(time.RFC3339)},
	}); err != nil {
		return PruneResult{}, fmt.Errorf("prune audit: record checkpoint: %w", err)
	}
	n, err := st.PruneAudit(ctx, cp.Seq)
	if err != nil {
		return PruneResult{Checkpoint: cp, Deleted: n}, err
	}
	return PruneResult{Checkpoint: cp, Deleted: n}, nil
}

// pruneBound finds the newest event older than before, never the newest
// stored event: a binary search by seq over event times (events are
// stamped when their Check started and queued in order, so times follow
// seq to within the queue's delay).
func pruneBound(ctx context.Context, st Store, before time.Time) (store.AuditEvent, bool, error) {
	first, err := st.ListAudit(ctx, 0, 1)
	if err != nil || len(first) == 0 {
		return store.AuditEvent{}, false, err
	}
	last, err := st.LastAudit(ctx)
	if err != nil {
		return store.AuditEvent{}, false, fmt.Errorf("prune audit: %w", err)
	}
	if !first[0].Time.Before(before) || first[0].Seq >= last.Seq {
		return store.AuditEvent{}, false, nil
	}
	at := func(seq uint64) (store.AuditEvent, error) {
		evs, err := st.ListAudit(ctx, seq, 1)
		if err != nil {
			return store.AuditEvent{}, err
		}
		if len(evs) == 0 || evs[0].Seq != seq {
			return store.AuditEvent{}, fmt.Errorf("prune audit: event %d is missing", seq)
		}
		return evs[0], nil
	}
	// Invariant: lo is older than before; hi is not, or is the head.
	lo, hi := first[0], last.Seq
	for lo.Seq+1 < hi {
		mid, err := at(lo.Seq + (hi-lo.Seq)/2)
		if err != nil {
			return store.AuditEvent{}, false, err
		}
		if mid.Time.Before(before) {
			lo = mid
		} else {
			hi = mid.Seq
		}
	}
	return lo, true, nil
}

// Anchor says where a verification started.
type Anchor struct {
	// Kind is "genesis" (the first event, seq 1), "checkpoint" (a signed
	// checkpoint that verified) or "oldest" (the oldest stored event,
	// taken on trust: Verify without keys).
	Kind  string    `json:"kind"`
	Seq   uint64    `json:"seq,omitempty"`
	KeyID string    `json:"key_id,omitempty"`
	Time  time.Time `json:"time,omitzero"`
}

// VerifyTrusted is Verify starting from the newest checkpoint whose
// signature verifies against keys (and whose claims are the stored
// checkpoint's); without one the chain must start at seq 1. Checkpoints
// that do not verify are listed in the report and passed over.
func VerifyTrusted(ctx context.Context, st RetentionStore, keys jwk.Set) (Report, error) {
	var r Report
	cps, err := st.ListAuditCheckpoints(ctx)
	if err != nil {
		return r, err
	}
	for _, cp := range cps {
		kid, err := verifyCheckpoint(cp, keys)
		if err != nil {
			r.Untrusted = append(r.Untrusted, fmt.Sprintf("checkpoint at seq %d: %v", cp.Seq, err))
			continue
		}
		r.Anchor = Anchor{Kind: "checkpoint", Seq: cp.Seq, KeyID: kid, Time: cp.Time}
		// The checkpointed event, when still stored, must be the one
		// the checkpoint vouches for.
		evs, err := st.ListAudit(ctx, cp.Seq, 1)
		if err != nil {
			return r, err
		}
		if len(evs) == 1 && evs[0].Seq == cp.Seq && (evs[0].Hash != cp.Hash || Hash(evs[0]) != evs[0].Hash) {
			r.Broken, r.Reason = cp.Seq, "the stored event differs from the signed checkpoint"
			return r, nil
		}
		err = walk(ctx, st, &r, cp.Seq+1, cp.Seq, cp.Hash, true)
		return r, err
	}
	r.Anchor = Anchor{Kind: "genesis"}
	err = walk(ctx, st, &r, 0, 0, "", true)
	return r, err
}

func verifyCheckpoint(cp store.AuditCheckpoint, keys jwk.Set) (string, error) {
	if keys == nil {
		return "", errors.New("no keys to verify it with")
	}
	tok, err := jwt.Parse([]byte(cp.JWS), jwt.WithKeySet(keys), jwt.WithAudience(checkpointAudience), jwt.WithAcceptableSkew(time.Minute))
	if err != nil {
		return "", fmt.Errorf("signature: %w", err)
	}
	num := func(name string) uint64 {
		v, _ := tok.Get(name)
		f, _ := v.(float64)
		return uint64(f)
	}
	hash, _ := tok.Get("hash")
	if num("seq") != cp.Seq || num("count") != cp.Count || hash != cp.Hash {
		return "", errors.New("signed claims differ from the stored checkpoint")
	}
	msg, err := jws.Parse([]byte(cp.JWS))
	if err != nil || len(msg.Signatures()) == 0 {
		return "", fmt.Errorf("signature: %w", err)
	}
	return msg.Signatures()[0].ProtectedHeaders().KeyID(), nil
}
