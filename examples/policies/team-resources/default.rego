# Warden's default policy.
#
# Warden asks this policy about every MCP message (tools/call, resources/read,
# prompts/get, server/discover, subscriptions/listen, task requests,
# notifications, responses, the SSE stream and session end), of MCP 2025-11-25
# and 2026-07-28 clients alike, AFTER it has checked the caller's handle,
# that the grant's audience covers the server, the server's required scopes,
# and (2026-07-28) that the request's headers match its body. The answer
# Warden reads is data.warden.authz.decision, an object {"allow": bool,
# "reason": string}. The reason of a denial goes back to the client (and its
# model) in a JSON-RPC error, and into the audit trail. A denial may name
# the scopes the call needs ("scopes": ["hr:write"]): the client is then
# challenged to re-authorize with them (step-up).
#
# input.mcp.method and input.mcp.tool mean the same in both revisions: a
# task request (tasks/get ...) is presented as the tools/call that created
# the task, and each resource a subscriptions/listen subscribes to as the
# resources/subscribe it replaces.
#
# As shipped it allows every call whose grant covers the server. To restrict
# it, copy this file into your policy directory (`policy.dir` in the config)
# and add `deny` rules, here or in other files of package warden.authz:
#
#     deny contains "only finance may run SQL" if {
#         input.mcp.tool == "run_sql"
#         not "finance" in input.subject.groups
#     }
#
# Every matching deny rule adds its reason; one is enough to refuse the call.
# docs/policy.md describes the input document and has worked examples
# (tools by IdP group, argument checks, resource prefixes, service clients).
package warden.authz

# Allowed when no deny rule matches.
decision := {"allow": true, "reason": "allowed: the grant covers this server"} if count(deny) == 0

# Refused with every deny reason, sorted and joined.
decision := {"allow": false, "reason": concat("; ", deny)} if count(deny) > 0

# Defense in depth: ext_authz has already refused grants that do not cover
# the server; the policy says so again rather than trusting that silently.
deny contains msg if {
	not input.server.name in input.grant.servers
	msg := sprintf("the grant does not cover server %q", [input.server.name])
}
