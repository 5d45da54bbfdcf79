package authz

import (
	"fmt"

	"github.com/warden-mcp/warden/internal/mcp"
	"github.com/warden-mcp/warden/policy"
)

// recordSlack is added to the size of recent recorded inputs when the
// next check's buffer is allocated: inputs of one deployment differ by a
// few ids and arguments. maxRecordHint keeps an outsized batch from
// setting the size every later check allocates.
const (
	recordSlack   = 256
	maxRecordHint = 16 << 10
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
		c.inputs = make([]byte, 0, s.recordSize.Load()+recordSlack)
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
	// Written only when the size leaves [hint/2, hint]: the hint is read
	// by every check on every core.
	if n, h := int64(len(c.inputs)), s.recordSize.Load(); n <= maxRecordHint && (n > h || n < h/2) {
		s.recordSize.Store(n)
	}
	for _, r := range redacted {
		if !contains(c.redacted, r) {
			c.redacted = append(c.redacted, r)
		}
	}
	return nil
}
