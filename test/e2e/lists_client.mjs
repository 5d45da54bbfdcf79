// The response path as the official MCP TypeScript SDKs see it: the v2
// client (@modelcontextprotocol/client, pinned to 2026-07-28) and the v1
// client (@modelcontextprotocol/sdk 1.32.2, 2025-11-25), each with a
// pre-issued handle, against test/mcpserver servers (one answering SSE, one
// JSON, both paginating) behind the Envoy-faithful harness and Warden with
// tool pinning in block mode. Per server:
//
//   lists:    tools, prompts, resources and resource templates, every page
//             (v2 walks the cursor itself, v1 is given each nextCursor);
//             getPrompt / readResource of allowed and hidden items;
//   changed:  after the test changed a tool's description upstream: the
//             lists and a call of the changed tool;
//   approved: after `warden tools approve`: the same.
//
// Every HTTP exchange is recorded with the items of each list page as they
// crossed the wire (after Warden) and the response's content type.
//
// Protocol with the Go test, one JSON object per line on stdin/stdout:
//   -> {"event":"change","server":...}   <- {}   the test changes echo
//   -> {"event":"approve","server":...}  <- {}   the test approves it
//   -> {"event":"done",...}
//
// Usage: node lists_client.mjs '{"servers": [{"name", "url", "handle"}]}'
import { Client as ModernClient, StreamableHTTPClientTransport as ModernTransport } from '@modelcontextprotocol/client';
import { Client as LegacyClient } from '@modelcontextprotocol/sdk/client/index.js';
import { StreamableHTTPClientTransport as LegacyTransport } from '@modelcontextprotocol/sdk/client/streamableHttp.js';
import { say, ask, text, describeError } from '../script_io.mjs';

const { servers } = JSON.parse(process.argv[2]);

// The key naming a list's items, and the field naming one item.
const listItems = {
  'tools/list': ['tools', 'name'],
  'prompts/list': ['prompts', 'name'],
  'resources/list': ['resources', 'uri'],
  'resources/templates/list': ['resourceTemplates', 'uriTemplate'],
};

// rpcResult finds the JSON-RPC response to id in a body that is either one
// JSON object or an SSE stream of them.
function rpcResult(body, id) {
  const msgs = [];
  if (body.trimStart().startsWith('{')) {
    msgs.push(JSON.parse(body));
  } else {
    for (const event of body.split(/\r?\n\r?\n/)) {
      const data = event.split(/\r?\n/).filter((l) => l.startsWith('data:')).map((l) => l.slice(5).trimStart()).join('\n');
      if (data) msgs.push(JSON.parse(data));
    }
  }
  return msgs.find((m) => m.id === id && ('result' in m || 'error' in m));
}

// ---- every HTTP exchange, in order ----
let phase = 'connect';
let who = '';
const exchanges = [];
const reading = [];
async function recordingFetch(input, init = {}) {
  const url = new URL(input instanceof Request ? input.url : input);
  const method = init.method ?? (input instanceof Request ? input.method : 'GET');
  const ex = { phase, client: who, method, path: url.pathname };
  let msg;
  if (typeof init.body === 'string' && init.body.startsWith('{')) {
    try {
      msg = JSON.parse(init.body);
      ex.rpcMethod = msg.method;
      ex.cursor = msg.params?.cursor !== undefined;
      ex.version = new Headers(init.headers).get('mcp-protocol-version') ?? '';
    } catch { /* not JSON-RPC */ }
  }
  exchanges.push(ex);
  const res = await fetch(input, init);
  ex.status = res.status;
  ex.contentType = (res.headers.get('content-type') || '').split(';')[0];
  const list = listItems[msg?.method];
  if (list && res.status === 200) {
    // The page as Warden let it through, read from a copy of the body
    // while the SDK reads the original.
    reading.push(res.clone().text().then((body) => {
      const r = rpcResult(body, msg.id);
      if (!r?.result) {
        ex.pageError = r?.error ?? `no response to ${msg.id}`;
        return;
      }
      ex.page = (r.result[list[0]] ?? []).map((it) => it[list[1]]);
      ex.nextCursor = Boolean(r.result.nextCursor);
      ex.cacheScope = r.result.cacheScope ?? '';
    }));
  }
  return res;
}

