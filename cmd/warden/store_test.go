package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/warden-mcp/warden/internal/audit"
	"github.com/warden-mcp/warden/internal/config"
	"github.com/warden-mcp/warden/internal/keys"
	"github.com/warden-mcp/warden/internal/store"
	"github.com/warden-mcp/warden/internal/store/postgres"
	"github.com/warden-mcp/warden/internal/store/postgres/pgtest"
	"github.com/warden-mcp/warden/oauth/oauthtest"
)

const testRedirect = "http://127.0.0.1:7777/callback"

// oauthPost posts a form or JSON body to Warden's HTTP listener.
func oauthPost(t *testing.T, base, path, contentType, body string) map[string]any {
	t.Helper()
	resp, err := http.Post(base+path, contentType, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var m map[string]any
	raw, _ := io.ReadAll(resp.Body)
	if err := json.Unmarshal(raw, &m); err != nil || resp.StatusCode >= 300 {
		t.Fatalf("%s: %d %s", path, resp.StatusCode, raw)
	}
	return m
}

// fill drives a Badger-backed Warden through real operations so that its
// store holds every kind of record: a server and its audited change,
// service tokens, a dynamically registered client, a user's sign-in with
// consent, a code exchange and a refresh rotation, a pending sign-in
// (a live session), allowed and denied decisions, and a revocation.
func fill(t *testing.T, r *running, user, password string) (access, revoked string) {
	t.Helper()
	base := r.cfg.PublicURL
	if out, err := r.cli(t, "servers", "add", "bi", "--url", "http://127.0.0.1:3001/mcp", "--scope", "bi.read"); err != nil {
		t.Fatalf("servers add: %v %s", err, out)
	}
	mint := func(subject string) (string, string) {
		out, err := r.cli(t, "tokens", "create", "--subject", subject, "--server", "bi", "--scope", "bi.read", "--ttl", "1h", "-o", "json")
		if err != nil {
			t.Fatalf("tokens create: %v %s", err, out)
		}
		var tok struct {
			AccessToken string `json:"access_token"`
			GrantID     string `json:"grant_id"`
		}
		if err := json.Unmarshal([]byte(out), &tok); err != nil {
			t.Fatal(err)
		}
		return tok.AccessToken, tok.GrantID
	}
	revoked, _ = mint("retired-agent")
	if out, err := r.cli(t, "revoke", "--user", "retired-agent", "--reason", "retired"); err != nil || !strings.Contains(out, "revoked 1 grant") {
		t.Fatalf("revoke: %v %s", err, out)
	}

	reg := oauthPost(t, base, "/oauth/register", "application/json",
		`{"client_name":"Migrating Client","redirect_uris":["`+testRedirect+`"],"token_endpoint_auth_method":"none","grant_types":["authorization_code","refresh_token"]}`)
	client := reg["client_id"].(string)
	verifier, challenge := oauthtest.PKCE()
	q := url.Values{"response_type": {"code"}, "client_id": {client}, "state": {"st"}, "redirect_uri": {testRedirect},
		"code_challenge": {challenge}, "code_challenge_method": {"S256"}, "resource": {r.cfg.ResourceURL("bi")}, "scope": {"bi.read offline_access"}}
	b := oauthtest.NewBrowser()
	b.Username, b.Password = user, password
	back, err := b.Authorize(base+"/oauth/authorize?"+q.Encode(), testRedirect)
	if err != nil {
		t.Fatalf("authorize: %v", err)
	}
	tok := oauthPost(t, base, "/oauth/token", "application/x-www-form-urlencoded", url.Values{
		"grant_type": {"authorization_code"}, "client_id": {client}, "code": {back.Query().Get("code")},
		"code_verifier": {verifier}, "redirect_uri": {testRedirect}, "resource": {r.cfg.ResourceURL("bi")},
	}.Encode())
	tok = oauthPost(t, base, "/oauth/token", "application/x-www-form-urlencoded", url.Values{
		"grant_type": {"refresh_token"}, "client_id": {client}, "refresh_token": {tok["refresh_token"].(string)},
	}.Encode())
	access = tok["access_token"].(string)

	// A sign-in left at the login form: its session is live.
	_, challenge = oauthtest.PKCE()
	q.Set("code_challenge", challenge)
	resp, err := http.Get(base + "/oauth/authorize?" + q.Encode())
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()

	if resp := check(t, r.cfg.Listen.Authz, access, "bi", listTools); resp.GetOkResponse() == nil {
		t.Fatalf("user token denied: %v", resp.GetDeniedResponse())
	}
	if d := check(t, r.cfg.Listen.Authz, revoked, "bi", listTools).GetDeniedResponse(); d.GetStatus().GetCode() != 401 {
		t.Fatalf("revoked token: %v", d)
	}
	// Decisions are audited asynchronously: wait until the deny is stored.
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		out, _ := r.cli(t, "audit", "tail", "-n", "5")
		if strings.Contains(out, `decision="deny"`) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("deny decision not audited:\n%s", out)
		}
	}
	return access, revoked
}

