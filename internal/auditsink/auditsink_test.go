package auditsink_test

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"encoding/json"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/warden-mcp/warden/internal/audit"
	"github.com/warden-mcp/warden/internal/auditsink"
	"github.com/warden-mcp/warden/internal/mtls/mtlstest"
	"github.com/warden-mcp/warden/internal/store"
)

var ctx = context.Background()

// trailTo records n events through a real trail on a real Badger store,
// mirrored to sink, and returns the stored events.
func trailTo(t *testing.T, sink *auditsink.Fanout, n int) []store.AuditEvent {
	t.Helper()
	st, err := store.OpenBadger(t.TempDir(), store.BadgerOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	tr, err := audit.Open(ctx, st, audit.Options{Sink: sink})
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i < n; i++ {
		dec := "allow"
		if i%3 == 0 {
			dec = "deny"
		}
		// Quotes, a newline, a "]" and non-ASCII in the reason: the
		// framing and the receiver must keep them intact.
		if err := tr.RecordSync(ctx, store.AuditEvent{Type: "decision", RequestID: fmt.Sprint("req-", i), Subject: "alice@example.com",
			Server: "bi", Method: "tools/call", Tool: "run_sql", Decision: dec, Status: 200,
			Reason: fmt.Sprintf("rule %d said \"no\"]\nnext line é", i)}); err != nil {
			t.Fatal(err)
		}
	}
	if err := tr.Close(ctx); err != nil {
		t.Fatal(err)
	}
	evs, err := st.ListAudit(ctx, 0, 0)
	if err != nil {
		t.Fatal(err)
	}
	return evs
}

func TestFileSinkRotatesBySize(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "audit.jsonl")
	f, err := auditsink.OpenFile(path, 2048, 2)
	if err != nil {
		t.Fatal(err)
	}
	fan, err := auditsink.New([]auditsink.Sink{{Name: "file", W: f}}, auditsink.Options{})
	if err != nil {
		t.Fatal(err)
	}
	evs := trailTo(t, fan, 40)
	if err := fan.Close(ctx); err != nil {
		t.Fatal(err)
	}
	files, _ := filepath.Glob(path + "*")
	if len(files) != 3 {
		t.Fatalf("files %v, want the live one and 2 rotated", files)
	}
	// The kept files hold the newest events, in order, each a stored
	// event byte for byte, each file within the size bound.
	var lines []string
	for _, name := range []string{path + ".2", path + ".1", path} {
		raw, err := os.ReadFile(name)
		if err != nil {
			t.Fatal(err)
		}
		if len(raw) > 2048 {
			t.Fatalf("%s is %d bytes", name, len(raw))
		}
		lines = append(lines, strings.Split(strings.TrimSuffix(string(raw), "\n"), "\n")...)
	}
	tail := evs[len(evs)-len(lines):]
	for i, l := range lines {
		want, _ := json.Marshal(tail[i])
		if l != string(want) {
			t.Fatalf("line %d:\n%s\nwant\n%s", i, l, want)
		}
	}
	if len(lines) >= len(evs) {
		t.Fatal("nothing was rotated away")
	}
}

func TestOCSFMapping(t *testing.T) {
	line := []byte(`{"seq":7,"time":"2026-12-01T10:00:00Z","type":"decision","request_id":"r1","subject":"alice","client_id":"c1","kind":"user","server":"bi","method":"tools/call","tool":"run_sql","decision":"deny","status":403,"reason":"not allowed","policy_revision":"abc","prev_hash":"p","hash":"h"}`)
	raw, err := auditsink.ToOCSF(line)
	if err != nil {
		t.Fatal(err)
	}
	var got map[string]any
	_ = json.Unmarshal(raw, &got)
	for k, want := range map[string]any{"class_uid": 6003.0, "category_uid": 6.0, "activity_id": 99.0, "type_uid": 600399.0, "status_id": 2.0, "time": float64(time.Date(2026, 12, 1, 10, 0, 0, 0, time.UTC).UnixMilli()), "message": "not allowed"} {
		if got[k] != want {
			t.Errorf("%s = %v, want %v", k, got[k], want)
		}
	}
	api := got["api"].(map[string]any)
	if api["operation"] != "tools/call" || api["service"].(map[string]any)["name"] != "bi" {
		t.Errorf("api %v", api)
	}
	if got["actor"].(map[string]any)["user"].(map[string]any)["uid"] != "alice" {
		t.Errorf("actor %v", got["actor"])
	}
	um := got["unmapped"].(map[string]any)
	if um["hash"] != "h" || um["seq"] != 7.0 || um["policy_revision"] != "abc" {
		t.Errorf("unmapped %v", um)
	}
	if got["metadata"].(map[string]any)["version"] != auditsink.OCSFVersion {
		t.Error("no OCSF version")
	}
}

