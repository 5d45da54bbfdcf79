// Package auditquery searches and exports the audit trail without loading
// it: search walks back from the newest event in fixed chunks, export walks
// forward in fixed chunks and streams, so memory stays constant whatever
// the size of the trail. Both read only through store.ListAudit (events
// with a seq at or above a given one, oldest first), so they keep working
// when retention has pruned the oldest events: the trail then simply
// starts later.
package auditquery

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/warden-mcp/warden/internal/store"
)

// Store is the part of the store a query reads.
type Store interface {
	ListAudit(ctx context.Context, from uint64, limit int) ([]store.AuditEvent, error)
	LastAudit(ctx context.Context) (store.AuditEvent, error)
}

// Query selects events; empty fields match everything.
type Query struct {
	// User matches the subject, or the actor of admin events (exactly, or
	// as "user:<User>" / "token:<User>").
	User     string
	Client   string
	Server   string
	Tool     string
	Method   string
	Decision string
	Type     string
	// Reason matches a case-insensitive substring of the reason.
	Reason string
	// Since and Until bound the event time: Since <= time < Until.
	Since, Until time.Time
}

// Fields are the query parameters a Query reads, in the order the console
// shows them.
var Fields = []string{"user", "client", "server", "tool", "method", "decision", "type", "reason", "since", "until"}

// Parse reads a Query from URL parameters. since and until take an RFC
// 3339 time or a duration back from now ("24h").
func Parse(v url.Values, now time.Time) (Query, error) {
	q := Query{
		User: strings.TrimSpace(v.Get("user")), Client: strings.TrimSpace(v.Get("client")), Server: strings.TrimSpace(v.Get("server")),
		Tool: strings.TrimSpace(v.Get("tool")), Method: strings.TrimSpace(v.Get("method")), Decision: strings.TrimSpace(v.Get("decision")),
		Type: strings.TrimSpace(v.Get("type")), Reason: strings.TrimSpace(v.Get("reason")),
	}
	var errs []error
	var err error
	if q.Since, err = ParseTime(v.Get("since"), now); err != nil {
		errs = append(errs, fmt.Errorf("since: %w", err))
	}
	if q.Until, err = ParseTime(v.Get("until"), now); err != nil {
		errs = append(errs, fmt.Errorf("until: %w", err))
	}
	switch q.Decision {
	case "", "allow", "deny":
	default:
		errs = append(errs, fmt.Errorf("decision must be allow or deny, got %q", q.Decision))
	}
	return q, errors.Join(errs...)
}

// ParseTime reads an RFC 3339 time, or a duration meaning that long before
// now; empty is the zero time.
func ParseTime(s string, now time.Time) (time.Time, error) {
	s = strings.TrimSpace(s)
	if s == "" {
		return time.Time{}, nil
	}
	if d, err := time.ParseDuration(s); err == nil {
		if d < 0 {
			return time.Time{}, fmt.Errorf("duration %q is negative", s)
		}
		return now.Add(-d), nil
	}
	t, err := time.Parse(time.RFC3339Nano, s)
	if err != nil {
		if t, err = time.ParseInLocation("2006-01-02T15:04", s, time.UTC); err != nil {
			return time.Time{}, fmt.Errorf("%q is neither an RFC 3339 time nor a duration such as 24h", s)
		}
	}
	return t, nil
}

// Values writes q back as URL parameters (times as RFC 3339).
func (q Query) Values() url.Values {
	v := url.Values{}
	set := func(k, s string) {
		if s != "" {
			v.Set(k, s)
		}
	}
	set("user", q.User)
	set("client", q.Client)
	set("server", q.Server)
	set("tool", q.Tool)
	set("method", q.Method)
	set("decision", q.Decision)
	set("type", q.Type)
	set("reason", q.Reason)
	if !q.Since.IsZero() {
		v.Set("since", q.Since.UTC().Format(time.RFC3339Nano))
	}
	if !q.Until.IsZero() {
		v.Set("until", q.Until.UTC().Format(time.RFC3339Nano))
	}
	return v
}

// Match reports whether ev passes the query.
func (q Query) Match(ev *store.AuditEvent) bool {
	if q.User != "" && ev.Subject != q.User && ev.Actor != q.User && ev.Actor != "user:"+q.User && ev.Actor != "token:"+q.User {
		return false
	}
	switch {
	case q.Client != "" && ev.ClientID != q.Client,
		q.Server != "" && ev.Server != q.Server,
		q.Tool != "" && ev.Tool != q.Tool,
		q.Method != "" && ev.Method != q.Method,
		q.Decision != "" && ev.Decision != q.Decision,
		q.Type != "" && ev.Type != q.Type,
		q.Reason != "" && !containsFold(ev.Reason, q.Reason),
		!q.Since.IsZero() && ev.Time.Before(q.Since),
		!q.Until.IsZero() && !ev.Time.Before(q.Until):
		return false
	}
	return true
}

func containsFold(s, sub string) bool {
	return strings.Contains(strings.ToLower(s), strings.ToLower(sub))
}

// Skew is how far an event's time may run behind the event written before
// it. Events are chained in the order they are written, and a decision's
// time is when its Check started, so concurrent Checks land a little out of
// time order (by at most a Check's duration and the write queue). A scan
// ordered by seq stops at a time bound only once it is this far past it.
const Skew = time.Minute

