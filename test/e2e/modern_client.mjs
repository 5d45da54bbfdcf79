// The MCP clients of the 2026-07-28 end-to-end run, against a server that
// speaks both revisions (test/mcpserver, stateless) behind the
// Envoy-faithful harness and Warden:
//
//   1. the MCP TypeScript SDK v2 client (@modelcontextprotocol/client),
//      pinned to protocol revision 2026-07-28: sign-in, server/discover,
//      allowed and denied calls, an x-mcp-header tool, and a step-up
//      (403 insufficient_scope -> re-authorization with the new scope ->
//      the call succeeds);
//   2. raw requests shaped as the spec's examples with mismatched headers
//      (Warden answers 400 / -32020) and a GET (the server answers 405);
//   3. the v1 SDK (@modelcontextprotocol/sdk 1.32.2), which speaks
//      2025-11-25, with the same tokens: allowed and denied calls.
//
// Protocol with the Go test, one JSON object per line on stdin/stdout:
//   -> {"event":"authorize","url":...}   <- {"callback":...}
//   -> {"event":"done",...}
//
// Usage: node modern_client.mjs '{"serverUrl": "...", "redirectUrl": "..."}'
import { Client as ModernClient, StreamableHTTPClientTransport as ModernTransport, UnauthorizedError as ModernUnauthorized } from '@modelcontextprotocol/client';
import { Client as LegacyClient } from '@modelcontextprotocol/sdk/client/index.js';
import { StreamableHTTPClientTransport as LegacyTransport } from '@modelcontextprotocol/sdk/client/streamableHttp.js';
import { memoryProvider } from '../sdk_provider.mjs';
import { say, ask, text, describeError } from '../script_io.mjs';

const { serverUrl, redirectUrl } = JSON.parse(process.argv[2]);

// ---- every HTTP exchange, in order, with the MCP headers it carried ----
let phase = 'connect';
const exchanges = [];
async function recordingFetch(input, init = {}) {
  const url = new URL(input instanceof Request ? input.url : input);
  const method = init.method ?? (input instanceof Request ? input.method : 'GET');
  const headers = new Headers(init.headers ?? (input instanceof Request ? input.headers : undefined));
  const ex = {
    phase, method, path: url.pathname,
    version: headers.get('mcp-protocol-version') ?? '',
    mcpMethod: headers.get('mcp-method') ?? '',
    mcpName: headers.get('mcp-name') ?? '',
    paramRegion: headers.get('mcp-param-region') ?? '',
  };
  if (typeof init.body === 'string' && init.body.startsWith('{')) {
    try {
      const msg = JSON.parse(init.body);
      ex.rpcMethod = msg.method;
      ex.rpcId = msg.id;
      ex.clientName = msg.params?._meta?.['io.modelcontextprotocol/clientInfo']?.name ?? '';
    } catch { /* not JSON-RPC */ }
  } else if (init.body instanceof URLSearchParams) {
    ex.grantType = init.body.get('grant_type');
  }
  exchanges.push(ex);
  const res = await fetch(input, init);
  ex.status = res.status;
  ex.contentType = (res.headers.get('content-type') || '').split(';')[0];
  if (res.status === 403) ex.wwwAuthenticate = res.headers.get('www-authenticate') ?? '';
  return res;
}

const { provider, state } = memoryProvider({
  clientName: 'Warden e2e 2026-07-28 (MCP TypeScript SDK v2)',
  redirectUrl,
  statePrefix: 'modern',
});

// signIn hands the authorization URL the SDK chose to the test's browser
// and completes the code exchange on the transport.
const authorizationUrls = [];
async function signIn(transport) {
  const url = state.authorizationUrl.toString();
  authorizationUrls.push(url);
  const { callback } = await ask({ event: 'authorize', url });
  const cb = new URL(callback);
  if (cb.searchParams.get('error')) throw new Error(`authorization refused: ${cb.searchParams.get('error')}`);
  if (cb.searchParams.get('state') !== state.oauthState) throw new Error('authorization response carries another state');
  // v2 checks the callback's iss against the issuer (RFC 9207).
  await transport.finishAuth(cb.searchParams);
}

function modernClient() {
  const transport = new ModernTransport(new URL(serverUrl), { authProvider: provider, fetch: recordingFetch });
  const client = new ModernClient({ name: 'warden-e2e-modern', version: '2.4.0-e2e' }, {
    capabilities: {},
    versionNegotiation: { mode: { pin: '2026-07-28' } },
  });
  return { client, transport };
}

