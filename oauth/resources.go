package oauth

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"slices"
	"sort"
	"strings"

	"github.com/warden-mcp/warden/internal/store"
)

// target is a validated set of resource indicators (RFC 8707): canonical
// resource URLs and the registered servers they name, in the same order.
type target struct {
	Resources []string
	Servers   []store.Server
}

func (t target) names() []string {
	out := make([]string, len(t.Servers))
	for i, s := range t.Servers {
		out[i] = s.Name
	}
	return out
}

// requiredScopes is the union of the scopes the servers require.
func (t target) requiredScopes() []string {
	var out []string
	for _, s := range t.Servers {
		out = union(out, s.Scopes)
	}
	return out
}

var errUnknownResource = errors.New("unknown resource")

// resolveResources maps every resource indicator to a registered server.
// Only the canonical URL <public_url>/mcp/<name> is accepted; a trailing
// slash and the case of scheme and host are forgiven, as RFC 3986
// normalisation would.
func (s *Server) resolveResources(ctx context.Context, raw []string) (target, error) {
	var t target
	if len(raw) == 0 {
		return t, errors.New("the resource parameter is required (RFC 8707): name the MCP server's URL")
	}
	base, _ := url.Parse(s.o.ResourceURL(""))
	for _, r := range raw {
		u, err := url.Parse(r)
		if err != nil || !u.IsAbs() || u.Fragment != "" || u.RawQuery != "" || u.User != nil {
			return t, fmt.Errorf("resource %q must be an absolute URL without query or fragment", r)
		}
		if !strings.EqualFold(u.Scheme, base.Scheme) || !strings.EqualFold(u.Host, base.Host) || !strings.HasPrefix(u.Path, base.Path) {
			return t, fmt.Errorf("%w %q: not an MCP server behind this authorization server", errUnknownResource, r)
		}
		name := strings.TrimSuffix(strings.TrimPrefix(u.Path, base.Path), "/")
		if name == "" || strings.ContainsAny(name, "/%\\") {
			return t, fmt.Errorf("%w %q", errUnknownResource, r)
		}
		srv, err := s.servers.GetServer(ctx, name)
		if errors.Is(err, store.ErrNotFound) {
			return t, fmt.Errorf("%w %q: no server %q is registered", errUnknownResource, r, name)
		}
		if err != nil {
			return t, fmt.Errorf("look up server %q: %w", name, err)
		}
		canon := s.o.ResourceURL(name)
		if slices.Contains(t.Resources, canon) {
			continue
		}
		t.Resources = append(t.Resources, canon)
		t.Servers = append(t.Servers, srv)
	}
	return t, nil
}

// scopeOfferedAlways are scopes every deployment understands besides those
// of registered servers.
var scopeOfferedAlways = []string{"offline_access"}

// globalScopes are the scopes of the deployment as a whole: configured
// scopes and offline_access.
func (s *Server) globalScopes() []string {
	out := union(nil, scopeOfferedAlways)
	out = union(out, s.o.Scopes)
	sort.Strings(out)
	return out
}

// knownScopes is every scope Warden issues: the global scopes and the
// scopes registered servers require.
func (s *Server) knownScopes(ctx context.Context) ([]string, error) {
	out := s.globalScopes()
	all, err := s.servers.ListServers(ctx)
	if err != nil {
		return nil, fmt.Errorf("list servers: %w", err)
	}
	for _, srv := range all {
		out = union(out, srv.Scopes)
		// Step-up: policy may challenge a call for these, so a client
		// must be able to ask for them when it re-authorizes.
		out = union(out, srv.StepUpScopes)
	}
	sort.Strings(out)
	return out, nil
}

// chooseScopes validates a requested scope string. With no scope, the
// client gets what the requested servers require (the MCP scope selection
// strategy has clients send the scopes of the challenge or PRM; a client
// that sends none still gets a usable token).
func (s *Server) chooseScopes(ctx context.Context, requested []string, t target, c store.Client) ([]string, error) {
	req := requested
	if len(req) == 0 {
		req = t.requiredScopes()
	}
	known, err := s.knownScopes(ctx)
	if err != nil {
		return nil, err
	}
	// Only operator-declared clients are held to their scope: a registering
	// client names its own, and holding it to that would break MCP step-up
	// authorization when a server later asks for more.
	var allowed []string
	if c.Source == sourceConfig {
		allowed = strings.Fields(c.Scope)
	}
	var out []string
	for _, sc := range req {
		if !slices.Contains(known, sc) {
			return nil, fmt.Errorf("scope %q is not offered by this server", sc)
		}
		if len(allowed) > 0 && !slices.Contains(allowed, sc) {
			return nil, fmt.Errorf("scope %q is not allowed for this client", sc)
		}
		out = union(out, []string{sc})
	}
	return out, nil
}

// union appends the elements of b missing from a, keeping order.
func union(a, b []string) []string {
	for _, v := range b {
		if !slices.Contains(a, v) {
			a = append(a, v)
		}
	}
	return a
}

func subset(sub, of []string) bool {
	for _, v := range sub {
		if !slices.Contains(of, v) {
			return false
		}
	}
	return true
}
