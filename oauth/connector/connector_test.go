package connector

import (
	"context"
	"errors"
	"testing"

	"golang.org/x/crypto/bcrypt"
)

var names = ClaimNames{Subject: "sub", Email: "email", Name: "name", Groups: "groups"}

func TestMapClaims(t *testing.T) {
	for _, tc := range []struct {
		name   string
		claims map[string]any
		names  ClaimNames
		want   Identity
		err    bool
	}{
		{"standard", map[string]any{"sub": "u1", "email": "a@x", "email_verified": true, "name": "A", "groups": []any{"g1", "g2", 3}},
			names, Identity{Subject: "u1", Email: "a@x", Name: "A", Groups: []string{"g1", "g2"}}, false},
		{"unverified email dropped", map[string]any{"sub": "u1", "email": "a@x", "email_verified": false}, names, Identity{Subject: "u1"}, false},
		{"single group string", map[string]any{"sub": "u1", "groups": "admins"}, names, Identity{Subject: "u1", Groups: []string{"admins"}}, false},
		{"entra oid and roles", map[string]any{"sub": "pairwise", "oid": "0000-1111", "preferred_username": "a@corp", "roles": []any{"Reader"}},
			ClaimNames{Subject: "oid", Email: "preferred_username", Groups: "roles"}, Identity{Subject: "0000-1111", Email: "a@corp", Groups: []string{"Reader"}}, false},
		{"missing subject", map[string]any{"email": "a@x"}, names, Identity{}, true},
		{"non-string subject", map[string]any{"sub": 42}, names, Identity{}, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := MapClaims(tc.claims, tc.names)
			if (err != nil) != tc.err {
				t.Fatalf("err = %v", err)
			}
			if err != nil {
				return
			}
			if got.Subject != tc.want.Subject || got.Email != tc.want.Email || got.Name != tc.want.Name || len(got.Groups) != len(tc.want.Groups) {
				t.Fatalf("got %+v want %+v", got, tc.want)
			}
			for i := range got.Groups {
				if got.Groups[i] != tc.want.Groups[i] {
					t.Fatalf("groups %v", got.Groups)
				}
			}
		})
	}
}

func TestStaticLogin(t *testing.T) {
	hash, _ := bcrypt.GenerateFromPassword([]byte("pw"), bcrypt.MinCost)
	s := NewStatic([]StaticUser{{Username: "bob", Email: "bob@x", Groups: []string{"ops"}, PasswordHash: string(hash)}})
	id, err := s.Login(context.Background(), "bob", "pw")
	if err != nil || id.Subject != "bob" || id.Email != "bob@x" || id.Groups[0] != "ops" {
		t.Fatalf("login: %+v %v", id, err)
	}
	for _, tc := range [][2]string{{"bob", "wrong"}, {"nobody", "pw"}, {"", ""}} {
		if _, err := s.Login(context.Background(), tc[0], tc[1]); !errors.Is(err, ErrBadCredentials) {
			t.Fatalf("%v: %v", tc, err)
		}
	}
}
