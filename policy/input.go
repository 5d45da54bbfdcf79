package policy

import (
	"encoding/json"
	"fmt"

	"github.com/open-policy-agent/opa/v1/ast"
)

// InputVersion is the version of the input document described by Input.
// It changes only when a field is removed or changes meaning; new fields may
// be added within a version.
const InputVersion = 1

// MCP message kinds carried in Input.MCP.Kind.
const (
	KindRequest      = "request"      // JSON-RPC request (has an id)
	KindNotification = "notification" // JSON-RPC notification (no id)
	KindResponse     = "response"     // JSON-RPC response sent by the client (e.g. a sampling result)
	KindStream       = "stream"       // GET: the client opens the server-to-client SSE stream
	KindSessionEnd   = "session_end"  // DELETE: the client ends its session
)

// Client kinds carried in Input.Client.Kind.
const (
	ClientUser    = "user"    // acts for a signed-in person (user-delegated)
	ClientService = "service" // a service or agent acting as itself
)

// Input is the documented, versioned input document (schema version 1) that
// policies see as `input`. docs/policy.md describes it field by field.
//
// Every field is always present in the document a policy sees: absent
// strings are "", absent lists [] and absent maps {}, so rules need no
// "is it defined" guards. The JSON tags give the names policies use; the
// document is built by hand from this struct (see Value), not through JSON.
type Input struct {
	Version int     `json:"version"`
	Subject Subject `json:"subject"`
	Client  Client  `json:"client"`
	Server  Server  `json:"server"`
	MCP     MCP     `json:"mcp"`
	Request Request `json:"request"`
	Grant   Grant   `json:"grant"`
	// Credential is how Warden authenticates upstream for this server.
	Credential Credential `json:"credential"`
	// Tool is what Warden's tool pinning knows of mcp.tool (tools/call)
	// or, when deciding what a list shows, of the listed tool.
	Tool ToolState `json:"tool"`

	// Caller, when set, replaces Subject, Client, Server, Grant and
	// Credential with a
	// copy converted earlier (see NewCaller); it must describe the same
	// grant and server.
	Caller *Caller `json:"-"`
	// Omitted names the parts the caller left empty because the policy it
	// asked (Engine.Needs) does not read them. Decide fails, rather than
	// decide on an empty part, if the policy in use reads one of them (a
	// reload in between).
	Omitted Needs `json:"-"`
}

// Subject is who the call is made for: the signed-in user, or the service
// identity a token was minted for.
type Subject struct {
	Sub    string   `json:"sub"`
	Email  string   `json:"email"`
	Name   string   `json:"name"`
	Groups []string `json:"groups"`
	// Claims is the IdP claims snapshot taken at login (JSON types only).
	Claims map[string]any `json:"claims"`
}

// Client is the OAuth client making the call.
type Client struct {
	ID   string `json:"id"`
	Name string `json:"name"`
	Kind string `json:"kind"` // ClientUser or ClientService
}

// Server is the registered MCP server the call goes to.
type Server struct {
	Name   string            `json:"name"`
	Labels map[string]string `json:"labels"`
}

// MCP describes one JSON-RPC message (or the stream/session operation).
type MCP struct {
	Kind   string `json:"kind"`
	Method string `json:"method"`
	// ID is the JSON-RPC id as decoded (string or number); nil for
	// notifications and non-POST operations.
	ID any `json:"id"`
	// Tool and Arguments are params.name and params.arguments of tools/call.
	Tool      string         `json:"tool"`
	Arguments map[string]any `json:"arguments"`
	// ArgumentsJSON is the raw JSON Arguments were decoded from. With it
	// (and a Caller) the engine can reuse the decision of an identical
	// earlier message; it is not part of the document policies see.
	ArgumentsJSON []byte `json:"-"`
	// Resource is params.uri of resources/read, resources/subscribe and
	// resources/unsubscribe.
	Resource string `json:"resource"`
	// Prompt is params.name of prompts/get.
	Prompt string `json:"prompt"`
	// Session and ProtocolVersion are the Mcp-Session-Id and
	// MCP-Protocol-Version headers.
	Session         string `json:"session"`
	ProtocolVersion string `json:"protocol_version"`
	// Batch is true when the message came in a JSON-RPC batch of BatchSize
	// messages; each message is decided on its own and the batch is allowed
	// only if every message is.
	Batch     bool `json:"batch"`
	BatchSize int  `json:"batch_size"`
	// ClientInfo is the client software as the client reports it
	// (2026-07-28: _meta io.modelcontextprotocol/clientInfo on every
	// request; 2025: params.clientInfo of initialize). Self-reported and
	// never verified: for display and audit, not for security decisions.
	ClientInfo ClientInfo `json:"client_info"`
	// LogLevel is _meta io.modelcontextprotocol/logLevel (2026-07-28).
	LogLevel string `json:"log_level"`
	// Traceparent is the W3C trace context in _meta.traceparent.
	Traceparent string `json:"traceparent"`
	// Task names the task a tasks/get, tasks/update, tasks/cancel or
	// tasks/result request is about. For those requests the rest of the
	// document describes the call that created the task (method
	// "tools/call", its tool and arguments), so that the task is decided
	// like that call; Task.Method is the request's own method.
	Task Task `json:"task"`
	// Subscriptions is the notification filter of subscriptions/listen.
	Subscriptions Subscriptions `json:"subscriptions"`
}

