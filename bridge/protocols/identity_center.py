"""IAM Identity Center's client protocol, served by the bridge: ``sso-oidc`` (RegisterClient,
StartDeviceAuthorization, CreateToken, and the browser's ``/authorize`` step) and the ``sso`` portal
(ListAccounts, ListAccountRoles, GetRoleCredentials, Logout). With it, `aws sso login`, every AWS SDK's
SSO credential provider and SSO-aware tools work against the bridge unchanged (docs/identity-center.md).
Shapes, names and error types follow botocore's service models
(``botocore/data/sso-oidc`` and ``botocore/data/sso``).

No Flask here (bridge/web/sso.py turns requests into calls and ``SsoError`` into the REST-JSON error
SDKs parse; the stateless pieces, error shapes, body checks and paging, are in
bridge/protocols/identity_center_protocol.py). What this module keeps:

- The access token IS the bridge's CLI token (bridge/core/device.py): opaque, stored hashed, naming the
  browser session that approved it, good only while that session lives. Every portal call loads that
  session and asks the decision point (``AccessPoint.decide``) now: a rules change, a sign-out or
  an offboarding applies at the next call.
- Refresh tokens are stored apart from bearer tokens (``refresh_hash``), filed under the same session
  (ended with it), single use (rotated at each refresh), and bounded by ``cli.refresh_token_lifetime``
  and the session's end.
- A refresh token that comes back after it was used (RFC 9700 §4.14.2: someone else holds a copy) ends
  every token descended from its grant (its ``family``: one device or authorization-code approval), and
  is audited (``token_reuse``: the client and the user, never a token).
- Registered clients (bridge/protocols/identity_center_clients.py): public, bounded in number, the secret hashed,
  loopback redirect URIs only (any port, RFC 8252 §7.3), PKCE S256.
- Roles are named by their role name. Two grants in one account whose roles share a name (role
  paths: ``role/a/Admin`` and ``role/b/Admin``) resolve deterministically: the role with the
  shortest path wins, then the smaller ARN; the other is not offered through this protocol (the
  portal and ``bridge`` CLI still have it). One role ARN granted by several rules is one grant
  already (the rules engine merges them). ``sso_role_names`` says which grant each name serves; ``bridge
  explain`` prints it.
"""

from __future__ import annotations

import logging
import secrets
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any, NoReturn, Protocol
from urllib.parse import urlencode

from bridge.client.ssoconfig import role_names
from bridge.config import CliSettings
from bridge.core.access import AccessPoint
from bridge.core.credcache import Sealed
from bridge.core.device import DeviceError, DeviceFlow
from bridge.core.issuing import CredentialIssuer
from bridge.core.sessions import Sessions
from bridge.domain import present
from bridge.domain.errors import BadRequest, BridgeError, MfaRequired, NotSignedIn
from bridge.domain.identity import Grant
from bridge.protocols.identity_center_clients import SsoClients
from bridge.protocols.identity_center_protocol import (
    AUTH_CODE_TTL,
    DEVICE_GRANT,
    GRANT_TYPES,
    OIDC_ERRORS,
    S256_CHALLENGE,
    LoopbackUri,
    SsoError,
    body_str,
    forbidden,
    invalid_request,
    loopback_problem,
    normalize_start_url,
    page_of,
    pkce_matches,
    redirect_matches,
    unauthorized,
)
from bridge.storage import (
    AheadRead,
    AuthCode,
    AuthCodeStore,
    CliToken,
    DeviceApproval,
    OnceStore,
    SessionRecord,
    SessionStore,
    SsoClient,
    SsoClientStore,
    hash_id,
)
from bridge.telemetry import audit
from bridge.telemetry.audit import Auditor
from bridge.telemetry.logs import event

REUSED = ("refresh token already used: it came back after it was used, so every token of this sign-in is "
          "revoked; sign in again (`aws sso login`)")
CODE_REUSED = ("authorization code already used: it came back after it was redeemed, so every token it gave is "
               "revoked; sign in again (`aws sso login`)")

# --------------------------------------------------------------------------- roles by name


