// Command loadgen measures Warden's ext_authz Check over real gRPC. It
// starts `warden serve` as a separate process on a fresh data directory with
// a per-tool Rego policy, registers a server, mints a service token, then
// drives Check with 1, 4 and 16 concurrent callers and prints checks/s,
// latency percentiles and Warden's CPU per check (measured by test/load,
// which test/baseline shares). Every response is verified to be an allow.
package main

import (
	"bytes"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"google.golang.org/grpc"

	"github.com/warden-mcp/warden/test/load"
)

const policyRego = `package warden.authz

import rego.v1

# Per-tool policy: tools/call allowed by group, the rest allowed.
decision := {"allow": true, "reason": "tool allowed for group"} if {
	input.mcp.method == "tools/call"
	some g in input.subject.groups
	input.mcp.tool in data.tools_by_group[g]
} else := {"allow": false, "reason": sprintf("tool %s not allowed", [input.mcp.tool])} if {
	input.mcp.method == "tools/call"
} else := {"allow": true, "reason": "not a tool call"}
`

// policyArgsRego also reads the tool's arguments, so a message with new
// arguments is a new decision: with -distinct, every check evaluates it.
const policyArgsRego = `package warden.authz

import rego.v1

decision := {"allow": false, "reason": "DROP is not allowed"} if {
	input.mcp.method == "tools/call"
	contains(upper(input.mcp.arguments.message), "DROP")
} else := {"allow": true, "reason": "tool allowed for group"} if {
	input.mcp.method == "tools/call"
	some g in input.subject.groups
	input.mcp.tool in data.tools_by_group[g]
} else := {"allow": false, "reason": sprintf("tool %s not allowed", [input.mcp.tool])} if {
	input.mcp.method == "tools/call"
} else := {"allow": true, "reason": "not a tool call"}
`

const policyData = `{"tools_by_group": {"finance": ["echo", "run_sql"], "eng": ["deploy"]}}`

type settings struct {
	dur, warm time.Duration
	levels    []int
	conns     int
	distinct  int
	// deny calls a tool the policy refuses: the denial path, audited as
	// allows are (in audit.durability: sync, answered after the commit).
	deny    bool
	policy  string
	profile string
	rounds  int
	// postgres, when set, is the DSN of a database warden serve runs on
	// (in a schema of its own) instead of Badger.
	postgres string
	// wardenEnv is added to warden serve's environment only (GOMAXPROCS,
	// GOMEMLIMIT, WARDEN_*), so a setting can be compared without
	// touching the load generator or the plugin.
	wardenEnv []string
}

func main() {
	var s settings
	bin := flag.String("warden", "bin/warden", "path to the warden binary")
	flag.DurationVar(&s.dur, "duration", 10*time.Second, "measuring time per concurrency level")
	flag.DurationVar(&s.warm, "warmup", 2*time.Second, "warm-up time per level")
	levels := flag.String("callers", "1,4,16", "concurrency levels")
	flag.IntVar(&s.conns, "conns", 2, "gRPC connections shared by the callers (Envoy uses a few per worker)")
	flag.StringVar(&s.profile, "cpuprofile", "", "write a CPU profile of the warden process during the last level to this file")
	flag.StringVar(&s.policy, "policy", "tools", "policy: tools (per-tool by group) or args (per-tool by group plus a check of the arguments)")
	flag.BoolVar(&s.deny, "deny", false, "call a tool the policy denies (the denial path) instead of an allowed one")
	flag.IntVar(&s.distinct, "distinct", 1, "distinct tools/call messages per caller, cycled (1: every caller repeats one message; large: every check is a new message)")
	floor := flag.String("floor", "", "instead of warden, drive this allow-everything server (go build ./test/loadgen/floor) to measure grpc-go's own cost")
	plugin := flag.String("anchor", "", "measure warden side by side with this opa-envoy-plugin binary (built outside the repository), interleaved, on the issue-12 mix")
	flag.IntVar(&s.rounds, "rounds", 3, "with -anchor: interleaved rounds per concurrency level")
	extproc := flag.Bool("extproc", false, "measure the response path instead: ext_proc filtering of a 50-tool tools/list")
	flag.StringVar(&s.postgres, "postgres", "", "run warden on this PostgreSQL database (a fresh schema in it, dropped after) instead of Badger: one replica, hot cache on")
	wenv := flag.String("warden-env", "", "space-separated NAME=value pairs for the warden process only (GOMAXPROCS=1 WARDEN_AUDIT_DURABILITY=async)")
	flag.Parse()
	s.wardenEnv = strings.Fields(*wenv)
	var err error
	if s.levels, err = load.ParseLevels(*levels); err == nil {
		switch {
		case *extproc:
			err = runExtProc(*bin, s)
		case *plugin != "":
			err = runAnchor(*bin, *plugin, s)
		case *floor != "":
			err = runFloor(*floor, s)
		default:
			err = run(*bin, s)
		}
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "loadgen:", err)
		os.Exit(1)
	}
}

