package policy

import (
	"fmt"
	"strconv"
	"strings"

	lru "github.com/hashicorp/golang-lru/v2"
	"github.com/open-policy-agent/opa/v1/ast"
)

// Decision memoization.
//
// Most policies decide from who is calling (subject, client, server, grant:
// the Caller) and what MCP message they send; they do not read the request
// id or time. For such a policy two Checks with the same caller and the same
// message get the same decision, so it is computed once per revision and
// reused. Whether a policy qualifies is decided when it is compiled, from
// what it can read:
//
//   - every reference to input must name a top-level field statically, and
//     none may reach input.request or input.mcp.id (both differ on every
//     request), nor take input or input.mcp whole;
//   - it must call no non-deterministic built-in (time.now_ns, http.send,
//     rand.intn, ...: OPA marks them).
//
// The key then holds everything the policy can see: the Caller (by pointer,
// which keeps it alive while cached, so an address is never reused for
// another identity) and the mcp fields the policy references, with the
// arguments as their raw JSON. A policy that never reads the arguments gets
// the same entry for every call of a tool, whatever the arguments. A policy
// that does not qualify is evaluated on every request, as before.

// memoMax bounds remembered decisions per revision; past it the least
// recently used go.
const memoMax = 65536

type memoKey struct {
	caller                                     *Caller
	kind, method, tool, resource, prompt, args string
	session, protocolVersion                   string
	clientName, clientVersion, logLevel        string
	taskID, taskMethod, subscriptions          string
	batch                                      bool
	batchSize                                  int
	// tool is input.tool when the policy reads it; visible tells a
	// visibility answer (Engine.Visible) from a decision.
	toolState ToolState
	visible   bool
}

type memo struct {
	c *lru.Cache[memoKey, Decision]
}

func newMemo() *memo {
	c, err := lru.New[memoKey, Decision](memoMax)
	if err != nil {
		panic(err) // only for a size below one
	}
	return &memo{c: c}
}

// keyFor returns the memo key of in, or false when in cannot be memoized
// (no Caller, or arguments without their raw JSON).
func keyFor(in *Input, f mcpFields) (memoKey, bool) {
	m := &in.MCP
	if in.Caller == nil {
		return memoKey{}, false
	}
	k := memoKey{caller: in.Caller}
	set := func(bit mcpFields, dst *string, v string) {
		if f&bit != 0 {
			*dst = v
		}
	}
	set(fKind, &k.kind, m.Kind)
	set(fMethod, &k.method, m.Method)
	set(fTool, &k.tool, m.Tool)
	set(fResource, &k.resource, m.Resource)
	set(fPrompt, &k.prompt, m.Prompt)
	set(fSession, &k.session, m.Session)
	set(fProtocolVersion, &k.protocolVersion, m.ProtocolVersion)
	if f&fClientInfo != 0 {
		k.clientName, k.clientVersion = m.ClientInfo.Name, m.ClientInfo.Version
	}
	set(fLogLevel, &k.logLevel, m.LogLevel)
	if f&fTask != 0 {
		k.taskID, k.taskMethod = m.Task.ID, m.Task.Method
	}
	if f&fSubscriptions != 0 && !m.Subscriptions.zero() {
		k.subscriptions = subscriptionsKey(&m.Subscriptions)
	}
	if f&fArguments != 0 {
		if m.Arguments != nil && m.ArgumentsJSON == nil {
			return memoKey{}, false
		}
		k.args = string(m.ArgumentsJSON)
	}
	if f&fBatch != 0 {
		k.batch = m.Batch
	}
	if f&fBatchSize != 0 {
		k.batchSize = m.BatchSize
	}
	if f&fToolState != 0 {
		k.toolState = in.Tool
	}
	return k, true
}

// mcpFields is the set of input.mcp fields a policy references.
type mcpFields uint16

const (
	fKind mcpFields = 1 << iota
	fMethod
	fTool
	fArguments
	fResource
	fPrompt
	fSession
	fProtocolVersion
	fBatch
	fBatchSize
	fClientInfo
	fLogLevel
	fTask
	fSubscriptions
	// fToolState is input.tool (pinning state), a top-level field.
	fToolState
)

// subscriptionsKey encodes a non-empty filter unambiguously: flags, then
// each list with its length.
func subscriptionsKey(s *Subscriptions) string {
	var b strings.Builder
	for _, f := range []bool{s.ToolsListChanged, s.PromptsListChanged, s.ResourcesListChanged} {
		if f {
			b.WriteByte('1')
		} else {
			b.WriteByte('0')
		}
	}
	for _, list := range [][]string{s.Resources, s.Tasks} {
		b.WriteString(strconv.Itoa(len(list)))
		for _, v := range list {
			b.WriteByte(':')
			b.WriteString(strconv.Itoa(len(v)))
			b.WriteByte(':')
			b.WriteString(v)
		}
	}
	return b.String()
}

