package e2e

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"io"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/warden-mcp/warden/test/idp"
)

// nodeClient is one of test/e2e's Node scripts (the SDK clients), which
// talk to the test in JSON lines: events on stdout, answers on stdin.
type nodeClient struct {
	t      *testing.T
	stdin  io.WriteCloser
	lines  *bufio.Scanner
	stderr bytes.Buffer
}

// startNodeClient runs test/e2e/<script> with arg, JSON-encoded, as its
// argument. It is stopped when the test ends, and after 3 minutes.
func startNodeClient(t *testing.T, script string, arg any) *nodeClient {
	t.Helper()
	raw, err := json.Marshal(arg)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(t.Context(), 3*time.Minute)
	cmd := exec.CommandContext(ctx, idp.Node(t), filepath.Join("e2e", script), string(raw))
	cmd.Dir = idp.TestDir()
	c := &nodeClient{t: t}
	cmd.Stderr = &c.stderr
	c.stdin, _ = cmd.StdinPipe()
	stdout, _ := cmd.StdoutPipe()
	if err := cmd.Start(); err != nil {
		cancel()
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = c.stdin.Close()
		cancel()
		_ = cmd.Wait()
	})
	c.lines = bufio.NewScanner(stdout)
	c.lines.Buffer(make([]byte, 1<<20), 16<<20)
	return c
}

// next returns the script's next line; false once it has ended.
func (c *nodeClient) next() ([]byte, bool) {
	if !c.lines.Scan() {
		return nil, false
	}
	return c.lines.Bytes(), true
}

// reply answers the script's last event with v.
func (c *nodeClient) reply(v any) {
	c.t.Helper()
	raw, err := json.Marshal(v)
	if err != nil {
		c.t.Fatal(err)
	}
	if _, err := c.stdin.Write(append(raw, '\n')); err != nil {
		c.t.Fatal(err)
	}
}

// output is what the script wrote to stderr so far.
func (c *nodeClient) output() string { return c.stderr.String() }