func run(bin string, s settings) error {
	rego := policyRego
	switch s.policy {
	case "tools":
	case "args":
		rego = policyArgsRego
	default:
		return fmt.Errorf("unknown -policy %q", s.policy)
	}
	var env []string
	if s.postgres != "" {
		dsn, drop, err := pgSchema(s.postgres)
		if err != nil {
			return err
		}
		defer drop()
		env = []string{"WARDEN_STORE_BACKEND=postgres", "WARDEN_STORE_POSTGRES_DSN=" + dsn, "WARDEN_SEALING_KEYS=" + sealingKey()}
	}
	w, err := startWarden(bin, rego, policyData, []string{"finance"}, s.profile != "", append(env, s.wardenEnv...))
	if err != nil {
		return err
	}
	defer w.stop()
	conns, err := load.Dial(w.authzAddr, s.conns)
	if err != nil {
		return err
	}
	defer load.CloseAll(conns)
	mk := requestMakerFor(w.handle, "echo")
	if s.deny {
		mk = requestMakerFor(w.handle, "deploy")
	}
	// Sanity: the request is allowed and carries a JWT (or, with -deny,
	// is refused by the policy).
	resp, err := authv3.NewAuthorizationClient(conns[0]).Check(context.Background(), mk(0))
	if err != nil {
		return err
	}
	switch {
	case s.deny && resp.GetDeniedResponse().GetStatus().GetCode() != 403:
		return fmt.Errorf("setup check was not denied by the policy: %v", resp)
	case s.deny:
	case resp.GetOkResponse() == nil:
		return fmt.Errorf("setup check was denied: %v", resp.GetDeniedResponse())
	case !strings.HasPrefix(findHeader(resp.GetOkResponse(), "authorization"), "Bearer ey"):
		return fmt.Errorf("setup check attached no upstream JWT")
	}
	fmt.Print(load.MachineLine(s.conns))
	backend := "badger"
	if s.postgres != "" {
		backend = "postgres (hot cache)"
	}
	fmt.Printf("store: %s\n", backend)
	path := "allow"
	if s.deny {
		path = "policy denial (403)"
	}
	fmt.Printf("target: warden; path: %s, tools/call, per-tool Rego policy, handle lookup, cached upstream JWT, audit append; policy %q; %d distinct message(s) per caller\n", path, s.policy, s.distinct)
	return levelsRun(conns, mk, s, w.cmd.Process.Pid, func(last bool) func() error {
		if s.profile == "" || !last {
			return nil
		}
		ch := make(chan error, 1)
		go func() { ch <- fetchProfile(w.admin, w.adminTok, s.warm, s.dur, s.profile) }()
		return func() error { return <-ch }
	})
}

// warden is a `warden serve` process started for measuring, with one
// registered server "bi" and a service token for it.
type warden struct {
	cmd             *exec.Cmd
	authzAddr       string
	admin, adminTok string
	handle          string
	stop            func()
}

