package oauth

import (
	"context"
	"errors"
	"mime"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/warden-mcp/warden/internal/grant"
	"github.com/warden-mcp/warden/internal/store"
)

// Grant types the token endpoint serves.
const (
	grantCode  = "authorization_code"
	grantRefr  = "refresh_token"
	grantCreds = "client_credentials"
)

// grantHandler serves one grant_type at the token endpoint (as Dex's
// server/grants does). The endpoint owns what every grant shares: method
// and body rules, parsing the request once, client authentication,
// checking that the client is registered for the grant type, metrics and
// writing the answer. A new grant type (token exchange, jwt-bearer) is one
// new file with one handler, registered in New.
type grantHandler interface {
	grantType() string
	// issue answers an authenticated client's request; an *Error is the
	// OAuth error to send, anything else is a server error.
	issue(ctx context.Context, req *tokenRequest) (tokenResponse, error)
}

// tokenRequest is the token endpoint request, parsed and bounded once.
type tokenRequest struct {
	GrantType string
	// Client is the authenticated client (or the identified public one).
	Client store.Client

	// authorization_code
	Code, RedirectURI, CodeVerifier string
	// refresh_token
	RefreshToken string

	// Scopes is the requested scope (RFC 6749 3.3); nil when absent.
	Scopes []string
	// Resources are the resource indicators (RFC 8707).
	Resources []string
}

// tokenResponse is RFC 6749 5.1.
type tokenResponse struct {
	AccessToken  string `json:"access_token"`
	TokenType    string `json:"token_type"`
	ExpiresIn    int64  `json:"expires_in"`
	RefreshToken string `json:"refresh_token,omitempty"`
	Scope        string `json:"scope,omitempty"`
}

func (s *Server) tokenResponse(t grant.Tokens) tokenResponse {
	return tokenResponse{AccessToken: t.AccessToken, TokenType: "Bearer", RefreshToken: t.RefreshToken,
		ExpiresIn: int64(t.ExpiresAt.Sub(s.now()) / time.Second), Scope: strings.Join(t.Scopes, " ")}
}

// Bounds of token endpoint parameters: Warden's own handles are 50
// characters; nothing legitimate comes near these.
const (
	maxTokenBody   = 64 << 10
	maxHandleParam = 512
)

// parseForm checks method and content type, bounds and parses the body of
// a token, revocation or introspection request.
func parseForm(w http.ResponseWriter, r *http.Request) error {
	if r.Method != http.MethodPost {
		return errMethod("POST")
	}
	mt, _, _ := mime.ParseMediaType(r.Header.Get("Content-Type"))
	if mt != "application/x-www-form-urlencoded" {
		return errInvalidRequest("the body must be application/x-www-form-urlencoded")
	}
	r.Body = http.MaxBytesReader(w, r.Body, maxTokenBody)
	if err := r.ParseForm(); err != nil {
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			return err
		}
		return errInvalidRequest("the body cannot be parsed")
	}
	// Tokens belong in the body, never in the query string.
	if r.URL.RawQuery != "" {
		return errInvalidRequest("parameters must be sent in the body")
	}
	for k, v := range r.PostForm {
		if len(v) > 1 && k != "resource" {
			return errInvalidRequest("parameter " + k + " appears more than once")
		}
	}
	return nil
}

// parseTokenRequest reads the grant parameters of an authenticated
// client's request.
func parseTokenRequest(f url.Values, c store.Client) (*tokenRequest, error) {
	req := &tokenRequest{
		GrantType: f.Get("grant_type"), Client: c,
		Code: f.Get("code"), RedirectURI: f.Get("redirect_uri"), CodeVerifier: f.Get("code_verifier"),
		RefreshToken: f.Get("refresh_token"), Resources: f["resource"],
	}
	for _, v := range []string{req.Code, req.RefreshToken, req.CodeVerifier} {
		if len(v) > maxHandleParam {
			return nil, errInvalidRequest("a parameter is too long")
		}
	}
	if len(req.RedirectURI) > maxURI {
		return nil, errInvalidRequest("redirect_uri is too long")
	}
	scopes, err := parseScope(f.Get("scope"))
	if err != nil {
		return nil, err
	}
	req.Scopes = scopes
	if err := checkResources(req.Resources); err != nil {
		return nil, err
	}
	return req, nil
}

// serveToken is the token endpoint (RFC 6749 3.2, OAuth 2.1 3.2).
func (s *Server) serveToken(w http.ResponseWriter, r *http.Request) error {
	if err := s.limit(r, s.limits.token, "token"); err != nil {
		return err
	}
	if err := parseForm(w, r); err != nil {
		return err
	}
	gt := r.PostForm.Get("grant_type")
	resp, err := s.token(r, gt)
	result := "issued"
	if err != nil {
		result = s.asError(r, err).Code
	}
	s.metrics.tokens.WithLabelValues(s.grantLabel(gt), result).Inc()
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, resp)
	return nil
}

func (s *Server) token(r *http.Request, gt string) (tokenResponse, error) {
	client, err := s.authenticateClient(r)
	if err != nil {
		return tokenResponse{}, err
	}
	h, ok := s.grantTypes[gt]
	if !ok {
		return tokenResponse{}, oauthError(http.StatusBadRequest, "unsupported_grant_type", "grant_type must be one of "+strings.Join(s.supportedGrantTypes(), ", "))
	}
	if !clientAllows(client, gt) {
		return tokenResponse{}, errUnauthorizedClient("the client is not registered for the " + gt + " grant")
	}
	req, err := parseTokenRequest(r.PostForm, client)
	if err != nil {
		return tokenResponse{}, err
	}
	resp, err := h.issue(r.Context(), req)
	if err != nil {
		return resp, err
	}
	// A client that completed a grant is in use: it no longer expires
	// as an abandoned registration.
	s.markClientUsed(r.Context(), client)
	return resp, nil
}

func (s *Server) grantLabel(gt string) string {
	if _, ok := s.grantTypes[gt]; ok {
		return gt
	}
	return "other"
}

// grantError maps the grant service's errors to OAuth errors; anything
// else stays a server error.
func grantError(err error, replay string) error {
	switch {
	case errors.Is(err, grant.ErrReplay), errors.Is(err, grant.ErrOtherClient):
		return errInvalidGrant(replay)
	case errors.Is(err, grant.ErrInvalid):
		return errInvalidGrant("the grant is invalid or expired")
	case errors.Is(err, grant.ErrRevoked):
		return errInvalidGrant("the authorization was revoked or has expired")
	}
	return err
}
