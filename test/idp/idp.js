// A real OpenID Provider for Warden's tests, built on the certified
// oidc-provider package. It listens on 127.0.0.1 (port from the config, 0
// for a free one), signs users in without a form (the "current user" is
// set through a test control endpoint) and grants consent automatically
// through the provider's own interactionDetails / interactionFinished API.
//
// Usage: node idp.js '<json config>'
//   {"port":0,"clients":[{"client_id":..,"client_secret":..,"redirect_uris":[..]}],
//    "access_token_ttl":60}
// Prints one JSON line {"issuer": "...", "port": N} on stdout when ready.
//
// Test control (loopback only, for the Go test driving it):
//   POST /__test/login-as   {"sub":"bob"}    whom the next login signs in
//   POST /__test/disable    {"sub":"alice"}  the account disappears: refresh
//                                            tokens are refused (invalid_grant)
//   POST /__test/backchannel-logout {"sub":"alice"}  the IdP ends alice's
//                                            newest session: a signed logout
//                                            token goes to the client's
//                                            backchannel_logout_uri
//   POST /__test/deny-consent {"sub":"alice"} the user's next consent prompt
//                                            is denied: the provider redirects
//                                            to the client with error=access_denied
//                                            and an error_description with markup
//   GET  /__test/counts                      {"refresh_token": n, "token_exchange": n, ...}
//                                            successful grants by type,
//                                            exchange_refused and resource_refused
//                                            (refreshes for an unknown
//                                            resource, refused before the
//                                            refresh token is spent)
//
// With "token_exchange": true the provider also accepts RFC 8693 token
// exchange (urn:ietf:params:oauth:grant-type:token-exchange), added through
// oidc-provider's registerGrantType hook as a real IdP does it: the
// subject_token must be a live access token this provider issued, and the
// answer is a JWT for the requested audience (aud), signed with the key in
// the provider's JWKS, with act naming the exchanging client. Audiences in
// "refuse_audiences" are refused with invalid_target. With "actor_jwks_url"
// and "actor_issuer" an actor_token (a JWT of that issuer, aud = this token
// endpoint) is verified and its sub becomes act.sub.
//
// With "resources": {"<resource indicator>": ["scope", ...]} the provider
// knows those resource servers (features.resourceIndicators): every
// authorization includes them (defaultResource), so the refresh token can
// be spent for any of them with resource=<indicator> (RFC 8707) and a
// narrowed scope (RFC 6749 section 6); the access token is then a JWT with
// aud = the indicator and only the granted scopes of that resource, signed
// with the key in the JWKS. Other resource indicators are refused with
// invalid_target.
import http from 'node:http';
import crypto from 'node:crypto';
import Provider, { errors } from 'oidc-provider';
import { SignJWT, exportJWK, generateKeyPair, createRemoteJWKSet, jwtVerify } from 'jose';

const cfg = JSON.parse(process.argv[2] || '{}');

const accounts = {
  alice: { sub: 'alice', email: 'alice@example.com', email_verified: true, name: 'Alice Liddell', groups: ['engineering', 'mcp-users'] },
  bob: { sub: 'bob', email: 'bob@example.com', email_verified: true, name: 'Bob Builder', groups: ['sales'] },
  mallory: { sub: 'mallory', email: 'mallory@example.com', email_verified: false, name: 'Mallory', groups: [] },
};
const disabled = new Set();
const denyConsent = new Set();
let currentUser = 'alice';

function readBody(req) {
  return new Promise((resolve, reject) => {
    let body = '';
    req.on('data', (c) => { body += c; });
    req.on('end', () => resolve(body));
    req.on('error', reject);
  });
}

const knownResource = (indicator) => Object.hasOwn(cfg.resources || {}, indicator);

function readJSON(req) {
  return new Promise((resolve, reject) => {
    let body = '';
    req.on('data', (c) => { body += c; });
    req.on('end', () => { try { resolve(JSON.parse(body || '{}')); } catch (e) { reject(e); } });
    req.on('error', reject);
  });
}

const counts = {};
let actorJWKS;
const count = (k) => { counts[k] = (counts[k] || 0) + 1; };
const TOKEN_EXCHANGE = 'urn:ietf:params:oauth:grant-type:token-exchange';

// One signing key, known here so that exchanged JWTs verify against the
// provider's own JWKS.
const { privateKey } = await generateKeyPair('RS256', { extractable: true });
const signingJwk = { ...(await exportJWK(privateKey)), kid: 'idp-rs256', alg: 'RS256', use: 'sig' };

// The resourceIndicators feature for cfg.resources (see the header).
function resourceIndicators(resources) {
  if (!resources) return { enabled: true };
  return {
    enabled: true,
    // At authorization the resources are granted; at the token endpoint
    // nothing is defaulted, so the code and a refresh without resource
    // get the userinfo token as before.
    defaultResource: (ctx, _client, oneOf) => (oneOf || ctx.oidc.route === 'token' ? undefined : Object.keys(resources)),
    useGrantedResource: () => false,
    getResourceServerInfo: (_ctx, indicator) => {
      if (!resources[indicator]) {
        throw new errors.InvalidTarget('unknown resource server');
      }
      return {
        scope: resources[indicator].join(' '),
        audience: indicator,
        accessTokenTTL: cfg.access_token_ttl || 3600,
        accessTokenFormat: 'jwt',
        jwt: { sign: { alg: 'RS256' } },
      };
    },
  };
}

