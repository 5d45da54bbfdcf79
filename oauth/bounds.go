package oauth

import (
	"net/http"
	"strings"
)

// Bounds of request parameters and forms. Everything an unauthenticated
// request can make Warden store (a pending sign-in holds state, scope,
// resources and the redirect URI) is bounded here, so that a pending
// record is a few kilobytes at most. Legitimate clients stay far below:
// MCP SDKs send a 43-character state.
const (
	maxState       = 1024
	maxURI         = 2048
	maxClientID    = 512 // a Client ID Metadata Document URL
	maxScope       = 1024
	maxScopes      = 32
	maxResources   = 16
	maxParam       = 256 // response_type, code_challenge, prompt, ...
	maxFormBody    = 16 << 10
	maxUsername    = 256
	maxPassword    = 1024
	maxRegistrBody = 64 << 10
)

// parseScope splits a scope parameter (RFC 6749 3.3); nil when absent.
func parseScope(raw string) ([]string, error) {
	if len(raw) > maxScope {
		return nil, oauthError(http.StatusBadRequest, "invalid_scope", "scope is too long")
	}
	f := strings.Fields(raw)
	if len(f) > maxScopes {
		return nil, oauthError(http.StatusBadRequest, "invalid_scope", "too many scopes")
	}
	for _, sc := range f {
		if !validScopeToken(sc) {
			return nil, oauthError(http.StatusBadRequest, "invalid_scope", "invalid scope token")
		}
	}
	if len(f) == 0 {
		return nil, nil
	}
	return f, nil
}

// validScopeToken reports whether s is a scope-token (RFC 6749 3.3).
func validScopeToken(s string) bool {
	if s == "" {
		return false
	}
	for _, r := range s {
		if r < 0x21 || r > 0x7e || r == '"' || r == '\\' {
			return false
		}
	}
	return true
}

func checkResources(rs []string) error {
	if len(rs) > maxResources {
		return oauthError(http.StatusBadRequest, "invalid_target", "too many resource parameters")
	}
	for _, r := range rs {
		if len(r) > maxURI {
			return oauthError(http.StatusBadRequest, "invalid_target", "resource is too long")
		}
	}
	return nil
}

// parseBrowserForm bounds and parses a browser request's query and form.
func parseBrowserForm(w http.ResponseWriter, r *http.Request) error {
	if len(r.URL.RawQuery) > maxFormBody {
		return pageError(http.StatusRequestURITooLong, "Request too large", "The request is larger than Warden accepts.")
	}
	r.Body = http.MaxBytesReader(w, r.Body, maxFormBody)
	if err := r.ParseForm(); err != nil {
		return pageError(http.StatusBadRequest, "Invalid request", "The request cannot be parsed or is too large.")
	}
	return nil
}