// chunk is how many events one store read returns.
const chunk = 1000

// maxScan bounds the events one search page reads: a very selective query
// over a long trail answers with what it found and a cursor to go on.
const maxScan = 200_000

// Page is one page of a search, newest first.
type Page struct {
	Events []store.AuditEvent `json:"events"`
	// Next continues the search (pass it as Before); 0 when the trail has
	// nothing older to look at.
	Next uint64 `json:"next,omitempty"`
	// Scanned counts the events read for this page.
	Scanned int `json:"scanned"`
}

// Search returns up to limit events matching q, newest first, among
// events with a seq below before (0: from the newest).
func Search(ctx context.Context, st Store, q Query, before uint64, limit int) (Page, error) {
	page := Page{Events: []store.AuditEvent{}}
	if limit <= 0 {
		limit = 50
	}
	last, err := st.LastAudit(ctx)
	if errors.Is(err, store.ErrNotFound) {
		return page, nil
	}
	if err != nil {
		return page, err
	}
	hi := last.Seq // the highest seq still to look at
	if before > 0 {
		if before <= 1 {
			return page, nil
		}
		hi = min(hi, before-1)
	}
	for hi > 0 {
		lo := uint64(1)
		if hi > chunk {
			lo = hi - chunk + 1
		}
		evs, err := st.ListAudit(ctx, lo, int(hi-lo+1))
		if err != nil {
			return page, err
		}
		for i := len(evs) - 1; i >= 0; i-- {
			ev := &evs[i]
			if ev.Seq > hi {
				continue
			}
			page.Scanned++
			if !q.Since.IsZero() && ev.Time.Before(q.Since.Add(-Skew)) {
				return page, nil // everything older is out of range
			}
			if q.Match(ev) {
				page.Events = append(page.Events, *ev)
				if len(page.Events) == limit {
					if ev.Seq > 1 {
						page.Next = ev.Seq
					}
					return page, nil
				}
			}
			if page.Scanned >= maxScan {
				if ev.Seq > 1 {
					page.Next = ev.Seq
				}
				return page, nil
			}
		}
		// Done at the start of the trail, or where the store has nothing
		// from lo on: retention pruned what is older.
		if lo == 1 || len(evs) == 0 || evs[0].Seq > lo {
			return page, nil
		}
		hi = lo - 1
	}
	return page, nil
}

// Event returns the event with seq, or store.ErrNotFound.
func Event(ctx context.Context, st Store, seq uint64) (store.AuditEvent, error) {
	evs, err := st.ListAudit(ctx, seq, 1)
	if err != nil {
		return store.AuditEvent{}, err
	}
	if len(evs) == 0 || evs[0].Seq != seq {
		return store.AuditEvent{}, fmt.Errorf("audit event %d: %w", seq, store.ErrNotFound)
	}
	return evs[0], nil
}

// firstAtOrAfter finds the lowest seq whose event is not older than t
// (less the skew), by binary search over seqs: O(log n) reads of one event.
func firstAtOrAfter(ctx context.Context, st Store, t time.Time, last uint64) (uint64, error) {
	t = t.Add(-Skew)
	lo, hi := uint64(1), last+1 // the answer is in [lo, hi]
	for lo < hi {
		mid := lo + (hi-lo)/2
		evs, err := st.ListAudit(ctx, mid, 1)
		if err != nil {
			return 0, err
		}
		if len(evs) == 0 {
			hi = mid
			continue
		}
		if evs[0].Time.Before(t) {
			lo = evs[0].Seq + 1
		} else {
			hi = mid
		}
	}
	return lo, nil
}

// Each calls fn for every event matching q, oldest first, reading the
// trail in fixed chunks: memory does not grow with the trail. Events
// appended after Each started are not visited, so a busy trail cannot keep
// an export running forever.
func Each(ctx context.Context, st Store, q Query, fn func(*store.AuditEvent) error) error {
	last, err := st.LastAudit(ctx)
	if errors.Is(err, store.ErrNotFound) {
		return nil
	}
	if err != nil {
		return err
	}
	from := uint64(0)
	if !q.Since.IsZero() {
		if from, err = firstAtOrAfter(ctx, st, q.Since, last.Seq); err != nil {
			return err
		}
	}
	for from <= last.Seq {
		evs, err := st.ListAudit(ctx, from, chunk)
		if err != nil {
			return err
		}
		if len(evs) == 0 {
			return nil
		}
		for i := range evs {
			ev := &evs[i]
			if ev.Seq > last.Seq {
				return nil
			}
			if !q.Until.IsZero() && !ev.Time.Before(q.Until.Add(Skew)) {
				return nil
			}
			if q.Match(ev) {
				if err := fn(ev); err != nil {
					return err
				}
			}
		}
		from = evs[len(evs)-1].Seq + 1
		if err := ctx.Err(); err != nil {
			return err
		}
	}
	return nil
}

// Describe says in a few words what q selects, for page titles and logs.
func (q Query) Describe() string {
	v := q.Values()
	var parts []string
	for _, k := range Fields {
		if s := v.Get(k); s != "" {
			parts = append(parts, k+"="+strconv.Quote(s))
		}
	}
	if len(parts) == 0 {
		return "every event"
	}
	return strings.Join(parts, " ")
}
