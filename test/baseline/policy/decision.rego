package envoy.authz

import rego.v1

# The decision the plugin reads at path envoy/authz/result: the same
# per-tool rule as test/loadgen's Warden policy (tools/call allowed when one
# of the caller's groups lists the tool in data.tools_by_group; every other
# MCP method allowed), written against the plugin's input. The caller's
# identity, claims.sub and claims.groups, comes from identity.rego.
#
# Warden's Go code refuses truncated bodies and splits JSON-RPC batches
# before its policy runs; here the policy has to do both itself, or a
# truncated body or a batch would slip a tools/call past the tool rule.

rpc := input.parsed_body

messages := rpc if is_array(rpc) else := [rpc]

denied_tools contains m.params.name if {
	some m in messages
	m.method == "tools/call"
	not tool_allowed(m.params.name)
}

tool_allowed(name) if {
	some g in claims.groups
	name in data.tools_by_group[g]
}

rpc_id := messages[0].id if messages[0].id != null else := null

# On allow, pass the subject upstream and drop the client's credential, as
# Warden's allow does (Warden also swaps in an upstream credential).
result := {
	"allowed": false,
	"http_status": 413,
	"headers": {"content-type": "application/json"},
	"body": json.marshal({"jsonrpc": "2.0", "id": null, "error": {"code": -32600, "message": "request body truncated"}}),
} if {
	input.truncated_body
} else := {
	"allowed": true,
	"headers": {"x-mcp-subject": claims.sub},
	"request_headers_to_remove": ["authorization"],
} if {
	claims
	count(denied_tools) == 0
} else := {
	"allowed": false,
	"http_status": 403,
	"headers": {"content-type": "application/json"},
	"body": json.marshal({
		"jsonrpc": "2.0",
		"id": rpc_id,
		"error": {"code": -32001, "message": sprintf("tool %s not allowed", [concat(", ", denied_tools)])},
	}),
} if {
	claims
} else := {
	"allowed": false,
	"http_status": 401,
	"headers": {"www-authenticate": "Bearer"},
	"body": "",
}
