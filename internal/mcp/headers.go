package mcp

import (
	"encoding/base64"
	"encoding/json"
	"fmt"
	"math/big"
	"sort"
	"strings"
)

// Header validation of MCP 2026-07-28 (basic/transports/streamable-http,
// "Request Metadata" and "Server Validation"; SEP-2243). The transport
// mirrors body fields into headers so that intermediaries can route on
// them; anything that processes the body must refuse a request whose
// headers are missing or say something else than the body, so that no
// component acts on a value another one never saw.

// ParamHeader is one x-mcp-header annotation of a tool's inputSchema: the
// value of the argument at Path travels in the header Mcp-Param-{Name}.
type ParamHeader struct {
	// Name is the annotation's value, the {Name} of Mcp-Param-{Name}.
	Name string
	// Path is the chain of properties keys from the schema root to the
	// annotated property.
	Path []string
}

const (
	sentinelPrefix = "=?base64?"
	sentinelSuffix = "?="
)

// nameSource is the body value Mcp-Name mirrors: params.name of tools/call
// and prompts/get, params.uri of resources/read (the transport's table),
// and params.taskId of the tasks methods (the tasks extension's
// Streamable HTTP binding).
func nameSource(m *Message) (string, bool) {
	switch m.Method {
	case "tools/call":
		return m.Tool, true
	case "prompts/get":
		return m.Prompt, true
	case "resources/read":
		return m.Resource, true
	case "tasks/get", "tasks/update", "tasks/cancel":
		return m.Task, true
	}
	return "", false
}

// validateHeaders checks a 2026-07-28 request. GET and DELETE carry no
// body: they pass to the server, which answers 405 (the revision has no
// stream or session endpoint). Notifications need no standard headers
// ("header requirements for notification POSTs are not defined by this
// revision"), but what they do carry must match.
func validateHeaders(r *Request, in Input) *Error {
	if r.HTTPMethod != "POST" {
		return nil
	}
	if r.Batch {
		return invalid(nil, "MCP %s does not allow JSON-RPC batches: send one message per POST", Version20260728)
	}
	m := &r.Messages[0]
	isRequest := m.Kind == KindRequest
	switch {
	case m.Kind == KindResponse:
		return invalid(m.ID, "an MCP %s client does not send JSON-RPC responses", Version20260728)
	case isRequest && m.Metadata().ProtocolVersion == "":
		// basic/index: a request missing a required _meta field is
		// malformed: -32602 with 400.
		return invalidParams(m.ID, "missing _meta %q: every MCP %s request carries it", MetaProtocolVersion, Version20260728)
	}
	method, ok := header(in, "mcp-method")
	switch {
	case !ok && isRequest:
		return mismatch(m.ID, "missing required Mcp-Method header")
	case ok && method != m.Method:
		return mismatch(m.ID, "Mcp-Method header value %s does not match body value %s", quote(method), quote(m.Method))
	}
	if src, ok := nameSource(m); ok && isRequest {
		raw, present := header(in, "mcp-name")
		if !present {
			return mismatch(m.ID, "missing required Mcp-Name header for %s", m.Method)
		}
		v, err := decodeValue(raw)
		if err != "" {
			return mismatch(m.ID, "Mcp-Name header %s", err)
		}
		if v != src {
			return mismatch(m.ID, "Mcp-Name header value %s does not match body value %s", quote(v), quote(src))
		}
	}
	if m.Method == "tools/call" && in.ParamHeaders != nil {
		if hs, ok := in.ParamHeaders(m.Tool); ok {
			return validateParamHeaders(m, in, hs)
		}
	}
	return nil
}

// validateParamHeaders checks the Mcp-Param headers of a tool whose
// annotations are known: a value in the arguments needs its header, a
// header needs its value, and the two must be equal (integers compared
// numerically). Values are never quoted in the error: arguments may be
// confidential, and the reason goes to the audit trail.
func validateParamHeaders(m *Message, in Input, hs []ParamHeader) *Error {
	for _, ph := range hs {
		name := "Mcp-Param-" + ph.Name
		raw, present := header(in, strings.ToLower(name))
		path := strings.Join(ph.Path, ".")
		v, found, variant := argumentAt(m.ArgumentsRaw, ph.Path)
		switch {
		case variant != "":
			return mismatch(m.ID, "arguments key %q is a case variant of %q, which %s mirrors", variant, path, name)
		case !found || string(v) == "null":
			if present {
				return mismatch(m.ID, "%s header present but argument %q is absent or null", name, path)
			}
			continue
		case !present:
			return mismatch(m.ID, "missing %s header for argument %q", name, path)
		}
		dec, err := decodeValue(raw)
		if err != "" {
			return mismatch(m.ID, "%s header %s", name, err)
		}
		if !primitiveEqual(dec, v) {
			return mismatch(m.ID, "%s header does not match the value of argument %q", name, path)
		}
	}
	return nil
}

// header returns a request header with surrounding whitespace removed
// (RFC 9110 field values; SEP-2243: "Mcp-Name:  foo " matches "foo").
func header(in Input, name string) (string, bool) {
	v, ok := in.Header(name)
	return strings.Trim(v, " \t"), ok
}

