package upstream

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

	"github.com/warden-mcp/warden/internal/store"
)

// RFC 8693 names.
const (
	grantTokenExchange = "urn:ietf:params:oauth:grant-type:token-exchange"
	grantJWTBearer     = "urn:ietf:params:oauth:grant-type:jwt-bearer"
	typeAccessToken    = "urn:ietf:params:oauth:token-type:access_token"
	typeJWT            = "urn:ietf:params:oauth:token-type:jwt"
)

// exchangeKind is the session kind of cached exchanged tokens; the id is
// "<grant>/<server>" and the value is sealed with the AAD
// "exchange/<grant>/<server>".
const exchangeKind = "upstream_exchange"

// exchange returns a token the IdP minted for the server's audience from
// the user's IdP token, cached sealed until shortly before it expires.
func (b *Broker) exchange(ctx context.Context, srv store.Server, g store.Grant) (Credential, error) {
	if b.o.IdP == nil || b.o.Exchange.TokenURL == "" {
		return Credential{}, fmt.Errorf("%w: token exchange is not configured (oauth.idp.token_exchange)", ErrUnsupported)
	}
	id := g.ID + "/" + srv.Name
	aad := "exchange/" + id
	if c, ok := b.cachedToken(ctx, exchangeKind, id, aad); ok {
		return c, nil
	}
	v, err := b.once(ctx, "exchange/"+id, func() (any, error) {
		if c, ok := b.cachedToken(ctx, exchangeKind, id, aad); ok {
			return c, nil
		}
		subject, err := b.idp(ctx, store.Server{Name: srv.Name, Credential: store.CredentialExchange}, g)
		if err != nil {
			return nil, err
		}
		tok, err := b.postExchange(ctx, srv, g, strings.TrimPrefix(subject.Value, "Bearer "))
		if err != nil {
			var re *RefusedError
			if errors.As(err, &re) {
				_ = b.record(ctx, store.AuditEvent{Type: "credential_exchange_refused", Subject: g.Subject, ClientID: g.ClientID, GrantID: g.ID, Server: srv.Name,
					Reason: re.Error(), Details: map[string]any{"mode": "exchange", "audience": srv.IdPAudience}})
			}
			return nil, err
		}
		if err := b.record(ctx, store.AuditEvent{Type: "credential_exchanged", Subject: g.Subject, ClientID: g.ClientID, GrantID: g.ID, Server: srv.Name,
			Details: map[string]any{"mode": "exchange", "audience": srv.IdPAudience, "scopes": srv.IdPScopes, "flavor": b.o.Exchange.Flavor, "expires_at": tok.Expiry}}); err != nil {
			return nil, err
		}
		if err := b.cacheToken(ctx, exchangeKind, id, aad, tok); err != nil {
			return nil, err
		}
		return Credential{Header: "authorization", Value: "Bearer " + tok.AccessToken, Expiry: tok.Expiry}, nil
	})
	if err != nil {
		return Credential{}, err
	}
	return v.(Credential), nil
}

// postExchange makes the token request. Warden authenticates with
// client_secret_basic (RFC 6749 2.3.1: both parts form-encoded first).
func (b *Broker) postExchange(ctx context.Context, srv store.Server, g store.Grant, subjectToken string) (Secret, error) {
	x := b.o.Exchange
	form := url.Values{}
	scope := strings.Join(srv.IdPScopes, " ")
	switch x.Flavor {
	case FlavorEntraOBO:
		// Entra ID names the downstream API by scope
		// (api://<app>/.default), not by audience.
		form.Set("grant_type", grantJWTBearer)
		form.Set("assertion", subjectToken)
		form.Set("requested_token_use", "on_behalf_of")
		if scope == "" && srv.IdPAudience != "" {
			scope = strings.TrimSuffix(srv.IdPAudience, "/") + "/.default"
		}
	default:
		form.Set("grant_type", grantTokenExchange)
		form.Set("subject_token", subjectToken)
		form.Set("subject_token_type", typeAccessToken)
		form.Set("requested_token_type", typeAccessToken)
		if srv.IdPAudience != "" {
			form.Set("audience", srv.IdPAudience)
			if x.Resource {
				form.Set("resource", srv.IdPAudience)
			}
		}
		if x.Actor != nil {
			actor, err := x.Actor(g, x.TokenURL)
			if err != nil {
				return Secret{}, fmt.Errorf("actor token: %w", err)
			}
			form.Set("actor_token", actor)
			form.Set("actor_token_type", typeJWT)
		}
	}
	if scope != "" {
		form.Set("scope", scope)
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, x.TokenURL, strings.NewReader(form.Encode()))
	if err != nil {
		return Secret{}, fmt.Errorf("token exchange request: %w", err)
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set("Accept", "application/json")
	req.SetBasicAuth(url.QueryEscape(x.ClientID), url.QueryEscape(x.ClientSecret))
	return tokenResponse(b.o.HTTPClient, req, b.o.Now())
}

// tokenResponse sends an OAuth token request and reads the answer. Errors
// carry the OAuth error code and a short description, never the body
// (which may echo tokens).
func tokenResponse(c *http.Client, req *http.Request, now time.Time) (Secret, error) {
	resp, err := c.Do(req)
	if err != nil {
		return Secret{}, fmt.Errorf("token endpoint %s: %w", req.URL.Host, redactURLError(err))
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return Secret{}, fmt.Errorf("token endpoint %s: read answer: %w", req.URL.Host, err)
	}
	var body struct {
		AccessToken  string          `json:"access_token"`
		RefreshToken string          `json:"refresh_token"`
		TokenType    string          `json:"token_type"`
		ExpiresIn    json.Number     `json:"expires_in"`
		Scope        string          `json:"scope"`
		Error        string          `json:"error"`
		Description  string          `json:"error_description"`
		Extra        json.RawMessage `json:"-"`
	}
	if strings.Contains(resp.Header.Get("Content-Type"), "application/x-www-form-urlencoded") {
		// GitHub answers in form encoding unless asked otherwise.
		q, _ := url.ParseQuery(string(raw))
		body.AccessToken, body.RefreshToken, body.TokenType = q.Get("access_token"), q.Get("refresh_token"), q.Get("token_type")
		body.ExpiresIn, body.Error, body.Description = json.Number(q.Get("expires_in")), q.Get("error"), q.Get("error_description")
	} else if err := json.Unmarshal(raw, &body); err != nil {
		return Secret{}, fmt.Errorf("token endpoint %s answered %d with no JSON", req.URL.Host, resp.StatusCode)
	}
	if body.Error != "" || resp.StatusCode != http.StatusOK || body.AccessToken == "" {
		code := body.Error
		if code == "" {
			code = fmt.Sprintf("http_%d", resp.StatusCode)
		}
		desc := body.Description
		if len(desc) > 200 {
			desc = desc[:200]
		}
		if resp.StatusCode >= 500 {
			return Secret{}, fmt.Errorf("token endpoint %s answered %d: %s", req.URL.Host, resp.StatusCode, code)
		}
		return Secret{}, &RefusedError{Status: resp.StatusCode, Code: code, Description: desc}
	}
	s := Secret{AccessToken: body.AccessToken, RefreshToken: body.RefreshToken, TokenType: body.TokenType}
	if n, err := body.ExpiresIn.Int64(); err == nil && n > 0 {
		s.Expiry = now.Add(time.Duration(n) * time.Second)
	}
	return s, nil
}

// redactURLError drops the URL from a transport error (it names only the
// endpoint, but keep error strings free of query strings).
func redactURLError(err error) error {
	var ue *url.Error
	if errors.As(err, &ue) {
		return ue.Err
	}
	return err
}
