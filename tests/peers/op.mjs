// Test / demo upstream OIDC provider (npm oidc-provider).
//   PORT=9000 REDIRECT_URIS=http://127.0.0.1:8000/callback/demo [AUTO_LOGIN=alice] node op.mjs
// One confidential client, a password form (no devInteractions), automatic consent,
// email/groups/amr/acr in the id_token, PKCE required. Test use only: in-memory storage.
import crypto from 'node:crypto';
import http from 'node:http';
import Provider from 'oidc-provider';

const PORT = Number(process.env.PORT || 9000);
const ISSUER = process.env.ISSUER || `http://127.0.0.1:${PORT}`;
const AUTO_LOGIN = process.env.AUTO_LOGIN || '';
const CLIENT_ID = process.env.CLIENT_ID || 'bridge';
const CLIENT_SECRET = process.env.CLIENT_SECRET || 'bridge-secret';
const REDIRECT_URIS = (process.env.REDIRECT_URIS || 'http://127.0.0.1:8000/callback/demo').split(',');
const LOGOUT_URIS = (process.env.POST_LOGOUT_REDIRECT_URIS || 'http://127.0.0.1:8000/').split(',');
// CLAIMS_STYLE=lemonldap: what LemonLDAP::NG sends by default: the ID token carries no user claims (they
// are at userinfo only), no email_verified, and the groups as one string ("aws-admins; aws-readonly").
const LLNG = process.env.CLAIMS_STYLE === 'lemonldap';
// TEST_ADMIN=1: POST /test-admin/users/<name> {"groups": [...], "disabled": true, "password": ...}
// changes (or, with a password, creates) an account at runtime. Tests only: no authentication.
const TEST_ADMIN = process.env.TEST_ADMIN === '1';
const ACCOUNTS = {
  alice: { password: 'alice-pw', email: 'alice@example.com', email_verified: true, name: 'Alice Example',
           groups: ['aws-admins', 'aws-readonly'], department: 'Platform', amr: ['pwd', 'mfa'] },
  bob:   { password: 'bob-pw', email: 'bob@example.com', email_verified: true, name: 'Bob',
           groups: ['aws-readonly'], department: 'Finance & Ops', amr: ['pwd'] },
  carol: { password: 'carol-pw', email: 'carol@example.com', email_verified: true, name: 'Carol',
           groups: [], amr: ['pwd'] },
  // a contractor whose IdP spells the domain in mixed case (deny rules must still hit him)
  dave:  { password: 'dave-pw', email: 'Dave@Contractor.Example.com', email_verified: true, name: 'Dave',
           groups: ['aws-admins'], amr: ['pwd'] },
  // step-up: password alone gives amr [pwd]; with the one-time code too (the form asks for it on prompt=login
  // or max_age) amr [pwd, otp] and acr urn:test:loa:2
  frank: { password: 'frank-pw', otp: '424242', email: 'frank@example.com', email_verified: true, name: 'Frank',
           groups: ['aws-admins'], department: 'Platform', amr: ['pwd'] },
  // an address the IdP has not verified (the bridge refuses the sign-in)
  eve:   { password: 'eve-pw', email: 'eve@example.com', email_verified: false, name: 'Eve',
           groups: ['aws-readonly'], amr: ['pwd'] },
};
// APPLE_CLIENT_ID=com.example.bridge APPLE_TEAM_ID=… APPLE_KEY_ID=… APPLE_PUBLIC_JWK='{…}' APPLE_REDIRECT_URIS=…:
// one more client, shaped like Sign in with Apple (the other client is unchanged): its client secret is an
// ES256 JWT signed by the team's key (iss = team id, sub = client id, aud = this issuer, kid = key id, at
// most 6 months), checked here before oidc-provider sees the request; its ID tokens carry email_verified
// and is_private_email as the strings "true"/"false"; its callbacks are form posts (response_mode=form_post,
// which the bridge asks for) and the first one for each user carries Apple's `user` form field (the name).
const APPLE = process.env.APPLE_CLIENT_ID ? {
  clientId: process.env.APPLE_CLIENT_ID, teamId: process.env.APPLE_TEAM_ID, keyId: process.env.APPLE_KEY_ID,
  key: crypto.createPublicKey({ key: JSON.parse(process.env.APPLE_PUBLIC_JWK || '{}'), format: 'jwk' }),
  redirectUris: (process.env.APPLE_REDIRECT_URIS || '').split(','), secret: crypto.randomBytes(24).toString('base64url'),
  seen: { verified: 0, refused: [] }, named: new Set() } : null;