// ClientInfo is an MCP Implementation: name and version.
type ClientInfo struct {
	Name    string `json:"name"`
	Version string `json:"version"`
}

// Task identifies a task of the tasks extension.
type Task struct {
	ID     string `json:"id"`
	Method string `json:"method"`
}

// Subscriptions is what a subscriptions/listen request opts in to.
type Subscriptions struct {
	ToolsListChanged     bool     `json:"tools_list_changed"`
	PromptsListChanged   bool     `json:"prompts_list_changed"`
	ResourcesListChanged bool     `json:"resources_list_changed"`
	Resources            []string `json:"resources"`
	Tasks                []string `json:"tasks"`
}

func (s *Subscriptions) zero() bool {
	return !s.ToolsListChanged && !s.PromptsListChanged && !s.ResourcesListChanged && len(s.Resources) == 0 && len(s.Tasks) == 0
}

// ToolState is what tool pinning knows of a tool on its server: Pinned
// when Warden has an approved definition of it (its digest recorded),
// Changed when the definition the server now shows differs from the
// approved one. A tool Warden has never seen listed is neither.
type ToolState struct {
	Pinned  bool `json:"pinned"`
	Changed bool `json:"changed"`
}

// Request is the HTTP request as Envoy reported it.
type Request struct {
	ID     string `json:"id"` // x-request-id
	Method string `json:"method"`
	Path   string `json:"path"`
	Host   string `json:"host"`
	// Headers holds selected request headers, lowercased names. Credentials
	// (authorization, cookies) are never included.
	Headers map[string]string `json:"headers"`
	Time    string            `json:"time"` // RFC 3339 with nanoseconds, UTC
}

// Credential is the server's upstream credential mode and whether the
// caller has what it needs: for "provider" servers, whether the user has
// connected an account at the provider; true for every other mode.
type Credential struct {
	Mode      string `json:"mode"`
	Connected bool   `json:"connected"`
}

// Grant is the authorization the caller's handle resolved to.
type Grant struct {
	ID      string   `json:"id"`
	Scopes  []string `json:"scopes"`
	Servers []string `json:"servers"`
}

