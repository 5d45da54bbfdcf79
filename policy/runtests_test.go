package policy

import (
	"bytes"
	"context"
	"errors"
	"strings"
	"testing"
)

func TestRunTestsCounts(t *testing.T) {
	dir := t.TempDir()
	writeFiles(t, dir, map[string]string{
		"authz.rego": "package warden.authz\n\nallow if input.subject.sub == data.admin\n",
		"data.yaml":  "admin: alice\n",
		"authz_test.rego": `package warden.authz_test

import data.warden.authz

test_admin_allowed if authz.allow with input as {"subject": {"sub": "alice"}}

test_other_denied if not authz.allow with input as {"subject": {"sub": "bob"}}

test_wrong_expectation if {
	print("checking bob")
	authz.allow with input as {"subject": {"sub": "bob"}}
}

# A failing built-in is an error, as on the request path.
test_builtin_error if json.unmarshal("{") == {}

todo_test_later if false
`,
		"more/extra_test.rego": "package extra_test\n\ntest_in_subdirectory if true\n",
		".hidden/x_test.rego":  "package hidden_test\n\ntest_never_run if false\n",
	})
	var out bytes.Buffer
	passed, failed, err := RunTests(context.Background(), dir, &out, false)
	if err != nil {
		t.Fatal(err)
	}
	if passed != 3 || failed != 2 {
		t.Fatalf("passed %d failed %d, want 3 and 2\n%s", passed, failed, out.String())
	}
	report := out.String()
	for _, want := range []string{"test_wrong_expectation: FAIL", "eval_builtin_error: json.unmarshal", "checking bob", "SKIPPED", "authz_test.rego:9"} {
		if !strings.Contains(report, want) {
			t.Errorf("report lacks %q:\n%s", want, report)
		}
	}
	if strings.Contains(report, "test_admin_allowed") {
		t.Errorf("passing tests listed without verbose:\n%s", report)
	}

	out.Reset()
	if _, _, err := RunTests(context.Background(), dir, &out, true); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"test_admin_allowed: PASS", "test_in_subdirectory: PASS", "Enter data.warden.authz.allow"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("verbose report lacks %q:\n%s", want, out.String())
		}
	}
}

func TestRunTestsErrors(t *testing.T) {
	ctx := context.Background()

	empty := t.TempDir()
	writeFiles(t, empty, map[string]string{"authz.rego": "package warden.authz\n\nallow := true\n"})
	if _, _, err := RunTests(ctx, empty, &bytes.Buffer{}, false); !errors.Is(err, ErrNoTests) {
		t.Fatalf("no tests: %v", err)
	}

	broken := t.TempDir()
	writeFiles(t, broken, map[string]string{
		"authz.rego":      "package warden.authz\n\nallow := true\n",
		"authz_test.rego": "package warden.authz_test\n\ntest_x if {\n\tundefined_fn(1)\n}\n",
	})
	_, _, err := RunTests(ctx, broken, &bytes.Buffer{}, false)
	if err == nil || !strings.Contains(err.Error(), "authz_test.rego:4") {
		t.Fatalf("compile error: %v", err)
	}

	if _, _, err := RunTests(ctx, t.TempDir()+"/missing", &bytes.Buffer{}, false); err == nil {
		t.Fatal("missing directory accepted")
	}
}
