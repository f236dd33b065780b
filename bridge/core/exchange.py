"""The token exchange (RFC 8693) at ``POST /oauth/token``: a registered app (``apps:``, bridge/config/apps.py)
trades its user's ID token from a configured connector for AWS credentials of one grant, decided by the
decision point like a sign-in and narrowed by the app's session policy. No Flask here: the view
(bridge/web/exchange.py) hands the form's values, the ``Origin`` and the audit context.

``TokenExchange.exchange`` checks, in this order, and refuses with an ``ExchangeRefused`` (an OAuth error,
RFC 6749 §5.2, and the bridge's own code, docs/troubleshooting.md) at the first that fails:

1. the parameters (each at most once, strings, within bounds; ``subject_token_type`` an ID token or a JWT, as
   the token's ``typ`` says; ``requested_token_type`` AWS credentials; one target in ``audience``/``resource``);
2. the client address's rate limit (``rate_limits.exchange_per_minute``: before anything is verified, only
   the caller's own budget is charged), the app (``client_id``), its ``Origin`` when a browser sent one;
3. the subject token, verified by a connector of the app that ``ExchangesTokens`` (signature, issuer, the
   app's audience at that IdP, expiry) — an MFA sign-in older than the connector's ``mfa_max_age`` counts as
   none, as in a session —, the user's, then the app's, rate limits (one EVAL), the app's DPoP proof
   (``apps[].dpop``, bridge/core/dpop.py: ``invalid_dpop_proof``) and its nonce (``apps[].dpop_nonce``,
   bridge/core/dpop_nonce.py: ``use_dpop_nonce``), its ``jti`` spent (any app's), and — for a
   connector whose tokens are ``single_use`` — its ``jti``, kept until the token expires and refused a second
   time; then SCIM, when on, as at a sign-in: a user it deactivated (or deleted) is refused
   (``exchange_deprovisioned``, audited), its groups apply (``scim.groups``);
4. the target: a grant the decision point gives the user *now* and that the app may ask for (an app never
   gets more than its user), not a pass-through grant, without a session policy of its own;
5. the app's session policy rendered for the user (AWS's policy limits), the app's duration, and issuance
   through the one ``CredentialIssuer`` (MFA, cache, STS, audit — the record names the app; the session name
   starts with the app's client id, a long one shortened: ``prefixed_session_name``).

**Without ``client_id``** (a CI job, a service account: no app, no browser) the subject token must come from a
connector that ``WorkloadTokens`` (``type: workload``), found by its issuer; any other token is refused
(``exchange_client_required``: a sign-in IdP's token is exchanged by a registered app), as is a browser
``Origin``. The token is verified for the connector's own audiences, rate-limited per address (before) and per
connector and subject (``exchanges_per_minute``), its ``jti`` kept as above, SCIM and ``mfa_max_age`` as
above; the role named in ``audience``/``resource`` must be a grant the decision point gives the workload now
(not a pass-through one; a rule's own session policy goes with it); it lives the grant's default duration
(never above its max); the session name is the rule's, or — when the rule names none (its default
``{email}``: a workload has none) — the workload's (repository and run id); the audit record names the
connector, the subject and the ``workload``.

The answer (``issued_token_type`` ``urn:ietf:params:aws:token-type:credentials``): ``access_token`` is the
credentials as JSON text, ``credentials`` the same as an object, ``token_type`` ``N_A`` (RFC 8693 §2.2.1; also
with DPoP: AWS credentials cannot be bound to a key), ``dpop_jkt`` the proven key's thumbprint.
"""

from __future__ import annotations

import functools
import hashlib
import json
import logging
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace

from bridge.aws.limits import sanitize_session_name
from bridge.config.apps import AppSettings, app_policy
from bridge.core.access import AccessPoint
from bridge.core.credcache import Sealed
from bridge.core.dpop import DpopRefused, Proof, app_proof, workload_proof
from bridge.core.dpop_nonce import DpopNonces
from bridge.core.exchange_grant import Narrowed
from bridge.core.exchange_refused import ExchangeRefused, as_refusal, scim_refusal, token_refusal, typ_refusal
from bridge.core.issuing import CredentialIssuer
from bridge.core.stepup import mfa_current
from bridge.domain.errors import BridgeError, ConfigError, LoginError, UpstreamUnavailable
from bridge.domain.identity import Credentials, Grant, Identity
from bridge.mapping.ruleset import PolicyT
from bridge.scim.directory import Deprovisioned, Directory, ScimUnmatched
from bridge.storage.resources import OnceStore, RateLimitStore
from bridge.telemetry import audit
from bridge.telemetry.logs import event
from bridge.upstream import Connector
from bridge.upstream.base import NO_POLICY, ExchangesTokens, SubjectToken, WorkloadTokens

EXCHANGE_GRANT = "urn:ietf:params:oauth:grant-type:token-exchange"
ID_TOKEN = "urn:ietf:params:oauth:token-type:id_token"  # noqa: S105 - a token type, not a secret
JWT = "urn:ietf:params:oauth:token-type:jwt"
AWS_CREDENTIALS = "urn:ietf:params:aws:token-type:credentials"
SUBJECT_TYPES = (ID_TOKEN, JWT)
MAX_TOKEN = 16_384  # characters: larger than any ID token an IdP sends
MAX_PARAM = 2_048
VERIFIED_KEEP = 60  # seconds a verified subject token is remembered (an app exchanging it again: no RSA, no JWKS)
VERIFIED_MAX = 10_000  # entries (the oldest go first)
TAG = "{exchange}:"  # every exchange bucket in one Cluster slot: counted together in one EVAL
KNOWN = ("grant_type", "client_id", "subject_token", "subject_token_type", "requested_token_type", "audience",
         "resource", "scope", "actor_token", "actor_token_type")


def _bad(message: str) -> ExchangeRefused:
    return ExchangeRefused("invalid_request", message)


@dataclass(frozen=True)
class ExchangeRequest:
    """The checked parameters of one exchange."""

    client_id: str
    subject_token: str
    target: str

    def __repr__(self) -> str:  # the subject token is a credential
        return f"ExchangeRequest(client_id={self.client_id!r}, target={self.target!r})"


def parse(form: Mapping[str, Sequence[str]]) -> ExchangeRequest:
    """The parameters of a token exchange, each checked (``form``: name → every value sent)."""
    for name, values in form.items():
        if name in KNOWN and len(values) > 1:
            raise _bad(f"{name} was sent {len(values)} times; send it once")

    def one(name: str, *, required: bool = True, limit: int = MAX_PARAM) -> str:
        value = (form.get(name) or [""])[0]
        if not isinstance(value, str):
            raise _bad(f"{name} must be text")
        if required and not value.strip():
            raise _bad(f"{name} is missing")
        if len(value) > limit:
            raise _bad(f"{name} is longer than {limit} characters")
        return value.strip()

    if one("grant_type") != EXCHANGE_GRANT:
        raise ExchangeRefused("unsupported_grant_type", "this is the token exchange; grant_type must be "
                              f"{EXCHANGE_GRANT}")
    client_id = one("client_id", required=False, limit=128)  # none: a workload's token (WorkloadTokens)
    token = one("subject_token", limit=MAX_TOKEN)
    if (kind := one("subject_token_type")) not in SUBJECT_TYPES:
        raise _bad(f"subject_token_type {kind[:100]!r} is not served; send {ID_TOKEN} (or {JWT})")
    if (wanted := one("requested_token_type", required=False)) and wanted != AWS_CREDENTIALS:
        raise _bad(f"requested_token_type {wanted[:100]!r} is not served; the bridge issues {AWS_CREDENTIALS}")
    if one("actor_token", required=False) or one("actor_token_type", required=False):
        raise _bad("actor_token (delegation) is not supported")
    if one("scope", required=False):
        raise ExchangeRefused("invalid_scope", "scope is not used: name the role with audience (or resource)")
    audience, resource = one("audience", required=False), one("resource", required=False)
    if audience and resource and audience != resource:
        raise ExchangeRefused("invalid_target", "audience and resource name different roles; name one")
    if not (target := audience or resource):
        raise _bad("audience (or resource) is missing: name the role, as a role ARN, <account>/<role> or grant id")
    if (wrong := typ_refusal(token, id_token=kind == ID_TOKEN)) is not None:  # at+jwt sent as an ID token
        raise wrong
    return ExchangeRequest(client_id, token, target)