// Keys are built once: the terms are immutable and their hashes are
// computed at construction, so every request reuses them.
var (
	kVersion = ast.StringTerm("version")
	kSubject = ast.StringTerm("subject")
	kClient  = ast.StringTerm("client")
	kServer  = ast.StringTerm("server")
	kMCP     = ast.StringTerm("mcp")
	kRequest = ast.StringTerm("request")
	kGrant   = ast.StringTerm("grant")

	kSub    = ast.StringTerm("sub")
	kEmail  = ast.StringTerm("email")
	kName   = ast.StringTerm("name")
	kGroups = ast.StringTerm("groups")
	kClaims = ast.StringTerm("claims")

	kID   = ast.StringTerm("id")
	kKind = ast.StringTerm("kind")

	kLabels = ast.StringTerm("labels")

	kMethod          = ast.StringTerm("method")
	kTool            = ast.StringTerm("tool")
	kArguments       = ast.StringTerm("arguments")
	kResource        = ast.StringTerm("resource")
	kPrompt          = ast.StringTerm("prompt")
	kSession         = ast.StringTerm("session")
	kProtocolVersion = ast.StringTerm("protocol_version")
	kBatch           = ast.StringTerm("batch")
	kBatchSize       = ast.StringTerm("batch_size")
	kClientInfo      = ast.StringTerm("client_info")
	kVersionField    = ast.StringTerm("version")
	kLogLevel        = ast.StringTerm("log_level")
	kTraceparent     = ast.StringTerm("traceparent")
	kTask            = ast.StringTerm("task")
	kSubscriptions   = ast.StringTerm("subscriptions")
	kToolsChanged    = ast.StringTerm("tools_list_changed")
	kPromptsChanged  = ast.StringTerm("prompts_list_changed")
	kResourcesChange = ast.StringTerm("resources_list_changed")
	kResources       = ast.StringTerm("resources")
	kTasks           = ast.StringTerm("tasks")

	kPath    = ast.StringTerm("path")
	kHost    = ast.StringTerm("host")
	kHeaders = ast.StringTerm("headers")
	kTime    = ast.StringTerm("time")

	kScopes  = ast.StringTerm("scopes")
	kServers = ast.StringTerm("servers")

	kCredential = ast.StringTerm("credential")
	kMode       = ast.StringTerm("mode")
	kConnected  = ast.StringTerm("connected")
	kToolState  = ast.StringTerm("tool")
	kPinned     = ast.StringTerm("pinned")
	kChanged    = ast.StringTerm("changed")
)

// Caller is the part of the input that stays the same for every request a
// grant makes to one server: subject, client, server and grant, converted
// once. A caller that caches grants can build one per grant and server
// (NewCaller), keep it beside the cached grant, and set Input.Caller; Decide
// then converts only the per-request fields (mcp, request), which is about
// half the cost of building the input. A Caller is immutable and safe for
// concurrent use.
type Caller struct {
	subject, client, server, grant, credential *ast.Term
	// json is the same part of the audit record (AppendRecord), for the
	// server named serverName.
	json       []byte
	serverName string
}

// NewCaller converts subject, client, server and grant once for many
// requests. It fails when the claims hold a non-JSON type.
func NewCaller(s Subject, c Client, srv Server, g Grant, cr Credential) (*Caller, error) {
	b := builder{terms: make([]ast.Term, 0, 24+len(s.Groups)+2*len(srv.Labels)+len(g.Scopes)+len(g.Servers))}
	subject, err := b.subject(&s)
	if err != nil {
		return nil, err
	}
	rec, err := callerJSON(&s, &c, &srv, &g, &cr)
	if err != nil {
		return nil, err
	}
	return &Caller{subject: subject, client: b.client(&c), server: b.server(&srv), grant: b.grant(&g), credential: b.credential(&cr), json: rec, serverName: srv.Name}, nil
}

