package policy

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/fsnotify/fsnotify"
)

// Watch reloads the policy directory when files in it change, until ctx
// ends (then it returns nil). Bursts of events (an editor's save, a
// ConfigMap's symlink swap, a git checkout) are coalesced: the reload runs
// once the directory has been quiet for Options.Debounce. Subdirectories
// are watched too, including ones created later. A failed reload keeps
// the last good policy (see Reload). With the embedded default policy there
// is nothing to watch and Watch just waits for ctx.
//
// Kubernetes ConfigMap volumes work: their update renames the hidden
// ..data link inside the watched directory, which is an event here.
func (e *Engine) Watch(ctx context.Context) error {
	if e.src.fsys != nil {
		<-ctx.Done()
		return nil
	}
	w, err := fsnotify.NewWatcher()
	if err != nil {
		return fmt.Errorf("policy: watch %s: %w", e.src.dir, err)
	}
	defer w.Close()
	if err := addTree(w, e.src.dir); err != nil {
		return fmt.Errorf("policy: watch %s: %w", e.src.dir, err)
	}
	e.log.Info("watching policy directory", "dir", e.src.dir, "debounce", e.debounce)

	// Files may have changed between New and now.
	_ = e.Reload() // a failure is logged, counted and kept in Status

	quiet := time.NewTimer(e.debounce)
	quiet.Stop()
	defer quiet.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case ev, ok := <-w.Events:
			if !ok {
				return errors.New("policy: watch: event channel closed")
			}
			if ev.Op == fsnotify.Chmod {
				continue // touch, backup tools, indexers: never a content change alone
			}
			if ev.Has(fsnotify.Create) && !hidden(ev.Name) {
				if fi, err := os.Stat(ev.Name); err == nil && fi.IsDir() {
					if err := addTree(w, ev.Name); err != nil {
						e.log.Warn("cannot watch new policy subdirectory", "dir", ev.Name, "error", err)
					}
				}
			}
			quiet.Reset(e.debounce)
		case err, ok := <-w.Errors:
			if !ok {
				return errors.New("policy: watch: error channel closed")
			}
			// An overflow loses events: reload to be sure nothing is missed.
			e.log.Warn("policy watch error; reloading", "dir", e.src.dir, "error", err)
			quiet.Reset(e.debounce)
		case <-quiet.C:
			_ = e.Reload()
		}
	}
}

// addTree watches dir and its subdirectories, skipping hidden ones (their
// files are not loaded; a ConfigMap's swap shows up on dir itself).
func addTree(w *fsnotify.Watcher, dir string) error {
	// The directory itself may be a symlink (a mounted volume): WalkDir
	// would not descend into it, so walk its target.
	root, err := filepath.EvalSymlinks(dir)
	if err != nil {
		return err
	}
	return filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if !d.IsDir() {
			return nil
		}
		if path != root && hidden(path) {
			return filepath.SkipDir
		}
		return w.Add(path)
	})
}

func hidden(path string) bool { return strings.HasPrefix(filepath.Base(path), ".") }
