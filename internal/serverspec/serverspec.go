// Package serverspec is the one definition of what a registered MCP
// server's name and upstream URL may be. The config file, the registry
// (admin API and CLI), the xDS translation and the ext_authz and OAuth
// paths all check names and URLs here, so a server accepted at one door is
// never refused at another. Errors never contain the URL: it may carry a
// secret (userinfo, a token in the query).
package serverspec

import (
	"errors"
	"fmt"
	"math"
	"net"
	"net/url"
	"regexp"
	"strconv"
	"strings"
)

// NamePattern is what a server name may look like: a DNS label (1-63
// lowercase letters, digits and dashes, starting and ending with a letter
// or digit). A name becomes a URL path segment (/mcp/<name>) and part of
// Envoy cluster, route and stat names.
var NamePattern = regexp.MustCompile(`^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$`)

// Errors callers branch on; every error of this package wraps one.
var (
	ErrName        = errors.New("name must be 1-63 lowercase letters, digits and dashes, starting and ending with a letter or digit")
	ErrURLRequired = errors.New("url is required")
	ErrURLInvalid  = errors.New("url is not a valid absolute URL")
	ErrURLScheme   = errors.New("url scheme must be http or https")
	ErrURLUserinfo = errors.New("url must not contain credentials (use the static credential instead)")
	ErrURLQuery    = errors.New("url must not have a query or fragment")
	ErrURLHost     = errors.New("url host must be a DNS name or an IP address")
	ErrURLPort     = errors.New("url port must be 1-65535")
)

// ValidName reports whether name is a valid server name.
func ValidName(name string) bool { return NamePattern.MatchString(name) }

// CheckName returns an error wrapping ErrName, quoting name, when it is
// invalid. Names are not secret.
func CheckName(name string) error {
	if !ValidName(name) {
		return fmt.Errorf("name %q: %w", name, ErrName)
	}
	return nil
}

// Upstream is a parsed, valid upstream URL.
type Upstream struct {
	// TLS is true for https.
	TLS bool
	// Host is the lowercased host name or IP literal (no brackets).
	Host string
	// Port is the explicit port, or 80/443 by scheme.
	Port uint32
	// Authority is the lowercased host[:port] as written, the Host header
	// the upstream expects.
	Authority string
	// Path is the escaped path, "/" when the URL has none.
	Path string
}

// ParseURL checks raw as an upstream URL: absolute http or https, a valid
// host, a port 1-65535, no userinfo, query or fragment. Its errors wrap the sentinels above and never quote raw.
func ParseURL(raw string) (Upstream, error) {
	if raw == "" {
		return Upstream{}, ErrURLRequired
	}
	u, err := url.Parse(raw)
	if err != nil || u.Opaque != "" || u.Host == "" {
		// url.Parse's error quotes the URL, which may hold a secret.
		return Upstream{}, ErrURLInvalid
	}
	var port uint32
	switch u.Scheme {
	case "http":
		port = 80
	case "https":
		port = 443
	default:
		return Upstream{}, ErrURLScheme
	}
	if u.User != nil {
		return Upstream{}, ErrURLUserinfo
	}
	if u.RawQuery != "" || u.ForceQuery || u.Fragment != "" {
		return Upstream{}, ErrURLQuery
	}
	host := strings.ToLower(u.Hostname())
	if !ValidHost(host) {
		return Upstream{}, ErrURLHost
	}
	if p := u.Port(); p != "" {
		n, err := strconv.ParseUint(p, 10, 32)
		if err != nil || n == 0 || n > math.MaxUint16 {
			return Upstream{}, ErrURLPort
		}
		port = uint32(n)
	} else if strings.HasSuffix(u.Host, ":") {
		return Upstream{}, ErrURLPort
	}
	// url.Parse refuses control characters, and the escaped path has no
	// spaces: the path needs no further check.
	path := u.EscapedPath()
	if path == "" {
		path = "/"
	}
	return Upstream{TLS: u.Scheme == "https", Host: host, Port: port, Authority: strings.ToLower(u.Host), Path: path}, nil
}

// CheckURL is ParseURL for callers that only validate.
func CheckURL(raw string) error {
	_, err := ParseURL(raw)
	return err
}

// Redact returns raw with userinfo, query and fragment replaced, for a
// message that must show which URL is meant: "https://u:p@h/x?t=1" becomes
// "https://REDACTED@h/x?REDACTED". A string that does not parse is not
// shown at all.
func Redact(raw string) string {
	u, err := url.Parse(raw)
	if err != nil {
		return "(unparseable URL)"
	}
	if u.User != nil {
		u.User = url.User("REDACTED")
	}
	if u.RawQuery != "" || u.ForceQuery {
		u.RawQuery, u.ForceQuery = "REDACTED", false
	}
	if u.Fragment != "" {
		u.Fragment, u.RawFragment = "REDACTED", ""
	}
	return u.String()
}

var labelPattern = regexp.MustCompile(`^[a-z0-9_]([a-z0-9_-]{0,61}[a-z0-9_])?$`)

// ValidHost accepts an IP literal or an RFC 1123 host name (lowercase,
// allowing the underscores service records use), with an optional final
// dot.
func ValidHost(h string) bool {
	if net.ParseIP(h) != nil {
		return true
	}
	h = strings.TrimSuffix(h, ".")
	if h == "" || len(h) > 253 {
		return false
	}
	for _, l := range strings.Split(h, ".") {
		if !labelPattern.MatchString(l) {
			return false
		}
	}
	return true
}
