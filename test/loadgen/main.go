// Command loadgen measures Warden's ext_authz Check over real gRPC. It
// starts `warden serve` as a separate process on a fresh data directory with
// a per-tool Rego policy, registers a server, mints a service token, then
// drives Check with 1, 4 and 16 concurrent callers and prints checks/s and
// latency percentiles. Every response is verified to be an allow, so a
// misconfigured run cannot report a fast stream of denials.
package main

import (
	"bytes"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/protobuf/proto"
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

func main() {
	bin := flag.String("warden", "bin/warden", "path to the warden binary")
	dur := flag.Duration("duration", 10*time.Second, "measuring time per concurrency level")
	warm := flag.Duration("warmup", 2*time.Second, "warm-up time per level")
	levels := flag.String("callers", "1,4,16", "concurrency levels")
	conns := flag.Int("conns", 2, "gRPC connections shared by the callers (Envoy uses a few per worker)")
	profile := flag.String("cpuprofile", "", "write a CPU profile of the warden process during the last level to this file")
	flag.StringVar(&policyName, "policy", "tools", "policy: tools (per-tool by group) or args (per-tool by group plus a check of the arguments)")
	flag.IntVar(&distinct, "distinct", 1, "distinct tools/call messages per caller, cycled (1: every caller repeats one message, so policy decisions are reused; large: every check is a new message that policy evaluates)")
	floor := flag.String("floor", "", "instead of warden, drive this allow-everything server (go build ./test/loadgen/floor) to measure grpc-go's own cost")
	flag.Parse()
	var err error
	if *floor != "" {
		err = runFloor(*floor, *dur, *warm, *levels, *conns)
	} else {
		err = run(*bin, *dur, *warm, *levels, *conns, *profile)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "loadgen:", err)
		os.Exit(1)
	}
}

func freePort() string {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		panic(err)
	}
	defer l.Close()
	return l.Addr().String()
}

func run(bin string, dur, warm time.Duration, levels string, nconns int, profile string) error {
	dir, err := os.MkdirTemp("", "warden-load-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	pdir := filepath.Join(dir, "policy")
	_ = os.MkdirAll(pdir, 0o755)
	rego := policyRego
	switch policyName {
	case "tools":
	case "args":
		rego = policyArgsRego
	default:
		return fmt.Errorf("unknown -policy %q", policyName)
	}
	_ = os.WriteFile(filepath.Join(pdir, "authz.rego"), []byte(rego), 0o644)
	_ = os.WriteFile(filepath.Join(pdir, "data.json"), []byte(policyData), 0o644)
	authzAddr, adminAddr := freePort(), freePort()
	cmd := exec.Command(bin, "serve")
	cmd.Env = append(os.Environ(),
		"WARDEN_DATA_DIR="+filepath.Join(dir, "data"),
		"WARDEN_LISTEN_AUTHZ="+authzAddr, "WARDEN_LISTEN_ADMIN="+adminAddr,
		"WARDEN_LISTEN_HTTP="+freePort(), "WARDEN_LISTEN_XDS="+freePort(),
		"WARDEN_POLICY_DIR="+pdir, "WARDEN_DEBUG_PPROF="+strconv.FormatBool(profile != ""), "WARDEN_AUDIT_SINK=none", "WARDEN_LOG_LEVEL=warn",
	)
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("start warden: %w", err)
	}
	defer func() { _ = cmd.Process.Signal(os.Interrupt); _ = cmd.Wait() }()

	admin := "http://" + adminAddr
	if err := waitReady(admin + "/readyz"); err != nil {
		return err
	}
	tokRaw, err := os.ReadFile(filepath.Join(dir, "data", "admin-token"))
	if err != nil {
		return err
	}
	adminTok := strings.TrimSpace(string(tokRaw))
	if _, err := call(admin+"/api/v1/servers", adminTok, map[string]any{"name": "bi", "url": "http://bi.internal:8080/mcp"}); err != nil {
		return err
	}
	out, err := call(admin+"/api/v1/tokens", adminTok, map[string]any{"subject": "load@example.com", "servers": []string{"bi"}, "ttl": "1h", "groups": []string{"finance"}})
	if err != nil {
		return err
	}
	handle, _ := out["access_token"].(string)

	conns, err := dial(authzAddr, nconns)
	if err != nil {
		return err
	}
	defer closeAll(conns)
	mk := requestMaker(handle)
	// Sanity: the request is allowed and carries a JWT.
	resp, err := authv3.NewAuthorizationClient(conns[0]).Check(context.Background(), mk(0))
	if err != nil {
		return err
	}
	if resp.GetOkResponse() == nil {
		return fmt.Errorf("setup check was denied: %v", resp.GetDeniedResponse())
	}
	if _, o := findHeader(resp.GetOkResponse(), "authorization"); !strings.HasPrefix(o, "Bearer ey") {
		return fmt.Errorf("setup check attached no upstream JWT")
	}
	fmt.Print(machineLine(nconns))
	fmt.Printf("target: warden; path: allow, tools/call, per-tool Rego policy, handle lookup, cached upstream JWT, audit append; policy %q; %d distinct message(s) per caller\n", policyName, distinct)
	return levelsRun(conns, mk, levels, warm, dur, cmd.Process.Pid, func(last bool, ch chan error) {
		if profile != "" && last {
			go func() { ch <- fetchProfile(admin, adminTok, warm, dur, profile) }()
		} else {
			ch <- nil
		}
	})
}

