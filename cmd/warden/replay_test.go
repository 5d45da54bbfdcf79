package main

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/warden-mcp/warden/internal/config"
	"github.com/warden-mcp/warden/policy"
)

// warden policy replay, run by an auditor against a running Warden: the
// unchanged policy changes nothing, a candidate that refuses tools/list
// lists exactly the allowed tools/list decisions, and a candidate that
// does not compile is refused with the compiler's message.
func TestPolicyReplayCLI(t *testing.T) {
	const auditorToken = "auditor-token-0123456789abcdef0123456789"
	sum := sha256.Sum256([]byte(auditorToken))
	r := startServe(t, t.TempDir(), func(c *config.Config) {
		c.Admin.Tokens = []config.AdminToken{{Name: "sec", Role: "auditor", SHA256: hex.EncodeToString(sum[:])}}
	})
	if out, err := r.cli(t, "servers", "add", "bi", "--url", "http://127.0.0.1:3001/mcp"); err != nil {
		t.Fatalf("servers add: %v %s", err, out)
	}
	tok := serviceToken(t, r, "etl-agent", "bi")
	for i := 0; i < 2; i++ {
		if resp := check(t, r.cfg.Listen.Authz, tok, "bi", listTools); resp.GetOkResponse() == nil {
			t.Fatalf("denied: %v", resp)
		}
	}
	// Decided before policy (no token): not replayed.
	check(t, r.cfg.Listen.Authz, "", "bi", listTools)

	def, _ := fs.ReadFile(policy.DefaultFS(), "default.rego")
	write := func(src string) string {
		dir := t.TempDir()
		if err := os.WriteFile(filepath.Join(dir, "authz.rego"), []byte(src), 0o644); err != nil {
			t.Fatal(err)
		}
		// Tests and hidden files are not part of the candidate.
		_ = os.WriteFile(filepath.Join(dir, "authz_test.rego"), []byte("not rego"), 0o644)
		_ = os.WriteFile(filepath.Join(dir, ".swp.rego"), []byte("not rego"), 0o644)
		return dir
	}
	replayCLI := func(dir string, extra ...string) (string, error) {
		return r.cli(t, append([]string{"policy", "replay", "--policy", dir, "--since", "1h", "--admin-token", auditorToken}, extra...)...)
	}
	out, err := replayCLI(write(string(def)))
	if err != nil || !strings.Contains(out, "2 decisions evaluated: 0 allow -> deny, 0 deny -> allow") {
		t.Fatalf("unchanged policy:\n%s %v", out, err)
	}
	refuse := string(def) + "\ndeny contains \"tools/list is closed\" if input.mcp.method == \"tools/list\"\n"
	out, err = replayCLI(write(refuse), "--server", "bi")
	if err != nil || !strings.Contains(out, "2 decisions evaluated: 2 allow -> deny, 0 deny -> allow") ||
		strings.Count(out, "allow -> deny  etl-agent") != 2 || !strings.Contains(out, "tools/list is closed") {
		t.Fatalf("refusing candidate:\n%s %v", out, err)
	}
	if out, _ := replayCLI(write(refuse), "--server", "other"); !strings.Contains(out, "0 decisions evaluated") {
		t.Fatalf("server filter ignored:\n%s", out)
	}
	if out, _ := replayCLI(write(refuse), "--limit", "1"); !strings.Contains(out, "1 decisions evaluated: 1 allow -> deny") {
		t.Fatalf("limit ignored:\n%s", out)
	}
	out, err = replayCLI(write("package warden.authz\n\ndecision := {\"allow\": true\n"))
	if err == nil || !strings.Contains(out+err.Error(), "authz.rego:") {
		t.Fatalf("a candidate that does not compile: %v\n%s", err, out)
	}
}

// serviceToken mints a service token for subject on server through the CLI.
func serviceToken(t *testing.T, r *running, subject, server string) string {
	t.Helper()
	out, err := r.cli(t, "tokens", "create", "--subject", subject, "--server", server, "-o", "json")
	if err != nil {
		t.Fatalf("tokens create: %v %s", err, out)
	}
	var tok struct {
		AccessToken string `json:"access_token"`
	}
	if err := json.Unmarshal([]byte(out), &tok); err != nil || tok.AccessToken == "" {
		t.Fatalf("tokens create: %q %v", out, err)
	}
	return tok.AccessToken
}
