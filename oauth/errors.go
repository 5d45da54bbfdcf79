package oauth

import (
	"encoding/json"
	"errors"
	"net/http"
	"net/url"
)

// Error is an OAuth error that knows how it renders:
//   - as JSON (token, registration, revocation, introspection: RFC 6749
//     5.2, RFC 7591 3.2.2), the default;
//   - as a redirect to the client with error, error_description, state
//     and iss (RFC 6749 4.1.2.1, RFC 9207), once redirectTo named a
//     trusted redirect URI;
//   - as an error page for the user, when Title is set: when the client
//     or its redirect URI cannot be trusted, the authorization server
//     must not redirect (it would become an open redirector) and informs
//     the resource owner instead.
//
// Handlers return it; the endpoint wrappers render it. Anything else a
// handler returns is logged and answered as server_error.
type Error struct {
	Status      int
	Code        string
	Description string
	// Title and Message make the error a page for the user.
	Title, Message string
	// Header is added to the response (Retry-After, WWW-Authenticate).
	Header http.Header

	redirectURI, state string
	redirect           bool
}

func (e *Error) Error() string {
	if e.Title != "" {
		return e.Title + ": " + e.Message
	}
	return e.Code + ": " + e.Description
}

// redirectTo makes e go back to the client at redirectURI with state.
func (e *Error) redirectTo(redirectURI, state string) *Error {
	c := *e
	c.redirect, c.redirectURI, c.state = true, redirectURI, state
	return &c
}

func oauthError(status int, code, desc string) *Error {
	return &Error{Status: status, Code: code, Description: desc}
}

func errInvalidRequest(desc string) *Error {
	return oauthError(http.StatusBadRequest, "invalid_request", desc)
}

func errInvalidGrant(desc string) *Error {
	return oauthError(http.StatusBadRequest, "invalid_grant", desc)
}

func errInvalidClient(desc string) *Error {
	return &Error{Status: http.StatusUnauthorized, Code: "invalid_client", Description: desc, Header: http.Header{"WWW-Authenticate": {`Basic realm="warden"`}}}
}

func errUnauthorizedClient(desc string) *Error {
	return oauthError(http.StatusBadRequest, "unauthorized_client", desc)
}

func errMethod(allow string) *Error {
	return &Error{Status: http.StatusMethodNotAllowed, Code: "invalid_request", Description: "use " + allow,
		Title: "Method not allowed", Message: "Use " + allow + ".", Header: http.Header{"Allow": {allow}}}
}

var errServer = oauthError(http.StatusInternalServerError, "server_error", "the authorization server could not complete the request")

// pageError is shown to the user on an error page.
func pageError(status int, title, message string) *Error {
	return &Error{Status: status, Title: title, Message: message}
}

// jsonEndpoint serves a JSON endpoint: errors render as JSON.
func (s *Server) jsonEndpoint(h func(http.ResponseWriter, *http.Request) error) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if err := h(w, r); err != nil {
			s.render(w, r, s.asError(r, err), false)
		}
	})
}

// pageEndpoint serves a browser endpoint: errors render as a page or a
// redirect to the client.
func (s *Server) pageEndpoint(h func(http.ResponseWriter, *http.Request) error) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if err := h(w, r); err != nil {
			s.render(w, r, s.asError(r, err), true)
		}
	})
}

func (s *Server) asError(r *http.Request, err error) *Error {
	var e *Error
	if errors.As(err, &e) {
		return e
	}
	var mbe *http.MaxBytesError
	if errors.As(err, &mbe) {
		return &Error{Status: http.StatusRequestEntityTooLarge, Code: "invalid_request", Description: "the request is too large",
			Title: "Request too large", Message: "The request is larger than Warden accepts."}
	}
	s.log.Error("request failed", "path", r.URL.Path, "err", err)
	c := *errServer
	c.Title, c.Message = "Something went wrong", "Warden could not complete the request. Try again later."
	return &c
}

func (s *Server) render(w http.ResponseWriter, r *http.Request, e *Error, page bool) {
	for k, v := range e.Header {
		w.Header()[k] = v
	}
	switch {
	case e.redirect:
		p := url.Values{"error": {e.Code}}
		if e.Description != "" {
			p.Set("error_description", e.Description)
		}
		s.redirectTo(w, r, e.redirectURI, e.state, p)
	case page || (e.Title != "" && e.Code == ""):
		if e.Title == "" {
			e = &Error{Status: e.Status, Title: "Invalid request", Message: e.Code + ": " + e.Description}
		}
		status := e.Status
		if status == 0 {
			status = http.StatusBadRequest
		}
		s.pages.render(w, status, "error.html", e)
	default:
		body := map[string]string{"error": e.Code}
		if e.Description != "" {
			body["error_description"] = e.Description
		}
		writeJSON(w, e.Status, body)
	}
}

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

// redirectTo sends the browser back to the client with params plus state
// and iss: every authorization response carries iss, errors included
// (RFC 9207 2). 303 makes the browser use GET even after a form POST.
func (s *Server) redirectTo(w http.ResponseWriter, r *http.Request, redirectURI, state string, params url.Values) {
	u, err := url.Parse(redirectURI)
	if err != nil {
		s.pages.render(w, http.StatusBadRequest, "error.html", pageError(http.StatusBadRequest, "Invalid redirect URI", "The client's redirect URI cannot be parsed."))
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