if (APPLE) {
  ACCOUNTS.tim = { password: 'tim-pw', email: 'q7x2mn8k4p@privaterelay.appleid.com', email_verified: true,
                   is_private_email: true, name: 'Tim Relay', first: 'Tim', last: 'Relay', groups: [], amr: ['pwd'] };
}
const provider = new Provider(ISSUER, {
  clients: [{ client_id: CLIENT_ID, client_secret: CLIENT_SECRET,
    redirect_uris: REDIRECT_URIS, post_logout_redirect_uris: LOGOUT_URIS,
    grant_types: ['authorization_code', 'refresh_token'], response_types: ['code'],
    token_endpoint_auth_method: 'client_secret_basic' },
  ...(APPLE ? [{ client_id: APPLE.clientId, client_secret: APPLE.secret, redirect_uris: APPLE.redirectUris,
    grant_types: ['authorization_code', 'refresh_token'], response_types: ['code'],
    token_endpoint_auth_method: 'client_secret_post' }] : []),
  // APP_CLIENT_ID + APP_REDIRECT_URIS: a public client (a browser app: code + PKCE, no secret) whose ID
  // tokens the app exchanges at the bridge (token exchange, docs/apps-and-workloads.md).
  ...(process.env.APP_CLIENT_ID ? [{ client_id: process.env.APP_CLIENT_ID,
    redirect_uris: (process.env.APP_REDIRECT_URIS || '').split(','), grant_types: ['authorization_code'],
    response_types: ['code'], token_endpoint_auth_method: 'none' }] : [])],
  claims: { openid: ['sub', 'amr', 'acr', 'auth_time'],
            email: ['email', 'email_verified', ...(APPLE ? ['is_private_email'] : [])],
            profile: ['name', 'department'], groups: ['groups'], ...(APPLE ? { name: [] } : {}) },
  conformIdTokenClaims: LLNG,  // true: scope claims go to userinfo only (the code flow issues an access token)
  pkce: { required: () => true },
  acrValues: ['urn:test:loa:1', 'urn:test:loa:2'],
  features: { devInteractions: { enabled: false } },
  interactions: { url: (ctx, i) => `/interaction/${i.uid}` },
  cookies: { keys: ['test-only-cookie-key'] },
  // Refresh tokens are issued for `offline_access` + prompt=consent (the library's default rule);
  // each refresh hands out a new one and consumes the old (reusing it revokes the whole grant).
  rotateRefreshToken: true,
  // Subjects look like Okta's opaque user ids ("00u" + username), not like the username.
  async findAccount(ctx, id) {
    // A disabled account is "not found": oidc-provider then answers a refresh with invalid_grant
    // and userinfo with invalid_token.
    const a = ACCOUNTS[id.replace(/^00u/, '')]; if (!a || a.disabled) return undefined;
    return { accountId: id, async claims() {
      const { password, amr, disabled, first, last, otp, ...c } = a;
      if (LLNG) { delete c.email_verified; c.groups = (c.groups || []).join('; '); }
      if (APPLE && ctx.oidc?.client?.clientId === APPLE.clientId) {  // Apple: no name or groups, string booleans
        delete c.name; delete c.groups; delete c.department;
        for (const k of ['email_verified', 'is_private_email']) if (k in c) c[k] = String(c[k]);
      }
      return { sub: id, ...c }; } };
  },
});
const finishLogin = (req, res, id, mfa = false) => provider.interactionFinished(req, res,
  { login: { accountId: `00u${id}`, amr: mfa ? ['pwd', 'otp'] : ACCOUNTS[id].amr, acr: mfa ? 'urn:test:loa:2' : 'urn:test:loa:1' } },
  { mergeWithLastSubmission: false });
