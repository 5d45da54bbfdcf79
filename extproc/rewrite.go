package extproc

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"strconv"

	"github.com/warden-mcp/warden/internal/mcptask"
	"github.com/warden-mcp/warden/internal/toolpin"
	"github.com/warden-mcp/warden/policy"
)

// codeInternalError is JSON-RPC 2.0's internal error: what a list Warden
// could not filter becomes.
const codeInternalError = -32603

// listKeys are the result members holding each list method's items.
var listKeys = map[string]string{
	"tools/list":               "tools",
	"prompts/list":             "prompts",
	"resources/list":           "resources",
	"resources/templates/list": "resourceTemplates",
}

// normalID turns a raw JSON-RPC id into a key that matches however the
// server writes the same id back: strings decoded, numbers by value.
func normalID(raw []byte) (string, bool) {
	raw = bytes.TrimSpace(raw)
	if len(raw) == 0 {
		return "", false
	}
	if raw[0] == '"' {
		var s string
		if json.Unmarshal(raw, &s) != nil {
			return "", false
		}
		return "s:" + s, true
	}
	f, err := strconv.ParseFloat(string(raw), 64)
	if err != nil {
		return "", false
	}
	return "n:" + strconv.FormatFloat(f, 'g', -1, 64), true
}

func rpcError(id json.RawMessage, code int, msg string) []byte {
	if len(id) == 0 {
		id = json.RawMessage("null")
	}
	b, _ := json.Marshal(struct {
		JSONRPC string          `json:"jsonrpc"`
		ID      json.RawMessage `json:"id"`
		Error   struct {
			Code    int    `json:"code"`
			Message string `json:"message"`
		} `json:"error"`
	}{JSONRPC: "2.0", ID: id, Error: struct {
		Code    int    `json:"code"`
		Message string `json:"message"`
	}{code, msg}})
	return b
}

// rewriteJSON filters a JSON body: one JSON-RPC response or a batch of
// them. A body that is not JSON-RPC passes as is unless it is the answer
// to a list request (then it is refused: it cannot be filtered).
func (s *Service) rewriteJSON(ctx context.Context, ex *exchange, body []byte) ([]byte, bool) {
	trimmed := bytes.TrimSpace(body)
	if len(trimmed) > 0 && trimmed[0] == '[' {
		var batch []json.RawMessage
		if err := json.Unmarshal(trimmed, &batch); err != nil {
			return s.unfilterable(ex, nil, fmt.Errorf("batch: %w", err))
		}
		changed := false
		for i, m := range batch {
			out, c := s.rewriteMessage(ctx, ex, m)
			batch[i], changed = out, changed || c
		}
		if !changed {
			return body, false
		}
		b, err := json.Marshal(batch)
		if err != nil {
			return s.unfilterable(ex, nil, err)
		}
		return b, true
	}
	return s.rewriteMessage(ctx, ex, trimmed)
}

// unfilterable answers a body the response path cannot read although a
// list result may be in it: fail closed.
func (s *Service) unfilterable(ex *exchange, id json.RawMessage, err error) ([]byte, bool) {
	for _, c := range ex.calls {
		if _, isList := listKeys[c.method]; isList {
			s.m.failures.WithLabelValues("body").Inc()
			s.o.Logger.Warn("extproc: refusing a list result Warden cannot read", "server", ex.server, "err", err)
			return rpcError(id, codeInternalError, "Warden could not filter this result"), true
		}
	}
	return nil, false
}

// rewriteMessage filters one JSON-RPC message.
func (s *Service) rewriteMessage(ctx context.Context, ex *exchange, msg json.RawMessage) (json.RawMessage, bool) {
	var m struct {
		ID     json.RawMessage `json:"id"`
		Method *string         `json:"method"`
		Result json.RawMessage `json:"result"`
	}
	if err := json.Unmarshal(msg, &m); err != nil {
		out, changed := s.unfilterable(ex, nil, err)
		if !changed {
			return msg, false
		}
		return out, true
	}
	if m.Method != nil || len(m.Result) == 0 {
		return msg, false // a request or notification of the server, or an error
	}
	id, ok := normalID(m.ID)
	if !ok {
		return msg, false
	}
	c, ok := ex.calls[id]
	if !ok {
		return msg, false
	}
	if c.method == "tools/call" {
		s.recordTask(ctx, ex, c, m.Result)
		return msg, false
	}
	res, err := s.filterList(ctx, ex, c, m.Result)
	if err != nil {
		s.m.failures.WithLabelValues("filter").Inc()
		s.o.Logger.Warn("extproc: refusing a list result Warden could not filter", "server", ex.server, "method", c.method, "err", err)
		return rpcError(m.ID, codeInternalError, "Warden could not filter this result"), true
	}
	var whole map[string]json.RawMessage
	if err := json.Unmarshal(msg, &whole); err != nil {
		return rpcError(m.ID, codeInternalError, "Warden could not filter this result"), true
	}
	whole["result"] = res
	out, err := json.Marshal(whole)
	if err != nil {
		return rpcError(m.ID, codeInternalError, "Warden could not filter this result"), true
	}
	return out, true
}