func TestStoreMigrateBadgerToPostgres(t *testing.T) {
	dsn, _ := pgtest.Schema(t)
	dir := t.TempDir()
	public := func(c *config.Config) {
		c.PublicURL = "http://" + c.Listen.HTTP
		// check() sends the default public_url's Host.
		c.Authz.AllowedHosts = []string{"localhost:10000"}
	}
	r := startServe(t, dir, public)
	// The static connector's generated trial user signs in.
	boot, err := os.ReadFile(filepath.Join(dir, "static-admin-password"))
	if err != nil {
		t.Fatal(err)
	}
	m := regexp.MustCompile(`user: +(\S+)\n +password: +(\S+)`).FindStringSubmatch(string(boot))
	if m == nil {
		t.Fatalf("no trial user in the password file:\n%s", boot)
	}
	user := m[1]
	access, revoked := fill(t, r, m[1], m[2])
	r.stop(t)
	// Upstream credentials: a provider and accounts (sealed secrets are
	// opaque bytes to the copy).
	{
		b, err := store.OpenBadger(filepath.Join(dir, "store"), store.BadgerOptions{})
		must(t, err)
		sealed := store.Sealed{KeyID: "k", Nonce: []byte{1, 2}, Ciphertext: []byte{3, 4}}
		must(t, b.CreateProvider(context.Background(), store.Provider{Name: "gh", Kind: store.ProviderOAuth, ClientID: "c", ClientSecret: &sealed,
			AuthorizeURL: "https://gh.example/a", TokenURL: "https://gh.example/t", CreatedAt: time.Now().UTC()}))
		for _, sub := range []string{user, "zed"} {
			must(t, b.PutAccount(context.Background(), store.Account{Subject: sub, Provider: "gh", Secret: sealed, ConnectedAt: time.Now().UTC().Truncate(time.Microsecond)}))
		}
		must(t, b.Close())
	}
	// A tool pin whose listed definition changed since its approval: the
	// copy must keep it changed (re-pinning would approve the change).
	func() {
		b, err := store.OpenBadger(filepath.Join(dir, "store"), store.BadgerOptions{})
		must(t, err)
		defer b.Close()
		now := time.Now().UTC()
		must(t, b.CreateToolPin(context.Background(), store.ToolPin{Server: "bi", Tool: "run_sql", Approved: "sha256:aa", ApprovedDefinition: []byte(`{"name":"run_sql"}`),
			Seen: "sha256:bb", SeenDefinition: []byte(`{"description":"x","name":"run_sql"}`), FirstSeen: now, SeenAt: now, ApprovedAt: now, ApprovedBy: "pinning:first-seen"}))
	}()

	// A pruned trail: the events up to a signed checkpoint are gone from
	// the source, so the target verifies (trusted) only if the
	// checkpoint was copied with the events.
	signer, err := keys.NewEphemeral()
	must(t, err)
	var pruned audit.PruneResult
	func() {
		// Small audit segments, so that whole files fall under the bound.
		b, err := store.OpenBadger(filepath.Join(dir, "store"), store.BadgerOptions{AuditSegmentSize: 1 << 10})
		must(t, err)
		defer b.Close()
		tr, err := audit.Open(context.Background(), b, audit.Options{})
		must(t, err)
		defer tr.Close(context.Background())
		for i := range 20 {
			must(t, tr.RecordSync(context.Background(), store.AuditEvent{Type: "admin_change", Actor: "test", Reason: fmt.Sprintf("filler %d", i)}))
		}
		pruned, err = audit.Prune(context.Background(), b, tr, signer, time.Now().Add(time.Hour))
		must(t, err)
		if pruned.Deleted == 0 || pruned.Checkpoint.Seq == 0 {
			t.Fatalf("prune before the migration: %+v", pruned)
		}
	}()

	migrate := func() (string, error) {
		cmd := newRootCmd()
		var out bytes.Buffer
		cmd.SetOut(&out)
		cmd.SetErr(&out)
		cmd.SetArgs([]string{"store", "migrate", "--from", filepath.Join(dir, "store"), "--to", dsn})
		err := cmd.ExecuteContext(context.Background())
		return out.String(), err
	}
	out, err := migrate()
	if err != nil {
		t.Fatalf("migrate: %v\n%s", err, out)
	}
	t.Logf("warden store migrate:\n%s", out)
	for _, want := range []string{"copied ", "1 audit checkpoints", "audit chain intact on PostgreSQL", "records compared: identical"} {
		if !strings.Contains(out, want) {
			t.Errorf("migrate output lacks %q:\n%s", want, out)
		}
	}
	{
		dst, err := postgres.Open(context.Background(), postgres.Options{DSN: dsn})
		must(t, err)
		pub, err := signer.PublicSet()
		must(t, err)
		r, err := audit.VerifyTrusted(context.Background(), dst, pub)
		dst.Close()
		if err != nil || !r.OK() || r.Anchor.Kind != "checkpoint" || r.Anchor.Seq != pruned.Checkpoint.Seq {
			t.Fatalf("trusted verification of the migrated, pruned trail: %+v %v", r, err)
		}
	}

	// Compare independently of the command: every record of the source,
	// read back through the Store interface of the target.
	ctx := context.Background()
	src, err := store.OpenBadger(filepath.Join(dir, "store"), store.BadgerOptions{})
	if err != nil {
		t.Fatal(err)
	}
	dst, err := postgres.Open(ctx, postgres.Options{DSN: dsn})
	if err != nil {
		t.Fatal(err)
	}
	var n store.Counts
	err = src.Walk(ctx, func(rec store.Record) error {
		n.Add(rec)
		var diff string
		switch {
		case rec.Client != nil:
			got, err := dst.GetClient(ctx, rec.Client.ID)
			must(t, err)
			diff = cmp.Diff(*rec.Client, got)
		case rec.Grant != nil:
			got, err := dst.GetGrant(ctx, rec.Grant.ID)
			must(t, err)
			diff = cmp.Diff(*rec.Grant, got)
		case rec.Handle != nil:
			got, err := dst.GetHandle(ctx, rec.Handle.Digest)
			must(t, err)
			diff = cmp.Diff(*rec.Handle, got)
		case rec.Server != nil:
			got, err := dst.GetServer(ctx, rec.Server.Name)
			must(t, err)
			diff = cmp.Diff(*rec.Server, got)
		case rec.Session != nil:
			got, err := dst.GetSession(ctx, rec.Session.Kind, rec.Session.ID)
			must(t, err)
			diff = cmp.Diff(rec.Session.Value, got)
		case rec.Consent != nil:
			got, err := dst.GetConsent(ctx, rec.Consent.Subject, rec.Consent.ClientID)
			must(t, err)
			diff = cmp.Diff(*rec.Consent, got)
		case rec.Provider != nil:
			got, err := dst.GetProvider(ctx, rec.Provider.Name)
			must(t, err)
			diff = cmp.Diff(*rec.Provider, got)
		case rec.Account != nil:
			got, err := dst.GetAccount(ctx, rec.Account.Subject, rec.Account.Provider)
			must(t, err)
			diff = cmp.Diff(*rec.Account, got)
		case rec.ToolPin != nil:
			got, err := dst.GetToolPin(ctx, rec.ToolPin.Server, rec.ToolPin.Tool)
			must(t, err)
			diff = cmp.Diff(*rec.ToolPin, got)
		}
		if diff != "" {
			t.Errorf("record differs on PostgreSQL (-badger +postgres):\n%s", diff)
		}
		return nil
	})
	must(t, err)
	// Every kind was exercised: two service grants and the user's, their
	// handles (access, rotated refresh, the new pair, the code), the DCR
	// client, the consent, the pending sign-in.
	if n.Clients < 1 || n.Grants < 2 || n.Handles < 4 || n.Servers != 1 || n.Sessions < 1 || n.Consents != 1 || n.Providers != 1 || n.Accounts != 2 || n.ToolPins != 1 {
		t.Fatalf("the filled store lacks a kind of record: %s", n)
	}
	pgN, err := store.Count(ctx, dst)
	must(t, err)
	if pgN != n {
		t.Fatalf("PostgreSQL holds %s, Badger %s", pgN, n)
	}
	srcTrail, err := src.ListAudit(ctx, 0, 0)
	must(t, err)
	dstTrail, err := dst.ListAudit(ctx, 0, 0)
	must(t, err)
	// Pruned above: the trail starts after seq 1, at the checkpoint.
	if len(srcTrail) < 2 || srcTrail[0].Seq <= 1 {
		t.Fatalf("the source trail is not a pruned one: %d events from seq %d", len(srcTrail), srcTrail[0].Seq)
	}
	if d := cmp.Diff(srcTrail, dstTrail); d != "" {
		t.Fatalf("audit trail differs (-badger +postgres):\n%s", d)
	}
	rep, err := audit.Verify(ctx, dst)
	if err != nil || !rep.OK() || rep.Events != uint64(len(srcTrail)) {
		t.Fatalf("verify on PostgreSQL: %+v %v", rep, err)
	}
	must(t, src.Close())

	// A second run refuses and changes nothing.
	out, err = migrate()
	if err == nil || !strings.Contains(err.Error(), "not empty") {
		t.Fatalf("second migrate: %v\n%s", err, out)
	}
	if again, _ := dst.ListAudit(ctx, 0, 0); len(again) != len(dstTrail) {
		t.Fatalf("second migrate changed the trail: %d events, was %d", len(again), len(dstTrail))
	}
	must(t, dst.Close())

	// Warden on the migrated PostgreSQL store, with the same data dir for
	// its keys: the user's token still works, the revoked one is still
	// refused, the refreshed client goes on, and the chain continues.
	r2 := startServe(t, dir, func(c *config.Config) {
		c.Listen = r.cfg.Listen // the same public_url, so the same resource URLs
		public(c)
		c.Store = config.Store{Backend: config.BackendPostgres, Postgres: config.Postgres{DSN: dsn}}
	})
	if resp := check(t, r2.cfg.Listen.Authz, access, "bi", listTools); resp.GetOkResponse() == nil {
		t.Fatalf("migrated token denied: %v", resp.GetDeniedResponse())
	}
	// On PostgreSQL serve runs as a replica: its lease is a readiness
	// check and a metric.
	replicaStatusServed(t, r2.cfg.Listen.Admin)
	if d := check(t, r2.cfg.Listen.Authz, revoked, "bi", listTools).GetDeniedResponse(); d.GetStatus().GetCode() != 401 {
		t.Fatalf("revoked token after migration: %v", d)
	}
	if out, err := r2.cli(t, "revoke", "--user", user, "--reason", "after migration"); err != nil || !strings.Contains(out, "revoked 1 grant") {
		t.Fatalf("revoke on PostgreSQL: %v %s", err, out)
	}
	if d := check(t, r2.cfg.Listen.Authz, access, "bi", listTools).GetDeniedResponse(); d.GetStatus().GetCode() != 401 {
		t.Fatalf("token revoked on PostgreSQL: %v", d)
	}
	r2.stop(t)
	dst, err = postgres.Open(ctx, postgres.Options{DSN: dsn})
	must(t, err)
	defer dst.Close()
	rep, err = audit.Verify(ctx, dst)
	if err != nil || !rep.OK() || rep.Events <= uint64(len(srcTrail)) {
		t.Fatalf("chain on PostgreSQL after serving: %+v %v", rep, err)
	}
}

