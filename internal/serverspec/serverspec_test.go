package serverspec

import (
	"errors"
	"strings"
	"testing"
)

func TestName(t *testing.T) {
	for name, ok := range map[string]bool{
		"bi": true, "a": true, "hr-2": true, "0x": true, strings.Repeat("a", 63): true,
		"": false, "BI": false, "-a": false, "a-": false, "a_b": false, "a.b": false, "a/b": false,
		"..": false, strings.Repeat("a", 64): false, "é": false,
	} {
		if ValidName(name) != ok {
			t.Errorf("ValidName(%q) = %v", name, !ok)
		}
		if err := CheckName(name); (err == nil) != ok || (err != nil && !errors.Is(err, ErrName)) {
			t.Errorf("CheckName(%q) = %v", name, err)
		}
	}
}

func TestParseURL(t *testing.T) {
	for _, tc := range []struct {
		raw  string
		want Upstream
	}{
		{"http://h:8080/mcp", Upstream{Host: "h", Port: 8080, Authority: "h:8080", Path: "/mcp"}},
		{"http://h", Upstream{Host: "h", Port: 80, Authority: "h", Path: "/"}},
		{"https://H.Example.com/a/b/", Upstream{TLS: true, Host: "h.example.com", Port: 443, Authority: "h.example.com", Path: "/a/b/"}},
		{"http://[::1]:9000/x", Upstream{Host: "::1", Port: 9000, Authority: "[::1]:9000", Path: "/x"}},
		{"http://svc_x.internal/a%20b", Upstream{Host: "svc_x.internal", Port: 80, Authority: "svc_x.internal", Path: "/a%20b"}},
	} {
		got, err := ParseURL(tc.raw)
		if err != nil || got != tc.want {
			t.Errorf("ParseURL(%q) = %+v, %v; want %+v", tc.raw, got, err, tc.want)
		}
	}
}

// Every refusal names its reason and none repeats the URL, which may hold
// a secret.
func TestParseURLRefusesWithoutEchoingTheURL(t *testing.T) {
	for raw, want := range map[string]error{
		"":                                     ErrURLRequired,
		"not a url":                            ErrURLInvalid,
		"http://[::1/secret-token":             ErrURLInvalid,
		"mailto:secret@example.com":            ErrURLInvalid,
		"ftp://files.example.com/secret":       ErrURLScheme,
		"https://alice:hunter2@h.example.com/": ErrURLUserinfo,
		"http://h/mcp?token=s3cr3t":            ErrURLQuery,
		"http://h/mcp#s3cr3t":                  ErrURLQuery,
		"http://h/mcp?":                        ErrURLQuery,
		"http://bad!host.s3cr3t/":              ErrURLHost,
		"http://h.s3cr3t:70000/":               ErrURLPort,
		"http://h.s3cr3t:0/":                   ErrURLPort,
		"http://h.s3cr3t:/":                    ErrURLPort,
	} {
		_, err := ParseURL(raw)
		if !errors.Is(err, want) {
			t.Errorf("ParseURL(%q) = %v, want %v", raw, err, want)
			continue
		}
		for _, secret := range []string{"hunter2", "alice", "s3cr3t", "secret"} {
			if strings.Contains(err.Error(), secret) {
				t.Errorf("ParseURL(%q): error %q repeats the URL", raw, err)
			}
		}
	}
}

func TestRedact(t *testing.T) {
	for raw, want := range map[string]string{
		"https://alice:hunter2@h.example.com/mcp?token=x#frag": "https://REDACTED@h.example.com/mcp?REDACTED#REDACTED",
		"http://h/mcp":        "http://h/mcp",
		"http://[::1/hunter2": "(unparseable URL)",
	} {
		if got := Redact(raw); got != want {
			t.Errorf("Redact(%q) = %q, want %q", raw, got, want)
		}
	}
}
