# The policy the end-to-end run enforces: Warden's default policy plus one
# rule with a reason the client must see. A run_sql call whose query drops
# anything is refused; every other call on a granted server is allowed.
package warden.authz

decision := {"allow": true, "reason": "allowed: the grant covers this server"} if count(deny) == 0

decision := {"allow": false, "reason": concat("; ", deny)} if count(deny) > 0

deny contains msg if {
	not input.server.name in input.grant.servers
	msg := sprintf("the grant does not cover server %q", [input.server.name])
}

deny contains "run_sql: DROP statements are not allowed" if {
	input.mcp.method == "tools/call"
	input.mcp.tool == "run_sql"
	regex.match(`(?i)\bdrop\b`, sprintf("%v", [object.get(input.mcp.arguments, "query", "")]))
}
