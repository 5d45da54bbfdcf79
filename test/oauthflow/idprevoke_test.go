package oauthflow

import (
	"bytes"
	"context"
	"encoding/json"
	"log/slog"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/warden-mcp/warden/internal/grant"
	"github.com/warden-mcp/warden/internal/handle"
	"github.com/warden-mcp/warden/oauth"
	"github.com/warden-mcp/warden/oauth/connector"
	"github.com/warden-mcp/warden/test/idp"
)

type syncLog struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *syncLog) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *syncLog) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// revokeEnv signs Alice in through the IdP and returns her access handle
// and the IdP refresh token sealed in her grant.
func revokeEnv(t *testing.T) (*harness, *syncLog, string, string) {
	logs := &syncLog{}
	h := start(t, 0, func(o *oauth.Options) {
		o.Clients = []oauth.Client{{ID: "cli", RedirectURIs: []string{"http://127.0.0.1:9/cb"}}}
		o.IdPRevokeBackoff = 10 * time.Millisecond
		o.Logger = slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	})
	h.Grants.OnRevoke(h.Server.RevokeAtIdP) // as warden serve wires it
	tok := h.codeGrant(t, h.ResourceURL("hr"), true)
	access := tok["access_token"].(string)
	_, g, err := h.Store.ResolveHandle(context.Background(), handle.Digest(access))
	if err != nil {
		t.Fatal(err)
	}
	raw, err := h.Keyring.Open(g.Upstream["idp"], []byte(g.ID))
	if err != nil {
		t.Fatal(err)
	}
	var it connector.Tokens
	if err := json.Unmarshal(raw, &it); err != nil || it.RefreshToken == "" {
		t.Fatalf("no IdP refresh token in the grant: %v", err)
	}
	return h, logs, access, it.RefreshToken
}

// introspect asks the IdP (RFC 7662, as Warden's client) whether its
// refresh token is active.
func introspect(t *testing.T, h *harness, token string) bool {
	t.Helper()
	ep, _ := h.getJSON(h.IdP.Issuer + "/.well-known/openid-configuration")["introspection_endpoint"].(string)
	req, _ := http.NewRequest("POST", ep, strings.NewReader(url.Values{"token": {token}}.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.SetBasicAuth("warden", idpClientSecret)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var m struct {
		Active bool `json:"active"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&m); err != nil || resp.StatusCode != 200 {
		t.Fatalf("introspection: %d %v", resp.StatusCode, err)
	}
	return m.Active
}

// Revoking a user in Warden revokes the IdP refresh token of their grant
// at the IdP (RFC 7009): the IdP then reports it inactive.
func TestRevocationRevokesTheIdPRefreshToken(t *testing.T) {
	h, logs, _, rt := revokeEnv(t)
	if !introspect(t, h, rt) {
		t.Fatal("the IdP refresh token is inactive before any revocation")
	}
	if _, err := h.Grants.Revoke(context.Background(), "token:admin", grant.Target{Subject: idp.Alice}, "offboarded"); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(30 * time.Second)
	for introspect(t, h, rt) {
		if time.Now().After(deadline) {
			t.Fatalf("the IdP refresh token is still active at the IdP\n%s", logs)
		}
		time.Sleep(20 * time.Millisecond)
	}
	if strings.Contains(logs.String(), rt) {
		t.Fatal("the IdP refresh token is in the log")
	}
}

// With the IdP down, the local revocation is in force at once, and the
// IdP revocation is retried (logged, never the token).
func TestIdPDownDoesNotDelayRevocation(t *testing.T) {
	h, logs, access, rt := revokeEnv(t)
	h.IdP.Stop()
	ctx := context.Background()
	res, err := h.Grants.Revoke(ctx, "token:admin", grant.Target{Subject: idp.Alice}, "offboarded")
	if err != nil || len(res.Revoked) != 1 {
		t.Fatalf("revoke: %v %v", res, err)
	}
	if _, g, err := h.Store.ResolveHandle(ctx, handle.Digest(access)); err != nil || !g.Revoked() {
		t.Fatalf("grant right after Revoke returned: revoked=%v %v", g.Revoked(), err)
	}
	deadline := time.Now().Add(30 * time.Second)
	for !strings.Contains(logs.String(), "idp refresh token revocation failed; retrying") {
		if time.Now().After(deadline) {
			t.Fatalf("no retry logged:\n%s", logs)
		}
		time.Sleep(20 * time.Millisecond)
	}
	if strings.Contains(logs.String(), rt) {
		t.Fatal("the IdP refresh token is in the log")
	}
}
