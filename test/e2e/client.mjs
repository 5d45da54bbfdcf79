// The MCP client of the end-to-end run: the official MCP TypeScript SDK
// (Client + StreamableHTTPClientTransport with an OAuthClientProvider),
// pointed at an MCP server behind the Envoy-faithful harness and Warden.
//
// It talks to the Go test over stdin/stdout, one JSON object per line:
//   -> {"event":"authorize","url":...}  the test's headless browser signs the
//   <- {"callback":...}                 user in at the IdP and answers Warden's
//                                       consent page, then hands back the redirect
//   -> {"event":"revoke","sub":...}     the test revokes the user with the CLI
//   <- {"revoked":true}
//   -> {"event":"done",...}             everything the client saw
// Every HTTP exchange the SDK makes is recorded (method, path, status,
// content type, JSON-RPC method and id, OAuth grant type, phase).
//
// Usage: node client.mjs '{"serverUrl": "...", "redirectUrl": "..."}'
import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { StreamableHTTPClientTransport } from '@modelcontextprotocol/sdk/client/streamableHttp.js';
import { UnauthorizedError } from '@modelcontextprotocol/sdk/client/auth.js';
import { memoryProvider } from '../sdk_provider.mjs';
import { say, ask, text, describeError } from '../script_io.mjs';

const { serverUrl, redirectUrl } = JSON.parse(process.argv[2]);

// ---- every HTTP exchange, in order ----
let phase = 'connect';
const exchanges = [];
async function recordingFetch(input, init = {}) {
  const url = new URL(input instanceof Request ? input.url : input);
  const method = init.method ?? (input instanceof Request ? input.method : 'GET');
  const ex = { phase, method, origin: url.origin, path: url.pathname };
  if (typeof init.body === 'string' && init.body.startsWith('{')) {
    try {
      const msg = JSON.parse(init.body);
      ex.rpcMethod = msg.method;
      ex.rpcId = msg.id;
    } catch { /* not JSON-RPC */ }
  } else if (init.body instanceof URLSearchParams) {
    ex.grantType = init.body.get('grant_type');
  }
  exchanges.push(ex);
  const res = await fetch(input, init);
  ex.status = res.status;
  ex.contentType = (res.headers.get('content-type') || '').split(';')[0];
  return res;
}

// ---- the OAuth client provider (headless: the test plays the browser) ----
const invalidations = [];
const { provider, state } = memoryProvider({
  clientName: 'Warden e2e (MCP TypeScript SDK)',
  redirectUrl,
  statePrefix: 'e2e',
  onInvalidate: (scope) => invalidations.push({ phase, scope }),
});

const progress = [];
function newClient() {
  const transport = new StreamableHTTPClientTransport(new URL(serverUrl), { authProvider: provider, fetch: recordingFetch });
  const client = new Client({ name: 'warden-e2e', version: '1.0.0' }, { capabilities: {} });
  return { client, transport };
}

// connect initializes a session, walking the authorization flow first when
// the server answers 401.
async function connect() {
  let c = newClient();
  try {
    await c.client.connect(c.transport);
    return c;
  } catch (err) {
    if (!(err instanceof UnauthorizedError) || !state.authorizationUrl) throw err;
  }
  const { callback } = await ask({ event: 'authorize', url: state.authorizationUrl.toString() });
  const cb = new URL(callback);
  if (cb.searchParams.get('error')) throw new Error(`authorization refused: ${cb.searchParams.get('error')}`);
  if (cb.searchParams.get('state') !== state.oauthState) throw new Error('authorization response carries another state');
  await c.transport.finishAuth(cb.searchParams.get('code'));
  c = newClient();
  await c.client.connect(c.transport);
  return c;
}

// untilExpired waits until the access handle the client holds has expired.
async function untilExpired() {
  const left = state.tokensSavedAt + (state.tokens.expires_in + 1) * 1000 - Date.now();
  await new Promise((r) => { setTimeout(r, Math.max(left, 0)); });
}

// waitFor polls until cond() holds (the SDK opens the GET stream in the
// background after initialization).
async function waitFor(what, cond) {
  for (let i = 0; i < 600; i += 1) {
    if (cond()) return;
    await new Promise((r) => { setTimeout(r, 25); });
  }
  throw new Error(`timed out waiting for ${what}`);
}
const getStreamOpen = (p) => () => exchanges.some((e) => e.phase === p && e.method === 'GET' && e.status === 200);