// startWarden starts `warden serve` on a fresh data directory with the
// given policy, registers server bi and mints a token whose subject is in
// groups. env adds settings (WARDEN_*=...).
func startWarden(bin, rego, data string, groups []string, pprof bool, env []string) (*warden, error) {
	dir, err := os.MkdirTemp("", "warden-load-")
	if err != nil {
		return nil, err
	}
	pdir := filepath.Join(dir, "policy")
	_ = os.MkdirAll(pdir, 0o755)
	_ = os.WriteFile(filepath.Join(pdir, "authz.rego"), []byte(rego), 0o644)
	_ = os.WriteFile(filepath.Join(pdir, "data.json"), []byte(data), 0o644)
	authzAddr, adminAddr := load.FreePort(), load.FreePort()
	cmd := exec.Command(bin, "serve")
	cmd.Env = append(os.Environ(),
		"WARDEN_DATA_DIR="+filepath.Join(dir, "data"), "WARDEN_PUBLIC_URL=https://mcp.example.com",
		"WARDEN_LISTEN_AUTHZ="+authzAddr, "WARDEN_LISTEN_ADMIN="+adminAddr,
		"WARDEN_LISTEN_HTTP="+load.FreePort(), "WARDEN_LISTEN_XDS="+load.FreePort(),
		"WARDEN_POLICY_DIR="+pdir, "WARDEN_DEBUG_PPROF="+strconv.FormatBool(pprof), "WARDEN_LOG_LEVEL=warn",
	)
	cmd.Env = append(cmd.Env, env...)
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		os.RemoveAll(dir)
		return nil, fmt.Errorf("start warden: %w", err)
	}
	w := &warden{cmd: cmd, authzAddr: authzAddr, admin: "http://" + adminAddr}
	w.stop = func() { _ = cmd.Process.Signal(os.Interrupt); _ = cmd.Wait(); os.RemoveAll(dir) }
	fail := func(err error) (*warden, error) { w.stop(); return nil, err }
	if err := waitReady(w.admin + "/readyz"); err != nil {
		return fail(err)
	}
	tokRaw, err := os.ReadFile(filepath.Join(dir, "data", "admin-token"))
	if err != nil {
		return fail(err)
	}
	w.adminTok = strings.TrimSpace(string(tokRaw))
	if _, err := call(w.admin+"/api/v1/servers", w.adminTok, map[string]any{"name": "bi", "url": "http://bi.internal:8080/mcp"}); err != nil {
		return fail(err)
	}
	out, err := call(w.admin+"/api/v1/tokens", w.adminTok, map[string]any{"subject": "load@example.com", "servers": []string{"bi"}, "ttl": "1h", "groups": groups})
	if err != nil {
		return fail(err)
	}
	w.handle, _ = out["access_token"].(string)
	return w, nil
}

func findHeader(ok *authv3.OkHttpResponse, k string) string {
	for _, h := range ok.GetHeaders() {
		if h.GetHeader().GetKey() == k {
			return h.GetHeader().GetValue()
		}
	}
	return ""
}

// runFloor measures the allow-everything server: the same requests, the
// same client, no authorization work.
func runFloor(bin string, s settings) error {
	addr := load.FreePort()
	cmd := exec.Command(bin, "-listen", addr)
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		return err
	}
	defer func() { _ = cmd.Process.Kill(); _ = cmd.Wait() }()
	conns, err := load.Dial(addr, s.conns)
	if err != nil {
		return err
	}
	defer load.CloseAll(conns)
	mk := requestMaker("wdn_at_floor")
	deadline := time.Now().Add(10 * time.Second)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		_, err := authv3.NewAuthorizationClient(conns[0]).Check(ctx, mk(0))
		cancel()
		if err == nil {
			break
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("floor server not answering: %w", err)
		}
		time.Sleep(50 * time.Millisecond)
	}
	fmt.Print(load.MachineLine(s.conns))
	fmt.Printf("target: floor (grpc-go allow-everything server, no authorization work)\n")
	return levelsRun(conns, mk, s, cmd.Process.Pid, func(bool) func() error { return nil })
}

