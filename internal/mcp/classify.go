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

// JSON-RPC 2.0 and MCP error codes used in denials.
const (
	CodeParseError     = -32700
	CodeInvalidRequest = -32600
	CodeInvalidParams  = -32602
	// CodeHeaderMismatch is MCP 2026-07-28's HeaderMismatch: the HTTP
	// headers do not match the body, or a required header is missing or
	// malformed (basic/transports/streamable-http, "Server Validation").
	CodeHeaderMismatch = -32020
	// CodeUnsupportedProtocolVersion is MCP 2026-07-28's
	// UnsupportedProtocolVersion (basic/versioning).
	CodeUnsupportedProtocolVersion = -32022
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
	// Task is params.taskId of tasks/get, tasks/update, tasks/cancel (the
	// tasks extension, io.modelcontextprotocol/tasks) and tasks/result
	// (2025-11-25's experimental tasks).
	Task string
	// Listen is the notification filter of subscriptions/listen; nil for
	// other methods.
	Listen *Listen
	// Meta holds what the message says about itself in params._meta (and,
	// for initialize, params.clientInfo); nil when it says nothing.
	Meta *Meta
}

// noMeta is what a message without metadata reports.
var noMeta Meta

// Metadata returns the message's metadata, zero when it has none.
func (m *Message) Metadata() *Meta {
	if m.Meta == nil {
		return &noMeta
	}
	return m.Meta
}

// setMeta returns the metadata to fill in, allocating it on first use.
func (m *Message) setMeta() *Meta {
	if m.Meta == nil {
		m.Meta = &Meta{}
	}
	return m.Meta
}

// Meta is the per-request metadata MCP 2026-07-28 puts in params._meta
// (basic/index, "_meta"). Every value is self-reported by the client.
type Meta struct {
	// ProtocolVersion is io.modelcontextprotocol/protocolVersion.
	ProtocolVersion string
	// ClientName and ClientVersion are io.modelcontextprotocol/clientInfo
	// (for a 2025 initialize: params.clientInfo).
	ClientName, ClientVersion string
	// LogLevel is io.modelcontextprotocol/logLevel.
	LogLevel string
	// Traceparent is the W3C trace context in _meta.traceparent.
	Traceparent string
}

// Listen is the SubscriptionFilter of a subscriptions/listen request
// (basic/patterns/subscriptions), with taskIds from the tasks extension.
type Listen struct {
	ToolsListChanged, PromptsListChanged, ResourcesListChanged bool
	// Resources are the resourceSubscriptions URIs.
	Resources []string
	// Tasks are the taskIds whose notifications/tasks the client wants.
	Tasks []string
}

// Request is a classified HTTP request to an MCP endpoint.
type Request struct {
	HTTPMethod      string
	Messages        []Message
	Batch           bool
	SessionID       string
	ProtocolVersion string
	// Modern is true for a request of revision 2026-07-28 (stateless,
	// headers validated against the body).
	Modern bool
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
	// ErrorHeaderMismatch: a 2026-07-28 request whose MCP headers are
	// missing, malformed or disagree with the body (-32020).
	ErrorHeaderMismatch
	// ErrorUnsupportedVersion: an MCP-Protocol-Version Warden cannot
	// classify (-32022).
	ErrorUnsupportedVersion
	// ErrorInvalidParams: params that MCP requires are missing or
	// malformed, such as a 2026-07-28 request without its protocol
	// version in _meta (-32602).
	ErrorInvalidParams
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
	case ErrorHeaderMismatch:
		return "header_mismatch"
	case ErrorUnsupportedVersion:
		return "unsupported_version"
	case ErrorInvalidParams:
		return "invalid_params"
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
	// Data is the error's data member (the supported versions of an
	// UnsupportedProtocolVersion), nil when it has none.
	Data any
}

func (e *Error) Error() string { return fmt.Sprintf("jsonrpc %d: %s", e.Code, e.Message) }

func parseErr(f string, a ...any) *Error {
	return &Error{Kind: ErrorMalformed, Code: CodeParseError, Message: fmt.Sprintf(f, a...)}
}

func invalid(id json.RawMessage, f string, a ...any) *Error {
	return &Error{Kind: ErrorInvalid, Code: CodeInvalidRequest, Message: fmt.Sprintf(f, a...), ID: id}
}

func invalidParams(id json.RawMessage, f string, a ...any) *Error {
	return &Error{Kind: ErrorInvalidParams, Code: CodeInvalidParams, Message: fmt.Sprintf(f, a...), ID: id}
}

// Input is what the caller knows about the HTTP request.
type Input struct {
	Method string
	// Header returns a request header by lowercased name and whether the
	// request has it.
	Header func(name string) (string, bool)
	Body   []byte
	// Partial is true when the proxy forwarded a truncated body.
	Partial bool
	// Limit is the largest body accepted, in bytes.
	Limit int
	// SkipArguments leaves Message.Arguments nil, for a caller whose
	// policy does not read them: ArgumentsRaw is still set and must still
	// be an object.
	SkipArguments bool
	// ParamHeaders returns the x-mcp-header annotations of a tool of this
	// server, learned from its definition; ok is false when the definition
	// is not known (then Mcp-Param headers pass unchecked, as the spec
	// asks of intermediaries that do not recognize them). Nil: no tool is
	// known.
	ParamHeaders func(tool string) (headers []ParamHeader, ok bool)
}