// Value builds the input document as an OPA value. It is written out field
// by field, with the terms of the fixed schema allocated in one block,
// because generic conversion (a JSON round trip or reflection) costs
// several times more on the hot path. Arguments and claims must hold JSON
// types (what encoding/json decodes into); anything else is an error.
func (in *Input) Value() (ast.Value, error) {
	n := 30 + 2*len(in.Request.Headers)
	if in.Caller == nil {
		n += 24 + len(in.Subject.Groups) + 2*len(in.Server.Labels) + len(in.Grant.Scopes) + len(in.Grant.Servers)
	}
	b := builder{terms: make([]ast.Term, 0, n)}

	var subject, client, server, grant, credential *ast.Term
	if c := in.Caller; c != nil {
		subject, client, server, grant, credential = c.subject, c.client, c.server, c.grant, c.credential
	} else {
		var err error
		if subject, err = b.subject(&in.Subject); err != nil {
			return nil, err
		}
		client, server, grant, credential = b.client(&in.Client), b.server(&in.Server), b.grant(&in.Grant), b.credential(&in.Credential)
	}
	args, err := anyMap(in.MCP.Arguments)
	if err != nil {
		return nil, fmt.Errorf("mcp.arguments: %w", err)
	}
	id, err := b.id(in.MCP.ID)
	if err != nil {
		return nil, fmt.Errorf("mcp.id: %w", err)
	}

	mcp := b.obj(
		[2]*ast.Term{kKind, b.known(in.MCP.Kind)},
		[2]*ast.Term{kMethod, b.known(in.MCP.Method)},
		[2]*ast.Term{kID, id},
		[2]*ast.Term{kTool, b.str(in.MCP.Tool)},
		[2]*ast.Term{kArguments, args},
		[2]*ast.Term{kResource, b.str(in.MCP.Resource)},
		[2]*ast.Term{kPrompt, b.str(in.MCP.Prompt)},
		[2]*ast.Term{kSession, b.str(in.MCP.Session)},
		[2]*ast.Term{kProtocolVersion, b.known(in.MCP.ProtocolVersion)},
		[2]*ast.Term{kBatch, ast.InternedTerm(in.MCP.Batch)},
		[2]*ast.Term{kBatchSize, b.int(in.MCP.BatchSize)},
		[2]*ast.Term{kClientInfo, b.clientInfo(&in.MCP.ClientInfo)},
		[2]*ast.Term{kLogLevel, b.known(in.MCP.LogLevel)},
		[2]*ast.Term{kTraceparent, b.str(in.MCP.Traceparent)},
		[2]*ast.Term{kTask, b.task(&in.MCP.Task)},
		[2]*ast.Term{kSubscriptions, b.subscriptions(&in.MCP.Subscriptions)},
	)
	request := b.obj(
		[2]*ast.Term{kID, b.str(in.Request.ID)},
		[2]*ast.Term{kMethod, b.known(in.Request.Method)},
		[2]*ast.Term{kPath, b.str(in.Request.Path)},
		[2]*ast.Term{kHost, b.str(in.Request.Host)},
		[2]*ast.Term{kHeaders, b.strMap(in.Request.Headers)},
		[2]*ast.Term{kTime, b.str(in.Request.Time)},
	)
	return ast.NewObject(
		[2]*ast.Term{kVersion, b.int(in.Version)},
		[2]*ast.Term{kSubject, subject},
		[2]*ast.Term{kClient, client},
		[2]*ast.Term{kServer, server},
		[2]*ast.Term{kMCP, mcp},
		[2]*ast.Term{kRequest, request},
		[2]*ast.Term{kGrant, grant},
		[2]*ast.Term{kCredential, credential},
		[2]*ast.Term{kToolState, toolStateTerms[in.Tool]},
	), nil
}

// toolStateTerms are the four possible input.tool documents, shared.
var toolStateTerms = func() map[ToolState]*ast.Term {
	m := map[ToolState]*ast.Term{}
	for _, p := range []bool{false, true} {
		for _, c := range []bool{false, true} {
			m[ToolState{Pinned: p, Changed: c}] = ast.ObjectTerm(
				[2]*ast.Term{kPinned, ast.InternedTerm(p)},
				[2]*ast.Term{kChanged, ast.InternedTerm(c)},
			)
		}
	}
	return m
}()

// knownTerms are shared terms for the values most requests carry (message
// kinds, MCP methods, HTTP methods, protocol versions): a lookup here is
// cheaper than allocating a fresh term. Terms are immutable once built.
var knownTerms = func() map[string]*ast.Term {
	m := map[string]*ast.Term{}
	for _, s := range []string{
		KindRequest, KindNotification, KindResponse, KindStream, KindSessionEnd,
		"initialize", "ping", "tools/list", "tools/call", "resources/list", "resources/templates/list",
		"resources/read", "resources/subscribe", "resources/unsubscribe", "prompts/list", "prompts/get",
		"completion/complete", "logging/setLevel", "notifications/initialized",
		"notifications/cancelled", "notifications/progress", "notifications/roots/list_changed",
		"server/discover", "subscriptions/listen", "tasks/get", "tasks/update", "tasks/cancel", "tasks/result",
		"GET", "POST", "DELETE",
		"2024-11-05", "2025-03-26", "2025-06-18", "2025-11-25", "2026-07-28",
		"debug", "info", "notice", "warning", "error", "critical", "alert", "emergency",
	} {
		m[s] = ast.StringTerm(s)
	}
	return m
}()

// builder hands out terms from one preallocated block: one allocation for
// all the terms of the document instead of one per field.
type builder struct {
	terms []ast.Term
}

