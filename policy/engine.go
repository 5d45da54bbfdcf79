// Package policy is Warden's Rego engine. It loads the operator's policy
// (or the embedded default), compiles it once per revision, and answers
// Decide for every MCP message on the request path. A policy that fails to
// compile on reload never replaces the last good one.
//
// The package knows nothing of Envoy or OAuth: callers fill an Input and
// deny on any error.
package policy

import (
	"context"
	"embed"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"runtime/debug"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/open-policy-agent/opa/v1/ast"
	"github.com/open-policy-agent/opa/v1/metrics"
	"github.com/open-policy-agent/opa/v1/topdown"
	"github.com/prometheus/client_golang/prometheus"
)

//go:embed default/*.rego
var defaultFiles embed.FS

// DefaultFS holds the embedded default policy (authz.rego) and its tests
// (authz_test.rego), e.g. for `warden policy default` to write them out as
// a starting point.
func DefaultFS() fs.FS {
	sub, err := fs.Sub(defaultFiles, "default")
	if err != nil {
		panic(err) // the directory is embedded at build time
	}
	return sub
}

// Options configure an Engine.
type Options struct {
	// Dir holds .rego policy files and .json/.yaml data files, read
	// recursively. Empty selects the embedded default policy.
	Dir string
	// FS, when set, is the policy instead of Dir: its files from the root,
	// read once (a candidate policy for replay; Reload does nothing).
	// FSName names it in errors and Status.
	FS     fs.FS
	FSName string
	Logger *slog.Logger
	// Registerer receives the engine's metrics; nil leaves them unregistered.
	Registerer prometheus.Registerer
	// Now stamps loads and errors in Status; time.Now when nil.
	Now func() time.Time
	// Debounce is how long Watch waits after the last file change before
	// reloading, so an editor's or ConfigMap's burst of events is one
	// reload. 250ms when zero.
	Debounce time.Duration
}

// Decision is the policy's answer for one MCP message.
type Decision struct {
	Allow  bool
	Reason string
	// Scopes, on a denial, are the OAuth scopes the call needs (step-up,
	// SEP-835): the caller is challenged to re-authorize with them
	// rather than refused for good. From the decision's "scopes" member.
	Scopes []string
	// Revision identifies the policy that decided (for the audit trail).
	Revision string
}

// Status describes the loaded policy, for /readyz detail.
type Status struct {
	Revision string    `json:"revision"`
	Source   string    `json:"source"`
	LoadedAt time.Time `json:"loaded_at"`
	// Files are the policy's Rego modules, relative to the policy
	// directory (data files are not listed).
	Files []string `json:"files"`
	// LastError is the newest load failure while it is still current: a
	// later successful load clears it. While it is set, the policy in use is
	// older than the files on disk.
	LastError   string    `json:"last_error,omitempty"`
	LastErrorAt time.Time `json:"last_error_at,omitzero"`
	// Memoized tells whether decisions are reused for identical callers and
	// messages; NotMemoizedBecause says why not.
	Memoized           bool   `json:"memoized"`
	NotMemoizedBecause string `json:"not_memoized_because,omitempty"`
}

// Engine evaluates the current policy revision. It is safe for concurrent
// use; Decide takes no locks.
type Engine struct {
	src      source
	log      *slog.Logger
	now      func() time.Time
	debounce time.Duration
	m        *engineMetrics

	cur atomic.Pointer[compiled]

	mu          sync.Mutex // serialises loads and guards the fields below
	lastErr     string
	lastErrorAt time.Time
}

