package replicas

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"testing"
	"time"

	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"google.golang.org/grpc"

	"github.com/warden-mcp/warden/test/load"
	"github.com/warden-mcp/warden/test/wardenbin"
)

// TestRevocationPropagation measures, over 100 revocations through
// rotating replicas of three, how long the revoking call takes (it returns
// once every replica acknowledged) and how long until every replica
// denies the handle, probing all three from the moment the call starts.
// It reports p50 and p99; it asserts only that every replica denies after
// the call returned. Run with WARDEN_BENCH_PROPAGATION=1 (it is a
// measurement, not part of the suite).
func TestRevocationPropagation(t *testing.T) {
	if os.Getenv("WARDEN_BENCH_PROPAGATION") == "" {
		t.Skip("a measurement: set WARDEN_BENCH_PROPAGATION=1")
	}
	dsn := database(t)
	bin := wardenbin.Path(t, false)
	pdir := t.TempDir()
	if err := os.WriteFile(filepath.Join(pdir, "authz.rego"), []byte(policy), 0o644); err != nil {
		t.Fatal(err)
	}
	kek := make([]byte, 32)
	_, _ = rand.Read(kek)
	sealing := "kek1:" + base64.StdEncoding.EncodeToString(kek)
	reps := []*replica{startReplica(t, bin, "a", dsn, sealing, pdir)}
	reps = append(reps, startReplica(t, bin, "b", dsn, sealing, pdir), startReplica(t, bin, "c", dsn, sealing, pdir))
	reps[0].call(t, "POST", "/api/v1/servers", map[string]any{"name": "bi", "url": "http://bi.internal:8080/mcp"})
	conns := make([]*grpc.ClientConn, 3)
	for i, r := range reps {
		c, err := load.Dial(r.authz, 1)
		if err != nil {
			t.Fatal(err)
		}
		conns[i] = c[0]
		defer load.CloseAll(c)
	}
	const n = 100
	var calls, denied []time.Duration
	for k := 0; k < n; k++ {
		subject := fmt.Sprintf("prop%d@example.com", k)
		out := reps[k%3].call(t, "POST", "/api/v1/tokens", map[string]any{"subject": subject, "servers": []string{"bi"}, "ttl": "1h"})
		h, _ := out["access_token"].(string)
		// Cached on all three.
		for i := range conns {
			for {
				resp, err := authv3.NewAuthorizationClient(conns[i]).Check(context.Background(), check(h, "w"))
				if err == nil && resp.GetOkResponse() != nil {
					break
				}
				time.Sleep(5 * time.Millisecond)
			}
		}
		start := time.Now()
		var wg sync.WaitGroup
		lastDeny := make([]time.Duration, 3)
		for i := range conns {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for {
					resp, err := authv3.NewAuthorizationClient(conns[i]).Check(context.Background(), check(h, "p"))
					if err == nil && resp.GetOkResponse() == nil {
						lastDeny[i] = time.Since(start)
						return
					}
				}
			}()
		}
		reps[(k+1)%3].call(t, "POST", "/api/v1/revoke", map[string]any{"user": subject})
		took := time.Since(start)
		wg.Wait()
		for i := range conns {
			resp, err := authv3.NewAuthorizationClient(conns[i]).Check(context.Background(), check(h, "after"))
			if err != nil || resp.GetOkResponse() != nil {
				t.Fatalf("replica %s allows after the revocation returned", reps[i].name)
			}
		}
		calls = append(calls, took)
		denied = append(denied, slices.Max(lastDeny))
	}
	pct := func(d []time.Duration, p float64) time.Duration {
		s := slices.Clone(d)
		slices.Sort(s)
		return s[min(len(s)-1, int(float64(len(s))*p))]
	}
	t.Logf("revocation call (returns once all 3 acknowledged): p50 %v p99 %v", pct(calls, 0.50), pct(calls, 0.99))
	t.Logf("until all 3 replicas deny (from the call's start): p50 %v p99 %v", pct(denied, 0.50), pct(denied, 0.99))
}