const out = {};

// 1. Sign in and use the server.
let { client, transport } = await connect();
out.clientId = state.clientInformation.client_id;
out.serverInfo = client.getServerVersion();
out.protocolVersion = transport.protocolVersion;
phase = 'use';
await waitFor('the GET stream', getStreamOpen('connect'));
out.tools = (await client.listTools()).tools.map((t) => t.name).sort();
out.whoami = text(await client.callTool({ name: 'whoami', arguments: {} }));
out.echo = text(await client.callTool({ name: 'echo', arguments: { message: 'hello through Warden' } }));
try {
  await client.callTool({ name: 'run_sql', arguments: { query: 'DROP TABLE customers' } });
  out.denied = { unexpected: 'the call was allowed' };
} catch (err) {
  out.denied = describeError(err);
  out.deniedRequestId = exchanges.findLast((e) => e.rpcMethod === 'tools/call').rpcId;
}
out.sql = text(await client.callTool({ name: 'run_sql', arguments: { query: 'SELECT count(*) FROM customers' } }));
out.resource = (await client.readResource({ uri: 'file:///teams/data/readme.md' })).contents.map((c) => c.text).join('');
out.prompt = (await client.getPrompt({ name: 'greet' })).messages.map((m) => m.content.text).join('');

// 2. A server-initiated stream: progress notifications arrive on the
// POST's SSE response while the call runs.
phase = 'stream';
const countdown = await client.callTool({ name: 'countdown', arguments: { n: 5 } }, undefined, {
  onprogress: (p) => { progress.push({ progress: p.progress, total: p.total }); },
});
out.countdown = text(countdown);
out.progress = progress;

// 3. The access handle expires; the SDK refreshes on the 401 and goes on.
phase = 'refresh';
const issued = state.heldAccessTokens.length;
await untilExpired();
out.whoamiAfterRefresh = text(await client.callTool({ name: 'whoami', arguments: {} }));
out.refreshed = state.heldAccessTokens.length - issued;

// 4. Session DELETE: the upstream ends the session, so a request that
// still names it is refused by the server itself (404).
phase = 'delete';
const oldSession = transport.sessionId;
await transport.terminateSession();
out.sessionAfterDelete = transport.sessionId ?? null;
const stale = await recordingFetch(serverUrl, {
  method: 'POST',
  headers: {
    authorization: `Bearer ${state.tokens.access_token}`,
    'content-type': 'application/json',
    accept: 'application/json, text/event-stream',
    'mcp-session-id': oldSession,
    'mcp-protocol-version': transport.protocolVersion,
  },
  body: JSON.stringify({ jsonrpc: '2.0', id: 99, method: 'tools/list' }),
});
out.staleSessionStatus = stale.status;
await stale.body?.cancel();
await client.close();

// 5. A new session, then the user is revoked with the CLI: the very next
// call is refused with 401, the refresh handle is dead too, and the SDK
// falls back to asking the user to sign in again.
phase = 'reconnect';
({ client, transport } = await connect());
await waitFor('the GET stream', getStreamOpen('reconnect'));
out.whoamiReconnected = text(await client.callTool({ name: 'whoami', arguments: {} }));
const sub = /sub=(\S+)/.exec(out.whoamiReconnected)?.[1];
// The revocation, not the handle's expiry, must be what refuses the next
// call: revoke while the handle is young (on a slow machine, let it expire
// and refresh first).
out.refreshedBeforeRevoke = false;
if (Date.now() - state.tokensSavedAt > (state.tokens.expires_in * 1000) / 2) {
  await untilExpired();
  await client.callTool({ name: 'whoami', arguments: {} });
  out.refreshedBeforeRevoke = true;
}
await ask({ event: 'revoke', sub });
phase = 'revoked';
const redirectsBefore = state.authorizationUrl.toString();
try {
  await client.callTool({ name: 'echo', arguments: { message: 'after revocation' } });
  out.afterRevoke = { unexpected: 'the call was allowed' };
} catch (err) {
  out.afterRevoke = describeError(err);
}
out.reauthorizationRequested = state.authorizationUrl.toString() !== redirectsBefore;
await client.close();

out.invalidations = invalidations;
out.exchanges = exchanges;
out.heldAccessTokens = state.heldAccessTokens;
say({ event: 'done', ...out });
process.exit(0);