func machineLine(nconns int) string {
	load, _ := os.ReadFile("/proc/loadavg")
	return fmt.Sprintf("machine: %d CPUs (%s/%s), %s, load average %s; load generator and server on the same machine; %d gRPC connections\n",
		runtime.NumCPU(), runtime.GOOS, runtime.GOARCH, cpuModel(), strings.Join(strings.Fields(string(load))[:3], " "), nconns)
}

func findHeader(ok *authv3.OkHttpResponse, k string) (bool, string) {
	for _, h := range ok.GetHeaders() {
		if h.GetHeader().GetKey() == k {
			return true, h.GetHeader().GetValue()
		}
	}
	return false, ""
}

func dial(addr string, n int) ([]*grpc.ClientConn, error) {
	conns := make([]*grpc.ClientConn, n)
	for i := range conns {
		cc, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()),
			grpc.WithDefaultCallOptions(grpc.ForceCodecV2(nil), grpc.ForceCodec(rawCodec{})))
		if err != nil {
			return nil, err
		}
		conns[i] = cc
	}
	return conns, nil
}

func closeAll(conns []*grpc.ClientConn) {
	for _, c := range conns {
		_ = c.Close()
	}
}

// runFloor measures the allow-everything server: the same requests, the
// same client, no authorization work.
func runFloor(bin string, dur, warm time.Duration, levels string, nconns int) error {
	fmt.Print(machineLine(nconns))
	addr := freePort()
	cmd := exec.Command(bin, "-listen", addr)
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		return err
	}
	defer func() { _ = cmd.Process.Kill(); _ = cmd.Wait() }()
	conns, err := dial(addr, nconns)
	if err != nil {
		return err
	}
	defer closeAll(conns)
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
	fmt.Printf("target: floor (grpc-go allow-everything server, no authorization work)\n")
	return levelsRun(conns, mk, levels, warm, dur, cmd.Process.Pid, func(bool, chan error) {})
}

