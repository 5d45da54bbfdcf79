package storetest

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"os/exec"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/warden-mcp/warden/internal/store"
)

// A backend that several Warden processes share (PostgreSQL) must keep its
// guarantees across processes, not only across goroutines: the shared
// tests re-execute the test binary as child processes that open the same
// store and race on it. A backend's test wires it up in two places:
//
//	func TestMain(m *testing.M) { storetest.ChildMain(m, attach) }
//	func TestShared(t *testing.T) { storetest.RunShared(t, open) }

// Environment of a child process.
const (
	envRole = "WARDEN_STORETEST_CHILD"
	envAddr = "WARDEN_STORETEST_ADDR"
	envArgs = "WARDEN_STORETEST_ARGS"
)

// childArgs parameterize one child's work.
type childArgs struct {
	Index   int      `json:"index"`
	Workers int      `json:"workers"`
	Each    int      `json:"each"`
	IDs     []string `json:"ids,omitempty"`
}

// childResult is what a child prints when done.
type childResult struct {
	Won  []string `json:"won,omitempty"`
	Done int      `json:"done"`
}

// ChildMain runs a child's part and exits when this process was started by
// RunShared, and runs the tests otherwise. attach opens the store that
// RunShared's open returned the address of.
func ChildMain(m *testing.M, attach func(addr string) (store.Store, error)) {
	role := os.Getenv(envRole)
	if role == "" {
		os.Exit(m.Run())
	}
	if err := runChild(role, attach); err != nil {
		fmt.Fprintf(os.Stderr, "storetest child %s: %v\n", role, err)
		os.Exit(1)
	}
	os.Exit(0)
}

func runChild(role string, attach func(string) (store.Store, error)) error {
	var a childArgs
	if err := json.Unmarshal([]byte(os.Getenv(envArgs)), &a); err != nil {
		return fmt.Errorf("args: %w", err)
	}
	s, err := attach(os.Getenv(envAddr))
	if err != nil {
		return err
	}
	defer s.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	// Ready, then wait for the parent's go: every child starts its race
	// at the same moment, with its connections already open.
	fmt.Println("ready")
	if _, err := bufio.NewReader(os.Stdin).ReadString('\n'); err != nil {
		return fmt.Errorf("waiting for the start: %w", err)
	}
	var mu sync.Mutex
	var res childResult
	var wg sync.WaitGroup
	errs := make(chan error, a.Workers)
	for w := 0; w < a.Workers; w++ {
		wg.Add(1)
		go func(w int) {
			defer wg.Done()
			var err error
			switch role {
			case "cas":
				err = childCAS(ctx, s, a, w)
			case "take":
				var won []string
				won, err = childTake(ctx, s, a, w)
				mu.Lock()
				res.Won = append(res.Won, won...)
				mu.Unlock()
			case "audit":
				err = childAudit(ctx, s, a, w)
			default:
				err = fmt.Errorf("unknown role %q", role)
			}
			if err != nil {
				errs <- err
				return
			}
			mu.Lock()
			res.Done++
			mu.Unlock()
		}(w)
	}
	wg.Wait()
	close(errs)
	if err := errors.Join(collect(errs)...); err != nil {
		return err
	}
	return json.NewEncoder(os.Stdout).Encode(res)
}

func collect(ch <-chan error) []error {
	var out []error
	for err := range ch {
		out = append(out, err)
	}
	return out
}

// childCAS appends its own scopes to grant "g", one compare-and-swap each.
func childCAS(ctx context.Context, s store.Store, a childArgs, w int) error {
	for i := 0; i < a.Each; i++ {
		tag := fmt.Sprintf("p%d-w%d-%d", a.Index, w, i)
		err := s.UpdateGrant(ctx, "g", func(g store.Grant) (store.Grant, error) {
			g.Scopes = append(g.Scopes, tag)
			return g, nil
		})
		if err != nil {
			return err
		}
	}
	return nil
}