const server = http.createServer();
server.listen(cfg.port || 0, '127.0.0.1', () => {
  const { port } = server.address();
  const issuer = `http://127.0.0.1:${port}`;
  const provider = new Provider(issuer, {
    jwks: { keys: [signingJwk] },
    clients: (cfg.clients || []).map((c) => ({
      grant_types: cfg.token_exchange ? ['authorization_code', 'refresh_token', TOKEN_EXCHANGE] : ['authorization_code', 'refresh_token'],
      response_types: ['code'],
      token_endpoint_auth_method: 'client_secret_basic',
      ...c,
    })),
    findAccount: async (_ctx, id) => {
      if (!accounts[id] || disabled.has(id)) return undefined;
      return { accountId: id, claims: async () => ({ ...accounts[id] }) };
    },
    claims: {
      openid: ['sub'],
      email: ['email', 'email_verified'],
      profile: ['name'],
      groups: ['groups'],
    },
    scopes: ['openid', 'offline_access', 'email', 'profile', 'groups'],
    // Put the scope claims in the ID token itself, as Entra ID and Okta do
    // for the standard scopes.
    conformIdTokenClaims: false,
    // Issue refresh tokens to every client allowed to refresh, without
    // requiring offline_access + prompt=consent.
    issueRefreshToken: async (_ctx, client) => client.grantTypeAllowed('refresh_token'),
    // Rotate refresh tokens on every use, as Okta and Entra ID can: a
    // second use of a rotated token revokes the grant at the IdP.
    rotateRefreshToken: true,
    pkce: { required: () => true },
    ttl: {
      AccessToken: cfg.access_token_ttl || 3600,
      AuthorizationCode: 60,
      IdToken: 3600,
      RefreshToken: 86400,
      Interaction: 600,
      Session: 3600,
      Grant: 86400,
    },
    interactions: { url: (_ctx, interaction) => `/interaction/${interaction.uid}` },
    features: {
      devInteractions: { enabled: false }, revocation: { enabled: true }, introspection: { enabled: true }, userinfo: { enabled: true }, backchannelLogout: { enabled: true },
      resourceIndicators: resourceIndicators(cfg.resources),
    },
    cookies: { keys: ['warden-test-idp-cookie-key'] },
    // The provider refuses outgoing requests to special-use addresses
    // (SSRF protection); the test's Warden is on 127.0.0.1, so its
    // back-channel logout calls go out without that dispatcher.
    fetch: (url, options) => { const { dispatcher: _, ...rest } = options; return globalThis.fetch(url, rest); },
  });
  provider.on('server_error', (_ctx, err) => console.error('idp server_error', err));
  // The newest session of each account per client, for /__test/backchannel-logout.
  const sessions = {};
  provider.on('authorization.success', (ctx) => {
    const { session, client } = ctx.oidc;
    if (session && session.accountId && client) {
      sessions[session.accountId] = { clientId: client.clientId, sid: session.sidFor(client.clientId) };
    }
  });
  provider.on('grant.success', (ctx) => count(ctx.oidc.params.grant_type));

  if (cfg.token_exchange) {
    const refuse = new Set(cfg.refuse_audiences || []);
    const params = ['subject_token', 'subject_token_type', 'audience', 'resource', 'scope', 'requested_token_type', 'actor_token', 'actor_token_type'];
    provider.registerGrantType(TOKEN_EXCHANGE, async (ctx) => {
      const p = ctx.oidc.params;
      if (p.subject_token_type !== 'urn:ietf:params:oauth:token-type:access_token') {
        count('exchange_refused');
        throw new errors.InvalidRequest('unsupported subject_token_type');
      }
      const subject = await provider.AccessToken.find(p.subject_token);
      if (!subject || subject.isExpired || !accounts[subject.accountId] || disabled.has(subject.accountId)) {
        count('exchange_refused');
        throw new errors.InvalidGrant('subject token is invalid or expired');
      }
      const audience = p.audience || p.resource;
      if (!audience || refuse.has(audience)) {
        count('exchange_refused');
        throw new errors.InvalidTarget('the requested audience is not allowed for this client');
      }
      // The actor (RFC 8693 4.1): a JWT from the trusted actor issuer
      // (Warden) naming the client; without one, the exchanging client.
      let actor = ctx.oidc.client.clientId;
      if (p.actor_token) {
        if (!cfg.actor_jwks_url || p.actor_token_type !== 'urn:ietf:params:oauth:token-type:jwt') {
          count('exchange_refused');
          throw new errors.InvalidRequest('unsupported actor_token');
        }
        try {
          actorJWKS ||= createRemoteJWKSet(new URL(cfg.actor_jwks_url));
          const { payload } = await jwtVerify(p.actor_token, actorJWKS, { issuer: cfg.actor_issuer, audience: `${issuer}/token` });
          actor = payload.sub;
        } catch (e) {
          count('exchange_refused');
          throw new errors.InvalidGrant(`actor_token is invalid: ${e.code || 'unverified'}`);
        }
      }
      const ttl = cfg.exchanged_token_ttl || 300;
      const now = Math.floor(Date.now() / 1000);
      const jwt = await new SignJWT({ scope: p.scope || '', client_id: ctx.oidc.client.clientId, act: { sub: actor } })
        .setProtectedHeader({ alg: 'RS256', kid: signingJwk.kid, typ: 'at+jwt' })
        .setIssuer(issuer).setSubject(subject.accountId).setAudience(audience)
        .setIssuedAt(now).setExpirationTime(now + ttl).setJti(crypto.randomUUID())
        .sign(privateKey);
      ctx.body = { access_token: jwt, issued_token_type: 'urn:ietf:params:oauth:token-type:access_token', token_type: 'Bearer', expires_in: ttl, scope: p.scope || undefined };
    }, params, []);
  }

  const app = provider.callback();
  server.on('request', async (req, res) => {
    try {
      if (cfg.resources && req.method === 'POST' && req.url === '/token') {
        // oidc-provider 9 rotates the refresh token before it checks the
        // resource, so a refused resource would burn the token Warden
        // never gets back. This IdP checks first, as one that validates
        // the request before spending the grant does; the provider reads
        // the buffered body from req.body.
        const raw = await readBody(req);
        req.body = raw;
        const p = new URLSearchParams(raw);
        if (p.get('grant_type') === 'refresh_token' && p.get('resource') && !knownResource(p.get('resource'))) {
          count('resource_refused');
          res.writeHead(400, { 'content-type': 'application/json' }).end(JSON.stringify({ error: 'invalid_target', error_description: 'unknown resource server' }));
          return;
        }
      }
      if (req.method === 'POST' && req.url === '/__test/login-as') {
        currentUser = (await readJSON(req)).sub;
        res.writeHead(204).end();
        return;
      }
      if (req.method === 'POST' && req.url === '/__test/backchannel-logout') {
        // The provider ends the account's newest session at its client the
        // way end_session does: its own Client#backchannelLogout signs a
        // logout token and POSTs it to the client's backchannel_logout_uri.
        const { sub } = await readJSON(req);
        const s = sessions[sub];
        if (!s) { res.writeHead(404).end('no session'); return; }
        const client = await provider.Client.find(s.clientId);
        try {
          await client.backchannelLogout(sub, s.sid);
          res.writeHead(204).end();
        } catch (e) {
          res.writeHead(502, { 'content-type': 'text/plain' }).end(String(e.message));
        }
        return;
      }
      if (req.method === 'GET' && req.url === '/__test/counts') {
        res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify(counts));
        return;
      }
      if (req.method === 'POST' && req.url === '/__test/deny-consent') {
        denyConsent.add((await readJSON(req)).sub);
        res.writeHead(204).end();
        return;
      }
      if (req.method === 'POST' && req.url === '/__test/disable') {
        disabled.add((await readJSON(req)).sub);
        res.writeHead(204).end();
        return;
      }
      if (req.url.startsWith('/interaction/')) {
        const details = await provider.interactionDetails(req, res);
        if (details.prompt.name === 'login') {
          await provider.interactionFinished(req, res, { login: { accountId: currentUser } }, { mergeWithLastSubmission: false });
          return;
        }
        if (details.prompt.name === 'consent' && denyConsent.delete(details.session.accountId)) {
          // The user clicks "Deny": oidc-provider answers the client's
          // redirect_uri with the error, its description and the state.
          count('consent_denied');
          await provider.interactionFinished(req, res, {
            error: 'access_denied',
            error_description: '<b>declined</b> by the user & "quoted"',
          }, { mergeWithLastSubmission: false });
          return;
        }
        if (details.prompt.name === 'consent') {
          const { prompt: { details: missing }, params, session } = details;
          const grant = details.grantId
            ? await provider.Grant.find(details.grantId)
            : new provider.Grant({ accountId: session.accountId, clientId: params.client_id });
          if (missing.missingOIDCScope) grant.addOIDCScope(missing.missingOIDCScope.join(' '));
          if (missing.missingOIDCClaims) grant.addOIDCClaims(missing.missingOIDCClaims);
          for (const [indicator, scopes] of Object.entries(missing.missingResourceScopes || {})) {
            grant.addResourceScope(indicator, scopes.join(' '));
          }
          const grantId = await grant.save();
          await provider.interactionFinished(req, res, { consent: { grantId } }, { mergeWithLastSubmission: true });
          return;
        }
        res.writeHead(400, { 'content-type': 'text/plain' }).end(`unexpected prompt ${details.prompt.name}`);
        return;
      }
      app(req, res);
    } catch (err) {
      console.error('idp error', err);
      if (!res.headersSent) res.writeHead(500, { 'content-type': 'text/plain' }).end(String(err));
    }
  });
  process.stdout.write(`${JSON.stringify({ issuer, port })}\n`);
});

// Exit with the parent: the Go test closes stdin when it is done.
process.stdin.resume();
process.stdin.on('end', () => process.exit(0));
