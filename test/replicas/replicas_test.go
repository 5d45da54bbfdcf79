// Package replicas runs three `warden serve` processes on one PostgreSQL
// database and checks the guarantees that must hold across them:
// revocation through any replica is exact on every replica with hot
// caches on, a replica killed with SIGKILL under load leaves the others
// answering and the audit trail whole, and keys and servers are shared.
package replicas

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"github.com/jackc/pgx/v5"
	"golang.org/x/crypto/bcrypt"
	"google.golang.org/grpc"

	"github.com/warden-mcp/warden/internal/audit"
	"github.com/warden-mcp/warden/internal/store/postgres"
	"github.com/warden-mcp/warden/internal/store/postgres/pgtest"
	"github.com/warden-mcp/warden/oauth/oauthtest"
	"github.com/warden-mcp/warden/test/load"
	"github.com/warden-mcp/warden/test/wardenbin"
)

const policy = `package warden.authz

import rego.v1

decision := {"allow": true, "reason": "replica test"}
`

const adminToken = "replicas-admin-token-0123456789abcdef"

// database creates a database of its own for the run (other tests and
// other engineers' runs use other databases or schemas) and drops it at
// the end; it returns its DSN.
func database(t *testing.T) string {
	base := pgtest.BaseDSN(t)
	b := make([]byte, 6)
	_, _ = rand.Read(b)
	name := "warden_replicas_" + hex.EncodeToString(b)
	ctx := context.Background()
	conn, err := pgx.Connect(ctx, base)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	if _, err := conn.Exec(ctx, "CREATE DATABASE "+pgx.Identifier{name}.Sanitize()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		conn, err := pgx.Connect(context.Background(), base)
		if err != nil {
			t.Error(err)
			return
		}
		defer conn.Close(context.Background())
		if _, err := conn.Exec(context.Background(), "DROP DATABASE "+pgx.Identifier{name}.Sanitize()+" WITH (FORCE)"); err != nil {
			t.Error(err)
		}
	})
	u, err := url.Parse(base)
	if err != nil || u.Scheme == "" {
		t.Fatalf("WARDEN_TEST_POSTGRES_DSN must be a URL here: %v", err)
	}
	u.Path = "/" + name
	return u.String()
}

type replica struct {
	name         string
	cmd          *exec.Cmd
	authz, admin string
	out          *bytes.Buffer
	mu           *sync.Mutex
	done         chan struct{}
}

type lockedWriter struct {
	mu *sync.Mutex
	b  *bytes.Buffer
}

func (w lockedWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.b.Write(p)
}

// replicaOpts: config is a config file for every replica (its public_url
// and connector apply), http the replica's HTTP listener.
type replicaOpts struct{ config, http string }