// filterList keeps the items of a list result the caller may use. Other
// members of the result (nextCursor included: pagination is the
// server's, and a filtered page may be shorter or empty) stay as they are.
func (s *Service) filterList(ctx context.Context, ex *exchange, c call, result json.RawMessage) (json.RawMessage, error) {
	method := c.method
	var res map[string]json.RawMessage
	if err := json.Unmarshal(result, &res); err != nil {
		return nil, fmt.Errorf("result: %w", err)
	}
	key := listKeys[method]
	var raw []json.RawMessage
	if v, ok := res[key]; ok {
		if err := json.Unmarshal(v, &raw); err != nil {
			return nil, fmt.Errorf("result.%s: %w", key, err)
		}
	}
	items := make([]policy.Item, len(raw))
	var states []toolpin.State
	switch method {
	case "tools/list":
		defs := make([]toolpin.Definition, len(raw))
		for i, r := range raw {
			d, err := toolpin.Parse(r)
			if err != nil {
				return nil, fmt.Errorf("tool %d: %w", i, err)
			}
			defs[i] = d
			items[i] = policy.Item{Method: "tools/call", Name: d.Name}
		}
		if s.o.Pins != nil {
			var err error
			if states, err = s.o.Pins.Observe(ctx, ex.server, defs); err != nil {
				return nil, err
			}
			for i, st := range states {
				items[i].Tool = policy.ToolState{Pinned: st.Pinned, Changed: st.Changed}
			}
		}
	default:
		for i, r := range raw {
			var it struct {
				Name        string `json:"name"`
				URI         string `json:"uri"`
				URITemplate string `json:"uriTemplate"`
			}
			if err := json.Unmarshal(r, &it); err != nil {
				return nil, fmt.Errorf("item %d: %w", i, err)
			}
			switch method {
			case "prompts/list":
				items[i] = policy.Item{Method: "prompts/get", Name: it.Name}
			case "resources/list":
				items[i] = policy.Item{Method: "resources/read", Resource: it.URI}
			default:
				items[i] = policy.Item{Method: "resources/read", Resource: it.URITemplate}
			}
		}
	}
	base := ex.caller.Input // a copy: Visible overwrites its mcp part
	base.MCP.ProtocolVersion, base.MCP.ID = ex.protocol, c.id
	// The request part the Check's input had; without it (the policy did
	// not read it then) Visible refuses a policy that reads it now.
	base.Request, base.Omitted.Request = ex.request, !ex.hasRequest
	visible, err := s.o.Policy.Visible(ctx, &base, items)
	if err != nil {
		return nil, err
	}
	kept := make([]json.RawMessage, 0, len(raw))
	for i, r := range raw {
		if visible[i] && (states == nil || !states[i].Blocked) {
			kept = append(kept, r)
		}
	}
	s.m.items.WithLabelValues(method, "shown").Add(float64(len(kept)))
	s.m.items.WithLabelValues(method, "hidden").Add(float64(len(raw) - len(kept)))
	b, err := json.Marshal(kept)
	if err != nil {
		return nil, err
	}
	res[key] = b
	if _, scoped := res["cacheScope"]; scoped || ex.protocol == "2026-07-28" {
		// The list depends on who asks: no shared cache may keep it. A
		// server may stamp its own scope ("public") on an older revision's
		// result too (the go-sdk does), and a client or cache that reads
		// it must not share what was filtered for one caller.
		res["cacheScope"] = json.RawMessage(`"private"`)
	}
	return json.Marshal(res)
}

// recordTask remembers the task a tools/call result creates, so that its
// task requests are decided like the call. A failure is logged and
// counted; the result still passes (the task's requests are then refused).
func (s *Service) recordTask(ctx context.Context, ex *exchange, c call, result json.RawMessage) {
	if s.o.Tasks == nil {
		return
	}
	if !c.hasArgs && c.argsRef != "" {
		// Taken whatever the result: held arguments serve this result only.
		args, err := s.o.Tasks.TakeArguments(ctx, c.argsRef, c.argsDigest)
		if err != nil {
			s.m.failures.WithLabelValues("task").Inc()
			s.o.Logger.Warn("extproc: the held arguments of a call are gone; a task it created will be refused", "server", ex.server, "tool", c.tool, "err", err)
			return
		}
		c.arguments, c.hasArgs = args, true
	}
	if !c.hasArgs {
		return
	}
	o := mcptask.Origin{Server: ex.server, Subject: ex.caller.Subject, ClientID: ex.caller.ClientID, GrantID: ex.caller.GrantID,
		Tool: c.tool, Arguments: json.RawMessage(c.arguments)}
	if len(c.arguments) == 0 {
		o.Arguments = nil
	}
	if _, err := s.o.Tasks.RecordResult(ctx, o, result); err != nil {
		s.m.failures.WithLabelValues("task").Inc()
		s.o.Logger.Warn("extproc: could not record a task", "server", ex.server, "tool", c.tool, "err", err)
	}
}
