package audit_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/warden-mcp/warden/internal/audit"
	"github.com/warden-mcp/warden/internal/store"
)

var ctx = context.Background()

func openStore(t *testing.T, dir string) *store.Badger {
	t.Helper()
	st, err := store.OpenBadger(dir, store.BadgerOptions{})
	if err != nil {
		t.Fatal(err)
	}
	return st
}

type syncBuf struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuf) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func TestChainAcrossRestartAndSink(t *testing.T) {
	dir := t.TempDir()
	st := openStore(t, dir)
	var sink syncBuf
	tr, err := audit.Open(ctx, st, audit.Options{Sink: &sink})
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	for i := 0; i < 500; i++ {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			if err := tr.Record(ctx, store.AuditEvent{Type: "decision", Subject: fmt.Sprint("u", i)}); err != nil {
				t.Error(err)
			}
		}(i)
	}
	wg.Wait()
	if err := tr.RecordSync(ctx, store.AuditEvent{Type: "revoke", Actor: "admin"}); err != nil {
		t.Fatal(err)
	}
	if err := tr.Close(ctx); err != nil {
		t.Fatal(err)
	}
	if err := tr.Record(ctx, store.AuditEvent{}); !errors.Is(err, audit.ErrClosed) {
		t.Fatalf("record after close: %v", err)
	}
	_ = st.Close()

	st = openStore(t, dir)
	defer st.Close()
	tr, _ = audit.Open(ctx, st, audit.Options{})
	if err := tr.RecordSync(ctx, store.AuditEvent{Type: "after-restart"}); err != nil {
		t.Fatal(err)
	}
	_ = tr.Close(ctx)
	r, err := audit.Verify(ctx, st)
	if err != nil {
		t.Fatal(err)
	}
	if !r.OK() || r.Events != 502 || r.First != 1 || r.Last != 502 {
		t.Fatalf("verify: %+v", r)
	}
	lines := strings.Split(strings.TrimSpace(sink.b.String()), "\n")
	if len(lines) != 501 {
		t.Fatalf("sink has %d lines, want 501", len(lines))
	}
	var ev store.AuditEvent
	if err := json.Unmarshal([]byte(lines[0]), &ev); err != nil || ev.Hash == "" || ev.Seq != 1 {
		t.Fatalf("sink line: %v %+v", err, ev)
	}
}

// tamper rewrites the stored trail's lines directly on disk, as an
// attacker with disk access would. fn gets the events as stored, one per
// line, and returns the lines to write back.
func tamper(t *testing.T, dir string, fn func(lines [][]byte) [][]byte) {
	t.Helper()
	segs, err := filepath.Glob(filepath.Join(dir, "audit", "*.jsonl"))
	if err != nil || len(segs) != 1 {
		t.Fatalf("want one audit segment: %v %v", segs, err)
	}
	raw, err := os.ReadFile(segs[0])
	if err != nil {
		t.Fatal(err)
	}
	lines := bytes.SplitAfter(raw, []byte("\n"))
	if err := os.WriteFile(segs[0], bytes.Join(fn(lines), nil), 0o600); err != nil {
		t.Fatal(err)
	}
}

func seed(t *testing.T, dir string, n int) {
	st := openStore(t, dir)
	tr, _ := audit.Open(ctx, st, audit.Options{})
	for i := 0; i < n; i++ {
		_ = tr.Record(ctx, store.AuditEvent{Type: "decision", Subject: "alice", Tool: fmt.Sprint("tool", i), Decision: "deny"})
	}
	_ = tr.Close(ctx)
	_ = st.Close()
}

func TestVerifyCatchesTampering(t *testing.T) {
	cases := []struct {
		name       string
		edit       func(lines [][]byte) [][]byte
		wantBroken uint64
		wantReason string
	}{
		{"altered decision", rewrite(5, func(e *store.AuditEvent) { e.Decision = "allow" }), 5, "does not match its hash"},
		{"altered and rehashed", rewrite(7, func(e *store.AuditEvent) { e.Decision = "allow"; e.Hash = audit.Hash(*e) }), 8, "prev_hash"},
		{"deleted event", func(lines [][]byte) [][]byte { return append(lines[:3:3], lines[4:]...) }, 5, "missing"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			dir := t.TempDir()
			seed(t, dir, 10)
			tamper(t, dir, c.edit)
			st := openStore(t, dir)
			defer st.Close()
			r, err := audit.Verify(ctx, st)
			if err != nil {
				t.Fatal(err)
			}
			if r.OK() || r.Broken != c.wantBroken || !strings.Contains(r.Reason, c.wantReason) {
				t.Fatalf("report %+v, want broken at %d (%s)", r, c.wantBroken, c.wantReason)
			}
		})
	}
}

