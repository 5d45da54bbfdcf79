// Package authz answers Envoy's ext_authz Check (envoy.service.auth.v3) for
// every MCP request. A Check runs a fixed pipeline of phases (pipeline.go):
// bind the request to a registered server, identify the caller by its
// handle, check the handle's audience and scopes, classify the JSON-RPC
// body, decide with policy, attach the upstream credential, and record one
// audit event. Each phase either passes the request on or ends it with an
// outcome.
//
// Check maps every outcome to a CheckResponse rather than a gRPC error, so
// Envoy always gets an answer it applies as written; failures inside Warden
// deny with 503 (fail closed).
package authz

import (
	"context"
	"fmt"
	"log/slog"
	"net/url"
	"reflect"
	"strings"
	"sync/atomic"
	"time"

	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	lru "github.com/hashicorp/golang-lru/v2"
	"go.opentelemetry.io/otel/trace"

	"github.com/warden-mcp/warden/internal/mcp"
	"github.com/warden-mcp/warden/internal/mcptask"
	"github.com/warden-mcp/warden/internal/store"
	"github.com/warden-mcp/warden/internal/toolpin"
	"github.com/warden-mcp/warden/policy"
)

// Resolver reads the handle and its grant in one consistent read.
type Resolver interface {
	ResolveHandle(ctx context.Context, digest string) (store.Handle, store.Grant, error)
}

// Servers looks up registered servers.
type Servers interface {
	Server(ctx context.Context, name string) (store.Server, error)
}

// Decider evaluates policy.
type Decider interface {
	Decide(ctx context.Context, in *policy.Input) (policy.Decision, error)
	Revision() string
	// Needs tells which costly parts of the input the policy reads; the
	// others are left empty (and marked omitted).
	Needs() policy.Needs
}

// ToolHeaders knows, per server and tool, the Mcp-Param headers the tool's
// definition declares (x-mcp-header annotations of its inputSchema, MCP
// 2026-07-28), learned from the tool definitions the response path sees.
// mcp.ParamHeadersFromSchema reads them from a definition.
type ToolHeaders interface {
	// ParamHeaders returns the annotations of tool on server; ok is false
	// when the tool's definition is not known.
	ParamHeaders(server, tool string) (headers []mcp.ParamHeader, ok bool)
}

// TaskOrigins finds the call that created a task (internal/mcptask).
type TaskOrigins interface {
	// Lookup returns the origin of taskID on server, or an error that is
	// mcptask.ErrNotFound when the task is unknown.
	Lookup(ctx context.Context, server, taskID string) (mcptask.Origin, error)
}

// ArgumentHolder keeps the arguments of a tools/call too large for the
// dynamic metadata until the response path takes them (internal/mcptask).
type ArgumentHolder interface {
	// HoldArguments stores args and returns the reference the metadata
	// carries.
	HoldArguments(ctx context.Context, args []byte) (ref string, err error)
}

// ToolPins is what tool pinning (internal/toolpin) says of a tool.
type ToolPins interface {
	State(ctx context.Context, server, tool string) (toolpin.State, error)
}

// Recorder writes audit events.
type Recorder interface {
	// Record queues ev; it blocks while the trail is saturated.
	Record(ctx context.Context, ev store.AuditEvent) error
	// RecordSync returns once ev is durably stored.
	RecordSync(ctx context.Context, ev store.AuditEvent) error
}

// UseRecorder learns of every allowed Check, for the last use shown in the
// access matrix. It is called on the hot path: it must not block or write
// to a store (internal/usage keeps uses in memory and flushes in batches).
type UseRecorder interface {
	Used(grantID, server string, at time.Time)
}

