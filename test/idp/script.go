package idp

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"os/exec"
	"testing"
	"time"
)

// The Go tests drive the official MCP SDK clients as Node scripts under
// test/ (test/script_io.mjs is their side of the protocol): one runner
// for all of them, beside Node and TestDir.

// RunScript runs the Node script test/<script> with arg, as JSON, for
// its argument, and talks with it one JSON object a line: each line is an
// event, answered with what answer returns, until the "done" line, which is
// decoded into result. The script's stdout carries handles: it is never
// logged.
func RunScript(t *testing.T, script string, arg, result any, answer func(event string, line []byte) any) {
	t.Helper()
	raw, _ := json.Marshal(arg)
	ctx, cancel := context.WithTimeout(t.Context(), 3*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, Node(t), script, string(raw))
	cmd.Dir = TestDir()
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	// On the way out (also after a failure): close stdin, stop the script
	// if it is still running, reap it.
	defer func() { _ = cmd.Wait() }()
	defer cancel()
	defer stdin.Close()

	done := false
	sc := bufio.NewScanner(stdout)
	sc.Buffer(make([]byte, 1<<20), 16<<20)
	for sc.Scan() {
		var msg struct {
			Event string `json:"event"`
		}
		if err := json.Unmarshal(sc.Bytes(), &msg); err != nil {
			t.Fatalf("%s printed a non-JSON line: %v\nstderr:\n%s", script, err, stderr.String())
		}
		if msg.Event == "done" {
			if err := json.Unmarshal(sc.Bytes(), result); err != nil {
				t.Fatalf("%s result: %v", script, err)
			}
			done = true
			continue
		}
		reply, _ := json.Marshal(answer(msg.Event, sc.Bytes()))
		if _, err := stdin.Write(append(reply, '\n')); err != nil {
			t.Fatalf("write to %s: %v", script, err)
		}
	}
	if !done {
		t.Fatalf("%s ended without a result\nstderr:\n%s", script, stderr.String())
	}
}