// childTake tries to take every session, in its own order.
func childTake(ctx context.Context, s store.Store, a childArgs, w int) ([]string, error) {
	ids := append([]string(nil), a.IDs...)
	r := rand.New(rand.NewPCG(uint64(a.Index), uint64(w)))
	r.Shuffle(len(ids), func(i, j int) { ids[i], ids[j] = ids[j], ids[i] })
	var won []string
	for _, id := range ids {
		v, err := s.TakeSession(ctx, "code", id)
		if errors.Is(err, store.ErrNotFound) {
			continue
		}
		if err != nil {
			return won, err
		}
		if string(v) != "value-"+id {
			return won, fmt.Errorf("session %s held %q", id, v)
		}
		won = append(won, id)
	}
	return won, nil
}

// childAudit appends its events to the one chain, each after the newest
// stored event, the way a replica continues the trail: read the head,
// append the next seq, and read again when another appender got there
// first.
func childAudit(ctx context.Context, s store.Store, a childArgs, w int) error {
	for i := 0; i < a.Each; i++ {
		id := fmt.Sprintf("p%d-w%d-%d", a.Index, w, i)
		for attempt := 0; ; attempt++ {
			if attempt > 10000 {
				return fmt.Errorf("event %s never landed", id)
			}
			var prev store.AuditEvent
			last, err := s.LastAudit(ctx)
			if err == nil {
				prev = last
			} else if !errors.Is(err, store.ErrNotFound) {
				return err
			}
			err = s.AppendAudit(ctx, store.AuditEvent{Seq: prev.Seq + 1, Type: "test", RequestID: id, PrevHash: prev.Hash, Hash: "h-" + id})
			if err == nil {
				break
			}
			if !errors.Is(err, store.ErrAlreadyExists) {
				return err
			}
		}
	}
	return nil
}

// RunShared runs the cross-process tests. open returns an empty store and
// the address child processes attach to.
func RunShared(t *testing.T, open func(t *testing.T) (store.Store, string)) {
	t.Run("CASAcrossProcesses", func(t *testing.T) { testCASAcrossProcesses(t, open) })
	t.Run("TakeOnceAcrossProcesses", func(t *testing.T) { testTakeAcrossProcesses(t, open) })
	t.Run("AuditChainAcrossProcesses", func(t *testing.T) { testAuditAcrossProcesses(t, open) })
}

// Sizes of the races: 4 processes with 3 goroutines each.
const (
	procs   = 4
	workers = 3
)

// child is one started child process.
type child struct {
	cmd    *exec.Cmd
	stdin  io.WriteCloser
	stdout *bufio.Reader
	stderr *lockedBuffer
}

type lockedBuffer struct {
	mu sync.Mutex
	b  []byte
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.b = append(l.b, p...)
	return len(p), nil
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return string(l.b)
}

// race starts n children in role, waits until all are ready, releases them
// at once and returns their results.
func race(t *testing.T, role, addr string, n int, args func(i int) childArgs) []childResult {
	t.Helper()
	kids := make([]*child, n)
	for i := range kids {
		raw, _ := json.Marshal(args(i))
		// -test.run=^$ makes a binary without ChildMain run no test and
		// say nothing, which the ready check below reports.
		cmd := exec.Command(os.Args[0], "-test.run=^$")
		cmd.Env = append(os.Environ(), envRole+"="+role, envAddr+"="+addr, envArgs+"="+string(raw))
		stdin, err := cmd.StdinPipe()
		if err != nil {
			t.Fatal(err)
		}
		stdout, err := cmd.StdoutPipe()
		if err != nil {
			t.Fatal(err)
		}
		k := &child{cmd: cmd, stdin: stdin, stdout: bufio.NewReader(stdout), stderr: &lockedBuffer{}}
		cmd.Stderr = k.stderr
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() {
			_ = k.cmd.Process.Kill()
			_ = k.cmd.Wait()
		})
		kids[i] = k
	}
	for i, k := range kids {
		line, err := k.stdout.ReadString('\n')
		if err != nil || line != "ready\n" {
			t.Fatalf("child %d did not start (does TestMain call storetest.ChildMain?): %q %v\n%s", i, line, err, k.stderr)
		}
	}
	for _, k := range kids {
		if _, err := io.WriteString(k.stdin, "go\n"); err != nil {
			t.Fatal(err)
		}
	}
	out := make([]childResult, n)
	for i, k := range kids {
		line, err := k.stdout.ReadString('\n')
		if err != nil {
			t.Fatalf("child %d: %v\n%s", i, err, k.stderr)
		}
		if err := json.Unmarshal([]byte(line), &out[i]); err != nil {
			t.Fatalf("child %d result %q: %v", i, line, err)
		}
		if err := k.cmd.Wait(); err != nil {
			t.Fatalf("child %d: %v\n%s", i, err, k.stderr)
		}
		if out[i].Done != workers {
			t.Fatalf("child %d: %d of %d workers finished", i, out[i].Done, workers)
		}
	}
	return out
}

