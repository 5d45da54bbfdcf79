# The console test's policy: everything on a granted server is allowed but
# the tool delete_everything.
package warden.authz

decision := {"allow": true, "reason": "allowed: the grant covers this server"} if count(deny) == 0

decision := {"allow": false, "reason": concat("; ", deny)} if count(deny) > 0

deny contains msg if {
	not input.server.name in input.grant.servers
	msg := sprintf("the grant does not cover server %q", [input.server.name])
}

deny contains "delete_everything is never allowed" if {
	input.mcp.method == "tools/call"
	input.mcp.tool == "delete_everything"
}
