package adminauth

import (
	"crypto/sha256"
	"testing"
)

func sum(s string) []byte { b := sha256.Sum256([]byte(s)); return b[:] }

func TestTokensAuthenticate(t *testing.T) {
	ts := Tokens{
		{Name: "admin", Sum: sum("a"), Role: RoleAdmin},
		{Name: "siem", Sum: sum("s"), Role: RoleAuditor},
		{Name: "hr-ci", Sum: sum("h"), Role: RoleOperator, ServerLabels: map[string]string{"team": "hr"}},
	}
	for _, c := range []struct {
		token, name string
		role        Role
		ok          bool
	}{
		{"a", "token:admin", RoleAdmin, true},
		{"s", "token:siem", RoleAuditor, true},
		{"h", "token:hr-ci", RoleOperator, true},
		{"x", "", "", false},
	} {
		p, ok := ts.Authenticate(sum(c.token))
		if ok != c.ok || p.Name != c.name || p.Role != c.role {
			t.Errorf("token %q: got %+v %v", c.token, p, ok)
		}
	}
	if _, ok := ts.Authenticate(nil); ok {
		t.Error("an empty digest authenticated")
	}
	if _, ok := (Tokens{{Name: "empty", Role: RoleAdmin}}).Authenticate(nil); ok {
		t.Error("a token without a digest matched an empty one")
	}
}

func TestPermissions(t *testing.T) {
	hr := map[string]string{"team": "hr", "env": "prod"}
	bi := map[string]string{"team": "bi"}
	admin := Principal{Role: RoleAdmin}
	op := Principal{Role: RoleOperator, ServerLabels: map[string]string{"team": "hr"}}
	unscoped := Principal{Role: RoleOperator}
	aud := Principal{Role: RoleAuditor}
	for _, c := range []struct {
		name string
		p    Principal
		perm Permission
		want bool
	}{
		{"admin administers", admin, Administer, true},
		{"operator reads", op, Read, true},
		{"operator revokes", op, Revoke, true},
		{"operator manages servers", op, ManageServers, true},
		{"operator does not administer", op, Administer, false},
		{"auditor reads", aud, Read, true},
		{"auditor does not revoke", aud, Revoke, false},
		{"auditor does not manage servers", aud, ManageServers, false},
		{"no role reads nothing", Principal{}, Read, false},
	} {
		if got := c.p.Can(c.perm); got != c.want {
			t.Errorf("%s: Can(%v) = %v", c.name, c.perm, got)
		}
	}
	if !admin.CoversServer(bi) || !op.CoversServer(hr) || op.CoversServer(bi) || unscoped.CoversServer(hr) || aud.CoversServer(hr) {
		t.Error("CoversServer wrong")
	}
}

func TestBindings(t *testing.T) {
	bs := Bindings{
		{Role: RoleAuditor, Groups: []string{"security"}},
		{Role: RoleAdmin, Users: []string{"root@example.com"}},
		{Role: RoleOperator, Claim: "roles", Values: []string{"Warden.HR"}, ServerLabels: map[string]string{"team": "hr"}},
		{Role: RoleAdmin, Groups: []string{"platform"}},
	}
	for _, c := range []struct {
		name string
		id   Identity
		role Role
		ok   bool
	}{
		{"group", Identity{Subject: "s1", Groups: []string{"security"}}, RoleAuditor, true},
		{"email, any case", Identity{Subject: "s2", Email: "ROOT@example.com"}, RoleAdmin, true},
		{"subject", Identity{Subject: "root@example.com"}, RoleAdmin, true},
		{"claim list", Identity{Subject: "s3", Claims: map[string]any{"roles": []any{"x", "Warden.HR"}}}, RoleOperator, true},
		{"claim string", Identity{Subject: "s3", Claims: map[string]any{"roles": "Warden.HR"}}, RoleOperator, true},
		{"strongest wins", Identity{Subject: "s4", Groups: []string{"security", "platform"}}, RoleAdmin, true},
		{"no match", Identity{Subject: "s5", Groups: []string{"sales"}}, "", false},
		{"no subject", Identity{Groups: []string{"platform"}}, "", false},
	} {
		p, ok := bs.Principal(c.id)
		if ok != c.ok || p.Role != c.role {
			t.Errorf("%s: got %+v %v", c.name, p, ok)
			continue
		}
		if ok && p.Name != "user:"+c.id.Subject {
			t.Errorf("%s: actor %q", c.name, p.Name)
		}
	}
	p, _ := bs.Principal(Identity{Subject: "s3", Claims: map[string]any{"roles": "Warden.HR"}})
	if p.ServerLabels["team"] != "hr" {
		t.Errorf("operator scope lost: %+v", p)
	}
}
