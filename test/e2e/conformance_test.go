package e2e

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io/fs"
	"log/slog"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/warden-mcp/warden/test/idp"
)

// conformanceResult is what one run of `conformance server` recorded:
// the status of every check, keyed "scenario/check-id".
type conformanceResult struct {
	status  map[string]string
	message map[string]string
}

// scenarios is the number of scenarios that recorded checks.
func (r conformanceResult) scenarios() int {
	seen := map[string]bool{}
	for k := range r.status {
		seen[strings.SplitN(k, "/", 2)[0]] = true
	}
	return len(seen)
}

// fullPasses is the number of scenarios none of whose checks failed.
func (r conformanceResult) fullPasses() int {
	failed := map[string]bool{}
	for k, s := range r.status {
		sc := strings.SplitN(k, "/", 2)[0]
		failed[sc] = failed[sc] || s == "FAILURE"
	}
	n := 0
	for _, f := range failed {
		if !f {
			n++
		}
	}
	return n
}

func (r conformanceResult) count(status string) int {
	n := 0
	for _, s := range r.status {
		if s == status {
			n++
		}
	}
	return n
}

// runConformance runs the MCP conformance suite's server scenarios against
// server-everything directly and through the proxy with Warden in front
// (the proxy adds the pre-issued handle), and requires the same outcome
// for every check: Warden must not break the protocol.
func (h *harness) runConformance(t *testing.T) {
	h.compareConformance(t, h.everythingURL, h.conformance.URL()+"/mcp/everything")
}

// compareConformance runs the server scenarios (args select them) against
// a server directly and through Warden, and compares them check by check.
func (h *harness) compareConformance(t *testing.T, directURL, throughURL string, args ...string) {
	direct := conformance(t, directURL, args...)
	// The through run must go through the response path too: envoysim's
	// ext_proc filter and Warden's processor both count its messages.
	streams0, messages0, failures0 := h.conformance.ExtProc()
	warden0 := h.extProcMessages(t)
	h.conformanceLog.take()
	through := conformance(t, throughURL, args...)
	streams, messages, failures := h.conformance.ExtProc()
	streams, messages, failures = streams-streams0, messages-messages0, failures-failures0
	warden := h.extProcMessages(t) - warden0
	t.Logf("response path during the run through Warden: envoysim opened %d ext_proc streams, %d messages answered, %d failed exchanges; Warden counted %.0f ext_proc messages",
		streams, messages, failures, warden)
	if streams == 0 || messages == 0 || warden == 0 {
		t.Errorf("the run through Warden did not go through ext_proc (streams %d, messages %d, Warden's messages %.0f)", streams, messages, warden)
	}
	if failures != 0 {
		// Reported, not failed on: a client that closes a stream before
		// its end makes the exchange fail on envoysim's side too.
		t.Logf("failed ext_proc exchanges: %s", strings.Join(h.conformanceLog.take(), "; "))
	}
	for _, line := range perScenario(direct, through) {
		t.Log(line)
	}
	t.Logf("conformance %v against %s directly: %d passed, %d failed (%d checks, %d scenarios)",
		args, directURL, direct.count("SUCCESS"), direct.count("FAILURE"), len(direct.status), direct.scenarios())
	t.Logf("conformance %v through envoysim + Warden: %d passed, %d failed (%d checks, %d scenarios)",
		args, through.count("SUCCESS"), through.count("FAILURE"), len(through.status), through.scenarios())
	t.Logf("scenarios passing in full: %d directly, %d through Warden", direct.fullPasses(), through.fullPasses())

	if direct.count("SUCCESS") == 0 {
		t.Fatal("no conformance check passed against the server itself: the suite did not run")
	}
	keys := map[string]bool{}
	for k := range direct.status {
		keys[k] = true
	}
	for k := range through.status {
		keys[k] = true
	}
	// Warden must not break what the server does right; it may add what
	// the server lacks (DNS rebinding protection: Warden checks Host and
	// Origin whether or not the server does).
	var diffs, improved []string
	for k := range keys {
		if direct.status[k] == through.status[k] {
			continue
		}
		d := fmt.Sprintf("%s: direct %s %q, through Warden %s %q",
			k, orNone(direct.status[k]), direct.message[k], orNone(through.status[k]), through.message[k])
		if direct.status[k] == "FAILURE" && through.status[k] == "SUCCESS" {
			improved = append(improved, d)
			continue
		}
		diffs = append(diffs, d)
	}
	sort.Strings(diffs)
	sort.Strings(improved)
	if len(diffs) > 0 {
		t.Errorf("Warden changed the conformance outcome (%d passed directly, %d through Warden):\n%s",
			direct.count("SUCCESS"), through.count("SUCCESS"), strings.Join(diffs, "\n"))
	}
	if len(improved) > 0 {
		t.Logf("passing through Warden only: %s", strings.Join(improved, "; "))
	}
	for _, k := range []string{"dns-rebinding-protection/localhost-host-rebinding-rejected", "dns-rebinding-protection/localhost-host-valid-accepted"} {
		if through.status[k] != "SUCCESS" {
			t.Errorf("%s through Warden: %s %q", k, orNone(through.status[k]), through.message[k])
		}
	}
	var failedBoth []string
	for k, s := range direct.status {
		if s == "FAILURE" && through.status[k] == "FAILURE" {
			failedBoth = append(failedBoth, k)
		}
	}
	sort.Strings(failedBoth)
	t.Logf("failing in both (the server's own gaps): %s", strings.Join(failedBoth, ", "))
}

