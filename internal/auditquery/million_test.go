package auditquery

import (
	"context"
	"runtime"
	"sync/atomic"
	"testing"
	"time"
)

type countingWriter struct{ n atomic.Int64 }

func (c *countingWriter) Write(p []byte) (int, error) { c.n.Add(int64(len(p))); return len(p), nil }

// A million-event trail exports in constant memory: the heap in use while
// exporting stays within a bound far below the size of the export
// (contract 6 of round 2: stream, never load the whole trail).
func TestExportOfAMillionEventsInConstantMemory(t *testing.T) {
	const n = 1_000_000
	start := time.Now()
	st := badger(t, n)
	t.Logf("generated a trail of %d events in %s", n, time.Since(start).Round(time.Millisecond))

	formats := []Format{CSV, NDJSON}
	if raceEnabled {
		formats = formats[:1]
	}
	for _, f := range formats {
		runtime.GC()
		var base runtime.MemStats
		runtime.ReadMemStats(&base)
		var peak atomic.Uint64
		stop := make(chan struct{})
		sampled := make(chan struct{})
		go func() {
			defer close(sampled)
			var ms runtime.MemStats
			for {
				runtime.ReadMemStats(&ms)
				if ms.HeapInuse > peak.Load() {
					peak.Store(ms.HeapInuse)
				}
				select {
				case <-stop:
					return
				case <-time.After(5 * time.Millisecond):
				}
			}
		}()
		w := &countingWriter{}
		start := time.Now()
		cnt, err := Export(context.Background(), st, Query{Since: t0}, f, w)
		close(stop)
		<-sampled
		if err != nil || cnt != n {
			t.Fatalf("%s: exported %d events: %v", f, cnt, err)
		}
		grew := int64(peak.Load()) - int64(base.HeapInuse)
		t.Logf("%s: %d events, %d MiB written in %s; heap in use %d MiB before, peak %d MiB (+%d MiB)",
			f, cnt, w.n.Load()>>20, time.Since(start).Round(time.Millisecond), base.HeapInuse>>20, peak.Load()>>20, grew>>20)
		// The export is over 100 MiB; a copy of it in memory would be
		// far above this bound.
		if w.n.Load() < 100<<20 {
			t.Fatalf("%s export is only %d bytes: the bound below would prove nothing", f, w.n.Load())
		}
		if grew > 40<<20 {
			t.Errorf("%s export grew the heap by %d MiB: it holds more than a chunk", f, grew>>20)
		}
	}
}
