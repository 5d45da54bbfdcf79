// Package registry manages the registered MCP servers: validation, the one
// place servers are created, changed and removed (admin API, CLI and the
// config file's servers section all come through here), an audit event per
// change, and a change signal the xDS publisher listens to.
package registry

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/warden-mcp/warden/internal/serverspec"
	"github.com/warden-mcp/warden/internal/store"
	"github.com/warden-mcp/warden/internal/toolpin"
)

// Store is the part of the store the registry uses.
type Store interface {
	CreateServer(ctx context.Context, s store.Server) error
	GetServer(ctx context.Context, name string) (store.Server, error)
	UpdateServer(ctx context.Context, name string, update func(store.Server) (store.Server, error)) error
	// DeleteServer deletes the server's tool pins with it (store.Store).
	DeleteServer(ctx context.Context, name string) error
	ListServers(ctx context.Context) ([]store.Server, error)
	ListToolPins(ctx context.Context, server string) ([]store.ToolPin, error)
}

// Auditor records admin changes durably before they are reported done.
type Auditor interface {
	RecordSync(ctx context.Context, ev store.AuditEvent) error
}

// Sealer seals static upstream secrets.
type Sealer interface {
	Seal(plaintext, aad []byte) (store.Sealed, error)
}

// ErrInvalid wraps every validation failure so callers can answer 400.
var ErrInvalid = errors.New("invalid server")

// Spec is what an operator gives to register or change a server.
type Spec struct {
	Name       string   `json:"name"`
	URL        string   `json:"url"`
	Credential string   `json:"credential,omitempty"`
	Scopes     []string `json:"scopes,omitempty"`
	// StepUpScopes are scopes policy may challenge a call for (never
	// offline_access, which grants refresh, not access).
	StepUpScopes []string          `json:"step_up_scopes,omitempty"`
	Labels       map[string]string `json:"labels,omitempty"`
	Description  string            `json:"description,omitempty"`
	// Pinning ("warn" or "block") and PinNewTools ("approve" or "wait")
	// set tool pinning (internal/toolpin); empty: warn, approve.
	Pinning     string `json:"pinning,omitempty"`
	PinNewTools string `json:"pin_new_tools,omitempty"`
	// StaticHeader and StaticSecret configure the "static" credential. The
	// secret is sealed on arrival and never returned.
	StaticHeader   string `json:"static_header,omitempty"`
	StaticSecret   string `json:"static_secret,omitempty"`
	HTTP2          bool   `json:"http2,omitempty"`
	ConnectTimeout string `json:"connect_timeout,omitempty"`
	IdleTimeout    string `json:"idle_timeout,omitempty"`
	RequestTimeout string `json:"request_timeout,omitempty"`
	// IdPAudience and IdPScopes: what an "exchange" server's token is
	// requested for at the IdP.
	IdPAudience string   `json:"idp_audience,omitempty"`
	IdPScopes   []string `json:"idp_scopes,omitempty"`
	// Provider names the provider of a "provider" server; Unconnected is
	// what it does for users without an account (elicit, elicit_all, pass).
	Provider    string `json:"provider,omitempty"`
	Unconnected string `json:"unconnected,omitempty"`
}

// Registry is the server registry.
type Registry struct {
	st    Store
	audit Auditor
	seal  Sealer
	now   func() time.Time

	mu      sync.Mutex
	subs    map[int]chan struct{}
	next    int
	hooks   []func()
	removed []func(ctx context.Context, actor, name string) error
}

// New returns a registry over st.
func New(st Store, audit Auditor, sealer Sealer, now func() time.Time) *Registry {
	if now == nil {
		now = time.Now
	}
	return &Registry{st: st, audit: audit, seal: sealer, now: now, subs: map[int]chan struct{}{}}
}

var modes = map[store.CredentialMode]bool{
	store.CredentialJWT: true, store.CredentialStatic: true, store.CredentialNone: true,
	store.CredentialIdP: true, store.CredentialExchange: true, store.CredentialProvider: true,
}

