// A real OpenID Connect provider (oidc-provider, OpenID-certified) on
// 127.0.0.1 for tally's single sign-on tests; started by tests/support/oidc.rs.
//
//   OIDC_PORT                 port to listen on (default 0: any free port)
//   OIDC_CONSOLE_REDIRECT     the console's redirect URIs, comma-separated
//   OIDC_CONSOLE_POST_LOGOUT  its post-logout redirect URIs, comma-separated
//
// Its first line on stdout is `oidc-provider listening on http://127.0.0.1:PORT`
// (that URL is the issuer); everything else goes to stderr. Besides the
// provider, it serves test-only endpoints (never part of tally) under /__test/:
//
//   POST /__test/rotate    new signing keys (new kids); the JWKS lists only
//                          them -> {"kid": RSA kid, "ec_kid": EC kid}
//   POST /__test/mint      {"claims": {...}, "header": {...}} signed with the
//                          current key of header.alg, RS256 (the default) or
//                          ES256 -> {"token": "..."}
//   POST /__test/console   {"redirect_uris": [...], "post_logout_redirect_uris": [...]}
//                          for the console client (once tally's port is known)
//   GET  /__test/requests  {"discovery": N, "jwks": N} requests since start
//
// Plain http on loopback: oidc-provider takes an http issuer and http redirect
// URIs for web clients as they are; its cookies are then not `Secure` (it sets
// that only on https requests). Nothing else is relaxed.

import { randomBytes } from 'node:crypto';
import { createServer } from 'node:http';

import {
  CompactSign, calculateJwkThumbprint, exportJWK, generateKeyPair, importJWK,
} from 'jose';
import Provider from 'oidc-provider';

import { USERS, configuration } from './configuration.mjs';
import { loginPage, pages } from './pages.mjs';

// Only the first line belongs on stdout: oidc-provider's notices go to stderr.
console.log = console.error;
console.info = console.error;

const DISCOVERY_PATH = '/.well-known/openid-configuration';
const JWKS_PATH = '/jwks';

/** A signing key for `alg` as a private JWK, its kid the key's thumbprint. */
async function newSigningKey(alg) {
  const { privateKey } = await generateKeyPair(alg, { extractable: true });
  const jwk = await exportJWK(privateKey);
  return { ...jwk, kid: await calculateJwkThumbprint(jwk), alg, use: 'sig' };
}

/**
 * The provider's signing keys by algorithm: RSA (what it signs with unless
 * asked otherwise) and EC P-256, so tokens of both kinds can be tested.
 */
async function newSigningKeys() {
  return { RS256: await newSigningKey('RS256'), ES256: await newSigningKey('ES256') };
}

function splitList(value) {
  return (value ?? '').split(',').map((item) => item.trim()).filter(Boolean);
}

const state = {
  issuer: undefined,
  signingKeys: await newSigningKeys(),
  // Fixed for the process, so a swapped Provider reads the last one's cookies.
  cookieKeys: [randomBytes(32).toString('base64url')],
  console: {
    consoleRedirects: splitList(process.env.OIDC_CONSOLE_REDIRECT),
    consolePostLogout: splitList(process.env.OIDC_CONSOLE_POST_LOGOUT),
  },
  requests: { discovery: 0, jwks: 0 },
  provider: undefined,
  handler: undefined,
};
// oidc-provider wants a redirect URI for a code-flow client: until a test sets
// the console's (by env or /__test/console), one where nothing answers.
if (state.console.consoleRedirects.length === 0) {
  state.console.consoleRedirects = ['http://127.0.0.1/unset-console-redirect'];
}

/**
 * (Re)builds the Provider from `state`. oidc-provider fixes keys and clients
 * per instance; grants and sessions live in its in-memory adapter, which all
 * instances of the process share, so sign-ins survive a rebuild.
 */
function buildProvider() {
  const provider = new Provider(state.issuer, configuration({
    signingKeys: Object.values(state.signingKeys),
    cookieKeys: state.cookieKeys,
    console: state.console,
    interactionUrl: (_ctx, interaction) => `/interaction/${interaction.uid}`,
    pages,
  }));
  provider.on('server_error', (_ctx, error) => console.error('server_error', error));
  provider.on('grant.error', (_ctx, error) => console.error('grant.error', error.message));
  state.provider = provider;
  state.handler = provider.callback();
}

async function readBody(req) {
  const chunks = [];
  for await (const chunk of req) chunks.push(chunk);
  return Buffer.concat(chunks).toString('utf8');
}

/** The request's JSON body; a 400 reply (and undefined) when it is not JSON. */
async function readJson(req, res) {
  try {
    return JSON.parse(await readBody(req));
  } catch (error) {
    reply(res, 400, { error: `the body is not JSON: ${error.message}` });
    return undefined;
  }
}

function reply(res, status, body, type = 'application/json') {
  const text = type === 'application/json' ? JSON.stringify(body) : body;
  res.writeHead(status, { 'content-type': type, 'cache-control': 'no-store' });
  res.end(text);
}

