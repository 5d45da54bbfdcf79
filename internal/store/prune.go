package store

import (
	"context"
	"errors"
	"fmt"
	"time"
)

// PruneGrants deletes grants that expired or were revoked more than keep
// ago: their handles are long dead, and the audit trail keeps the record of
// what they allowed. It returns how many were deleted.
func PruneGrants(ctx context.Context, st Store, now time.Time, keep time.Duration) (int, error) {
	grants, err := st.ListGrants(ctx, GrantFilter{IncludeRevoked: true})
	if err != nil {
		return 0, fmt.Errorf("prune grants: %w", err)
	}
	cutoff := now.Add(-keep)
	n := 0
	var errs []error
	for _, g := range grants {
		expired := !g.ExpiresAt.IsZero() && g.ExpiresAt.Before(cutoff)
		revoked := g.Revoked() && g.RevokedAt.Before(cutoff)
		if !expired && !revoked {
			continue
		}
		if err := st.DeleteGrant(ctx, g.ID); err != nil && !errors.Is(err, ErrNotFound) {
			errs = append(errs, err)
			continue
		}
		n++
	}
	return n, errors.Join(errs...)
}
