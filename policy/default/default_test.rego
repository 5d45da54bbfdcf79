package warden.authz_test

import data.warden.authz

# A tools/call from a signed-in user whose grant covers server "bi".
call := {
	"version": 1,
	"subject": {"sub": "alice", "email": "alice@example.com", "name": "Alice", "groups": ["finance"], "claims": {}},
	"client": {"id": "client-1", "name": "Claude", "kind": "user"},
	"server": {"name": "bi", "labels": {}},
	"mcp": {
		"kind": "request", "method": "tools/call", "id": 1,
		"tool": "run_sql", "arguments": {"query": "select 1"},
		"resource": "", "prompt": "", "session": "s1", "protocol_version": "2025-06-18",
		"batch": false, "batch_size": 0,
	},
	"request": {"id": "r1", "method": "POST", "path": "/mcp/bi", "host": "warden.example.com", "headers": {}, "time": "2025-01-01T00:00:00Z"},
	"grant": {"id": "g1", "scopes": ["mcp"], "servers": ["bi", "hr"]},
}

test_allows_call_on_granted_server if {
	d := authz.decision with input as call
	d.allow
	d.reason == "allowed: the grant covers this server"
}

test_denies_server_outside_grant if {
	d := authz.decision with input as object.union(call, {"server": {"name": "legal"}})
	not d.allow
	d.reason == `the grant does not cover server "legal"`
}

test_denies_grant_without_servers if {
	d := authz.decision with input as object.union(call, {"grant": {"servers": []}})
	not d.allow
}

test_allows_every_message_kind if {
	every kind in ["request", "notification", "response", "stream", "session_end"] {
		d := authz.decision with input as object.union(call, {"mcp": {"kind": kind, "method": "", "tool": ""}})
		d.allow
	}
}

test_deny_rules_add_up if {
	d := authz.decision with input as call with authz.deny as {"second reason", "first reason"}
	not d.allow
	d.reason == "first reason; second reason"
}

# The same call from an MCP 2026-07-28 client: no session, the version and
# the client's self-reported identity from _meta.
modern := object.union(call, {"mcp": {
	"session": "", "protocol_version": "2026-07-28",
	"client_info": {"name": "claude-desktop", "version": "0.9.2"},
}})

test_allows_2026_calls_on_granted_server if {
	every method in ["tools/call", "server/discover", "subscriptions/listen", "tools/list"] {
		d := authz.decision with input as object.union(modern, {"mcp": {"method": method}})
		d.allow
	}
}

test_denies_2026_calls_outside_grant if {
	d := authz.decision with input as object.union(modern, {"server": {"name": "legal"}})
	not d.allow
}
