// Package crash kills `warden serve` with SIGKILL in the middle of a Check
// load in audit.durability: sync, restarts it on the same data directory,
// and checks that every decision whose answer reached the client, allow or
// denial, is in the trail and that the chain verifies (`warden audit
// verify`).
package crash

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"github.com/warden-mcp/warden/test/wardenbin"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
)

func TestKill9UnderLoadLosesNoAnsweredDecision(t *testing.T) {
	bin := wardenbin.Path(t, false)
	dir := t.TempDir()
	w := start(t, bin, dir)
	admin, tok := w.admin, w.adminToken(t)
	post(t, admin+"/api/v1/servers", tok, map[string]any{"name": "bi", "url": "http://bi.internal:8080/mcp"})
	out := post(t, admin+"/api/v1/tokens", tok, map[string]any{"subject": "crash@example.com", "servers": []string{"bi"}, "ttl": "1h"})
	handle, _ := out["access_token"].(string)
	if handle == "" {
		t.Fatalf("no access token in %v", out)
	}

	conn, err := grpc.NewClient(w.authz, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	client := authv3.NewAuthorizationClient(conn)

	// Callers record the request id of every allow and every denial they
	// were answered (every other call presents a token Warden never
	// issued: a 401); after enough, the process is killed while they keep
	// calling.
	var (
		mu       sync.Mutex
		answers  = map[string][]string{} // decision -> request ids
		answered atomic.Int64
		failed   atomic.Int64
	)
	bogus := "wdn_at_" + strings.Repeat("x", 43)
	const callers, killAfter = 8, 400
	killed := make(chan struct{})
	var wg sync.WaitGroup
	for c := 0; c < callers; c++ {
		wg.Add(1)
		go func(c int) {
			defer wg.Done()
			for n := 0; ; n++ {
				id := fmt.Sprintf("crash-%d-%d", c, n)
				want, h := "allow", handle
				if n%2 == 1 {
					want, h = "deny", bogus
				}
				ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
				resp, err := client.Check(ctx, checkRequest(h, id))
				cancel()
				if err != nil {
					failed.Add(1)
					select {
					case <-killed:
						return // the process is gone
					default:
						time.Sleep(10 * time.Millisecond)
						continue
					}
				}
				if got := decision(resp); got != want {
					t.Errorf("check %s: %s (%v), want %s", id, got, resp.GetDeniedResponse(), want)
					return
				}
				mu.Lock()
				answers[want] = append(answers[want], id)
				mu.Unlock()
				answered.Add(1)
			}
		}(c)
	}
	for answered.Load() < killAfter {
		time.Sleep(time.Millisecond)
	}
	if err := w.cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	close(killed)
	_ = w.cmd.Wait()
	wg.Wait()
	if t.Failed() {
		return
	}
	if failed.Load() == 0 {
		t.Fatal("no call failed: the kill did not land mid-load")
	}
	if st, ok := w.cmd.ProcessState.Sys().(syscall.WaitStatus); !ok || st.Signal() != syscall.SIGKILL {
		t.Fatalf("warden did not die of SIGKILL: %v", w.cmd.ProcessState)
	}

	w2 := start(t, bin, dir)
	defer w2.stop(t)
	inTrail := map[string]map[string]bool{"allow": {}, "deny": {}}
	var from uint64
	for {
		var evs []struct {
			Seq       uint64 `json:"seq"`
			Type      string `json:"type"`
			RequestID string `json:"request_id"`
			Decision  string `json:"decision"`
		}
		get(t, fmt.Sprintf("%s/api/v1/audit?from=%d&limit=1000", w2.admin, from), tok, &evs)
		for _, e := range evs {
			if e.Type == "decision" && inTrail[e.Decision] != nil {
				inTrail[e.Decision][e.RequestID] = true
			}
			from = e.Seq + 1
		}
		if len(evs) < 1000 {
			break
		}
	}
	for _, d := range []string{"allow", "deny"} {
		if len(answers[d]) == 0 {
			t.Fatalf("no %s was answered before the kill", d)
		}
		missing := 0
		for _, id := range answers[d] {
			if !inTrail[d][id] {
				missing++
				t.Errorf("%s %s was answered but is not in the trail", d, id)
			}
		}
		t.Logf("%d %s answers before the kill, %d %s events in the trail, %d missing", len(answers[d]), d, len(inTrail[d]), d, missing)
	}

	verify := exec.Command(bin, "audit", "verify")
	verify.Env = w2.env
	vout, err := verify.CombinedOutput()
	if err != nil || !strings.Contains(string(vout), "audit chain intact") {
		t.Fatalf("warden audit verify after the crash: %v\n%s", err, vout)
	}
	t.Logf("verify: %s", strings.TrimSpace(string(vout)))
}

// decision is how Envoy would read resp.
func decision(resp *authv3.CheckResponse) string {
	if resp.GetOkResponse() != nil {
		return "allow"
	}
	return "deny"
}

func checkRequest(handle, id string) *authv3.CheckRequest {
	body := []byte(`{"jsonrpc":"2.0","id":7,"method":"tools/call","params":{"name":"echo","arguments":{"message":"hello"}}}`)
	return &authv3.CheckRequest{Attributes: &authv3.AttributeContext{
		Request: &authv3.AttributeContext_Request{Http: &authv3.AttributeContext_HttpRequest{
			Id: id, Method: "POST", Path: "/mcp/bi", Host: "mcp.example.com", Scheme: "https", Protocol: "HTTP/1.1",
			Headers: map[string]string{
				":method": "POST", ":path": "/mcp/bi", ":authority": "mcp.example.com", ":scheme": "https",
				"authorization": "Bearer " + handle, "content-type": "application/json", "accept": "application/json, text/event-stream",
				"x-request-id": id, "mcp-session-id": "sess-1", "mcp-protocol-version": "2025-11-25",
				"x-envoy-auth-partial-body": "false",
			},
			RawBody: body, Size: int64(len(body)),
		}},
		ContextExtensions: map[string]string{"server": "bi"},
	}}
}

type warden struct {
	cmd          *exec.Cmd
	env          []string
	dir          string
	admin, authz string
	out          *bytes.Buffer
}

func start(t *testing.T, bin, dir string) *warden {
	t.Helper()
	authzAddr, adminAddr := freeAddr(t), freeAddr(t)
	env := append(wardenbin.CleanEnv(),
		"WARDEN_DATA_DIR="+filepath.Join(dir, "data"), "WARDEN_PUBLIC_URL=https://mcp.example.com",
		"WARDEN_LISTEN_AUTHZ="+authzAddr, "WARDEN_LISTEN_ADMIN="+adminAddr,
		"WARDEN_LISTEN_HTTP="+freeAddr(t), "WARDEN_LISTEN_XDS="+freeAddr(t),
		"WARDEN_AUDIT_DURABILITY=sync", "WARDEN_AUDIT_SINK=none", "WARDEN_LOG_LEVEL=warn",
	)
	cmd := exec.Command(bin, "serve")
	cmd.Env = env
	out := &bytes.Buffer{}
	cmd.Stdout, cmd.Stderr = out, out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	w := &warden{cmd: cmd, env: env, dir: dir, admin: "http://" + adminAddr, authz: authzAddr, out: out}
	deadline := time.Now().Add(60 * time.Second)
	for {
		resp, err := http.Get(w.admin + "/readyz")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return w
			}
		}
		if time.Now().After(deadline) {
			_ = cmd.Process.Kill()
			_ = cmd.Wait()
			t.Fatalf("warden not ready: %v\n%s", err, out)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func (w *warden) stop(t *testing.T) {
	_ = w.cmd.Process.Signal(syscall.SIGTERM)
	if err := w.cmd.Wait(); err != nil {
		t.Errorf("warden serve exited with %v\n%s", err, w.out)
	}
}

func (w *warden) adminToken(t *testing.T) string {
	raw, err := os.ReadFile(filepath.Join(w.dir, "data", "admin-token"))
	if err != nil {
		t.Fatal(err)
	}
	return strings.TrimSpace(string(raw))
}

func post(t *testing.T, url, tok string, body any) map[string]any {
	t.Helper()
	raw, _ := json.Marshal(body)
	req, _ := http.NewRequest("POST", url, bytes.NewReader(raw))
	req.Header.Set("Authorization", "Bearer "+tok)
	req.Header.Set("Content-Type", "application/json")
	var out map[string]any
	do(t, req, &out)
	return out
}

func get(t *testing.T, url, tok string, out any) {
	t.Helper()
	req, _ := http.NewRequest("GET", url, nil)
	req.Header.Set("Authorization", "Bearer "+tok)
	do(t, req, out)
}

func do(t *testing.T, req *http.Request, out any) {
	t.Helper()
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	data, _ := io.ReadAll(resp.Body)
	if resp.StatusCode/100 != 2 {
		t.Fatalf("%s %s: %d %s", req.Method, req.URL, resp.StatusCode, data)
	}
	if err := json.Unmarshal(data, out); err != nil {
		t.Fatalf("%s: %v", req.URL, err)
	}
}

func freeAddr(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return "127.0.0.1:" + strconv.Itoa(l.Addr().(*net.TCPAddr).Port)
}
