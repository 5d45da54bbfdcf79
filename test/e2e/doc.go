// Package e2e runs Warden the way a user meets it, with real processes:
// the built `warden serve` binary, the Envoy-faithful harness
// (test/envoysim) configured only by Warden's own xDS, the npm oidc-provider
// as the enterprise IdP, two upstream MCP servers (the reference
// @modelcontextprotocol/server-everything and test/mcpserver, which verifies
// Warden's JWT), the official MCP TypeScript SDK client, and the MCP
// conformance suite. Servers are registered, tokens minted and users revoked
// through the warden CLI.
//
// The tests need the Node.js packages of test/package.json (`make deps`).
// WARDEN_BIN names a prebuilt binary (`make e2e` passes bin/warden);
// without it the test builds one (with -race when the test itself runs
// under the race detector).
package e2e