// TEST_ADMIN: what the last authorization request asked (GET /test-admin/last-authorization), and how many
// times the login form was shown: a step-up test checks what the bridge sent and that the IdP asked again.
const SEEN = { authorization: null, loginForms: 0 };
const seeAuthorization = (url) => { const p = new URL(url, ISSUER).searchParams;
  SEEN.authorization = { prompt: p.get('prompt'), max_age: p.get('max_age'), acr_values: p.get('acr_values') }; };
async function autoConsent(req, res, { prompt: { details: d }, params, session, grantId }) {
  const g = grantId ? await provider.Grant.find(grantId)
    : new provider.Grant({ accountId: session.accountId, clientId: params.client_id });
  if (d.missingOIDCScope) g.addOIDCScope(d.missingOIDCScope.join(' '));
  if (d.missingOIDCClaims) g.addOIDCClaims(d.missingOIDCClaims);
  if (d.missingResourceScopes) for (const [r, s] of Object.entries(d.missingResourceScopes)) g.addResourceScope(r, s.join(' '));
  await provider.interactionFinished(req, res, { consent: { grantId: await g.save() } }, { mergeWithLastSubmission: true });
}
const readForm = (req) => new Promise((ok) => { let b = ''; req.on('data', (c) => { b += c; });
  req.on('end', () => ok(Object.fromEntries(new URLSearchParams(b)))); });
