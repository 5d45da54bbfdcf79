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
	"errors"
	"fmt"
	"io"
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

// Error is a classification failure, shaped as the JSON-RPC error the
// client will see.
type Error struct {
	Code    int
	Message string
	// ID is the id of the offending message when it could be read.
	ID json.RawMessage
}

func (e *Error) Error() string { return fmt.Sprintf("jsonrpc %d: %s", e.Code, e.Message) }

func parseErr(f string, a ...any) *Error {
	return &Error{Code: CodeParseError, Message: fmt.Sprintf(f, a...)}
}

func invalid(id json.RawMessage, f string, a ...any) *Error {
	return &Error{Code: CodeInvalidRequest, Message: fmt.Sprintf(f, a...), ID: id}
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
		return nil, invalid(nil, "request body was truncated by the proxy (over its buffer limit); refusing to authorize a partial message")
	}
	if in.Limit > 0 && len(in.Body) > in.Limit {
		return nil, invalid(nil, "request body of %d bytes exceeds the %d byte limit", len(in.Body), in.Limit)
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
	// One decoding pass validates the syntax and splits the messages into
	// exact-key maps; a syntax error is a parse error, a wrong shape an
	// invalid request.
	switch body[0] {
	case '[':
		var objs []map[string]json.RawMessage
		if err := json.Unmarshal(body, &objs); err != nil {
			if isSyntax(err) {
				return nil, parseErr("request body is not valid JSON")
			}
			return nil, invalid(nil, "every message of a batch must be an object")
		}
		if len(objs) == 0 {
			return nil, invalid(nil, "empty batch")
		}
		r.Batch = true
		r.Messages = make([]Message, 0, len(objs))
		for _, obj := range objs {
			m, err := classifyMessage(obj)
			if err != nil {
				return nil, err
			}
			r.Messages = append(r.Messages, m)
		}
	case '{':
		var obj map[string]json.RawMessage
		if err := json.Unmarshal(body, &obj); err != nil {
			if isSyntax(err) {
				return nil, parseErr("request body is not valid JSON")
			}
			return nil, invalid(nil, "a JSON-RPC message must be an object")
		}
		m, err := classifyMessage(obj)
		if err != nil {
			return nil, err
		}
		r.Messages = []Message{m}
	default:
		if !json.Valid(body) {
			return nil, parseErr("request body is not valid JSON")
		}
		return nil, invalid(nil, "a JSON-RPC message must be an object or a batch array")
	}
	return r, nil
}

// classifyMessage decodes one message into exact-key maps. encoding/json
// matches struct fields case-insensitively, which would let {"name":"a",
// "NAME":"b"} show policy one tool while a JavaScript server runs another;
// maps keep keys exactly as sent, and the last duplicate wins as in JS.
func classifyMessage(obj map[string]json.RawMessage) (Message, *Error) {
	var m Message
	if obj == nil {
		return m, invalid(nil, "a JSON-RPC message must be an object")
	}
	id, hasID := obj["id"]
	if hasID {
		if err := checkID(id); err != nil {
			return m, invalid(nil, "%s", err)
		}
		m.ID = id
	}
	var version string
	if err := json.Unmarshal(obj["jsonrpc"], &version); err != nil || version != "2.0" {
		return m, invalid(m.ID, `"jsonrpc" must be "2.0"`)
	}
	rawMethod, hasMethod := obj["method"]
	_, hasResult := obj["result"]
	_, hasError := obj["error"]
	switch {
	case hasMethod:
		if hasResult || hasError {
			return m, invalid(m.ID, "a message cannot carry both a method and a result or error")
		}
		if err := json.Unmarshal(rawMethod, &m.Method); err != nil || m.Method == "" {
			return m, invalid(m.ID, `"method" must be a non-empty string`)
		}
		m.Kind = KindNotification
		if hasID {
			m.Kind = KindRequest
		}
		if err := readParams(&m, obj["params"]); err != nil {
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

func isSyntax(err error) bool {
	var se *json.SyntaxError
	return errors.As(err, &se) || errors.Is(err, io.ErrUnexpectedEOF)
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

// readParams extracts what policy needs from the params of the methods that
// name a tool, resource or prompt.
func readParams(m *Message, raw json.RawMessage) *Error {
	field := ""
	switch m.Method {
	case "tools/call", "prompts/get":
		field = "name"
	case "resources/read", "resources/subscribe", "resources/unsubscribe":
		field = "uri"
	default:
		if len(raw) > 0 && raw[0] != '{' && raw[0] != '[' && string(raw) != "null" {
			return invalid(m.ID, `"params" must be an object or an array`)
		}
		return nil
	}
	var params map[string]json.RawMessage
	if len(raw) == 0 || json.Unmarshal(raw, &params) != nil || params == nil {
		return invalid(m.ID, "%s needs an object in params", m.Method)
	}
	var name string
	if err := json.Unmarshal(params[field], &name); err != nil || name == "" {
		return invalid(m.ID, "%s needs a non-empty string params.%s", m.Method, field)
	}
	switch m.Method {
	case "tools/call":
		m.Tool = name
		if args, ok := params["arguments"]; ok && string(args) != "null" {
			dec := json.NewDecoder(bytes.NewReader(args))
			// Numbers stay exact (json.Number) so policy sees 9007199254740993
			// as sent, not rounded through float64.
			dec.UseNumber()
			if err := dec.Decode(&m.Arguments); err != nil || m.Arguments == nil {
				return invalid(m.ID, "tools/call params.arguments must be an object")
			}
			m.ArgumentsRaw = args
		}
	case "prompts/get":
		m.Prompt = name
	default:
		m.Resource = name
	}
	return nil
}
