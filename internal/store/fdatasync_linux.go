package store

import (
	"os"
	"syscall"
)

// fdatasync flushes f's data (and the size, not the times): what a
// recovered log needs.
func fdatasync(f *os.File) error { return syscall.Fdatasync(int(f.Fd())) }