func (b *builder) term(v ast.Value) *ast.Term {
	if len(b.terms) == cap(b.terms) {
		return ast.NewTerm(v) // estimate exceeded: still correct, just slower
	}
	b.terms = append(b.terms, ast.Term{Value: v})
	return &b.terms[len(b.terms)-1]
}

func (b *builder) str(s string) *ast.Term {
	if s == "" {
		return ast.InternedEmptyString
	}
	return b.term(ast.String(s))
}

// known returns the shared term for a common value, else a new one.
func (b *builder) known(s string) *ast.Term {
	if t, ok := knownTerms[s]; ok {
		return t
	}
	return b.str(s)
}

func (b *builder) int(i int) *ast.Term {
	if i >= 0 && i <= 512 {
		return ast.InternedTerm(i) // shared, no allocation
	}
	return b.term(ast.InternedValue(i))
}

func (b *builder) obj(kvs ...[2]*ast.Term) *ast.Term {
	return b.term(ast.NewObject(kvs...))
}

func (b *builder) strArray(ss []string) *ast.Term {
	if len(ss) == 0 {
		return ast.InternedEmptyArray
	}
	elems := make([]*ast.Term, len(ss))
	for i, s := range ss {
		elems[i] = b.str(s)
	}
	return b.term(ast.NewArray(elems...))
}

func (b *builder) strMap(m map[string]string) *ast.Term {
	if len(m) == 0 {
		return ast.InternedEmptyObject
	}
	kvs := make([][2]*ast.Term, 0, len(m))
	for k, v := range m {
		kvs = append(kvs, [2]*ast.Term{b.str(k), b.str(v)})
	}
	return b.term(ast.NewObject(kvs...))
}

// The parts of the mcp document most messages leave empty are shared
// terms, so a message without them costs no allocation.
var (
	emptyClientInfo = ast.ObjectTerm(
		[2]*ast.Term{kName, ast.InternedEmptyString},
		[2]*ast.Term{kVersionField, ast.InternedEmptyString},
	)
	emptyTask = ast.ObjectTerm(
		[2]*ast.Term{kID, ast.InternedEmptyString},
		[2]*ast.Term{kMethod, ast.InternedEmptyString},
	)
	emptySubscriptions = ast.ObjectTerm(
		[2]*ast.Term{kToolsChanged, ast.InternedTerm(false)},
		[2]*ast.Term{kPromptsChanged, ast.InternedTerm(false)},
		[2]*ast.Term{kResourcesChange, ast.InternedTerm(false)},
		[2]*ast.Term{kResources, ast.InternedEmptyArray},
		[2]*ast.Term{kTasks, ast.InternedEmptyArray},
	)
)

func (b *builder) clientInfo(c *ClientInfo) *ast.Term {
	if c.Name == "" && c.Version == "" {
		return emptyClientInfo
	}
	return b.obj([2]*ast.Term{kName, b.str(c.Name)}, [2]*ast.Term{kVersionField, b.str(c.Version)})
}

func (b *builder) task(t *Task) *ast.Term {
	if t.ID == "" && t.Method == "" {
		return emptyTask
	}
	return b.obj([2]*ast.Term{kID, b.str(t.ID)}, [2]*ast.Term{kMethod, b.known(t.Method)})
}

func (b *builder) subscriptions(s *Subscriptions) *ast.Term {
	if s.zero() {
		return emptySubscriptions
	}
	return b.obj(
		[2]*ast.Term{kToolsChanged, ast.InternedTerm(s.ToolsListChanged)},
		[2]*ast.Term{kPromptsChanged, ast.InternedTerm(s.PromptsListChanged)},
		[2]*ast.Term{kResourcesChange, ast.InternedTerm(s.ResourcesListChanged)},
		[2]*ast.Term{kResources, b.strArray(s.Resources)},
		[2]*ast.Term{kTasks, b.strArray(s.Tasks)},
	)
}

func (b *builder) subject(s *Subject) (*ast.Term, error) {
	claims, err := anyMap(s.Claims)
	if err != nil {
		return nil, fmt.Errorf("subject.claims: %w", err)
	}
	return b.obj(
		[2]*ast.Term{kSub, b.str(s.Sub)},
		[2]*ast.Term{kEmail, b.str(s.Email)},
		[2]*ast.Term{kName, b.str(s.Name)},
		[2]*ast.Term{kGroups, b.strArray(s.Groups)},
		[2]*ast.Term{kClaims, claims},
	), nil
}

