package postgres_test

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/warden-mcp/warden/internal/audit"
	"github.com/warden-mcp/warden/internal/store"
	"github.com/warden-mcp/warden/internal/store/postgres"
	"github.com/warden-mcp/warden/internal/store/postgres/pgtest"
)

// envAuditChild makes the test binary an audit-writing replica of
// TestAuditTrailSurvivesAReplicaKilled: it records events until killed,
// printing the request id of each one whose RecordSync returned.
const envAuditChild = "WARDEN_PG_AUDIT_CHILD"

func auditChild() {
	dsn := os.Getenv(envAuditChild)
	if dsn == "" {
		return
	}
	s, err := postgres.Open(context.Background(), postgres.Options{DSN: dsn, SweepInterval: -1})
	if err == nil {
		var tr *audit.Trail
		tr, err = audit.Open(context.Background(), s, audit.Options{})
		if err == nil {
			var mu sync.Mutex
			out := bufio.NewWriter(os.Stdout)
			var wg sync.WaitGroup
			for w := 0; w < 4; w++ {
				wg.Add(1)
				go func() {
					defer wg.Done()
					for i := 0; ; i++ {
						id := fmt.Sprintf("child-%d-%d", w, i)
						if err := tr.RecordSync(context.Background(), store.AuditEvent{Type: "decision", RequestID: id, Decision: "allow"}); err != nil {
							fmt.Fprintln(os.Stderr, "audit child:", err)
							os.Exit(1)
						}
						mu.Lock()
						fmt.Fprintln(out, id)
						out.Flush()
						mu.Unlock()
					}
				}()
			}
			wg.Wait()
		}
	}
	fmt.Fprintln(os.Stderr, "audit child:", err)
	os.Exit(1)
}

// verifyTrail checks the chain and that it holds each id of want exactly
// once; it returns how many events the trail holds.
func verifyTrail(t *testing.T, s *postgres.Store, want map[string]bool) int {
	t.Helper()
	rep, err := audit.Verify(ctx, s)
	if err != nil || !rep.OK() {
		t.Fatalf("audit verify: %+v %v", rep, err)
	}
	all, err := s.ListAudit(ctx, 0, 0)
	if err != nil {
		t.Fatal(err)
	}
	seen := map[string]int{}
	for _, ev := range all {
		if ev.RequestID != "" {
			seen[ev.RequestID]++
		}
	}
	for id, n := range seen {
		if n != 1 {
			t.Fatalf("event %s stored %d times", id, n)
		}
	}
	for id := range want {
		if seen[id] != 1 {
			t.Fatalf("confirmed event %s is missing from the trail", id)
		}
	}
	return len(all)
}

// Three replicas' trails on one schema form one chain: every event once,
// in one verifiable sequence, whoever appended first.
func TestAuditTrailOfThreeReplicas(t *testing.T) {
	dsn, _ := pgtest.Schema(t)
	var rechains atomic.Int64
	want := map[string]bool{}
	var mu sync.Mutex
	var wg sync.WaitGroup
	trails := make([]*audit.Trail, 3)
	for r := range trails {
		tr, err := audit.Open(ctx, open(t, dsn), audit.Options{OnRechain: func() { rechains.Add(1) }})
		if err != nil {
			t.Fatal(err)
		}
		trails[r] = tr
	}
	for r, tr := range trails {
		for w := 0; w < 4; w++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for i := 0; i < 100; i++ {
					id := fmt.Sprintf("r%d-w%d-%d", r, w, i)
					if err := tr.RecordSync(ctx, store.AuditEvent{Type: "decision", RequestID: id}); err != nil {
						t.Error(err)
						return
					}
					mu.Lock()
					want[id] = true
					mu.Unlock()
				}
			}()
		}
	}
	wg.Wait()
	for _, tr := range trails {
		if err := tr.Close(ctx); err != nil {
			t.Fatal(err)
		}
	}
	if n := verifyTrail(t, open(t, dsn), want); n != 1200 {
		t.Fatalf("trail holds %d events, want 1200", n)
	}
	if rechains.Load() == 0 {
		t.Fatal("no batch was ever re-chained: the replicas did not contend, the test proves nothing")
	}
}

// A replica killed (SIGKILL) while appending loses nothing it confirmed
// and leaves no hole: the survivor's trail goes on and verifies.
func TestAuditTrailSurvivesAReplicaKilled(t *testing.T) {
	dsn, _ := pgtest.Schema(t)
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), envAuditChild+"="+dsn)
	cmd.Stderr = os.Stderr
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	tr, err := audit.Open(ctx, open(t, dsn), audit.Options{})
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]bool{}
	stop := make(chan struct{})
	var wg sync.WaitGroup
	var mu sync.Mutex
	wg.Add(1)
	go func() {
		defer wg.Done()
		for i := 0; ; i++ {
			select {
			case <-stop:
				return
			default:
			}
			id := fmt.Sprintf("parent-%d", i)
			if err := tr.RecordSync(ctx, store.AuditEvent{Type: "decision", RequestID: id}); err != nil {
				t.Error(err)
				return
			}
			mu.Lock()
			want[id] = true
			mu.Unlock()
		}
	}()
	lines := bufio.NewScanner(out)
	confirmed := 0
	for confirmed < 300 && lines.Scan() {
		mu.Lock()
		want[strings.TrimSpace(lines.Text())] = true
		mu.Unlock()
		confirmed++
	}
	if err := cmd.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	for lines.Scan() { // what it confirmed before it died
		mu.Lock()
		want[strings.TrimSpace(lines.Text())] = true
		mu.Unlock()
	}
	_ = cmd.Wait()
	// The survivor goes on appending after the death.
	mu.Lock()
	before := len(want)
	mu.Unlock()
	waitFor(t, "the survivor appending on", func() bool { mu.Lock(); defer mu.Unlock(); return len(want) >= before+100 })
	close(stop)
	wg.Wait()
	if err := tr.Close(ctx); err != nil {
		t.Fatal(err)
	}
	n := verifyTrail(t, open(t, dsn), want)
	if confirmed < 300 {
		t.Fatalf("the child confirmed only %d events", confirmed)
	}
	t.Logf("trail: %d events, %d confirmed by the two replicas", n, len(want))
}

// BenchmarkAuditReplicas measures RecordSync throughput of one trail and
// of three trails (replicas) appending to one schema: the cost of the
// serialized, re-chained appends.
func BenchmarkAuditReplicas(b *testing.B) {
	for _, replicas := range []int{1, 3} {
		b.Run(fmt.Sprintf("replicas=%d", replicas), func(b *testing.B) {
			dsn, _ := pgtest.Schema(b)
			trails := make([]*audit.Trail, replicas)
			for r := range trails {
				s, err := postgres.Open(ctx, postgres.Options{DSN: dsn, SweepInterval: -1})
				if err != nil {
					b.Fatal(err)
				}
				b.Cleanup(func() { _ = s.Close() })
				if trails[r], err = audit.Open(ctx, s, audit.Options{}); err != nil {
					b.Fatal(err)
				}
			}
			var next atomic.Int64
			b.SetParallelism(16 / 2) // 16 writers on 2 CPUs
			b.ResetTimer()
			b.RunParallel(func(pb *testing.PB) {
				tr := trails[int(next.Add(1))%replicas]
				for pb.Next() {
					if err := tr.RecordSync(ctx, store.AuditEvent{Type: "decision"}); err != nil {
						b.Error(err)
						return
					}
				}
			})
			b.StopTimer()
			for _, tr := range trails {
				_ = tr.Close(ctx)
			}
		})
	}
}
