// Package adminauth says who is administering Warden and what they may do.
// An administrator is a Principal: a named admin token (automation, the
// CLI) or a user signed in to the console through the configured IdP. Its
// Name is what the audit trail records as the actor, so every admin action
// is attributed to a verified identity, never to a name the client chose.
//
// Roles:
//
//   - admin: everything.
//   - auditor: read only: servers, access, grants, audit, policy (and the
//     policy what-if, which changes nothing). No revocation, no change.
//   - operator: what an auditor reads, plus registering, changing and
//     removing the servers whose labels match its scope, and revoking
//     everyone's access to those servers.
package adminauth

import (
	"context"
	"crypto/subtle"
	"fmt"
	"maps"
	"slices"
	"strings"
)

// Role is an administrator's role.
type Role string

const (
	RoleAdmin    Role = "admin"
	RoleOperator Role = "operator"
	RoleAuditor  Role = "auditor"
)

// ParseRole reads a role name from the configuration.
func ParseRole(s string) (Role, error) {
	switch r := Role(s); r {
	case RoleAdmin, RoleOperator, RoleAuditor:
		return r, nil
	}
	return "", fmt.Errorf("unknown role %q (admin, operator or auditor)", s)
}

// rank orders roles by what they may do: when several bindings match a
// user, the strongest wins.
func (r Role) rank() int {
	switch r {
	case RoleAdmin:
		return 3
	case RoleOperator:
		return 2
	case RoleAuditor:
		return 1
	}
	return 0
}

// Permission is one kind of admin operation.
type Permission int

const (
	// Read is every GET: servers, access, grants, audit, policy, xDS.
	Read Permission = iota
	// ManageServers registers, updates and removes servers (scoped for
	// operators: see Principal.CoversServer).
	ManageServers
	// Revoke cuts access (scoped for operators to server targets).
	Revoke
	// Administer is everything else: service tokens and access, keys,
	// pprof.
	Administer
)

func (p Permission) String() string {
	switch p {
	case Read:
		return "read"
	case ManageServers:
		return "manage servers"
	case Revoke:
		return "revoke"
	}
	return "administer"
}

// Kinds of principal, and the prefixes of their actor names.
const (
	KindToken = "token"
	KindUser  = "user"
)

// Principal is a verified administrator.
type Principal struct {
	// Name is the actor recorded in the audit trail: "token:<name>" for an
	// admin token, "user:<subject>" for a signed-in user.
	Name string `json:"name"`
	Kind string `json:"kind"`
	Role Role   `json:"role"`
	// Subject, Email and DisplayName describe a signed-in user.
	Subject     string   `json:"subject,omitempty"`
	Email       string   `json:"email,omitempty"`
	DisplayName string   `json:"display_name,omitempty"`
	Groups      []string `json:"groups,omitempty"`
	// ServerLabels scope an operator: it manages only servers whose labels
	// include every one of these.
	ServerLabels map[string]string `json:"server_labels,omitempty"`
}

// Can reports whether the principal may perform operations of kind p at
// all; operators are further limited to their servers (CoversServer).
func (p Principal) Can(perm Permission) bool {
	switch p.Role {
	case RoleAdmin:
		return true
	case RoleOperator:
		return perm == Read || perm == ManageServers || perm == Revoke
	case RoleAuditor:
		return perm == Read
	}
	return false
}

// CoversServer reports whether the principal may manage a server with
// these labels: always for an admin, for an operator when the labels
// include its scope.
func (p Principal) CoversServer(labels map[string]string) bool {
	switch p.Role {
	case RoleAdmin:
		return true
	case RoleOperator:
		if len(p.ServerLabels) == 0 {
			return false
		}
		for k, v := range p.ServerLabels {
			if labels[k] != v {
				return false
			}
		}
		return true
	}
	return false
}