// mcpFieldBits maps the document names of Input.MCP (see Value) to bits.
// A field missing here makes a policy that reads it unmemoizable, so a
// field added to the document cannot be silently left out of the key.
var mcpFieldBits = map[string]mcpFields{
	"kind": fKind, "method": fMethod, "tool": fTool, "arguments": fArguments, "resource": fResource,
	"prompt": fPrompt, "session": fSession, "protocol_version": fProtocolVersion, "batch": fBatch, "batch_size": fBatchSize,
	"client_info": fClientInfo, "log_level": fLogLevel, "task": fTask, "subscriptions": fSubscriptions,
}

func (c *memo) get(k memoKey) (Decision, bool) { return c.c.Get(k) }

func (c *memo) put(k memoKey, d Decision) { c.c.Add(k, d) }

// memoizable reports whether decisions of the compiled policy depend only on
// the memo key, and if not, why.
func memoizable(compiler *ast.Compiler) (mcpFields, bool, string) {
	reason := ""
	var fields mcpFields
	vis := ast.NewGenericVisitor(func(x any) bool {
		if reason != "" {
			return true
		}
		switch v := x.(type) {
		case ast.Ref:
			if v.HasPrefix(ast.InputRootRef) {
				var f mcpFields
				f, reason = inputRefProblem(v)
				fields |= f
				// Do not descend: the head is the input variable itself.
				return true
			}
		case ast.Var:
			// `input` standing on its own, not as the head of a reference.
			if v.Equal(ast.InputRootDocument.Value) {
				reason = "the policy reads input as a whole"
			}
		case ast.Call:
			reason = nondeterministic(v[0])
		case *ast.Expr:
			if v.IsCall() {
				reason = nondeterministic(v.Operator())
			}
		}
		return false
	})
	for _, mod := range compiler.Modules {
		vis.Walk(mod)
	}
	return fields, reason == "", reason
}

// inputRefProblem returns the mcp field ref reads, or why it rules out
// memoization.
func inputRefProblem(ref ast.Ref) (mcpFields, string) {
	if len(ref) < 2 {
		return 0, "the policy reads input as a whole"
	}
	top, ok := ref[1].Value.(ast.String)
	if !ok {
		return 0, "the policy reads an input field chosen at evaluation time"
	}
	switch string(top) {
	case "request":
		return 0, "the policy reads input.request, which differs on every request"
	case "mcp":
		if len(ref) < 3 {
			return 0, "the policy reads input.mcp as a whole"
		}
		f, ok := ref[2].Value.(ast.String)
		if !ok {
			return 0, "the policy reads an input.mcp field chosen at evaluation time"
		}
		if f == "id" || f == "traceparent" {
			return 0, "the policy reads input.mcp." + string(f) + ", which differs on every request"
		}
		bit, known := mcpFieldBits[string(f)]
		if !known {
			return 0, "the policy reads input.mcp." + string(f) + ", which the decision memo does not key on"
		}
		return bit, ""
	case "tool":
		return fToolState, ""
	}
	return 0, ""
}

// nondeterministic returns why a call to op rules out memoization, if it does.
func nondeterministic(op any) string {
	var name string
	switch v := op.(type) {
	case string:
		name = v
	case *ast.Term:
		name = v.String()
	case ast.Ref:
		name = v.String()
	default:
		return ""
	}
	if b, ok := ast.BuiltinMap[name]; ok && b.Nondeterministic {
		return fmt.Sprintf("the policy calls %s, which is not deterministic", name)
	}
	return ""
}

// Needs tells which costly parts of the input the loaded policy can read.
// A caller may leave a part it cannot read empty: the decision is the same.
type Needs struct {
	// Request: input.request.
	Request bool `json:"request"`
	// ID: input.mcp.id.
	ID bool `json:"id"`
	// Arguments: input.mcp.arguments.
	Arguments bool `json:"arguments"`
}

var allNeeds = Needs{Request: true, ID: true, Arguments: true}

// inputNeeds finds what the policy's references to input can reach. Input
// taken whole (a function argument, `walk(input, ...)`) or indexed by a
// value computed at evaluation time reaches everything under it.
func inputNeeds(compiler *ast.Compiler) Needs {
	var n Needs
	vis := ast.NewGenericVisitor(func(x any) bool {
		switch v := x.(type) {
		case ast.Ref:
			if !v.HasPrefix(ast.InputRootRef) {
				return false
			}
			if len(v) < 2 {
				n = allNeeds
				return true
			}
			top, ok := v[1].Value.(ast.String)
			switch {
			case !ok:
				n = allNeeds
			case top == "request":
				n.Request = true
			case top == "mcp":
				if len(v) < 3 {
					n.ID, n.Arguments = true, true
					break
				}
				f, ok := v[2].Value.(ast.String)
				switch {
				case !ok:
					n.ID, n.Arguments = true, true
				case f == "id":
					n.ID = true
				case f == "arguments":
					n.Arguments = true
				}
			}
			return true
		case ast.Var:
			if v.Equal(ast.InputRootDocument.Value) {
				n = allNeeds
			}
		}
		return false
	})
	for _, mod := range compiler.Modules {
		vis.Walk(mod)
	}
	return n
}
