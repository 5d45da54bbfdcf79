// Package bearer reads the token of an "Authorization: Bearer" header
// (RFC 6750 2.1), the one way Warden's listeners do it: ext_authz, the
// OAuth server (registration tokens, initial access tokens) and the admin
// API.
package bearer

import "strings"

// Token returns the token of an Authorization header value. present tells
// whether a header was sent at all, so callers can answer a missing
// credential (no error code) differently from a malformed one
// (error="invalid_token"). The scheme is case-insensitive; the token must
// be one non-empty b64token with no spaces or commas (a list of
// credentials is not one token).
func Token(header string) (token string, present bool) {
	if header == "" {
		return "", false
	}
	scheme, tok, ok := strings.Cut(strings.TrimSpace(header), " ")
	if !ok || !strings.EqualFold(scheme, "bearer") {
		return "", true
	}
	tok = strings.TrimSpace(tok)
	if tok == "" || strings.ContainsAny(tok, " ,\t") {
		return "", true
	}
	return tok, true
}