func rewrite(seq uint64, fn func(*store.AuditEvent)) func(lines [][]byte) [][]byte {
	return func(lines [][]byte) [][]byte {
		var e store.AuditEvent
		if err := json.Unmarshal(lines[seq-1], &e); err != nil || e.Seq != seq {
			panic(fmt.Sprintf("line %d is not event %d: %v", seq-1, seq, err))
		}
		fn(&e)
		raw, _ := json.Marshal(e)
		lines[seq-1] = append(raw, '\n')
		return lines
	}
}

// failingStore fails every append until healed, standing in for a full or
// broken disk.
type failingStore struct {
	*store.Badger
	mu      sync.Mutex
	healthy bool
	fails   int
}

func (f *failingStore) AppendAudit(ctx context.Context, evs ...store.AuditEvent) error {
	if err := f.fail(); err != nil {
		return err
	}
	return f.Badger.AppendAudit(ctx, evs...)
}

func (f *failingStore) AppendAuditLines(ctx context.Context, evs []store.AuditEvent, lines []byte) error {
	if err := f.fail(); err != nil {
		return err
	}
	return f.Badger.AppendAuditLines(ctx, evs, lines)
}

func (f *failingStore) fail() error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if !f.healthy {
		f.fails++
		return errors.New("disk full")
	}
	return nil
}

func TestStoreFailureBackpressuresAndLosesNothing(t *testing.T) {
	st := openStore(t, t.TempDir())
	defer st.Close()
	fs := &failingStore{Badger: st}
	tr, _ := audit.Open(ctx, fs, audit.Options{QueueSize: 4, MaxBatch: 2})
	// The writer holds one batch and the queue holds four more; after that
	// Record must block and give up at the caller's deadline.
	var timedOut int
	for i := 0; i < 12; i++ {
		c, cancel := context.WithTimeout(ctx, 50*time.Millisecond)
		if err := tr.Record(c, store.AuditEvent{Type: "decision", Tool: fmt.Sprint(i)}); err != nil {
			timedOut++
		}
		cancel()
	}
	if timedOut == 0 {
		t.Fatal("Record never reported backpressure while the store failed")
	}
	fs.mu.Lock()
	fs.healthy = true
	fs.mu.Unlock()
	if err := tr.Close(ctx); err != nil {
		t.Fatal(err)
	}
	r, _ := audit.Verify(ctx, st)
	if !r.OK() || r.Events != uint64(12-timedOut) {
		t.Fatalf("accepted %d events, stored %d (%+v)", 12-timedOut, r.Events, r)
	}
}

// The sink line must be exactly the event as a second marshal would give
// it, hash included: the splice in hashAndEncode must not drift.
func TestSinkLineMatchesStoredEvent(t *testing.T) {
	st := openStore(t, t.TempDir())
	defer st.Close()
	var sink syncBuf
	tr, _ := audit.Open(ctx, st, audit.Options{Sink: &sink})
	_ = tr.RecordSync(ctx, store.AuditEvent{Type: "decision", Tool: `quote"and\\slash`, Details: map[string]any{"k": []string{"a"}}})
	_ = tr.Close(ctx)
	evs, _ := st.ListAudit(ctx, 0, 0)
	want, _ := json.Marshal(evs[0])
	if got := strings.TrimSpace(sink.b.String()); got != string(want) {
		t.Fatalf("sink line\n%s\nstored event\n%s", got, want)
	}
	if audit.Hash(evs[0]) != evs[0].Hash {
		t.Fatal("stored hash does not verify")
	}
}

