package console

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"

	"github.com/warden-mcp/warden/internal/adminauth"
)

// apiError is an answer of the admin API other than 2xx.
type apiError struct {
	status int
	msg    string
}

func (e *apiError) Error() string { return e.msg }

// buffer is a ResponseWriter that keeps the answer of an in-process call.
type buffer struct {
	h      http.Header
	status int
	body   bytes.Buffer
}

func (b *buffer) Header() http.Header { return b.h }
func (b *buffer) WriteHeader(code int) {
	if b.status == 0 {
		b.status = code
	}
}
func (b *buffer) Write(p []byte) (int, error) {
	if b.status == 0 {
		b.status = http.StatusOK
	}
	return b.body.Write(p)
}

// request builds an in-process API request made by p.
func request(ctx context.Context, p adminauth.Principal, method, path string, in any) (*http.Request, error) {
	var body io.Reader = http.NoBody
	if in != nil {
		raw, err := json.Marshal(in)
		if err != nil {
			return nil, err
		}
		body = bytes.NewReader(raw)
	}
	req, err := http.NewRequestWithContext(adminauth.WithPrincipal(ctx, p), method, path, body)
	if err != nil {
		return nil, err
	}
	req.Header.Set("Content-Type", "application/json")
	return req, nil
}

// call runs one admin API request as p and decodes its JSON answer into
// out. The API checks p's role exactly as for a token.
func (s *Server) call(ctx context.Context, p adminauth.Principal, method, path string, in, out any) error {
	req, err := request(ctx, p, method, path, in)
	if err != nil {
		return err
	}
	b := &buffer{h: http.Header{}}
	s.o.API.ServeHTTP(b, req)
	if b.status/100 != 2 {
		var e struct {
			Error string `json:"error"`
		}
		msg := fmt.Sprintf("the admin API answered %d", b.status)
		if json.Unmarshal(b.body.Bytes(), &e) == nil && e.Error != "" {
			msg = e.Error
		}
		return &apiError{status: b.status, msg: msg}
	}
	if out != nil {
		if err := json.Unmarshal(b.body.Bytes(), out); err != nil {
			return fmt.Errorf("decode %s %s: %w", method, path, err)
		}
	}
	return nil
}