async function refused(what) {
  try {
    await what();
    return { unexpected: 'allowed' };
  } catch (err) {
    return describeError(err);
  }
}

const sorted = (items, key) => items.map((it) => it[key]).sort();

// The v2 client walks every page when a list verb is called without a
// cursor; the v1 client is handed each nextCursor.
async function allPages(client, verb, key) {
  if (client instanceof ModernClient) return (await client[verb]())[key];
  const items = [];
  let cursor;
  do {
    const page = await client[verb](cursor === undefined ? undefined : { cursor });
    items.push(...page[key]);
    cursor = page.nextCursor;
  } while (cursor);
  return items;
}

async function connect(kind, server) {
  const requestInit = { headers: { authorization: `Bearer ${server.handle}` } };
  if (kind === 'v2') {
    const client = new ModernClient({ name: 'warden-e2e-lists', version: '2.4.0-e2e' }, {
      capabilities: {},
      versionNegotiation: { mode: { pin: '2026-07-28' } },
    });
    await client.connect(new ModernTransport(new URL(server.url), { fetch: recordingFetch, requestInit }));
    return client;
  }
  const client = new LegacyClient({ name: 'warden-e2e-lists-legacy', version: '1.32.2' }, { capabilities: {} });
  await client.connect(new LegacyTransport(new URL(server.url), { fetch: recordingFetch, requestInit }));
  return client;
}

const results = {};
for (const server of servers) {
  const res = {};
  results[server.name] = res;
  const clients = {};
  for (const kind of ['v2', 'v1']) {
    who = kind;
    phase = 'connect';
    clients[kind] = await connect(kind, server);
    res[kind] = {};
  }

  phase = 'lists';
  for (const [kind, client] of Object.entries(clients)) {
    who = kind;
    const r = res[kind];
    r.tools = sorted(await allPages(client, 'listTools', 'tools'), 'name');
    r.prompts = sorted(await allPages(client, 'listPrompts', 'prompts'), 'name');
    r.resources = sorted(await allPages(client, 'listResources', 'resources'), 'uri');
    r.templates = sorted(await allPages(client, 'listResourceTemplates', 'resourceTemplates'), 'uriTemplate');
    r.greet = (await client.getPrompt({ name: 'greet' })).messages.map((m) => m.content.text).join('');
    r.readme = (await client.readResource({ uri: 'file:///teams/data/readme.md' })).contents.map((c) => c.text).join('');
    r.dataNote = (await client.readResource({ uri: 'file:///teams/data/notes/today' })).contents.map((c) => c.text).join('');
    r.hiddenPrompt = await refused(() => client.getPrompt({ name: 'admin_briefing' }));
    r.hiddenResource = await refused(() => client.readResource({ uri: 'file:///teams/admin/payroll.md' }));
    r.hiddenTemplated = await refused(() => client.readResource({ uri: 'file:///teams/admin/notes/today' }));
  }

  await ask({ event: 'change', server: server.name });
  phase = 'changed';
  for (const [kind, client] of Object.entries(clients)) {
    who = kind;
    res[kind].toolsChanged = sorted(await allPages(client, 'listTools', 'tools'), 'name');
    res[kind].echoChanged = await refused(() => client.callTool({ name: 'echo', arguments: {} }));
  }

  await ask({ event: 'approve', server: server.name });
  phase = 'approved';
  for (const [kind, client] of Object.entries(clients)) {
    who = kind;
    res[kind].toolsApproved = sorted(await allPages(client, 'listTools', 'tools'), 'name');
    res[kind].echoApproved = text(await client.callTool({ name: 'echo', arguments: {} }));
  }
  for (const client of Object.values(clients)) await client.close();
}

await Promise.all(reading);
say({ event: 'done', results, exchanges });
process.exit(0);
