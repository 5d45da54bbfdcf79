// Package load drives an ext_authz server over real gRPC and measures it:
// N callers over a few connections, a warm-up, then checks/s, latency
// percentiles and the server process's CPU per check. test/loadgen (Warden
// and the gRPC floor) and test/baseline (a plain OPA ext_authz server) both
// measure through it, so their figures compare.
package load

import (
	"context"
	"fmt"
	"net"
	"os"
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

// FreePort returns a loopback address that was free a moment ago.
func FreePort() string {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		panic(err)
	}
	defer l.Close()
	return l.Addr().String()
}

// rawCodec sends CheckRequests encoded once up front, as a proxy written in
// C++ would not spend this process's CPU, so the figures show the server's
// cost and not the generator's. Responses are still decoded in full and
// checked.
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

// Dial opens n connections to addr that send pre-encoded requests.
func Dial(addr string, n int) ([]*grpc.ClientConn, error) {
	conns := make([]*grpc.ClientConn, n)
	for i := range conns {
		cc, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()),
			grpc.WithDefaultCallOptions(grpc.ForceCodecV2(nil), grpc.ForceCodec(rawCodec{})))
		if err != nil {
			CloseAll(conns[:i])
			return nil, err
		}
		conns[i] = cc
	}
	return conns, nil
}

// CloseAll closes conns.
func CloseAll(conns []*grpc.ClientConn) {
	for _, c := range conns {
		_ = c.Close()
	}
}

// Result is one concurrency level's measurement.
type Result struct {
	Callers        int
	Rate           float64 // checks per second
	P50, P99, P999 time.Duration
	Errors         int64
	// CPUPerCheck is the server process's user+system CPU time per check
	// during the measuring window, in microseconds.
	CPUPerCheck float64
}

// Options describe one measurement.
type Options struct {
	Conns []*grpc.ClientConn
	// Request builds request i. Caller w cycles through requests
	// w*Distinct .. w*Distinct+Distinct-1, encoded before measuring.
	Request func(i int) *authv3.CheckRequest
	// Denied, when set, tells which requests must be denied with 403;
	// every other request must be allowed. Nil: all must be allowed.
	Denied   func(i int) bool
	Distinct int
	Callers  int
	Warmup   time.Duration
	Duration time.Duration
	// PID is the server process, for its CPU time.
	PID int
}

// Measure runs one concurrency level. A response that is an error, or not
// the allow or 403 denial the request must get, counts as an error, so a
// misconfigured run cannot report a fast stream of wrong answers.
func Measure(o Options) Result {
	if o.Distinct < 1 {
		o.Distinct = 1
	}
	var measuring, stop atomic.Bool
	var errs atomic.Int64
	lat := make([][]time.Duration, o.Callers)
	var wg sync.WaitGroup
	for w := 0; w < o.Callers; w++ {
		wg.Add(1)
		go func(w int) {
			defer wg.Done()
			c := o.Conns[w%len(o.Conns)]
			reqs := make([]*preEncoded, o.Distinct)
			deny := make([]bool, o.Distinct)
			for j := range reqs {
				raw, err := proto.Marshal(o.Request(w*o.Distinct + j))
				if err != nil {
					panic(err)
				}
				reqs[j] = &preEncoded{raw: raw}
				deny[j] = o.Denied != nil && o.Denied(w*o.Distinct+j)
			}
			local := make([]time.Duration, 0, 1<<16)
			for k := 0; !stop.Load(); k++ {
				t0 := time.Now()
				resp := new(authv3.CheckResponse)
				err := c.Invoke(context.Background(), authv3.Authorization_Check_FullMethodName, reqs[k%len(reqs)], resp)
				d := time.Since(t0)
				wrong := resp.GetOkResponse() == nil
				if deny[k%len(reqs)] {
					wrong = resp.GetDeniedResponse().GetStatus().GetCode() != 403
				}
				if err != nil || wrong {
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
	time.Sleep(o.Warmup)
	errs.Store(0)
	cpu0 := ProcCPU(o.PID)
	measuring.Store(true)
	start := time.Now()
	time.Sleep(o.Duration)
	measuring.Store(false)
	elapsed := time.Since(start)
	cpu1 := ProcCPU(o.PID)
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
	res := Result{Callers: o.Callers, Rate: float64(len(all)) / elapsed.Seconds(), P50: pct(0.50), P99: pct(0.99), P999: pct(0.999), Errors: errs.Load()}
	if len(all) > 0 {
		res.CPUPerCheck = float64((cpu1 - cpu0).Microseconds()) / float64(len(all))
	}
	return res
}

// ParseLevels reads "1,4,16".
func ParseLevels(s string) ([]int, error) {
	var out []int
	for _, f := range strings.Split(s, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(f))
		if err != nil || n < 1 {
			return nil, fmt.Errorf("callers %q: want a positive number", f)
		}
		out = append(out, n)
	}
	return out, nil
}

// Header is the table header matching Row.
func Header() string {
	return fmt.Sprintf("%8s %12s %10s %10s %10s %8s %16s\n", "callers", "checks/s", "p50", "p99", "p99.9", "errors", "server CPU/check")
}

// Row formats one result.
func (r Result) Row() string {
	return fmt.Sprintf("%8d %12.0f %10s %10s %10s %8d %14.1fµs\n", r.Callers, r.Rate, r.P50, r.P99, r.P999, r.Errors, r.CPUPerCheck)
}

// MachineLine describes the machine and its load average now.
func MachineLine(nconns int) string {
	load, _ := os.ReadFile("/proc/loadavg")
	avg := strings.Fields(string(load))
	if len(avg) > 3 {
		avg = avg[:3]
	}
	return fmt.Sprintf("machine: %d CPUs (%s/%s), %s, load average %s; load generator and server on the same machine; %d gRPC connections\n",
		runtime.NumCPU(), runtime.GOOS, runtime.GOARCH, cpuModel(), strings.Join(avg, " "), nconns)
}

// RSS returns the resident set size of process pid now and its peak so
// far (VmRSS and VmHWM of /proc/<pid>/status), in bytes.
func RSS(pid int) (now, peak int64) {
	raw, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, 0
	}
	for _, line := range strings.Split(string(raw), "\n") {
		k, v, ok := strings.Cut(line, ":")
		if !ok {
			continue
		}
		f := strings.Fields(v)
		if len(f) == 0 {
			continue
		}
		n, _ := strconv.ParseInt(f[0], 10, 64)
		switch k {
		case "VmRSS":
			now = n << 10
		case "VmHWM":
			peak = n << 10
		}
	}
	return now, peak
}

// LoadAverage is the 1-minute load average of the machine.
func LoadAverage() string {
	raw, _ := os.ReadFile("/proc/loadavg")
	f := strings.Fields(string(raw))
	if len(f) == 0 {
		return "?"
	}
	return f[0]
}

// ProcCPU is the user+system CPU time of process pid (Linux /proc).
func ProcCPU(pid int) time.Duration {
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
