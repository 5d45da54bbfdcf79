package auditquery

import (
	"bytes"
	"context"
	"encoding/csv"
	"encoding/json"
	"fmt"
	"net/url"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/warden-mcp/warden/internal/store"
)

var t0 = time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)

// gen makes n decision events a second apart: subjects, servers, tools
// and decisions cycle so every filter has something to pick.
func gen(from, n int) []store.AuditEvent {
	evs := make([]store.AuditEvent, 0, n)
	users := []string{"alice", "bob", "carol"}
	servers := []string{"bi", "hr"}
	tools := []string{"query", "export", "=HYPERLINK(\"x\")"}
	for i := from; i < from+n; i++ {
		ev := store.AuditEvent{Seq: uint64(i), Time: t0.Add(time.Duration(i) * time.Second), Type: "decision",
			Subject: users[i%3], ClientID: "client-" + servers[i%2], Server: servers[i%2], Method: "tools/call", Tool: tools[i%3],
			Decision: "allow", Status: 200, Reason: "allowed", RequestID: fmt.Sprintf("req-%d", i), Hash: fmt.Sprintf("h%d", i)}
		if i%5 == 0 {
			ev.Decision, ev.Status, ev.Reason = "deny", 403, "Tool Export is not for "+ev.Subject
		}
		evs = append(evs, ev)
	}
	return evs
}

func badger(t testing.TB, n int) *store.Badger {
	st, err := store.OpenBadger(t.TempDir(), store.BadgerOptions{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = st.Close() })
	for i := 1; i <= n; i += 5000 {
		if err := st.AppendAudit(context.Background(), gen(i, min(5000, n-i+1))...); err != nil {
			t.Fatal(err)
		}
	}
	return st
}

// want filters every generated event through q, newest first: the
// expected answer computed without the package's scanning.
func want(n int, q Query) []uint64 {
	var out []uint64
	for _, ev := range gen(1, n) {
		if q.Match(&ev) {
			out = append(out, ev.Seq)
		}
	}
	slices.Reverse(out)
	return out
}

func seqs(evs []store.AuditEvent) []uint64 {
	out := make([]uint64, len(evs))
	for i, e := range evs {
		out[i] = e.Seq
	}
	return out
}

func TestSearchFiltersAndPages(t *testing.T) {
	const n = 3500
	st := badger(t, n)
	ctx := context.Background()
	for _, c := range []struct {
		name string
		q    Query
	}{
		{"everything", Query{}},
		{"user", Query{User: "bob"}},
		{"user and server", Query{User: "alice", Server: "hr"}},
		{"decision", Query{Decision: "deny"}},
		{"reason substring, any case", Query{Reason: "tool export"}},
		{"tool", Query{Tool: "export", Client: "client-bi"}},
		{"time range", Query{Since: t0.Add(1000 * time.Second), Until: t0.Add(1200 * time.Second)}},
		{"since only", Query{Since: t0.Add(3400 * time.Second), Decision: "allow"}},
		{"nothing", Query{User: "mallory"}},
	} {
		t.Run(c.name, func(t *testing.T) {
			var got []uint64
			before := uint64(0)
			for pages := 0; ; pages++ {
				p, err := Search(ctx, st, c.q, before, 70)
				if err != nil {
					t.Fatal(err)
				}
				if len(p.Events) > 70 {
					t.Fatalf("page of %d", len(p.Events))
				}
				got = append(got, seqs(p.Events)...)
				if p.Next == 0 {
					break
				}
				before = p.Next
				if pages > n {
					t.Fatal("search does not end")
				}
			}
			if w := want(n, c.q); !slices.Equal(got, w) {
				t.Fatalf("got %d events %v..., want %d %v...", len(got), head(got), len(w), head(w))
			}
		})
	}
	// A time bound stops the scan instead of reading the whole trail.
	p, _ := Search(ctx, st, Query{Since: t0.Add(3400 * time.Second)}, 0, 1000)
	if p.Scanned > 101+int(Skew/time.Second)+1 {
		t.Errorf("since scanned %d events of %d", p.Scanned, n)
	}
}

func head(s []uint64) []uint64 { return s[:min(5, len(s))] }

