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

const policyData = `{"tools_by_group": {"finance": ["echo", "run_sql"], "eng": ["deploy"]}}`

func main() {
	bin := flag.String("warden", "bin/warden", "path to the warden binary")
	dur := flag.Duration("duration", 10*time.Second, "measuring time per concurrency level")
	warm := flag.Duration("warmup", 2*time.Second, "warm-up time per level")
	levels := flag.String("callers", "1,4,16", "concurrency levels")
	conns := flag.Int("conns", 2, "gRPC connections shared by the callers (Envoy uses a few per worker)")
	flag.Parse()
	if err := run(*bin, *dur, *warm, *levels, *conns); err != nil {
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

func run(bin string, dur, warm time.Duration, levels string, nconns int) error {
	dir, err := os.MkdirTemp("", "warden-load-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	pdir := filepath.Join(dir, "policy")
	_ = os.MkdirAll(pdir, 0o755)
	_ = os.WriteFile(filepath.Join(pdir, "authz.rego"), []byte(policyRego), 0o644)
	_ = os.WriteFile(filepath.Join(pdir, "data.json"), []byte(policyData), 0o644)
	authzAddr, adminAddr := freePort(), freePort()
	cmd := exec.Command(bin, "serve")
	cmd.Env = append(os.Environ(),
		"WARDEN_DATA_DIR="+filepath.Join(dir, "data"),
		"WARDEN_LISTEN_AUTHZ="+authzAddr, "WARDEN_LISTEN_ADMIN="+adminAddr,
		"WARDEN_LISTEN_HTTP="+freePort(), "WARDEN_LISTEN_XDS="+freePort(),
		"WARDEN_POLICY_DIR="+pdir, "WARDEN_AUDIT_SINK=none", "WARDEN_LOG_LEVEL=warn",
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

	conns := make([]authv3.AuthorizationClient, nconns)
	for i := range conns {
		cc, err := grpc.NewClient(authzAddr, grpc.WithTransportCredentials(insecure.NewCredentials()))
		if err != nil {
			return err
		}
		defer cc.Close()
		conns[i] = authv3.NewAuthorizationClient(cc)
	}
	body := []byte(`{"jsonrpc":"2.0","id":7,"method":"tools/call","params":{"name":"echo","arguments":{"message":"hello","n":3}}}`)
	mk := func(i int) *authv3.CheckRequest {
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
	// Sanity: the request is allowed and carries a JWT.
	resp, err := conns[0].Check(context.Background(), mk(0))
	if err != nil {
		return err
	}
	if resp.GetOkResponse() == nil {
		return fmt.Errorf("setup check was denied: %v", resp.GetDeniedResponse())
	}

	fmt.Printf("machine: %d CPUs (%s/%s), %s; load generator and warden on the same machine; %d gRPC connections\n",
		runtime.NumCPU(), runtime.GOOS, runtime.GOARCH, cpuModel(), nconns)
	fmt.Printf("path: allow, tools/call, per-tool Rego policy, Badger handle lookup, cached upstream JWT, audit append\n")
	fmt.Printf("%8s %12s %10s %10s %10s %8s\n", "callers", "checks/s", "p50", "p99", "p99.9", "errors")
	for _, f := range strings.Split(levels, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(f))
		if err != nil {
			return fmt.Errorf("callers %q: %w", f, err)
		}
		res := measure(conns, mk, n, warm, dur)
		fmt.Printf("%8d %12.0f %10s %10s %10s %8d\n", n, res.rate, res.p50, res.p99, res.p999, res.errors)
	}
	return nil
}

type result struct {
	rate           float64
	p50, p99, p999 time.Duration
	errors         int64
}

func measure(conns []authv3.AuthorizationClient, mk func(int) *authv3.CheckRequest, n int, warm, dur time.Duration) result {
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
			req := mk(w)
			local := make([]time.Duration, 0, 1<<16)
			for !stop.Load() {
				t0 := time.Now()
				resp, err := c.Check(context.Background(), req)
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
	measuring.Store(true)
	start := time.Now()
	time.Sleep(dur)
	measuring.Store(false)
	elapsed := time.Since(start)
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
	return result{rate: float64(len(all)) / elapsed.Seconds(), p50: pct(0.50), p99: pct(0.99), p999: pct(0.999), errors: errs.Load()}
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
