package store

import (
	"fmt"
	"os"
)

// SyncAudit makes every appended audit event durable on disk: one
// fdatasync of the segment being written covers the whole batch before
// it, which is what makes audit.durability: sync a group commit. The
// segments before it were synced when they were closed (rotate).
func (b *Badger) SyncAudit() error {
	if err := b.usable(); err != nil {
		return fmt.Errorf("sync audit: %w", err)
	}
	if err := b.audit.sync(); err != nil {
		// Like a failed write: what was appended may not be on disk.
		b.fail(err)
		return fmt.Errorf("sync audit: %w", b.Err())
	}
	return nil
}

func (l *auditLog) sync() error {
	// Under the lock, so a rotation cannot close the file meanwhile; the
	// trail's one writer appends and syncs in turn, so nothing waits on
	// it but readers opening a listing.
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.cur == nil {
		return nil
	}
	if err := fdatasync(l.cur); err != nil {
		return fmt.Errorf("audit log: sync: %w", err)
	}
	return nil
}

// syncDir makes a created or removed segment file's directory entry
// durable.
func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}
