package oauth

import (
	"encoding/json"
	"net/http"
	"net/url"
)

// pageError is shown to the user on an error page. RFC 6749 section
// 4.1.2.1: when the client or its redirect URI cannot be trusted, the
// authorization server must not redirect (it would become an open
// redirector) and informs the resource owner instead.
type pageError struct {
	Status  int
	Title   string
	Message string
}

func (e pageError) Error() string { return e.Title + ": " + e.Message }

// redirectError is sent back to a trusted redirect URI with error,
// error_description, state and iss (RFC 6749 4.1.2.1, RFC 9207).
type redirectError struct {
	Code        string
	Description string
}

func (e redirectError) Error() string { return e.Code + ": " + e.Description }

// jsonError is the JSON error body of the token endpoint (RFC 6749 5.2),
// the registration endpoint (RFC 7591 3.2.2), revocation (RFC 7009 2.2.1)
// and introspection. Status 401 for invalid_client adds a Basic challenge
// (RFC 6749 5.2).
type jsonError struct {
	Status      int
	Code        string
	Description string
}

func (e jsonError) Error() string { return e.Code + ": " + e.Description }

func errInvalidRequest(desc string) jsonError {
	return jsonError{Status: http.StatusBadRequest, Code: "invalid_request", Description: desc}
}

func errInvalidGrant(desc string) jsonError {
	return jsonError{Status: http.StatusBadRequest, Code: "invalid_grant", Description: desc}
}

func errInvalidClient(desc string) jsonError {
	return jsonError{Status: http.StatusUnauthorized, Code: "invalid_client", Description: desc}
}

var errServer = jsonError{Status: http.StatusInternalServerError, Code: "server_error", Description: "the authorization server could not complete the request"}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	// RFC 6749 5.1 / 5.2: responses carrying tokens or about tokens must
	// not be cached.
	w.Header().Set("Cache-Control", "no-store")
	w.Header().Set("Pragma", "no-cache")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

// writeBody encodes v as the response body; headers are the caller's.
func writeBody(w http.ResponseWriter, v any) {
	_ = json.NewEncoder(w).Encode(v)
}

func writeJSONError(w http.ResponseWriter, e jsonError) {
	if e.Status == http.StatusUnauthorized {
		w.Header().Set("WWW-Authenticate", `Basic realm="warden"`)
	}
	body := map[string]string{"error": e.Code}
	if e.Description != "" {
		body["error_description"] = e.Description
	}
	writeJSON(w, e.Status, body)
}

// redirectTo sends the browser back to the client with params plus state
// and iss. 303 makes the browser use GET even after a form POST.
func (s *Server) redirectTo(w http.ResponseWriter, r *http.Request, redirectURI, state string, params url.Values) {
	u, err := url.Parse(redirectURI)
	if err != nil {
		s.renderError(w, r, pageError{Status: http.StatusBadRequest, Title: "Invalid redirect URI", Message: "The client's redirect URI cannot be parsed."})
		return
	}
	q := u.Query()
	for k, vs := range params {
		q[k] = vs
	}
	if state != "" {
		q.Set("state", state)
	}
	q.Set("iss", s.issuer)
	u.RawQuery = q.Encode()
	w.Header().Set("Cache-Control", "no-store")
	http.Redirect(w, r, u.String(), http.StatusSeeOther)
}

func (s *Server) redirectError(w http.ResponseWriter, r *http.Request, redirectURI, state string, e redirectError) {
	p := url.Values{"error": {e.Code}}
	if e.Description != "" {
		p.Set("error_description", e.Description)
	}
	s.redirectTo(w, r, redirectURI, state, p)
}
