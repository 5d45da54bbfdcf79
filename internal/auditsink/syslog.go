package auditsink

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/json"
	"fmt"
	"net"
	"os"
	"strconv"
	"time"
)

// Syslog sends each event as one RFC 5424 message over TCP, framed by
// octet counting (RFC 6587 3.4.1: "LEN SP MSG"), optionally in TLS
// (RFC 5425 uses the same framing). The connection is made on first use
// and again after a failure.
type Syslog struct {
	Address string
	// TLS, when set, wraps the connection (RFC 5425).
	TLS *tls.Config
	// AppName is APP-NAME (default "warden"); Facility the syslog
	// facility (default 13, log audit).
	AppName  string
	Facility int
	Hostname string
	// Attempts per event before it is given up (default 3).
	Attempts int

	conn net.Conn
	pid  string
}

func (s *Syslog) init() {
	if s.AppName == "" {
		s.AppName = "warden"
	}
	if s.Facility == 0 {
		s.Facility = 13
	}
	if s.Hostname == "" {
		s.Hostname, _ = os.Hostname()
		if s.Hostname == "" {
			s.Hostname = "-"
		}
	}
	if s.Attempts <= 0 {
		s.Attempts = 3
	}
	if s.pid == "" {
		s.pid = strconv.Itoa(os.Getpid())
	}
}

// header is what the message header needs from an event.
type header struct {
	Seq      uint64    `json:"seq"`
	Time     time.Time `json:"time"`
	Type     string    `json:"type"`
	Decision string    `json:"decision"`
}

// Message renders one RFC 5424 message (without framing) for an event
// line: PRI from the facility and the event (a denial is notice, an
// audit_gap a warning, the rest informational), the event's time, MSGID
// its type, the event's seq as the registered meta sequenceId, and
// payload (the event as the sink's format renders it) as MSG.
func (s *Syslog) Message(event, payload []byte) []byte {
	s.init()
	var h header
	_ = json.Unmarshal(event, &h)
	sev := 6
	switch {
	case h.Type == "audit_gap":
		sev = 4
	case h.Decision == "deny":
		sev = 5
	}
	ts := "-"
	if !h.Time.IsZero() {
		ts = h.Time.UTC().Format("2006-01-02T15:04:05.000000Z07:00")
	}
	msgid := printable(h.Type, 32)
	if msgid == "" {
		msgid = "-"
	}
	sd := "-"
	if h.Seq > 0 && h.Seq <= 2147483647 {
		sd = `[meta sequenceId="` + strconv.FormatUint(h.Seq, 10) + `"]`
	}
	var b bytes.Buffer
	fmt.Fprintf(&b, "<%d>1 %s %s %s %s %s %s ", s.Facility*8+sev, ts, printable(s.Hostname, 255), printable(s.AppName, 48), s.pid, msgid, sd)
	b.Write(payload)
	return b.Bytes()
}

// printable keeps the PRINTUSASCII characters of v (no spaces), at most
// max of them, as RFC 5424 header fields require.
func printable(v string, max int) string {
	out := make([]byte, 0, len(v))
	for i := 0; i < len(v) && len(out) < max; i++ {
		if c := v[i]; c >= 33 && c <= 126 {
			out = append(out, c)
		}
	}
	return string(out)
}

// WriteEvent sends one framed message, reconnecting and retrying up to
// Attempts times.
func (s *Syslog) WriteEvent(event, payload []byte) error {
	msg := s.Message(event, payload)
	frame := append([]byte(strconv.Itoa(len(msg))+" "), msg...)
	var err error
	backoff := 200 * time.Millisecond
	for i := 0; i < s.Attempts; i++ {
		if i > 0 {
			time.Sleep(backoff)
			backoff *= 4
		}
		if s.conn == nil {
			if s.conn, err = s.dial(); err != nil {
				continue
			}
		}
		_ = s.conn.SetWriteDeadline(time.Now().Add(10 * time.Second))
		if _, err = s.conn.Write(frame); err == nil {
			return nil
		}
		_ = s.conn.Close()
		s.conn = nil
	}
	return fmt.Errorf("syslog %s: %w", s.Address, err)
}

func (s *Syslog) dial() (net.Conn, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if s.TLS != nil {
		d := tls.Dialer{Config: s.TLS}
		return d.DialContext(ctx, "tcp", s.Address)
	}
	var d net.Dialer
	return d.DialContext(ctx, "tcp", s.Address)
}

// Close closes the connection.
func (s *Syslog) Close() error {
	if s.conn == nil {
		return nil
	}
	err := s.conn.Close()
	s.conn = nil
	return err
}