// Implemented lists the credential modes this build can attach; the others
// are accepted names reserved for later releases and refused for now.
var Implemented = map[store.CredentialMode]bool{
	store.CredentialJWT: true, store.CredentialStatic: true, store.CredentialNone: true,
	store.CredentialIdP: true, store.CredentialExchange: true, store.CredentialProvider: true,
}

// build validates spec and turns it into a server record, reporting every
// problem at once.
func (r *Registry) build(spec Spec, prev *store.Server) (store.Server, error) {
	var errs []error
	bad := func(f string, a ...any) { errs = append(errs, fmt.Errorf(f, a...)) }
	s := store.Server{}
	if prev != nil {
		s = *prev
	}
	s.Name = spec.Name
	if err := serverspec.CheckName(spec.Name); err != nil {
		errs = append(errs, err)
	}
	// The URL may carry a secret: the error names the problem, never the URL.
	if err := serverspec.CheckURL(spec.URL); err != nil {
		errs = append(errs, fmt.Errorf("url: %w", err))
	}
	s.URL = spec.URL
	mode := store.CredentialMode(spec.Credential)
	if mode == "" {
		mode = store.CredentialJWT
	}
	switch {
	case !modes[mode]:
		bad("credential %q: unknown mode (jwt, static, none, idp, exchange, provider)", spec.Credential)
	case !Implemented[mode]:
		bad("credential %q: not available in this release (use jwt, static or none)", spec.Credential)
	}
	s.Credential = mode
	if mode == store.CredentialStatic {
		if spec.StaticHeader == "" {
			spec.StaticHeader = "Authorization"
		}
		if spec.StaticSecret == "" && (prev == nil || prev.StaticSecret == nil) {
			bad("static_secret: required for the static credential")
		}
		s.StaticHeader = spec.StaticHeader
	} else if spec.StaticSecret != "" {
		bad("static_secret: only valid with the static credential")
	}
	for _, sc := range spec.Scopes {
		if sc == "" || strings.ContainsAny(sc, " \"\\") {
			bad("scope %q: must be a non-empty token without spaces or quotes", sc)
		}
	}
	r.buildUpstream(spec, mode, &s, bad)
	s.Scopes = slices.Clone(spec.Scopes)
	sort.Strings(s.Scopes)
	for _, sc := range spec.StepUpScopes {
		switch {
		case sc == "" || strings.ContainsAny(sc, " \"\\"):
			bad("step-up scope %q: must be a non-empty token without spaces or quotes", sc)
		case sc == "offline_access":
			bad("step-up scope offline_access: it grants refresh, not access, and is never challenged for")
		}
	}
	s.StepUpScopes = slices.Clone(spec.StepUpScopes)
	sort.Strings(s.StepUpScopes)
	s.StepUpScopes = slices.Compact(s.StepUpScopes)
	s.Labels = spec.Labels
	s.Description = spec.Description
	if _, err := toolpin.ParseSetting(spec.Pinning, spec.PinNewTools); err != nil {
		bad("%v", err)
	}
	s.Pinning, s.PinNewTools = spec.Pinning, spec.PinNewTools
	s.HTTP2 = spec.HTTP2
	dur := func(field, v string, dst *time.Duration) {
		if v == "" {
			return
		}
		d, err := time.ParseDuration(v)
		if err != nil || d < 0 {
			bad("%s %q: must be a non-negative duration like 30s", field, v)
			return
		}
		*dst = d
	}
	dur("connect_timeout", spec.ConnectTimeout, &s.ConnectTimeout)
	dur("idle_timeout", spec.IdleTimeout, &s.IdleTimeout)
	dur("request_timeout", spec.RequestTimeout, &s.RequestTimeout)
	if len(errs) > 0 {
		return s, fmt.Errorf("%w: %w", ErrInvalid, errors.Join(errs...))
	}
	if spec.StaticSecret != "" {
		sealed, err := r.seal.Seal([]byte(spec.StaticSecret), []byte("server/"+s.Name))
		if err != nil {
			return s, fmt.Errorf("seal static secret: %w", err)
		}
		s.StaticSecret = &sealed
	}
	if mode != store.CredentialStatic {
		s.StaticHeader, s.StaticSecret = "", nil
	}
	return s, nil
}

