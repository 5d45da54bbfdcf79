// The MCP client of the multi-replica run: the official MCP TypeScript SDK
// (Client + StreamableHTTPClientTransport with an OAuthClientProvider),
// pointed at an MCP server behind the Envoy-faithful harness, which
// balances Warden's OAuth endpoints and its ext_authz service over three
// replicas.
//
// It talks to the Go test over stdin/stdout, one JSON object per line:
//   -> {"event":"authorize","url":...}  the test's headless browser signs the
//   <- {"callback":...}                 user in and hands back the redirect
//   -> {"event":"mark","phase":...}     a phase is about to start; the test
//   <- {}                               reads every replica's metrics first
//   -> {"event":"done",...}             what the client saw
//
// Phases: "signin" (401, discovery, registration, authorization code),
// "refresh" (the SDK's auth() with the refresh handle it holds), "tools"
// (tool calls with the refreshed handle).
//
// Usage: node replicas/client.mjs '{"serverUrl": "...", "redirectUrl": "...", "calls": 6}'
import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { StreamableHTTPClientTransport } from '@modelcontextprotocol/sdk/client/streamableHttp.js';
import { UnauthorizedError, auth } from '@modelcontextprotocol/sdk/client/auth.js';
import { memoryProvider } from '../sdk_provider.mjs';
import { say, ask, text } from '../script_io.mjs';

const { serverUrl, redirectUrl, calls } = JSON.parse(process.argv[2]);


let phase = 'signin';
const exchanges = [];
async function recordingFetch(input, init = {}) {
  const url = new URL(input instanceof Request ? input.url : input);
  const method = init.method ?? (input instanceof Request ? input.method : 'GET');
  const ex = { phase, method, origin: url.origin, path: url.pathname };
  if (init.body instanceof URLSearchParams) ex.grantType = init.body.get('grant_type');
  exchanges.push(ex);
  const res = await fetch(input, init);
  ex.status = res.status;
  return res;
}

const { provider, state } = memoryProvider({ clientName: 'Warden replicas (MCP TypeScript SDK)', redirectUrl, statePrefix: 'replicas' });

function newClient() {
  const transport = new StreamableHTTPClientTransport(new URL(serverUrl), { authProvider: provider, fetch: recordingFetch });
  const client = new Client({ name: 'warden-replicas', version: '1.0.0' }, { capabilities: {} });
  return { client, transport };
}


const out = {};
await ask({ event: 'mark', phase: 'signin' });
let c = newClient();
try {
  await c.client.connect(c.transport);
  throw new Error('the server let an unauthenticated client in');
} catch (err) {
  if (!(err instanceof UnauthorizedError) || !state.authorizationUrl) throw err;
}
const { callback } = await ask({ event: 'authorize', url: state.authorizationUrl.toString() });
const cb = new URL(callback);
if (cb.searchParams.get('state') !== state.oauthState) throw new Error('authorization response carries another state');
await c.transport.finishAuth(cb.searchParams.get('code'));
out.signInToken = state.tokens.access_token;

phase = 'refresh';
await ask({ event: 'mark', phase: 'refresh' });
out.refreshResult = await auth(provider, { serverUrl, fetchFn: recordingFetch });
out.refreshedToken = state.tokens.access_token;

phase = 'tools';
await ask({ event: 'mark', phase: 'tools' });
c = newClient();
await c.client.connect(c.transport);
out.whoami = text(await c.client.callTool({ name: 'whoami', arguments: {} }));
out.echoes = [];
for (let i = 0; i < calls; i += 1) {
  out.echoes.push(text(await c.client.callTool({ name: 'echo', arguments: { message: `call ${i}` } })));
}
await c.client.close();

out.exchanges = exchanges;
out.heldAccessTokens = state.heldAccessTokens;
say({ event: 'done', ...out });
process.exit(0);
