# Worked example 1: which tools each IdP group may call, per server.
#
# data.json maps server -> group -> tools ("*" = every tool). A server listed
# there allows a tools/call only when one of the caller's groups lists the
# tool; servers not listed are left alone by this file. Editing data.json is
# enough to change who may call what: Warden reloads it like a policy file.
#
# tools/list shows only the tools a call would be allowed for: the response
# path asks this policy about each listed tool, with no arguments.
package warden.authz

deny contains msg if {
	input.mcp.method == "tools/call"
	allowed := data.tools_by_group[input.server.name]
	not tool_allowed(allowed)
	msg := sprintf("tool %q on server %q is not allowed for your groups", [input.mcp.tool, input.server.name])
}

tool_allowed(allowed) if {
	some group in input.subject.groups
	some tool in allowed[group]
	tool in {input.mcp.tool, "*"}
}
