package config

import (
	"fmt"

	"github.com/warden-mcp/warden/internal/serverspec"
)

// AuditRedact names tool arguments the decision inputs recorded in the
// audit trail (for policy replay) leave out: their values are replaced by
// "[redacted]". A rule with a server and no arguments redacts every
// argument of that server; one with arguments and no server redacts those
// names on every server.
type AuditRedact struct {
	Server    string   `json:"server,omitempty"`
	Arguments []string `json:"arguments,omitempty"`
}

func validateRedact(rules []AuditRedact) []error {
	var errs []error
	for i, r := range rules {
		f := fmt.Sprintf("audit.redact[%d]", i)
		if r.Server == "" && len(r.Arguments) == 0 {
			errs = append(errs, fmt.Errorf("%s: needs a server, arguments, or both", f))
		}
		if r.Server != "" && !serverspec.ValidName(r.Server) {
			errs = append(errs, fmt.Errorf("%s.server: %q is not a valid server name", f, r.Server))
		}
		for j, a := range r.Arguments {
			if a == "" {
				errs = append(errs, fmt.Errorf("%s.arguments[%d]: must not be empty", f, j))
			}
		}
	}
	return errs
}
