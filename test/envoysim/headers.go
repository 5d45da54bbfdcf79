package envoysim

import (
	"net/http"
	"strings"
	"unicode/utf8"
)

// header is one entry of a headerMap: a lowercased key and its value.
type header struct {
	key, value string
}

// headerMap mirrors Envoy's HeaderMap: an ordered list of lowercased
// entries where a key may repeat, pseudo-headers (":method", ":path",
// ":authority", ":scheme") first. Envoy's filters see this shape, so the
// CheckRequest and the header mutations are computed on it rather than on
// Go's canonicalised map.
type headerMap []header

// get returns the first value of key and whether it exists.
func (h headerMap) get(key string) (string, bool) {
	for _, e := range h {
		if e.key == key {
			return e.value, true
		}
	}
	return "", false
}

// value returns the first value of key, or "".
func (h headerMap) value(key string) string {
	v, _ := h.get(key)
	return v
}

// joined returns every value of key joined with ",", as Envoy presents a
// repeated header to ext_authz and to header matchers.
func (h headerMap) joined(key string) (string, bool) {
	var vals []string
	for _, e := range h {
		if e.key == key {
			vals = append(vals, e.value)
		}
	}
	if len(vals) == 0 {
		return "", false
	}
	return strings.Join(vals, ","), true
}

func (h headerMap) has(key string) bool {
	_, ok := h.get(key)
	return ok
}

// add appends a new entry, keeping any existing one (Envoy addCopy).
func (h *headerMap) add(key, value string) {
	*h = append(*h, header{key: key, value: value})
}

// set replaces every entry of key by one entry at the position of the
// first, or appends it (Envoy setCopy).
func (h *headerMap) set(key, value string) {
	out := (*h)[:0]
	done := false
	for _, e := range *h {
		if e.key != key {
			out = append(out, e)
			continue
		}
		if !done {
			out = append(out, header{key: key, value: value})
			done = true
		}
	}
	if !done {
		out = append(out, header{key: key, value: value})
	}
	*h = out
}

// appendValue joins value onto the first entry of key with "," (Envoy
// appendCopy); it reports false when the key is absent.
func (h headerMap) appendValue(key, value string) bool {
	for i := range h {
		if h[i].key == key {
			h[i].value += "," + value
			return true
		}
	}
	return false
}

// remove deletes every entry of key.
func (h *headerMap) remove(key string) {
	out := (*h)[:0]
	for _, e := range *h {
		if e.key != key {
			out = append(out, e)
		}
	}
	*h = out
}

// hopByHop are the connection-level headers Envoy's connection manager
// strips from requests and responses; they never reach a filter or the
// other side.
var hopByHop = map[string]bool{
	"connection":        true,
	"keep-alive":        true,
	"proxy-connection":  true,
	"transfer-encoding": true,
	"upgrade":           true,
}

// toHTTP converts the regular (non-pseudo) entries into a Go header for the
// upstream request or the downstream response. Go writes keys verbatim but
// consults a few canonical keys itself (User-Agent, Content-Length), so keys
// are canonicalised here; HTTP/2 lowercases them on the wire anyway.
func (h headerMap) toHTTP(skip func(string) bool) http.Header {
	out := make(http.Header, len(h))
	for _, e := range h {
		if strings.HasPrefix(e.key, ":") || hopByHop[e.key] || (skip != nil && skip(e.key)) {
			continue
		}
		k := http.CanonicalHeaderKey(e.key)
		out[k] = append(out[k], e.value)
	}
	return out
}

// validHeaderName follows Envoy's HeaderUtility::headerNameIsValid: an RFC
// 7230 token, optionally prefixed by ':' for pseudo-headers.
func validHeaderName(name string) bool {
	name = strings.TrimPrefix(name, ":")
	if name == "" {
		return false
	}
	for i := 0; i < len(name); i++ {
		c := name[i]
		switch {
		case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9':
		case strings.IndexByte("!#$%&'*+-.^_`|~", c) >= 0:
		default:
			return false
		}
	}
	return true
}

// validHeaderValue follows HeaderUtility::headerValueIsValid: no NUL, CR or LF.
func validHeaderValue(v string) bool {
	return !strings.ContainsAny(v, "\x00\r\n")
}

// sanitizeUTF8 replaces every byte that is not part of valid UTF-8 with '!',
// as Envoy's MessageUtil::sanitizeUtf8String does before putting header
// values and a string body into the CheckRequest.
func sanitizeUTF8(s string) string {
	if utf8.ValidString(s) {
		return s
	}
	var b strings.Builder
	b.Grow(len(s))
	for i := 0; i < len(s); {
		r, size := utf8.DecodeRuneInString(s[i:])
		if r == utf8.RuneError && size <= 1 {
			b.WriteByte('!')
			i++
			continue
		}
		b.WriteString(s[i : i+size])
		i += size
	}
	return b.String()
}
