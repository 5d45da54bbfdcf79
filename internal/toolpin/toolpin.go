// Package toolpin pins the tool definitions of MCP servers: the first time
// Warden sees a tool in a tools/list result it records the digest of its
// definition (name, description, input and output schema, annotations;
// canonical JSON), and every later list is compared with it. A changed
// definition, the "rug pull" that turns a trusted tool into a
// prompt-injection channel, is audited and counted (mode warn) or hidden
// and refused until an admin approves it (mode block).
//
// The response path (extproc) calls Observe with each tools/list result;
// the request path (authz) asks State before a tools/call; admins List and
// Approve. Pins live in the store (store.ToolPins); this package keeps a
// per-server copy in memory, read again after RefreshAfter so approvals
// made by another replica are seen.
package toolpin

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/warden-mcp/warden/internal/mcp"
	"github.com/warden-mcp/warden/internal/store"
)

// Mode is a server's pinning mode.
type Mode string

const (
	// ModeWarn audits and counts a changed definition; the tool stays.
	ModeWarn Mode = "warn"
	// ModeBlock hides a changed tool from lists and refuses its calls
	// until an admin approves the new definition.
	ModeBlock Mode = "block"
)

// NewTools is what block mode does with a tool it has never seen.
type NewTools string

const (
	// NewToolsApprove pins a new tool's first definition as approved.
	NewToolsApprove NewTools = "approve"
	// NewToolsWait treats a new tool like a changed one: hidden and
	// refused until approved.
	NewToolsWait NewTools = "wait"
)

// Setting is one server's pinning configuration.
type Setting struct {
	Mode     Mode
	NewTools NewTools
}

// ParseSetting validates the strings of a server's configuration; empty
// means warn, and approve.
func ParseSetting(mode, newTools string) (Setting, error) {
	s := Setting{Mode: Mode(mode), NewTools: NewTools(newTools)}
	if s.Mode == "" {
		s.Mode = ModeWarn
	}
	if s.NewTools == "" {
		s.NewTools = NewToolsApprove
	}
	if s.Mode != ModeWarn && s.Mode != ModeBlock {
		return Setting{}, fmt.Errorf("pinning %q is not warn or block", mode)
	}
	if s.NewTools != NewToolsApprove && s.NewTools != NewToolsWait {
		return Setting{}, fmt.Errorf("pin_new_tools %q is not approve or wait", newTools)
	}
	return s, nil
}

// Recorder writes audit events.
type Recorder interface {
	RecordSync(ctx context.Context, ev store.AuditEvent) error
}

// Options configure Pins.
type Options struct {
	Store store.ToolPins
	Audit Recorder
	// Setting returns a server's pinning setting; nil: warn and approve
	// for every server.
	Setting    func(ctx context.Context, server string) (Setting, error)
	Registerer prometheus.Registerer
	Logger     *slog.Logger
	Now        func() time.Time
	// RefreshAfter is how long a server's pins are used from memory before
	// they are read again from the store; 10s when zero.
	RefreshAfter time.Duration
}

// State is what pinning says of one tool.
type State struct {
	// Pinned: an approved definition is recorded.
	Pinned bool `json:"pinned"`
	// Changed: the server's definition differs from the approved one.
	Changed bool `json:"changed"`
	// New: no definition was ever approved (a new tool waiting).
	New bool `json:"new"`
	// Blocked: the tool is hidden and its calls refused, for Reason.
	Blocked bool   `json:"blocked"`
	Reason  string `json:"reason,omitempty"`
}

// Pins is the pinning service. It is safe for concurrent use.
type Pins struct {
	o       Options
	changes *prometheus.CounterVec

	mu      sync.Mutex
	servers map[string]*serverPins
}

type serverPins struct {
	loaded time.Time
	tools  map[string]*entry
}

type entry struct {
	pin     store.ToolPin
	headers []mcp.ParamHeader
}

