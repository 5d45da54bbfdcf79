package envoy.authz

import rego.v1

# Identity from a bearer JWT verified in the policy, the usual pattern with
# the OPA-Envoy plugin. data.jwt.constraints holds the key ("secret" for
# HS256, "cert" for ES256) and the expected iss and aud; expiry is checked
# against the current time by io.jwt.decode_verify.
bearer := t if {
	v := input.attributes.request.http.headers.authorization
	startswith(v, "Bearer ")
	t := substring(v, 7, -1)
}

claims := payload if {
	[valid, _, payload] := io.jwt.decode_verify(bearer, data.jwt.constraints)
	valid
}
