package mcp

import (
	"bytes"
	"encoding/json"
	"strings"
	"unicode"
)

// Walking JSON that encoding/json has already validated (json.Valid), so
// the walkers below need no error paths of their own: they find where each
// member and element starts and ends, without decoding values Warden does
// not read and without allocating.

func skipSpace(b []byte, i int) int {
	for i < len(b) {
		switch b[i] {
		case ' ', '\t', '\n', '\r':
			i++
		default:
			return i
		}
	}
	return i
}

// skipString returns the index after the string starting at b[i] (a quote)
// and whether it holds an escape sequence.
func skipString(b []byte, i int) (int, bool) {
	escaped := false
	for i++; i < len(b); i++ {
		switch b[i] {
		case '\\':
			escaped = true
			i++
		case '"':
			return i + 1, escaped
		}
	}
	return i, escaped
}

// skipValue returns the index after the value starting at b[i].
func skipValue(b []byte, i int) int {
	switch b[i] {
	case '"':
		end, _ := skipString(b, i)
		return end
	case '{', '[':
		depth := 0
		for i < len(b) {
			switch b[i] {
			case '"':
				i, _ = skipString(b, i)
				continue
			case '{', '[':
				depth++
			case '}', ']':
				depth--
				if depth == 0 {
					return i + 1
				}
			}
			i++
		}
		return i
	default: // number, true, false, null
		for i < len(b) {
			switch b[i] {
			case ',', '}', ']', ' ', '\t', '\n', '\r':
				return i
			}
			i++
		}
		return i
	}
}

// eachMember calls fn with the name (quotes included, escapes kept) and the
// raw value of every member of the object obj, in order, duplicates
// included. It stops at the first error fn returns.
func eachMember(obj []byte, fn func(name, value []byte, escaped bool) *Error) *Error {
	i := skipSpace(obj, 1) // past '{'
	for i < len(obj) && obj[i] != '}' {
		end, escaped := skipString(obj, i)
		name := obj[i:end]
		i = skipSpace(obj, end)
		i = skipSpace(obj, i+1) // past ':'
		vend := skipValue(obj, i)
		if err := fn(name, obj[i:vend], escaped); err != nil {
			return err
		}
		i = skipSpace(obj, vend)
		if i < len(obj) && obj[i] == ',' {
			i = skipSpace(obj, i+1)
		}
	}
	return nil
}

// eachElement calls fn with every element of the array arr.
func eachElement(arr []byte, fn func(value []byte) *Error) *Error {
	i := skipSpace(arr, 1) // past '['
	for i < len(arr) && arr[i] != ']' {
		end := skipValue(arr, i)
		if err := fn(arr[i:end]); err != nil {
			return err
		}
		i = skipSpace(arr, end)
		if i < len(arr) && arr[i] == ',' {
			i = skipSpace(arr, i+1)
		}
	}
	return nil
}

// memberName is the decoded name of a member: the bytes between the quotes,
// or, when the name holds escapes, what they decode to.
func memberName(raw []byte, escaped bool) []byte {
	if !escaped {
		return raw[1 : len(raw)-1]
	}
	var s string
	_ = json.Unmarshal(raw, &s) // valid JSON: cannot fail
	return []byte(s)
}

