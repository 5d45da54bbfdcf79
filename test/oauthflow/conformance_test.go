package oauthflow

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"io/fs"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/warden-mcp/warden/oauth"
	"github.com/warden-mcp/warden/oauth/oauthtest"
	"github.com/warden-mcp/warden/test/idp"
)

// TestMCPConformanceAuthorization runs the official MCP conformance
// suite's `authorization` command (authorization-server-metadata-endpoint
// and authorization-code-grant) against Warden, with Node 22 from the npm
// package node@22. The suite prints an authorization URL for a person to
// open; the headless browser plays that person (sign-in at oidc-provider,
// Warden's consent page) and finally requests the suite's callback.
func TestMCPConformanceAuthorization(t *testing.T) {
	node := idp.Node(t)
	cli := filepath.Join(idp.NodeModules(t), "@modelcontextprotocol", "conformance", "dist", "index.js")
	port := freePort(t)
	callback := fmt.Sprintf("http://127.0.0.1:%d/callback", port)
	h := start(t, 0, func(o *oauth.Options) {
		// The suite needs a pre-registered client (--client-id); a public
		// one, since the suite prefers token_endpoint_auth_method none.
		o.Clients = []oauth.Client{{ID: "mcp-conformance", Name: "MCP conformance suite", RedirectURIs: []string{callback}}}
	})
	outDir := t.TempDir()
	cmd := exec.Command(node, cli, "authorization", "--url", h.Server.Issuer(), "--client-id", "mcp-conformance",
		"--resource", h.ResourceURL("files"), "--port", fmt.Sprint(port), "-o", outDir)
	cmd.Dir = idp.TestDir()
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	var output strings.Builder
	authURL := make(chan string, 1)
	done := make(chan struct{})
	go func() {
		defer close(done)
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			line := sc.Text()
			mu.Lock()
			output.WriteString(line + "\n")
			mu.Unlock()
			if strings.HasPrefix(line, h.Server.Issuer()+"/oauth/authorize?") {
				authURL <- line
			}
		}
	}()
	log := func() string {
		mu.Lock()
		defer mu.Unlock()
		return output.String() + "\nstderr:\n" + stderr.String()
	}
	select {
	case u := <-authURL:
		b := oauthtest.NewBrowser()
		back, err := b.Authorize(u, callback)
		if err != nil {
			_ = cmd.Process.Kill()
			t.Fatalf("browser: %v\n%s", err, log())
		}
		// Deliver the authorization response to the suite's callback server.
		resp, err := http.Get(back.String())
		if err != nil {
			_ = cmd.Process.Kill()
			t.Fatalf("suite callback: %v\n%s", err, log())
		}
		resp.Body.Close()
	case <-time.After(60 * time.Second):
		_ = cmd.Process.Kill()
		t.Fatalf("the suite printed no authorization URL\n%s", log())
	}
	<-done
	exitErr := cmd.Wait()

	// Every check the suite recorded must be a SUCCESS (a WARNING would be
	// reported as well, and is not accepted either).
	var checks []map[string]any
	_ = filepath.WalkDir(outDir, func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() || filepath.Base(p) != "checks.json" {
			return err
		}
		raw, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		var cs []map[string]any
		if err := json.Unmarshal(raw, &cs); err != nil {
			return fmt.Errorf("%s: %w", p, err)
		}
		checks = append(checks, cs...)
		return nil
	})
	ids := map[string]string{}
	for _, c := range checks {
		ids[fmt.Sprint(c["id"])] = fmt.Sprint(c["status"])
		if c["status"] != "SUCCESS" {
			t.Errorf("conformance check %v: %v %v", c["id"], c["status"], c["errorMessage"])
		}
	}
	for _, want := range []string{"authorization-server-metadata", "authorization-server-metadata-cimd", "authorization-code-grant"} {
		if ids[want] != "SUCCESS" {
			t.Errorf("conformance check %s: %q", want, ids[want])
		}
	}
	if exitErr != nil || t.Failed() {
		t.Fatalf("conformance exit: %v\nchecks: %v\n%s", exitErr, ids, log())
	}
	t.Logf("conformance checks: %v", ids)
}

func freePort(t *testing.T) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}
