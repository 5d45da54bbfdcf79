package main

import (
	"context"
	"log/slog"
	"time"

	"github.com/warden-mcp/warden/internal/audit"
	"github.com/warden-mcp/warden/internal/keys"
	"github.com/warden-mcp/warden/internal/store"
)

// retainAudit prunes audit events older than keep once an hour (and at
// start), each time after a signed checkpoint; keep 0 keeps everything.
func retainAudit(ctx context.Context, keep time.Duration, st store.Store, trail *audit.Trail, signer *keys.Signer, log *slog.Logger) {
	if keep <= 0 {
		return
	}
	tick := time.NewTicker(time.Hour)
	defer tick.Stop()
	for {
		res, err := audit.Prune(ctx, st, trail, signer, time.Now().Add(-keep))
		switch {
		case err != nil:
			log.Error("pruning the audit trail", "err", err)
		case res.Checkpoint.Seq != 0:
			log.Info("pruned the audit trail after a signed checkpoint", "checkpoint_seq", res.Checkpoint.Seq, "deleted", res.Deleted)
		}
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
	}
}
