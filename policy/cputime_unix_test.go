//go:build unix

package policy

import (
	"syscall"
	"time"
)

// processCPU is the CPU time this process has used (user + system, all
// threads, GC included). On a shared machine it measures the work done,
// where wall time also counts the time other processes held the CPU.
func processCPU() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
