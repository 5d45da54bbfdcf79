package policy

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// waitFor polls cond until it holds or a generous deadline passes; it
// asserts nothing about how fast the change arrives.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func startWatch(t *testing.T, e testEngine) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- e.Watch(ctx) }()
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("Watch returned %v", err)
			}
		case <-time.After(10 * time.Second):
			t.Error("Watch did not return after its context ended")
		}
	})
	// Let the watcher register before files change: it logs once ready.
	waitFor(t, "watcher start", func() bool {
		return strings.Contains(e.logs.String(), "watching policy directory")
	})
}

func reasonIs(t *testing.T, e testEngine, want string) func() bool {
	return func() bool {
		d, err := e.Decide(context.Background(), toolCall())
		return err == nil && d.Reason == want
	}
}

func policyFile(reason string) string {
	return "package warden.authz\n\ndecision := {\"allow\": true, \"reason\": \"" + reason + "\"}\n"
}

func TestWatchPicksUpChanges(t *testing.T) {
	dir := t.TempDir()
	writeFiles(t, dir, map[string]string{"authz.rego": policyFile("v1")})
	e := newTestEngine(t, dir)
	startWatch(t, e)

	// An edit in place.
	writeFiles(t, dir, map[string]string{"authz.rego": policyFile("v2")})
	waitFor(t, "edit", reasonIs(t, e, "v2"))

	// An editor's save: write a temporary file, rename it over the original.
	tmp := filepath.Join(dir, ".authz.rego.tmp")
	if err := os.WriteFile(tmp, []byte(policyFile("v3")), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, filepath.Join(dir, "authz.rego")); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "rename", reasonIs(t, e, "v3"))

	// A broken save keeps v3 and shows the error; fixing it recovers.
	writeFiles(t, dir, map[string]string{"authz.rego": "package warden.authz\n\ndecision := {"})
	waitFor(t, "error in status", func() bool { return e.Status().LastError != "" })
	if ok := reasonIs(t, e, "v3")(); !ok {
		t.Fatal("broken policy replaced the last good one")
	}
	writeFiles(t, dir, map[string]string{"authz.rego": policyFile("v4")})
	waitFor(t, "fix", reasonIs(t, e, "v4"))
	if st := e.Status(); st.LastError != "" {
		t.Fatalf("error not cleared: %+v", st)
	}

	// A new subdirectory with data, then a change inside it.
	writeFiles(t, dir, map[string]string{
		"authz.rego":      "package warden.authz\n\ndecision := {\"allow\": true, \"reason\": data.sub.reason}\n",
		"sub/data.json":   `{"reason": "from data"}`,
		"sub/deeper/x.md": "ignored",
	})
	waitFor(t, "new subdirectory", reasonIs(t, e, "from data"))
	writeFiles(t, dir, map[string]string{"sub/data.json": `{"reason": "data changed"}`})
	waitFor(t, "change in subdirectory", reasonIs(t, e, "data changed"))

	// A removed file.
	if err := os.Remove(filepath.Join(dir, "sub", "data.json")); err != nil {
		t.Fatal(err)
	}
	// data.sub.reason is undefined now, and so is the decision.
	waitFor(t, "removal", reasonIs(t, e, "no decision"))
}

// A Kubernetes ConfigMap volume: files are symlinks through ..data, and an
// update swaps ..data to a new hidden directory in one rename.
func TestWatchConfigMapSwap(t *testing.T) {
	dir := t.TempDir()
	writeFiles(t, dir, map[string]string{"..2025_06_01_v1/authz.rego": policyFile("v1")})
	mustSymlink(t, "..2025_06_01_v1", filepath.Join(dir, "..data"))
	mustSymlink(t, "..data/authz.rego", filepath.Join(dir, "authz.rego"))

	e := newTestEngine(t, dir)
	if ok := reasonIs(t, e, "v1")(); !ok {
		t.Fatal("initial ConfigMap policy not loaded (or loaded twice)")
	}
	startWatch(t, e)

	writeFiles(t, dir, map[string]string{"..2025_06_02_v2/authz.rego": policyFile("v2")})
	mustSymlink(t, "..2025_06_02_v2", filepath.Join(dir, "..data_tmp"))
	if err := os.Rename(filepath.Join(dir, "..data_tmp"), filepath.Join(dir, "..data")); err != nil {
		t.Fatal(err)
	}
	if err := os.RemoveAll(filepath.Join(dir, "..2025_06_01_v1")); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "ConfigMap swap", reasonIs(t, e, "v2"))
}

func mustSymlink(t *testing.T, target, link string) {
	t.Helper()
	if err := os.Symlink(target, link); err != nil {
		t.Fatal(err)
	}
}

func TestWatchDefaultPolicyWaitsForContext(t *testing.T) {
	e := newTestEngine(t, "")
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- e.Watch(ctx) }()
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Watch did not return")
	}
}
