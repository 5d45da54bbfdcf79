package main

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"time"

	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"google.golang.org/grpc"

	"github.com/warden-mcp/warden/test/load"
)

// The side-by-side with the real opa-envoy-plugin (issue 12, "The hot
// path against the real anchor"): the same per-tool policy on both,
// tools/list open and tools/call allowed only for group analysts and the
// tools search, get_weather and echo, driven with the same four requests
// per caller, two allowed and two denied by policy.

const anchorData = `{"tools_by_group": {"analysts": ["search", "get_weather", "echo"]}}`

// anchorBodies are the mix; the last two are denied by policy.
var anchorBodies = []string{
	`{"jsonrpc":"2.0","id":7,"method":"tools/call","params":{"name":"search","arguments":{"query":"quarterly revenue","limit":10}}}`,
	`{"jsonrpc":"2.0","id":8,"method":"tools/list","params":{}}`,
	`{"jsonrpc":"2.0","id":9,"method":"tools/call","params":{"name":"delete_employee","arguments":{"id":"e-1042"}}}`,
	`{"jsonrpc":"2.0","id":10,"method":"tools/call","params":{"name":"export_payroll","arguments":{"month":"2026-10"}}}`,
}

func anchorDenied(i int) bool { return i%len(anchorBodies) >= 2 }

// pluginPolicy is the same decision written against the plugin's input:
// the caller comes from headers a filter in front set (Envoy jwt_authn with
// claim_to_headers), the cheapest identity the plugin can have. The
// decision object is the documented plugin pattern.
const pluginPolicy = `package envoy.authz

import rego.v1

h := input.attributes.request.http.headers

groups := split(h["x-mcp-groups"], ",")

rpc := input.parsed_body

messages := rpc if is_array(rpc) else := [rpc]

denied_tools contains m.params.name if {
	some m in messages
	m.method == "tools/call"
	not tool_allowed(m.params.name)
}

tool_allowed(name) if {
	some g in groups
	name in data.tools_by_group[g]
}

rpc_id := messages[0].id if messages[0].id != null else := null

result := {
	"allowed": false,
	"http_status": 413,
	"headers": {"content-type": "application/json"},
	"body": json.marshal({"jsonrpc": "2.0", "id": null, "error": {"code": -32600, "message": "request body truncated"}}),
} if {
	input.truncated_body
} else := {
	"allowed": true,
	"headers": {"x-mcp-subject": h["x-mcp-user"]},
	"request_headers_to_remove": ["authorization"],
} if {
	h["x-mcp-user"] != ""
	count(denied_tools) == 0
} else := {
	"allowed": false,
	"http_status": 403,
	"headers": {"content-type": "application/json"},
	"body": json.marshal({
		"jsonrpc": "2.0",
		"id": rpc_id,
		"error": {"code": -32003, "message": sprintf("tool %s not allowed", [concat(", ", denied_tools)])},
	}),
} if {
	h["x-mcp-user"] != ""
} else := {
	"allowed": false,
	"http_status": 401,
	"headers": {"www-authenticate": "Bearer"},
	"body": "",
}
`

func anchorRequest(identity map[string]string) func(int) *authv3.CheckRequest {
	return func(i int) *authv3.CheckRequest {
		body := []byte(anchorBodies[i%len(anchorBodies)])
		id := "load-" + strconv.Itoa(i)
		h := map[string]string{
			":method": "POST", ":path": "/mcp/bi", ":authority": "mcp.example.com", ":scheme": "https",
			"content-type": "application/json", "accept": "application/json, text/event-stream",
			"x-request-id": id, "mcp-session-id": "sess-1", "mcp-protocol-version": "2025-11-25",
			"x-envoy-auth-partial-body": "false", "user-agent": "loadgen",
		}
		for k, v := range identity {
			h[k] = v
		}
		return &authv3.CheckRequest{Attributes: &authv3.AttributeContext{
			Request: &authv3.AttributeContext_Request{Http: &authv3.AttributeContext_HttpRequest{
				Id: id, Method: "POST", Path: "/mcp/bi", Host: "mcp.example.com", Scheme: "https", Protocol: "HTTP/1.1",
				Headers: h, RawBody: body, Size: int64(len(body)),
			}},
			ContextExtensions: map[string]string{"server": "bi"},
		}}
	}
}

