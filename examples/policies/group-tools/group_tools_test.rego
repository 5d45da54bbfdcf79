package warden.authz_test

import data.warden.authz

call(groups, server, tool) := {
	"version": 1,
	"subject": {"sub": "u1", "email": "", "name": "", "groups": groups, "claims": {}},
	"client": {"id": "c1", "name": "", "kind": "user"},
	"server": {"name": server, "labels": {}},
	"mcp": {"kind": "request", "method": "tools/call", "id": 1, "tool": tool, "arguments": {}},
	"request": {},
	"grant": {"id": "g1", "scopes": [], "servers": ["bi", "wiki"]},
}

test_finance_may_run_sql if {
	authz.decision.allow with input as call(["staff", "finance"], "bi", "run_sql")
}

test_analysts_may_not_run_sql if {
	d := authz.decision with input as call(["analysts"], "bi", "run_sql")
	not d.allow
	d.reason == `tool "run_sql" on server "bi" is not allowed for your groups`
}

test_no_group_may_call_nothing if {
	not authz.decision.allow with input as call([], "bi", "list_reports")
}

test_wildcard_allows_every_tool if {
	authz.decision.allow with input as call(["bi-admins"], "bi", "drop_everything")
}

test_unlisted_server_is_not_restricted if {
	authz.decision.allow with input as call([], "wiki", "search")
}

test_other_methods_are_not_restricted if {
	authz.decision.allow with input as object.union(call([], "bi", ""), {"mcp": {"method": "tools/list"}})
}

test_map_comes_from_data if {
	authz.decision.allow with input as call(["ops"], "bi", "run_sql")
		with data.tools_by_group as {"bi": {"ops": ["run_sql"]}}
}