// Options configure a Service.
type Options struct {
	Resolver Resolver
	Servers  Servers
	Policy   Decider
	Audit    Recorder
	Attacher *Attacher
	// ResourceURL and ResourceMetadataURL map a server name to its
	// canonical resource URL and its RFC 9728 metadata URL.
	ResourceURL         func(server string) string
	ResourceMetadataURL func(server string) string
	// PublicURL is where clients reach the MCP servers (Envoy's listener).
	// Its host is the Host a request must carry, and its origin an Origin
	// a request may carry (MCP transports: servers validate Origin, and
	// bind to what they serve, against DNS rebinding).
	PublicURL string
	// AllowedOrigins are further origins (scheme://host[:port]) of
	// browser pages allowed to call the MCP servers.
	AllowedOrigins []string
	// AllowedHosts are further Host values (host[:port]) the MCP servers
	// are reached at, such as a second listener's address.
	AllowedHosts []string
	MaxBodyBytes int
	// Timeout bounds one Check; 0 means only the caller's deadline.
	Timeout time.Duration
	// ServerFromPath lets a check without context_extensions.server take
	// the server from a /mcp/<name> path, for proxies that cannot set
	// context extensions (Envoy Gateway SecurityPolicy, Istio CUSTOM).
	// Only safe when the proxy routes /mcp/<name> to that server alone.
	ServerFromPath bool
	// ToolHeaders, when set, lets Warden check the Mcp-Param headers of
	// 2026-07-28 tools/call requests; nil: no annotations are known and
	// those headers pass to the server, which checks them.
	ToolHeaders ToolHeaders
	// Tasks finds the call that created a task, so that task requests are
	// decided like it; nil: no task is known and every task request is
	// refused.
	Tasks TaskOrigins
	// Arguments, when set, holds the arguments of a tools/call larger than
	// the metadata carries (maxMetadataArguments) for the response path,
	// so the task such a call creates is recorded; nil: that task is not
	// recorded and its task requests are refused.
	Arguments ArgumentHolder
	// Pins, when set, is tool pinning: a tools/call of a tool it blocks is
	// refused before policy runs, and policy sees input.tool.
	Pins ToolPins
	// LastUse, when set, is told of every allow.
	LastUse UseRecorder
	// Accounts and Connect serve "provider" servers: whether the user has
	// connected an account, and the connect link of a URL elicitation.
	// Nil: provider servers fail closed (503).
	Accounts Accounts
	Connect  ConnectLinks
	// Redact names the tool arguments the decision inputs recorded in the
	// audit trail leave out; nil keeps them all.
	Redact  *policy.Redaction
	Metrics *Metrics
	Logger  *slog.Logger
	Now     func() time.Time
	// Tracer, when set, records each Check as a span (tracing.go); nil
	// (tracing off) costs nothing.
	Tracer trace.Tracer
}

// Service implements authv3.AuthorizationServer.
type Service struct {
	authv3.UnimplementedAuthorizationServer
	o Options
	// hosts and origins are what a request's Host and Origin may be.
	hosts, origins map[string]bool
	// callers caches the policy input parts fixed for one handle on one
	// server, keyed by the versions of every record they come from.
	callers *lru.Cache[callerKey, *policy.Caller]
	// recordSize is the size of a recent check's recorded inputs, so that
	// the next one is allocated once at about its size (recorded.go).
	recordSize atomic.Int64
}

type callerKey struct {
	digest                      string
	handleVer, grantVer, srvVer uint64
	server                      string
	connected                   bool
}

// callersMax bounds cached policy callers (one per live handle and server).
const callersMax = 50_000