// Classify reads one HTTP request to an MCP endpoint.
//
// The request's MCP-Protocol-Version chooses the revision's rules (see
// version.go): 2026-07-28 requests must carry headers that match their
// body (headers.go); a version Warden does not know is refused with
// UnsupportedProtocolVersion, because Warden cannot tell what such a body
// asks the server to do.
func Classify(in Input) (*Request, *Error) {
	r := &Request{HTTPMethod: in.Method}
	if in.Header == nil {
		in.Header = noHeaders
	}
	r.SessionID, _ = in.Header("mcp-session-id")
	r.ProtocolVersion, _ = in.Header("mcp-protocol-version")
	modern, verr := revision(r.ProtocolVersion)
	if verr != nil {
		// The answer carries the request's id when it can be read.
		if rr, err := classifyBody(r, in); err == nil && !rr.Batch && len(rr.Messages) == 1 {
			verr.ID = rr.Messages[0].ID
		} else if err != nil {
			verr.ID = err.ID
		}
		return nil, verr
	}
	r.Modern = modern
	if _, err := classifyBody(r, in); err != nil {
		return nil, err
	}
	if err := checkMeta(r); err != nil {
		return nil, err
	}
	if r.Modern {
		for i := range r.Messages {
			// tasks/result is 2025-11-25's: in 2026-07-28 it is no method
			// (the server answers -32601), so no task request either.
			if m := &r.Messages[i]; m.Method == "tasks/result" {
				m.Task = ""
			}
		}
		if err := validateHeaders(r, in); err != nil {
			return nil, err
		}
	}
	return r, nil
}

// classifyBody fills r.Messages from the HTTP method and body.
func classifyBody(r *Request, in Input) (*Request, *Error) {
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

func noHeaders(string) (string, bool) { return "", false }

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
// the server's to answer: their params are passed through unread, but for
// _meta.
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
	// The tasks extension (and 2025-11-25's experimental tasks, with
	// tasks/result): a task is authorized like the call that created it,
	// found by its id.
	"tasks/get":    {"taskId", true},
	"tasks/update": {"taskId", true},
	"tasks/cancel": {"taskId", true},
	"tasks/result": {"taskId", true},
}

// readParams extracts what policy needs from params: the name, uri,
// arguments or task id of the methods that carry one, the notification
// filter of subscriptions/listen, the client of initialize, and _meta.
func readParams(m *Message, raw []byte, skipArgs bool) *Error {
	if raw != nil && raw[0] != '{' && raw[0] != '[' && string(raw) != "null" {
		return invalid(m.ID, `"params" must be an object or an array`)
	}
	d, isDecided := decided[m.Method]
	if raw == nil || raw[0] != '{' {
		if isDecided && d.required {
			return invalid(m.ID, "%s needs an object in params", m.Method)
		}
		if isDecided && raw != nil && string(raw) != "null" {
			return invalid(m.ID, "%s needs an object in params", m.Method)
		}
		return nil
	}
	// strict: the method's members are read, so their case variants are
	// refused; other methods' params are the server's, but for _meta.
	strict := isDecided || m.Method == "subscriptions/listen" || m.Method == "initialize"
	var name, args, meta, filter, client []byte
	if err := eachMember(raw, func(key, value []byte, escaped bool) *Error {
		n := memberName(key, escaped)
		switch {
		case string(n) == "_meta":
			meta = value
		case isDecided && string(n) == d.field:
			name = value
		case m.Method == "tools/call" && string(n) == "arguments":
			args = value
		case m.Method == "subscriptions/listen" && string(n) == "notifications":
			filter = value
		case m.Method == "initialize" && string(n) == "clientInfo":
			client = value
		case strict:
			if f := foldedMember(n); f != nil {
				return invalid(m.ID, "params key %q is a case variant of %q", n, f)
			}
		case bytes.EqualFold(n, metaKey):
			return invalid(m.ID, "params key %q is a case variant of %q", n, metaKey)
		}
		return nil
	}); err != nil {
		return err
	}
	if meta != nil {
		if err := readMeta(m, meta); err != nil {
			return err
		}
	}
	if client != nil && client[0] == '{' {
		mt := m.setMeta()
		mt.ClientName, mt.ClientVersion = implementation(client)
	}
	if m.Method == "subscriptions/listen" {
		return readListen(m, filter)
	}
	if !isDecided || (name == nil && !d.required) {
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
	case "tasks/get", "tasks/update", "tasks/cancel", "tasks/result":
		m.Task = s
	default:
		m.Resource = s
	}
	return nil
}