// New loads and compiles the initial policy. It fails, naming each
// offending file:line, when that policy does not compile: Warden must not
// start without a policy it can enforce.
func New(opts Options) (*Engine, error) {
	e := &Engine{
		log:      opts.Logger,
		now:      opts.Now,
		debounce: opts.Debounce,
	}
	if e.log == nil {
		e.log = slog.New(slog.DiscardHandler)
	}
	if e.now == nil {
		e.now = time.Now
	}
	if e.debounce <= 0 {
		e.debounce = 250 * time.Millisecond
	}
	switch {
	case opts.FS != nil:
		e.src = source{fsys: opts.FS, dir: ".", name: opts.FSName}
	case opts.Dir == "":
		e.src = source{fsys: defaultFiles, dir: "default"}
	default:
		fi, err := os.Stat(opts.Dir)
		if err != nil {
			return nil, fmt.Errorf("policy: %w", err)
		}
		if !fi.IsDir() {
			return nil, fmt.Errorf("policy: %s is not a directory", opts.Dir)
		}
		e.src = source{dir: opts.Dir}
	}
	m, err := newMetrics(opts.Registerer)
	if err != nil {
		return nil, fmt.Errorf("policy: %w", err)
	}
	e.m = m

	c, err := e.build(context.Background())
	if err != nil {
		e.m.reloads.WithLabelValues("failed").Inc()
		return nil, fmt.Errorf("policy: %s: %w", e.src, err)
	}
	e.m.reloads.WithLabelValues("ok").Inc()
	e.cur.Store(c)
	e.log.Info("policy loaded", "source", c.source, "revision", c.revision, "modules", c.modules)
	return e, nil
}

func (e *Engine) build(ctx context.Context) (*compiled, error) {
	l, err := e.src.read(false)
	if err != nil {
		return nil, err
	}
	if cur := e.cur.Load(); cur != nil && cur.revision == l.revision {
		return cur, nil
	}
	c, err := compile(ctx, l)
	if err != nil {
		return nil, err
	}
	c.source = e.src.String()
	c.loadedAt = e.now()
	return c, nil
}

// Needs tells which costly parts of the input the policy in use can read,
// so a caller can skip building the rest. It may change on reload: read it
// for every decision.
func (e *Engine) Needs() Needs { return e.cur.Load().needs }

// Revision is the content hash of the policy and data in use, such as
// "sha256:3f2a9c0d1e4b5a67".
func (e *Engine) Revision() string { return e.cur.Load().revision }

// Status reports the policy in use and the newest load failure, if any.
func (e *Engine) Status() Status {
	c := e.cur.Load()
	e.mu.Lock()
	defer e.mu.Unlock()
	return Status{
		Revision:           c.revision,
		Source:             c.source,
		LoadedAt:           c.loadedAt,
		Files:              slices.Clone(c.files),
		LastError:          e.lastErr,
		LastErrorAt:        e.lastErrorAt,
		Memoized:           c.memo != nil,
		NotMemoizedBecause: c.memoReason,
	}
}

// Reload re-reads the policy directory. A policy that fails to load or
// compile is logged, counted and shown in Status, and the last good policy
// stays in use; the error is returned too. Reloading unchanged files is
// cheap and swaps nothing. With the embedded default it does nothing.
func (e *Engine) Reload() error {
	if e.src.fsys != nil {
		return nil
	}
	e.mu.Lock()
	defer e.mu.Unlock()

	old := e.cur.Load()
	c, err := e.build(context.Background())
	if err != nil {
		e.m.reloads.WithLabelValues("failed").Inc()
		e.m.stale.Set(1)
		e.lastErr = err.Error()
		e.lastErrorAt = e.now()
		e.log.Error("policy reload failed; keeping the last good policy",
			"source", e.src.String(), "revision", old.revision, "error", err)
		return fmt.Errorf("policy: %s: %w", e.src, err)
	}
	e.m.reloads.WithLabelValues("ok").Inc()
	e.m.stale.Set(0)
	e.lastErr, e.lastErrorAt = "", time.Time{}
	if c != old {
		e.cur.Store(c)
		e.log.Info("policy reloaded", "source", c.source, "revision", c.revision,
			"previous", old.revision, "modules", c.modules)
	}
	return nil
}

var (
	noMetrics      = metrics.NoOp() // OPA's per-query metrics are not exported anywhere
	neverCancelled = topdown.NewCancel()
	// noRequestMetadata is shared by every query: only custom built-ins
	// read it, and Warden registers none. Passing it saves a map per query.
	noRequestMetadata = map[string]any{}
)

