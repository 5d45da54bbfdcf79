package config

import (
	"context"
	"log/slog"
	"os"
	"path/filepath"
	"testing"
	"time"
)

func TestWatchAppliesValidChangesOnly(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "warden.yaml")
	write := func(body string) {
		// Save by rename, as editors and ConfigMaps do.
		tmp := path + ".tmp"
		if err := os.WriteFile(tmp, []byte(body), 0o600); err != nil {
			t.Fatal(err)
		}
		if err := os.Rename(tmp, path); err != nil {
			t.Fatal(err)
		}
	}
	write("servers: [{name: bi, url: http://bi/mcp}]\n")
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	applied := make(chan Config, 4)
	failed := make(chan error, 4)
	go func() {
		_ = Watch(ctx, path, 20*time.Millisecond, slog.New(slog.DiscardHandler), func(c Config) { applied <- c }, func(err error) { failed <- err })
	}()
	time.Sleep(100 * time.Millisecond) // let the watcher start

	write("servers: [{name: bi, url: http://bi/mcp}, {name: hr, url: http://hr/mcp}]\n")
	select {
	case c := <-applied:
		if len(c.Servers) != 2 || c.Servers[1].Name != "hr" {
			t.Fatalf("applied %+v", c.Servers)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("change not applied")
	}

	write("servers: [{name: BAD, url: nope}]\n")
	select {
	case err := <-failed:
		if err == nil {
			t.Fatal("nil error")
		}
	case c := <-applied:
		t.Fatalf("invalid file applied: %+v", c.Servers)
	case <-time.After(10 * time.Second):
		t.Fatal("invalid file not reported")
	}
}
