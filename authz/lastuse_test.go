package authz_test

import (
	"context"
	"testing"

	"github.com/warden-mcp/warden/authz"
	"github.com/warden-mcp/warden/internal/registry"
	"github.com/warden-mcp/warden/internal/usage"
)

// Allowed Checks are remembered as uses of the grant on the server, in
// memory; denied ones are not. The store sees them only when flushed.
func TestAllowsRecordLastUse(t *testing.T) {
	var tracker *usage.Tracker
	e := newEnv(t, func(o *authz.Options) {
		tracker = usage.New(usage.Options{Store: o.Resolver.(usage.Store)})
		o.LastUse = tracker
	})
	e.addServer(registry.Spec{Name: "bi", URL: "http://bi.internal:8080/mcp"})
	e.addServer(registry.Spec{Name: "hr", URL: "http://hr.internal:8080/mcp"})
	tok, grantID := e.mint(tokenSpec{servers: []string{"bi"}})

	if e.check(req{token: tok, body: toolsCall}).GetOkResponse() == nil {
		t.Fatal("denied")
	}
	if e.check(req{token: tok, body: toolsCall, server: "hr"}).GetOkResponse() != nil {
		t.Fatal("a handle for bi was allowed on hr")
	}
	if uses, _ := e.st.ListLastUse(context.Background()); len(uses) != 0 {
		t.Fatalf("a Check wrote to the store: %+v", uses)
	}
	snap, err := tracker.Snapshot(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if len(snap) != 1 || snap[usage.Key{GrantID: grantID, Server: "bi"}].IsZero() {
		t.Fatalf("uses %v, want one for %s on bi", snap, grantID)
	}
	if err := tracker.Flush(context.Background()); err != nil {
		t.Fatal(err)
	}
	if uses, _ := e.st.ListLastUse(context.Background()); len(uses) != 1 || uses[0].GrantID != grantID || uses[0].Server != "bi" {
		t.Fatalf("flushed %+v", uses)
	}
}