// New returns Pins over o.Store.
func New(o Options) (*Pins, error) {
	if o.Store == nil || o.Audit == nil {
		return nil, errors.New("toolpin: Store and Audit are required")
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.RefreshAfter <= 0 {
		o.RefreshAfter = 10 * time.Second
	}
	if o.Setting == nil {
		o.Setting = func(context.Context, string) (Setting, error) {
			return Setting{Mode: ModeWarn, NewTools: NewToolsApprove}, nil
		}
	}
	p := &Pins{o: o, servers: map[string]*serverPins{},
		changes: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "warden_tool_definition_changes_total",
			Help: "Tool definitions a server listed that differ from the approved (pinned) one, by server and pinning mode.",
		}, []string{"server", "mode"}),
	}
	if o.Registerer != nil {
		if err := o.Registerer.Register(p.changes); err != nil {
			return nil, fmt.Errorf("toolpin: %w", err)
		}
	}
	return p, nil
}

// load returns server's pins, read from the store when not in memory or
// older than RefreshAfter. Callers hold p.mu.
func (p *Pins) load(ctx context.Context, server string) (*serverPins, error) {
	if sp := p.servers[server]; sp != nil && p.o.Now().Sub(sp.loaded) < p.o.RefreshAfter {
		return sp, nil
	}
	list, err := p.o.Store.ListToolPins(ctx, server)
	if err != nil {
		return nil, fmt.Errorf("toolpin: %w", err)
	}
	sp := &serverPins{loaded: p.o.Now(), tools: make(map[string]*entry, len(list))}
	for _, pin := range list {
		sp.tools[pin.Tool] = newEntry(pin)
	}
	p.servers[server] = sp
	return sp, nil
}

func newEntry(pin store.ToolPin) *entry {
	e := &entry{pin: pin}
	var def struct {
		InputSchema json.RawMessage `json:"inputSchema"`
	}
	// A schema whose annotations cannot be read gives none: the request
	// path then lets Mcp-Param headers through to the server, which checks
	// them.
	if json.Unmarshal(pin.SeenDefinition, &def) == nil {
		e.headers, _ = mcp.ParamHeadersFromSchema(def.InputSchema)
	}
	return e
}

func stateOf(pin store.ToolPin, set Setting) State {
	st := State{Pinned: pin.Approved != "", Changed: pin.Approved != "" && pin.Seen != pin.Approved, New: pin.Approved == ""}
	if set.Mode != ModeBlock {
		return st
	}
	switch {
	case st.New:
		st.Blocked = true
		st.Reason = fmt.Sprintf("tool %q is new on server %q and waits for an admin's approval (warden tools approve --server %s --tool %s)", pin.Tool, pin.Server, pin.Server, pin.Tool)
	case st.Changed:
		st.Blocked = true
		st.Reason = fmt.Sprintf("the definition of tool %q on server %q changed since it was approved (%s, now %s); an admin must approve it (warden tools approve --server %s --tool %s)",
			pin.Tool, pin.Server, short(pin.Approved), short(pin.Seen), pin.Server, pin.Tool)
	}
	return st
}

func short(d string) string {
	if len(d) > len("sha256:")+12 {
		return d[:len("sha256:")+12]
	}
	return d
}

// State is the state of tool on server for a call. A tool never listed
// through Warden is unknown: refused in block mode when new tools wait
// (its definition was never seen, let alone approved), otherwise neither
// pinned nor changed.
func (p *Pins) State(ctx context.Context, server, tool string) (State, error) {
	set, err := p.o.Setting(ctx, server)
	if err != nil {
		return State{}, fmt.Errorf("toolpin: setting of %s: %w", server, err)
	}
	p.mu.Lock()
	sp, err := p.load(ctx, server)
	var e *entry
	if err == nil {
		e = sp.tools[tool]
	}
	p.mu.Unlock()
	if err != nil {
		return State{}, err
	}
	if e == nil {
		if set.Mode == ModeBlock && set.NewTools == NewToolsWait {
			return State{New: true, Blocked: true, Reason: fmt.Sprintf("tool %q of server %q was never listed through Warden and is not approved", tool, server)}, nil
		}
		return State{}, nil
	}
	return stateOf(e.pin, set), nil
}

// ParamHeaders returns the x-mcp-header annotations of the definition of
// tool that server listed last (authz.ToolHeaders). ok is false for a tool
// never listed, or when the store cannot be read.
func (p *Pins) ParamHeaders(server, tool string) ([]mcp.ParamHeader, bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	sp, err := p.load(context.Background(), server)
	if err != nil {
		return nil, false
	}
	e := sp.tools[tool]
	if e == nil {
		return nil, false
	}
	return e.headers, true
}

