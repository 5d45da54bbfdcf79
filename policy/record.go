package policy

import (
	"bytes"
	"encoding/json"
	"fmt"
	"slices"
	"strconv"
	"unicode/utf8"
)

// Recorded decision inputs.
//
// The audit trail keeps, with each decision, the input document it was
// decided on, so that a candidate policy can be replayed over past traffic
// (policy/replay). The record is the document a policy sees, as JSON, with
// two differences:
//
//   - it is always whole: the parts the policy in use did not read
//     (Engine.Needs: request, mcp.id, mcp.arguments) are filled in by the
//     caller from the request, so that a candidate that does read them
//     decides on what was really sent. The policy in use decides the same
//     on the whole document, since it reads none of them;
//   - tool arguments named by a Redaction are replaced by Redacted, and
//     their names returned, so that the trail does not keep them and the
//     replay knows which decisions saw a marker instead of a value;
//   - task ids (mcp.task.id, mcp.subscriptions.tasks) are always Redacted:
//     a task id is a handle to the server's state, and the trail names the
//     call that created the task instead.
//
// AppendRecord is on the Check path: the caller's part (subject, client,
// server, grant) is encoded once per Caller, and the rest is written field
// by field rather than through reflection.

// Redacted replaces the value of every redacted tool argument in a
// recorded input.
const Redacted = "[redacted]"

// RedactRule names tool arguments the audit trail must not keep.
type RedactRule struct {
	// Server limits the rule to one server; empty: every server.
	Server string
	// Arguments are argument names (top-level members of
	// params.arguments); empty: every argument.
	Arguments []string
}

// Redaction is a set of rules; the zero value (or nil) redacts nothing.
// It is immutable and safe for concurrent use.
type Redaction struct {
	// all are the servers whose every argument is redacted ("" = any).
	all map[string]bool
	// names are the redacted argument names per server ("" = any).
	names map[string]map[string]bool
}

// NewRedaction builds a Redaction from rules.
func NewRedaction(rules []RedactRule) *Redaction {
	r := &Redaction{all: map[string]bool{}, names: map[string]map[string]bool{}}
	for _, rule := range rules {
		if len(rule.Arguments) == 0 {
			r.all[rule.Server] = true
			continue
		}
		m := r.names[rule.Server]
		if m == nil {
			m = map[string]bool{}
			r.names[rule.Server] = m
		}
		for _, a := range rule.Arguments {
			m[a] = true
		}
	}
	return r
}

// redacts tells whether argument arg on server is redacted.
func (r *Redaction) redacts(server, arg string) bool {
	if r == nil {
		return false
	}
	return r.all[""] || r.all[server] || r.names[""][arg] || r.names[server][arg]
}

// any tells whether some argument on server may be redacted.
func (r *Redaction) any(server string) bool {
	if r == nil {
		return false
	}
	return r.all[""] || r.all[server] || len(r.names[""]) > 0 || len(r.names[server]) > 0
}

// callerJSON encodes the caller's part of the record:
// "subject":{...},"client":{...},"server":{...},"grant":{...},"credential":{...}
func callerJSON(s *Subject, c *Client, srv *Server, g *Grant, cr *Credential) ([]byte, error) {
	type doc struct {
		Subject    Subject    `json:"subject"`
		Client     Client     `json:"client"`
		Server     Server     `json:"server"`
		Grant      Grant      `json:"grant"`
		Credential Credential `json:"credential"`
	}
	d := doc{Subject: *s, Client: *c, Server: *srv, Grant: *g, Credential: *cr}
	// The policy sees [] and {} for absent lists and maps: so does the
	// record.
	d.Subject.Groups = orEmpty(d.Subject.Groups)
	if d.Subject.Claims == nil {
		d.Subject.Claims = map[string]any{}
	}
	if d.Server.Labels == nil {
		d.Server.Labels = map[string]string{}
	}
	d.Grant.Scopes, d.Grant.Servers = orEmpty(d.Grant.Scopes), orEmpty(d.Grant.Servers)
	b, err := json.Marshal(d)
	if err != nil {
		return nil, err
	}
	return b[1 : len(b)-1], nil // without the braces, to be spliced in
}

func orEmpty(s []string) []string {
	if s == nil {
		return []string{}
	}
	return s
}

