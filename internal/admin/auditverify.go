package admin

import (
	"context"
	"fmt"

	"github.com/lestrrat-go/jwx/v2/jwk"

	"github.com/warden-mcp/warden/internal/audit"
)

// AuditKeys returns the public keys audit checkpoints are verified with
// (keys.Signer.PublicSet).
type AuditKeys func() (jwk.Set, error)

// verifyTrail verifies from the newest trusted checkpoint when the store
// keeps checkpoints and the keys are known, else from the oldest stored
// event.
func (s *Server) verifyTrail(ctx context.Context) (audit.Report, error) {
	rs, ok := s.o.Store.(audit.RetentionStore)
	if !ok || s.o.AuditKeys == nil {
		return audit.Verify(ctx, s.o.Store)
	}
	keys, err := s.o.AuditKeys()
	if err != nil {
		return audit.Report{}, fmt.Errorf("audit verify: keys: %w", err)
	}
	return audit.VerifyTrusted(ctx, rs, keys)
}
