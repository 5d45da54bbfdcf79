package auditquery

import (
	"bufio"
	"context"
	"encoding/csv"
	"encoding/json"
	"fmt"
	"io"
	"strconv"
	"time"

	"github.com/warden-mcp/warden/internal/store"
)

// Format is an export format.
type Format string

const (
	// NDJSON is one JSON event per line, exactly as stored (hash chain
	// fields included), so an export can be verified offline.
	NDJSON Format = "ndjson"
	// CSV has one row per event under a fixed header (CSVHeader); details
	// are one JSON column.
	CSV Format = "csv"
)

// ParseFormat reads a format name; empty is NDJSON.
func ParseFormat(s string) (Format, error) {
	switch Format(s) {
	case "", NDJSON:
		return NDJSON, nil
	case CSV:
		return CSV, nil
	}
	return "", fmt.Errorf("format must be csv or ndjson, got %q", s)
}

// ContentType is the media type of the format.
func (f Format) ContentType() string {
	if f == CSV {
		return "text/csv; charset=utf-8"
	}
	return "application/x-ndjson"
}

// CSVHeader is the first row of a CSV export.
var CSVHeader = []string{"seq", "time", "type", "decision", "status", "subject", "client_id", "kind", "server", "method", "tool",
	"reason", "actor", "grant_id", "request_id", "policy_revision", "latency_us", "details", "prev_hash", "hash"}

// csvRow is ev under CSVHeader.
func csvRow(ev *store.AuditEvent, row []string) ([]string, error) {
	details := ""
	if len(ev.Details) > 0 {
		raw, err := json.Marshal(ev.Details)
		if err != nil {
			return nil, err
		}
		details = string(raw)
	}
	status, latency := "", ""
	if ev.Status != 0 {
		status = strconv.Itoa(ev.Status)
	}
	if ev.LatencyUS != 0 {
		latency = strconv.FormatInt(ev.LatencyUS, 10)
	}
	return append(row[:0], strconv.FormatUint(ev.Seq, 10), ev.Time.UTC().Format(time.RFC3339Nano), ev.Type, ev.Decision, status,
		csvSafe(ev.Subject), csvSafe(ev.ClientID), string(ev.Kind), ev.Server, csvSafe(ev.Method), csvSafe(ev.Tool), csvSafe(ev.Reason),
		csvSafe(ev.Actor), ev.GrantID, csvSafe(ev.RequestID), ev.PolicyRev, latency, details, ev.PrevHash, ev.Hash), nil
}

// csvSafe defuses spreadsheet formula injection (OWASP "CSV injection"):
// client-chosen text such as a tool name or a client id that starts with
// = + - @ or a tab would run as a formula when the export is opened in a
// spreadsheet, so it is prefixed with a quote.
func csvSafe(s string) string {
	if s == "" {
		return s
	}
	switch s[0] {
	case '=', '+', '-', '@', '\t', '\r':
		return "'" + s
	}
	return s
}

// Export writes every event matching q to w in format f, oldest first,
// streaming: it holds one chunk of events and one buffer, whatever the
// number of events. It returns how many events it wrote.
func Export(ctx context.Context, st Store, q Query, f Format, w io.Writer) (int, error) {
	bw := bufio.NewWriterSize(w, 64<<10)
	n := 0
	var err error
	switch f {
	case CSV:
		cw := csv.NewWriter(bw)
		if err := cw.Write(CSVHeader); err != nil {
			return 0, err
		}
		row := make([]string, 0, len(CSVHeader))
		err = Each(ctx, st, q, func(ev *store.AuditEvent) error {
			var err error
			if row, err = csvRow(ev, row); err != nil {
				return err
			}
			n++
			return cw.Write(row)
		})
		cw.Flush()
		if err == nil {
			err = cw.Error()
		}
	default:
		enc := json.NewEncoder(bw)
		enc.SetEscapeHTML(false)
		err = Each(ctx, st, q, func(ev *store.AuditEvent) error {
			n++
			return enc.Encode(ev)
		})
	}
	if ferr := bw.Flush(); err == nil {
		err = ferr
	}
	return n, err
}