// Decide evaluates the policy for one MCP message. Any error means the
// caller must deny: the policy failed, produced a malformed decision, or
// ctx ended first. A policy that defines no answer for this input is not an
// error: it is a denial with reason "no decision".
func (e *Engine) Decide(ctx context.Context, in *Input) (d Decision, err error) {
	start := time.Now()
	c := e.cur.Load()
	defer func() {
		if p := recover(); p != nil {
			e.log.Error("policy evaluation panicked", "revision", c.revision, "panic", p, "stack", string(debug.Stack()))
			d, err = Decision{}, fmt.Errorf("panic: %v", p)
		}
		e.m.evalTime.Observe(time.Since(start).Seconds())
		if err != nil {
			e.m.evalErrors.Inc()
			d = Decision{Revision: c.revision}
			err = fmt.Errorf("policy %s: %w", c.revision, err)
		}
	}()
	if n := c.needs; in != nil && (n.Request && in.Omitted.Request) || (n.ID && in.Omitted.ID) || (n.Arguments && in.Omitted.Arguments) {
		return Decision{}, errors.New("the input omits parts the policy reads (the policy was reloaded since they were chosen)")
	}
	var key memoKey
	memoize := false
	if c.memo != nil {
		if key, memoize = keyFor(in, c.memoFields); memoize {
			if d, ok := c.memo.get(key); ok {
				e.m.memoHits.Inc()
				d.Revision = c.revision
				return d, nil
			}
		}
	}
	d, err = c.decide(ctx, in)
	if err == nil && memoize {
		c.memo.put(key, d)
	}
	d.Revision = c.revision
	return d, err
}

func (c *compiled) decide(ctx context.Context, in *Input) (Decision, error) {
	if in == nil {
		return Decision{}, errors.New("no input")
	}
	// OPA would watch the context with a goroutine per query; a context
	// callback costs much less, and nothing when the context cannot end.
	cancel := neverCancelled
	if ctx.Done() != nil {
		if err := ctx.Err(); err != nil {
			return Decision{}, err
		}
		cn := topdown.NewCancel()
		stop := context.AfterFunc(ctx, cn.Cancel)
		defer stop()
		cancel = cn
	}
	return c.decideWith(ctx, in, cancel)
}

// decideWith evaluates the decision (or allow) query for in.
func (c *compiled) decideWith(ctx context.Context, in *Input, cancel topdown.Cancel) (Decision, error) {
	v, err := in.Value()
	if err != nil {
		return Decision{}, fmt.Errorf("input: %w", err)
	}
	input := ast.NewTerm(v)

	if c.decision != nil {
		t, err := c.eval(ctx, c.decision, input, cancel)
		if err != nil {
			return Decision{}, err
		}
		if t != nil {
			return decisionFromObject(t)
		}
	}
	if c.allow != nil {
		t, err := c.eval(ctx, c.allow, input, cancel)
		if err != nil {
			return Decision{}, err
		}
		if t != nil {
			allow, ok := t.Value.(ast.Boolean)
			if !ok {
				return Decision{}, fmt.Errorf("%s is %s, want a boolean", AllowPath, ast.ValueName(t.Value))
			}
			return withDefaultReason(bool(allow), ""), nil
		}
	}
	return Decision{Reason: "no decision"}, nil
}

