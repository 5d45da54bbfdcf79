// The MCP clients of the upstream-credentials run (TestUpstreamCredentials),
// against two servers behind the Envoy-faithful harness and Warden:
// "exch" (credential mode exchange: the upstream takes only a token the IdP
// minted for its audience) and "prov" (credential mode provider: the user's
// own token at a third-party provider, connected through a URL
// elicitation).
//
//   1. the v1 SDK (@modelcontextprotocol/sdk 1.32.2, MCP 2025-11-25): the
//      exchange call; on prov the lists, then a tools/call answered with
//      -32042, surfaced by the SDK as UrlElicitationRequiredError; the test
//      plays the browser for the URL; the call is retried and succeeds;
//   2. the test revokes the account, so that the next client meets the
//      elicitation again;
//   3. the v2 SDK (@modelcontextprotocol/client, pinned to 2026-07-28): the
//      same, where Warden's answer is an input_required result holding a
//      URL-mode elicitation/create: the SDK's multi-round-trip driver hands
//      it to the elicitation handler this client registers (the user
//      "opens" the URL there), then retries the call by itself.
//
// Both clients use the access handle the Go test signed in for (one grant
// for both servers; the sign-in itself is test/e2e/client.mjs's subject).
//
// Protocol with the Go test, one JSON object per line on stdin/stdout:
//   -> {"event":"connect","url":...,"version":...}  <- {"ok":true}
//   -> {"event":"revoke"}                           <- {"ok":true}
//   -> {"event":"done",...}
//
// Usage: node credentials_client.mjs '{"baseUrl": "...", "handle": "...", "clientId": "..."}'
import { Client as ModernClient, StreamableHTTPClientTransport as ModernTransport } from '@modelcontextprotocol/client';
import { Client as LegacyClient } from '@modelcontextprotocol/sdk/client/index.js';
import { StreamableHTTPClientTransport as LegacyTransport } from '@modelcontextprotocol/sdk/client/streamableHttp.js';
import { UrlElicitationRequiredError } from '@modelcontextprotocol/sdk/types.js';
import { memoryProvider } from '../sdk_provider.mjs';
import { say, ask, text, describeError } from '../script_io.mjs';

const { baseUrl, handle, clientId } = JSON.parse(process.argv[2]);


// ---- every HTTP exchange, in order, with what the answer was ----
let phase = 'legacy';
const exchanges = [];
async function recordingFetch(input, init = {}) {
  const url = new URL(input instanceof Request ? input.url : input);
  const headers = new Headers(init.headers ?? (input instanceof Request ? input.headers : undefined));
  const ex = {
    phase,
    method: init.method ?? (input instanceof Request ? input.method : 'GET'),
    path: url.pathname,
    version: headers.get('mcp-protocol-version') ?? '',
  };
  if (typeof init.body === 'string' && init.body.startsWith('{')) {
    try {
      const msg = JSON.parse(init.body);
      ex.rpcMethod = msg.method;
      ex.inputResponses = Object.keys(msg.params?.inputResponses ?? {});
    } catch { /* not JSON-RPC */ }
  }
  exchanges.push(ex);
  const res = await fetch(input, init);
  ex.status = res.status;
  if ((res.headers.get('content-type') || '').startsWith('application/json')) {
    try {
      const msg = await res.clone().json();
      ex.resultType = msg.result?.resultType ?? '';
      ex.errorCode = msg.error?.code ?? 0;
    } catch { /* an empty body */ }
  }
  return res;
}

// The handle is already held: the SDK attaches it and never needs to
// authorize (a 401 would send it to redirectToAuthorization, which the
// test would see as a failure: no "authorize" event exists here).
const { provider, state } = memoryProvider({
  clientName: 'Warden e2e credentials',
  redirectUrl: 'http://127.0.0.1:9/cb',
  statePrefix: 'cred',
});
state.clientInformation = { client_id: clientId };
state.tokens = { access_token: handle, token_type: 'Bearer' };



const out = { legacy: {}, modern: {} };

// ---- 1. MCP 2025-11-25 with the v1 SDK ----
async function legacyClient(server) {
  const transport = new LegacyTransport(new URL(`${baseUrl}/mcp/${server}`), { authProvider: provider, fetch: recordingFetch });
  const client = new LegacyClient({ name: 'warden-e2e-cred-legacy', version: '1.32.2' }, { capabilities: { elicitation: { url: {} } } });
  await client.connect(transport);
  return { client, transport };
}
{
  const { client, transport } = await legacyClient('exch');
  out.legacy.protocolVersion = transport.protocolVersion;
  out.legacy.exch = text(await client.callTool({ name: 'whoami', arguments: {} }));
  await client.close();
}
{
  const { client } = await legacyClient('prov');
  out.legacy.tools = (await client.listTools()).tools.map((t) => t.name).sort();
  try {
    await client.callTool({ name: 'whoami', arguments: {} });
    out.legacy.elicitation = { unexpected: 'the call went through without an account' };
  } catch (err) {
    if (!(err instanceof UrlElicitationRequiredError)) throw err;
    out.legacy.elicitation = { code: err.code, elicitations: err.elicitations };
    const [e] = err.elicitations;
    await ask({ event: 'connect', url: e.url, version: '2025-11-25' });
  }
  phase = 'legacy-retry';
  out.legacy.prov = text(await client.callTool({ name: 'whoami', arguments: {} }));
  await client.close();
}

// ---- 2. the account goes, so the next client is asked again ----
await ask({ event: 'revoke' });

// ---- 3. MCP 2026-07-28 with the v2 SDK ----
phase = 'modern';
const elicited = [];
function modernClient(server) {
  const transport = new ModernTransport(new URL(`${baseUrl}/mcp/${server}`), { authProvider: provider, fetch: recordingFetch });
  const client = new ModernClient({ name: 'warden-e2e-cred-modern', version: '2.4.0-e2e' }, {
    capabilities: { elicitation: { url: {} } },
    versionNegotiation: { mode: { pin: '2026-07-28' } },
  });
  // The URL-mode elicitation handler: a real client shows the URL and
  // asks for consent to open it; here the test's browser opens it, and
  // "accept" tells the SDK to retry the original request.
  client.setRequestHandler('elicitation/create', async (request) => {
    elicited.push(request.params);
    if (request.params.mode !== 'url') return { action: 'decline' };
    await ask({ event: 'connect', url: request.params.url, version: '2026-07-28' });
    phase = 'modern-retry';
    return { action: 'accept' };
  });
  return { client, transport };
}
{
  const { client, transport } = modernClient('exch');
  await client.connect(transport);
  out.modern.protocolVersion = transport.protocolVersion ?? '';
  out.modern.exch = text(await client.callTool({ name: 'whoami', arguments: {} }));
  await client.close();
}
{
  const { client, transport } = modernClient('prov');
  await client.connect(transport);
  out.modern.tools = (await client.listTools()).tools.map((t) => t.name).sort();
  try {
    out.modern.prov = text(await client.callTool({ name: 'whoami', arguments: {} }));
  } catch (err) {
    out.modern.error = describeError(err);
  }
  out.modern.elicited = elicited;
  await client.close();
}

out.exchanges = exchanges;
say({ event: 'done', ...out });
process.exit(0);