// rsyslogd starts Debian's rsyslogd in the foreground with a generated
// configuration: imtcp on a free port (TLS through the ossl driver when
// pki is set), each message written by omfile as one JSON line of its
// parsed RFC 5424 fields. It returns the address and the output file.
func rsyslogd(t *testing.T, pki *mtlstest.PKI) (addr, out string) {
	t.Helper()
	bin, err := exec.LookPath("rsyslogd")
	if err != nil {
		bin = "/usr/sbin/rsyslogd"
		if _, err := os.Stat(bin); err != nil {
			if os.Getenv("CI") != "" {
				t.Fatal("rsyslogd is not installed: CI must run the syslog sink test (.ci/run installs rsyslog)")
			}
			t.Skip("rsyslogd is not installed (apt-get install rsyslog rsyslog-openssl)")
		}
	}
	dir := t.TempDir()
	out = filepath.Join(dir, "received.jsonl")
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := l.Addr().(*net.TCPAddr).Port
	l.Close()
	global := fmt.Sprintf(`global(workDirectory="%s" maxMessageSize="64k"`, dir)
	input := fmt.Sprintf(`module(load="imtcp")`+"\n"+`input(type="imtcp" address="127.0.0.1" port="%d" ruleset="audit")`, port)
	if pki != nil {
		global += fmt.Sprintf(` defaultNetstreamDriver="ossl" defaultNetstreamDriverCAFile="%s" defaultNetstreamDriverCertFile="%s" defaultNetstreamDriverKeyFile="%s"`, pki.CAFile, pki.ServerCert, pki.ServerKey)
		input = fmt.Sprintf(`module(load="imtcp" streamDriver.name="ossl" streamDriver.mode="1" streamDriver.authMode="anon")`+"\n"+`input(type="imtcp" address="127.0.0.1" port="%d" ruleset="audit")`, port)
	}
	conf := global + ")\n" + input + `
template(name="fields" type="list") {
  constant(value="{\"pri\":\"") property(name="pri") constant(value="\",\"app\":\"") property(name="app-name" format="json")
  constant(value="\",\"msgid\":\"") property(name="msgid" format="json") constant(value="\",\"sd\":\"") property(name="structured-data" format="json")
  constant(value="\",\"ts\":\"") property(name="timereported" dateFormat="rfc3339" format="json")
  constant(value="\",\"msg\":\"") property(name="msg" format="json") constant(value="\"}\n")
}
ruleset(name="audit") { action(type="omfile" file="` + out + `" template="fields") }
`
	cfg := filepath.Join(dir, "rsyslog.conf")
	if err := os.WriteFile(cfg, []byte(conf), 0o600); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bin, "-n", "-f", cfg, "-i", filepath.Join(dir, "rsyslogd.pid"))
	var logs bytes.Buffer
	cmd.Stdout, cmd.Stderr = &logs, &logs
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = cmd.Process.Signal(syscall.SIGTERM)
		done := make(chan struct{})
		go func() { _ = cmd.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			_ = cmd.Process.Kill()
			<-done
		}
		if t.Failed() {
			t.Logf("rsyslogd output:\n%s", logs.String())
		}
	})
	addr = net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
	deadline := time.Now().Add(30 * time.Second)
	for {
		c, err := net.Dial("tcp", addr)
		if err == nil {
			c.Close()
			return addr, out
		}
		if time.Now().After(deadline) {
			t.Fatalf("rsyslogd not listening on %s: %v\n%s", addr, err, logs.String())
		}
		time.Sleep(50 * time.Millisecond)
	}
}

type received struct {
	Pri, App, MsgID, SD, TS, Msg string
}

