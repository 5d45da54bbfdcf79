package config

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"time"

	"github.com/fsnotify/fsnotify"
)

// Watch calls apply with the newly loaded configuration each time the file
// at path changes, until ctx ends. It watches the file's directory, so
// editors that save by rename and Kubernetes ConfigMap symlink swaps are
// seen; bursts of events are coalesced by debounce. A file that no longer
// loads or validates is reported through onError and nothing is applied:
// the running configuration stays.
func Watch(ctx context.Context, path string, debounce time.Duration, log *slog.Logger, apply func(Config), onError func(error)) error {
	if debounce <= 0 {
		debounce = 250 * time.Millisecond
	}
	w, err := fsnotify.NewWatcher()
	if err != nil {
		return fmt.Errorf("watch config: %w", err)
	}
	defer w.Close()
	if err := w.Add(filepath.Dir(path)); err != nil {
		return fmt.Errorf("watch config %s: %w", path, err)
	}
	last, _ := os.ReadFile(path)
	quiet := time.NewTimer(debounce)
	quiet.Stop()
	defer quiet.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case _, ok := <-w.Events:
			if !ok {
				return fmt.Errorf("watch config: event channel closed")
			}
			quiet.Reset(debounce)
		case err, ok := <-w.Errors:
			if !ok {
				return fmt.Errorf("watch config: error channel closed")
			}
			log.Warn("config watch error; re-reading", "err", err)
			quiet.Reset(debounce)
		case <-quiet.C:
			raw, err := os.ReadFile(path)
			if err != nil {
				onError(fmt.Errorf("read config: %w", err))
				continue
			}
			if bytes.Equal(raw, last) {
				continue // another file in the directory changed
			}
			cfg, err := Load(path)
			if err != nil {
				onError(err)
				continue
			}
			last = raw
			apply(cfg)
		}
	}
}
