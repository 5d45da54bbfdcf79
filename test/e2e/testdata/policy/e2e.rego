# The policy the end-to-end run enforces: Warden's default policy plus
# rules with a reason the client must see, and one step-up. A run_sql call
# whose query drops anything is refused; admin_reset, the admin_briefing
# prompt and the resources (and templates) under file:///teams/admin/ are
# for the admins group (so lists hide them from everyone else); write_note
# needs scope data:write, which the client gets by re-authorizing when
# challenged; every other call on a granted server is allowed.
package warden.authz

decision := {"allow": false, "reason": "write_note needs scope data:write", "scopes": ["data:write"]} if step_up

decision := {"allow": true, "reason": "allowed: the grant covers this server"} if {
	not step_up
	count(deny) == 0
}

decision := {"allow": false, "reason": concat("; ", deny)} if {
	not step_up
	count(deny) > 0
}

step_up if {
	input.mcp.tool == "write_note"
	not "data:write" in input.grant.scopes
}

deny contains msg if {
	not input.server.name in input.grant.servers
	msg := sprintf("the grant does not cover server %q", [input.server.name])
}

deny contains "admin_reset is for admins only" if {
	input.mcp.method == "tools/call"
	input.mcp.tool == "admin_reset"
	not "admins" in input.subject.groups
}

deny contains "run_sql: DROP statements are not allowed" if {
	input.mcp.method == "tools/call"
	input.mcp.tool == "run_sql"
	regex.match(`(?i)\bdrop\b`, sprintf("%v", [object.get(input.mcp.arguments, "query", "")]))
}

deny contains "admin_briefing is for admins only" if {
	input.mcp.method == "prompts/get"
	input.mcp.prompt == "admin_briefing"
	not "admins" in input.subject.groups
}

deny contains "file:///teams/admin/ is for admins only" if {
	input.mcp.method == "resources/read"
	startswith(input.mcp.resource, "file:///teams/admin/")
	not "admins" in input.subject.groups
}
