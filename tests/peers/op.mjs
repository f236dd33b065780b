// Test / demo upstream OIDC provider (npm oidc-provider).
//   PORT=9000 REDIRECT_URIS=http://127.0.0.1:8000/callback/demo [AUTO_LOGIN=alice] node op.mjs
// One confidential client, a password form (no devInteractions), automatic consent,
// email/groups/amr/acr in the id_token, PKCE required. Test use only: in-memory storage.
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
const provider = new Provider(ISSUER, {
  clients: [{ client_id: CLIENT_ID, client_secret: CLIENT_SECRET,
    redirect_uris: REDIRECT_URIS, post_logout_redirect_uris: LOGOUT_URIS,
    grant_types: ['authorization_code', 'refresh_token'], response_types: ['code'],
    token_endpoint_auth_method: 'client_secret_basic' }],
  claims: { openid: ['sub', 'amr', 'acr', 'auth_time'],
            email: ['email', 'email_verified'], profile: ['name', 'department'], groups: ['groups'] },
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
      const { password, amr, disabled, otp, ...c } = a;
      if (LLNG) { delete c.email_verified; c.groups = (c.groups || []).join('; '); }
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
  for (const k of ['password', 'groups', 'disabled', 'email', 'name', 'amr']) if (k in change) a[k] = change[k];
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
const oidc = provider.callback();
http.createServer(async (req, res) => {
  const admin = TEST_ADMIN && req.method === 'POST' && req.url.match(/^\/test-admin\/users\/([\w-]+)$/);
  if (admin) return adminUser(req, res, admin[1]);
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
