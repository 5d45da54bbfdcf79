// An in-memory OAuthClientProvider for the MCP TypeScript SDK, shared by the
// Node scripts the Go tests drive (test/oauthflow/sdk_client.mjs and
// test/e2e/client.mjs). It registers as a public client with one loopback
// redirect URI and keeps everything the SDK saves in `state`, so the script
// can read the authorization URL, the tokens and what was invalidated.
export function memoryProvider({ clientName, redirectUrl, statePrefix, onInvalidate }) {
  const state = {
    clientInformation: undefined,
    tokens: undefined,
    tokensSavedAt: 0,
    codeVerifier: undefined,
    authorizationUrl: undefined,
    heldAccessTokens: [],
    // oauthState is the OAuth state parameter the SDK sends.
    oauthState: `${statePrefix}-${Math.random().toString(36).slice(2)}`,
  };
  const provider = {
    get redirectUrl() { return redirectUrl; },
    get clientMetadata() {
      return {
        client_name: clientName,
        redirect_uris: [redirectUrl],
        grant_types: ['authorization_code', 'refresh_token'],
        response_types: ['code'],
        token_endpoint_auth_method: 'none',
      };
    },
    state: () => state.oauthState,
    clientInformation: () => state.clientInformation,
    saveClientInformation: (info) => { state.clientInformation = info; },
    tokens: () => state.tokens,
    saveTokens: (t) => {
      state.tokens = t;
      state.tokensSavedAt = Date.now();
      state.heldAccessTokens.push(t.access_token);
    },
    redirectToAuthorization: (url) => { state.authorizationUrl = url; },
    saveCodeVerifier: (v) => { state.codeVerifier = v; },
    codeVerifier: () => state.codeVerifier,
  };
  if (onInvalidate) {
    provider.invalidateCredentials = (scope) => {
      onInvalidate(scope);
      if (scope === 'all' || scope === 'tokens') state.tokens = undefined;
      if (scope === 'all' || scope === 'client') state.clientInformation = undefined;
    };
  }
  return { provider, state };
}
