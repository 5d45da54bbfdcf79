package registry

import (
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/warden-mcp/warden/internal/audit"
	"github.com/warden-mcp/warden/internal/seal"
	"github.com/warden-mcp/warden/internal/store"
)

type fixture struct {
	reg   *Registry
	st    *store.Badger
	trail *audit.Trail
	ring  *seal.Keyring
}

func newFixture(t *testing.T) fixture {
	t.Helper()
	st, err := store.OpenBadger(t.TempDir(), store.BadgerOptions{})
	if err != nil {
		t.Fatal(err)
	}
	trail, err := audit.Open(context.Background(), st, audit.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = trail.Close(context.Background()); _ = st.Close() })
	key, _ := seal.Generate()
	ring, _ := seal.New("k1", map[string][]byte{"k1": key})
	return fixture{reg: New(st, trail, ring, nil), st: st, trail: trail, ring: ring}
}

var ctx = context.Background()

func TestAddValidates(t *testing.T) {
	f := newFixture(t)
	cases := []struct {
		name string
		spec Spec
		want []string // substrings of the error; empty means success
	}{
		{"ok", Spec{Name: "bi", URL: "http://bi.internal:8080/mcp"}, nil},
		{"https static", Spec{Name: "hr", URL: "https://hr.example.com/mcp", Credential: "static", StaticSecret: "Bearer xyz"}, nil},
		{"duplicate", Spec{Name: "bi", URL: "http://other/mcp"}, []string{"already exists"}},
		{"bad name and url", Spec{Name: "BI_2", URL: "ftp://x"}, []string{`name "BI_2"`, "scheme must be http or https"}},
		{"missing url", Spec{Name: "x"}, []string{"url: url is required"}},
		{"unknown mode", Spec{Name: "x", URL: "http://x", Credential: "magic"}, []string{"unknown mode"}},
		{"exchange without audience", Spec{Name: "x", URL: "http://x", Credential: "exchange"}, []string{"idp_audience or idp_scopes"}},
		{"provider without provider", Spec{Name: "x", URL: "http://x", Credential: "provider"}, []string{"provider: required"}},
		{"provider bad unconnected", Spec{Name: "x", URL: "http://x", Credential: "provider", Provider: "github", Unconnected: "sometimes"}, []string{"unconnected \"sometimes\""}},
		{"provider settings on jwt", Spec{Name: "x", URL: "http://x", Provider: "github"}, []string{"only valid with the idp, exchange and provider"}},
		{"idp for an audience", Spec{Name: "files", URL: "http://files", Credential: "idp", IdPAudience: "api://files", IdPScopes: []string{"files.read"}}, nil},
		{"idp audience with a space", Spec{Name: "x", URL: "http://x", Credential: "idp", IdPAudience: "api files"}, []string{"idp_audience: must not hold spaces"}},
		{"idp bad scope", Spec{Name: "x", URL: "http://x", Credential: "idp", IdPScopes: []string{"a b"}}, []string{`idp scope "a b"`}},
		{"audience on provider", Spec{Name: "x", URL: "http://x", Credential: "provider", Provider: "github", IdPAudience: "api"}, []string{"only valid with the idp and exchange"}},
		{"static without secret", Spec{Name: "x", URL: "http://x", Credential: "static"}, []string{"static_secret: required"}},
		{"secret without static", Spec{Name: "x", URL: "http://x", StaticSecret: "s"}, []string{"only valid"}},
		{"url with creds", Spec{Name: "x", URL: "http://u:p@x/"}, []string{"credentials"}},
		{"bad port", Spec{Name: "x", URL: "http://x:70000/"}, []string{"port must be 1-65535"}},
		{"bad timeout", Spec{Name: "x", URL: "http://x", IdleTimeout: "soon"}, []string{"idle_timeout"}},
		{"bad scope", Spec{Name: "x", URL: "http://x", Scopes: []string{"a b"}}, []string{`scope "a b"`}},
		{"bad step-up scope", Spec{Name: "x", URL: "http://x", StepUpScopes: []string{`a"b`}}, []string{`step-up scope "a\"b"`}},
		{"offline_access as a step-up scope", Spec{Name: "x", URL: "http://x", StepUpScopes: []string{"offline_access"}}, []string{"never challenged"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_, err := f.reg.Add(ctx, "tester", c.spec)
			if len(c.want) == 0 {
				if err != nil {
					t.Fatal(err)
				}
				return
			}
			if err == nil {
				t.Fatal("accepted")
			}
			for _, w := range c.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q lacks %q", err, w)
				}
			}
		})
	}
	all, _ := f.reg.List(ctx)
	if len(all) != 3 || all[0].Name != "bi" || all[1].Name != "files" || all[2].Name != "hr" {
		t.Fatalf("bad registrations changed the registry: %+v", all)
	}
	if f := all[1]; f.IdPAudience != "api://files" || len(f.IdPScopes) != 1 || f.IdPScopes[0] != "files.read" {
		t.Fatalf("idp audience and scopes not kept: %+v", f)
	}
	if _, err := f.reg.Add(ctx, "t", Spec{Name: "y", URL: "x"}); !errors.Is(err, ErrInvalid) {
		t.Fatalf("validation error not ErrInvalid: %v", err)
	}
}

