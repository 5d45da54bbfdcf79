// Package mcp classifies MCP streamable HTTP requests (MCP specification,
// basic/transports) for the authorization decision: what kind of message
// each JSON-RPC body holds, and the method, id, tool, arguments, resource
// and prompt that policy needs to see.
//
// The classifier never guesses. A body it cannot read exactly as the
// upstream server would read it is an error, and the caller denies.
package mcp

import (
	"bytes"
	"encoding/json"
	"fmt"
	"unicode/utf8"
)

// JSON-RPC 2.0 error codes used in denials.
const (
	CodeParseError     = -32700
	CodeInvalidRequest = -32600
)

// Kind is what one message (or body-less HTTP request) is.
type Kind string

const (
	KindRequest      Kind = "request"
	KindNotification Kind = "notification"
	KindResponse     Kind = "response"
	// KindStream is a GET opening a server-to-client SSE stream.
	KindStream Kind = "stream"
	// KindSessionEnd is a DELETE ending a session.
	KindSessionEnd Kind = "session_end"
)

// Message is one classified JSON-RPC message.
type Message struct {
	Kind   Kind
	Method string
	// ID is the raw JSON id (string or number), nil for notifications.
	ID        json.RawMessage
	Tool      string
	Arguments map[string]any
	// ArgumentsRaw is the JSON Arguments were decoded from.
	ArgumentsRaw json.RawMessage
	Resource     string
	Prompt       string
}

// Request is a classified HTTP request to an MCP endpoint.
type Request struct {
	HTTPMethod      string
	Messages        []Message
	Batch           bool
	SessionID       string
	ProtocolVersion string
}

// ErrorKind says what is wrong with a request, so that callers choose a
// response (an HTTP status) by kind rather than by message text.
type ErrorKind uint8

const (
	// ErrorMalformed: the body is not JSON (JSON-RPC parse error).
	ErrorMalformed ErrorKind = iota + 1
	// ErrorInvalid: JSON, but not a JSON-RPC message MCP accepts, or an
	// HTTP method the transport does not have.
	ErrorInvalid
	// ErrorTooLarge: the body is over the configured limit.
	ErrorTooLarge
	// ErrorTruncated: the proxy forwarded only part of the body.
	ErrorTruncated
)

func (k ErrorKind) String() string {
	switch k {
	case ErrorMalformed:
		return "malformed"
	case ErrorInvalid:
		return "invalid"
	case ErrorTooLarge:
		return "too_large"
	case ErrorTruncated:
		return "truncated"
	}
	return "unknown"
}

// Error is a classification failure, shaped as the JSON-RPC error the
// client will see.
type Error struct {
	Kind    ErrorKind
	Code    int
	Message string
	// ID is the id of the offending message when it could be read.
	ID json.RawMessage
}

func (e *Error) Error() string { return fmt.Sprintf("jsonrpc %d: %s", e.Code, e.Message) }

func parseErr(f string, a ...any) *Error {
	return &Error{Kind: ErrorMalformed, Code: CodeParseError, Message: fmt.Sprintf(f, a...)}
}

func invalid(id json.RawMessage, f string, a ...any) *Error {
	return &Error{Kind: ErrorInvalid, Code: CodeInvalidRequest, Message: fmt.Sprintf(f, a...), ID: id}
}

// Input is what the caller knows about the HTTP request.
type Input struct {
	Method string
	// Header returns a request header by lowercased name.
	Header func(name string) string
	Body   []byte
	// Partial is true when the proxy forwarded a truncated body.
	Partial bool
	// Limit is the largest body accepted, in bytes.
	Limit int
	// SkipArguments leaves Message.Arguments nil, for a caller whose
	// policy does not read them: ArgumentsRaw is still set and must still
	// be an object.
	SkipArguments bool
}

