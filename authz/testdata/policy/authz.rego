package warden.authz

import rego.v1

# Test policy: everything but tools/call is allowed; tools/call only for the
# tools listed in data.allowed_tools, and run_sql never with DROP.
# write_salary needs scope hr:write (step-up); audit_all needs scope admin
# and is refused even with it; resources/subscribe of file:///secret/ is
# refused.
decision := {"allow": false, "reason": "DROP statements are not allowed"} if {
	input.mcp.tool == "run_sql"
	contains(upper(input.mcp.arguments.query), "DROP")
} else := {"allow": false, "reason": "writing salaries needs hr:write", "scopes": ["hr:write", "offline_access"]} if {
	input.mcp.tool == "write_salary"
	not "hr:write" in input.grant.scopes
} else := {"allow": false, "scopes": ["admin"]} if {
	input.mcp.tool == "audit_all"
} else := {"allow": false, "reason": "secret resources are not for you"} if {
	input.mcp.method == "resources/subscribe"
	startswith(input.mcp.resource, "file:///secret/")
} else := {"allow": false, "reason": "client blocked-client is not allowed"} if {
	input.mcp.client_info.name == "blocked-client"
} else := {"allow": true, "reason": "tool allowed"} if {
	input.mcp.method == "tools/call"
	input.mcp.tool in data.allowed_tools
} else := {"allow": false, "reason": sprintf("tool %s is not allowed for %s", [input.mcp.tool, input.subject.sub])} if {
	input.mcp.method == "tools/call"
} else := {"allow": true, "reason": "not a tool call"}

# A second, conflicting value for one method: evaluating it is an error,
# which Check must turn into a fail-closed 503.
decision := {"allow": false, "reason": "conflict"} if input.mcp.method == "conflict"