async function mint(req, res) {
  const body = await readJson(req, res);
  if (body === undefined) return undefined;
  const { claims, header = {} } = body;
  if (typeof claims !== 'object' || claims === null) {
    return reply(res, 400, { error: 'a JSON body {"claims": {...}} is expected' });
  }
  const alg = header.alg ?? 'RS256';
  const signingKey = state.signingKeys[alg];
  if (signingKey === undefined) {
    const algs = Object.keys(state.signingKeys).join(', ');
    return reply(res, 400, { error: `mint signs with the provider's keys only: ${algs}` });
  }
  const protectedHeader = {
    alg, typ: 'at+jwt', kid: signingKey.kid, ...header,
  };
  const token = await new CompactSign(new TextEncoder().encode(JSON.stringify(claims)))
    .setProtectedHeader(protectedHeader)
    .sign(await importJWK(signingKey, alg));
  return reply(res, 200, { token });
}

/** The test-only endpoints; true when `req` was one of them. */
async function testEndpoint(req, res, path) {
  if (!path.startsWith('/__test/')) return false;
  const route = `${req.method} ${path}`;
  switch (route) {
    case 'POST /__test/rotate': {
      state.signingKeys = await newSigningKeys();
      buildProvider();
      const { RS256: rsa, ES256: ec } = state.signingKeys;
      console.error(`signing keys rotated: kids ${rsa.kid} (RS256), ${ec.kid} (ES256)`);
      reply(res, 200, { kid: rsa.kid, ec_kid: ec.kid });
      break;
    }
    case 'POST /__test/mint':
      await mint(req, res);
      break;
    case 'POST /__test/console': {
      const body = await readJson(req, res);
      if (body === undefined) break;
      state.console = {
        consoleRedirects: body.redirect_uris ?? state.console.consoleRedirects,
        consolePostLogout: body.post_logout_redirect_uris ?? state.console.consolePostLogout,
      };
      buildProvider();
      reply(res, 200, state.console);
      break;
    }
    case 'GET /__test/requests':
      reply(res, 200, state.requests);
      break;
    default:
      reply(res, 404, { error: `no test endpoint ${route}` });
  }
  return true;
}

/**
 * The sign-in interaction: a login form that checks the password, then
 * consent granted without asking (tally's console is a first-party client).
 */
async function interaction(req, res, path) {
  const match = /^\/interaction\/([^/]+)(\/login)?$/.exec(path);
  if (!match) return false;
  const { provider } = state;
  const details = await provider.interactionDetails(req, res);
  const { uid, prompt, params } = details;
  if (match[1] !== uid) {
    reply(res, 400, 'this is not the pending sign-in', 'text/plain');
    return true;
  }

  if (prompt.name === 'consent') {
    await grantConsent(details, res, req);
    return true;
  }
  if (req.method === 'GET') {
    reply(res, 200, loginPage({ uid, clientId: params.client_id }), 'text/html');
    return true;
  }
  const form = new URLSearchParams(await readBody(req));
  const username = form.get('username') ?? '';
  if (USERS[username]?.password !== form.get('password')) {
    console.error(`sign-in refused for ${JSON.stringify(username)}`);
    const page = loginPage({
      uid, clientId: params.client_id, username, error: 'Wrong username or password.',
    });
    reply(res, 401, page, 'text/html');
    return true;
  }
  await provider.interactionFinished(req, res, { login: { accountId: username } }, {
    mergeWithLastSubmission: false,
  });
  return true;
}

async function grantConsent({ prompt: { details }, grantId, session, params }, res, req) {
  const { provider } = state;
  const grant = grantId
    ? await provider.Grant.find(grantId)
    : new provider.Grant({ accountId: session.accountId, clientId: params.client_id });
  if (details.missingOIDCScope) grant.addOIDCScope(details.missingOIDCScope.join(' '));
  if (details.missingOIDCClaims) grant.addOIDCClaims(details.missingOIDCClaims);
  for (const [indicator, scopes] of Object.entries(details.missingResourceScopes ?? {})) {
    grant.addResourceScope(indicator, scopes.join(' '));
  }
  await provider.interactionFinished(req, res, { consent: { grantId: await grant.save() } }, {
    mergeWithLastSubmission: true,
  });
}

async function handle(req, res) {
  const path = new URL(req.url, state.issuer).pathname;
  res.on('finish', () => console.error(`${req.method} ${req.url} ${res.statusCode}`));
  if (path === DISCOVERY_PATH) state.requests.discovery += 1;
  if (path === JWKS_PATH) state.requests.jwks += 1;
  if (await testEndpoint(req, res, path)) return;
  if (await interaction(req, res, path)) return;
  state.handler(req, res);
}

const server = createServer((req, res) => {
  handle(req, res).catch((error) => {
    console.error(`${req.method} ${req.url}:`, error);
    if (!res.headersSent) reply(res, 500, { error: String(error) });
    else res.end();
  });
});

server.listen(Number(process.env.OIDC_PORT ?? 0), '127.0.0.1', () => {
  state.issuer = `http://127.0.0.1:${server.address().port}`;
  buildProvider();
  process.stdout.write(`oidc-provider listening on ${state.issuer}\n`);
});

// Everything lives in memory: nothing to flush, so stop at once (with no
// wait for idle keep-alive connections).
process.on('SIGTERM', () => {
  console.error('SIGTERM: stopping');
  server.closeAllConnections();
  server.close();
  process.exit(0);
});