def sso_role_names(grants: Sequence[Grant]) -> dict[str, dict[str, Grant]]:
    """account id → role name → the grant that name serves (module docstring: shortest role path wins,
    then the smaller ARN; ``bridge.client.ssoconfig.role_names``, which `bridge explain` and `bridge configure
    --sso` use too). Accounts and roles in a stable order."""
    return {account: {name: found[0] for name, found in by_name.items()}
            for account, by_name in role_names(grants, lambda g: (g.account_id, g.role_name, g.role_arn)).items()}


@dataclass(frozen=True)
class AuthorizeRequest:
    """A validated ``GET /sso/authorize``: which client, where the code goes, and its PKCE challenge."""

    client: SsoClient
    redirect_uri: str
    state: str
    code_challenge: str
    redirect: LoopbackUri  # ``redirect_uri`` parsed: headers are built from its parts


@dataclass(frozen=True)
class Caller:
    """A presented access token, its record, and the live session that approved it."""

    token: str
    doc: CliToken
    session: SessionRecord


class IdentityCenterState(SessionStore, SsoClientStore, AuthCodeStore, OnceStore, Protocol):
    """What ``IdentityCenter`` keeps and reads: registered clients, authorization codes, used ones (once), and
    the approving session of a code."""


class IdentityCenter:
    def __init__(self, cfg: CliSettings, store: IdentityCenterState, device: DeviceFlow, sessions: Sessions,
                 access: AccessPoint, issuer: CredentialIssuer, *, base_url: str, auditor: Auditor,
                 clock: Callable[[], float] = time.time,
                 on_register: Callable[[str], None] = lambda outcome: None) -> None:
        self.auditor = auditor
        self.clients = SsoClients(cfg, store, lambda: self.clock(), on_register)
        self.cfg = cfg
        self.base_url = base_url
        self.store = store
        self.device = device
        self.sessions = sessions
        self.access = access
        self.issuer = issuer
        self.clock = clock
        # Access decision (the decision point memoises it per rules version and identity) → its account
        # list and roles by name: a user with 1,000 accounts pages through them without re-sorting.
        self._views: OrderedDict[int, tuple[object, list[dict[str, str]], dict[str, dict[str, Grant]]]] = OrderedDict()
        self._views_lock = threading.Lock()

    @property
    def start_url(self) -> str:
        return self.base_url.rstrip("/")

    @property
    def endpoint(self) -> str:
        return f"{self.start_url}/sso"

    # -- sso-oidc ---------------------------------------------------------------------------------
    def register_client(self, body: Mapping[str, Any], *, client_ip: str = "") -> dict[str, Any]:
        return self.clients.register(body, client_ip=client_ip, endpoint=self.endpoint)

    def client(self, client_id: str, client_secret: str) -> SsoClient:
        """The registered client, authenticated by its secret; InvalidClientException otherwise."""
        return self.clients.authenticate(client_id, client_secret)

    def start_device_authorization(self, body: Mapping[str, Any], *, client_ip: str,
                                   user_agent: str) -> dict[str, Any]:
        client = self.client(body_str(body, "clientId", limit=256), body_str(body, "clientSecret", limit=256))
        start = body_str(body, "startUrl")
        if normalize_start_url(start) != normalize_start_url(self.start_url):
            raise SsoError.oidc("invalid_request", f"startUrl must be this bridge's start URL {self.start_url}")
        if DEVICE_GRANT not in client.grant_types:
            raise SsoError.oidc("unauthorized_client", "this client did not register the device_code grant")
        d = self.device.start(client.client_id, client_ip=client_ip, user_agent=user_agent, registered=True)
        base = self.start_url
        return {"deviceCode": d.device_code, "userCode": d.user_code, "verificationUri": f"{base}/device",
                "verificationUriComplete": f"{base}/device?{urlencode({'user_code': d.user_code})}",
                "expiresIn": d.expires_in, "interval": d.interval}

    def _lifetimes(self, client: SsoClient) -> tuple[int, int]:
        cfg = self.cfg
        return cfg.sso_token_lifetime, cfg.refresh_token_lifetime if "refresh_token" in client.grant_types else 0

    def _alive(self, shash: str) -> bool:
        try:
            return self.sessions.load(shash) is not None
        except BridgeError:
            return False

    def create_token(self, body: Mapping[str, Any], ctx: audit.Context | None = None) -> dict[str, Any]:
        client = self.client(body_str(body, "clientId", limit=256), body_str(body, "clientSecret", limit=256))
        grant_type = body_str(body, "grantType", limit=256)
        if grant_type not in GRANT_TYPES:
            raise SsoError.oidc("unsupported_grant_type", f"unsupported grant type {grant_type[:64]!r}")
        if grant_type not in client.grant_types:
            raise SsoError.oidc("unauthorized_client", f"this client did not register the {grant_type} grant")
        lifetime, refresh = self._lifetimes(client)
        try:
            if grant_type == DEVICE_GRANT:
                out = self.device.poll(client.client_id, body_str(body, "deviceCode", limit=256),
                                       session_alive=self._alive, lifetime=lifetime, refresh_lifetime=refresh)
            elif grant_type == "authorization_code":
                out = self._redeem_code(client, body, lifetime, refresh, ctx or audit.Context())
            else:
                out = self._refresh(client, body_str(body, "refreshToken", limit=256), lifetime, refresh,
                                    ctx or audit.Context())
        except DeviceError as e:
            raise SsoError.oidc(e.error if e.error in OIDC_ERRORS else "invalid_grant", e.description) from None
        self.clients.used(client)
        resp = {"accessToken": out["access_token"], "tokenType": "Bearer", "expiresIn": out["expires_in"]}
        if "refresh_token" in out:
            resp["refreshToken"] = out["refresh_token"]
        return resp

    def _redeem_code(self, client: SsoClient, body: Mapping[str, Any], lifetime: int, refresh: int,
                     ctx: audit.Context) -> dict[str, Any]:
        """Tokens for an authorization code, once. A redeemed code is kept apart (``used:<hash>``: an earlier
        version, during a rolling upgrade, never finds it there), with the family of what it gave, until it would
        have expired: presented again with its client, redirect URI and verifier, the whole copy is in someone
        else's hands, and everything it gave ends (RFC 6749 §4.1.2)."""
        code, redirect, verifier = (body_str(body, "code", limit=256), body_str(body, "redirectUri"),
                                    body_str(body, "codeVerifier", limit=256))
        chash, now = hash_id(code), int(self.clock())
        stored = self.store.take_auth_code(chash)  # single use, even under concurrent presentations
        if stored is None or stored.expires_at <= now:
            used = self.store.take_auth_code(f"used:{chash}") if stored is None else None
            if used is not None and used.family is not None and self._code_problem(used, client, redirect,
                                                                                    verifier) is None:
                self._family_reused(client, used.approval.session, used.family, used.approval.correlation_id, ctx,
                                    grant_type="authorization_code", message=CODE_REUSED)
            if used is not None:  # one who holds the code alone ends nothing, and leaves it known
                self.store.put_auth_code(f"used:{chash}", used, max(1, used.expires_at - now))
            raise SsoError.oidc("invalid_grant", "unknown, expired or already used authorization code")
        if (problem := self._code_problem(stored, client, redirect, verifier)) is not None:
            raise SsoError.oidc("invalid_grant", problem)
        family = secrets.token_urlsafe(16)
        self.store.put_auth_code(f"used:{chash}", replace(stored, family=family), max(1, stored.expires_at - now))
        out = self.device.mint(client.client_id, stored.approval, session_alive=self._alive,
                               client_ip=stored.client_ip, user_agent=stored.user_agent, lifetime=lifetime,
                               refresh_lifetime=refresh, family=family)
        if self.device.family_ended(family):  # presented again while this one was minting
            self.device.revoke(out["access_token"])
            raise SsoError.oidc("invalid_grant", CODE_REUSED)
        return out

    @staticmethod
    def _code_problem(code: AuthCode, client: SsoClient, redirect: str, verifier: str) -> str | None:
        """Why ``code`` is not this client's to redeem with this redirect URI and verifier (None: it is)."""
        if code.client_id != client.client_id:
            return "unknown, expired or already used authorization code"
        if code.redirect_uri != redirect:
            return "redirectUri differs from the one the code was issued for"
        if not pkce_matches(verifier, code.code_challenge):
            return "codeVerifier does not match the code challenge (PKCE S256)"
        return None

    def _refresh(self, client: SsoClient, refresh_token: str, lifetime: int, refresh: int,
                 ctx: audit.Context) -> dict[str, Any]:
        found = self.device.refresh_token(refresh_token)
        if found is None or found[1].client_id != client.client_id:
            raise SsoError.oidc("invalid_grant", "unknown, expired or revoked refresh token")
        rhash, doc = found
        # Spent, or presented twice at once: a copy is in someone else's hands (RFC 9700 §4.14.2).
        if doc.kind == "spent" or not self.store.remember_once(f"sso-refresh:{rhash}",
                                                               max(1, doc.expires_at - int(self.clock()))):
            self._reused(client, rhash, doc, ctx)
        family = doc.family or secrets.token_urlsafe(16)  # a refresh token of an earlier version starts one
        self.device.spend(rhash, doc, family)  # rotated: its access token ends, the refresh token is spent
        session = self.sessions.load(doc.session) if self._alive(doc.session) else None
        if session is None:
            raise SsoError.oidc("invalid_grant", "the browser session that approved this sign-in has ended")
        approval = DeviceApproval(doc.session, session.expires_at, doc.correlation_id)
        out = self.device.mint(client.client_id, approval, session_alive=lambda _: True,
                               client_ip=doc.client_ip or "", user_agent=doc.user_agent or "", lifetime=lifetime,
                               refresh_lifetime=refresh, family=family)
        if self.device.family_ended(family):  # a reuse was seen while this refresh ran: this pair ends too
            self.device.revoke(out["access_token"])
            raise SsoError.oidc("invalid_grant", REUSED)
        return out

    def _reused(self, client: SsoClient, rhash: str, doc: CliToken, ctx: audit.Context) -> NoReturn:
        if doc.family:
            self._family_reused(client, doc.session, doc.family, doc.correlation_id, ctx, grant_type="refresh_token",
                                message=REUSED)
        self.device.revoke_stored(rhash)  # from before families: only its own pair is known
        self._audit_reuse(client, doc.session, doc.correlation_id, ctx, "refresh_token", 1 + bool(doc.pair))
        raise SsoError.oidc("invalid_grant", REUSED)

    def _family_reused(self, client: SsoClient, session: str, family: str, correlation: str | None,
                       ctx: audit.Context, *, grant_type: str, message: str) -> NoReturn:
        """A refresh token or authorization code came back after it was used: end every token of its family."""
        ended = self.device.end_family(session, family)
        self._audit_reuse(client, session, correlation, ctx, grant_type, ended)
        raise SsoError.oidc("invalid_grant", message)

    def _audit_reuse(self, client: SsoClient, session_hash: str, correlation: str | None, ctx: audit.Context,
                     grant_type: str, ended: int) -> None:
        event("sso_refresh_token_reused" if grant_type == "refresh_token" else "sso_authorization_code_reused",
              logging.WARNING, client_id=client.client_id, revoked=ended)
        session = self.store.get_session(session_hash)
        self.auditor.record("token_reuse", audit.Context(correlation, ctx.client_ip, ctx.user_agent),
                            outcome="revoked", client_id=client.client_id, revoked=ended, grant_type=grant_type,
                            who=audit.who(session.identity) if session is not None else None)

    # -- the browser step of the authorization code grant ----------------------------------------
    def authorize_request(self, params: Mapping[str, str]) -> AuthorizeRequest:
        """Check ``GET /sso/authorize`` before anything is shown: a BadRequest page (never a redirect)
        for an unknown client or a redirect URI it did not register."""
        client = self.store.get_sso_client(params.get("client_id", "")[:128])
        redirect, state = params.get("redirect_uri", ""), params.get("state", "")
        now = self.clock()
        if (client is None or client.expires_at <= now or (client.use_by is not None and client.use_by <= now)
                or "authorization_code" not in client.grant_types):
            raise BadRequest("authorize: unknown client", code="sso_client_invalid",
                             message="The application that sent you here is not registered with the bridge.",
                             hint="Run `aws sso login` again.")
        if len(redirect) > 2048 or len(state) > 512:  # refused, never cut: a cut URI is one nobody asked for
            raise BadRequest("authorize: redirect_uri or state too long", code="sso_redirect_invalid",
                             message="The application's request is too long for the bridge: a redirect address "
                             "of at most 2048 characters and a state of at most 512 are accepted.",
                             hint="Run `aws sso login` again with a current AWS CLI.")
        if (problem := loopback_problem(redirect)) is not None:
            raise BadRequest(f"authorize: redirect_uri refused: {problem}", code="sso_redirect_invalid",
                             message="The bridge does not accept this redirect address: only http://127.0.0.1, "
                             "http://[::1] or http://localhost, with a port from 1 to 65535 or none, and a plain path.",
                             hint=f"What is wrong with it: {problem}. Run `aws sso login` again with a current "
                             "AWS CLI.")
        target = redirect_matches(client.redirect_uris, redirect)
        if target is None:
            raise BadRequest("authorize: redirect_uri not registered", code="sso_redirect_invalid",
                             message="The application asked to send you to an address it did not register.")
        challenge = params.get("code_challenge", "")
        if (params.get("response_type") != "code" or params.get("code_challenge_method") != "S256"
                or S256_CHALLENGE.fullmatch(challenge) is None):
            raise BadRequest("authorize: response_type=code with PKCE S256 required", code="sso_pkce_required",
                             message="The application did not ask in a way the bridge accepts (PKCE S256).",
                             hint="The code_challenge must be the 43 base64url characters of an S256 challenge "
                                  "(RFC 7636). Run `aws sso login` again with a current AWS CLI.")
        return AuthorizeRequest(client, str(target), state, challenge, target)

    def authorize_decide(self, req: AuthorizeRequest, *, approve: bool, session_hash: str,
                         session: SessionRecord, client_ip: str, user_agent: str) -> str:
        """Where the browser goes next: the loopback redirect URI with ``code`` and ``state`` (or
        ``error=access_denied``). The code is single use, bound to the client, redirect URI and PKCE
        challenge, and names the approving session (never its grants)."""
        sep = "&" if req.redirect.query else "?"
        if not approve:
            return f"{req.redirect_uri}{sep}{urlencode({'error': 'access_denied', 'state': req.state})}"
        code = secrets.token_urlsafe(32)
        now = int(self.clock())
        self.store.put_auth_code(hash_id(code), AuthCode(
            client_id=req.client.client_id, redirect_uri=req.redirect_uri, code_challenge=req.code_challenge,
            approval=DeviceApproval(session_hash, session.expires_at, session.correlation_id),
            expires_at=now + AUTH_CODE_TTL, client_ip=client_ip, user_agent=user_agent[:200]), AUTH_CODE_TTL)
        return f"{req.redirect_uri}{sep}{urlencode({'code': code, 'state': req.state})}"

    # -- the sso portal ---------------------------------------------------------------------------
    def caller(self, token: str, read: AheadRead | None = None) -> Caller:
        """The live access token ``token`` and its session; UnauthorizedException otherwise. ``read``: the
        token and session as read ahead with the request's keys (``Sessions.load_ahead``)."""
        doc = self.device.token(token) if read is None else self.device.checked(hash_id(token), read.token)
        if doc is None:
            raise unauthorized()
        try:
            session = self.sessions.load(doc.session) if read is None else read.session
        except NotSignedIn:
            session = None
        if session is None:
            self.device.revoke(token)
            raise unauthorized("Session token not found or invalid: the sign-in that approved it has ended")
        return Caller(token, doc, session)

    def grants(self, c: Caller) -> list[Grant]:
        """The caller's grants under the rules in force now (passthrough grants need the browser)."""
        return [g for g in self._decision(c) if g.path != "passthrough"]

    def _decision(self, c: Caller) -> list[Grant]:
        if c.session.passthrough_grants is not None:
            return list(c.session.passthrough_grants)
        return self.access.decide(c.session.identity).grants

    def _view(self, c: Caller) -> tuple[list[dict[str, str]], dict[str, dict[str, Grant]]]:
        """(accounts as ListAccounts lists them, account → role name → grant), decided now."""
        decided = self._decision(c)
        with self._views_lock:
            hit = self._views.get(id(decided))
            if hit is not None and hit[0] is decided:
                self._views.move_to_end(id(decided))
                return hit[1], hit[2]
        roles = sso_role_names([g for g in decided if g.path != "passthrough"])
        catalog = self.access.rules.mapping.accounts
        items = []
        for account_id, by_name in roles.items():
            entry = catalog.get(account_id)
            email = getattr(entry, "email", None) if entry is not None else None
            items.append(present.sso_account(next(iter(by_name.values())), str(email) if email else None))
        items.sort(key=lambda i: (i["accountName"].lower(), i["accountId"]))
        if c.session.passthrough_grants is None:  # only decisions the decision point keeps are cached
            with self._views_lock:
                self._views[id(decided)] = (decided, items, roles)  # holding ``decided`` keeps its id unique
                while len(self._views) > 256:
                    self._views.popitem(last=False)
        return items, roles

    def list_accounts(self, c: Caller, next_token: str | None, max_results: str | None) -> dict[str, Any]:
        items, _ = self._view(c)
        page, token = page_of(items, next_token, max_results, "accounts")
        return {"accountList": page, "nextToken": token} if token else {"accountList": page}

    def list_account_roles(self, c: Caller, account_id: str, next_token: str | None,
                           max_results: str | None) -> dict[str, Any]:
        if not account_id:
            raise invalid_request("accountId is required")
        roles = self._view(c)[1].get(account_id)
        if roles is None:
            raise SsoError.portal("ResourceNotFoundException", 404, "No roles in this account for you")
        items = [present.sso_role(gr) for gr in roles.values()]
        page, token = page_of(items, next_token, max_results, f"roles:{account_id}")
        return {"roleList": page, "nextToken": token} if token else {"roleList": page}

    def role_grant(self, c: Caller, account_id: str, role_name: str) -> Grant:
        if not account_id or not role_name:
            raise invalid_request("accountId and roleName are required")
        grant = self._view(c)[1].get(account_id, {}).get(role_name)
        if grant is None:
            if c.session.passthrough_grants is None and any(
                    r.grant.account_id == account_id and r.grant.role_name == role_name
                    for r in self.access.requestable(c.session.identity)):
                # Given on request (README "Access requests"): listed here once a request is approved.
                raise forbidden(f"No access: this role is given on request; ask for it at "
                                f"{self.base_url}/requests")
            raise forbidden()
        return grant

    def role_credentials(self, c: Caller, grant: Grant, ctx: audit.Context,
                         sealed: Sealed | None = None) -> dict[str, Any]:
        """Credentials exactly as the portal gives them: the grant's default duration, its tags and
        source identity, the server-side credential cache, one audit record."""
        try:
            creds = self.issuer.issue_credentials(c.session.identity, grant, grant.default_duration, ctx=ctx,
                                                  sealed=sealed)
        except MfaRequired:
            raise forbidden("No access: this role needs a sign-in with MFA") from None
        except BadRequest as e:
            raise invalid_request(e.message or str(e)) from None
        return {"roleCredentials": {"accessKeyId": creds.access_key_id, "secretAccessKey": creds.secret_access_key,
                                    "sessionToken": creds.session_token,
                                    "expiration": int(creds.expiration.timestamp() * 1000)}}

    def logout(self, token: str) -> None:
        """Revoke the access token (and its refresh token)."""
        if self.device.token(token) is None:
            raise unauthorized()
        self.device.revoke(token)
