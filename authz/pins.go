package authz

import (
	"context"
	"fmt"
	"net/http"

	"github.com/warden-mcp/warden/policy"
)

// pinned applies tool pinning to a tools/call (or a task request decided
// as one): a tool pinning blocks (changed, or new and waiting, in block
// mode) is refused with pinning's reason before policy runs; otherwise
// policy sees the tool's state as input.tool.
func (s *Service) pinned(ctx context.Context, c *check, in *policy.Input, i int) (outcome, bool) {
	in.Tool = policy.ToolState{}
	if s.o.Pins == nil || in.MCP.Method != "tools/call" || in.MCP.Tool == "" {
		return outcome{}, false
	}
	st, err := s.o.Pins.State(ctx, c.server, in.MCP.Tool)
	if err != nil {
		return s.failed(c, failStore, fmt.Errorf("tool pinning: %w", err)), true
	}
	if st.Blocked {
		c.decisive = i
		return outcome{status: http.StatusForbidden, reason: st.Reason, body: jsonError(c.req.Messages[i].ID, CodePolicyDenied, st.Reason)}, true
	}
	in.Tool = policy.ToolState{Pinned: st.Pinned, Changed: st.Changed}
	return outcome{}, false
}
