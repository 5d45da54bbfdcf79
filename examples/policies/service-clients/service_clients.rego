# Worked example 4: service and agent identities.
#
# A service client (client.kind == "service", e.g. a token from
# `warden tokens create` or the client credentials grant) acts with no
# person in the loop, so it gets an explicit allowlist instead of the
# defaults: only the MCP methods below, and tools/call only for the tools
# data.yaml lists for that client on that server. User-delegated clients
# are not affected by this file.
package warden.authz

# The same for both MCP revisions: 2025-11-25 opens with initialize,
# 2026-07-28 has no handshake and discovers with server/discover. Task
# requests (tasks/get ...) are decided as the tools/call that created the
# task, so they need no entry of their own.
service_methods := {
	"initialize", "ping", "tools/list", "tools/call",
	"notifications/initialized", "notifications/cancelled",
	"server/discover",
}

deny contains msg if {
	input.client.kind == "service"
	input.mcp.kind in {"request", "notification"}
	not input.mcp.method in service_methods
	msg := sprintf("service client %q may not use %s", [input.client.id, input.mcp.method])
}

deny contains msg if {
	input.client.kind == "service"
	input.mcp.method == "tools/call"
	not input.mcp.tool in object.get(data.service_tools, [input.client.id, input.server.name], [])
	msg := sprintf("service client %q may not call tool %q on server %q", [input.client.id, input.mcp.tool, input.server.name])
}
