package admin

import (
	"context"
	"errors"
	"net/http"

	"github.com/warden-mcp/warden/internal/store"
	"github.com/warden-mcp/warden/internal/toolpin"
)

// Tools is tool pinning as the admin API sees it (internal/toolpin).
type Tools interface {
	List(ctx context.Context, server string) ([]toolpin.Status, error)
	Approve(ctx context.Context, server, tool, actor string) (store.ToolPin, error)
}

// listTools answers GET /api/v1/servers/{name}/tools: every tool Warden
// has seen listed by the server, pinned, changed or new, with the
// description diff of a changed one.
func (s *Server) listTools(w http.ResponseWriter, r *http.Request, _ string) error {
	name := r.PathValue("name")
	if _, err := s.o.Registry.Get(r.Context(), name); err != nil {
		return err
	}
	list, err := s.o.Tools.List(r.Context(), name)
	if err != nil {
		return err
	}
	if list == nil {
		list = []toolpin.Status{}
	}
	writeJSON(w, http.StatusOK, map[string]any{"server": name, "tools": list})
	return nil
}

// approveTool answers POST /api/v1/servers/{name}/tools/{tool}/approve:
// the definition the server lists now becomes the approved one (audited
// by toolpin with the old and new digests).
func (s *Server) approveTool(w http.ResponseWriter, r *http.Request, actor string) error {
	name, tool := r.PathValue("name"), r.PathValue("tool")
	if err := s.serverInScope(r, name, "approve tools of server "+name); err != nil {
		return err
	}
	pin, err := s.o.Tools.Approve(r.Context(), name, tool, actor)
	switch {
	case errors.Is(err, toolpin.ErrNothingToApprove):
		return errStatus(http.StatusConflict, "tool %q of server %q: its listed definition is already approved", tool, name)
	case err != nil:
		return err
	}
	writeJSON(w, http.StatusOK, pin)
	return nil
}
