package main

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	procv3 "github.com/envoyproxy/go-control-plane/envoy/service/ext_proc/v3"
	"google.golang.org/grpc"
	"google.golang.org/protobuf/types/known/structpb"

	"github.com/warden-mcp/warden/test/load"
)

// listTools is the size of the tools/list result the response path filters.
const listTools = 50

// runExtProc measures the response path: the ext_proc exchange Envoy makes
// for one tools/list result of 50 tools (response headers, then the JSON
// body BUFFERED), the caller and classification taken from a real Check's
// dynamic metadata, the policy allowing half the tools. It prints filtered
// lists per second, ext_proc messages per second (two per list), latency
// per list and Warden's CPU per list. Every answer is checked to keep
// exactly the allowed tools.
func runExtProc(bin string, s settings) error {
	allowed := make([]string, 0, listTools/2)
	tools := make([]map[string]any, listTools)
	for i := range tools {
		name := fmt.Sprintf("tool_%02d", i)
		tools[i] = map[string]any{"name": name, "description": "Tool number " + strconv.Itoa(i) + " of the load test",
			"inputSchema": map[string]any{"type": "object", "properties": map[string]any{"q": map[string]any{"type": "string"}}}}
		if i%2 == 0 {
			allowed = append(allowed, name)
		}
	}
	data, _ := json.Marshal(map[string]any{"tools_by_group": map[string]any{"finance": allowed}})
	w, err := startWarden(bin, policyRego, string(data), []string{"finance"}, false, s.wardenEnv)
	if err != nil {
		return err
	}
	defer w.stop()
	conns, err := load.Dial(w.authzAddr, s.conns)
	if err != nil {
		return err
	}
	defer load.CloseAll(conns)

	check := requestMaker(w.handle)(0)
	body := []byte(`{"jsonrpc":"2.0","id":7,"method":"tools/list","params":{}}`)
	check.Attributes.Request.Http.RawBody, check.Attributes.Request.Http.Size = body, int64(len(body))
	resp, err := authv3.NewAuthorizationClient(conns[0]).Check(context.Background(), check)
	if err != nil {
		return err
	}
	if resp.GetOkResponse() == nil || resp.GetDynamicMetadata() == nil {
		return fmt.Errorf("tools/list check: allowed %v, metadata %v", resp.GetOkResponse() != nil, resp.GetDynamicMetadata())
	}
	md := &corev3.Metadata{FilterMetadata: map[string]*structpb.Struct{"envoy.filters.http.ext_authz": resp.GetDynamicMetadata()}}
	result, _ := json.Marshal(map[string]any{"jsonrpc": "2.0", "id": 7, "result": map[string]any{"tools": tools}})
	one := func(ctx context.Context, conn *grpc.ClientConn) error {
		st, err := procv3.NewExternalProcessorClient(conn).Process(ctx)
		if err != nil {
			return err
		}
		defer func() { _ = st.CloseSend() }()
		hm := &corev3.HeaderMap{Headers: []*corev3.HeaderValue{{Key: ":status", RawValue: []byte("200")}, {Key: "content-type", RawValue: []byte("application/json")}}}
		if err := st.Send(&procv3.ProcessingRequest{MetadataContext: md, Request: &procv3.ProcessingRequest_ResponseHeaders{ResponseHeaders: &procv3.HttpHeaders{Headers: hm}}}); err != nil {
			return err
		}
		h, err := st.Recv()
		if err != nil {
			return err
		}
		if h.GetModeOverride() == nil {
			return fmt.Errorf("no body asked for: %v", h)
		}
		if err := st.Send(&procv3.ProcessingRequest{MetadataContext: md, Request: &procv3.ProcessingRequest_ResponseBody{ResponseBody: &procv3.HttpBody{Body: result, EndOfStream: true}}}); err != nil {
			return err
		}
		b, err := st.Recv()
		if err != nil {
			return err
		}
		var out struct {
			Result struct {
				Tools []struct{ Name string } `json:"tools"`
			} `json:"result"`
		}
		if err := json.Unmarshal(b.GetResponseBody().GetResponse().GetBodyMutation().GetBody(), &out); err != nil {
			return fmt.Errorf("filtered body: %w", err)
		}
		if len(out.Result.Tools) != len(allowed) {
			return fmt.Errorf("filtered list has %d tools, want %d", len(out.Result.Tools), len(allowed))
		}
		return nil
	}
	if err := one(context.Background(), conns[0]); err != nil {
		return fmt.Errorf("setup exchange: %w", err)
	}
	fmt.Print(load.MachineLine(s.conns))
	fmt.Printf("target: warden response path (ext_proc): tools/list of %d tools, %d shown by policy, caller from the Check's dynamic metadata, pins unchanged\n", listTools, len(allowed))
	fmt.Printf("%8s %12s %14s %10s %10s %14s\n", "callers", "lists/s", "ext_proc msg/s", "p50", "p99", "CPU per list")
	pid := w.cmd.Process.Pid
	for _, n := range s.levels {
		var stop atomic.Bool
		var mu sync.Mutex
		var lat []time.Duration
		var errs atomic.Int64
		var wg sync.WaitGroup
		measuring := atomic.Bool{}
		for c := range n {
			wg.Add(1)
			go func(c int) {
				defer wg.Done()
				conn := conns[c%len(conns)]
				var mine []time.Duration
				for !stop.Load() {
					t0 := time.Now()
					if err := one(context.Background(), conn); err != nil {
						errs.Add(1)
						continue
					}
					if measuring.Load() {
						mine = append(mine, time.Since(t0))
					}
				}
				mu.Lock()
				lat = append(lat, mine...)
				mu.Unlock()
			}(c)
		}
		time.Sleep(s.warm)
		cpu0, t0 := load.ProcCPU(pid), time.Now()
		measuring.Store(true)
		time.Sleep(s.dur)
		measuring.Store(false)
		cpu, el := load.ProcCPU(pid)-cpu0, time.Since(t0)
		stop.Store(true)
		wg.Wait()
		if e := errs.Load(); e > 0 {
			return fmt.Errorf("%d failed exchanges at %d callers", e, n)
		}
		slices.Sort(lat)
		pct := func(p float64) time.Duration {
			if len(lat) == 0 {
				return 0
			}
			return lat[min(len(lat)-1, int(p*float64(len(lat))))]
		}
		rate := float64(len(lat)) / el.Seconds()
		per := time.Duration(0)
		if len(lat) > 0 {
			per = cpu / time.Duration(len(lat))
		}
		fmt.Printf("%8d %12.0f %14.0f %10s %10s %14s\n", n, rate, 2*rate, pct(0.5).Round(time.Microsecond), pct(0.99).Round(time.Microsecond), per.Round(time.Microsecond))
	}
	return nil
}
