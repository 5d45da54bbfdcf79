package replicas

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"testing"

	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"

	"github.com/warden-mcp/warden/oauth/oauthtest"
	"github.com/warden-mcp/warden/test/load"
)

func postForm(t *testing.T, u string, form url.Values) (int, map[string]any) {
	t.Helper()
	resp, err := http.PostForm(u, form)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	var m map[string]any
	_ = json.Unmarshal(raw, &m)
	return resp.StatusCode, m
}

// A user signs in through replica A (static connector, PKCE), refreshes
// through B and calls a tool through C; then a second authorization code
// is redeemed at B and C at the same moment: exactly one wins, and the
// loser's attempt revokes the grant on every replica.
func TestOAuthAcrossReplicas(t *testing.T) {
	dsn, bin, pdir, sealing := setup(t)
	ports := []string{load.FreePort(), load.FreePort(), load.FreePort()}
	host := ports[0] // public_url is replica a's HTTP listener
	public := "http://" + host
	cfg := staticConnectorConfig(t, public)
	var reps []*replica
	for i, name := range []string{"a", "b", "c"} {
		reps = append(reps, startReplica(t, bin, name, dsn, sealing, pdir, replicaOpts{config: cfg, http: ports[i]}))
	}
	httpURL := func(i int) string { return "http://" + ports[i] }
	reps[0].call(t, "POST", "/api/v1/servers", map[string]any{"name": "bi", "url": "http://bi.internal:8080/mcp"})

	const redirect = "http://127.0.0.1:1/callback"
	code, m := func() (int, map[string]any) {
		body := strings.NewReader(`{"client_name":"replicas","redirect_uris":["` + redirect + `"],"token_endpoint_auth_method":"none","grant_types":["authorization_code","refresh_token"]}`)
		resp, err := http.Post(httpURL(0)+"/oauth/register", "application/json", body)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var m map[string]any
		_ = json.NewDecoder(resp.Body).Decode(&m)
		return resp.StatusCode, m
	}()
	if code != http.StatusCreated {
		t.Fatalf("register at a: %d %v", code, m)
	}
	client := m["client_id"].(string)
	signIn := func() (string, string) {
		verifier, challenge := oauthtest.PKCE()
		q := url.Values{"response_type": {"code"}, "client_id": {client}, "state": {"st"}, "redirect_uri": {redirect},
			"code_challenge": {challenge}, "code_challenge_method": {"S256"}, "resource": {public + "/mcp/bi"}}
		b := oauthtest.NewBrowser()
		back, err := b.Authorize(httpURL(0)+"/oauth/authorize?"+q.Encode(), redirect)
		if err != nil {
			t.Fatalf("sign in through a: %v (visited %v)", err, b.Visited)
		}
		if back.Query().Get("code") == "" {
			t.Fatalf("no code: %s", back)
		}
		return back.Query().Get("code"), verifier
	}

	// Sign in through A, refresh through B, call through C.
	c1, v1 := signIn()
	st, tok := postForm(t, httpURL(0)+"/oauth/token", url.Values{"grant_type": {"authorization_code"}, "code": {c1}, "code_verifier": {v1},
		"client_id": {client}, "redirect_uri": {redirect}, "resource": {public + "/mcp/bi"}})
	if st != 200 {
		t.Fatalf("code at a: %d %v", st, tok)
	}
	st, tok2 := postForm(t, httpURL(1)+"/oauth/token", url.Values{"grant_type": {"refresh_token"}, "refresh_token": {tok["refresh_token"].(string)}, "client_id": {client}})
	if st != 200 {
		t.Fatalf("refresh at b: %d %v", st, tok2)
	}
	cc, err := load.Dial(reps[2].authz, 1)
	if err != nil {
		t.Fatal(err)
	}
	defer load.CloseAll(cc)
	resp, err := authv3.NewAuthorizationClient(cc[0]).Check(context.Background(), checkAt(host, tok2["access_token"].(string), "tool-at-c"))
	if err != nil || resp.GetOkResponse() == nil {
		t.Fatalf("tools/call at c with the refreshed token: %v %v", err, resp.GetDeniedResponse())
	}

	// One code, redeemed at B and C at once.
	c2, v2 := signIn()
	form := url.Values{"grant_type": {"authorization_code"}, "code": {c2}, "code_verifier": {v2}, "client_id": {client},
		"redirect_uri": {redirect}, "resource": {public + "/mcp/bi"}}
	var wg sync.WaitGroup
	status := make([]int, 2)
	bodies := make([]map[string]any, 2)
	start := make(chan struct{})
	for i := 0; i < 2; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			status[i], bodies[i] = postForm(t, httpURL(1+i)+"/oauth/token", form)
		}()
	}
	close(start)
	wg.Wait()
	wins, winner := 0, -1
	for i, s := range status {
		if s == 200 {
			wins++
			winner = i
		} else if s != 400 || bodies[i]["error"] != "invalid_grant" {
			t.Fatalf("the losing redemption at %s: %d %v", reps[1+i].name, s, bodies[i])
		}
	}
	if wins != 1 {
		t.Fatalf("%d of two simultaneous redemptions won: %v %v", wins, status, bodies)
	}
	// The replay revoked the grant: the winner's token is refused by all.
	at := bodies[winner]["access_token"].(string)
	for i, r := range reps {
		c, err := load.Dial(r.authz, 1)
		if err != nil {
			t.Fatal(err)
		}
		resp, err := authv3.NewAuthorizationClient(c[0]).Check(context.Background(), checkAt(host, at, fmt.Sprintf("replayed-%d", i)))
		load.CloseAll(c)
		if err != nil || resp.GetOkResponse() != nil || resp.GetDeniedResponse().GetStatus().GetCode() != 401 {
			t.Fatalf("replica %s after the code replay: %v %v", r.name, err, resp)
		}
	}
}
