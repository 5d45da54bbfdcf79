package mcptask_test

import (
	"context"
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/warden-mcp/warden/internal/mcptask"
	"github.com/warden-mcp/warden/internal/store"
)

func open(t *testing.T) (*mcptask.Store, *store.Badger) {
	st, err := store.OpenBadger(t.TempDir(), store.BadgerOptions{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = st.Close() })
	return mcptask.New(st, mcptask.Options{}), st
}

func TestRecordResultAndLookup(t *testing.T) {
	tasks, st := open(t)
	ctx := context.Background()
	o := mcptask.Origin{Server: "hr", Subject: "alice", ClientID: "c1", GrantID: "g1", Tool: "export_payroll", Arguments: json.RawMessage(`{"month":"2026-10"}`)}

	// The example CreateTaskResult of SEP-2663.
	id, err := tasks.RecordResult(ctx, o, json.RawMessage(`{"resultType":"task","taskId":"786512e2-9e0d-44bd-8f29-789f320fe840","status":"working","createdAt":"2025-11-25T10:30:00Z","lastUpdatedAt":"2025-11-25T10:40:00Z","ttlMs":60000,"pollIntervalMs":5000}`))
	if err != nil || id != "786512e2-9e0d-44bd-8f29-789f320fe840" {
		t.Fatalf("%q %v", id, err)
	}
	got, err := tasks.Lookup(ctx, "hr", id)
	if err != nil || got.Tool != "export_payroll" || string(got.Arguments) != `{"month":"2026-10"}` || !got.Owns("alice", "c1") || got.Owns("bob", "c1") || got.Owns("alice", "c2") {
		t.Fatalf("%+v %v", got, err)
	}
	// Only on the server it was created on.
	if _, err := tasks.Lookup(ctx, "finance", id); !errors.Is(err, mcptask.ErrNotFound) {
		t.Errorf("found on another server: %v", err)
	}
	if _, err := tasks.Lookup(ctx, "hr", "guessed"); !errors.Is(err, mcptask.ErrNotFound) {
		t.Errorf("unknown task: %v", err)
	}
	// The store keeps a digest, never the id (a bearer handle to the
	// server's state).
	sessions := 0
	if err := st.Walk(ctx, func(r store.Record) error {
		if s := r.Session; s != nil {
			sessions++
			if strings.Contains(s.ID, id) || strings.Contains(string(s.Value), id) || s.Kind != "mcp_task" {
				t.Errorf("stored session %s/%s holds the task id", s.Kind, s.ID)
			}
		}
		return nil
	}); err != nil || sessions != 1 {
		t.Fatalf("walk: %v, %d sessions", err, sessions)
	}

	// 2025-11-25's experimental shape.
	if id, err := tasks.RecordResult(ctx, o, json.RawMessage(`{"task":{"taskId":"legacy-1","status":"working","ttl":60000}}`)); err != nil || id != "legacy-1" {
		t.Errorf("legacy task: %q %v", id, err)
	}
	if _, err := tasks.Lookup(ctx, "hr", "legacy-1"); err != nil {
		t.Errorf("legacy task lookup: %v", err)
	}
	// A complete result creates no task.
	if id, err := tasks.RecordResult(ctx, o, json.RawMessage(`{"resultType":"complete","content":[]}`)); err != nil || id != "" {
		t.Errorf("complete result: %q %v", id, err)
	}
	if _, err := tasks.RecordResult(ctx, o, json.RawMessage(`{"resultType":"task"}`)); err == nil {
		t.Error("a task result without taskId was recorded")
	}
	if err := tasks.Record(ctx, mcptask.Origin{}, "x", time.Minute); err == nil {
		t.Error("a task without a server was recorded")
	}
}

// Held arguments are taken once, by their reference, and only when they
// have the digest the call's metadata names; the store keys them by the
// reference's digest, never the reference.
func TestHoldAndTakeArguments(t *testing.T) {
	tasks, st := open(t)
	ctx := context.Background()
	args := []byte(`{"q":"` + strings.Repeat("x", 100<<10) + `"}`)
	ref, err := tasks.HoldArguments(ctx, args)
	if err != nil || ref == "" {
		t.Fatalf("hold: %q %v", ref, err)
	}
	if _, err := st.GetSession(ctx, "mcp_call_arguments", ref); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("the store keys held arguments by the raw reference: %v", err)
	}
	if _, err := tasks.TakeArguments(ctx, ref, mcptask.ArgumentsDigest([]byte(`{"q":"other"}`))); !errors.Is(err, mcptask.ErrArgumentsMismatch) {
		t.Fatalf("take with another digest: %v", err)
	}
	// A mismatched take consumed them too: nothing is handed out twice.
	if _, err := tasks.TakeArguments(ctx, ref, mcptask.ArgumentsDigest(args)); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("take after a mismatched take: %v", err)
	}

	ref, err = tasks.HoldArguments(ctx, args)
	if err != nil {
		t.Fatal(err)
	}
	got, err := tasks.TakeArguments(ctx, ref, mcptask.ArgumentsDigest(args))
	if err != nil || string(got) != string(args) {
		t.Fatalf("take: %d bytes, %v", len(got), err)
	}
	if _, err := tasks.TakeArguments(ctx, ref, mcptask.ArgumentsDigest(args)); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("second take: %v", err)
	}
	if _, err := tasks.TakeArguments(ctx, "", ""); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("take of no reference: %v", err)
	}
}