// Display is how the console names the principal.
func (p Principal) Display() string {
	switch {
	case p.DisplayName != "" && p.Email != "":
		return p.DisplayName + " <" + p.Email + ">"
	case p.Email != "":
		return p.Email
	case p.DisplayName != "":
		return p.DisplayName
	}
	return p.Name
}

type ctxKey struct{}

// WithPrincipal returns ctx carrying p. Only code in this process can set
// it: the admin API trusts it as already authenticated (the console calls
// the API's handlers this way for its signed-in user).
func WithPrincipal(ctx context.Context, p Principal) context.Context {
	return context.WithValue(ctx, ctxKey{}, p)
}

// FromContext returns the principal set by WithPrincipal.
func FromContext(ctx context.Context) (Principal, bool) {
	p, ok := ctx.Value(ctxKey{}).(Principal)
	return p, ok
}

// Token is a named admin token, known by the SHA-256 of its value.
type Token struct {
	Name         string
	Sum          []byte
	Role         Role
	ServerLabels map[string]string
}

// Tokens are the admin tokens the API accepts.
type Tokens []Token

// Authenticate returns the principal of the token whose digest matches
// sum. Every token is compared, in constant time, so the answer's timing
// says nothing about which token (or how much of one) matched.
func (ts Tokens) Authenticate(sum []byte) (Principal, bool) {
	found := -1
	for i, t := range ts {
		if len(t.Sum) == len(sum) && subtle.ConstantTimeCompare(t.Sum, sum) == 1 {
			found = i
		}
	}
	if found < 0 || len(sum) == 0 {
		return Principal{}, false
	}
	t := ts[found]
	return Principal{Name: KindToken + ":" + t.Name, Kind: KindToken, Role: t.Role, ServerLabels: maps.Clone(t.ServerLabels)}, true
}

// Identity is a user as the IdP connector mapped it.
type Identity struct {
	Subject string
	Email   string
	Name    string
	Groups  []string
	Claims  map[string]any
}

// Binding gives a role to the users that match it: any of its groups,
// users (subject or email) or claim values.
type Binding struct {
	Role   Role
	Groups []string
	// Users are subjects or email addresses.
	Users []string
	// Claim and Values match a claim of the ID token: a string equal to
	// one of Values, or a list holding one (Entra ID app roles: claim
	// "roles").
	Claim        string
	Values       []string
	ServerLabels map[string]string
}

func (b Binding) matches(id Identity) bool {
	for _, g := range id.Groups {
		if slices.Contains(b.Groups, g) {
			return true
		}
	}
	for _, u := range b.Users {
		if u == id.Subject || (id.Email != "" && strings.EqualFold(u, id.Email)) {
			return true
		}
	}
	if b.Claim != "" {
		switch v := id.Claims[b.Claim].(type) {
		case string:
			return slices.Contains(b.Values, v)
		case []any:
			for _, e := range v {
				if s, ok := e.(string); ok && slices.Contains(b.Values, s) {
					return true
				}
			}
		case []string:
			for _, s := range v {
				if slices.Contains(b.Values, s) {
					return true
				}
			}
		}
	}
	return false
}

// Bindings map signed-in users to roles.
type Bindings []Binding

// Principal returns the principal of a signed-in user, or false when no
// binding gives the user a role: such a user may not administer.
func (bs Bindings) Principal(id Identity) (Principal, bool) {
	best := -1
	for i, b := range bs {
		if b.matches(id) && (best < 0 || b.Role.rank() > bs[best].Role.rank()) {
			best = i
		}
	}
	if best < 0 || id.Subject == "" {
		return Principal{}, false
	}
	b := bs[best]
	return Principal{
		Name: KindUser + ":" + id.Subject, Kind: KindUser, Role: b.Role,
		Subject: id.Subject, Email: id.Email, DisplayName: id.Name, Groups: slices.Clone(id.Groups),
		ServerLabels: maps.Clone(b.ServerLabels),
	}, true
}
