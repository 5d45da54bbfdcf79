package replay_test

import (
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/warden-mcp/warden/internal/store"
	"github.com/warden-mcp/warden/policy/replay"
)

const allowAll = "package warden.authz\n\ndecision := {\"allow\": true}\n"

// Requests that cannot be replayed are refused as invalid (the API's 400)
// with a message saying why; the end-to-end replay over real Checks is in
// authz (TestReplayListsExactlyTheFlippedDecisions).
func TestInvalidRequests(t *testing.T) {
	st, err := store.OpenBadger(t.TempDir(), store.BadgerOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	r := replay.New(replay.Options{Store: st})
	cases := map[string]struct {
		req  replay.Request
		want string
	}{
		"no modules":         {replay.Request{}, "modules is empty"},
		"does not compile":   {replay.Request{Modules: map[string]string{"a.rego": "package warden.authz\n\ndecision := {\n"}}, "a.rego:"},
		"no decision rule":   {replay.Request{Modules: map[string]string{"a.rego": "package other\n\nx := 1\n"}}, "neither"},
		"a path out":         {replay.Request{Modules: map[string]string{"../a.rego": allowAll}}, "not a relative file name"},
		"an absolute path":   {replay.Request{Modules: map[string]string{"/etc/a.rego": allowAll}}, "not a relative file name"},
		"not rego or data":   {replay.Request{Modules: map[string]string{"a.sh": "rm -rf /"}}, "neither Rego"},
		"a bad since":        {replay.Request{Modules: map[string]string{"a.rego": allowAll}, Since: "yesterday"}, "since"},
		"a negative limit":   {replay.Request{Modules: map[string]string{"a.rego": allowAll}, Limit: -1}, "limit"},
		"a limit beyond max": {replay.Request{Modules: map[string]string{"a.rego": allowAll}, Limit: replay.MaxLimit + 1}, "limit"},
	}
	for name, c := range cases {
		t.Run(name, func(t *testing.T) {
			_, err := r.Run(context.Background(), c.req)
			if !errors.Is(err, replay.ErrInvalid) || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("want an invalid-request error containing %q, got %v", c.want, err)
			}
		})
	}
	// A valid request over an empty trail evaluates nothing.
	res, err := r.Run(context.Background(), replay.Request{Modules: map[string]string{"a.rego": allowAll, "data.json": `{"x": 1}`}})
	if err != nil || res.Evaluated != 0 || res.Changed == nil {
		t.Fatalf("empty trail: %+v %v", res, err)
	}
}
