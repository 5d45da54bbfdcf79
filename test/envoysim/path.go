package envoysim

import (
	"strings"

	hcmv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
)

// pathAction is what the connection manager does with a request after
// path normalization.
type pathAction int

const (
	pathContinue pathAction = iota
	pathReject              // 400
	pathRedirect            // 307 to the normalized path
)

// normalizePath applies the connection manager's path handling before
// routing: path_with_escaped_slashes_action (before the rest), then
// normalize_path and merge_slashes, on the path only (the query is kept as
// is). UNESCAPE_AND_REDIRECT redirects only when escaped slashes were
// present, after the other transformations.
//
// normalize_path in Envoy runs Chromium's URL path canonicaliser; the
// harness does the parts that matter for routing: backslashes become
// slashes, %2E becomes '.', and dot segments are removed (RFC 3986
// section 5.2.4).
func normalizePath(full string, cm *connManager) (string, pathAction) {
	path, query := splitPath(full)
	l := strings.ToLower(path)
	escaped := strings.Contains(l, "%2f") || strings.Contains(l, "%5c")
	action := pathContinue
	switch cm.escapedSlashes {
	case hcmv3.HttpConnectionManager_REJECT_REQUEST:
		if escaped {
			return full, pathReject
		}
	case hcmv3.HttpConnectionManager_UNESCAPE_AND_FORWARD, hcmv3.HttpConnectionManager_UNESCAPE_AND_REDIRECT:
		if escaped {
			path = replaceFold(path, "%2f", "/")
			path = replaceFold(path, "%5c", `\`)
			if cm.escapedSlashes == hcmv3.HttpConnectionManager_UNESCAPE_AND_REDIRECT {
				action = pathRedirect
			}
		}
	}
	if cm.normalizePath {
		path = strings.ReplaceAll(path, `\`, "/")
		path = replaceFold(path, "%2e", ".")
		path = removeDotSegments(path)
	}
	if cm.mergeSlashes {
		for strings.Contains(path, "//") {
			path = strings.ReplaceAll(path, "//", "/")
		}
	}
	return path + query, action
}

// replaceFold replaces every case-insensitive occurrence of an ASCII
// percent-escape.
func replaceFold(s, old, repl string) string {
	var b strings.Builder
	for {
		i := strings.Index(strings.ToLower(s), old)
		if i < 0 {
			b.WriteString(s)
			return b.String()
		}
		b.WriteString(s[:i])
		b.WriteString(repl)
		s = s[i+len(old):]
	}
}

// removeDotSegments is RFC 3986 section 5.2.4.
func removeDotSegments(in string) string {
	var out []string
	trailing := strings.HasSuffix(in, "/") || strings.HasSuffix(in, "/.") || strings.HasSuffix(in, "/..")
	for _, seg := range strings.Split(in, "/") {
		switch seg {
		case ".":
		case "..":
			if len(out) > 1 {
				out = out[:len(out)-1]
			}
		default:
			out = append(out, seg)
		}
	}
	p := strings.Join(out, "/")
	if !strings.HasPrefix(p, "/") {
		p = "/" + p
	}
	if trailing && !strings.HasSuffix(p, "/") {
		p += "/"
	}
	return p
}
