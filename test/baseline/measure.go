package main

// This file is copied from test/loadgen/main.go (measure, rawCodec,
// preEncoded, procCPU, freePort, cpuModel) so both programs measure the
// same way; the lead may factor it into a shared package later.

import (
	"context"
	"fmt"
	"net"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"google.golang.org/grpc"
	"google.golang.org/protobuf/proto"
)

func freePort() string {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		panic(err)
	}
	defer l.Close()
	return l.Addr().String()
}

// rawCodec sends CheckRequests encoded once up front, the way a proxy
// written in C++ would not spend this process's CPU, so the figures show
// the server's cost and not the generator's. Responses are still decoded in
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
	// cpuPerCheck is the server process's user+system CPU time per check
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
			raw, err := proto.Marshal(mk(w))
			if err != nil {
				panic(err)
			}
			req := &preEncoded{raw: raw}
			local := make([]time.Duration, 0, 1<<16)
			for !stop.Load() {
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