// decodeValue checks that a header value holds only the characters RFC
// 9110 allows in a field value (visible ASCII, space, tab) and decodes the
// Base64 sentinel =?base64?...?= (markers case-sensitive; padding and
// alphabet strict). A value that only begins or only ends like the
// sentinel is literal. err is "" on success.
func decodeValue(v string) (string, string) {
	for i := 0; i < len(v); i++ {
		if c := v[i]; (c < 0x20 || c > 0x7e) && c != '\t' {
			return "", "contains a character not allowed in a header value"
		}
	}
	if len(v) < len(sentinelPrefix)+len(sentinelSuffix) || !strings.HasPrefix(v, sentinelPrefix) || !strings.HasSuffix(v, sentinelSuffix) {
		return v, ""
	}
	b, err := base64.StdEncoding.Strict().DecodeString(v[len(sentinelPrefix) : len(v)-len(sentinelSuffix)])
	if err != nil {
		return "", "holds invalid Base64 in the =?base64?...?= encoding"
	}
	return string(b), ""
}

// primitiveEqual compares a decoded header value with a JSON value: a
// string as is, a boolean as true/false, a number numerically and exactly
// (42, 42.0 and 4.2e1 are equal; 9007199254740993 and 9007199254740992
// are not). Objects and arrays cannot be mirrored and never match.
func primitiveEqual(h string, raw []byte) bool {
	switch raw[0] {
	case '"':
		s, ok := stringValue(raw)
		return ok && s == h
	case 't', 'f':
		return h == string(raw)
	case '-', '0', '1', '2', '3', '4', '5', '6', '7', '8', '9':
		if h == "" || !(h[0] == '-' || (h[0] >= '0' && h[0] <= '9')) || !json.Valid([]byte(h)) {
			return false
		}
		a, ok1 := new(big.Rat).SetString(h)
		b, ok2 := new(big.Rat).SetString(string(raw))
		return ok1 && ok2 && a.Cmp(b) == 0
	}
	return false
}

// argumentAt finds the value at path in the arguments object. variant is
// set when a key on the way is absent but a case variant of it is there:
// a server that matches keys case-insensitively would read that one.
func argumentAt(args []byte, path []string) (value []byte, found bool, variant string) {
	cur := args
	for _, key := range path {
		if len(cur) == 0 || cur[0] != '{' {
			return nil, false, ""
		}
		var next []byte
		_ = eachMember(cur, func(name, v []byte, escaped bool) *Error {
			n := memberName(name, escaped)
			switch {
			case string(n) == key:
				next = v
			case variant == "" && strings.EqualFold(string(n), key):
				variant = string(n)
			}
			return nil
		})
		if next == nil {
			return nil, false, variant
		}
		variant = ""
		cur = next
	}
	return cur, true, ""
}

func quote(s string) string {
	const max = 128
	if len(s) > max {
		s = s[:max] + "…"
	}
	return fmt.Sprintf("%q", s)
}

// ParamHeadersFromSchema returns the x-mcp-header annotations of a tool's
// inputSchema, sorted by header name, or an error when one breaks the
// constraints of the transport ("Schema Extension"): an annotation must be
// a non-empty HTTP token, unique case-insensitively within the schema, on
// a string, integer or boolean property reached from the root through
// properties keys alone (not items, composition, conditionals or $ref).
// Clients exclude a tool whose annotations are invalid from tools/list.
func ParamHeadersFromSchema(schema json.RawMessage) ([]ParamHeader, error) {
	if len(schema) == 0 {
		return nil, nil
	}
	dec := json.NewDecoder(strings.NewReader(string(schema)))
	dec.UseNumber()
	var root any
	if err := dec.Decode(&root); err != nil {
		return nil, fmt.Errorf("inputSchema is not JSON: %w", err)
	}
	var out []ParamHeader
	seen := map[string]string{}
	var walk func(node any, path []string, reachable bool) error
	walk = func(node any, path []string, reachable bool) error {
		switch n := node.(type) {
		case []any:
			for _, e := range n {
				if err := walk(e, path, false); err != nil {
					return err
				}
			}
		case map[string]any:
			if h, ok := n["x-mcp-header"]; ok {
				where := strings.Join(path, ".")
				if !reachable || len(path) == 0 {
					return fmt.Errorf("x-mcp-header under %q is not on a property reached through properties alone", where)
				}
				name, _ := h.(string)
				if !isToken(name) {
					return fmt.Errorf("property %q: x-mcp-header %q is not an HTTP token", where, h)
				}
				if t, _ := n["type"].(string); t != "string" && t != "integer" && t != "boolean" {
					return fmt.Errorf("property %q: x-mcp-header is allowed on string, integer and boolean properties, not %v", where, n["type"])
				}
				low := strings.ToLower(name)
				if prev, dup := seen[low]; dup {
					return fmt.Errorf("property %q: x-mcp-header %q repeats the one of %q", where, name, prev)
				}
				seen[low] = where
				out = append(out, ParamHeader{Name: name, Path: append([]string(nil), path...)})
			}
			for _, k := range sortedKeys(n) {
				v := n[k]
				switch k {
				case "x-mcp-header", "const", "enum", "default", "examples":
					continue // data, not schemas
				case "properties", "patternProperties", "$defs", "definitions", "dependentSchemas":
					subs, ok := v.(map[string]any)
					if !ok {
						continue
					}
					for _, sk := range sortedKeys(subs) {
						p, r := path, false
						if k == "properties" && reachable {
							p, r = append(append([]string(nil), path...), sk), true
						}
						if err := walk(subs[sk], p, r); err != nil {
							return err
						}
					}
				default:
					if err := walk(v, path, false); err != nil {
						return err
					}
				}
			}
		}
		return nil
	}
	if err := walk(root, nil, true); err != nil {
		return nil, err
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out, nil
}

func sortedKeys(m map[string]any) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

// isToken reports whether s is an RFC 9110 token (1*tchar).
func isToken(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c >= '0' && c <= '9', c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z':
		case strings.IndexByte("!#$%&'*+-.^_`|~", c) >= 0:
		default:
			return false
		}
	}
	return true
}
