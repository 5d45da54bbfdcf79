package config

import (
	"fmt"
	"net"
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
	names := map[string]bool{}
	for i, k := range a.Sinks {
		f := fmt.Sprintf("sinks[%d]", i)
		if names[k.SinkName(i)] {
			bad(f+".name", "duplicate %q", k.SinkName(i))
		}
		names[k.SinkName(i)] = true
		switch k.Format {
		case "", "json", "ocsf":
		default:
			bad(f+".format", "must be json or ocsf, got %q", k.Format)
		}
		switch k.Type {
		case "file":
			if k.Path == "" {
				bad(f+".path", "must be set for a file sink")
			}
			if n, err := ParseBytes(k.MaxSize); err != nil {
				bad(f+".max_size", "%v", err)
			} else if n <= 0 && k.MaxSize != "" {
				bad(f+".max_size", "must be positive")
			}
			if k.Keep != nil && *k.Keep < 0 {
				bad(f+".keep", "must not be negative")
			}
		case "syslog":
			if _, _, err := net.SplitHostPort(k.Address); err != nil {
				bad(f+".address", "must be host:port: %v", err)
			}
			if k.Facility < 0 || k.Facility > 23 {
				bad(f+".facility", "must be 0 to 23, got %d", k.Facility)
			}
			if k.TLS != nil && (k.TLS.CertFile == "") != (k.TLS.KeyFile == "") {
				bad(f+".tls", "cert_file and key_file go together")
			}
		default:
			bad(f+".type", "must be file or syslog, got %q", k.Type)
		}
		if k.QueueSize < 0 {
			bad(f+".queue_size", "must not be negative")
		}
	}
	return errs
}

// AuditSink is one place audit events are mirrored to, besides the store.
type AuditSink struct {
	// Type is file or syslog.
	Type string `json:"type"`
	// Name labels the sink's metrics; default the type and its index.
	Name string `json:"name,omitempty"`
	// Format is json (the stored event) or ocsf (OCSF 1.x API Activity).
	Format string `json:"format,omitempty"`
	// Path, MaxSize (default 100MiB) and Keep (rotated files kept,
	// default 5): the file sink.
	Path    string `json:"path,omitempty"`
	MaxSize string `json:"max_size,omitempty"`
	Keep    *int   `json:"keep,omitempty"`
	// Address (host:port), TLS, AppName (default warden) and Facility
	// (default 13, log audit): RFC 5424 syslog over TCP.
	Address  string        `json:"address,omitempty"`
	TLS      *AuditSinkTLS `json:"tls,omitempty"`
	AppName  string        `json:"app_name,omitempty"`
	Facility int           `json:"facility,omitempty"`
	// QueueSize bounds events waiting for this sink (default 10000);
	// past it events are dropped for this sink only, and counted.
	QueueSize int `json:"queue_size,omitempty"`
}

// AuditSinkTLS is the TLS client setup of a syslog sink.
type AuditSinkTLS struct {
	// CAFile verifies the SIEM's certificate (default: system roots).
	CAFile string `json:"ca_file,omitempty"`
	// CertFile and KeyFile, when set, are Warden's client certificate.
	CertFile string `json:"cert_file,omitempty"`
	KeyFile  string `json:"key_file,omitempty"`
	// ServerName overrides the name checked in the SIEM's certificate.
	ServerName string `json:"server_name,omitempty"`
}

// SinkName is the sink's name, or its type and index.
func (k AuditSink) SinkName(i int) string {
	if k.Name != "" {
		return k.Name
	}
	return fmt.Sprintf("%s-%d", k.Type, i)
}

// Tracing configures OpenTelemetry tracing of Check and the OAuth
// endpoints; off unless OTLPEndpoint is set.
type Tracing struct {
	// OTLPEndpoint is the OTLP/gRPC collector, host:port.
	OTLPEndpoint string `json:"otlp_endpoint"`
	// Insecure sends to the collector without TLS.
	Insecure bool `json:"insecure"`
	// SampleRatio is the share of new traces kept (default 1); a
	// caller's sampling decision is followed.
	SampleRatio float64 `json:"sample_ratio"`
}

func (t Tracing) validate() []error {
	var errs []error
	if t.OTLPEndpoint != "" {
		if _, _, err := net.SplitHostPort(t.OTLPEndpoint); err != nil {
			errs = append(errs, fmt.Errorf("tracing.otlp_endpoint: must be host:port: %v", err))
		}
	}
	if t.SampleRatio < 0 || t.SampleRatio > 1 {
		errs = append(errs, fmt.Errorf("tracing.sample_ratio: must be between 0 and 1, got %v", t.SampleRatio))
	}
	return errs
}