// startPlugin runs the plugin with decision logs off (no decision_logs
// section: the plugin logs none) and its HTTP API on a free loopback port.
func startPlugin(bin string) (*exec.Cmd, string, func(), error) {
	dir, err := os.MkdirTemp("", "opa-envoy-load-")
	if err != nil {
		return nil, "", nil, err
	}
	addr := load.FreePort()
	cfg := "plugins:\n  envoy_ext_authz_grpc:\n    addr: " + addr + "\n    path: envoy/authz/result\n"
	for name, content := range map[string]string{"config.yaml": cfg, "policy.rego": pluginPolicy, "data.json": anchorData} {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(content), 0o600); err != nil {
			return nil, "", nil, err
		}
	}
	cmd := exec.Command(bin, "run", "--server", "--skip-version-check", "--log-level", "error",
		"--addr", load.FreePort(), "--config-file", filepath.Join(dir, "config.yaml"),
		filepath.Join(dir, "policy.rego"), filepath.Join(dir, "data.json"))
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		os.RemoveAll(dir)
		return nil, "", nil, fmt.Errorf("start opa-envoy-plugin: %w", err)
	}
	stop := func() { _ = cmd.Process.Signal(os.Interrupt); _ = cmd.Wait(); os.RemoveAll(dir) }
	deadline := time.Now().Add(30 * time.Second)
	for {
		c, err := net.DialTimeout("tcp", addr, time.Second)
		if err == nil {
			c.Close()
			return cmd, addr, stop, nil
		}
		if time.Now().After(deadline) {
			stop()
			return nil, "", nil, fmt.Errorf("opa-envoy-plugin not listening on %s", addr)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

type target struct {
	name  string
	pid   int
	conns []*grpc.ClientConn
	mk    func(int) *authv3.CheckRequest
	res   []load.Result
	loads []string
}

func runAnchor(bin, plugin string, s settings) error {
	rego := policyRego
	w, err := startWarden(bin, rego, anchorData, []string{"analysts"}, s.profile != "", s.wardenEnv)
	if err != nil {
		return err
	}
	defer w.stop()
	pcmd, paddr, pstop, err := startPlugin(plugin)
	if err != nil {
		return err
	}
	defer pstop()

	wconns, err := load.Dial(w.authzAddr, s.conns)
	if err != nil {
		return err
	}
	defer load.CloseAll(wconns)
	pconns, err := load.Dial(paddr, s.conns)
	if err != nil {
		return err
	}
	defer load.CloseAll(pconns)
	targets := []*target{
		{name: "warden", pid: w.cmd.Process.Pid, conns: wconns, mk: anchorRequest(map[string]string{"authorization": "Bearer " + w.handle})},
		{name: "opa-envoy-plugin", pid: pcmd.Process.Pid, conns: pconns, mk: anchorRequest(map[string]string{"x-mcp-user": "load@example.com", "x-mcp-groups": "analysts"})},
	}
	// Sanity: both give every request of the mix the answer it must get.
	for _, t := range targets {
		for i := range anchorBodies {
			resp := new(authv3.CheckResponse)
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			err := t.conns[0].Invoke(ctx, authv3.Authorization_Check_FullMethodName, t.mk(i), resp, grpc.WaitForReady(true))
			cancel()
			if err != nil {
				return fmt.Errorf("%s: %w", t.name, err)
			}
			if got := resp.GetOkResponse() != nil; got == anchorDenied(i) {
				return fmt.Errorf("%s: request %d: allowed=%v, want %v (%v)", t.name, i, got, !anchorDenied(i), resp.GetDeniedResponse())
			}
		}
	}
	fmt.Print(load.MachineLine(s.conns))
	fmt.Printf("anchor: warden (handle lookup, cached upstream JWT, audit trail on: stored, and JSON lines to stdout, as shipped) and opa-envoy-plugin %s (decision logs off, identity from headers), interleaved, %d round(s) per level\n", plugin, s.rounds)
	fmt.Printf("mix per caller: tools/call search (allow), tools/list (allow), tools/call delete_employee (403), tools/call export_payroll (403)\n")
	for _, n := range s.levels {
		for _, t := range targets {
			t.res, t.loads = nil, nil
		}
		for r := 0; r < s.rounds; r++ {
			order := targets
			if r%2 == 1 {
				order = []*target{targets[1], targets[0]}
			}
			for _, t := range order {
				load0 := load.LoadAverage()
				var wait func() error
				if s.profile != "" && t.name == "warden" && r == s.rounds-1 && n == s.levels[len(s.levels)-1] {
					ch := make(chan error, 1)
					go func() { ch <- fetchProfile(w.admin, w.adminTok, s.warm, s.dur, s.profile) }()
					wait = func() error { return <-ch }
				}
				res := load.Measure(load.Options{Conns: t.conns, Request: t.mk, Denied: anchorDenied, Distinct: len(anchorBodies), Callers: n, Warmup: s.warm, Duration: s.dur, PID: t.pid})
				if wait != nil {
					if err := wait(); err != nil {
						return err
					}
				}
				t.res = append(t.res, res)
				t.loads = append(t.loads, load0)
			}
		}
		fmt.Printf("\n%d callers\n", n)
		fmt.Printf("%-18s %5s %12s %10s %10s %8s %12s %10s %10s  %s\n", "server", "round", "checks/s", "p50", "p99", "errors", "CPU/check", "RSS", "peak RSS", "load avg at start")
		for _, t := range targets {
			for i, r := range t.res {
				fmt.Printf("%-18s %5d %12.0f %10s %10s %8d %10.1fµs %10s %10s  %s\n", t.name, i+1, r.Rate, r.P50, r.P99, r.Errors, r.CPUPerCheck, "", "", t.loads[i])
			}
			now, peak := load.RSS(t.pid)
			m := median(t.res)
			fmt.Printf("%-18s %5s %12.0f %10s %10s %8s %10.1fµs %9dM %9dM\n", t.name, "med", m.Rate, m.P50, m.P99, "", m.CPUPerCheck, now>>20, peak>>20)
		}
		wm, pm := median(targets[0].res), median(targets[1].res)
		fmt.Printf("warden / plugin: %.2fx checks/s, %.2fx less CPU per check; warden p99 %s\n", wm.Rate/pm.Rate, pm.CPUPerCheck/wm.CPUPerCheck, wm.P99)
	}
	return nil
}

// median takes each figure's median over the rounds.
func median(rs []load.Result) load.Result {
	pick := func(f func(load.Result) float64) float64 {
		v := make([]float64, len(rs))
		for i, r := range rs {
			v[i] = f(r)
		}
		sort.Float64s(v)
		return v[len(v)/2]
	}
	return load.Result{
		Rate:        pick(func(r load.Result) float64 { return r.Rate }),
		P50:         time.Duration(pick(func(r load.Result) float64 { return float64(r.P50) })),
		P99:         time.Duration(pick(func(r load.Result) float64 { return float64(r.P99) })),
		CPUPerCheck: pick(func(r load.Result) float64 { return r.CPUPerCheck }),
	}
}
