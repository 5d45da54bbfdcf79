package store_test

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/warden-mcp/warden/internal/store"
)

// Issue 13: with its directory gone under load, Badger fails to create a
// memtable and keeps a nil one; the next read used to dereference it (the
// audit writer's retry died there) and the next write to assert in
// Badger's own goroutine. The store must instead fail every operation with
// ErrUnavailable, never panic, and still shut down within its deadline.
func TestBadgerFailsClosedWhenItCannotWrite(t *testing.T) {
	dir := t.TempDir()
	st, err := store.OpenBadger(dir, store.BadgerOptions{MemTableSize: 1 << 20})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	now := time.Now()
	g := store.Grant{ID: "g1", Subject: "alice", ClientID: "c1", Servers: []string{"bi"}, CreatedAt: now}
	if err := st.CreateGrant(ctx, g); err != nil {
		t.Fatal(err)
	}
	h := store.Handle{Digest: "d1", Kind: store.HandleAccess, GrantID: "g1", ClientID: "c1", IssuedAt: now, ExpiresAt: now.Add(time.Hour)}
	if err := st.CreateHandle(ctx, h); err != nil {
		t.Fatal(err)
	}
	if _, _, err := st.ResolveHandle(ctx, "d1"); err != nil {
		t.Fatal(err)
	}
	if err := os.RemoveAll(dir); err != nil {
		t.Fatal(err)
	}

	// Fill memtables until Badger needs a new one in the missing
	// directory; each session is about 40 KiB.
	value := []byte(strings.Repeat("x", 40<<10))
	var writeErr error
	for i := 0; i < 1000 && writeErr == nil; i++ {
		writeErr = st.PutSession(ctx, "login", fmt.Sprint("s", i), value, time.Hour)
	}
	if writeErr == nil {
		t.Fatal("writes into a removed directory never failed")
	}
	if !errors.Is(st.Err(), store.ErrUnavailable) {
		t.Fatalf("the store did not mark itself failed after %v", writeErr)
	}
	// Every later operation fails closed: no panic, no answer from the
	// hot cache, no write reaching Badger.
	if err := st.AppendAudit(ctx, store.AuditEvent{Seq: 1, Time: now, Type: "decision"}); !errors.Is(err, store.ErrUnavailable) {
		t.Errorf("append after the failure: %v", err)
	}
	if _, _, err := st.ResolveHandle(ctx, "d1"); !errors.Is(err, store.ErrUnavailable) {
		t.Errorf("resolve after the failure: %v", err)
	}
	if _, err := st.GetGrant(ctx, "g1"); !errors.Is(err, store.ErrUnavailable) {
		t.Errorf("read after the failure: %v", err)
	}
	if err := st.UpdateGrant(ctx, "g1", func(g store.Grant) (store.Grant, error) { return g, nil }); !errors.Is(err, store.ErrUnavailable) {
		t.Errorf("update after the failure: %v", err)
	}
	st.RunGC()

	// Shutdown is bounded: Badger would retry its flush forever.
	sctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	start := time.Now()
	if err := st.Shutdown(sctx); err == nil {
		t.Error("shutdown of a store that could not flush reported success")
	}
	if d := time.Since(start); d > 5500*time.Millisecond {
		t.Errorf("shutdown took %s", d)
	}
	if err := st.Close(); err == nil {
		t.Error("a second close reported success")
	}
}

// Issue 13: Badger's files are private to the owner, as the keys are.
func TestBadgerFilesArePrivate(t *testing.T) {
	dir := t.TempDir()
	st, err := store.OpenBadger(dir, store.BadgerOptions{MemTableSize: 1 << 20})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	value := []byte(strings.Repeat("x", 4<<10))
	for i := 0; i < 1000; i++ {
		if err := st.PutSession(ctx, "login", fmt.Sprint("s", i), value, time.Hour); err != nil {
			t.Fatal(err)
		}
	}
	if err := st.AppendAudit(ctx, store.AuditEvent{Seq: 1, Time: time.Now(), Type: "decision"}); err != nil {
		t.Fatal(err)
	}
	if err := st.Close(); err != nil {
		t.Fatal(err)
	}
	kinds := map[string]bool{}
	err = filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		fi, err := d.Info()
		if err != nil {
			return err
		}
		if fi.Mode().Perm()&0o077 != 0 {
			t.Errorf("%s has mode %v, want 0600", p, fi.Mode().Perm())
		}
		kinds[strings.TrimLeft(d.Name(), "0123456789")] = true
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if !kinds[".sst"] || !kinds["MANIFEST"] || !kinds[".jsonl"] {
		t.Errorf("expected tables and a manifest, got %v", kinds)
	}
}