// AppendRecord appends the input document as its audit record (see the
// comment above) and returns the names of the arguments it redacted,
// sorted. It fails when the arguments cannot be encoded.
func (in *Input) AppendRecord(dst []byte, r *Redaction) ([]byte, []string, error) {
	dst = append(dst, `{"version":`...)
	dst = strconv.AppendInt(dst, int64(in.Version), 10)
	dst = append(dst, ',')
	server := in.Server.Name
	if c := in.Caller; c != nil {
		dst = append(dst, c.json...)
		server = c.serverName
	} else {
		part, err := callerJSON(&in.Subject, &in.Client, &in.Server, &in.Grant, &in.Credential)
		if err != nil {
			return dst, nil, fmt.Errorf("record input: %w", err)
		}
		dst = append(dst, part...)
	}
	m := &in.MCP
	dst = append(dst, `,"mcp":{"kind":`...)
	dst = appendString(dst, m.Kind)
	dst = append(dst, `,"method":`...)
	dst = appendString(dst, m.Method)
	dst = append(dst, `,"id":`...)
	var err error
	if dst, err = appendID(dst, m.ID); err != nil {
		return dst, nil, fmt.Errorf("record input: mcp.id: %w", err)
	}
	dst = append(dst, `,"tool":`...)
	dst = appendString(dst, m.Tool)
	dst = append(dst, `,"arguments":`...)
	var redacted []string
	if dst, redacted, err = appendArguments(dst, m, server, r); err != nil {
		return dst, nil, fmt.Errorf("record input: mcp.arguments: %w", err)
	}
	dst = append(dst, `,"resource":`...)
	dst = appendString(dst, m.Resource)
	dst = append(dst, `,"prompt":`...)
	dst = appendString(dst, m.Prompt)
	dst = append(dst, `,"session":`...)
	dst = appendString(dst, m.Session)
	dst = append(dst, `,"protocol_version":`...)
	dst = appendString(dst, m.ProtocolVersion)
	dst = append(dst, `,"batch":`...)
	dst = strconv.AppendBool(dst, m.Batch)
	dst = append(dst, `,"batch_size":`...)
	dst = strconv.AppendInt(dst, int64(m.BatchSize), 10)
	dst = append(dst, `,"client_info":{"name":`...)
	dst = appendString(dst, m.ClientInfo.Name)
	dst = append(dst, `,"version":`...)
	dst = appendString(dst, m.ClientInfo.Version)
	dst = append(dst, `},"log_level":`...)
	dst = appendString(dst, m.LogLevel)
	dst = append(dst, `,"traceparent":`...)
	dst = appendString(dst, m.Traceparent)
	dst = append(dst, `,"task":{"id":`...)
	dst = appendTaskID(dst, m.Task.ID)
	dst = append(dst, `,"method":`...)
	dst = appendString(dst, m.Task.Method)
	s := &m.Subscriptions
	dst = append(dst, `},"subscriptions":{"tools_list_changed":`...)
	dst = strconv.AppendBool(dst, s.ToolsListChanged)
	dst = append(dst, `,"prompts_list_changed":`...)
	dst = strconv.AppendBool(dst, s.PromptsListChanged)
	dst = append(dst, `,"resources_list_changed":`...)
	dst = strconv.AppendBool(dst, s.ResourcesListChanged)
	dst = append(dst, `,"resources":`...)
	dst = appendStrings(dst, s.Resources)
	dst = append(dst, `,"tasks":[`...)
	for i, id := range s.Tasks {
		if i > 0 {
			dst = append(dst, ',')
		}
		dst = appendTaskID(dst, id)
	}
	dst = append(dst, ']')
	q := &in.Request
	dst = append(dst, `}},"request":{"id":`...)
	dst = appendString(dst, q.ID)
	dst = append(dst, `,"method":`...)
	dst = appendString(dst, q.Method)
	dst = append(dst, `,"path":`...)
	dst = appendString(dst, q.Path)
	dst = append(dst, `,"host":`...)
	dst = appendString(dst, q.Host)
	dst = append(dst, `,"headers":{`...)
	var kbuf [16]string // the selected headers fit: no allocation
	keys := kbuf[:0]
	for k := range q.Headers {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	for i, k := range keys {
		if i > 0 {
			dst = append(dst, ',')
		}
		dst = appendString(dst, k)
		dst = append(dst, ':')
		dst = appendString(dst, q.Headers[k])
	}
	dst = append(dst, `},"time":`...)
	dst = appendString(dst, q.Time)
	dst = append(dst, `},"tool":{"pinned":`...)
	dst = strconv.AppendBool(dst, in.Tool.Pinned)
	dst = append(dst, `,"changed":`...)
	dst = strconv.AppendBool(dst, in.Tool.Changed)
	dst = append(dst, `}}`...)
	return dst, redacted, nil
}

// appendArguments writes the tool arguments as encoding/json would
// encode their raw JSON (compact, HTML characters escaped: the audit chain
// hashes that encoding), with Redacted for the redacted members.
func appendArguments(dst []byte, m *MCP, server string, r *Redaction) ([]byte, []string, error) {
	raw := bytes.TrimSpace(m.ArgumentsJSON)
	if len(raw) == 0 || string(raw) == "null" {
		if len(m.Arguments) == 0 {
			return append(dst, "{}"...), nil, nil
		}
		b, err := json.Marshal(m.Arguments)
		if err != nil {
			return dst, nil, err
		}
		raw = b
	}
	if !r.any(server) && raw[0] == '{' && utf8.Valid(raw) {
		n := len(dst)
		buf := bytes.NewBuffer(dst) // compacts in place after dst
		if err := json.Compact(buf, raw); err != nil {
			return dst, nil, err
		}
		dst = buf.Bytes()
		if bytes.ContainsAny(dst[n:], "<>&\u2028\u2029") {
			var esc bytes.Buffer
			json.HTMLEscape(&esc, dst[n:])
			dst = append(dst[:n], esc.Bytes()...)
		}
		return dst, nil, nil
	}
	// Decoded and encoded again: invalid UTF-8 is replaced (as it would be
	// when the trail is read back), numbers are kept as written.
	var args map[string]any
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.UseNumber()
	if err := dec.Decode(&args); err != nil {
		return dst, nil, err
	}
	var redacted []string
	for k := range args {
		if r.redacts(server, k) {
			args[k] = Redacted
			redacted = append(redacted, k)
		}
	}
	if args == nil {
		args = map[string]any{}
	}
	b, err := json.Marshal(args)
	if err != nil {
		return dst, nil, err
	}
	slices.Sort(redacted)
	return append(dst, b...), redacted, nil
}

// appendID writes a JSON-RPC id: null, a string or a number.
func appendID(dst []byte, id any) ([]byte, error) {
	switch id := id.(type) {
	case nil:
		return append(dst, "null"...), nil
	case string:
		return appendString(dst, id), nil
	case json.Number:
		if _, err := id.Float64(); err != nil {
			return dst, fmt.Errorf("invalid number %q", string(id))
		}
		return append(dst, id...), nil
	case float64, int, int64:
		b, err := json.Marshal(id)
		if err != nil {
			return dst, err
		}
		return append(dst, b...), nil
	default:
		return dst, fmt.Errorf("unsupported type %T (want string or number)", id)
	}
}

// appendTaskID writes a task id as Redacted: a task id is a handle to the
// server's state, which the trail never keeps (it names the task's call).
func appendTaskID(dst []byte, id string) []byte {
	if id == "" {
		return append(dst, `""`...)
	}
	return appendString(dst, Redacted)
}

func appendStrings(dst []byte, ss []string) []byte {
	dst = append(dst, '[')
	for i, s := range ss {
		if i > 0 {
			dst = append(dst, ',')
		}
		dst = appendString(dst, s)
	}
	return append(dst, ']')
}

// appendString writes s as encoding/json would: the common case (printable
// ASCII that needs no escape) directly, anything else through
// encoding/json, so that the record reads back and re-encodes identically
// (the audit chain hashes the encoding).
func appendString(dst []byte, s string) []byte {
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c < 0x20 || c > 0x7e || c == '"' || c == '\\' || c == '<' || c == '>' || c == '&' {
			b, _ := json.Marshal(s) // a string always encodes
			return append(dst, b...)
		}
	}
	dst = append(dst, '"')
	dst = append(dst, s...)
	return append(dst, '"')
}

// ParseRecord reads a recorded input document back into an Input that
// decides as the original did: numbers stay json.Number (as the request
// path decodes arguments), the arguments keep their raw JSON.
func ParseRecord(doc []byte) (Input, error) {
	var in Input
	dec := json.NewDecoder(bytes.NewReader(doc))
	dec.UseNumber()
	if err := dec.Decode(&in); err != nil {
		return Input{}, fmt.Errorf("recorded input: %w", err)
	}
	var raw struct {
		MCP struct {
			Arguments json.RawMessage `json:"arguments"`
		} `json:"mcp"`
	}
	if err := json.Unmarshal(doc, &raw); err != nil {
		return Input{}, fmt.Errorf("recorded input: %w", err)
	}
	in.MCP.ArgumentsJSON = raw.MCP.Arguments
	return in, nil
}
