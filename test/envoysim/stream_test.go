package envoysim

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
)

// readEvent reads one SSE event (up to the blank line) from r.
func readEvent(t *testing.T, r *bufio.Reader) string {
	t.Helper()
	var b strings.Builder
	for {
		line, err := r.ReadString('\n')
		if err != nil {
			t.Fatalf("reading an event: %v (got %q)", err, b.String())
		}
		if line == "\n" {
			return b.String()
		}
		b.WriteString(line)
	}
}

// sseUpstream answers with events, sending event i+1 only after the test
// released it: the test can only receive event i before release if the
// proxy forwarded it unbuffered.
func sseUpstream(u *upstream, events []string, release <-chan struct{}, gotBody chan<- []byte) {
	u.setHandler(func(w http.ResponseWriter, r *http.Request) {
		if gotBody != nil {
			b, _ := io.ReadAll(r.Body)
			gotBody <- b
		}
		w.Header().Set("Content-Type", "text/event-stream")
		w.Header().Set("Mcp-Session-Id", "session-from-upstream")
		w.WriteHeader(http.StatusOK)
		for i, e := range events {
			if i > 0 {
				select {
				case <-release:
				case <-r.Context().Done():
					return
				}
			}
			_, _ = fmt.Fprintf(w, "id: %d\ndata: %s\n\n", i+1, e)
			w.(http.Flusher).Flush()
		}
	})
}

// A GET text/event-stream response streams event by event while the
// upstream is still running.
func TestSSEGetStreamsEventByEvent(t *testing.T) {
	f := newFixture(t, nil)
	release := make(chan struct{})
	events := []string{"one", "two", "three"}
	sseUpstream(f.alpha, events, release, nil)

	ctx, cancel := context.WithTimeout(t.Context(), 20*time.Second)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, "GET", f.proxy.URL()+"/mcp/alpha", nil)
	req.Header.Set("Accept", "text/event-stream")
	req.Header.Set("Mcp-Session-Id", "s-1")
	resp, err := client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = resp.Body.Close() }()
	if resp.StatusCode != 200 || resp.Header.Get("Content-Type") != "text/event-stream" {
		t.Fatalf("status %d content-type %q", resp.StatusCode, resp.Header.Get("Content-Type"))
	}
	br := bufio.NewReader(resp.Body)
	for i, want := range events {
		got := readEvent(t, br)
		if got != fmt.Sprintf("id: %d\ndata: %s\n", i+1, want) {
			t.Fatalf("event %d = %q", i+1, got)
		}
		// Only now may the upstream produce the next event.
		if i < len(events)-1 {
			select {
			case release <- struct{}{}:
			case <-ctx.Done():
				t.Fatal("the upstream never asked for the next event")
			}
		}
	}
	if rest, _ := io.ReadAll(br); len(rest) != 0 {
		t.Errorf("trailing data %q", rest)
	}
}

// A POST (body buffered for ext_authz) whose response is
// text/event-stream streams; Mcp-Session-Id and MCP-Protocol-Version pass
// both ways.
func TestPostWithSSEResponse(t *testing.T) {
	f := newFixture(t, nil)
	release := make(chan struct{})
	gotBody := make(chan []byte, 1)
	sseUpstream(f.alpha, []string{`{"progress":1}`, `{"result":"done"}`}, release, gotBody)

	body := []byte(`{"jsonrpc":"2.0","id":3,"method":"tools/call","params":{"name":"slow"}}`)
	ctx, cancel := context.WithTimeout(t.Context(), 20*time.Second)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, "POST", f.proxy.URL()+"/mcp/alpha", bytes.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Accept", "application/json, text/event-stream")
	req.Header.Set("Mcp-Session-Id", "s-42")
	req.Header.Set("MCP-Protocol-Version", "2025-06-18")
	resp, err := client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = resp.Body.Close() }()
	if got := <-gotBody; !bytes.Equal(got, body) {
		t.Errorf("upstream body %q", got)
	}
	if got := resp.Header.Get("Mcp-Session-Id"); got != "session-from-upstream" {
		t.Errorf("response Mcp-Session-Id %q", got)
	}
	br := bufio.NewReader(resp.Body)
	if got := readEvent(t, br); !strings.Contains(got, `{"progress":1}`) {
		t.Fatalf("first event %q", got)
	}
	release <- struct{}{}
	if got := readEvent(t, br); !strings.Contains(got, `{"result":"done"}`) {
		t.Fatalf("second event %q", got)
	}

	up := f.alpha.last(t)
	if up.Header.Get("Mcp-Session-Id") != "s-42" || up.Header.Get("Mcp-Protocol-Version") != "2025-06-18" {
		t.Errorf("upstream MCP headers: session %q version %q", up.Header.Get("Mcp-Session-Id"), up.Header.Get("Mcp-Protocol-Version"))
	}
	if !bytes.Equal(f.authz.last(t).GetAttributes().GetRequest().GetHttp().GetRawBody(), body) {
		t.Error("the check did not carry the JSON-RPC body")
	}
}

