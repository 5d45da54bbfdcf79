package admin

import (
	"context"
	"fmt"
	"net/http"
	"strconv"
	"time"

	"github.com/warden-mcp/warden/internal/auditquery"
	"github.com/warden-mcp/warden/internal/store"
)

// SearchAudit is one page of the audit search, newest first.
func (s *Server) SearchAudit(ctx context.Context, q auditquery.Query, before uint64, limit int) (auditquery.Page, error) {
	return auditquery.Search(ctx, s.o.Store, q, before, limit)
}

// AuditEvent returns one event by its sequence number.
func (s *Server) AuditEvent(ctx context.Context, seq uint64) (store.AuditEvent, error) {
	return auditquery.Event(ctx, s.o.Store, seq)
}

// ExportAudit streams every event matching q to w in format f, setting the
// response headers first. A failure before the first byte is returned for
// the caller to answer with an error; after it, the stream can only be cut
// short: the connection is aborted (panic http.ErrAbortHandler), so the
// client sees a broken transfer, never a complete-looking short export.
func (s *Server) ExportAudit(ctx context.Context, rw http.ResponseWriter, q auditquery.Query, f auditquery.Format, actor string) error {
	w := &sentWriter{ResponseWriter: rw}
	ext := "ndjson"
	if f == auditquery.CSV {
		ext = "csv"
	}
	w.Header().Set("Content-Type", f.ContentType())
	w.Header().Set("Cache-Control", "no-store")
	w.Header().Set("Content-Disposition", fmt.Sprintf(`attachment; filename="warden-audit-%s.%s"`, s.o.Now().UTC().Format("20060102T150405Z"), ext))
	w.Header().Set("X-Content-Type-Options", "nosniff")
	// An export of a large trail takes longer than the listener's write
	// timeout: this response sets its own.
	_ = http.NewResponseController(w).SetWriteDeadline(time.Time{})
	n, err := auditquery.Export(ctx, s.o.Store, q, f, w)
	if err != nil {
		s.o.Logger.Error("audit export failed", "actor", actor, "events", n, "err", err)
		if w.sent {
			panic(http.ErrAbortHandler)
		}
		for _, h := range []string{"Content-Disposition", "Content-Type"} {
			w.Header().Del(h)
		}
		return err
	}
	s.o.Logger.Info("audit exported", "actor", actor, "events", n, "format", string(f), "query", q.Describe())
	return nil
}

// auditQuery reads the search parameters of a request.
func (s *Server) auditQuery(r *http.Request) (auditquery.Query, error) {
	q, err := auditquery.Parse(r.URL.Query(), s.o.Now())
	if err != nil {
		return q, errStatus(http.StatusBadRequest, "%v", err)
	}
	return q, nil
}

func (s *Server) searchAudit(w http.ResponseWriter, r *http.Request, _ string) error {
	q, err := s.auditQuery(r)
	if err != nil {
		return err
	}
	limit := 50
	if v := r.URL.Query().Get("limit"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n <= 0 || n > 1000 {
			return errStatus(http.StatusBadRequest, "limit must be 1-1000")
		}
		limit = n
	}
	var before uint64
	if v := r.URL.Query().Get("before"); v != "" {
		n, err := strconv.ParseUint(v, 10, 64)
		if err != nil {
			return errStatus(http.StatusBadRequest, "before must be a sequence number")
		}
		before = n
	}
	page, err := s.SearchAudit(r.Context(), q, before, limit)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, page)
	return nil
}

func (s *Server) getAuditEvent(w http.ResponseWriter, r *http.Request, _ string) error {
	seq, err := strconv.ParseUint(r.PathValue("seq"), 10, 64)
	if err != nil {
		return errStatus(http.StatusBadRequest, "not a sequence number")
	}
	ev, err := s.AuditEvent(r.Context(), seq)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, ev)
	return nil
}

func (s *Server) exportAudit(w http.ResponseWriter, r *http.Request, actor string) error {
	q, err := s.auditQuery(r)
	if err != nil {
		return err
	}
	f, err := auditquery.ParseFormat(r.URL.Query().Get("format"))
	if err != nil {
		return errStatus(http.StatusBadRequest, "%v", err)
	}
	return s.ExportAudit(r.Context(), w, q, f, actor)
}

// sentWriter tells whether any of the body was written.
type sentWriter struct {
	http.ResponseWriter
	sent bool
}

func (w *sentWriter) Write(p []byte) (int, error) {
	w.sent = true
	return w.ResponseWriter.Write(p)
}

// Unwrap lets http.ResponseController reach the connection.
func (w *sentWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }
