// Package admin is Warden's admin HTTP API: server registry, service
// tokens, grants, revocation and the audit trail, for the CLI and for
// automation. It also serves /metrics, /healthz and /readyz.
//
// Every /api/ call needs an admin token (Authorization: Bearer) whose role
// allows it (internal/adminauth), or runs in process for a user signed in
// to the console. The audit trail records the verified principal's name
// ("token:<name>", "user:<subject>") as the actor; nothing the client sends
// chooses it.
package admin

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/pprof"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/warden-mcp/warden/internal/adminauth"
	"github.com/warden-mcp/warden/internal/audit"
	"github.com/warden-mcp/warden/internal/bearer"
	"github.com/warden-mcp/warden/internal/grant"
	"github.com/warden-mcp/warden/internal/handle"
	"github.com/warden-mcp/warden/internal/registry"
	"github.com/warden-mcp/warden/internal/store"
)

// Store is the part of the store the admin API reads and writes directly.
type Store interface {
	audit.Store
	ListGrants(ctx context.Context, f store.GrantFilter) ([]store.Grant, error)
	ListClients(ctx context.Context) ([]store.Client, error)
}

// Grants issues and revokes grants; *grant.Service satisfies it. Service
// tokens, service access and revocations go through it so that they follow
// the same rules as the OAuth server's.
type Grants interface {
	IssueService(ctx context.Context, sg grant.ServiceGrant) (grant.Tokens, store.Grant, error)
	SetServiceAccess(ctx context.Context, actor, clientID string, servers, scopes, groups []string) (store.Client, error)
	Revoke(ctx context.Context, actor string, t grant.Target, reason string) (grant.Result, error)
}

// Auditor records admin actions durably.
type Auditor interface {
	RecordSync(ctx context.Context, ev store.AuditEvent) error
}

// Check is one readiness check: nil when ready, otherwise why not.
type Check func() error

// Options configure the admin API.
type Options struct {
	// Tokens are the admin tokens the API accepts, each with its name and
	// role.
	Tokens   adminauth.Tokens
	Store    Store
	Registry *registry.Registry
	Grants   Grants
	Audit    Auditor
	// Usage reports grants' last use for the access matrix; nil shows none.
	Usage Usage
	// ResourceURL maps a server name to its resource URL, bound into the
	// service tokens minted here.
	ResourceURL func(server string) string
	// Gatherer serves /metrics.
	Gatherer prometheus.Gatherer
	// Ready holds named readiness checks for /readyz.
	Ready map[string]Check
	// Warnings are shown in /readyz detail without making Warden unready:
	// conditions an operator must see while Warden still serves correctly
	// (a policy reload that failed while the last good policy is in use).
	Warnings map[string]Check
	Logger   *slog.Logger
	Now      func() time.Time
	// MaxTokenTTL bounds service tokens minted through the API.
	MaxTokenTTL time.Duration
	// ServerProblem reports why the xDS translation would skip a server
	// (nil when it publishes), shown with every server the API returns.
	ServerProblem func(store.Server) error
	// XDSStatus reports the control plane's state for GET /api/v1/xds.
	XDSStatus func() any
	// PolicyStatus reports the policy engine's state for GET /api/v1/policy.
	PolicyStatus func() any
	// Pprof serves net/http/pprof under /debug/pprof/, admin token required.
	Pprof bool
	// RotateSigning and RotateSealing rotate the JWT signing key and the
	// key-encryption key (POST /api/v1/keys/rotate); nil means unsupported.
	RotateSigning func() (string, error)
	RotateSealing func() (string, error)
	// AuditKeys, when set, are the public keys audit checkpoints are
	// verified with: GET /api/v1/audit/verify then starts from the newest
	// checkpoint they verify (audit.VerifyTrusted).
	AuditKeys AuditKeys
	// Providers manages credential providers and lists connected
	// accounts; nil leaves those routes out.
	Providers Providers
	// ProviderCallbackURL is the redirect URI to register at a provider.
	ProviderCallbackURL func(name string) string
	// Replay runs policy replays (POST /api/v1/policy/replay); nil: no
	// such route.
	Replay Replayer
	// Tools is tool pinning (GET /api/v1/servers/{name}/tools, POST
	// .../tools/{tool}/approve); nil leaves the routes out.
	Tools Tools
}

// Server is the admin API.
type Server struct {
	o   Options
	mux *http.ServeMux
}

// New builds the admin API.
func New(o Options) *Server {
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.MaxTokenTTL <= 0 {
		o.MaxTokenTTL = 90 * 24 * time.Hour
	}
	s := &Server{o: o, mux: http.NewServeMux()}
	s.mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) { _, _ = w.Write([]byte("ok\n")) })
	s.mux.HandleFunc("GET /readyz", s.readyz)
	if o.Gatherer != nil {
		s.mux.Handle("GET /metrics", promhttp.HandlerFor(o.Gatherer, promhttp.HandlerOpts{}))
	}
	s.api("GET /api/v1/servers", adminauth.Read, s.listServers)
	s.api("POST /api/v1/servers", adminauth.ManageServers, s.addServer)
	s.api("GET /api/v1/servers/{name}", adminauth.Read, s.getServer)
	s.api("PUT /api/v1/servers/{name}", adminauth.ManageServers, s.updateServer)
	s.api("DELETE /api/v1/servers/{name}", adminauth.ManageServers, s.removeServer)
	s.api("POST /api/v1/tokens", adminauth.Administer, s.createToken)
	s.api("PUT /api/v1/clients/{id}/service-access", adminauth.Administer, s.setServiceAccess)
	s.api("GET /api/v1/grants", adminauth.Read, s.listGrants)
	s.api("GET /api/v1/access", adminauth.Read, s.listAccess)
	s.api("POST /api/v1/revoke", adminauth.Revoke, s.revoke)
	s.api("GET /api/v1/audit", adminauth.Read, s.listAudit)
	s.api("GET /api/v1/audit/search", adminauth.Read, s.searchAudit)
	s.api("GET /api/v1/audit/export", adminauth.Read, s.exportAudit)
	s.api("GET /api/v1/audit/events/{seq}", adminauth.Read, s.getAuditEvent)
	s.api("GET /api/v1/audit/verify", adminauth.Read, s.verifyAudit)
	s.api("POST /api/v1/keys/rotate", adminauth.Administer, s.rotateKeys)
	s.api("GET /api/v1/whoami", adminauth.Read, s.whoami)
	s.credentialRoutes()
	if o.Pprof {
		s.api("GET /debug/pprof/", adminauth.Administer, func(w http.ResponseWriter, r *http.Request, _ string) error { pprof.Index(w, r); return nil })
		s.api("GET /debug/pprof/profile", adminauth.Administer, func(w http.ResponseWriter, r *http.Request, _ string) error { pprof.Profile(w, r); return nil })
		s.api("GET /debug/pprof/trace", adminauth.Administer, func(w http.ResponseWriter, r *http.Request, _ string) error { pprof.Trace(w, r); return nil })
	}
	if o.PolicyStatus != nil {
		s.api("GET /api/v1/policy", adminauth.Read, func(w http.ResponseWriter, _ *http.Request, _ string) error {
			writeJSON(w, http.StatusOK, o.PolicyStatus())
			return nil
		})
	}
	if o.Replay != nil {
		s.api("POST /api/v1/policy/replay", adminauth.Read, s.replayPolicy)
	}
	if o.Tools != nil {
		s.api("GET /api/v1/servers/{name}/tools", adminauth.Read, s.listTools)
		s.api("POST /api/v1/servers/{name}/tools/{tool}/approve", adminauth.ManageServers, s.approveTool)
	}
	if o.XDSStatus != nil {
		s.api("GET /api/v1/xds", adminauth.Read, func(w http.ResponseWriter, _ *http.Request, _ string) error {
			writeJSON(w, http.StatusOK, o.XDSStatus())
			return nil
		})
	}
	return s
}

// ServeHTTP implements http.Handler.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) { s.mux.ServeHTTP(w, r) }

type apiFunc func(w http.ResponseWriter, r *http.Request, actor string) error

// apiError carries an HTTP status to the client.
type apiError struct {
	status int
	msg    string
}

func (e *apiError) Error() string { return e.msg }

func errStatus(status int, f string, a ...any) error {
	return &apiError{status: status, msg: fmt.Sprintf(f, a...)}
}

// maxBody bounds admin request bodies.
const maxBody = 1 << 20

// api registers fn behind authentication and the permission it needs. The
// principal is an admin token's, or (in process) the console's signed-in
// user's; fn gets its name as the actor and finds the principal itself in
// the request context (adminauth.FromContext) when it must check a scope.
func (s *Server) api(pattern string, need adminauth.Permission, fn apiFunc) {
	s.mux.HandleFunc(pattern, func(w http.ResponseWriter, r *http.Request) {
		p, ok := adminauth.FromContext(r.Context())
		if !ok {
			tok, _ := bearer.Token(r.Header.Get("Authorization"))
			if tok != "" {
				p, ok = s.o.Tokens.Authenticate(handle.Sum(tok))
			}
			if !ok {
				w.Header().Set("WWW-Authenticate", `Bearer realm="warden-admin"`)
				writeJSON(w, http.StatusUnauthorized, map[string]string{"error": "admin token required"})
				return
			}
			r = r.WithContext(adminauth.WithPrincipal(r.Context(), p))
		}
		if !p.Can(need) {
			writeJSON(w, http.StatusForbidden, map[string]string{"error": fmt.Sprintf("%s (role %s) may not %s", p.Name, p.Role, need)})
			return
		}
		r.Body = http.MaxBytesReader(w, r.Body, maxBody)
		actor := p.Name
		err := fn(w, r, actor)
		if err == nil {
			return
		}
		status := http.StatusInternalServerError
		var ae *apiError
		var mbe *http.MaxBytesError
		switch {
		case errors.As(err, &ae):
			status = ae.status
		case errors.As(err, &mbe):
			status = http.StatusRequestEntityTooLarge
		case errors.Is(err, registry.ErrInvalid), errors.Is(err, grant.ErrInvalidTarget):
			status = http.StatusBadRequest
		case errors.Is(err, store.ErrNotFound):
			status = http.StatusNotFound
		case errors.Is(err, store.ErrAlreadyExists):
			status = http.StatusConflict
		}
		if status >= 500 {
			s.o.Logger.Error("admin api error", "path", r.URL.Path, "err", err)
		}
		writeJSON(w, status, map[string]string{"error": err.Error()})
	})
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	_ = enc.Encode(v)
}

func decode(r *http.Request, v any) error {
	dec := json.NewDecoder(r.Body)
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			return err
		}
		return errStatus(http.StatusBadRequest, "invalid JSON body: %v", err)
	}
	return nil
}

func (s *Server) readyz(w http.ResponseWriter, _ *http.Request) {
	names := make([]string, 0, len(s.o.Ready))
	for n := range s.o.Ready {
		names = append(names, n)
	}
	sort.Strings(names)
	status := http.StatusOK
	detail := map[string]string{}
	for _, n := range names {
		if err := s.o.Ready[n](); err != nil {
			detail[n] = err.Error()
			status = http.StatusServiceUnavailable
		} else {
			detail[n] = "ok"
		}
	}
	out := map[string]any{"ready": status == http.StatusOK, "checks": detail}
	warnings := map[string]string{}
	for n, fn := range s.o.Warnings {
		if err := fn(); err != nil {
			warnings[n] = err.Error()
		}
	}
	if len(warnings) > 0 {
		out["warnings"] = warnings
	}
	writeJSON(w, status, out)
}

// ---- servers ----

// ServerView is a server as the API shows it: the sealed secret is never
// returned, only whether one is set.
type ServerView struct {
	store.Server
	StaticSecret *store.Sealed `json:"static_secret,omitempty"`
	HasSecret    bool          `json:"has_static_secret,omitempty"`
	Resource     string        `json:"resource"`
	// XDSError says why Envoy does not get this server (skipped by the
	// translation); empty when it is published.
	XDSError string `json:"xds_error,omitempty"`
}

func (s *Server) view(sv store.Server) ServerView {
	v := ServerView{Server: sv, HasSecret: sv.StaticSecret != nil, Resource: s.o.ResourceURL(sv.Name)}
	v.Server.StaticSecret = nil
	if s.o.ServerProblem != nil {
		if err := s.o.ServerProblem(sv); err != nil {
			v.XDSError = err.Error()
		}
	}
	return v
}

func (s *Server) listServers(w http.ResponseWriter, r *http.Request, _ string) error {
	list, err := s.o.Registry.List(r.Context())
	if err != nil {
		return err
	}
	out := make([]ServerView, 0, len(list))
	for _, sv := range list {
		out = append(out, s.view(sv))
	}
	writeJSON(w, http.StatusOK, out)
	return nil
}