// waitFor reads rsyslogd's output until n messages arrived.
func waitFor(t *testing.T, out string, n int) []received {
	t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for {
		var got []received
		if f, err := os.Open(out); err == nil {
			sc := bufio.NewScanner(f)
			sc.Buffer(make([]byte, 1<<20), 1<<20)
			for sc.Scan() {
				var r received
				if err := json.Unmarshal(sc.Bytes(), &r); err != nil {
					t.Fatalf("rsyslogd wrote %q: %v", sc.Text(), err)
				}
				got = append(got, r)
			}
			f.Close()
		}
		if len(got) >= n {
			return got
		}
		if time.Now().After(deadline) {
			t.Fatalf("rsyslogd received %d of %d messages", len(got), n)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func TestSyslogToRsyslogd(t *testing.T) {
	for _, tc := range []struct {
		name   string
		tls    bool
		format auditsink.Format
	}{
		{"tcp-json", false, auditsink.JSON},
		{"tls-json", true, auditsink.JSON},
		{"tcp-ocsf", false, auditsink.OCSF},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var pki *mtlstest.PKI
			var tlsCfg *tls.Config
			if tc.tls {
				pki = mtlstest.New(t)
				tlsCfg = pki.ClientTLS(t, "", "")
				tlsCfg.ServerName = "localhost"
			}
			addr, out := rsyslogd(t, pki)
			reg := prometheus.NewRegistry()
			fan, err := auditsink.New([]auditsink.Sink{{Name: "siem", Format: tc.format, W: &auditsink.Syslog{Address: addr, TLS: tlsCfg, Hostname: "warden-test"}}},
				auditsink.Options{Registerer: reg})
			if err != nil {
				t.Fatal(err)
			}
			const n = 30
			evs := trailTo(t, fan, n)
			got := waitFor(t, out, n)
			if err := fan.Close(ctx); err != nil {
				t.Fatal(err)
			}
			if len(got) != n {
				t.Fatalf("received %d messages, want %d", len(got), n)
			}
			for i, r := range got {
				ev := evs[i]
				if r.App != "warden" || r.MsgID != "decision" || r.SD != fmt.Sprintf(`[meta sequenceId="%d"]`, ev.Seq) {
					t.Fatalf("message %d header %+v", i, r)
				}
				wantPri := "110" // facility 13 (log audit) * 8 + informational
				if ev.Decision == "deny" {
					wantPri = "109" // notice
				}
				if r.Pri != wantPri {
					t.Fatalf("message %d pri %s, want %s", i, r.Pri, wantPri)
				}
				ts, err := time.Parse(time.RFC3339Nano, r.TS)
				if err != nil || !ts.Equal(ev.Time.Truncate(time.Microsecond)) {
					t.Fatalf("message %d time %s, event %s", i, r.TS, ev.Time)
				}
				switch tc.format {
				case auditsink.JSON:
					want, _ := json.Marshal(ev)
					if r.Msg != string(want) {
						t.Fatalf("message %d:\n%s\nwant\n%s", i, r.Msg, want)
					}
					// The receiver's copy still verifies against the chain.
					var back store.AuditEvent
					if err := json.Unmarshal([]byte(r.Msg), &back); err != nil || audit.Hash(back) != ev.Hash {
						t.Fatalf("message %d does not hash to the stored event: %v", i, err)
					}
				case auditsink.OCSF:
					var o map[string]any
					if err := json.Unmarshal([]byte(r.Msg), &o); err != nil {
						t.Fatal(err)
					}
					if o["class_uid"] != 6003.0 || o["message"] != ev.Reason || o["unmapped"].(map[string]any)["hash"] != ev.Hash {
						t.Fatalf("ocsf message %d: %s", i, r.Msg)
					}
				}
			}
		})
	}
}

// An unreachable SIEM costs the trail nothing: the sink drops what its
// queue cannot hold and counts it; the store has every event.
func TestUnreachableSyslogDropsAndCounts(t *testing.T) {
	l, _ := net.Listen("tcp", "127.0.0.1:0")
	addr := l.Addr().String()
	l.Close() // nothing listens
	reg := prometheus.NewRegistry()
	fan, err := auditsink.New([]auditsink.Sink{{Name: "down", W: &auditsink.Syslog{Address: addr, Attempts: 1}}}, auditsink.Options{QueueSize: 2, Registerer: reg})
	if err != nil {
		t.Fatal(err)
	}
	evs := trailTo(t, fan, 50)
	if len(evs) != 50 {
		t.Fatalf("store has %d events", len(evs))
	}
	cctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	_ = fan.Close(cctx)
	mfs, _ := reg.Gather()
	var dropped, failed float64
	for _, mf := range mfs {
		switch mf.GetName() {
		case "warden_audit_sink_dropped_total":
			dropped = mf.GetMetric()[0].GetCounter().GetValue()
		case "warden_audit_sink_errors_total":
			failed = mf.GetMetric()[0].GetCounter().GetValue()
		}
	}
	if dropped+failed != 50 || failed == 0 {
		t.Fatalf("dropped %v, failed %v of 50", dropped, failed)
	}
}

// blocked is a sink that does not return until released: a SIEM that has
// stopped reading.
type blocked struct{ release chan struct{} }

func (b blocked) WriteEvent(_, _ []byte) error { <-b.release; return nil }
func (b blocked) Close() error                 { return nil }

func TestStuckSinkDropsAndCountsWithoutSlowingTheTrail(t *testing.T) {
	reg := prometheus.NewRegistry()
	b := blocked{release: make(chan struct{})}
	fan, err := auditsink.New([]auditsink.Sink{{Name: "stuck", W: b}}, auditsink.Options{QueueSize: 5, Registerer: reg})
	if err != nil {
		t.Fatal(err)
	}
	evs := trailTo(t, fan, 50) // returns: the trail never waited on the sink
	if len(evs) != 50 {
		t.Fatalf("store has %d events", len(evs))
	}
	mfs, _ := reg.Gather()
	var dropped float64
	for _, mf := range mfs {
		if mf.GetName() == "warden_audit_sink_dropped_total" {
			dropped = mf.GetMetric()[0].GetCounter().GetValue()
		}
	}
	// At most one event in the writer and five queued.
	if dropped < 44 {
		t.Fatalf("dropped %v of 50 with room for 6", dropped)
	}
	close(b.release)
	_ = fan.Close(ctx)
}