// Add registers a new server.
func (r *Registry) Add(ctx context.Context, actor string, spec Spec) (store.Server, error) {
	return r.add(ctx, actor, spec, "api")
}

func (r *Registry) add(ctx context.Context, actor string, spec Spec, source string) (store.Server, error) {
	s, err := r.build(spec, nil)
	if err != nil {
		return store.Server{}, err
	}
	s.Source = source
	s.CreatedAt = r.now().UTC()
	s.UpdatedAt = s.CreatedAt
	if err := r.st.CreateServer(ctx, s); err != nil {
		return store.Server{}, err
	}
	if err := r.record(ctx, actor, "server_added", s); err != nil {
		return store.Server{}, err
	}
	r.notify()
	return r.st.GetServer(ctx, s.Name)
}

// Update replaces a server's settings with spec (fields left empty in spec
// are cleared, except a static secret, which is kept unless a new one is
// given).
func (r *Registry) Update(ctx context.Context, actor string, spec Spec) (store.Server, error) {
	var out store.Server
	err := r.st.UpdateServer(ctx, spec.Name, func(cur store.Server) (store.Server, error) {
		next, err := r.build(spec, &cur)
		if err != nil {
			return cur, err
		}
		next.UpdatedAt = r.now().UTC()
		out = next
		return next, nil
	})
	if err != nil {
		return store.Server{}, err
	}
	if err := r.record(ctx, actor, "server_updated", out); err != nil {
		return store.Server{}, err
	}
	r.notify()
	return r.st.GetServer(ctx, spec.Name)
}

// Remove deletes a server.
func (r *Registry) Remove(ctx context.Context, actor, name string) error {
	s, err := r.st.GetServer(ctx, name)
	if err != nil {
		return err
	}
	// The store drops the server's tool pins with it (one transaction);
	// the audit event names them, read just before.
	pins, err := r.st.ListToolPins(ctx, name)
	if err != nil {
		return fmt.Errorf("server %s: its tool pins: %w", name, err)
	}
	if err := r.st.DeleteServer(ctx, name); err != nil {
		return err
	}
	tools := make([]string, len(pins))
	for i, p := range pins {
		tools[i] = p.Tool
	}
	if err := r.record(ctx, actor, "server_removed", s, map[string]any{"tool_pins_dropped": tools}); err != nil {
		return err
	}
	r.notify()
	// After the delete, so that no new grant can name the server while
	// its old ones are cut.
	r.mu.Lock()
	removed := slices.Clone(r.removed)
	r.mu.Unlock()
	var errs []error
	for _, fn := range removed {
		if err := fn(ctx, actor, name); err != nil {
			errs = append(errs, err)
		}
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("server %s removed, but its grants were not all revoked (run warden revoke --server %s): %w", name, name, err)
	}
	return nil
}

// OnRemove registers fn to run after a server is removed, before Remove
// returns: the grant service revokes (or narrows) the server's grants,
// consents and service access there, so that a server added again under
// the same name brings none of them back.
func (r *Registry) OnRemove(fn func(ctx context.Context, actor, name string) error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.removed = append(r.removed, fn)
}

// Get returns one server.
func (r *Registry) Get(ctx context.Context, name string) (store.Server, error) {
	return r.st.GetServer(ctx, name)
}

// List returns every server, sorted by name.
func (r *Registry) List(ctx context.Context) ([]store.Server, error) {
	all, err := r.st.ListServers(ctx)
	if err != nil {
		return nil, err
	}
	sort.Slice(all, func(i, j int) bool { return all[i].Name < all[j].Name })
	return all, nil
}

