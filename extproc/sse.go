package extproc

import (
	"bytes"
	"context"
)

// nextEvent splits the first complete server-sent event off buf: the
// bytes up to and including the blank line that ends it (HTML Living
// Standard, "Server-sent events", 9.2.5: lines end with CRLF, LF or CR).
func nextEvent(buf []byte) (ev, rest []byte, ok bool) {
	for i := 0; i < len(buf); i++ {
		var n int // length of the line end at i
		switch buf[i] {
		case '\n':
			n = 1
		case '\r':
			n = 1
			if i+1 < len(buf) && buf[i+1] == '\n' {
				n = 2
			} else if i+1 == len(buf) {
				return nil, buf, false // a CR at the end may start a CRLF
			}
		default:
			continue
		}
		j := i + n
		// A line end directly after another (or at the start) is the blank
		// line ending the event.
		if j < len(buf) && (buf[j] == '\n' || buf[j] == '\r') {
			k := j + 1
			if buf[j] == '\r' {
				if k == len(buf) {
					return nil, buf, false
				}
				if buf[k] == '\n' {
					k++
				}
			}
			return buf[:k], buf[k:], true
		}
		i = j - 1
	}
	return nil, buf, false
}

// rewriteEvent filters one event: its data lines joined (SSE: with LF)
// are one JSON-RPC message; a changed message is written back as one data
// line, the event's other fields (id, event, retry, comments) kept.
func (s *Service) rewriteEvent(ctx context.Context, ex *exchange, ev []byte) []byte {
	lines := splitLines(ev)
	var data [][]byte
	var other [][]byte
	for _, l := range lines {
		switch {
		case bytes.HasPrefix(l, []byte("data:")):
			d := l[len("data:"):]
			d = bytes.TrimPrefix(d, []byte(" "))
			data = append(data, d)
		case len(l) == 0:
		default:
			other = append(other, l)
		}
	}
	msg := bytes.Join(data, []byte("\n"))
	if len(bytes.TrimSpace(msg)) == 0 {
		// No message: an event without data, or with empty data such as
		// the priming event a server sends first so that the client can
		// resume (MCP streamable HTTP, "id" and empty "data"), which an SSE
		// client does not even dispatch (9.2.6: an empty data buffer).
		// Nothing of a list can be in it.
		return ev
	}
	out, changed := s.rewriteMessage(ctx, ex, msg)
	if !changed {
		return ev
	}
	var b bytes.Buffer
	for _, l := range other {
		b.Write(l)
		b.WriteByte('\n')
	}
	b.WriteString("data: ")
	b.Write(out)
	b.WriteString("\n\n")
	return b.Bytes()
}

func splitLines(ev []byte) [][]byte {
	var out [][]byte
	start := 0
	for i := 0; i < len(ev); i++ {
		switch ev[i] {
		case '\n':
			out = append(out, ev[start:i])
			start = i + 1
		case '\r':
			out = append(out, ev[start:i])
			if i+1 < len(ev) && ev[i+1] == '\n' {
				i++
			}
			start = i + 1
		}
	}
	if start < len(ev) {
		out = append(out, ev[start:])
	}
	return out
}
