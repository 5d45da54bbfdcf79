package warden.authz_test

import data.warden.authz

msg(client, kind, server, method, tool) := {
	"version": 1,
	"subject": {"sub": client, "groups": [], "claims": {}},
	"client": {"id": client, "kind": kind},
	"server": {"name": server, "labels": {}},
	"mcp": {"kind": "request", "method": method, "id": 1, "tool": tool},
	"grant": {"servers": ["bi", "support"]},
}

test_service_calls_listed_tool if {
	authz.decision.allow with input as msg("reporting-bot", "service", "bi", "tools/call", "get_report")
}

test_service_cannot_call_unlisted_tool if {
	d := authz.decision with input as msg("reporting-bot", "service", "bi", "tools/call", "run_sql")
	not d.allow
	d.reason == `service client "reporting-bot" may not call tool "run_sql" on server "bi"`
}

test_service_list_is_per_server if {
	not authz.decision.allow with input as msg("reporting-bot", "service", "support", "tools/call", "get_report")
}

test_unknown_service_calls_nothing if {
	not authz.decision.allow with input as msg("stranger", "service", "bi", "tools/call", "get_report")
}

test_service_may_initialize_and_list if {
	authz.decision.allow with input as msg("stranger", "service", "bi", "initialize", "")
	authz.decision.allow with input as msg("stranger", "service", "bi", "tools/list", "")
}

test_service_cannot_read_resources_or_prompts if {
	d := authz.decision with input as msg("reporting-bot", "service", "bi", "resources/read", "")
	not d.allow
	d.reason == `service client "reporting-bot" may not use resources/read`
	not authz.decision.allow with input as msg("reporting-bot", "service", "bi", "prompts/get", "")
}

test_users_are_not_restricted if {
	authz.decision.allow with input as msg("alice", "user", "bi", "tools/call", "run_sql")
	authz.decision.allow with input as msg("alice", "user", "bi", "resources/read", "")
}

test_service_may_discover_in_2026 if {
	authz.decision.allow with input as msg("stranger", "service", "bi", "server/discover", "")
}