func (b *builder) client(c *Client) *ast.Term {
	return b.obj(
		[2]*ast.Term{kID, b.str(c.ID)},
		[2]*ast.Term{kName, b.str(c.Name)},
		[2]*ast.Term{kKind, b.str(c.Kind)},
	)
}

func (b *builder) server(s *Server) *ast.Term {
	return b.obj(
		[2]*ast.Term{kName, b.str(s.Name)},
		[2]*ast.Term{kLabels, b.strMap(s.Labels)},
	)
}

func (b *builder) grant(g *Grant) *ast.Term {
	return b.obj(
		[2]*ast.Term{kID, b.str(g.ID)},
		[2]*ast.Term{kScopes, b.strArray(g.Scopes)},
		[2]*ast.Term{kServers, b.strArray(g.Servers)},
	)
}

func (b *builder) credential(c *Credential) *ast.Term {
	return b.obj(
		[2]*ast.Term{kMode, b.str(c.Mode)},
		[2]*ast.Term{kConnected, ast.InternedTerm(c.Connected)},
	)
}

// id converts a JSON-RPC id: a string, a number or null.
func (b *builder) id(id any) (*ast.Term, error) {
	switch id := id.(type) {
	case nil:
		return ast.InternedNullTerm, nil
	case string:
		return b.str(id), nil
	case float64:
		// Most ids are small counters: share the interned integer terms.
		if id >= 0 && id <= 512 && id == float64(int(id)) {
			return ast.InternedTerm(int(id)), nil
		}
		return b.term(ast.FloatNumberTerm(id).Value), nil
	case json.Number:
		if t := ast.InternedIntNumberTermFromString(string(id)); t != nil {
			return t, nil
		}
		v, err := jsonValue(id)
		if err != nil {
			return nil, err
		}
		return b.term(v), nil
	case int, int64:
		v, err := jsonValue(id)
		if err != nil {
			return nil, err
		}
		return b.term(v), nil
	default:
		return nil, fmt.Errorf("unsupported type %T (want string or number)", id)
	}
}

func anyMap(m map[string]any) (*ast.Term, error) {
	if len(m) == 0 {
		return ast.InternedEmptyObject, nil
	}
	v, err := jsonValue(m)
	if err != nil {
		return nil, err
	}
	return ast.NewTerm(v), nil
}

// jsonValue converts what encoding/json decodes into. Unlike
// ast.InterfaceToValue it never falls back to a JSON round trip, so an
// unexpected Go type is reported instead of silently costing microseconds.
func jsonValue(x any) (ast.Value, error) {
	switch x := x.(type) {
	case nil:
		return ast.InternedNullValue, nil
	case bool:
		return ast.InternedValue(x), nil
	case string:
		return ast.String(x), nil
	case float64:
		return ast.FloatNumberTerm(x).Value, nil
	case json.Number:
		if _, err := x.Float64(); err != nil {
			return nil, fmt.Errorf("invalid number %q", string(x))
		}
		return ast.Number(x), nil
	case int:
		return ast.InternedValue(x), nil
	case int64:
		return ast.InternedValue(x), nil
	case []any:
		terms := make([]*ast.Term, len(x))
		for i, e := range x {
			v, err := jsonValue(e)
			if err != nil {
				return nil, err
			}
			terms[i] = ast.NewTerm(v)
		}
		return ast.NewArray(terms...), nil
	case []string:
		terms := make([]*ast.Term, len(x))
		for i, s := range x {
			terms[i] = ast.StringTerm(s)
		}
		return ast.NewArray(terms...), nil
	case map[string]any:
		kvs := make([][2]*ast.Term, 0, len(x))
		for k, e := range x {
			v, err := jsonValue(e)
			if err != nil {
				return nil, fmt.Errorf("%s: %w", k, err)
			}
			kvs = append(kvs, [2]*ast.Term{ast.StringTerm(k), ast.NewTerm(v)})
		}
		return ast.NewObject(kvs...), nil
	default:
		return nil, fmt.Errorf("unsupported type %T (want JSON types)", x)
	}
}