def grant_names(g: Grant) -> set[str]:
    """Every name an app may use for ``g``: grant id, role ARN, ``<account id>/<role>``, ``<alias>/<role>``."""
    role = g.role_arn.rsplit("/", 1)[-1]
    names = {g.id, g.role_arn, f"{g.account_id}/{role}"}
    if g.account_alias:
        names.add(f"{g.account_alias}/{role}")
    return names


@dataclass(frozen=True)
class App:
    """A registered app with its compiled session policy."""

    settings: AppSettings
    policy: PolicyT
    origins: frozenset[str]
    grants: frozenset[str]

    @classmethod
    def of(cls, a: AppSettings) -> App:
        problems: list[str] = []
        policy = app_policy(a.session_policy, f"apps[{a.client_id}].session_policy", problems)
        if policy is None or problems:  # checked at startup (apps_problems): only a bug gets here
            raise ValueError("; ".join(problems) or "session policy did not compile")
        return cls(a, policy, frozenset(a.origins), frozenset(a.grants))


class TokenExchange:
    """Registered apps' ID tokens → AWS credentials, through the decision point and the one issuer."""

    def __init__(self, apps: Sequence[AppSettings], connectors: Mapping[str, Connector], access: AccessPoint,
                 issuer: CredentialIssuer, *, once: OnceStore, limits: RateLimitStore,
                 directory: Directory | None = None, per_address: int = 0,
                 clock: Callable[[], float] = time.time, skew: int = 60, token_url: str = "",
                 nonces: DpopNonces | None = None) -> None:
        self.apps = {a.client_id: App.of(a) for a in apps}
        # A connector that cannot verify a token without a browser (SAML, dev) is no IdP for an app.
        if problems := [f"apps[{i}].idp_audiences: connector {cid!r} cannot verify tokens for an exchange (only "
                        "OIDC connectors can, not SAML or dev ones)" for i, a in enumerate(apps)
                        for cid in a.idp_audiences
                        if cid in connectors and not isinstance(connectors[cid], ExchangesTokens)]:
            raise ConfigError(problems)
        self.connectors = connectors
        self.access = access
        self.issuer = issuer
        self.once = once
        self.limits = limits
        self.directory = directory  # SCIM (bridge/scim/directory.py), when on: asked as at each sign-in
        self.per_address = per_address  # exchanges a minute of one client address, counted before verification
        self.clock = clock
        self.skew = skew
        self.token_url = token_url  # base_url + /oauth/token: what a DPoP proof's htu must name (never the Host)
        self.nonces = nonces or DpopNonces(tuple, clock=clock)  # apps[].dpop_nonce (bridge/core/dpop_nonce.py)
        self.origins = frozenset(o for a in self.apps.values() for o in a.origins)
        # (app, token hash) → (the verified token, until): the same token exchanged again is not verified again
        # within VERIFIED_KEEP (never past its exp); single-use tokens are still refused the second time.
        self._verified: OrderedDict[tuple[str, str], tuple[SubjectToken, float]] = OrderedDict()
        self._verified_lock = threading.Lock()
        self._narrowed = Narrowed()  # _grant's answer, kept by its objects: a stable grant (exchange_grant.py)

    def cors_allowed(self, origin: str | None) -> bool:
        """Whether a browser page of ``origin`` may call the exchange at all (preflight: no client id yet)."""
        return bool(origin) and origin in self.origins

    def app(self, client_id: str) -> App:
        app = self.apps.get(client_id)
        if app is None:
            raise ExchangeRefused("invalid_client", "unknown client_id: no app is registered under it",
                                  code="exchange_unknown_client", status=401,
                                  hint="Register the app under apps: in the bridge's config.")
        return app

    def exchange(self, form: Mapping[str, Sequence[str]], *, origin: str | None,
                 ctx: audit.Context | None = None, dpop: Sequence[str] = (),
                 address: str | None = None) -> dict[str, object]:
        """The token response for one exchange, or ExchangeRefused saying which check failed (``dpop``: every
        ``DPoP`` header value sent, bridge/core/dpop.py; ``address``: the client's, bridge/web/common.py
        ``client_address``, counted before the subject token is verified)."""
        req = parse(form)
        # Before verification only the caller's own address is charged: a stranger's garbage must not use up
        # an app's or a user's budget (those are counted once the token verified).
        by_address = [] if address is None else [(f"{TAG}address:{_hash(address)}", self.per_address)]
        if not req.client_id:
            self._limit(by_address)
            self._proof(None, dpop, None, req.subject_token)
            return self._workload_exchange(req, origin=origin, ctx=ctx)
        app = self.app(req.client_id)
        if origin is not None and origin not in app.origins:
            raise ExchangeRefused("unauthorized_client", "this app may not be called from this origin",
                                  code="exchange_origin_refused", hint="List the page's origin in the app's origins.")
        known = self._remembered(app, req.subject_token)
        if known is None:
            self._limit(by_address)
        subject = known or self._verify(app, req.subject_token)
        identity = self._aged(subject.identity)
        limits, who = app.settings.rate_limits, _hash(f"{identity.issuer}\0{identity.subject}")
        # the user's bucket first: one over it spends nothing of the app's (Store.hits), so no single token
        # locks every user of the app out; refusals the rules make later still count (within the user's budget)
        counted = [(f"{TAG}user:{app.settings.client_id}:{who}", limits.per_user_per_minute),
                   (f"{TAG}app:{app.settings.client_id}", limits.per_app_per_minute)]
        grant, sealed = None, None
        if known is None:
            self._limit(counted)
        else:  # nothing to verify: the address, the app and the user counted with the cache read, at once
            grant, sealed = self._counted_ahead(by_address + counted, app, identity, req.target)
        proof = self._proof(app, dpop, subject, req.subject_token)
        jkt = proof.jkt if proof else None
        self._once(subject)
        admitted = self._admitted(identity, req.target, ctx, app=app.settings.client_id)
        if grant is None or admitted is not identity:  # SCIM's groups: decided again
            grant = self._grant(app, admitted, req.target)
        identity, duration = admitted, min(app.settings.max_duration, grant.max_duration)
        try:
            creds = self.issuer.issue_credentials(identity, grant, duration, ctx=ctx, app=app.settings.client_id,
                                                  sealed=sealed, dpop_jkt=jkt)
        except BridgeError as e:
            raise as_refusal(e) from None
        event("token_exchanged", app=app.settings.client_id, connector=identity.connector_id,
              role_arn=grant.role_arn, rule=grant.via, duration=duration, dpop_jkt=jkt or "")
        return {**_answer(creds, int(self.clock())), **({"dpop_jkt": jkt} if jkt else {})}

    def _proof(self, app: App | None, values: Sequence[str], subject: SubjectToken | None,
               token: str) -> Proof | None:
        """The app's DPoP proof checked (bridge/core/dpop.py) and its ``jti`` spent (for every app, until no
        instance would take the proof: ``Proof.until``); a workload's exchange takes none."""
        try:
            if app is None:
                workload_proof(list(values))
                return None
            proof = app_proof(app.settings.dpop, list(values), url=self.token_url, now=self.clock(),
                              subject_token=token, cnf=subject.cnf if subject else None)
            self.nonces.check(app.settings.client_id, proof)  # dpop_nonce: before its jti is spent
            if proof and not self.once.first_use("dpop", proof.jti, proof.until):  # one namespace: any app
                raise DpopRefused("this DPoP proof was already used (its jti is single use)",
                                  code="dpop_proof_replayed", hint="Sign a new proof, with a new jti, for each "
                                                                   "request.")
        except DpopRefused as e:
            level = logging.INFO if e.code == "dpop_nonce_required" else logging.WARNING  # a first ask: by design
            event("exchange_dpop_refused", level, app=app.settings.client_id if app else "", code=e.code)
            raise ExchangeRefused(e.oauth, e.message, code=e.code, hint=e.hint) from None
        return proof

    def _limit(self, buckets: Sequence[tuple[str, int]]) -> None:
        """Count one exchange in each (bucket, limit) that is on (one round trip); refused when any is over."""
        if on := [(b, limit) for b, limit in buckets if limit > 0]:
            _refuse_over(self.limits.hits(on))

    def _counted_ahead(self, buckets: Sequence[tuple[str, int]], app: App, identity: Identity,
                       target: str) -> tuple[Grant | None, Sealed | None]:
        """A subject token this process verified already (no verification to protect): every count and the
        credential-cache entry its grant will look up, in one round trip (as ``Store.read_ahead`` does for
        ``POST /credentials``). The grant as decided now (None: refused, decided again to say why)."""
        try:
            grant: Grant | None = self._grant(app, identity, target)
        except ExchangeRefused:
            grant = None
        key = None if grant is None else self.issuer.cache.key(
            identity, self.issuer.tagged(grant, identity), min(app.settings.max_duration, grant.max_duration))
        waits, blob = self.limits.hits_reading([(b, limit) for b, limit in buckets if limit > 0], key)
        _refuse_over(waits)
        return grant, None if key is None else Sealed(key, blob)

    def _aged(self, identity: Identity) -> Identity:
        """``identity`` with its MFA no longer counting past its connector's ``mfa_max_age``, as a session's."""
        connector = self.connectors.get(identity.connector_id)
        policy = connector.policy if connector is not None else NO_POLICY
        return mfa_current(identity, policy.mfa_max_age, int(self.clock()))

    def _admitted(self, identity: Identity, target: str, ctx: audit.Context | None, **whose: str) -> Identity:
        """``identity`` as SCIM has it (its groups), or refused (and audited) when SCIM deactivated the user or
        cannot tell (no single value of the claim it matches on: fail closed)."""
        if self.directory is None:
            return identity
        try:
            return self.directory.admitted(identity)
        except (Deprovisioned, ScimUnmatched) as e:
            self.issuer.auditor.record("credentials", ctx or audit.Context(), outcome="failure", error=e.code,
                                       who=audit.who(identity), how=audit.how(identity), target=target[:200], **whose)
            unmatched = isinstance(e, ScimUnmatched)
            event("exchange_scim_unmatched" if unmatched else "exchange_deprovisioned", logging.WARNING,
                  connector=identity.connector_id, **whose)
            raise scim_refusal(unmatched=unmatched) from None

    def _verify(self, app: App | None, token: str) -> SubjectToken:
        """``token`` verified for ``app`` (None: a workload's, without an app), remembered for a minute, never
        past its expiry."""
        if (hit := self._remembered(app, token)) is not None:
            return hit
        key, now = _verified_key(app, token), self.clock()
        subject = self._verify_now(app, token) if app else self._verify_workload(token)
        with self._verified_lock:
            self._verified[key] = (subject, min(now + VERIFIED_KEEP, subject.expires_at))
            while len(self._verified) > VERIFIED_MAX:
                self._verified.popitem(last=False)
        return subject

    def _remembered(self, app: App | None, token: str) -> SubjectToken | None:
        """``token`` as this process verified it for ``app`` within VERIFIED_KEEP (never past its expiry)."""
        with self._verified_lock:
            hit = self._verified.get(_verified_key(app, token))
        return hit[0] if hit is not None and self.clock() < hit[1] else None

    def _verify_now(self, app: App, token: str) -> SubjectToken:
        """The first of the app's connectors that vouches for ``token``; another IdP's token tries the next."""
        last: LoginError | None = None
        for cid, audiences in app.settings.idp_audiences.items():
            connector = self.connectors.get(cid)
            if not isinstance(connector, ExchangesTokens):
                continue
            try:
                return connector.verify_subject_token(token, audiences=tuple(audiences))
            except LoginError as e:  # InvalidIdToken, EmailUnverified
                if e.code != "subject_token_issuer":
                    last = e
                    break
            except UpstreamUnavailable:
                raise ExchangeRefused("temporarily_unavailable", "the identity provider's keys cannot be read now",
                                      code="exchange_unavailable", status=503, retry_after=30) from None
        if last is None:
            raise ExchangeRefused("invalid_grant", "the subject token is not from an identity provider this app "
                                  "is registered with", code="exchange_unknown_issuer",
                                  hint="Sign the user in at one of the app's connectors (apps[].idp_audiences).")
        event("exchange_token_refused", logging.WARNING, app=app.settings.client_id, code=last.code,
              detail=last.detail[:200])
        raise token_refusal(last)

    def _verify_workload(self, token: str) -> SubjectToken:
        """A token exchanged without an app: verified by the workload connector of its issuer, for the connector's
        own audiences; any other token (a sign-in IdP's, an unknown issuer's) needs an app's ``client_id``."""
        last: LoginError | None = None
        for connector in self.connectors.values():
            if not isinstance(connector, WorkloadTokens):
                continue
            try:
                return connector.verify_subject_token(token, audiences=())
            except LoginError as e:
                if e.code != "subject_token_issuer":
                    last = e  # another connector of the same issuer (other audiences) may still take it
            except UpstreamUnavailable:
                raise ExchangeRefused("temporarily_unavailable", "the workload issuer's keys cannot be read now",
                                      code="exchange_unavailable", status=503, retry_after=30) from None
        if last is None:
            raise ExchangeRefused("invalid_request", "client_id is missing, and the subject token is not from a "
                                  "workload connector (type: workload): a sign-in identity provider's token is "
                                  "exchanged by a registered app", code="exchange_client_required",
                                  hint="Send the app's client_id (apps:), or configure a type: workload connector "
                                  "for the CI platform's issuer.")
        event("exchange_token_refused", logging.WARNING, app="", code=last.code, detail=last.detail[:200])
        raise token_refusal(last, workload=True)

    def _workload_exchange(self, req: ExchangeRequest, *, origin: str | None,
                           ctx: audit.Context | None) -> dict[str, object]:
        """A workload's token → credentials of the grant the rules give it now (see the module's docstring)."""
        if origin is not None:  # a CI job or a pod sends no Origin: a browser page needs a registered app
            raise ExchangeRefused("invalid_request", "client_id is missing: a browser page exchanges its user's "
                                  "token as a registered app", code="exchange_client_required",
                                  hint="Send the app's client_id (apps[].client_id).")
        subject = self._verify(None, req.subject_token)
        identity = self._aged(subject.identity)
        connector = self.connectors.get(identity.connector_id)
        limit = connector.exchanges_per_minute if isinstance(connector, WorkloadTokens) else 0
        who = _hash(f"{identity.issuer}\0{identity.subject}")
        self._limit([(f"{TAG}workload:{identity.connector_id}:{who}", limit)])
        self._once(subject)
        workload = identity.name or identity.subject
        identity = self._admitted(identity, req.target, ctx, workload=workload)
        grant = self._workload_grant(replace(subject, identity=identity), req.target)
        duration = min(grant.default_duration, grant.max_duration)
        try:
            creds = self.issuer.issue_credentials(identity, grant, duration, ctx=ctx, workload=workload)
        except BridgeError as e:
            raise as_refusal(e) from None
        event("token_exchanged", app="", workload=workload[:200], connector=identity.connector_id,
              role_arn=grant.role_arn, rule=grant.via, duration=duration)
        return _answer(creds, int(self.clock()))

    def _workload_grant(self, subject: SubjectToken, target: str) -> Grant:
        """The grant named ``target`` that the decision point gives the workload now, with its session name."""
        identity = subject.identity
        held = next((g for g in self.access.decide(identity).grants if target in grant_names(g)), None)
        if held is None:
            raise ExchangeRefused("invalid_target", f"the rules give this workload ({(identity.name or '')[:100]}) "
                                  f"no role named {target[:200]!r} now", code="exchange_target_not_granted",
                                  hint="`bridge explain --connector <id> --token-claims <claims.json>` shows why.")
        if held.path == "passthrough":
            raise ExchangeRefused("invalid_target", "that role cannot be exchanged: its rule redeems the IdP's own "
                                  "token (path: passthrough)", code="exchange_target_own_policy")
        # The rule's own session name, unless it has none (its default {email} fell back to the subject, the same
        # for every run): then the workload's (repository and run id), so CloudTrail tells the runs apart.
        if subject.session_name and held.session_name == sanitize_session_name(identity.subject):
            held = replace(held, session_name=sanitize_session_name(subject.session_name))
        return held

    def _once(self, subject: SubjectToken) -> None:
        """Single-use tokens (a workload connector's): the ``jti`` is kept until the token expires."""
        if not subject.single_use:
            return
        if not subject.token_id:
            raise ExchangeRefused("invalid_grant", "this identity provider's tokens are single use and this one has "
                                  "no jti", code="exchange_token_no_jti")
        # kept until the last moment the connector still accepts the token (its expires_at has the skew in)
        if not self.once.first_use(f"jti:{subject.identity.connector_id}", subject.token_id,
                                   subject.expires_at + self.skew):
            raise ExchangeRefused("invalid_grant", "this subject token was already exchanged (its jti is single use)",
                                  code="exchange_token_replayed", hint="Get a new token from the identity provider.")

    def _grant(self, app: App, identity: Identity, target: str) -> Grant:
        """The user's grant named ``target``, allowed to the app, narrowed by the app's policy and session name."""
        decision = self.access.decide(identity)
        held = next((g for g in decision.grants if target in grant_names(g)), None)
        if held is None and any(target in grant_names(g) and grant_names(g) & app.grants for g in decision.locked):
            raise ExchangeRefused("invalid_grant", "that role needs an MFA sign-in, and this token's sign-in had none "
                                  "or it is older than the connector's mfa_max_age", code="exchange_mfa_required",
                                  hint="Sign the user in again with MFA and exchange the new token.")
        if held is None or not (grant_names(held) & app.grants):
            if held is None and target not in app.grants and not any(target in grant_names(g) for g in decision.locked):
                raise ExchangeRefused("invalid_target", "this app may not ask for that role",
                                      code="exchange_target_not_allowed", hint="Ask for one of the app's grants.")
            if held is None:
                raise ExchangeRefused("invalid_target", "the rules do not give this user that role now (an app "
                                      "never gets more than its user)", code="exchange_target_not_granted",
                                      hint="Check the user's roles with `bridge explain`.")
            raise ExchangeRefused("invalid_target", "this app may not ask for that role",
                                  code="exchange_target_not_allowed", hint="Ask for one of the app's grants.")
        if held.path == "passthrough" or held.policy is not None or held.policy_arns:
            raise ExchangeRefused("invalid_target", "that role cannot be exchanged: its rule redeems the IdP's own "
                                  "token or sends its own session policy, which the app's policy cannot be combined "
                                  "with", code="exchange_target_own_policy")
        return self._narrowed.get(held, identity, app, app.policy, app.settings.client_id, app.settings.max_duration)


@functools.lru_cache(maxsize=8192)  # a bucket's name: the same few addresses and users again and again
def _hash(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()[:32]


def _verified_key(app: App | None, token: str) -> tuple[str, str]:
    return app.settings.client_id if app else "", hashlib.sha256(token.encode()).hexdigest()


def _refuse_over(waits: Sequence[int]) -> None:
    if wait := max(waits, default=0):
        raise ExchangeRefused("slow_down", f"too many exchanges; retry in {wait} s", code="exchange_rate_limited",
                              status=429, retry_after=wait)


def _answer(creds: Credentials, now: int) -> dict[str, object]:
    """RFC 8693 §2.2.1 with AWS credentials as the issued token."""
    credentials = {"AccessKeyId": creds.access_key_id, "SecretAccessKey": creds.secret_access_key,
                   "SessionToken": creds.session_token, "Expiration": creds.expiration_iso()}
    return {"access_token": json.dumps(credentials, separators=(",", ":")), "issued_token_type": AWS_CREDENTIALS,
            "token_type": "N_A", "expires_in": max(0, int(creds.expiration.timestamp()) - now),
            "credentials": credentials, "role_arn": creds.role_arn, "assumed_role_arn": creds.assumed_role_arn,
            "region": creds.region}
