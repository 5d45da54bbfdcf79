// Package auditsink mirrors audit events, as the trail committed them, to
// places other than the store: a file with size-based rotation, and a SIEM
// over RFC 5424 syslog on TCP (RFC 6587 octet counting), optionally TLS.
// Events are the trail's JSON lines (docs/audit.md) or their OCSF 1.x API
// Activity mapping (ocsf.go).
//
// The store is the record; sinks are copies. Each sink has its own bounded
// queue and goroutine, so a slow or unreachable SIEM never slows a Check
// or the trail's commits: when its queue is full, events are dropped for
// that sink only and counted (warden_audit_sink_dropped_total).
package auditsink

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"sync"

	"github.com/prometheus/client_golang/prometheus"
)

// Format is how a sink renders an event.
type Format string

const (
	// JSON is the trail's own encoding: the stored event, one object.
	JSON Format = "json"
	// OCSF is the OCSF 1.x API Activity (class_uid 6003) mapping.
	OCSF Format = "ocsf"
)

// Writer takes one event at a time: the stored JSON event and its
// rendering in the sink's format (the same bytes for JSON), without a
// trailing newline.
type Writer interface {
	WriteEvent(event, payload []byte) error
	Close() error
}

// Sink is one destination with its own queue.
type Sink struct {
	Name   string
	Format Format
	W      Writer
}

// Options configure a Fanout.
type Options struct {
	// QueueSize bounds the events waiting per sink (default 10,000).
	QueueSize  int
	Logger     *slog.Logger
	Registerer prometheus.Registerer
}

// Fanout is the io.Writer the trail mirrors its batches to (one JSON line
// per event, as stored) and hands each line to every sink.
type Fanout struct {
	sinks []*queued
	log   *slog.Logger
}

type queued struct {
	Sink
	q       chan []byte
	done    chan struct{}
	dropped prometheus.Counter
	errors  prometheus.Counter
	sent    prometheus.Counter
}

// New starts one goroutine per sink.
func New(sinks []Sink, o Options) (*Fanout, error) {
	if o.QueueSize <= 0 {
		o.QueueSize = 10_000
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	dropped := prometheus.NewCounterVec(prometheus.CounterOpts{Name: "warden_audit_sink_dropped_total", Help: "Audit events a sink dropped because its queue was full (the store still has them)."}, []string{"sink"})
	errs := prometheus.NewCounterVec(prometheus.CounterOpts{Name: "warden_audit_sink_errors_total", Help: "Audit events a sink failed to write after its retries."}, []string{"sink"})
	sent := prometheus.NewCounterVec(prometheus.CounterOpts{Name: "warden_audit_sink_events_total", Help: "Audit events written to a sink."}, []string{"sink"})
	if o.Registerer != nil {
		for _, c := range []prometheus.Collector{dropped, errs, sent} {
			if err := o.Registerer.Register(c); err != nil {
				return nil, fmt.Errorf("audit sinks: %w", err)
			}
		}
	}
	f := &Fanout{log: o.Logger}
	for _, s := range sinks {
		switch s.Format {
		case "":
			s.Format = JSON
		case JSON, OCSF:
		default:
			return nil, fmt.Errorf("audit sink %s: format must be json or ocsf, got %q", s.Name, s.Format)
		}
		q := &queued{Sink: s, q: make(chan []byte, o.QueueSize), done: make(chan struct{}),
			dropped: dropped.WithLabelValues(s.Name), errors: errs.WithLabelValues(s.Name), sent: sent.WithLabelValues(s.Name)}
		f.sinks = append(f.sinks, q)
		go q.run(o.Logger)
	}
	return f, nil
}

// Write takes a batch of JSON lines from the trail. It never blocks.
func (f *Fanout) Write(batch []byte) (int, error) {
	for line := range bytes.SplitSeq(bytes.TrimSuffix(batch, []byte("\n")), []byte("\n")) {
		if len(line) == 0 {
			continue
		}
		// The trail reuses nothing it handed over, but each sink keeps
		// the line past this call: one copy shared by all.
		own := bytes.Clone(line)
		for _, s := range f.sinks {
			select {
			case s.q <- own:
			default:
				s.dropped.Inc()
			}
		}
	}
	return len(batch), nil
}

// Close writes what is queued (until ctx ends) and closes every sink.
func (f *Fanout) Close(ctx context.Context) error {
	var wg sync.WaitGroup
	for _, s := range f.sinks {
		close(s.q)
		wg.Add(1)
		go func() {
			defer wg.Done()
			select {
			case <-s.done:
			case <-ctx.Done():
			}
			_ = s.W.Close()
		}()
	}
	wg.Wait()
	return ctx.Err()
}

func (s *queued) run(log *slog.Logger) {
	defer close(s.done)
	for line := range s.q {
		out := line
		if s.Format == OCSF {
			var err error
			if out, err = ToOCSF(line); err != nil {
				log.Error("audit sink: event not mapped to OCSF", "sink", s.Name, "err", err)
				s.errors.Inc()
				continue
			}
		}
		if err := s.W.WriteEvent(line, out); err != nil {
			// Writers retry and reconnect themselves; an error here is
			// one they gave up on for this event.
			log.Error("audit sink write failed; event not mirrored", "sink", s.Name, "err", err)
			s.errors.Inc()
			continue
		}
		s.sent.Inc()
	}
}