// eval runs a prepared query and returns its single value, or nil when it
// is undefined. It drives OPA's evaluator (topdown) directly rather than
// through rego.PreparedEvalQuery: same evaluator, same compiled query, but
// without the per-call result conversion and bookkeeping, which measured
// at about a sixth of the cost of a simple policy (see bench_test.go).
func (c *compiled) eval(ctx context.Context, q *query, input *ast.Term, cancel topdown.Cancel) (*ast.Term, error) {
	txn, err := c.store.NewTransaction(ctx)
	if err != nil {
		return nil, fmt.Errorf("evaluate %s: %w", q.path, err)
	}
	defer c.store.Abort(ctx, txn)
	vc := getVCache()
	defer putVCache(vc)

	var out *ast.Term
	n := 0
	err = topdown.NewQuery(q.body).
		WithQueryCompiler(q.qc).
		WithCompiler(c.compiler).
		WithStore(c.store).
		WithTransaction(txn).
		WithInput(input).
		WithCancel(cancel).
		WithMetrics(noMetrics).
		WithIndexing(true).
		WithEarlyExit(true).
		WithVirtualCache(vc).
		WithRequestMetadata(noRequestMetadata).
		// A failing built-in (an invalid regex, malformed JSON given to
		// json.unmarshal, a type error) fails the decision instead of
		// quietly making one rule undefined: in a policy of deny rules, an
		// undefined deny rule would let the call through.
		WithStrictBuiltinErrors(true).
		Iter(ctx, func(qr topdown.QueryResult) error {
			n++
			out = qr[resultVar]
			return nil
		})
	switch {
	case err != nil:
		if ctxErr := ctx.Err(); ctxErr != nil {
			return nil, fmt.Errorf("evaluate %s: %w: %w", q.path, ctxErr, err)
		}
		return nil, fmt.Errorf("evaluate %s: %w", q.path, err)
	case n > 1:
		return nil, fmt.Errorf("evaluate %s: %d results, want one", q.path, n)
	case n == 1 && out == nil:
		return nil, fmt.Errorf("evaluate %s: result not bound", q.path)
	}
	return out, nil
}

var (
	allowKey  = ast.StringTerm("allow")
	reasonKey = ast.StringTerm("reason")
	scopesKey = ast.StringTerm("scopes")
)

// decisionFromObject reads {"allow": bool, "reason": string, ...}. Other
// keys are the policy's own business and are ignored.
func decisionFromObject(t *ast.Term) (Decision, error) {
	obj, ok := t.Value.(ast.Object)
	if !ok {
		return Decision{}, fmt.Errorf("%s is %s, want an object {allow, reason}", DecisionPath, ast.ValueName(t.Value))
	}
	at := obj.Get(allowKey)
	if at == nil {
		return Decision{}, fmt.Errorf("%s has no allow field", DecisionPath)
	}
	allow, ok := at.Value.(ast.Boolean)
	if !ok {
		return Decision{}, fmt.Errorf("%s.allow is %s, want a boolean", DecisionPath, ast.ValueName(at.Value))
	}
	var reason string
	if rt := obj.Get(reasonKey); rt != nil {
		s, ok := rt.Value.(ast.String)
		if !ok {
			return Decision{}, fmt.Errorf("%s.reason is %s, want a string", DecisionPath, ast.ValueName(rt.Value))
		}
		reason = string(s)
	}
	d := withDefaultReason(bool(allow), reason)
	if st := obj.Get(scopesKey); st != nil {
		scopes, err := scopeList(st)
		if err != nil {
			return Decision{}, err
		}
		d.Scopes = scopes
	}
	return d, nil
}

// scopeList reads the decision's scopes: an array or set of scope tokens
// (RFC 6749 section 3.3: printable ASCII but space, double quote and
// backslash), sorted and without duplicates so that a challenge is the
// same for the same decision.
func scopeList(t *ast.Term) ([]string, error) {
	var terms []*ast.Term
	switch v := t.Value.(type) {
	case *ast.Array:
		v.Foreach(func(e *ast.Term) { terms = append(terms, e) })
	case ast.Set:
		terms = v.Slice()
	default:
		return nil, fmt.Errorf("%s.scopes is %s, want an array of strings", DecisionPath, ast.ValueName(t.Value))
	}
	out := make([]string, 0, len(terms))
	for _, e := range terms {
		s, ok := e.Value.(ast.String)
		if !ok || !scopeToken(string(s)) {
			return nil, fmt.Errorf("%s.scopes holds %v, want scope tokens", DecisionPath, e)
		}
		out = append(out, string(s))
	}
	slices.Sort(out)
	return slices.Compact(out), nil
}

func scopeToken(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		if c := s[i]; c < 0x21 || c > 0x7e || c == '"' || c == '\\' {
			return false
		}
	}
	return true
}

func withDefaultReason(allow bool, reason string) Decision {
	if reason == "" {
		if allow {
			reason = "allowed"
		} else {
			reason = "denied by policy"
		}
	}
	return Decision{Allow: allow, Reason: reason}
}
