// Package wardenbin gives the tests that run warden as a process of its
// own (test/e2e, test/console, test/crash, test/replicas) the binary and
// an environment a developer's settings cannot change.
package wardenbin

import (
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
)

// Path returns WARDEN_BIN, or builds cmd/warden for this test, with the
// race detector when race is set (a test binary built with -race asks for
// it, so the child is checked as the test is).
func Path(t testing.TB, race bool) string {
	t.Helper()
	if p := os.Getenv("WARDEN_BIN"); p != "" {
		abs, err := filepath.Abs(p)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := os.Stat(abs); err != nil {
			t.Fatalf("WARDEN_BIN: %v (run make build)", err)
		}
		return abs
	}
	bin := filepath.Join(t.TempDir(), "warden")
	args := []string{"build", "-o", bin}
	if race {
		args = append(args, "-race")
	}
	cmd := exec.Command("go", append(args, "./cmd/warden")...)
	_, here, _, _ := runtime.Caller(0)
	cmd.Dir = filepath.Join(filepath.Dir(here), "..", "..")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go build ./cmd/warden: %v\n%s", err, out)
	}
	return bin
}

// CleanEnv is the environment without WARDEN_* variables.
func CleanEnv() []string {
	var env []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "WARDEN_") {
			env = append(env, kv)
		}
	}
	return env
}