func requestMaker(handle string) func(int) *authv3.CheckRequest {
	return func(i int) *authv3.CheckRequest {
		// i goes into the arguments, so distinct i are distinct messages
		// that policy must evaluate on their own.
		body := []byte(`{"jsonrpc":"2.0","id":7,"method":"tools/call","params":{"name":"echo","arguments":{"message":"hello","n":` + strconv.Itoa(i) + `}}}`)
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
// profiler is called before each level with a channel it must answer on
// once any profile it started is written.
func levelsRun(conns []*grpc.ClientConn, mk func(int) *authv3.CheckRequest, levels string, warm, dur time.Duration, pid int, profiler func(last bool, done chan error)) error {

	fmt.Printf("%8s %12s %10s %10s %10s %8s %16s\n", "callers", "checks/s", "p50", "p99", "p99.9", "errors", "server CPU/check")
	parts := strings.Split(levels, ",")
	for i, f := range parts {
		n, err := strconv.Atoi(strings.TrimSpace(f))
		if err != nil {
			return fmt.Errorf("callers %q: %w", f, err)
		}
		prof := make(chan error, 1)
		profiler(i == len(parts)-1, prof)
		res := measure(conns, mk, n, warm, dur, pid)
		select {
		case err := <-prof:
			if err != nil {
				return err
			}
		default:
		}
		fmt.Printf("%8d %12.0f %10s %10s %10s %8d %14.1fµs\n", n, res.rate, res.p50, res.p99, res.p999, res.errors, res.cpuPerCheck)
	}
	return nil
}

// distinct is how many different messages each caller cycles through.
var distinct = 1

// policyName selects the policy under load.
var policyName = "tools"

// rawCodec sends CheckRequests encoded once up front, the way a proxy
// written in C++ would not spend this process's CPU, so the figures show
// Warden's cost and not the generator's. Responses are still decoded in
// full and checked.
type rawCodec struct{}

func (rawCodec) Name() string { return "proto" }

func (rawCodec) Marshal(v any) ([]byte, error) {
	if b, ok := v.(*preEncoded); ok {
		return b.raw, nil
	}
	return proto.Marshal(v.(proto.Message))
}

func (rawCodec) Unmarshal(data []byte, v any) error { return proto.Unmarshal(data, v.(proto.Message)) }

type preEncoded struct{ raw []byte }

type result struct {
	rate           float64
	p50, p99, p999 time.Duration
	errors         int64
	// cpuPerCheck is the warden process's user+system CPU time per check
	// during the measuring window, in microseconds.
	cpuPerCheck float64
}

func measure(conns []*grpc.ClientConn, mk func(int) *authv3.CheckRequest, n int, warm, dur time.Duration, pid int) result {
	var measuring atomic.Bool
	var stop atomic.Bool
	var errs atomic.Int64
	lat := make([][]time.Duration, n)
	var wg sync.WaitGroup
	for w := 0; w < n; w++ {
		wg.Add(1)
		go func(w int) {
			defer wg.Done()
			c := conns[w%len(conns)]
			reqs := make([]*preEncoded, distinct)
			for j := range reqs {
				raw, err := proto.Marshal(mk(w*distinct + j))
				if err != nil {
					panic(err)
				}
				reqs[j] = &preEncoded{raw: raw}
			}
			local := make([]time.Duration, 0, 1<<16)
			for k := 0; !stop.Load(); k++ {
				req := reqs[k%len(reqs)]
				t0 := time.Now()
				resp := new(authv3.CheckResponse)
				err := c.Invoke(context.Background(), authv3.Authorization_Check_FullMethodName, req, resp)
				d := time.Since(t0)
				if err != nil || resp.GetOkResponse() == nil {
					errs.Add(1)
					continue
				}
				if measuring.Load() {
					local = append(local, d)
				}
			}
			lat[w] = local
		}(w)
	}
	time.Sleep(warm)
	errs.Store(0)
	cpu0 := procCPU(pid)
	measuring.Store(true)
	start := time.Now()
	time.Sleep(dur)
	measuring.Store(false)
	elapsed := time.Since(start)
	cpu1 := procCPU(pid)
	stop.Store(true)
	wg.Wait()
	var all []time.Duration
	for _, l := range lat {
		all = append(all, l...)
	}
	slices.Sort(all)
	pct := func(p float64) time.Duration {
		if len(all) == 0 {
			return 0
		}
		return all[min(len(all)-1, int(float64(len(all))*p))]
	}
	res := result{rate: float64(len(all)) / elapsed.Seconds(), p50: pct(0.50), p99: pct(0.99), p999: pct(0.999), errors: errs.Load()}
	if len(all) > 0 {
		res.cpuPerCheck = float64((cpu1 - cpu0).Microseconds()) / float64(len(all))
	}
	return res
}

// procCPU is the user+system CPU time of process pid (Linux /proc).
func procCPU(pid int) time.Duration {
	raw, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0
	}
	// Fields after the parenthesised command name; utime and stime are
	// fields 14 and 15, in clock ticks (100 per second on Linux).
	s := string(raw)
	fields := strings.Fields(s[strings.LastIndexByte(s, ')')+2:])
	if len(fields) < 13 {
		return 0
	}
	ut, _ := strconv.ParseInt(fields[11], 10, 64)
	st, _ := strconv.ParseInt(fields[12], 10, 64)
	return time.Duration(ut+st) * 10 * time.Millisecond
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

func cpuModel() string {
	raw, err := os.ReadFile("/proc/cpuinfo")
	if err != nil {
		return "unknown CPU"
	}
	for _, line := range strings.Split(string(raw), "\n") {
		if strings.HasPrefix(line, "model name") {
			_, v, _ := strings.Cut(line, ":")
			return strings.TrimSpace(v)
		}
	}
	return "unknown CPU"
}