// perScenario is one line per scenario: its checks passed and failed
// directly and through Warden.
func perScenario(direct, through conformanceResult) []string {
	type counts struct{ dp, df, tp, tf int }
	by := map[string]*counts{}
	get := func(k string) *counts {
		sc := strings.SplitN(k, "/", 2)[0]
		if by[sc] == nil {
			by[sc] = &counts{}
		}
		return by[sc]
	}
	for k, s := range direct.status {
		c := get(k)
		c.dp += boolInt(s == "SUCCESS")
		c.df += boolInt(s == "FAILURE")
	}
	for k, s := range through.status {
		c := get(k)
		c.tp += boolInt(s == "SUCCESS")
		c.tf += boolInt(s == "FAILURE")
	}
	names := make([]string, 0, len(by))
	for sc := range by {
		names = append(names, sc)
	}
	sort.Strings(names)
	out := make([]string, len(names))
	for i, sc := range names {
		c := by[sc]
		out[i] = fmt.Sprintf("scenario %s: direct %d passed %d failed, through Warden %d passed %d failed", sc, c.dp, c.df, c.tp, c.tf)
	}
	return out
}

func boolInt(b bool) int {
	if b {
		return 1
	}
	return 0
}

// extProcMessages is Warden's warden_extproc_messages_total, summed over
// message kinds, read from its /metrics.
func (h *harness) extProcMessages(t *testing.T) float64 {
	t.Helper()
	resp, err := http.Get(h.admin + "/metrics")
	if err != nil {
		t.Fatalf("metrics: %v", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("metrics: %s", resp.Status)
	}
	var sum float64
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 0, 64<<10), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if !strings.HasPrefix(line, "warden_extproc_messages_total{") {
			continue
		}
		f := strings.Fields(line)
		v, err := strconv.ParseFloat(f[len(f)-1], 64)
		if err != nil {
			t.Fatalf("metrics line %q: %v", line, err)
		}
		sum += v
	}
	if err := sc.Err(); err != nil {
		t.Fatalf("metrics: %v", err)
	}
	return sum
}

// procFailures is a slog.Handler keeping the reasons envoysim logs for
// failed ext_proc exchanges.
type procFailures struct {
	mu   sync.Mutex
	errs []string
}

func (p *procFailures) Enabled(context.Context, slog.Level) bool { return true }
func (p *procFailures) WithAttrs([]slog.Attr) slog.Handler       { return p }
func (p *procFailures) WithGroup(string) slog.Handler            { return p }
func (p *procFailures) Handle(_ context.Context, r slog.Record) error {
	if r.Message != "envoysim: ext_proc failed" {
		return nil
	}
	var reason string
	r.Attrs(func(a slog.Attr) bool {
		if a.Key == "err" {
			reason = a.Value.String()
		}
		return true
	})
	p.mu.Lock()
	p.errs = append(p.errs, reason)
	p.mu.Unlock()
	return nil
}

// take returns the reasons kept so far and forgets them.
func (p *procFailures) take() []string {
	p.mu.Lock()
	defer p.mu.Unlock()
	out := p.errs
	p.errs = nil
	return out
}

func orNone(s string) string {
	if s == "" {
		return "(absent)"
	}
	return s
}

// scenarioDir matches the result directories the suite writes:
// server-<scenario>-<timestamp>.
var scenarioDir = regexp.MustCompile(`^server-(.+)-\d{4}-\d{2}-\d{2}T[\d-]+Z$`)

func conformance(t *testing.T, url string, args ...string) conformanceResult {
	t.Helper()
	node := idp.Node(t)
	cli := filepath.Join(idp.NodeModules(t), "@modelcontextprotocol", "conformance", "dist", "index.js")
	outDir := t.TempDir()
	ctx, cancel := context.WithTimeout(t.Context(), 5*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, node, append([]string{cli, "server", "--url", url, "-o", outDir}, args...)...)
	cmd.Dir = idp.TestDir()
	var output bytes.Buffer
	cmd.Stdout, cmd.Stderr = &output, &output
	// The suite exits non-zero when any check fails; the checks it
	// recorded are what this test compares.
	runErr := cmd.Run()
	if ctx.Err() != nil {
		t.Fatalf("conformance against %s timed out\n%s", url, tail(output.String(), 4000))
	}

	res := conformanceResult{status: map[string]string{}, message: map[string]string{}}
	err := filepath.WalkDir(outDir, func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() || d.Name() != "checks.json" {
			return err
		}
		m := scenarioDir.FindStringSubmatch(filepath.Base(filepath.Dir(p)))
		if m == nil {
			return fmt.Errorf("unexpected result directory %s", p)
		}
		raw, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		var checks []struct {
			ID      string `json:"id"`
			Status  string `json:"status"`
			Message string `json:"errorMessage"`
		}
		if err := json.Unmarshal(raw, &checks); err != nil {
			return fmt.Errorf("%s: %w", p, err)
		}
		for i, c := range checks {
			key := m[1] + "/" + c.ID
			if _, dup := res.status[key]; dup {
				key = fmt.Sprintf("%s#%d", key, i)
			}
			res.status[key], res.message[key] = c.Status, c.Message
		}
		return nil
	})
	if err != nil {
		t.Fatalf("conformance results: %v", err)
	}
	if len(res.status) == 0 {
		t.Fatalf("conformance against %s recorded no checks (exit %v)\n%s", url, runErr, tail(output.String(), 4000))
	}
	return res
}
