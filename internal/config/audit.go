package config

import (
	"fmt"
	"time"
)

func (a Audit) validate() []error {
	var errs []error
	bad := func(field, f string, args ...any) {
		errs = append(errs, fmt.Errorf("audit.%s: %s", field, fmt.Sprintf(f, args...)))
	}
	switch a.Durability {
	case "sync", "async":
	default:
		bad("durability", "must be sync or async, got %q", a.Durability)
	}
	if a.QueueSize <= 0 {
		bad("queue_size", "must be positive, got %d", a.QueueSize)
	}
	switch a.OnFull {
	case "wait", "drop":
	default:
		bad("on_full", "must be wait or drop, got %q", a.OnFull)
	}
	if a.Retention < 0 || (a.Retention > 0 && a.Retention.D() < time.Hour) {
		bad("retention", "must be 0 (keep everything) or at least 1h, got %s", a.Retention.D())
	}
	return errs
}
