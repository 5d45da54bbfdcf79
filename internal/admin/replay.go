package admin

import (
	"context"
	"errors"
	"net/http"

	"github.com/warden-mcp/warden/policy/replay"
)

// Replayer re-evaluates recorded decisions against a candidate policy;
// *replay.Replayer satisfies it.
type Replayer interface {
	Run(ctx context.Context, req replay.Request) (replay.Result, error)
}

// replayPolicy is POST /api/v1/policy/replay: which recorded decisions a
// candidate policy would decide otherwise. Read permission: it changes
// nothing, so an auditor may judge a change before it ships. A candidate
// that does not compile is a 400 with the compiler's errors.
func (s *Server) replayPolicy(w http.ResponseWriter, r *http.Request, _ string) error {
	var req replay.Request
	if err := decode(r, &req); err != nil {
		return err
	}
	res, err := s.o.Replay.Run(r.Context(), req)
	if errors.Is(err, replay.ErrInvalid) {
		return errStatus(http.StatusBadRequest, "%s", err.Error())
	}
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, res)
	return nil
}