// distinctNames reports the first object anywhere in v that holds two
// member names equal to each other or equal under Unicode case folding.
//
// Parsers disagree on such objects: JavaScript keeps the last duplicate,
// some parsers the first, and Go's encoding/json matches struct fields
// case-insensitively, so {"name":"search","Name":"delete_employee"} is
// "search" to policy and "delete_employee" to a Go server. No reading of
// such a message is safe to authorize.
func distinctNames(v []byte) *Error {
	switch v[0] {
	case '{':
		var stack [16][]byte
		names := stack[:0]
		// Small objects compare pairwise; a large one indexes folded names
		// so a body of many keys costs linear time, not quadratic.
		var folded map[string][]byte
		return eachMember(v, func(raw, value []byte, escaped bool) *Error {
			name := memberName(raw, escaped)
			var prev []byte
			if folded != nil {
				prev = folded[foldKey(name)]
			} else {
				for _, p := range names {
					if bytes.EqualFold(p, name) {
						prev = p
						break
					}
				}
			}
			if prev != nil {
				if bytes.Equal(prev, name) {
					return invalid(nil, "duplicate key %q in a JSON object", name)
				}
				return invalid(nil, "keys %q and %q differ only in case", prev, name)
			}
			switch {
			case folded != nil:
				folded[foldKey(name)] = name
			case len(names) == indexFrom:
				folded = make(map[string][]byte, 2*indexFrom)
				for _, p := range names {
					folded[foldKey(p)] = p
				}
				folded[foldKey(name)] = name
			default:
				names = append(names, name)
			}
			if value[0] == '{' || value[0] == '[' {
				return distinctNames(value)
			}
			return nil
		})
	case '[':
		return eachElement(v, func(value []byte) *Error {
			if value[0] == '{' || value[0] == '[' {
				return distinctNames(value)
			}
			return nil
		})
	}
	return nil
}

// indexFrom is the object size from which distinctNames indexes names.
const indexFrom = 32

// foldKey maps name to one representative of its case-folding class (each
// rune to the smallest rune of its unicode.SimpleFold orbit), so two names
// have the same key exactly when bytes.EqualFold holds for them.
func foldKey(name []byte) string {
	var b strings.Builder
	b.Grow(len(name))
	for _, r := range string(name) {
		lowest := r
		for f := unicode.SimpleFold(r); f != r; f = unicode.SimpleFold(f) {
			lowest = min(lowest, f)
		}
		b.WriteRune(lowest)
	}
	return b.String()
}

// readMembers are the member names the classifier reads. A member whose
// name case-folds to one of them without being it is refused: a
// case-insensitive upstream would read it as that member.
var readMembers = [][]byte{
	[]byte("jsonrpc"), []byte("id"), []byte("method"), []byte("params"), []byte("result"), []byte("error"),
	[]byte("name"), []byte("uri"), []byte("arguments"), []byte("_meta"), []byte("taskId"),
	[]byte("notifications"), []byte("clientInfo"),
}

// foldedMember returns the member that name is a case variant of, if any.
func foldedMember(name []byte) []byte {
	for _, m := range readMembers {
		if len(m) == len(name) && bytes.EqualFold(m, name) && !bytes.Equal(m, name) {
			return m
		}
	}
	return nil
}

// stringValue decodes a JSON string value; ok is false for other types.
func stringValue(raw []byte) (string, bool) {
	if len(raw) < 2 || raw[0] != '"' {
		return "", false
	}
	inner := raw[1 : len(raw)-1]
	if bytes.IndexByte(inner, '\\') < 0 {
		if s, ok := knownStrings[string(inner)]; ok { // no allocation for the lookup
			return s, true
		}
		return string(inner), true
	}
	var s string
	if json.Unmarshal(raw, &s) != nil {
		return "", false
	}
	return s, true
}

// knownStrings are the values most messages carry, shared rather than
// allocated per message.
var knownStrings = func() map[string]string {
	m := map[string]string{}
	for _, s := range []string{
		"2.0", "initialize", "ping", "tools/list", "tools/call", "resources/list", "resources/templates/list",
		"resources/read", "resources/subscribe", "resources/unsubscribe", "prompts/list", "prompts/get",
		"completion/complete", "logging/setLevel", "notifications/initialized", "notifications/cancelled",
		"notifications/progress", "notifications/roots/list_changed", "server/discover", "subscriptions/listen",
		"tasks/get", "tasks/update", "tasks/cancel", "tasks/result", "tasks/list",
		"2024-11-05", "2025-03-26", "2025-06-18", "2025-11-25", "2026-07-28",
		"debug", "info", "notice", "warning", "error", "critical", "alert", "emergency",
	} {
		m[s] = s
	}
	return m
}()