func TestStaticSecretIsSealed(t *testing.T) {
	f := newFixture(t)
	s, err := f.reg.Add(ctx, "t", Spec{Name: "hr", URL: "http://hr", Credential: "static", StaticHeader: "X-Api-Key", StaticSecret: "top-secret"})
	if err != nil {
		t.Fatal(err)
	}
	if s.StaticSecret == nil || strings.Contains(string(s.StaticSecret.Ciphertext), "top-secret") {
		t.Fatal("secret not sealed")
	}
	pt, err := f.ring.Open(*s.StaticSecret, []byte("server/hr"))
	if err != nil || string(pt) != "top-secret" {
		t.Fatalf("sealed secret does not open: %v", err)
	}
	// An update without a new secret keeps the old one.
	s2, err := f.reg.Update(ctx, "t", Spec{Name: "hr", URL: "http://hr2", Credential: "static", StaticHeader: "X-Api-Key"})
	if err != nil || s2.StaticSecret == nil || s2.URL != "http://hr2" {
		t.Fatalf("update lost the secret: %v", err)
	}
	evs, _ := f.st.ListAudit(ctx, 0, 0)
	for _, e := range evs {
		if strings.Contains(e.Hash+e.Reason+e.Actor, "top-secret") || strings.Contains(strings.Join(toStrings(e.Details), " "), "top-secret") {
			t.Fatal("secret in audit event")
		}
	}
}

func toStrings(m map[string]any) []string {
	var out []string
	for k, v := range m {
		out = append(out, k, strings.TrimSpace(strings.ReplaceAll(fmtAny(v), "\n", "")))
	}
	return out
}

func fmtAny(v any) string {
	switch x := v.(type) {
	case string:
		return x
	case []string:
		return strings.Join(x, ",")
	}
	return ""
}

func TestChangesAreAuditedAndSignalled(t *testing.T) {
	f := newFixture(t)
	ch, cancel := f.reg.Subscribe()
	defer cancel()
	if _, err := f.reg.Add(ctx, "alice@admin", Spec{Name: "bi", URL: "http://bi"}); err != nil {
		t.Fatal(err)
	}
	select {
	case <-ch:
	default:
		t.Fatal("no change signal after add")
	}
	if _, err := f.reg.Update(ctx, "bob@admin", Spec{Name: "bi", URL: "http://bi2", Labels: map[string]string{"team": "data"}}); err != nil {
		t.Fatal(err)
	}
	if err := f.reg.Remove(ctx, "carol@admin", "bi"); err != nil {
		t.Fatal(err)
	}
	if err := f.reg.Remove(ctx, "carol@admin", "bi"); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("remove missing: %v", err)
	}
	evs, err := f.st.ListAudit(ctx, 0, 0)
	if err != nil {
		t.Fatal(err)
	}
	want := []struct{ typ, actor string }{{"server_added", "alice@admin"}, {"server_updated", "bob@admin"}, {"server_removed", "carol@admin"}}
	if len(evs) != len(want) {
		t.Fatalf("%d audit events, want %d", len(evs), len(want))
	}
	for i, w := range want {
		if evs[i].Type != w.typ || evs[i].Actor != w.actor || evs[i].Server != "bi" {
			t.Errorf("event %d: %+v", i, evs[i])
		}
	}
}

func TestReconcile(t *testing.T) {
	f := newFixture(t)
	if _, err := f.reg.Add(ctx, "admin", Spec{Name: "api-owned", URL: "http://a"}); err != nil {
		t.Fatal(err)
	}
	decl := []Spec{{Name: "bi", URL: "http://bi"}, {Name: "hr", URL: "http://hr"}, {Name: "api-owned", URL: "http://hijack"}}
	err := f.reg.Reconcile(ctx, decl)
	if err == nil || !strings.Contains(err.Error(), "managed through the API") {
		t.Fatalf("conflict with API server not reported: %v", err)
	}
	s, _ := f.reg.Get(ctx, "api-owned")
	if s.URL != "http://a" {
		t.Fatal("config file overwrote an API server")
	}
	before, _ := f.st.LastAudit(ctx)
	// Same declaration again: nothing changes, nothing is audited.
	_ = f.reg.Reconcile(ctx, decl)
	after, _ := f.st.LastAudit(ctx)
	if after.Seq != before.Seq {
		t.Fatalf("no-op reconcile wrote %d audit events", after.Seq-before.Seq)
	}
	if err := f.reg.Reconcile(ctx, []Spec{{Name: "bi", URL: "http://bi-v2"}}); err != nil {
		t.Fatal(err)
	}
	all, _ := f.reg.List(ctx)
	names := []string{}
	for _, s := range all {
		names = append(names, s.Name+"="+s.URL)
	}
	if strings.Join(names, ",") != "api-owned=http://a,bi=http://bi-v2" {
		t.Fatalf("after reconcile: %v", names)
	}
}

// A refused URL is never repeated in the error: the API answers it and the
// CLI prints it, and the URL may carry a secret.
func TestInvalidURLIsNotEchoed(t *testing.T) {
	f := newFixture(t)
	for _, raw := range []string{
		"https://alice:hunter2@hr.example.com/mcp",
		"https://hr.example.com/mcp?api_key=hunter2",
		"https://[::1/hunter2",
		"gopher://hunter2.example.com/",
	} {
		_, err := f.reg.Add(ctx, "tester", Spec{Name: "hr", URL: raw})
		if !errors.Is(err, ErrInvalid) {
			t.Fatalf("%s: accepted or wrong error: %v", raw, err)
		}
		if strings.Contains(err.Error(), "hunter2") {
			t.Errorf("error repeats the URL's secret: %v", err)
		}
	}
}