// A line of the stored trail that is no longer an event is not skipped:
// verification fails on it instead of reporting a shorter intact chain.
func TestVerifyFailsOnACorruptLine(t *testing.T) {
	dir := t.TempDir()
	seed(t, dir, 10)
	tamper(t, dir, func(lines [][]byte) [][]byte {
		lines[4] = []byte("{not an event}\n")
		return lines
	})
	st := openStore(t, dir)
	defer st.Close()
	if last, err := st.LastAudit(ctx); err != nil || last.Seq != 10 {
		t.Fatalf("last event %d %v: the events after the corrupt line must stay", last.Seq, err)
	}
	r, err := audit.Verify(ctx, st)
	if err == nil {
		t.Fatalf("verified a trail with a corrupt line: %+v", r)
	}
}

// A decision's recorded input is placed in the line without being
// re-encoded: the line is still exactly json.Marshal's, and verifies.
func TestRecordedInputLineIsTheMarshalledEvent(t *testing.T) {
	st := openStore(t, t.TempDir())
	defer st.Close()
	var sink syncBuf
	tr, _ := audit.Open(ctx, st, audit.Options{Sink: &sink})
	input := `[{"mcp":{"arguments":{"q":"a \u003c b","prev_hash":"x"}},"n":1}]`
	_ = tr.RecordSync(ctx, store.AuditEvent{Type: "decision", Tool: "t", Redacted: []string{"password"}, Details: map[string]any{"prev_hash": "y"}, Input: store.RawJSON(input)})
	_ = tr.Close(ctx)
	evs, _ := st.ListAudit(ctx, 0, 0)
	want, _ := json.Marshal(evs[0])
	if got := strings.TrimSpace(sink.b.String()); got != string(want) || !strings.Contains(got, `"input":`+input+`,"prev_hash"`) {
		t.Fatalf("sink line\n%s\nmarshalled event\n%s", got, want)
	}
	if rep, err := audit.Verify(ctx, st); err != nil || !rep.OK() || rep.Events != 1 {
		t.Fatalf("verify: %+v %v", rep, err)
	}
}

// Events are encoded on the recording goroutine and chained by the writer
// (eventBody, appendChained): every line of batches that mix kinds of
// event is still exactly json.Marshal of the stored event, and the chain
// verifies. Queued from many goroutines, so that batches hold several.
func TestLinesOfMixedBatchesAreTheMarshalledEvents(t *testing.T) {
	st := openStore(t, t.TempDir())
	defer st.Close()
	var sink syncBuf
	tr, err := audit.Open(ctx, st, audit.Options{Sink: &sink})
	if err != nil {
		t.Fatal(err)
	}
	local := time.FixedZone("x", 3600)
	events := []store.AuditEvent{
		{Type: "decision", Decision: "allow", Status: 200, Tool: "echo", Input: store.RawJSON(`[{"mcp":{"arguments":{"q":"\u003cb\u003e"}}}]`)},
		{Type: "decision", Decision: "deny", Reason: `tool "x" <not> allowed & more`, Redacted: []string{"password"}, Input: store.RawJSON(`[{"n":1}]`)},
		{Type: "admin", Actor: "root", Details: map[string]any{"prev_hash": "y", "n": 2, "list": []string{"a", "<b>"}}},
		{Type: "token", Time: time.Date(2026, 1, 2, 3, 4, 5, 6, local), Subject: "alice\u2028bob"},
		{Type: "revoke"},
	}
	var wg sync.WaitGroup
	for i := 0; i < 40; i++ {
		wg.Add(1)
		go func(ev store.AuditEvent) {
			defer wg.Done()
			if err := tr.RecordSync(ctx, ev); err != nil {
				t.Error(err)
			}
		}(events[i%len(events)])
	}
	wg.Wait()
	if err := tr.Close(ctx); err != nil {
		t.Fatal(err)
	}
	stored, err := st.ListAudit(ctx, 0, 0)
	if err != nil || len(stored) != 40 {
		t.Fatalf("stored %d events: %v", len(stored), err)
	}
	lines := strings.Split(strings.TrimSpace(sink.b.String()), "\n")
	if len(lines) != len(stored) {
		t.Fatalf("%d sink lines for %d events", len(lines), len(stored))
	}
	for i, ev := range stored {
		want, _ := json.Marshal(ev)
		if lines[i] != string(want) {
			t.Errorf("line %d\n%s\nmarshalled event\n%s", i, lines[i], want)
		}
	}
	if rep, err := audit.Verify(ctx, st); err != nil || !rep.OK() || rep.Events != 40 {
		t.Fatalf("verify: %+v %v", rep, err)
	}
}
