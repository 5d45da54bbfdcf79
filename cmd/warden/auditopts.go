package main

import (
	"io"
	"log/slog"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/warden-mcp/warden/internal/audit"
	"github.com/warden-mcp/warden/internal/config"
)

// auditOptions maps the audit section of the configuration to the trail's
// options.
func auditOptions(c config.Audit, sink io.Writer, log *slog.Logger, reg prometheus.Registerer, onWriteError func(error)) audit.Options {
	return audit.Options{
		Sink: sink, Logger: log, OnWriteError: onWriteError, Registerer: reg,
		Durability: audit.Durability(c.Durability), OnFull: audit.OnFull(c.OnFull), QueueSize: c.QueueSize,
	}
}
