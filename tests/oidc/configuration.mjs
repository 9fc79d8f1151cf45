// What the test provider knows: its clients, its users and the oidc-provider
// configuration built from them. Everything is in memory and fixed, except
// the console's redirect URIs (set at start or through /__test/console) and
// the signing keys (replaced by /__test/rotate).

import { errors } from 'oidc-provider';

/** The resource indicator (and `aud`) of tally's API. */
export const RESOURCE = 'api://tally';

/**
 * The clients, with the claims their client-credentials tokens carry. The
 * secrets are `<client id>-secret` (the console's is `console-secret`); the
 * Rust side (tests/support/oidc.rs) names them too.
 */
const BOTS = {
  'tally-operator-bot': { roles: ['tally.operator'] },
  'tally-reporter-bot': { roles: ['tally.reporter'] },
  // A genuine token that grants nothing.
  'tally-nobody': {},
};

/** The console (authorization code with PKCE S256, a confidential client). */
export const CONSOLE_CLIENT = 'tally-console';

/** The users: their passwords and the claims of their tokens. */
export const USERS = {
  alice: {
    password: 'alice-pw',
    claims: {
      name: 'Alice Tenant',
      email: 'alice@tally.test',
      roles: ['tally.tenant'],
      subscriptions: ['sub-a'],
    },
  },
  olga: {
    password: 'olga-pw',
    claims: {
      name: 'Olga Operator',
      email: 'olga@tally.test',
      roles: ['tally.operator'],
      groups: ['tally-operators'],
    },
  },
};

/** The claims of tally's authorization (copied into tokens when present). */
const TALLY_CLAIMS = ['roles', 'subscriptions', 'groups'];

function tallyClaims(source) {
  return Object.fromEntries(TALLY_CLAIMS.filter((claim) => claim in source)
    .map((claim) => [claim, source[claim]]));
}

function clients({ consoleRedirects, consolePostLogout }) {
  const bots = Object.keys(BOTS).map((clientId) => ({
    client_id: clientId,
    client_secret: `${clientId}-secret`,
    grant_types: ['client_credentials'],
    response_types: [],
    redirect_uris: [],
  }));
  const console = {
    client_id: CONSOLE_CLIENT,
    client_secret: 'console-secret',
    grant_types: ['authorization_code'],
    response_types: ['code'],
    redirect_uris: consoleRedirects,
    post_logout_redirect_uris: consolePostLogout,
    scope: 'openid profile email',
  };
  return [...bots, console];
}

async function findAccount(_ctx, sub) {
  const user = USERS[sub];
  if (!user) return undefined;
  return {
    accountId: sub,
    // oidc-provider keeps those the requested scopes allow (see `claims`).
    claims: async () => ({
      sub, preferred_username: sub, email_verified: true, ...user.claims,
    }),
  };
}

/** Tally's claims in access tokens: the client's for client credentials, else the user's. */
async function extraTokenClaims(_ctx, token) {
  if (token.kind === 'ClientCredentials') return tallyClaims(BOTS[token.clientId] ?? {});
  return tallyClaims(USERS[token.accountId]?.claims ?? {});
}

const resourceServer = {
  audience: RESOURCE,
  scope: 'tally',
  accessTokenFormat: 'jwt',
  accessTokenTTL: 3600,
  jwt: { sign: { alg: 'RS256' } },
};

/**
 * The oidc-provider configuration, with `signingKeys` (private JWKs, each
 * with its `kid` and `alg`) as its keys and the console's current redirect
 * URIs. It signs with the RSA key unless a client asks for another algorithm.
 */
export function configuration({ signingKeys, cookieKeys, console, interactionUrl, pages }) {
  return {
    clients: clients(console),
    findAccount,
    extraTokenClaims,
    jwks: { keys: signingKeys },
    // Tally's claims travel in the ID token under plain `openid`, so the
    // console needs nothing but the usual scopes.
    claims: {
      openid: ['sub', ...TALLY_CLAIMS],
      profile: ['name', 'preferred_username'],
      email: ['email', 'email_verified'],
    },
    // ID tokens carry the scopes' claims even when an access token is issued
    // beside them (the console reads the user from the ID token).
    conformIdTokenClaims: false,
    // Fixed keys: every Provider built on rotation accepts the cookies of the last.
    // Own names: the provider shares the cookie jar of 127.0.0.1 with tally.
    cookies: {
      keys: cookieKeys,
      names: {
        session: 'oidc_session', interaction: 'oidc_interaction', resume: 'oidc_interaction_resume',
      },
    },
    pkce: { required: () => true },
    interactions: { url: interactionUrl },
    renderError: pages.error,
    features: {
      // Our own login page checks passwords; the built-in one takes any.
      devInteractions: { enabled: false },
      clientCredentials: { enabled: true },
      rpInitiatedLogout: {
        enabled: true,
        logoutSource: pages.logout,
        postLogoutSuccessSource: pages.loggedOut,
      },
      resourceIndicators: {
        enabled: true,
        // Every access token is for tally unless another resource is asked for.
        defaultResource: async (_ctx, _client, oneOf) => oneOf ?? RESOURCE,
        useGrantedResource: async () => true,
        getResourceServerInfo: async (_ctx, indicator) => {
          if (indicator !== RESOURCE) throw new errors.InvalidTarget();
          return resourceServer;
        },
      },
    },
  };
}