// Classify reads one HTTP request to an MCP endpoint.
func Classify(in Input) (*Request, *Error) {
	r := &Request{HTTPMethod: in.Method}
	if in.Header != nil {
		r.SessionID = in.Header("mcp-session-id")
		r.ProtocolVersion = in.Header("mcp-protocol-version")
	}
	switch in.Method {
	case "GET":
		r.Messages = []Message{{Kind: KindStream}}
		return r, nil
	case "DELETE":
		r.Messages = []Message{{Kind: KindSessionEnd}}
		return r, nil
	case "POST":
	default:
		return nil, invalid(nil, "HTTP method %s is not part of the MCP streamable HTTP transport", in.Method)
	}
	if in.Partial {
		return nil, &Error{Kind: ErrorTruncated, Code: CodeInvalidRequest, Message: "request body was truncated by the proxy (over its buffer limit); refusing to authorize a partial message"}
	}
	if in.Limit > 0 && len(in.Body) > in.Limit {
		return nil, &Error{Kind: ErrorTooLarge, Code: CodeInvalidRequest, Message: fmt.Sprintf("request body of %d bytes exceeds the %d byte limit", len(in.Body), in.Limit)}
	}
	body := bytes.TrimSpace(in.Body)
	if len(body) == 0 {
		return nil, parseErr("empty request body")
	}
	// Invalid UTF-8 would be decoded with replacement characters, so the
	// policy could see a different string than a stricter upstream.
	if !utf8.Valid(body) {
		return nil, parseErr("request body is not valid UTF-8")
	}
	if !json.Valid(body) {
		return nil, parseErr("request body is not valid JSON")
	}
	// From here the body is valid JSON: the walkers in scan.go split it
	// without decoding what policy does not need.
	if err := distinctNames(body); err != nil {
		return nil, err
	}
	switch body[0] {
	case '[':
		n := 0
		_ = eachElement(body, func([]byte) *Error { n++; return nil })
		if n == 0 {
			return nil, invalid(nil, "empty batch")
		}
		r.Batch = true
		r.Messages = make([]Message, 0, n)
		if err := eachElement(body, func(v []byte) *Error {
			m, err := classifyMessage(v, in.SkipArguments)
			if err != nil {
				return err
			}
			r.Messages = append(r.Messages, m)
			return nil
		}); err != nil {
			return nil, err
		}
	case '{':
		m, err := classifyMessage(body, in.SkipArguments)
		if err != nil {
			return nil, err
		}
		r.Messages = make([]Message, 1)
		r.Messages[0] = m
	default:
		return nil, invalid(nil, "a JSON-RPC message must be an object or a batch array")
	}
	return r, nil
}

// message holds the members of one JSON-RPC message the classifier reads,
// as raw JSON; nil when absent.
type message struct {
	jsonrpc, id, method, params, result, error []byte
}

// classifyMessage reads one message. Member names are matched exactly, and
// distinctNames has already refused duplicates and case variants, so every
// parser reads the same members the classifier reads.
func classifyMessage(v []byte, skipArgs bool) (Message, *Error) {
	var m Message
	if v[0] != '{' {
		return m, invalid(nil, "every message of a batch must be an object")
	}
	var raw message
	if err := eachMember(v, func(name, value []byte, escaped bool) *Error {
		n := memberName(name, escaped)
		switch string(n) {
		case "jsonrpc":
			raw.jsonrpc = value
		case "id":
			raw.id = value
		case "method":
			raw.method = value
		case "params":
			raw.params = value
		case "result":
			raw.result = value
		case "error":
			raw.error = value
		default:
			if f := foldedMember(n); f != nil {
				return invalid(nil, "key %q is a case variant of %q", n, f)
			}
		}
		return nil
	}); err != nil {
		return m, err
	}
	hasID := raw.id != nil
	if hasID {
		if err := checkID(raw.id); err != nil {
			return m, invalid(nil, "%s", err)
		}
		m.ID = json.RawMessage(raw.id)
	}
	if version, ok := stringValue(raw.jsonrpc); !ok || version != "2.0" {
		return m, invalid(m.ID, `"jsonrpc" must be "2.0"`)
	}
	hasResult, hasError := raw.result != nil, raw.error != nil
	switch {
	case raw.method != nil:
		if hasResult || hasError {
			return m, invalid(m.ID, "a message cannot carry both a method and a result or error")
		}
		method, ok := stringValue(raw.method)
		if !ok || method == "" {
			return m, invalid(m.ID, `"method" must be a non-empty string`)
		}
		m.Method = method
		m.Kind = KindNotification
		if hasID {
			m.Kind = KindRequest
		}
		if err := readParams(&m, raw.params, skipArgs); err != nil {
			return m, err
		}
	case hasResult || hasError:
		if !hasID {
			return m, invalid(nil, "a response needs an id")
		}
		if hasResult && hasError {
			return m, invalid(m.ID, "a response cannot carry both result and error")
		}
		m.Kind = KindResponse
	default:
		return m, invalid(m.ID, "message is neither a request, a notification nor a response")
	}
	return m, nil
}

