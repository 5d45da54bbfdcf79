package config

import (
	"strings"
	"testing"
)

func TestOAuthValidationReportsEveryProblem(t *testing.T) {
	p := write(t, `
oauth:
  code_ttl: 2m
  scopes: ["ok", "bad scope"]
  registration:
    mode: token
    initial_access_token: short
  clients:
    - id: "a/b"
      grant_types: [implicit]
    - id: svc
      grant_types: [client_credentials]
  rate_limit:
    register_per_minute: 0
  connector:
    type: oidc
    oidc:
      issuer: not-a-url
`)
	_, err := Load(p)
	if err == nil {
		t.Fatal("invalid oauth section accepted")
	}
	for _, want := range []string{
		"oauth.code_ttl", "oauth.scopes[1]", "oauth.registration.initial_access_token", "oauth.clients[0].id",
		"oauth.clients[0].grant_types", "oauth.clients[1].grant_types", "oauth.rate_limit", "oauth.connector.oidc.issuer",
		"oauth.connector.oidc.client_id",
	} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error lacks %s:\n%v", want, err)
		}
	}
}

func TestOAuthOIDCFromFileAndEnv(t *testing.T) {
	t.Setenv("WARDEN_OAUTH_CONNECTOR_OIDC_CLIENT_SECRET", "from-env")
	p := write(t, `
public_url: https://mcp.example.com
oauth:
  registration:
    mode: allowlist
    allowed_redirect_hosts: [claude.ai, 127.0.0.1]
  connector:
    type: oidc
    oidc:
      issuer: https://login.microsoftonline.com/tenant/v2.0
      client_id: warden
      claims:
        subject: oid
      auth_params:
        domain_hint: example.com
`)
	c, err := Load(p)
	if err != nil {
		t.Fatal(err)
	}
	o := c.OAuth.Connector.OIDC
	if o.ClientSecret != "from-env" || o.Claims.Subject != "oid" || o.Claims.Email != "email" || o.AuthParams["domain_hint"] != "example.com" {
		t.Fatalf("oidc connector: %+v", o)
	}
	if !c.OAuth.CIMD.Enabled || c.OAuth.CIMD.AllowPrivateAddresses || len(c.HTTP.TrustedProxies) != 2 {
		t.Fatalf("defaults: %+v %+v", c.OAuth.CIMD, c.OAuth.RateLimit)
	}
}
