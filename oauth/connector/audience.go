package connector

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"time"
)

// TargetError is an IdP's refusal of a token for one resource or scope
// set (invalid_target, invalid_scope, ...). The refresh token itself is
// still good, so it does not end the grant.
type TargetError struct {
	Code        string
	Description string
}

func (e *TargetError) Error() string {
	msg := "identity provider refused the token for this audience: " + e.Code
	if e.Description != "" {
		msg += " (" + e.Description + ")"
	}
	return msg
}

// RefreshFor spends the refresh token for an access token scoped to one
// resource server: a refresh_token grant with the RFC 8707 resource
// parameter and, when scopes is not empty, scope narrowed as RFC 6749
// section 6 allows. It returns the new access token with the (possibly
// rotated) refresh token; the ID token is kept. x/oauth2 cannot add
// parameters to a refresh, hence the hand-made request. Errors never
// carry a token or the IdP's body.
func (o *OIDC) RefreshFor(ctx context.Context, t Tokens, resource string, scopes []string) (Tokens, error) {
	if t.RefreshToken == "" {
		return t, errors.New("no identity provider refresh token")
	}
	oc, _, _, err := o.discover(ctx)
	if err != nil {
		return t, err
	}
	form := url.Values{"grant_type": {"refresh_token"}, "refresh_token": {t.RefreshToken}}
	if resource != "" {
		form.Set("resource", resource)
	}
	if len(scopes) > 0 {
		form.Set("scope", strings.Join(scopes, " "))
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, oc.Endpoint.TokenURL, strings.NewReader(form.Encode()))
	if err != nil {
		return t, fmt.Errorf("refresh request: %w", err)
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set("Accept", "application/json")
	// RFC 6749 section 2.3.1: form-encode the credentials before Basic.
	req.SetBasicAuth(url.QueryEscape(o.cfg.ClientID), url.QueryEscape(o.cfg.ClientSecret))
	resp, err := o.client.Do(req)
	if err != nil {
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err
		}
		return t, fmt.Errorf("refresh at identity provider: %w", err)
	}
	defer resp.Body.Close()
	var body struct {
		AccessToken  string      `json:"access_token"`
		RefreshToken string      `json:"refresh_token"`
		TokenType    string      `json:"token_type"`
		ExpiresIn    json.Number `json:"expires_in"`
		Error        string      `json:"error"`
		Description  string      `json:"error_description"`
	}
	if err := json.NewDecoder(io.LimitReader(resp.Body, 1<<20)).Decode(&body); err != nil {
		return t, fmt.Errorf("refresh at identity provider: status %d, no JSON answer", resp.StatusCode)
	}
	if resp.StatusCode != http.StatusOK || body.Error != "" || body.AccessToken == "" {
		code := body.Error
		if code == "" {
			code = fmt.Sprintf("http_%d", resp.StatusCode)
		}
		switch {
		case code == "invalid_grant" || code == "unauthorized_client":
			return t, fmt.Errorf("%w: %s", ErrRefused, code)
		case resp.StatusCode >= 500:
			return t, fmt.Errorf("refresh at identity provider: status %d: %s", resp.StatusCode, code)
		}
		// The description is for the operator; an IdP that echoes the
		// request must not put the refresh token into Warden's errors.
		desc := strings.ReplaceAll(body.Description, t.RefreshToken, "[redacted]")
		if len(desc) > 200 {
			desc = desc[:200]
		}
		return t, &TargetError{Code: code, Description: desc}
	}
	next := Tokens{AccessToken: body.AccessToken, RefreshToken: body.RefreshToken, IDToken: t.IDToken, TokenType: body.TokenType}
	if next.RefreshToken == "" {
		next.RefreshToken = t.RefreshToken
	}
	if n, err := body.ExpiresIn.Int64(); err == nil && n > 0 {
		next.Expiry = o.now().Add(time.Duration(n) * time.Second)
	}
	return next, nil
}
