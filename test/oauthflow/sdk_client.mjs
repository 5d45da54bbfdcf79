// Drives the official MCP TypeScript SDK's OAuth client (client/auth.js
// auth()) against Warden: discovery from the MCP server URL, dynamic client
// registration, authorization with PKCE and the resource indicator, the
// code exchange and a refresh. The "browser" is headless: fetch with
// redirect:'manual', a cookie jar, and a form post for Warden's consent
// page; the IdP (oidc-provider) signs the user in without a form.
//
// Usage: node sdk_client.mjs '{"serverUrl": "...", "redirectUrl": "..."}'
// Prints one JSON object with what happened on stdout.
import { auth } from '@modelcontextprotocol/sdk/client/auth.js';
import { memoryProvider } from '../sdk_provider.mjs';

const { serverUrl, redirectUrl } = JSON.parse(process.argv[2]);

const jar = new Map(); // host:port -> Map(cookie name -> value)

function remember(url, res) {
  const host = new URL(url).host;
  if (!jar.has(host)) jar.set(host, new Map());
  for (const sc of res.headers.getSetCookie()) {
    const [pair, ...attrs] = sc.split(';');
    const eq = pair.indexOf('=');
    const name = pair.slice(0, eq).trim();
    const value = pair.slice(eq + 1).trim();
    const expired = attrs.some((a) => /^\s*max-age=0\s*$/i.test(a) || (/^\s*expires=/i.test(a) && new Date(a.split('=')[1]) < new Date()));
    if (expired || value === '') jar.get(host).delete(name);
    else jar.get(host).set(name, value);
  }
}

function cookieHeader(url) {
  const c = jar.get(new URL(url).host);
  return c && c.size ? [...c].map(([k, v]) => `${k}=${v}`).join('; ') : undefined;
}

// browse follows the flow until a redirect to the client's redirect URI.
async function browse(start, stopPrefix) {
  let url = start;
  let method = 'GET';
  let body;
  const visited = [];
  for (let i = 0; i < 30; i += 1) {
    visited.push(`${method} ${url.split('?')[0]}`);
    const headers = {};
    const cookie = cookieHeader(url);
    if (cookie) headers.cookie = cookie;
    if (body) headers['content-type'] = 'application/x-www-form-urlencoded';
    const res = await fetch(url, { method, headers, body, redirect: 'manual' });
    remember(url, res);
    if (res.status >= 300 && res.status < 400) {
      const next = new URL(res.headers.get('location'), url).toString();
      if (next.startsWith(stopPrefix)) return { callback: next, visited };
      url = next;
      method = 'GET';
      body = undefined;
      continue;
    }
    const text = await res.text();
    const action = text.match(/<form method="post" action="([^"]+)">/);
    if (res.status === 200 && action && text.includes('name="csrf"')) {
      const form = new URLSearchParams();
      for (const m of text.matchAll(/<input type="hidden" name="([a-z_]+)" value="([^"]*)">/g)) form.set(m[1], m[2]);
      form.set('decision', 'approve');
      url = new URL(action[1], url).toString();
      method = 'POST';
      body = form.toString();
      continue;
    }
    throw new Error(`browser stuck at ${url}: ${res.status} ${text.slice(0, 400)}`);
  }
  throw new Error('too many redirects');
}

const { provider, state } = memoryProvider({ clientName: 'MCP TypeScript SDK (Warden test)', redirectUrl, statePrefix: 'sdk' });

const out = { steps: [] };
out.steps.push(await auth(provider, { serverUrl }));
if (!state.authorizationUrl) throw new Error('the SDK did not start an authorization');
out.authorizationUrl = state.authorizationUrl.toString();
const { callback, visited } = await browse(out.authorizationUrl, redirectUrl);
out.visited = visited;
const cb = new URL(callback);
out.callbackState = cb.searchParams.get('state');
out.callbackIss = cb.searchParams.get('iss');
if (cb.searchParams.get('error')) throw new Error(`authorization failed: ${cb.searchParams.get('error')} ${cb.searchParams.get('error_description')}`);
out.steps.push(await auth(provider, { serverUrl, authorizationCode: cb.searchParams.get('code') }));
out.clientId = state.clientInformation.client_id;
out.first = state.tokens;
// With a refresh token stored, auth() refreshes instead of redirecting.
out.steps.push(await auth(provider, { serverUrl }));
out.second = state.tokens;
process.stdout.write(`${JSON.stringify(out)}\n`);