async function adminUser(req, res, name) {
  let body = ''; for await (const c of req) body += c;
  let change; try { change = JSON.parse(body || '{}'); } catch { change = null; }
  const a = (Object.hasOwn(ACCOUNTS, name) && ACCOUNTS[name]) || (typeof change?.password === 'string'
    ? { email: `${name}@example.com`, email_verified: true, name, groups: [], amr: ['pwd'] } : null);
  if (!change || !a) { res.writeHead(400, { 'content-type': 'text/plain' }); return res.end('unknown user or bad JSON'); }
  for (const k of ['password', 'groups', 'disabled', 'email', 'name', 'amr', 'is_private_email', 'first', 'last']) {
    if (k in change) a[k] = change[k];
  }
  ACCOUNTS[name] = a;
  res.writeHead(200, { 'content-type': 'application/json' });
  res.end(JSON.stringify({ sub: `00u${name}`, groups: a.groups, disabled: Boolean(a.disabled) }));
}
const loginPage = (uid, err = '', stepUp = false) => `<!doctype html><title>Demo IdP sign-in</title>
<style>body{font-family:sans-serif;max-width:26rem;margin:4rem auto}input,button{display:block;margin:.5rem 0;padding:.4rem;width:100%}</style>
<h1>Demo IdP</h1><p>Users: alice / alice-pw (admins, MFA), bob / bob-pw (read-only), carol / carol-pw (no groups),
frank / frank-pw (admins; one-time code 424242 when asked: step-up)</p>
<form method="post" action="/interaction/${uid}/login">${err ? `<p id="error">${err}</p>` : ''}
<label>Username <input id="username" name="username" autofocus></label>
<label>Password <input id="password" name="password" type="password"></label>${stepUp
  ? '<label>One-time code <input id="otp" name="otp" inputmode="numeric"></label>' : ''}
<button id="submit" type="submit">Sign in</button></form>`;
// Apple's first authorization of a user also posts `user` (their name, as JSON) beside code and state.
provider.use(async (ctx, next) => {
  await next();
  const accountId = ctx.oidc?.session?.accountId;
  if (!APPLE || ctx.oidc?.client?.clientId !== APPLE.clientId || typeof ctx.body !== 'string'
      || !ctx.body.includes('<form method="post"') || !accountId || APPLE.named.has(accountId)) return;
  const a = ACCOUNTS[accountId.replace(/^00u/, '')];
  APPLE.named.add(accountId);
  const user = JSON.stringify({ name: { firstName: a.first || a.name, lastName: a.last || '' }, email: a.email });
  const field = `<input type="hidden" name="user" value="${user.replace(/&/g, '&amp;').replace(/"/g, '&quot;')}"/>`;
  ctx.body = ctx.body.replace(/(<form method="post"[^>]*>)/, `$1\n${field}`);
});
const b64json = (part) => JSON.parse(Buffer.from(part, 'base64url').toString());
function appleSecretProblem(secret) {  // what Apple would refuse in a client secret JWT, or '' when it is good
  const parts = String(secret || '').split('.');
  if (parts.length !== 3) return 'not a JWT';
  let h, c; try { h = b64json(parts[0]); c = b64json(parts[1]); } catch { return 'not a JWT'; }
  if (h.alg !== 'ES256') return `alg ${h.alg}`;
  if (h.kid !== APPLE.keyId) return 'kid is not the key id';
  const signed = crypto.verify('sha256', Buffer.from(`${parts[0]}.${parts[1]}`), { key: APPLE.key, dsaEncoding: 'ieee-p1363' },
    Buffer.from(parts[2], 'base64url'));
  if (!signed) return 'signature';
  const now = Math.floor(Date.now() / 1000);
  if (c.iss !== APPLE.teamId) return 'iss is not the team id';
  if (c.sub !== APPLE.clientId) return 'sub is not the client id';
  if (![].concat(c.aud).includes(ISSUER)) return 'aud is not the issuer';
  if (!Number.isInteger(c.iat) || !Number.isInteger(c.exp) || c.iat > now + 60) return 'iat';
  if (c.exp <= now) return 'expired';
  if (c.exp - c.iat > 15777000) return 'lives longer than 6 months';
  return '';
}
async function appleToken(req, res) {  // the client secret JWT is checked, then oidc-provider answers
  let body = ''; for await (const c of req) body += c;
  const form = new URLSearchParams(body);
  if (form.get('client_id') === APPLE.clientId) {
    const problem = appleSecretProblem(form.get('client_secret'));
    if (problem) {
      APPLE.seen.refused.push(problem);
      res.writeHead(400, { 'content-type': 'application/json' }); return res.end(JSON.stringify({ error: 'invalid_client' }));
    }
    APPLE.seen.verified += 1;
    form.set('client_secret', APPLE.secret);
    body = form.toString();
  }
  req.body = body;  // oidc-provider reads an already-read body from req.body
  req.headers['content-length'] = String(Buffer.byteLength(body));
  return oidc(req, res);
}
const oidc = provider.callback();
http.createServer(async (req, res) => {
  const admin = TEST_ADMIN && req.method === 'POST' && req.url.match(/^\/test-admin\/users\/([\w-]+)$/);
  if (admin) return adminUser(req, res, admin[1]);
  if (APPLE && TEST_ADMIN && req.method === 'GET' && req.url === '/test-admin/apple-secrets') {
    res.writeHead(200, { 'content-type': 'application/json' }); return res.end(JSON.stringify(APPLE.seen)); }
  if (APPLE && req.method === 'POST' && req.url === '/token') return appleToken(req, res);
  if (TEST_ADMIN && req.url === '/test-admin/last-authorization') {
    res.writeHead(200, { 'content-type': 'application/json' }); return res.end(JSON.stringify(SEEN)); }
  const m = req.url.match(/^\/interaction\/([\w-]+)(\/login)?$/);
  if (req.method === 'GET' && req.url.startsWith('/auth?')) seeAuthorization(req.url);
  if (!m) return oidc(req, res);
  try {
    const details = await provider.interactionDetails(req, res);
    if (details.prompt.name === 'consent') return await autoConsent(req, res, details);
    if (req.method === 'POST' && m[2]) {
      const { username, password, otp } = await readForm(req);
      if (ACCOUNTS[username]?.password !== password || ACCOUNTS[username].disabled) {
        res.writeHead(401, { 'content-type': 'text/html' }); return res.end(loginPage(m[1], 'Invalid credentials')); }
      return await finishLogin(req, res, username, Boolean(otp && ACCOUNTS[username].otp === otp));
    }
    if (AUTO_LOGIN) return await finishLogin(req, res, AUTO_LOGIN);
    SEEN.loginForms += 1;
    const stepUp = details.params.prompt?.split(' ').includes('login') || details.params.max_age !== undefined;
    res.writeHead(200, { 'content-type': 'text/html' }); res.end(loginPage(m[1], '', stepUp));
  } catch (e) { res.writeHead(400, { 'content-type': 'text/plain' }); res.end(String(e)); }
}).listen(PORT, process.env.BIND || '127.0.0.1', () => console.log(`OP listening on ${ISSUER}`));
