package warden.authz

import rego.v1

# Test policy: everything but tools/call is allowed; tools/call only for the
# tools listed in data.allowed_tools, and run_sql never with DROP.
decision := {"allow": false, "reason": "DROP statements are not allowed"} if {
	input.mcp.tool == "run_sql"
	contains(upper(input.mcp.arguments.query), "DROP")
} else := {"allow": true, "reason": "tool allowed"} if {
	input.mcp.method == "tools/call"
	input.mcp.tool in data.allowed_tools
} else := {"allow": false, "reason": sprintf("tool %s is not allowed for %s", [input.mcp.tool, input.subject.sub])} if {
	input.mcp.method == "tools/call"
} else := {"allow": true, "reason": "not a tool call"}

# A second, conflicting value for one method: evaluating it is an error,
# which Check must turn into a fail-closed 503.
decision := {"allow": false, "reason": "conflict"} if input.mcp.method == "conflict"