func (s *Server) getServer(w http.ResponseWriter, r *http.Request, _ string) error {
	sv, err := s.o.Registry.Get(r.Context(), r.PathValue("name"))
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, s.view(sv))
	return nil
}

func (s *Server) addServer(w http.ResponseWriter, r *http.Request, actor string) error {
	var spec registry.Spec
	if err := decode(r, &spec); err != nil {
		return err
	}
	if err := inScope(r, spec.Labels, "register server "+spec.Name); err != nil {
		return err
	}
	sv, err := s.o.Registry.Add(r.Context(), actor, spec)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusCreated, s.view(sv))
	return nil
}

func (s *Server) updateServer(w http.ResponseWriter, r *http.Request, actor string) error {
	var spec registry.Spec
	if err := decode(r, &spec); err != nil {
		return err
	}
	if spec.Name == "" {
		spec.Name = r.PathValue("name")
	}
	if spec.Name != r.PathValue("name") {
		return errStatus(http.StatusBadRequest, "name in body (%q) differs from the URL (%q); servers cannot be renamed", spec.Name, r.PathValue("name"))
	}
	if err := s.serverInScope(r, spec.Name, "change server "+spec.Name); err != nil {
		return err
	}
	if err := inScope(r, spec.Labels, "give server "+spec.Name+" these labels"); err != nil {
		return err
	}
	sv, err := s.o.Registry.Update(r.Context(), actor, spec)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, s.view(sv))
	return nil
}

func (s *Server) removeServer(w http.ResponseWriter, r *http.Request, actor string) error {
	if err := s.serverInScope(r, r.PathValue("name"), "remove server "+r.PathValue("name")); err != nil {
		return err
	}
	if err := s.o.Registry.Remove(r.Context(), actor, r.PathValue("name")); err != nil {
		return err
	}
	w.WriteHeader(http.StatusNoContent)
	return nil
}

// inScope refuses an operator a server with labels outside its scope.
func inScope(r *http.Request, labels map[string]string, what string) error {
	p, _ := adminauth.FromContext(r.Context())
	if !p.CoversServer(labels) {
		return errStatus(http.StatusForbidden, "%s (role %s) may not %s: outside its servers", p.Name, p.Role, what)
	}
	return nil
}

// serverInScope is inScope for a registered server; an unknown server is
// refused the same way, so an operator learns nothing of servers outside
// its scope.
func (s *Server) serverInScope(r *http.Request, name, what string) error {
	p, _ := adminauth.FromContext(r.Context())
	if p.Role == adminauth.RoleAdmin {
		return nil
	}
	sv, err := s.o.Registry.Get(r.Context(), name)
	if err != nil && !errors.Is(err, store.ErrNotFound) {
		return err
	}
	return inScope(r, sv.Labels, what)
}

// whoami tells the caller who Warden takes it for.
func (s *Server) whoami(w http.ResponseWriter, r *http.Request, _ string) error {
	p, _ := adminauth.FromContext(r.Context())
	writeJSON(w, http.StatusOK, p)
	return nil
}

// ---- service tokens ----

// TokenRequest mints a handle for a non-human caller.
type TokenRequest struct {
	Subject string   `json:"subject"`
	Servers []string `json:"servers"`
	Scopes  []string `json:"scopes,omitempty"`
	// Groups are given to the service identity so group-based policy
	// applies to agents as to people.
	Groups []string `json:"groups,omitempty"`
	// TTL is a Go duration; default 24h.
	TTL string `json:"ttl,omitempty"`
	// ClientID names the service client; default "service:<subject>".
	ClientID string `json:"client_id,omitempty"`
}

// TokenResponse is shown once; only the digest is kept.
type TokenResponse struct {
	AccessToken string    `json:"access_token"`
	TokenType   string    `json:"token_type"`
	ExpiresAt   time.Time `json:"expires_at"`
	GrantID     string    `json:"grant_id"`
	Resources   []string  `json:"resources"`
}

