package authz

import (
	"fmt"

	"github.com/warden-mcp/warden/internal/mcp"
	"github.com/warden-mcp/warden/policy"
)

// recordInput appends the input about to be decided to the check's
// recorded inputs, for the audit event (policy/record.go): whole, with the
// parts the policy in use does not read filled in from the request, and
// the arguments Options.Redact names replaced.
func (s *Service) recordInput(c *check, in *policy.Input, m *mcp.Message) error {
	rec := in
	if in.Omitted.ID || in.Omitted.Request {
		cp := *in
		if in.Omitted.ID {
			cp.MCP.ID = decodeID(m.ID)
		}
		if in.Omitted.Request {
			cp.Request = c.requestPart()
		}
		rec = &cp
	}
	if c.inputs == nil {
		c.inputs = make([]byte, 0, 1024)
		c.inputs = append(c.inputs, '[')
	} else {
		c.inputs[len(c.inputs)-1] = ',' // reopen the array
	}
	var (
		redacted []string
		err      error
	)
	c.inputs, redacted, err = rec.AppendRecord(c.inputs, s.o.Redact)
	if err != nil {
		return fmt.Errorf("record the decision input: %w", err)
	}
	c.inputs = append(c.inputs, ']')
	for _, r := range redacted {
		if !contains(c.redacted, r) {
			c.redacted = append(c.redacted, r)
		}
	}
	return nil
}