func TestStoreMigrateRefusesBadInput(t *testing.T) {
	run := func(args ...string) error {
		cmd := newRootCmd()
		cmd.SetOut(io.Discard)
		cmd.SetErr(io.Discard)
		cmd.SetArgs(append([]string{"store", "migrate"}, args...))
		return cmd.ExecuteContext(context.Background())
	}
	t.Setenv("WARDEN_STORE_POSTGRES_DSN", "")
	if err := run("--from", t.TempDir()); err == nil || !strings.Contains(err.Error(), "required") {
		t.Fatalf("no target: %v", err)
	}
	if err := run("--from", t.TempDir(), "--to", "postgres://127.0.0.1:1/x"); err == nil || !strings.Contains(err.Error(), "not a Badger store directory") {
		t.Fatalf("empty source dir: %v", err)
	}
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

// replicaStatusServed checks that the admin listener at addr reports the
// replica's live lease on /readyz and in /metrics.
func replicaStatusServed(t *testing.T, addr string) {
	t.Helper()
	resp, err := http.Get("http://" + addr + "/readyz")
	if err != nil {
		t.Fatal(err)
	}
	var ready struct {
		Checks map[string]string `json:"checks"`
	}
	err = json.NewDecoder(resp.Body).Decode(&ready)
	resp.Body.Close()
	if err != nil || ready.Checks["replica"] != "ok" {
		t.Fatalf("/readyz replica check: %v %v", ready.Checks, err)
	}
	resp, err = http.Get("http://" + addr + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	raw, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil || !strings.Contains(string(raw), "\nwarden_replica_lease_live 1\n") || !strings.Contains(string(raw), "\nwarden_replica_listening 1\n") {
		t.Fatalf("/metrics has no live replica lease (%v):\n%s", err, grepLines(string(raw), "warden_replica_"))
	}
}

func grepLines(s, sub string) string {
	var out []string
	for _, l := range strings.Split(s, "\n") {
		if strings.Contains(l, sub) {
			out = append(out, l)
		}
	}
	return strings.Join(out, "\n")
}
