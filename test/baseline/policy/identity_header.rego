package envoy.authz

import rego.v1

# Identity from headers set by a filter in front of ext_authz (for example
# Envoy's jwt_authn with claim_to_headers): no verification in the policy.
claims := {"sub": h["x-mcp-user"], "groups": split(h["x-mcp-groups"], ",")} if {
	h := input.attributes.request.http.headers
	h["x-mcp-user"] != ""
}