// checkID accepts the id forms MCP allows: a string or a number. MCP
// forbids null ids in requests.
func checkID(id json.RawMessage) error {
	if len(id) == 0 {
		return fmt.Errorf(`"id" is empty`)
	}
	switch id[0] {
	case '"':
		return nil
	case '-', '0', '1', '2', '3', '4', '5', '6', '7', '8', '9':
		return nil
	}
	return fmt.Errorf(`"id" must be a string or a number`)
}

// decided says, per method whose params policy reads, the member policy
// needs and whether the method is meaningless without it. Other methods are
// the server's to answer: their params are passed through unread.
var decided = map[string]struct {
	field    string
	required bool
}{
	"tools/call":     {"name", true},
	"prompts/get":    {"name", true},
	"resources/read": {"uri", true},
	// Removed in MCP 2026-07-28: a client of that revision may send them
	// without params, and the server, not Warden, answers that it does
	// not know the method. When uri is there, policy sees it.
	"resources/subscribe":   {"uri", false},
	"resources/unsubscribe": {"uri", false},
}

// readParams extracts what policy needs from the params of the methods that
// name a tool, resource or prompt.
func readParams(m *Message, raw []byte, skipArgs bool) *Error {
	if raw != nil && raw[0] != '{' && raw[0] != '[' && string(raw) != "null" {
		return invalid(m.ID, `"params" must be an object or an array`)
	}
	d, ok := decided[m.Method]
	if !ok {
		return nil
	}
	if raw == nil || raw[0] != '{' {
		if !d.required && (raw == nil || string(raw) == "null") {
			return nil
		}
		return invalid(m.ID, "%s needs an object in params", m.Method)
	}
	var name, args []byte
	if err := eachMember(raw, func(key, value []byte, escaped bool) *Error {
		n := memberName(key, escaped)
		switch {
		case string(n) == d.field:
			name = value
		case m.Method == "tools/call" && string(n) == "arguments":
			args = value
		default:
			if f := foldedMember(n); f != nil {
				return invalid(m.ID, "params key %q is a case variant of %q", n, f)
			}
		}
		return nil
	}); err != nil {
		return err
	}
	if name == nil && !d.required {
		return nil
	}
	s, ok := stringValue(name)
	if !ok || s == "" {
		return invalid(m.ID, "%s needs a non-empty string params.%s", m.Method, d.field)
	}
	switch m.Method {
	case "tools/call":
		m.Tool = s
		if args != nil && string(args) != "null" {
			if args[0] != '{' {
				return invalid(m.ID, "tools/call params.arguments must be an object")
			}
			m.ArgumentsRaw = json.RawMessage(args)
			if skipArgs {
				return nil
			}
			dec := json.NewDecoder(bytes.NewReader(args))
			// Numbers stay exact (json.Number) so policy sees 9007199254740993
			// as sent, not rounded through float64.
			dec.UseNumber()
			if err := dec.Decode(&m.Arguments); err != nil || m.Arguments == nil {
				return invalid(m.ID, "tools/call params.arguments must be an object")
			}
		}
	case "prompts/get":
		m.Prompt = s
	default:
		m.Resource = s
	}
	return nil
}