// New checks opts and returns a Service. Every required option is checked
// on its own, nil pointers and nil funcs included, so a wiring mistake is an
// error at start rather than a panic on the first allowed Check.
func New(o Options) (*Service, error) {
	var missing []string
	need := func(name string, v any) {
		if isNil(v) {
			missing = append(missing, name)
		}
	}
	need("Resolver", o.Resolver)
	need("Servers", o.Servers)
	need("Policy", o.Policy)
	need("Audit", o.Audit)
	need("Attacher", o.Attacher)
	need("ResourceURL", o.ResourceURL)
	need("ResourceMetadataURL", o.ResourceMetadataURL)
	if o.PublicURL == "" {
		missing = append(missing, "PublicURL")
	}
	if len(missing) > 0 {
		return nil, fmt.Errorf("authz: missing options %s", strings.Join(missing, ", "))
	}
	hosts, origins, err := allowedHostsAndOrigins(o.PublicURL, o.AllowedHosts, o.AllowedOrigins)
	if err != nil {
		return nil, fmt.Errorf("authz: %w", err)
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.Metrics == nil {
		o.Metrics = NewMetrics(nil)
	}
	if o.MaxBodyBytes <= 0 {
		o.MaxBodyBytes = 1 << 20
	}
	callers, err := lru.New[callerKey, *policy.Caller](callersMax)
	if err != nil {
		return nil, fmt.Errorf("authz: %w", err)
	}
	return &Service{o: o, hosts: hosts, origins: origins, callers: callers}, nil
}

// isNil reports whether v is nil or holds a nil pointer, func, map, slice,
// channel or interface: an interface holding a typed nil is not == nil.
func isNil(v any) bool {
	if v == nil {
		return true
	}
	switch rv := reflect.ValueOf(v); rv.Kind() {
	case reflect.Pointer, reflect.Func, reflect.Map, reflect.Slice, reflect.Chan, reflect.Interface:
		return rv.IsNil()
	}
	return false
}

// allowedHostsAndOrigins normalises the public URL and the extra hosts and
// origins into lookup sets.
func allowedHostsAndOrigins(public string, extraHosts, extraOrigins []string) (map[string]bool, map[string]bool, error) {
	u, err := url.Parse(public)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, nil, fmt.Errorf("PublicURL %q is not an absolute http(s) URL", public)
	}
	hosts := map[string]bool{normalHost(u.Scheme, u.Host): true}
	origins := map[string]bool{normalOrigin(u.Scheme + "://" + u.Host): true}
	for _, h := range extraHosts {
		if h == "" || strings.ContainsAny(h, "/ ") {
			return nil, nil, fmt.Errorf("allowed host %q is not host[:port]", h)
		}
		// A default port may be written or not on either side.
		h = strings.ToLower(h)
		hosts[h], hosts[normalHost("http", h)], hosts[normalHost("https", h)] = true, true, true
	}
	for _, o := range extraOrigins {
		ou, err := url.Parse(o)
		if err != nil || ou.Scheme == "" || ou.Host == "" || (ou.Path != "" && ou.Path != "/") || ou.RawQuery != "" {
			return nil, nil, fmt.Errorf("allowed origin %q is not scheme://host[:port]", o)
		}
		origins[normalOrigin(ou.Scheme+"://"+ou.Host)] = true
	}
	return hosts, origins, nil
}

// normalHost lowercases host and drops the scheme's default port, so that
// "MCP.example.com:443" and "mcp.example.com" compare equal for https.
func normalHost(scheme, host string) string {
	host = strings.ToLower(host)
	switch {
	case scheme == "https" && strings.HasSuffix(host, ":443"):
		return strings.TrimSuffix(host, ":443")
	case scheme == "http" && strings.HasSuffix(host, ":80"):
		return strings.TrimSuffix(host, ":80")
	}
	return host
}

// normalOrigin lowercases an Origin header value and drops the scheme's
// default port; anything that is not scheme://host comes back as is and
// matches no allowed origin ("null" included).
func normalOrigin(o string) string {
	scheme, host, ok := strings.Cut(o, "://")
	if !ok || host == "" || strings.ContainsAny(host, "/?#") {
		return o
	}
	scheme = strings.ToLower(scheme)
	return scheme + "://" + normalHost(scheme, host)
}

// Check answers one ext_authz request.
func (s *Service) Check(ctx context.Context, req *authv3.CheckRequest) (resp *authv3.CheckResponse, err error) {
	c := &check{start: s.o.Now()}
	// Envoy sends its ext_authz timeout as the call's deadline; a second
	// timer is needed only when that one is absent or later.
	if dl, ok := ctx.Deadline(); s.o.Timeout > 0 && (!ok || time.Until(dl) > s.o.Timeout) {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, s.o.Timeout)
		defer cancel()
	}
	defer func() {
		if p := recover(); p != nil {
			s.o.Metrics.failure(failPanic)
			s.o.Logger.Error("authz: recovered panic in Check", "panic", fmt.Sprint(p), "request_id", c.requestID)
			resp = s.record(ctx, c, unavailable(failPanic, "internal error"))
			err = nil
		}
	}()
	return s.record(ctx, c, s.run(ctx, c, req)), nil
}
