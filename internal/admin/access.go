package admin

import (
	"cmp"
	"context"
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/warden-mcp/warden/internal/store"
	"github.com/warden-mcp/warden/internal/usage"
)

// Usage reports when grants were last used; *usage.Tracker satisfies it.
type Usage interface {
	Snapshot(ctx context.Context) (map[usage.Key]time.Time, error)
}

// AccessFilter selects rows of the access matrix; empty fields match
// everything.
type AccessFilter struct {
	// User matches the subject or the email address (any case).
	User   string `json:"user,omitempty"`
	Group  string `json:"group,omitempty"`
	Server string `json:"server,omitempty"`
	// Client matches the client id or its name (any case).
	Client string `json:"client,omitempty"`
}

// AccessEntry is one cell of the access matrix: one identity's live grant
// on one server.
type AccessEntry struct {
	Subject string   `json:"subject"`
	Email   string   `json:"email,omitempty"`
	Name    string   `json:"name,omitempty"`
	Groups  []string `json:"groups,omitempty"`
	// Kind is "user" (a person, through the IdP) or "service" (an agent
	// or workload acting as itself).
	Kind   store.Kind `json:"kind"`
	Server string     `json:"server"`
	Scopes []string   `json:"scopes,omitempty"`
	// ClientSource is how the client came to be: dcr, cimd, config,
	// admin, or service for tokens minted by an administrator.
	ClientID     string    `json:"client_id"`
	ClientName   string    `json:"client_name,omitempty"`
	ClientSource string    `json:"client_source,omitempty"`
	GrantID      string    `json:"grant_id"`
	Connector    string    `json:"connector,omitempty"`
	GrantedAt    time.Time `json:"granted_at"`
	ExpiresAt    time.Time `json:"expires_at,omitzero"`
	// LastUsed is the newest allowed request on this server with this
	// grant; zero when never used (or not since it was tracked).
	LastUsed time.Time `json:"last_used,omitzero"`
}

// Access returns the access matrix: every live (unrevoked, unexpired)
// grant once per server it covers, sorted by subject, server and client.
func (s *Server) Access(ctx context.Context, f AccessFilter) ([]AccessEntry, error) {
	grants, err := s.o.Store.ListGrants(ctx, store.GrantFilter{Server: f.Server})
	if err != nil {
		return nil, err
	}
	clients, err := s.o.Store.ListClients(ctx)
	if err != nil {
		return nil, err
	}
	byID := make(map[string]store.Client, len(clients))
	for _, c := range clients {
		byID[c.ID] = c
	}
	var used map[usage.Key]time.Time
	if s.o.Usage != nil {
		if used, err = s.o.Usage.Snapshot(ctx); err != nil {
			return nil, err
		}
	}
	now := s.o.Now()
	out := []AccessEntry{}
	for _, g := range grants {
		if g.Expired(now) || !matchAccess(f, g) {
			continue
		}
		c, known := byID[g.ClientID]
		name := g.ClientName
		source := ""
		if known {
			source = c.Source
			if c.Name != "" {
				name = c.Name
			}
		}
		if !known && g.Kind == store.KindService {
			source = "service"
		}
		if f.Client != "" && g.ClientID != f.Client && !strings.EqualFold(name, f.Client) {
			continue
		}
		for _, sv := range g.Servers {
			if f.Server != "" && sv != f.Server {
				continue
			}
			out = append(out, AccessEntry{
				Subject: g.Subject, Email: g.Email, Name: g.Name, Groups: g.Groups, Kind: g.Kind, Server: sv, Scopes: g.Scopes,
				ClientID: g.ClientID, ClientName: name, ClientSource: source, GrantID: g.ID, Connector: g.Connector,
				GrantedAt: g.CreatedAt, ExpiresAt: g.ExpiresAt, LastUsed: used[usage.Key{GrantID: g.ID, Server: sv}],
			})
		}
	}
	slices.SortFunc(out, func(a, b AccessEntry) int {
		return cmp.Or(cmp.Compare(a.Subject, b.Subject), cmp.Compare(a.Server, b.Server), cmp.Compare(a.ClientID, b.ClientID), cmp.Compare(a.GrantID, b.GrantID))
	})
	return out, nil
}

func matchAccess(f AccessFilter, g store.Grant) bool {
	if f.User != "" && g.Subject != f.User && !strings.EqualFold(g.Email, f.User) {
		return false
	}
	if f.Group != "" && !slices.Contains(g.Groups, f.Group) {
		return false
	}
	return true
}

// AccessFilterOf reads the filter from URL parameters.
func AccessFilterOf(r *http.Request) AccessFilter {
	q := r.URL.Query()
	return AccessFilter{User: strings.TrimSpace(q.Get("user")), Group: strings.TrimSpace(q.Get("group")),
		Server: strings.TrimSpace(q.Get("server")), Client: strings.TrimSpace(q.Get("client"))}
}

func (s *Server) listAccess(w http.ResponseWriter, r *http.Request, _ string) error {
	entries, err := s.Access(r.Context(), AccessFilterOf(r))
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, entries)
	return nil
}
