package store_test

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sync/atomic"
	"testing"
	"time"

	"github.com/warden-mcp/warden/internal/store"
)

// Issue 13: on a full volume Badger's memory-mapped logs take a SIGBUS and
// the process dies. Below the reserve the store refuses writes with
// ErrLowSpace (an ErrUnavailable, so callers fail closed), keeps reading,
// and writes again once space comes back.
func TestBadgerRefusesWritesBelowTheReserve(t *testing.T) {
	var free atomic.Uint64
	free.Store(1 << 30)
	st, err := store.OpenBadger(t.TempDir(), store.BadgerOptions{
		DiskReserve: 64 << 20,
		FreeSpace:   func(string) (uint64, error) { return free.Load(), nil },
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = st.Close() })
	ctx := context.Background()
	now := time.Now()
	if err := st.CreateClient(ctx, store.Client{ID: "c1", CreatedAt: now}); err != nil {
		t.Fatal(err)
	}

	free.Store(10 << 20)
	time.Sleep(150 * time.Millisecond) // past the cached reading
	writes := map[string]error{
		"CreateClient": st.CreateClient(ctx, store.Client{ID: "c2", CreatedAt: now}),
		"PutSession":   st.PutSession(ctx, "login", "s1", []byte("x"), time.Hour),
		"AppendAudit":  st.AppendAudit(ctx, store.AuditEvent{Seq: 1, Time: now, Type: "decision"}),
		"DeleteClient": st.DeleteClient(ctx, "c1"),
	}
	for name, err := range writes {
		if !errors.Is(err, store.ErrLowSpace) || !errors.Is(err, store.ErrUnavailable) {
			t.Errorf("%s below the reserve: %v, want ErrLowSpace wrapping ErrUnavailable", name, err)
		}
	}
	if !errors.Is(st.Err(), store.ErrLowSpace) {
		t.Errorf("readiness below the reserve: %v", st.Err())
	}
	if _, err := st.GetClient(ctx, "c1"); err != nil {
		t.Errorf("reads must go on below the reserve: %v", err)
	}

	free.Store(1 << 30)
	time.Sleep(150 * time.Millisecond)
	if err := st.CreateClient(ctx, store.Client{ID: "c2", CreatedAt: now}); err != nil {
		t.Errorf("writes did not resume once space came back: %v", err)
	}
	if err := st.Err(); err != nil {
		t.Errorf("readiness after space came back: %v", err)
	}
	if err := st.AppendAudit(ctx, store.AuditEvent{Seq: 1, Time: now, Type: "decision"}); err != nil {
		t.Errorf("the audit trail did not resume: %v", err)
	}

	// A volume that cannot be asked fails the store, reads included (as a
	// write Badger cannot do does).
	broken := store.BadgerOptions{FreeSpace: func(string) (uint64, error) { return 0, errors.New("statfs: input/output error") }}
	st2, err := store.OpenBadger(t.TempDir(), broken)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = st2.Close() })
	if err := st2.CreateClient(ctx, store.Client{ID: "c1", CreatedAt: now}); !errors.Is(err, store.ErrUnavailable) {
		t.Errorf("write with an unreadable free space: %v, want ErrUnavailable", err)
	}
	if _, err := st2.GetClient(ctx, "c1"); !errors.Is(err, store.ErrUnavailable) {
		t.Errorf("read after the store failed: %v, want ErrUnavailable", err)
	}
}

// The same on a real, small filesystem: writing until the volume is
// nearly full ends in refused writes, not in a SIGBUS that kills this test
// binary, and freeing space lets writes resume.
func TestBadgerOnANearlyFullVolume(t *testing.T) {
	mnt, err := os.MkdirTemp("", "warden-full-")
	if err != nil {
		t.Fatal(err)
	}
	defer os.Remove(mnt)
	if out, err := exec.Command("mount", "-t", "tmpfs", "-o", "size=96m", "tmpfs", mnt).CombinedOutput(); err != nil {
		if os.Getenv("CI") != "" {
			t.Fatalf("mount a 96 MiB tmpfs (CI runs as root): %v: %s", err, out)
		}
		t.Skipf("cannot mount a tmpfs here (needs root): %v: %s", err, out)
	}
	defer func() {
		if out, err := exec.Command("umount", mnt).CombinedOutput(); err != nil {
			t.Errorf("umount %s: %v: %s", mnt, err, out)
		}
	}()
	filler := filepath.Join(mnt, "filler")
	if err := os.WriteFile(filler, make([]byte, 32<<20), 0o600); err != nil {
		t.Fatal(err)
	}
	st, err := store.OpenBadger(filepath.Join(mnt, "store"), store.BadgerOptions{MemTableSize: 1 << 20, DiskReserve: 24 << 20})
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = st.Close() }()
	ctx := context.Background()
	// Random, so that Badger's table compression cannot shrink it.
	value := make([]byte, 40<<10)
	if _, err := rand.Read(value); err != nil {
		t.Fatal(err)
	}
	var writeErr error
	n := 0
	for ; n < 5000 && writeErr == nil; n++ {
		writeErr = st.PutSession(ctx, "login", fmt.Sprint("s", n), value, time.Hour)
		if n%64 == 0 {
			time.Sleep(spaceReading) // let the next write read the volume afresh
		}
	}
	if !errors.Is(writeErr, store.ErrLowSpace) {
		t.Fatalf("after %d writes of 40 KiB into a 96 MiB volume: %v, want ErrLowSpace", n, writeErr)
	}
	if _, err := st.GetSession(ctx, "login", "s0"); err != nil {
		t.Errorf("reads on a nearly full volume: %v", err)
	}
	if err := os.Remove(filler); err != nil {
		t.Fatal(err)
	}
	time.Sleep(spaceReading)
	if err := st.PutSession(ctx, "login", "after", value, time.Hour); err != nil {
		t.Errorf("writes did not resume after freeing 32 MiB: %v", err)
	}
	t.Logf("refused after %d writes of 40 KiB", n)
}

const spaceReading = 120 * time.Millisecond
