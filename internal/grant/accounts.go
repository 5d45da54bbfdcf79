package grant

import (
	"context"
	"errors"
	"fmt"

	"github.com/warden-mcp/warden/internal/store"
)

// Reasons accounts are revoked for by Warden or by their user.
const (
	ReasonProviderRefused = "provider refused refresh"
	ReasonDisconnected    = "disconnected by the user"
	ReasonProviderRemoved = "provider removed"
)

// AccountTarget selects connected upstream accounts: every account at
// Provider, every account of Subject, or one account when both are set.
type AccountTarget struct {
	Provider string `json:"provider,omitempty"`
	Subject  string `json:"user,omitempty"`
	// ByUser marks the user's own disconnect (audited as
	// credential_disconnected rather than credential_revoked).
	ByUser bool `json:"-"`
}

// AccountResult says what RevokeAccounts did.
type AccountResult struct {
	// Revoked lists "<provider>/<subject>" of each account removed.
	Revoked []string `json:"revoked"`
}

// RevokeAccounts is the revocation of connected upstream accounts, the
// sibling of Revoke for credentials Warden holds at third parties: the
// sealed tokens or key are deleted, so the next Check for a server using
// the provider finds no account (and asks the user to connect again). One
// audit event per account, then a summary. Every account is attempted.
func (s *Service) RevokeAccounts(ctx context.Context, actor string, t AccountTarget, reason string) (AccountResult, error) {
	var res AccountResult
	if t.Provider == "" && t.Subject == "" {
		return res, fmt.Errorf("%w: name a provider, a user or both", ErrInvalidTarget)
	}
	accounts, err := s.st.ListAccounts(ctx, store.AccountFilter{Provider: t.Provider, Subject: t.Subject})
	if err != nil {
		return res, fmt.Errorf("find accounts: %w", err)
	}
	typ := "credential_revoked"
	if t.ByUser {
		typ = "credential_disconnected"
	}
	var errs []error
	for _, a := range accounts {
		err := s.st.DeleteAccount(ctx, a.Subject, a.Provider)
		if errors.Is(err, store.ErrNotFound) {
			continue // removed concurrently: gone either way
		}
		if err != nil {
			errs = append(errs, fmt.Errorf("revoke account at %s: %w", a.Provider, err))
			continue
		}
		res.Revoked = append(res.Revoked, a.Provider+"/"+a.Subject)
		ev := store.AuditEvent{Type: typ, Actor: actor, Subject: a.Subject, Reason: reason, Details: map[string]any{"provider": a.Provider}}
		if err := s.audit.RecordSync(ctx, ev); err != nil {
			errs = append(errs, fmt.Errorf("audit %s: %w", typ, err))
		}
	}
	if !t.ByUser {
		summary := store.AuditEvent{Type: "revoke", Actor: actor, Subject: t.Subject, Reason: reason,
			Details: map[string]any{"provider": t.Provider, "accounts_revoked": len(res.Revoked)}}
		if err := s.audit.RecordSync(ctx, summary); err != nil {
			errs = append(errs, fmt.Errorf("audit revocation: %w", err))
		}
	}
	return res, errors.Join(errs...)
}
