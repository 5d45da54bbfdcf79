package store_test

import (
	"context"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/dgraph-io/badger/v4"

	"github.com/warden-mcp/warden/internal/store"
)

func events(from, to uint64) []store.AuditEvent {
	var evs []store.AuditEvent
	for s := from; s <= to; s++ {
		evs = append(evs, store.AuditEvent{Seq: s, Time: time.Unix(int64(s), 0).UTC(), Type: "decision", Reason: strings.Repeat("r", 100), Hash: fmt.Sprint("h", s)})
	}
	return evs
}

// The trail spans segment files, pages across them, and survives reopen.
func TestAuditLogSegments(t *testing.T) {
	dir := t.TempDir()
	ctx := context.Background()
	st, err := store.OpenBadger(dir, store.BadgerOptions{AuditSegmentSize: 16 << 10})
	if err != nil {
		t.Fatal(err)
	}
	for from := uint64(1); from <= 2000; from += 100 {
		if err := st.AppendAudit(ctx, events(from, from+99)...); err != nil {
			t.Fatal(err)
		}
	}
	segs, _ := filepath.Glob(filepath.Join(dir, "audit", "*.jsonl"))
	if len(segs) < 10 {
		t.Fatalf("%d segments for 2000 events of 16 KiB segments", len(segs))
	}
	check := func(st *store.Badger) {
		t.Helper()
		for _, from := range []uint64{1, 255, 256, 257, 1000, 1999} {
			page, err := st.ListAudit(ctx, from, 300)
			if err != nil {
				t.Fatal(err)
			}
			want := min(300, int(2000-from+1))
			if len(page) != want || page[0].Seq != from || page[len(page)-1].Seq != from+uint64(want)-1 {
				t.Fatalf("from %d: %d events", from, len(page))
			}
			for i, ev := range page {
				if ev.Seq != from+uint64(i) || ev.Hash != fmt.Sprint("h", ev.Seq) {
					t.Fatalf("from %d: event %d is %+v", from, i, ev)
				}
			}
		}
		all, err := st.ListAudit(ctx, 0, 0)
		if err != nil || len(all) != 2000 {
			t.Fatalf("all: %d %v", len(all), err)
		}
		last, err := st.LastAudit(ctx)
		if err != nil || last.Seq != 2000 {
			t.Fatalf("last %d %v", last.Seq, err)
		}
	}
	check(st)
	if err := st.Close(); err != nil {
		t.Fatal(err)
	}
	st, err = store.OpenBadger(dir, store.BadgerOptions{AuditSegmentSize: 16 << 10})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	check(st)
	if err := st.AppendAudit(ctx, events(2001, 2001)...); err != nil {
		t.Fatal(err)
	}
}

// A line torn by a machine crash is cut off at open; the chain goes on
// from the last whole event.
func TestAuditLogTornTail(t *testing.T) {
	dir := t.TempDir()
	ctx := context.Background()
	st, err := store.OpenBadger(dir, store.BadgerOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if err := st.AppendAudit(ctx, events(1, 10)...); err != nil {
		t.Fatal(err)
	}
	_ = st.Close()
	segs, _ := filepath.Glob(filepath.Join(dir, "audit", "*.jsonl"))
	f, err := os.OpenFile(segs[len(segs)-1], os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	_, _ = f.WriteString(`{"seq":11,"time":"2026-`)
	_ = f.Close()

	st, err = store.OpenBadger(dir, store.BadgerOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	if last, err := st.LastAudit(ctx); err != nil || last.Seq != 10 {
		t.Fatalf("last %d %v", last.Seq, err)
	}
	if err := st.AppendAudit(ctx, events(11, 12)...); err != nil {
		t.Fatalf("append after the torn tail: %v", err)
	}
	all, _ := st.ListAudit(ctx, 0, 0)
	if len(all) != 12 || all[11].Seq != 12 {
		t.Fatalf("%d events", len(all))
	}
}

// A store written when the trail lived in Badger keeps its trail.
func TestAuditMovedOutOfBadger(t *testing.T) {
	dir := t.TempDir()
	db, err := badger.Open(badger.DefaultOptions(dir).WithLogger(nil))
	if err != nil {
		t.Fatal(err)
	}
	err = db.Update(func(txn *badger.Txn) error {
		for _, ev := range events(1, 1500) {
			k := make([]byte, len("audit/")+8)
			copy(k, "audit/")
			binary.BigEndian.PutUint64(k[len("audit/"):], ev.Seq)
			raw, _ := json.Marshal(ev)
			if err := txn.Set(k, raw); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	_ = db.Close()
	ctx := context.Background()
	st, err := store.OpenBadger(dir, store.BadgerOptions{})
	if err != nil {
		t.Fatal(err)
	}
	all, err := st.ListAudit(ctx, 0, 0)
	if err != nil || len(all) != 1500 || all[1499].Hash != "h1500" {
		t.Fatalf("moved trail: %d events, %v", len(all), err)
	}
	if err := st.AppendAudit(ctx, events(1501, 1501)...); err != nil {
		t.Fatal(err)
	}
	_ = st.Close()
	// Moved once: reopening does not move or duplicate anything.
	st, err = store.OpenBadger(dir, store.BadgerOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	all, _ = st.ListAudit(ctx, 0, 0)
	if len(all) != 1501 {
		t.Fatalf("%d events after reopen", len(all))
	}
}