func startReplica(t *testing.T, bin, name, dsn, sealing, pdir string, opts ...replicaOpts) *replica {
	dir := t.TempDir()
	var o replicaOpts
	if len(opts) > 0 {
		o = opts[0]
	}
	if o.http == "" {
		o.http = load.FreePort()
	}
	r := &replica{name: name, authz: load.FreePort(), admin: "http://" + load.FreePort(), out: &bytes.Buffer{}, mu: &sync.Mutex{}, done: make(chan struct{})}
	args := []string{"serve"}
	if o.config != "" {
		args = append(args, "-c", o.config)
	}
	r.cmd = exec.Command(bin, args...)
	r.cmd.Env = append(os.Environ(),
		"WARDEN_DATA_DIR="+filepath.Join(dir, "data"),
		"WARDEN_LISTEN_AUTHZ="+r.authz, "WARDEN_LISTEN_ADMIN="+strings.TrimPrefix(r.admin, "http://"),
		"WARDEN_LISTEN_HTTP="+o.http, "WARDEN_LISTEN_XDS="+load.FreePort(),
		"WARDEN_POLICY_DIR="+pdir, "WARDEN_LOG_LEVEL=info", "WARDEN_AUDIT_SINK=none",
		"WARDEN_STORE_BACKEND=postgres", "WARDEN_STORE_POSTGRES_DSN="+dsn, "WARDEN_STORE_POSTGRES_REPLICA_LEASE=2s",
		"WARDEN_SEALING_KEYS="+sealing, "WARDEN_ADMIN_TOKEN="+adminToken,
	)
	if o.config == "" {
		r.cmd.Env = append(r.cmd.Env, "WARDEN_PUBLIC_URL=https://mcp.example.com")
	}
	w := lockedWriter{r.mu, r.out}
	r.cmd.Stdout, r.cmd.Stderr = w, w
	if err := r.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { _ = r.cmd.Wait(); close(r.done) }()
	t.Cleanup(func() {
		r.stop()
		if t.Failed() {
			r.mu.Lock()
			out := r.out.String()
			r.mu.Unlock()
			if len(out) > 4000 {
				out = out[len(out)-4000:]
			}
			t.Logf("---- replica %s ----\n%s", name, out)
		}
	})
	deadline := time.Now().Add(time.Minute)
	for {
		resp, err := http.Get(r.admin + "/readyz")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == 200 {
				return r
			}
		}
		select {
		case <-r.done:
			t.Fatalf("replica %s exited", name)
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("replica %s not ready", name)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func (r *replica) stop() {
	select {
	case <-r.done:
		return
	default:
	}
	_ = r.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-r.done:
	case <-time.After(20 * time.Second):
		_ = r.cmd.Process.Kill()
		<-r.done
	}
}

func (r *replica) call(t *testing.T, method, path string, body any) map[string]any {
	t.Helper()
	raw, _ := json.Marshal(body)
	req, _ := http.NewRequest(method, r.admin+path, bytes.NewReader(raw))
	req.Header.Set("Authorization", "Bearer "+adminToken)
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	data, _ := io.ReadAll(resp.Body)
	if resp.StatusCode/100 != 2 {
		t.Fatalf("%s %s on %s: %d %s", method, path, r.name, resp.StatusCode, data)
	}
	var out map[string]any
	_ = json.Unmarshal(data, &out)
	return out
}

func (r *replica) cli(t *testing.T, bin string, args ...string) string {
	t.Helper()
	cmd := exec.Command(bin, append(args, "--admin-addr", r.admin)...)
	cmd.Env = append(os.Environ(), "WARDEN_ADMIN_TOKEN="+adminToken)
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("warden %s via %s: %v\n%s", strings.Join(args, " "), r.name, err, out)
	}
	return string(out)
}

func check(handle, id string) *authv3.CheckRequest { return checkAt("mcp.example.com", handle, id) }

func checkAt(host, handle, id string) *authv3.CheckRequest {
	body := []byte(`{"jsonrpc":"2.0","id":7,"method":"tools/call","params":{"name":"echo","arguments":{"message":"hello"}}}`)
	return &authv3.CheckRequest{Attributes: &authv3.AttributeContext{
		Request: &authv3.AttributeContext_Request{Http: &authv3.AttributeContext_HttpRequest{
			Id: id, Method: "POST", Path: "/mcp/bi", Host: host, Scheme: "https", Protocol: "HTTP/1.1",
			Headers: map[string]string{
				":method": "POST", ":path": "/mcp/bi", ":authority": host, ":scheme": "https",
				"authorization": "Bearer " + handle, "content-type": "application/json", "accept": "application/json, text/event-stream",
				"x-request-id": id, "mcp-session-id": "sess-1", "mcp-protocol-version": "2025-11-25",
			},
			RawBody: body, Size: int64(len(body)),
		}},
		ContextExtensions: map[string]string{"server": "bi"},
	}}
}

// answer is one Check that got an answer.
type answer struct {
	replica int
	user    int
	id      string
	allowed bool
	start   time.Time
}