func requestMaker(handle string) func(int) *authv3.CheckRequest {
	return requestMakerFor(handle, "echo")
}

// requestMakerFor makes tools/call Checks of tool.
func requestMakerFor(handle, tool string) func(int) *authv3.CheckRequest {
	return func(i int) *authv3.CheckRequest {
		// i goes into the arguments, so distinct i are distinct messages.
		body := []byte(`{"jsonrpc":"2.0","id":7,"method":"tools/call","params":{"name":"` + tool + `","arguments":{"message":"hello","n":` + strconv.Itoa(i) + `}}}`)
		return &authv3.CheckRequest{Attributes: &authv3.AttributeContext{
			Request: &authv3.AttributeContext_Request{Http: &authv3.AttributeContext_HttpRequest{
				Id: "load-" + strconv.Itoa(i), Method: "POST", Path: "/mcp/bi", Host: "mcp.example.com", Scheme: "https", Protocol: "HTTP/1.1",
				Headers: map[string]string{
					":method": "POST", ":path": "/mcp/bi", ":authority": "mcp.example.com", ":scheme": "https",
					"authorization": "Bearer " + handle, "content-type": "application/json", "accept": "application/json, text/event-stream",
					"x-request-id": "load-" + strconv.Itoa(i), "mcp-session-id": "sess-1", "mcp-protocol-version": "2025-11-25",
					"x-envoy-auth-partial-body": "false", "user-agent": "loadgen",
				},
				RawBody: body, Size: int64(len(body)),
			}},
			ContextExtensions: map[string]string{"server": "bi"},
		}}
	}
}

// levelsRun measures each concurrency level and prints one line per level.
// profile starts a profiler for a level and returns a wait for it (or nil).
func levelsRun(conns []*grpc.ClientConn, mk func(int) *authv3.CheckRequest, s settings, pid int, profile func(last bool) func() error) error {
	fmt.Print(strings.TrimSuffix(load.Header(), "\n") + "    peak RSS\n")
	for i, n := range s.levels {
		wait := profile(i == len(s.levels)-1)
		o := load.Options{Conns: conns, Request: mk, Distinct: s.distinct, Callers: n, Warmup: s.warm, Duration: s.dur, PID: pid}
		if s.deny {
			o.Denied = func(int) bool { return true }
		}
		res := load.Measure(o)
		if wait != nil {
			if err := wait(); err != nil {
				return err
			}
		}
		_, peak := load.RSS(pid)
		fmt.Printf("%s %8d MiB\n", strings.TrimSuffix(res.Row(), "\n"), peak>>20)
	}
	return nil
}

// fetchProfile records the server's CPU during the measuring window.
func fetchProfile(admin, tok string, warm, dur time.Duration, path string) error {
	time.Sleep(warm)
	secs := max(1, int(dur.Seconds()))
	req, _ := http.NewRequest("GET", admin+"/debug/pprof/profile?seconds="+strconv.Itoa(secs), nil)
	req.Header.Set("Authorization", "Bearer "+tok)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(resp.Body)
	if err != nil || resp.StatusCode != 200 {
		return fmt.Errorf("cpu profile: %v %s", err, resp.Status)
	}
	return os.WriteFile(path, data, 0o644)
}

func waitReady(url string) error {
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		resp, err := http.Get(url)
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == 200 {
				return nil
			}
		}
		time.Sleep(100 * time.Millisecond)
	}
	return fmt.Errorf("warden not ready at %s", url)
}

func call(url, tok string, body any) (map[string]any, error) {
	raw, _ := json.Marshal(body)
	req, _ := http.NewRequest("POST", url, bytes.NewReader(raw))
	req.Header.Set("Authorization", "Bearer "+tok)
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	data, _ := io.ReadAll(resp.Body)
	if resp.StatusCode/100 != 2 {
		return nil, fmt.Errorf("%s: %s", url, data)
	}
	var out map[string]any
	_ = json.Unmarshal(data, &out)
	return out, nil
}