// On a route without body buffering the request body streams to the
// upstream while its response streams back (both directions at once).
func TestBidirectionalStreaming(t *testing.T) {
	f := newFixture(t, func(r *resources) {
		prependRoutes(r, &routev3.Route{
			Match:                &routev3.RouteMatch{PathSpecifier: &routev3.RouteMatch_Prefix{Prefix: "/stream"}},
			Action:               action("mcp_alpha", nil),
			TypedPerFilterConfig: authzDisabled(t),
		})
	})
	// The upstream echoes each line it reads as an event, immediately.
	f.alpha.setHandler(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/event-stream")
		w.WriteHeader(200)
		w.(http.Flusher).Flush()
		sc := bufio.NewScanner(r.Body)
		for sc.Scan() {
			_, _ = fmt.Fprintf(w, "data: echo %s\n\n", sc.Text())
			w.(http.Flusher).Flush()
		}
	})

	ctx, cancel := context.WithTimeout(t.Context(), 20*time.Second)
	defer cancel()
	pr, pw := io.Pipe()
	// A stuck proxy must fail the test, not hang it on a pipe write.
	stop := context.AfterFunc(ctx, func() { _ = pw.CloseWithError(ctx.Err()) })
	defer stop()
	req, _ := http.NewRequestWithContext(ctx, "POST", f.proxy.URL()+"/stream", pr)
	req.ContentLength = -1
	respCh := make(chan *http.Response, 1)
	errCh := make(chan error, 1)
	go func() {
		resp, err := client.Do(req)
		if err != nil {
			errCh <- err
			return
		}
		respCh <- resp
	}()
	if _, err := io.WriteString(pw, "first\n"); err != nil {
		t.Fatal(err)
	}
	var resp *http.Response
	select {
	case resp = <-respCh:
	case err := <-errCh:
		t.Fatal(err)
	}
	defer func() { _ = resp.Body.Close() }()
	br := bufio.NewReader(resp.Body)
	// The echo of the first line arrives while the request is still open.
	if got := readEvent(t, br); got != "data: echo first\n" {
		t.Fatalf("first echo %q", got)
	}
	if _, err := io.WriteString(pw, "second\n"); err != nil {
		t.Fatal(err)
	}
	if got := readEvent(t, br); got != "data: echo second\n" {
		t.Fatalf("second echo %q", got)
	}
	_ = pw.Close()
	if rest, _ := io.ReadAll(br); len(rest) != 0 {
		t.Errorf("trailing data %q", rest)
	}
}

// Session headers and the DELETE that ends a session pass through as is.
func TestSessionDeletePassthrough(t *testing.T) {
	f := newFixture(t, nil)
	f.alpha.setHandler(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Mcp-Session-Id", r.Header.Get("Mcp-Session-Id"))
		w.WriteHeader(http.StatusNoContent)
	})
	code, hdr, body := do(t, "DELETE", f.proxy.URL()+"/mcp/alpha", nil, map[string][]string{
		"Mcp-Session-Id":       {"s-9"},
		"MCP-Protocol-Version": {"2025-06-18"},
	})
	expectStatus(t, code, 204, body)
	if hdr.Get("Mcp-Session-Id") != "s-9" {
		t.Errorf("response Mcp-Session-Id %q", hdr.Get("Mcp-Session-Id"))
	}
	up := f.alpha.last(t)
	if up.Method != "DELETE" || up.Header.Get("Mcp-Protocol-Version") != "2025-06-18" {
		t.Errorf("upstream %s version %q", up.Method, up.Header.Get("Mcp-Protocol-Version"))
	}
	hr := f.authz.last(t).GetAttributes().GetRequest().GetHttp()
	if hr.GetMethod() != "DELETE" || hr.GetHeaders()["mcp-session-id"] != "s-9" {
		t.Errorf("check: method %q session %q", hr.GetMethod(), hr.GetHeaders()["mcp-session-id"])
	}
}