// Reconcile makes the servers that came from the config file match decl:
// adds the new ones, updates the changed ones and removes the ones no longer
// declared. Servers registered through the API are left alone, and a name
// taken by an API server is reported, not overwritten. Every server is
// attempted; the errors are joined.
func (r *Registry) Reconcile(ctx context.Context, decl []Spec) error {
	const actor = "config"
	current, err := r.List(ctx)
	if err != nil {
		return err
	}
	byName := map[string]store.Server{}
	for _, s := range current {
		byName[s.Name] = s
	}
	var errs []error
	want := map[string]bool{}
	for _, spec := range decl {
		want[spec.Name] = true
		cur, exists := byName[spec.Name]
		switch {
		case !exists:
			_, err = r.add(ctx, actor, spec, "config")
		case cur.Source != "config":
			err = fmt.Errorf("server %q is managed through the API; the config file entry is ignored", spec.Name)
		case r.unchanged(cur, spec):
			continue
		default:
			_, err = r.Update(ctx, actor, spec)
		}
		if err != nil {
			errs = append(errs, fmt.Errorf("servers: %s: %w", spec.Name, err))
		}
	}
	for _, s := range current {
		if s.Source == "config" && !want[s.Name] {
			if err := r.Remove(ctx, actor, s.Name); err != nil {
				errs = append(errs, fmt.Errorf("servers: remove %s: %w", s.Name, err))
			}
		}
	}
	return errors.Join(errs...)
}

// unchanged reports whether applying spec to cur would change nothing, by
// building the record spec gives (the one validation and defaulting) and
// comparing it with cur. A new static secret always counts as a change.
func (r *Registry) unchanged(cur store.Server, spec Spec) bool {
	if spec.StaticSecret != "" {
		return false
	}
	next, err := r.build(spec, &cur)
	if err != nil {
		return false // Update reports the error
	}
	return next.URL == cur.URL && next.Credential == cur.Credential && slices.Equal(next.Scopes, cur.Scopes) && slices.Equal(next.StepUpScopes, cur.StepUpScopes) &&
		maps.Equal(next.Labels, cur.Labels) && next.Description == cur.Description &&
		next.Pinning == cur.Pinning && next.PinNewTools == cur.PinNewTools &&
		next.StaticHeader == cur.StaticHeader && next.HTTP2 == cur.HTTP2 &&
		next.ConnectTimeout == cur.ConnectTimeout && next.IdleTimeout == cur.IdleTimeout &&
		next.RequestTimeout == cur.RequestTimeout &&
		next.IdPAudience == cur.IdPAudience && slices.Equal(next.IdPScopes, cur.IdPScopes) &&
		next.Provider == cur.Provider && next.Unconnected == cur.Unconnected
}

func (r *Registry) record(ctx context.Context, actor, typ string, s store.Server, extra ...map[string]any) error {
	if r.audit == nil {
		return nil
	}
	details := map[string]any{
		"url":        s.URL,
		"credential": string(s.Credential),
		"scopes":     s.Scopes,
		"step_up":    s.StepUpScopes,
		"provider":   s.Provider,
	}
	for _, e := range extra {
		for k, v := range e {
			details[k] = v
		}
	}
	err := r.audit.RecordSync(ctx, store.AuditEvent{
		Type:    typ,
		Actor:   actor,
		Server:  s.Name,
		Details: details,
	})
	if err != nil {
		return fmt.Errorf("audit %s: %w", typ, err)
	}
	return nil
}

// Subscribe returns a channel that receives a value after each change.
// Signals coalesce: a slow reader sees one pending signal, then re-reads the
// whole registry.
func (r *Registry) Subscribe() (<-chan struct{}, func()) {
	r.mu.Lock()
	defer r.mu.Unlock()
	id := r.next
	r.next++
	ch := make(chan struct{}, 1)
	r.subs[id] = ch
	return ch, func() {
		r.mu.Lock()
		defer r.mu.Unlock()
		delete(r.subs, id)
	}
}

// OnChange registers fn to run synchronously after every change, before
// the changing call returns: caches that must never serve a stale server
// (the ext_authz catalog) invalidate here.
func (r *Registry) OnChange(fn func()) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.hooks = append(r.hooks, fn)
}

func (r *Registry) notify() {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, fn := range r.hooks {
		fn()
	}
	for _, ch := range r.subs {
		select {
		case ch <- struct{}{}:
		default:
		}
	}
}

// Changed runs the change hooks and signals as after a change made here,
// for a change another replica made in the shared store (the PostgreSQL
// store notifies it).
func (r *Registry) Changed() { r.notify() }
