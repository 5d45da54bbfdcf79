package store

import (
	"context"
	"errors"
	"fmt"
	"os"
	"time"
)

// Checkpoints are small and few (one per pruning): Badger records.
const pAuditCheckpoint = "auditcp/"

func auditCheckpointKey(seq uint64) string { return fmt.Sprintf("%s%020d", pAuditCheckpoint, seq) }

func (b *Badger) PutAuditCheckpoint(_ context.Context, c AuditCheckpoint) error {
	if c.Seq == 0 || c.Hash == "" || c.JWS == "" {
		return errors.New("put audit checkpoint: seq, hash and jws are required")
	}
	if err := b.create(auditCheckpointKey(c.Seq), c, time.Time{}); err != nil {
		return fmt.Errorf("put audit checkpoint: %w", err)
	}
	return nil
}

func (b *Badger) ListAuditCheckpoints(context.Context) ([]AuditCheckpoint, error) {
	cps, err := list[AuditCheckpoint](b, pAuditCheckpoint, nil)
	if err != nil {
		return nil, fmt.Errorf("list audit checkpoints: %w", err)
	}
	// Keys sort by seq ascending; newest first.
	for i, j := 0, len(cps)-1; i < j; i, j = i+1, j-1 {
		cps[i], cps[j] = cps[j], cps[i]
	}
	return cps, nil
}

// PruneAudit deletes the segment files whose every event has Seq <=
// through. The segment being written is never deleted, so the newest
// event stays.
func (b *Badger) PruneAudit(_ context.Context, through uint64) (int, error) {
	if err := b.usable(); err != nil {
		return 0, fmt.Errorf("prune audit: %w", err)
	}
	n, err := b.audit.prune(through)
	if err != nil {
		return n, fmt.Errorf("prune audit: %w", err)
	}
	return n, nil
}

func (l *auditLog) prune(through uint64) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	deleted := 0
	keep := l.segs[:0:0]
	for i, seg := range l.segs {
		if i == len(l.segs)-1 || l.segs[i+1].first-1 > through {
			keep = append(keep, l.segs[i:]...)
			break
		}
		if err := os.Remove(seg.path); err != nil && !errors.Is(err, os.ErrNotExist) {
			l.segs = append(keep, l.segs[i:]...)
			return deleted, err
		}
		deleted += int(l.segs[i+1].first - seg.first)
	}
	l.segs = keep
	if deleted > 0 {
		if err := syncDir(l.dir); err != nil {
			return deleted, err
		}
	}
	return deleted, nil
}

// pruned returns the first seq still stored, less one: segments that
// start at or before it may have been removed.
func (l *auditLog) pruned() uint64 {
	l.mu.Lock()
	defer l.mu.Unlock()
	if len(l.segs) == 0 {
		return 0
	}
	return l.segs[0].first - 1
}
