package policy

import (
	"context"
	"errors"
	"fmt"
	"runtime/debug"
	"time"

	"github.com/open-policy-agent/opa/v1/ast"
	"github.com/open-policy-agent/opa/v1/topdown"
)

// Item is one entry of a list result, named by the call that would use
// it: a tool (tools/call), a prompt (prompts/get), a resource or resource
// template (resources/read of its URI or URI template).
type Item struct {
	// Method is the call: "tools/call", "prompts/get" or "resources/read".
	Method string
	// Name is the tool or prompt name; Resource the URI (or URI template).
	Name     string
	Resource string
	// Tool is the pinning state of a tool item.
	Tool ToolState
}

// Visible decides, for each item of one list result, whether the caller
// may see it. base describes the caller and the list request (its Caller
// should be set: the items share it); its MCP and Tool members are
// overwritten per item and restored to nothing useful, so pass a copy
// you do not need afterwards.
//
// Each item is presented as the call that would use it, with no
// arguments and the list request's id (base.MCP.ID) and HTTP request
// (base.Request): mcp.kind "request", mcp.method the item's Method, mcp.tool,
// mcp.prompt or mcp.resource its name, input.tool its pinning state. When
// the policy defines data.warden.authz.visible, that boolean decides (an
// undefined visible is false); otherwise the call decision does: an
// allowed call is visible, and so is a call denied with scopes (a step-up
// the caller can still make). Any error means no item may be shown.
//
// The items are evaluated with one prepared query of the one policy
// revision in use when Visible starts, and memoized like Decide.
func (e *Engine) Visible(ctx context.Context, base *Input, items []Item) (out []bool, err error) {
	start := time.Now()
	c := e.cur.Load()
	defer func() {
		if p := recover(); p != nil {
			e.log.Error("policy visibility evaluation panicked", "revision", c.revision, "panic", p, "stack", string(debug.Stack()))
			out, err = nil, fmt.Errorf("panic: %v", p)
		}
		e.m.evalTime.Observe(time.Since(start).Seconds())
		if err != nil {
			e.m.evalErrors.Inc()
			out = nil
			err = fmt.Errorf("policy %s: %w", c.revision, err)
		}
	}()
	if base == nil {
		return nil, errors.New("no input")
	}
	if n := c.needs; (n.Request && base.Omitted.Request) || (n.ID && base.Omitted.ID) {
		return nil, errors.New("the input omits parts the policy reads (the policy was reloaded since they were chosen)")
	}
	cancel := neverCancelled
	if ctx.Done() != nil {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		cn := topdown.NewCancel()
		stop := context.AfterFunc(ctx, cn.Cancel)
		defer stop()
		cancel = cn
	}
	proto, id := base.MCP.ProtocolVersion, base.MCP.ID
	session := base.MCP.Session
	info, logLevel := base.MCP.ClientInfo, base.MCP.LogLevel
	out = make([]bool, len(items))
	for i, it := range items {
		base.MCP = MCP{
			Kind: KindRequest, Method: it.Method, ID: id, ProtocolVersion: proto, Session: session,
			ClientInfo: info, LogLevel: logLevel,
			// No arguments: the raw JSON of none, so the memo can key on it.
			ArgumentsJSON: emptyArguments,
		}
		switch it.Method {
		case "tools/call":
			base.MCP.Tool = it.Name
		case "prompts/get":
			base.MCP.Prompt = it.Name
		default:
			base.MCP.Resource = it.Resource
		}
		base.Tool = it.Tool
		var key memoKey
		memoize := false
		if c.memo != nil {
			if key, memoize = keyFor(base, c.memoFields); memoize {
				key.visible = true
				if d, ok := c.memo.get(key); ok {
					e.m.memoHits.Inc()
					out[i] = d.Allow
					continue
				}
			}
		}
		v, err := c.visibleOne(ctx, base, cancel)
		if err != nil {
			return nil, fmt.Errorf("item %d (%s %s%s): %w", i, it.Method, it.Name, it.Resource, err)
		}
		if memoize {
			c.memo.put(key, Decision{Allow: v})
		}
		out[i] = v
	}
	return out, nil
}

var emptyArguments = []byte("{}")

func (c *compiled) visibleOne(ctx context.Context, in *Input, cancel topdown.Cancel) (bool, error) {
	if c.visible == nil {
		d, err := c.decideWith(ctx, in, cancel)
		if err != nil {
			return false, err
		}
		return d.Allow || len(d.Scopes) > 0, nil
	}
	v, err := in.Value()
	if err != nil {
		return false, fmt.Errorf("input: %w", err)
	}
	t, err := c.eval(ctx, c.visible, ast.NewTerm(v), cancel)
	if err != nil || t == nil {
		return false, err
	}
	b, ok := t.Value.(ast.Boolean)
	if !ok {
		return false, fmt.Errorf("%s is %s, want a boolean", VisiblePath, ast.ValueName(t.Value))
	}
	return bool(b), nil
}