func (s *Server) createToken(w http.ResponseWriter, r *http.Request, actor string) error {
	var req TokenRequest
	if err := decode(r, &req); err != nil {
		return err
	}
	var problems []string
	if strings.TrimSpace(req.Subject) == "" {
		problems = append(problems, "subject is required")
	}
	if len(req.Servers) == 0 {
		problems = append(problems, "at least one server is required")
	}
	ttl := 24 * time.Hour
	if req.TTL != "" {
		d, err := time.ParseDuration(req.TTL)
		switch {
		case err != nil || d <= 0:
			problems = append(problems, fmt.Sprintf("ttl %q is not a positive duration", req.TTL))
		case d > s.o.MaxTokenTTL:
			problems = append(problems, fmt.Sprintf("ttl %s exceeds the maximum %s", d, s.o.MaxTokenTTL))
		default:
			ttl = d
		}
	}
	var resources []string
	for _, name := range req.Servers {
		if _, err := s.o.Registry.Get(r.Context(), name); err != nil {
			problems = append(problems, fmt.Sprintf("server %q is not registered", name))
			continue
		}
		resources = append(resources, s.o.ResourceURL(name))
	}
	if len(problems) > 0 {
		return errStatus(http.StatusBadRequest, "%s", strings.Join(problems, "; "))
	}
	if req.ClientID == "" {
		req.ClientID = "service:" + req.Subject
	}
	tok, g, err := s.o.Grants.IssueService(r.Context(), grant.ServiceGrant{
		Subject: req.Subject, Groups: req.Groups, ClientID: req.ClientID, ClientName: req.ClientID,
		Servers: req.Servers, Resources: resources, Scopes: req.Scopes, TTL: ttl, GrantType: "admin", Actor: actor,
	})
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusCreated, TokenResponse{AccessToken: tok.AccessToken, TokenType: "Bearer", ExpiresAt: tok.ExpiresAt, GrantID: g.ID, Resources: resources})
	return nil
}

// ServiceAccessRequest is what an administrator grants a confidential
// client for the client_credentials grant. No servers withdraws it.
type ServiceAccessRequest struct {
	Servers []string `json:"servers"`
	Scopes  []string `json:"scopes,omitempty"`
	Groups  []string `json:"groups,omitempty"`
}

// ServiceAccessResponse shows the client's access after the change.
type ServiceAccessResponse struct {
	ClientID string               `json:"client_id"`
	Access   *store.ServiceAccess `json:"service_access"`
}

func (s *Server) setServiceAccess(w http.ResponseWriter, r *http.Request, actor string) error {
	var req ServiceAccessRequest
	if err := decode(r, &req); err != nil {
		return err
	}
	var problems []string
	for _, name := range req.Servers {
		if _, err := s.o.Registry.Get(r.Context(), name); err != nil {
			problems = append(problems, fmt.Sprintf("server %q is not registered", name))
		}
	}
	if len(problems) > 0 {
		return errStatus(http.StatusBadRequest, "%s", strings.Join(problems, "; "))
	}
	c, err := s.o.Grants.SetServiceAccess(r.Context(), actor, r.PathValue("id"), req.Servers, req.Scopes, req.Groups)
	if errors.Is(err, grant.ErrPublicClient) {
		return errStatus(http.StatusBadRequest, "%v", err)
	}
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, ServiceAccessResponse{ClientID: c.ID, Access: c.ServiceAccess})
	return nil
}

// ---- grants and revocation ----

func (s *Server) listGrants(w http.ResponseWriter, r *http.Request, _ string) error {
	q := r.URL.Query()
	grants, err := s.o.Store.ListGrants(r.Context(), store.GrantFilter{
		Subject: q.Get("user"), ClientID: q.Get("client"), Server: q.Get("server"), IncludeRevoked: q.Get("all") == "true",
	})
	if err != nil {
		return err
	}
	for i := range grants {
		// Sealed upstream tokens stay inside Warden.
		grants[i].Upstream = nil
	}
	if grants == nil {
		grants = []store.Grant{}
	}
	if s.o.Providers == nil {
		writeJSON(w, http.StatusOK, grants)
		return nil
	}
	// Each grant shows the upstream accounts its user has connected.
	out := make([]grantView, len(grants))
	connected := map[string][]string{}
	for i, g := range grants {
		names, ok := connected[g.Subject]
		if !ok {
			accounts, err := s.o.Providers.Accounts(r.Context(), store.AccountFilter{Subject: g.Subject})
			if err != nil {
				return err
			}
			for _, a := range accounts {
				names = append(names, a.Provider)
			}
			connected[g.Subject] = names
		}
		out[i] = grantView{Grant: g, Accounts: names}
	}
	writeJSON(w, http.StatusOK, out)
	return nil
}

// grantView is a grant with the providers its user has connected.
type grantView struct {
	store.Grant
	Accounts []string `json:"accounts,omitempty"`
}

