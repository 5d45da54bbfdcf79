package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"io"
	"log/slog"
	"os"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/warden-mcp/warden/internal/audit"
	"github.com/warden-mcp/warden/internal/auditsink"
	"github.com/warden-mcp/warden/internal/config"
)

// auditOptions maps the audit section of the configuration to the trail's
// options.
func auditOptions(c config.Audit, sink io.Writer, log *slog.Logger, reg prometheus.Registerer, onWriteError func(error)) audit.Options {
	return audit.Options{
		Sink: sink, Logger: log, OnWriteError: onWriteError, Registerer: reg,
		Durability: audit.Durability(c.Durability), OnFull: audit.OnFull(c.OnFull), QueueSize: c.QueueSize,
		Fsync: c.Fsync,
	}
}

// auditSinks opens audit.sinks and returns the writer the trail mirrors to
// (the audit.sink stream and the sinks) and the function that drains and
// closes them.
func auditSinks(c config.Audit, stream io.Writer, log *slog.Logger, reg prometheus.Registerer) (io.Writer, func(context.Context) error, error) {
	if len(c.Sinks) == 0 {
		return stream, func(context.Context) error { return nil }, nil
	}
	var sinks []auditsink.Sink
	queue := 0
	closeAll := func() {
		for _, s := range sinks {
			_ = s.W.Close()
		}
	}
	for i, k := range c.Sinks {
		s := auditsink.Sink{Name: k.SinkName(i), Format: auditsink.Format(k.Format)}
		switch k.Type {
		case "file":
			max, _ := config.ParseBytes(k.MaxSize)
			if max <= 0 {
				max = 100 << 20
			}
			keep := 5
			if k.Keep != nil {
				keep = *k.Keep
			}
			f, err := auditsink.OpenFile(k.Path, max, keep)
			if err != nil {
				closeAll()
				return nil, nil, err
			}
			s.W = f
		case "syslog":
			w := &auditsink.Syslog{Address: k.Address, AppName: k.AppName, Facility: k.Facility}
			if k.TLS != nil {
				tc, err := sinkTLS(*k.TLS)
				if err != nil {
					closeAll()
					return nil, nil, fmt.Errorf("audit.sinks[%d].tls: %w", i, err)
				}
				w.TLS = tc
			}
			s.W = w
		}
		queue = max(queue, k.QueueSize)
		sinks = append(sinks, s)
	}
	fan, err := auditsink.New(sinks, auditsink.Options{QueueSize: queue, Logger: log, Registerer: reg})
	if err != nil {
		closeAll()
		return nil, nil, err
	}
	if stream == nil {
		return fan, fan.Close, nil
	}
	return io.MultiWriter(fan, stream), fan.Close, nil
}

func sinkTLS(c config.AuditSinkTLS) (*tls.Config, error) {
	tc := &tls.Config{MinVersion: tls.VersionTLS12, ServerName: c.ServerName}
	if c.CAFile != "" {
		raw, err := os.ReadFile(c.CAFile)
		if err != nil {
			return nil, err
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(raw) {
			return nil, fmt.Errorf("%s holds no PEM certificate", c.CAFile)
		}
		tc.RootCAs = pool
	}
	if c.CertFile != "" {
		pair, err := tls.LoadX509KeyPair(c.CertFile, c.KeyFile)
		if err != nil {
			return nil, err
		}
		tc.Certificates = []tls.Certificate{pair}
	}
	return tc, nil
}
