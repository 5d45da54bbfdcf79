package toolpin

import (
	"encoding/json"
	"testing"
)

// The digest covers the pinned members only and is the same whatever the
// member order, spacing or escaping of the server's JSON.
func TestDigest(t *testing.T) {
	a, err := Parse(json.RawMessage(`{"name":"q","description":"a <b>","inputSchema":{"type":"object","properties":{"x":{"type":"number","maximum":1.50}}},"title":"Q"}`))
	if err != nil {
		t.Fatal(err)
	}
	b, err := Parse(json.RawMessage(` { "title":"Other", "inputSchema" : {"properties":{"x":{"maximum":1.50,"type":"number"}},"type":"object"}, "description":"a \u003cb\u003e", "name":"q" }`))
	if err != nil {
		t.Fatal(err)
	}
	if a.Digest != b.Digest || string(a.Canonical) != string(b.Canonical) {
		t.Fatalf("same definition, different digests:\n%s\n%s", a.Canonical, b.Canonical)
	}
	if want := `{"description":"a <b>","inputSchema":{"properties":{"x":{"maximum":1.50,"type":"number"}},"type":"object"},"name":"q"}`; string(a.Canonical) != want {
		t.Fatalf("canonical %s, want %s", a.Canonical, want)
	}
	for _, changed := range []string{
		`{"name":"q","description":"a <b>!","inputSchema":{"type":"object","properties":{"x":{"type":"number","maximum":1.50}}}}`,
		`{"name":"q","description":"a <b>","inputSchema":{"type":"object","properties":{"x":{"type":"number","maximum":2}}}}`,
		`{"name":"q","description":"a <b>","inputSchema":{"type":"object","properties":{"x":{"type":"number","maximum":1.50}}},"annotations":{"destructiveHint":true}}`,
		`{"name":"q","description":"a <b>","inputSchema":{"type":"object","properties":{"x":{"type":"number","maximum":1.50}}},"outputSchema":{"type":"object"}}`,
	} {
		c, err := Parse(json.RawMessage(changed))
		if err != nil {
			t.Fatal(err)
		}
		if c.Digest == a.Digest {
			t.Errorf("%s has the digest of the original", changed)
		}
	}
	for _, bad := range []string{`{"description":"x"}`, `[]`, `{"name":1}`, `{`} {
		if _, err := Parse(json.RawMessage(bad)); err == nil {
			t.Errorf("%s parsed", bad)
		}
	}
}

func TestDescriptionDiff(t *testing.T) {
	for _, c := range []struct{ old, new, want string }{
		{"same", "same", ""},
		{"one", "two", "- one\n+ two"},
		{"a\nb\nc", "a\nB\nc\nd", "  a\n- b\n+ B\n  c\n+ d"},
	} {
		if got := DescriptionDiff(c.old, c.new); got != c.want {
			t.Errorf("diff(%q, %q) = %q, want %q", c.old, c.new, got, c.want)
		}
	}
}

func TestParseSetting(t *testing.T) {
	s, err := ParseSetting("", "")
	if err != nil || s != (Setting{ModeWarn, NewToolsApprove}) {
		t.Fatalf("defaults %+v %v", s, err)
	}
	for _, bad := range [][2]string{{"strict", ""}, {"block", "later"}} {
		if _, err := ParseSetting(bad[0], bad[1]); err == nil {
			t.Errorf("%v accepted", bad)
		}
	}
}