// Observe records the tool definitions of one tools/list result of server
// and returns each tool's state, in order. New tools are pinned (or left
// waiting), changed ones audited with the old and new digests and the
// description's diff, once per new definition. An error means the result
// must not be shown.
func (p *Pins) Observe(ctx context.Context, server string, defs []Definition) ([]State, error) {
	set, err := p.o.Setting(ctx, server)
	if err != nil {
		return nil, fmt.Errorf("toolpin: setting of %s: %w", server, err)
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	sp, err := p.load(ctx, server)
	if err != nil {
		return nil, err
	}
	now := p.o.Now().UTC()
	out := make([]State, len(defs))
	for i, d := range defs {
		e := sp.tools[d.Name]
		switch {
		case e == nil:
			pin := store.ToolPin{Server: server, Tool: d.Name, Seen: d.Digest, SeenDefinition: d.Canonical, FirstSeen: now, SeenAt: now}
			if set.Mode == ModeWarn || set.NewTools == NewToolsApprove {
				pin.Approved, pin.ApprovedDefinition, pin.ApprovedAt, pin.ApprovedBy = d.Digest, d.Canonical, now, "pinning:first-seen"
			}
			err := p.o.Store.CreateToolPin(ctx, pin)
			if errors.Is(err, store.ErrAlreadyExists) {
				// Another replica pinned it first: take its record.
				pin, err = p.o.Store.GetToolPin(ctx, server, d.Name)
				if err == nil {
					e = newEntry(pin)
					sp.tools[d.Name] = e
					if e.pin.Seen != d.Digest {
						if err := p.seen(ctx, sp, e, d, set, now); err != nil {
							return nil, err
						}
					}
					out[i] = stateOf(e.pin, set)
					continue
				}
			}
			if err != nil {
				return nil, fmt.Errorf("toolpin: %w", err)
			}
			pin.Version = 1
			sp.tools[d.Name] = newEntry(pin)
			ev := store.AuditEvent{Time: now, Type: "tool_pin", Server: server, Tool: d.Name, Actor: pin.ApprovedBy,
				Reason: "new tool pinned on first sight", Details: map[string]any{"digest": d.Digest, "mode": string(set.Mode)}}
			if pin.Approved == "" {
				ev.Reason = "new tool waits for approval"
			}
			if err := p.o.Audit.RecordSync(ctx, ev); err != nil {
				return nil, fmt.Errorf("toolpin: audit: %w", err)
			}
		case e.pin.Seen != d.Digest:
			if err := p.seen(ctx, sp, e, d, set, now); err != nil {
				return nil, err
			}
		}
		out[i] = stateOf(sp.tools[d.Name].pin, set)
	}
	return out, nil
}

// seen records that the server now lists definition d of a known tool.
func (p *Pins) seen(ctx context.Context, sp *serverPins, e *entry, d Definition, set Setting, now time.Time) error {
	var prev store.ToolPin
	err := p.o.Store.UpdateToolPin(ctx, e.pin.Server, e.pin.Tool, func(cur store.ToolPin) (store.ToolPin, error) {
		prev = cur
		cur.Seen, cur.SeenDefinition, cur.SeenAt = d.Digest, d.Canonical, now
		return cur, nil
	})
	if err != nil {
		return fmt.Errorf("toolpin: %w", err)
	}
	next := prev
	next.Seen, next.SeenDefinition, next.SeenAt, next.Version = d.Digest, d.Canonical, now, prev.Version+1
	sp.tools[d.Name] = newEntry(next)
	if prev.Seen == d.Digest {
		return nil // another replica recorded it already (and audited it)
	}
	ev := store.AuditEvent{Time: now, Type: "tool_change", Server: next.Server, Tool: next.Tool,
		Details: map[string]any{"approved_digest": next.Approved, "previous_digest": prev.Seen, "new_digest": d.Digest, "mode": string(set.Mode)}}
	switch {
	case next.Approved == "":
		ev.Reason = "a waiting new tool's definition changed"
	case d.Digest == next.Approved:
		ev.Reason = "tool definition is back to the approved one"
	default:
		p.changes.WithLabelValues(next.Server, string(set.Mode)).Inc()
		ev.Reason = "tool definition differs from the approved one"
		if set.Mode == ModeBlock {
			ev.Reason += "; hidden and refused until approved"
		}
		p.o.Logger.Warn("tool definition changed", "server", next.Server, "tool", next.Tool,
			"approved", next.Approved, "seen", d.Digest, "mode", string(set.Mode))
	}
	base := next.ApprovedDefinition
	if base == nil {
		base = prev.SeenDefinition
	}
	if diff := DescriptionDiff(description(base), description(d.Canonical)); diff != "" {
		ev.Details["description_diff"] = diff
	}
	if err := p.o.Audit.RecordSync(ctx, ev); err != nil {
		return fmt.Errorf("toolpin: audit: %w", err)
	}
	return nil
}

// Status is one tool as `warden tools list` shows it.
type Status struct {
	store.ToolPin
	// State is "pinned", "changed" or "new".
	State string `json:"state"`
	// DescriptionDiff is, for a changed tool, the diff from the approved
	// description to the one listed now.
	DescriptionDiff string `json:"description_diff,omitempty"`
}

// List returns the pins of server ("" : every server), read from the store.
func (p *Pins) List(ctx context.Context, server string) ([]Status, error) {
	pins, err := p.o.Store.ListToolPins(ctx, server)
	if err != nil {
		return nil, fmt.Errorf("toolpin: %w", err)
	}
	out := make([]Status, len(pins))
	for i, pin := range pins {
		st := Status{ToolPin: pin, State: "pinned"}
		switch {
		case pin.Approved == "":
			st.State = "new"
		case pin.Approved != pin.Seen:
			st.State = "changed"
			st.DescriptionDiff = DescriptionDiff(description(pin.ApprovedDefinition), description(pin.SeenDefinition))
		}
		out[i] = st
	}
	return out, nil
}

// Forget drops what this process keeps in memory of server's pins, for a
// removed server (the store dropped its pins with it): a server added
// again under the name is read afresh, not served from the old copy.
// Other replicas read the store again within RefreshAfter.
func (p *Pins) Forget(server string) {
	p.mu.Lock()
	delete(p.servers, server)
	p.mu.Unlock()
}

// ErrNothingToApprove: the tool's listed definition is the approved one.
var ErrNothingToApprove = errors.New("toolpin: the tool's definition is already approved")

// Approve approves the definition server lists now for tool, as actor.
// It is audited with the old and new digests and the description's diff.
func (p *Pins) Approve(ctx context.Context, server, tool, actor string) (store.ToolPin, error) {
	now := p.o.Now().UTC()
	var prev, next store.ToolPin
	err := p.o.Store.UpdateToolPin(ctx, server, tool, func(cur store.ToolPin) (store.ToolPin, error) {
		if cur.Approved == cur.Seen {
			return cur, ErrNothingToApprove
		}
		prev = cur
		cur.Approved, cur.ApprovedDefinition, cur.ApprovedAt, cur.ApprovedBy = cur.Seen, cur.SeenDefinition, now, actor
		next = cur
		return cur, nil
	})
	if err != nil {
		return store.ToolPin{}, fmt.Errorf("toolpin: approve %s/%s: %w", server, tool, err)
	}
	next.Version = prev.Version + 1
	ev := store.AuditEvent{Time: now, Type: "tool_approve", Actor: actor, Server: server, Tool: tool, Reason: "tool definition approved",
		Details: map[string]any{"old_digest": prev.Approved, "new_digest": next.Approved}}
	if diff := DescriptionDiff(description(prev.ApprovedDefinition), description(next.ApprovedDefinition)); diff != "" {
		ev.Details["description_diff"] = diff
	}
	if err := p.o.Audit.RecordSync(ctx, ev); err != nil {
		return store.ToolPin{}, fmt.Errorf("toolpin: audit: %w", err)
	}
	p.mu.Lock()
	if sp := p.servers[server]; sp != nil {
		sp.tools[tool] = newEntry(next)
	}
	p.mu.Unlock()
	return next, nil
}