func testCASAcrossProcesses(t *testing.T, open func(t *testing.T) (store.Store, string)) {
	s, addr := open(t)
	must(t, s.CreateGrant(ctx, store.Grant{ID: "g"}))
	const each = 20
	race(t, "cas", addr, procs, func(i int) childArgs { return childArgs{Index: i, Workers: workers, Each: each} })
	g, err := s.GetGrant(ctx, "g")
	must(t, err)
	want := procs * workers * each
	if len(g.Scopes) != want {
		t.Fatalf("lost updates across processes: %d scopes, want %d", len(g.Scopes), want)
	}
	seen := map[string]bool{}
	for _, sc := range g.Scopes {
		if seen[sc] {
			t.Fatalf("update %s applied twice", sc)
		}
		seen[sc] = true
	}
	for p := 0; p < procs; p++ {
		for w := 0; w < workers; w++ {
			for i := 0; i < each; i++ {
				if tag := fmt.Sprintf("p%d-w%d-%d", p, w, i); !seen[tag] {
					t.Fatalf("update %s missing", tag)
				}
			}
		}
	}
	if g.Version != uint64(1+want) {
		t.Fatalf("version %d after %d updates of version 1", g.Version, want)
	}
}

func testTakeAcrossProcesses(t *testing.T, open func(t *testing.T) (store.Store, string)) {
	s, addr := open(t)
	const n = 64
	ids := make([]string, n)
	for i := range ids {
		ids[i] = "c" + strconv.Itoa(i)
		must(t, s.PutSession(ctx, "code", ids[i], []byte("value-"+ids[i]), time.Minute))
	}
	res := race(t, "take", addr, procs, func(i int) childArgs { return childArgs{Index: i, Workers: workers, IDs: ids} })
	wins := map[string]int{}
	for _, r := range res {
		for _, id := range r.Won {
			wins[id]++
		}
	}
	for _, id := range ids {
		if wins[id] != 1 {
			t.Errorf("session %s taken %d times across %d processes, want exactly once", id, wins[id], procs)
		}
	}
	if len(wins) != n {
		t.Errorf("%d sessions taken, want %d", len(wins), n)
	}
}

func testAuditAcrossProcesses(t *testing.T, open func(t *testing.T) (store.Store, string)) {
	s, addr := open(t)
	const each = 15
	race(t, "audit", addr, procs, func(i int) childArgs { return childArgs{Index: i, Workers: workers, Each: each} })
	evs, err := s.ListAudit(ctx, 0, 0)
	must(t, err)
	want := procs * workers * each
	if len(evs) != want {
		t.Fatalf("%d events in the trail, want %d", len(evs), want)
	}
	seen := map[string]bool{}
	prev := ""
	for i, e := range evs {
		if e.Seq != uint64(i+1) {
			t.Fatalf("event %d has seq %d", i+1, e.Seq)
		}
		// Every append named the head it continued: one chain, each link
		// made against the event committed right before it.
		if e.PrevHash != prev {
			t.Fatalf("event %d continues %q, but the event before it is %q", e.Seq, e.PrevHash, prev)
		}
		if seen[e.RequestID] {
			t.Fatalf("event %s stored twice", e.RequestID)
		}
		seen[e.RequestID] = true
		prev = e.Hash
	}
}