func TestEmptyTrail(t *testing.T) {
	st := badger(t, 0)
	p, err := Search(context.Background(), st, Query{}, 0, 10)
	if err != nil || len(p.Events) != 0 || p.Next != 0 {
		t.Fatalf("%+v %v", p, err)
	}
	var buf bytes.Buffer
	if n, err := Export(context.Background(), st, Query{}, CSV, &buf); err != nil || n != 0 || !strings.HasPrefix(buf.String(), "seq,time,") {
		t.Fatalf("export of an empty trail: %d %v %q", n, err, buf.String())
	}
}

// pruned is a trail whose oldest events retention removed: ListAudit
// answers from the first kept seq, as every backend must once auditx's
// retention lands.
type pruned struct {
	*store.Badger
	first uint64
}

func (p pruned) ListAudit(ctx context.Context, from uint64, limit int) ([]store.AuditEvent, error) {
	return p.Badger.ListAudit(ctx, max(from, p.first), limit)
}

func TestPrunedTrail(t *testing.T) {
	const n = 2500
	st := pruned{badger(t, n), 1700}
	ctx := context.Background()
	var got []uint64
	before := uint64(0)
	for {
		p, err := Search(ctx, st, Query{User: "carol"}, before, 100)
		if err != nil {
			t.Fatal(err)
		}
		got = append(got, seqs(p.Events)...)
		if p.Next == 0 {
			break
		}
		before = p.Next
	}
	var w []uint64
	for _, s := range want(n, Query{User: "carol"}) {
		if s >= 1700 {
			w = append(w, s)
		}
	}
	if !slices.Equal(got, w) {
		t.Fatalf("search of a pruned trail: %d events, want %d", len(got), len(w))
	}
	var buf bytes.Buffer
	if _, err := Export(ctx, st, Query{Since: t0}, NDJSON, &buf); err != nil {
		t.Fatal(err)
	}
	if lines := strings.Count(buf.String(), "\n"); lines != n-1700+1 {
		t.Fatalf("export of a pruned trail: %d lines", lines)
	}
}

func TestExportMatchesSearch(t *testing.T) {
	const n = 2200
	st := badger(t, n)
	ctx := context.Background()
	q := Query{Server: "hr", Since: t0.Add(500 * time.Second), Until: t0.Add(1900 * time.Second)}
	w := want(n, q)
	slices.Reverse(w) // export is oldest first

	var nd bytes.Buffer
	cnt, err := Export(ctx, st, q, NDJSON, &nd)
	if err != nil || cnt != len(w) {
		t.Fatalf("ndjson: %d events, %v; want %d", cnt, err, len(w))
	}
	var got []uint64
	for _, line := range strings.Split(strings.TrimSpace(nd.String()), "\n") {
		var ev store.AuditEvent
		if err := json.Unmarshal([]byte(line), &ev); err != nil {
			t.Fatalf("line %q: %v", line, err)
		}
		got = append(got, ev.Seq)
	}
	if !slices.Equal(got, w) {
		t.Fatalf("ndjson seqs differ from the query's")
	}

	var cb bytes.Buffer
	if _, err := Export(ctx, st, q, CSV, &cb); err != nil {
		t.Fatal(err)
	}
	rows, err := csv.NewReader(&cb).ReadAll()
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(rows[0], CSVHeader) || len(rows) != len(w)+1 {
		t.Fatalf("csv: header %v, %d rows, want %d", rows[0], len(rows)-1, len(w))
	}
	for i, r := range rows[1:] {
		if r[0] != fmt.Sprint(w[i]) || r[8] != "hr" {
			t.Fatalf("row %d: %v", i, r)
		}
		// A tool name that is a spreadsheet formula is defused.
		if strings.HasPrefix(r[10], "=") {
			t.Fatalf("row %d carries a formula: %q", i, r[10])
		}
	}
}

func TestParse(t *testing.T) {
	now := t0
	q, err := Parse(url.Values{"user": {" alice "}, "since": {"24h"}, "until": {"2026-03-01T11:00:00Z"}, "decision": {"deny"}}, now)
	if err != nil || q.User != "alice" || !q.Since.Equal(now.Add(-24*time.Hour)) || !q.Until.Equal(t0.Add(-time.Hour)) {
		t.Fatalf("%+v %v", q, err)
	}
	for _, bad := range []url.Values{{"since": {"yesterday"}}, {"until": {"-1h"}}, {"decision": {"maybe"}}} {
		if _, err := Parse(bad, now); err == nil {
			t.Errorf("%v accepted", bad)
		}
	}
	// Values round-trips.
	q2, err := Parse(q.Values(), now)
	if err != nil || q2 != q {
		t.Fatalf("round trip: %+v %v", q2, err)
	}
}