const out = {};

// ---- 1. the 2026-07-28 client ----
let { client, transport } = modernClient();
try {
  await client.connect(transport);
} catch (err) {
  if (!(err instanceof ModernUnauthorized) || !state.authorizationUrl) throw err;
  await signIn(transport);
  ({ client, transport } = modernClient());
  await client.connect(transport);
}
out.clientId = state.clientInformation.client_id;
out.serverVersion = client.getServerVersion();
phase = 'use';
out.tools = (await client.listTools()).tools.map((t) => t.name).sort();
out.echo = text(await client.callTool({ name: 'echo', arguments: { message: 'hello from 2026-07-28' } }));
out.whoami = text(await client.callTool({ name: 'whoami', arguments: {} }));
out.region = text(await client.callTool({ name: 'region_info', arguments: { region: 'eu-west1' } }));
try {
  await client.callTool({ name: 'run_sql', arguments: { query: 'DROP TABLE customers' } });
  out.denied = { unexpected: 'the call was allowed' };
} catch (err) {
  out.denied = describeError(err);
}

// Step-up: Warden answers 403 insufficient_scope naming data:write; the
// SDK re-authorizes with the union of its scopes and the challenged one.
phase = 'step-up';
const before = state.authorizationUrl.toString();
try {
  out.noteBeforeStepUp = text(await client.callTool({ name: 'write_note', arguments: { text: 'first' } }));
} catch (err) {
  out.stepUpError = describeError(err);
  if (state.authorizationUrl.toString() === before) throw err;
  await signIn(transport);
}
phase = 'after-step-up';
out.note = text(await client.callTool({ name: 'write_note', arguments: { text: 'after step-up' } }));
out.whoamiAfterStepUp = text(await client.callTool({ name: 'whoami', arguments: {} }));
out.scopeAfterStepUp = state.tokens.scope ?? '';
await client.close();

// ---- 2. held-back requests shaped as the spec's examples ----
phase = 'raw';
const meta = {
  'io.modelcontextprotocol/protocolVersion': '2026-07-28',
  'io.modelcontextprotocol/clientInfo': { name: 'ExampleClient', version: '1.0.0' },
  'io.modelcontextprotocol/clientCapabilities': {},
};
async function raw(headers, body, method = 'POST') {
  const res = await recordingFetch(serverUrl, {
    method,
    headers: {
      authorization: `Bearer ${state.tokens.access_token}`,
      'content-type': 'application/json',
      accept: 'application/json, text/event-stream',
      'mcp-protocol-version': '2026-07-28',
      ...headers,
    },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  const textBody = await res.text();
  let json;
  try { json = JSON.parse(textBody); } catch { /* not JSON */ }
  return { status: res.status, body: json };
}
const weather = { jsonrpc: '2.0', id: 41, method: 'tools/call', params: { name: 'echo', arguments: { message: 'x' }, _meta: meta } };
out.raw = {
  mismatchedName: await raw({ 'mcp-method': 'tools/call', 'mcp-name': 'whoami' }, weather),
  missingMethod: await raw({ 'mcp-name': 'echo' }, weather),
  base64Name: await raw({ 'mcp-method': 'tools/call', 'mcp-name': '=?base64?ZWNobw==?=' }, weather),
  get: await raw({}, undefined, 'GET'),
};

// ---- 3. a 2025-11-25 client with the same tokens ----
phase = 'legacy';
const legacyTransport = new LegacyTransport(new URL(serverUrl), { authProvider: provider, fetch: recordingFetch });
const legacy = new LegacyClient({ name: 'warden-e2e-legacy', version: '1.32.2' }, { capabilities: {} });
await legacy.connect(legacyTransport);
out.legacyProtocolVersion = legacyTransport.protocolVersion;
out.legacyEcho = text(await legacy.callTool({ name: 'echo', arguments: { message: 'hello from 2025-11-25' } }));
try {
  await legacy.callTool({ name: 'run_sql', arguments: { query: 'drop table customers' } });
  out.legacyDenied = { unexpected: 'the call was allowed' };
} catch (err) {
  out.legacyDenied = describeError(err);
}
await legacy.close();

out.authorizationUrls = authorizationUrls;
out.exchanges = exchanges;
say({ event: 'done', ...out });
process.exit(0);