// RevokeRequest names what to revoke.
type RevokeRequest struct {
	grant.Target
	// Provider revokes connected accounts at a provider (of Subject only,
	// when set) instead of grants.
	Provider string `json:"provider,omitempty"`
	Reason   string `json:"reason,omitempty"`
}

func (s *Server) revoke(w http.ResponseWriter, r *http.Request, actor string) error {
	var req RevokeRequest
	if err := decode(r, &req); err != nil {
		return err
	}
	if req.Provider != "" {
		return s.revokeAccounts(w, r, actor, req)
	}
	if p, _ := adminauth.FromContext(r.Context()); p.Role != adminauth.RoleAdmin {
		// An operator cuts access to its own servers only: the other
		// targets reach servers outside its scope.
		if req.Target != (grant.Target{Server: req.Server}) || req.Server == "" {
			return errStatus(http.StatusForbidden, "%s (role %s) may revoke only access to a server of its own", p.Name, p.Role)
		}
		if err := s.serverInScope(r, req.Server, "revoke access to server "+req.Server); err != nil {
			return err
		}
	}
	res, err := s.o.Grants.Revoke(r.Context(), actor, req.Target, req.Reason)
	if err != nil && len(res.Revoked)+len(res.Narrowed) == 0 {
		return err
	}
	if err != nil {
		writeJSON(w, http.StatusInternalServerError, map[string]any{"result": res, "error": err.Error()})
		return nil
	}
	writeJSON(w, http.StatusOK, res)
	return nil
}

// ---- keys ----

// RotateRequest selects the keys to rotate; both when neither is set.
type RotateRequest struct {
	Signing bool `json:"signing"`
	Sealing bool `json:"sealing"`
}

func (s *Server) rotateKeys(w http.ResponseWriter, r *http.Request, actor string) error {
	var req RotateRequest
	if err := decode(r, &req); err != nil {
		return err
	}
	if !req.Signing && !req.Sealing {
		req.Signing, req.Sealing = true, true
	}
	out := map[string]string{}
	for _, k := range []struct {
		name string
		want bool
		fn   func() (string, error)
	}{{"signing", req.Signing, s.o.RotateSigning}, {"sealing", req.Sealing, s.o.RotateSealing}} {
		if !k.want {
			continue
		}
		if k.fn == nil {
			return errStatus(http.StatusNotImplemented, "%s key rotation is not available on this server", k.name)
		}
		id, err := k.fn()
		if err != nil {
			return errStatus(http.StatusConflict, "rotate %s key: %v", k.name, err)
		}
		out[k.name] = id
		if err := s.o.Audit.RecordSync(r.Context(), store.AuditEvent{Type: "key_rotated", Actor: actor, Details: map[string]any{"key": k.name, "new_key_id": id}}); err != nil {
			return fmt.Errorf("audit key rotation: %w", err)
		}
	}
	writeJSON(w, http.StatusOK, out)
	return nil
}

// ---- audit ----

func (s *Server) listAudit(w http.ResponseWriter, r *http.Request, _ string) error {
	q := r.URL.Query()
	limit := 100
	if v := q.Get("limit"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n <= 0 || n > 10000 {
			return errStatus(http.StatusBadRequest, "limit must be 1-10000")
		}
		limit = n
	}
	var from uint64
	if v := q.Get("from"); v != "" {
		n, err := strconv.ParseUint(v, 10, 64)
		if err != nil {
			return errStatus(http.StatusBadRequest, "from must be a sequence number")
		}
		from = n
	} else if last, err := s.o.Store.LastAudit(r.Context()); err == nil && last.Seq > uint64(limit) {
		// Without from, show the newest events, like tail.
		from = last.Seq - uint64(limit) + 1
	}
	evs, err := s.o.Store.ListAudit(r.Context(), from, limit)
	if err != nil {
		return err
	}
	if evs == nil {
		evs = []store.AuditEvent{}
	}
	writeJSON(w, http.StatusOK, evs)
	return nil
}

func (s *Server) verifyAudit(w http.ResponseWriter, r *http.Request, _ string) error {
	rep, err := s.verifyTrail(r.Context())
	if err != nil {
		return err
	}
	status := http.StatusOK
	if !rep.OK() {
		status = http.StatusConflict
	}
	writeJSON(w, status, rep)
	return nil
}
