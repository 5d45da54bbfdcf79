package warden.authz_test

import data.warden.authz

call(tool, args) := {
	"version": 1,
	"subject": {"sub": "alice", "email": "", "name": "", "groups": [], "claims": {}},
	"client": {"id": "c", "name": "", "kind": "user"},
	"server": {"name": "data", "labels": {}},
	"mcp": {
		"kind": "request", "method": "tools/call", "id": 1, "tool": tool, "arguments": args,
		"resource": "", "prompt": "", "session": "", "protocol_version": "", "batch": false, "batch_size": 0,
	},
	"request": {"id": "", "method": "POST", "path": "/mcp/data", "host": "", "headers": {}, "time": ""},
	"grant": {"id": "g", "scopes": [], "servers": ["data"]},
}

test_drop_is_denied_with_reason if {
	d := authz.decision with input as call("run_sql", {"query": "DROP TABLE users"})
	not d.allow
	d.reason == "run_sql: DROP statements are not allowed"
}

test_select_is_allowed if {
	authz.decision.allow with input as call("run_sql", {"query": "select 1 -- backdrop"})
}

test_other_tools_are_allowed if {
	authz.decision.allow with input as call("echo", {"message": "drop"})
}

test_write_note_asks_for_data_write if {
	d := authz.decision with input as call("write_note", {"text": "x"})
	not d.allow
	d.scopes == ["data:write"]
}

test_write_note_with_data_write_is_allowed if {
	authz.decision.allow with input as object.union(call("write_note", {"text": "x"}), {"grant": {"scopes": ["data:read", "data:write"]}})
}

request(method, field, value) := object.union(call("", {}), {"mcp": {"method": method, field: value}})

test_admin_prompt_is_denied_with_reason if {
	d := authz.decision with input as request("prompts/get", "prompt", "admin_briefing")
	not d.allow
	d.reason == "admin_briefing is for admins only"
}

test_admin_resources_and_templates_are_denied if {
	d := authz.decision with input as request("resources/read", "resource", "file:///teams/admin/notes/{name}")
	not d.allow
	d.reason == "file:///teams/admin/ is for admins only"
}

test_data_prompt_and_resources_are_allowed if {
	authz.decision.allow with input as request("prompts/get", "prompt", "greet")
	authz.decision.allow with input as request("resources/read", "resource", "file:///teams/data/notes/{name}")
}

test_admins_get_the_admin_prompt if {
	authz.decision.allow with input as object.union(request("prompts/get", "prompt", "admin_briefing"), {"subject": {"groups": ["admins"]}})
}