func TestThreeReplicas(t *testing.T) {
	dsn, bin, pdir, sealing := setup(t)
	reps := []*replica{startReplica(t, bin, "a", dsn, sealing, pdir)}
	// The first replica created the shared keys; the others load them.
	reps = append(reps, startReplica(t, bin, "b", dsn, sealing, pdir), startReplica(t, bin, "c", dsn, sealing, pdir))

	// Keys: one JWKS for the deployment, also after a rotation on one.
	jwks := func(r *replica) string {
		resp, err := http.Get("http://" + httpAddr(t, r) + "/oauth/jwks")
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return string(b)
	}
	sameJWKS := func(what string) string {
		deadline := time.Now().Add(30 * time.Second)
		for {
			a, b, c := jwks(reps[0]), jwks(reps[1]), jwks(reps[2])
			if a == b && b == c && strings.Contains(a, `"kid"`) {
				return a
			}
			if time.Now().After(deadline) {
				t.Fatalf("%s: the replicas serve different JWKS:\n%s\n%s\n%s", what, a, b, c)
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
	first := sameJWKS("at start")
	reps[1].call(t, "POST", "/api/v1/keys/rotate", map[string]any{})
	if rotated := sameJWKS("after a rotation on b"); rotated == first {
		t.Fatal("the rotation changed no JWKS")
	}

	// A server registered through A is known to B and C.
	reps[0].call(t, "POST", "/api/v1/servers", map[string]any{"name": "bi", "url": "http://bi.internal:8080/mcp"})
	const users = 3
	handles := make([]string, users)
	for u := range handles {
		out := reps[u%3].call(t, "POST", "/api/v1/tokens", map[string]any{"subject": fmt.Sprintf("user%d@example.com", u), "servers": []string{"bi"}, "ttl": "1h"})
		handles[u], _ = out["access_token"].(string)
		if handles[u] == "" {
			t.Fatalf("no token: %v", out)
		}
	}
	conns := make([]*grpc.ClientConn, len(reps))
	for i, r := range reps {
		c, err := load.Dial(r.authz, 1)
		if err != nil {
			t.Fatal(err)
		}
		conns[i] = c[0]
		defer load.CloseAll(c)
	}
	// Every replica allows every user (the server reached B and C).
	for i := range reps {
		for u := range handles {
			deadline := time.Now().Add(30 * time.Second)
			for {
				resp, err := authv3.NewAuthorizationClient(conns[i]).Check(context.Background(), check(handles[u], fmt.Sprintf("warm-%d-%d", i, u)))
				if err == nil && resp.GetOkResponse() != nil {
					break
				}
				if time.Now().After(deadline) {
					t.Fatalf("replica %s does not allow user %d: %v %v", reps[i].name, u, err, resp.GetDeniedResponse())
				}
				time.Sleep(50 * time.Millisecond)
			}
		}
	}

	var mu sync.Mutex
	var answers []answer
	var seq atomic.Int64
	stop := make(chan struct{})
	var dead atomic.Int32
	dead.Store(-1)
	var retried atomic.Int64
	var wg sync.WaitGroup
	for i := range reps {
		for u := range handles {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for {
					select {
					case <-stop:
						return
					default:
					}
					id := fmt.Sprintf("rq-%d", seq.Add(1))
					target := i
					start := time.Now()
					ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
					resp, err := authv3.NewAuthorizationClient(conns[target]).Check(ctx, check(handles[u], id))
					cancel()
					if err != nil || resp.GetStatus().GetCode() == 14 {
						if int(dead.Load()) != target {
							t.Errorf("replica %s failed while alive: %v", reps[target].name, err)
							return
						}
						// The client's retry, at the next replica, as a
						// request of its own (Envoy gives a retry a new
						// stream): the killed replica may have stored its
						// decision without getting the answer out, and
						// that unanswered decision stays in the trail
						// beside the retry's.
						retried.Add(1)
						target = (target + 1) % len(reps)
						start = time.Now()
						id += "-retry"
						resp, err = authv3.NewAuthorizationClient(conns[target]).Check(context.Background(), check(handles[u], id))
						if err != nil {
							t.Errorf("retry at %s: %v", reps[target].name, err)
							return
						}
					}
					mu.Lock()
					answers = append(answers, answer{replica: target, user: u, id: id, allowed: resp.GetOkResponse() != nil, start: start})
					mu.Unlock()
				}
			}()
		}
	}
	time.Sleep(500 * time.Millisecond)

	// Revoke user 0 through B while all three answer Checks for it.
	reps[1].cli(t, bin, "revoke", "--user", "user0@example.com")
	returned := time.Now()
	time.Sleep(time.Second)

	// Kill C with SIGKILL under load; A and B go on, C's callers retry.
	dead.Store(2)
	if err := reps[2].cmd.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	<-reps[2].done
	killed := time.Now()
	time.Sleep(time.Second)
	close(stop)
	wg.Wait()

	after := make([]int, len(reps))
	before := make([]int, len(reps))
	survivors := 0
	for _, a := range answers {
		if a.user == 0 && a.allowed {
			if a.start.After(returned) {
				after[a.replica]++
			} else {
				before[a.replica]++
			}
		}
		if a.user != 0 && a.start.After(killed) && a.allowed {
			survivors++
		}
	}
	t.Logf("user0 allows before the revoke returned, per replica: %v; after: %v; answers: %d; retried after the kill: %d", before, after, len(answers), retried.Load())
	for i, n := range after {
		if n != 0 {
			t.Errorf("replica %s allowed the revoked user %d times after `warden revoke` returned", reps[i].name, n)
		}
		if before[i] == 0 {
			t.Errorf("replica %s never allowed user0 before the revocation: the test proves nothing there", reps[i].name)
		}
	}
	if survivors == 0 {
		t.Error("no allow after the kill")
	}

	// The trail verifies, through a survivor, and holds every allowed
	// decision that got an answer, once.
	seen := trailDecisions(t, bin, dsn, reps[0], reps[0], reps[1])
	// In sync durability (the default) allows and denials alike are
	// answered only once their group commit is stored, so every answered
	// decision is there, the killed replica's included.
	missing := 0
	denials := make([]int, len(reps))
	for _, a := range answers {
		if !a.allowed {
			denials[a.replica]++
		}
		if seen[a.id] != 1 {
			missing++
		}
	}
	t.Logf("answered denials per replica: %v", denials)
	if denials[2] == 0 {
		t.Error("the killed replica answered no denial: the trail check proves nothing for denials there")
	}
	if missing != 0 {
		t.Errorf("%d answered decisions are missing from the trail", missing)
	}
}

// setup gives a run its database, the warden binary, a policy directory
// allowing everything and the key-encryption key every replica gets.
func setup(t *testing.T) (dsn, bin, pdir, sealing string) {
	dsn = database(t)
	bin = wardenbin.Path(t, false)
	pdir = t.TempDir()
	if err := os.WriteFile(filepath.Join(pdir, "authz.rego"), []byte(policy), 0o644); err != nil {
		t.Fatal(err)
	}
	kek := make([]byte, 32)
	_, _ = rand.Read(kek)
	return dsn, bin, pdir, "kek1:" + base64.StdEncoding.EncodeToString(kek)
}

// trailDecisions checks the trail with `warden audit verify` through via,
// stops the survivors (their queued events drained), verifies the chain
// again from the database and returns how often each request id has a
// decision event, failing on any recorded twice.
func trailDecisions(t *testing.T, bin, dsn string, via *replica, survivors ...*replica) map[string]int {
	t.Helper()
	if out := via.cli(t, bin, "audit", "verify"); !strings.Contains(out, "audit chain intact") {
		t.Fatalf("warden audit verify: %s", out)
	}
	for _, r := range survivors {
		r.stop()
	}
	st, err := postgres.Open(context.Background(), postgres.Options{DSN: dsn, SweepInterval: -1})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	rep, err := audit.Verify(context.Background(), st)
	if err != nil || !rep.OK() {
		t.Fatalf("audit verify: %+v %v", rep, err)
	}
	events, err := st.ListAudit(context.Background(), 0, 0)
	if err != nil {
		t.Fatal(err)
	}
	seen := map[string]int{}
	for _, ev := range events {
		if ev.Type == "decision" && ev.RequestID != "" {
			seen[ev.RequestID]++
		}
	}
	for id, n := range seen {
		if n > 1 {
			t.Errorf("decision %s recorded %d times", id, n)
		}
	}
	t.Logf("trail: %d events, chain ok through seq %d", len(events), rep.Last)
	return seen
}

// staticConnectorConfig writes a config file with public_url and the
// static connector's one user.
func staticConnectorConfig(t *testing.T, public string) string {
	t.Helper()
	hash, err := bcrypt.GenerateFromPassword([]byte(oauthtest.Password), bcrypt.MinCost)
	if err != nil {
		t.Fatal(err)
	}
	cfg := filepath.Join(t.TempDir(), "warden.yaml")
	if err := os.WriteFile(cfg, []byte(fmt.Sprintf(`public_url: %s
oauth:
  connector:
    type: static
    static:
      users:
        - username: %s
          email: alice@example.com
          password_hash: %q
`, public, oauthtest.User, hash)), 0o600); err != nil {
		t.Fatal(err)
	}
	return cfg
}

func httpAddr(t *testing.T, r *replica) string {
	for _, kv := range r.cmd.Env {
		if v, ok := strings.CutPrefix(kv, "WARDEN_LISTEN_HTTP="); ok {
			return v
		}
	}
	t.Fatal("no http address")
	return ""
}
