"""Everything a request needs, built once by ``create_app`` from settings (no module-level clients)."""

from __future__ import annotations

import base64
import json
import logging
import os
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from bridge import audit, mapping
from bridge.audit import Auditor
from bridge.aws import console
from bridge.aws.assertion import SamlIssuer, mint_saml_response, signin_saml_endpoint
from bridge.aws.keys import KeyRing, SamlKey, SigningKey, expiry, load_keyring
from bridge.aws.metadata import idp_metadata
from bridge.aws.signin import get_signin_token
from bridge.aws.sts import StsGateway
from bridge.aws.token import mint_token
from bridge.aws.validate import validate_assume_params
from bridge.config import Settings, reload_mapping, rules_file_path
from bridge.credcache import CredentialCache
from bridge.device import DeviceFlow
from bridge.errors import BadRequest, BridgeError, ConfigError, MfaRequired
from bridge.flow import LoginFlow
from bridge.identity import Credentials, Grant, Identity
from bridge.logs import event
from bridge.metrics import KeyInfo, Metrics
from bridge.rulebook import RuleBook
from bridge.sessions import Sessions
from bridge.store import Store, redis_client
from bridge.upstream import Connector
from bridge.upstream.build import build_connector

PASSTHROUGH_VERSION = "aws_passthrough"  # sessions whose roles came from the IdP, not from rules

@dataclass(frozen=True)
class Access:
    """What the rules in force (``version``) give one identity: usable grants, MFA-locked ones, and
    whether a ``deny: all`` rule matched it (such an identity is no admin, whatever its groups)."""

    grants: list[Grant]
    locked: list[Grant]
    version: str
    denied_all: bool = False


# Decisions kept in this process, bounded by the grants they hold (a portal user may hold thousands).
ACCESS_MEMO_GRANTS = 50_000


def rule_book(settings: Settings, clock: Callable[[], float] = time.monotonic,
              on_failure: Callable[[str], None] = lambda kind: None) -> RuleBook:
    """The reloadable rules for ``settings``: watches the config file (if any) and the rules file."""
    def files(m: mapping.MappingSettings) -> list[Path]:
        return [p for p in (settings.source_file, rules_file_path(m.rules_file, settings.source_dir)) if p]

    reloadable = settings.source_file is not None or settings.rules_path is not None
    return RuleBook(settings.mapping, loader=(lambda: reload_mapping(settings)) if reloadable else None,
                    files=files, clock=clock, on_failure=on_failure)


class KeySource:
    """The signing keys on disk, re-read when the folder changes (``bridge keys rotate`` adds and
    schedules keys while the bridge runs; every worker on every instance picks them up).

    Checked at most every ``interval`` seconds; a folder that no longer loads cleanly keeps the
    last good ring (and logs why), so a half-copied key never takes signing down.
    """

    def __init__(self, directory: Path, ring: KeyRing, *, interval: float, clock: Callable[[], float],
                 on_reload: Callable[[KeyRing], None] | None = None) -> None:
        self.directory = directory
        self.on_reload = on_reload
        self.interval = interval
        self.clock = clock
        self._ring = ring
        self._sig = self._signature()
        self._checked = clock()
        self._lock = threading.Lock()

    def _signature(self) -> tuple[tuple[str, int], ...]:
        try:
            return tuple(sorted((e.name, e.stat().st_mtime_ns) for e in os.scandir(self.directory)))
        except OSError:
            return ()

    def ring(self) -> KeyRing:
        now = self.clock()
        if now - self._checked >= self.interval and self._lock.acquire(blocking=False):
            try:
                self._checked = now
                sig = self._signature()
                if sig != self._sig:
                    ring, problems = load_keyring(self.directory)
                    if ring is None or problems:
                        event("keys_reload_failed", logging.ERROR, problems=problems[:5])
                    else:
                        self._ring, self._sig = ring, sig
                        if self.on_reload:
                            self.on_reload(ring)
                        event("keys_reloaded", jwt=[k.kid for k in ring.keys], saml=[k.kid for k in ring.saml],
                              cache_keys=len(ring.cache))
            finally:
                self._lock.release()
        return self._ring

    def current(self) -> KeyRing:
        """The published keys now, the signing one last."""
        return self.ring().view(self.clock())


@dataclass
class Services:
    settings: Settings
    store: Store
    flow: LoginFlow
    connectors: dict[str, Connector]
    keys: KeySource
    sts: StsGateway
    rules: RuleBook
    cache: CredentialCache | None = None
    device: DeviceFlow | None = None
    metrics: Metrics = field(default_factory=Metrics)
    auditor: Auditor = field(default_factory=lambda: Auditor(audit.NullSink()))
    clock: Callable[[], float] = field(default=time.time)
    sessions: Sessions = field(init=False)
    # (rules version, identity) → Access: the decision is a pure function of both, so re-deciding on
    # every request costs a dict lookup while the rules and the identity stay the same.
    _memo: OrderedDict[tuple[str, str], Access] = field(default_factory=OrderedDict, init=False, repr=False)
    _memo_lock: threading.Lock = field(default_factory=threading.Lock, init=False, repr=False)
    _memo_grants: int = field(default=0, init=False, repr=False)

    def __post_init__(self) -> None:
        self.sessions = Sessions(self.store, self.settings, self.connectors, self.device, self.cache,
                                 clock=self.clock)

    @property
    def keyring(self) -> KeyRing:
        """The keys as published at this moment (the signing one is ``.active`` / ``.saml_active``)."""
        return self.keys.current()

    def key_info(self) -> Iterator[KeyInfo]:
        """(kind, kid, state, expires_at) for each published key: state signing | next | retiring."""
        now = self.clock()
        ring = self.keyring
        max_age = self.settings.issuer.key_max_age_days
        groups: tuple[tuple[str, tuple[SigningKey | SamlKey, ...]], ...] = (("jwt", ring.keys), ("saml", ring.saml))
        for kind, keys in groups:
            for k in keys:
                state = ("signing" if k is keys[-1] else
                         "next" if k.schedule.sign_from is not None and k.schedule.sign_from > now else "retiring")
                yield kind, k.kid, state, expiry(k, max_age_days=max_age)

    def _defaults(self) -> mapping.GrantDefaults:
        d = self.settings.grant_defaults()
        return mapping.GrantDefaults(d["default_audience"], d["default_path"], d["saml_provider"])

    def access_for(self, identity: Identity, *, log: bool = True, ctx: audit.Context | None = None) -> Access:
        """THE decision point: what the rules in force give ``identity`` now. Every issuance (portal,
        credentials, console, API, device approval, admin rights) asks here at the moment of use.

        Logs what was sanitized, merged or withheld (rule names and reasons, never claim sets) unless
        ``log`` is off (the per-request path). With ``ctx`` (at sign-in), every decision is an audit
        record: granted or withheld, which rule, why."""
        connector = self.connectors.get(identity.connector_id)
        if identity.passthrough and connector is not None and connector.type == "saml":
            # aws_passthrough: exactly the roles the IdP asserted, whatever the rules say (no reload changes them)
            grants, notes = mapping.passthrough_grants(identity)
            if notes and log:
                event("passthrough_notes", connector=identity.connector_id, notes=notes)
            if ctx is not None:
                for g in grants:
                    self.auditor.record("grant_decision", ctx, outcome="granted", who=audit.who(identity),
                                        **audit.grant_fields(g))
            return Access(grants, [], PASSTHROUGH_VERSION)
        rules = self.rules.mapping
        version = str(rules.compiled.version)
        memo_key = (version, json.dumps(identity.to_json(), sort_keys=True, default=str))
        if not log and ctx is None:
            with self._memo_lock:
                hit = self._memo.get(memo_key)
                if hit is not None:
                    self._memo.move_to_end(memo_key)
                    return hit
        decision = mapping.decide(rules, identity, self._defaults())
        for r in decision.results if log else ():
            if r.notes or r.withheld:
                event("mapping_notes", logging.INFO, rule=r.rule, granted=len(r.grants),
                      withheld=[{"role_arn": w.role_arn, "code": w.code, "reason": w.reason} for w in r.withheld],
                      notes=list(r.notes[:20]))
        for r in decision.results if ctx is not None else ():
            assert ctx is not None
            for g in r.grants:
                self.auditor.record("grant_decision", ctx, outcome="granted", who=audit.who(identity),
                                    rules_version=version, notes=list(r.notes[:20]),
                                    **audit.grant_fields(g))
            for w in r.withheld:
                self.auditor.record("grant_decision", ctx, outcome="withheld", who=audit.who(identity),
                                    rules_version=version, rule=r.rule, role_arn=w.role_arn,
                                    code=w.code, reason=w.reason)
        deny_all = {r.name for r in rules.rules if r.deny is not None and r.deny.all}
        denied_all = any(r.matched and r.kind == "deny" and r.rule in deny_all for r in decision.results)
        access = Access(decision.grants, decision.locked, version, denied_all)
        with self._memo_lock:
            self._memo[memo_key] = access
            self._memo_grants += len(access.grants) + len(access.locked) + 1
            while self._memo_grants > ACCESS_MEMO_GRANTS and len(self._memo) > 1:
                _, old = self._memo.popitem(last=False)
                self._memo_grants -= len(old.grants) + len(old.locked) + 1
        return access

    def is_admin(self, identity: Identity) -> bool:
        """Admin rights through the same decision: in ``admin.groups``, with MFA when
        ``admin.require_mfa``, and not matched by a ``deny: all`` rule."""
        if not self.settings.is_admin(identity.groups, identity.mfa):
            return False
        return not self.access_for(identity, log=False).denied_all

    def grants_for(self, identity: Identity) -> list[Grant]:
        """The grants the rules in force give ``identity`` (for aws_passthrough SAML: what the IdP asserted)."""
        return self.access_for(identity).grants

    def explain(self, identity: Identity) -> list[mapping.RuleResult]:
        """Every rule in force, matched or not and why (for /portal/why and the admin page)."""
        return mapping.decide(self.rules.mapping, identity, self._defaults(), explain_all=True).results

    def issue_credentials(self, identity: Identity, grant: Grant, duration: int,
                          passthrough: dict[str, str] | None = None, *,
                          ctx: audit.Context | None = None) -> Credentials:
        """Credentials for ``grant``: from the server-side cache when fresh, else minted and redeemed
        at STS. Every outcome (fresh, cached, refused) is one audit record under ``ctx``."""
        ctx = ctx or audit.Context()
        base = {"who": audit.who(identity), "how": audit.how(identity), "duration": duration,
                **audit.grant_fields(grant)}
        try:
            creds, cached = self._credentials(identity, grant, duration, passthrough)
        except BridgeError as e:
            self.auditor.record("credentials", ctx, outcome="failure", error=e.code, **base)
            raise
        self.auditor.record("credentials", ctx, outcome="success", cached=cached, access_key_id=creds.access_key_id,
                            assumed_role_arn=creds.assumed_role_arn, expiration=creds.expiration_iso(), **base)
        return creds

    def _credentials(self, identity: Identity, grant: Grant, duration: int,
                     passthrough: dict[str, str] | None) -> tuple[Credentials, bool]:
        """Mint a token or assertion for ``grant`` and redeem it at STS; passthrough grants redeem
        the stored upstream artifact instead (``{"kind": "saml"|"oidc", "value": …}``)."""
        if grant.mfa_required and not identity.mfa:
            raise MfaRequired(f"{grant.role_arn} requires MFA; the sign-in did not use it")
        if problems := validate_assume_params(grant.session_name, duration, grant.max_duration):
            raise BadRequest("; ".join(p.message for p in problems), code="invalid_duration",
                             message="That session duration is not allowed for this role.")
        if self.cache is not None:
            cached = self.cache.get(identity, grant, duration)
            self.metrics.credential_cache.labels("hit" if cached else "miss").inc()
            if cached is not None:
                event("credentials_issued", role_arn=grant.role_arn, rule=grant.via, path=grant.path, cached=True,
                      session_name=grant.session_name, connector=identity.connector_id, duration=duration)
                return cached, True
        now = int(self.clock())
        started = time.monotonic()
        if grant.path == "passthrough":
            if passthrough is None:
                raise BadRequest("passthrough artifact expired", code="passthrough_expired",
                                 message="Your identity provider's sign-in can only be used for AWS for a few "
                                         "minutes, and that time has passed.",
                                 hint="Sign in again, then pick the role right away.")
            if passthrough["kind"] == "saml":
                assert grant.provider_arn is not None
                creds = self.sts.assume_role_with_saml(role_arn=grant.role_arn, principal_arn=grant.provider_arn,
                                                       saml_response=passthrough["value"], duration=duration)
            else:
                creds = self.sts.assume_role_with_web_identity(role_arn=grant.role_arn,
                                                               session_name=grant.session_name,
                                                               token=passthrough["value"], duration=duration)
        elif grant.path == "saml":
            assert grant.provider_arn is not None  # mapping always sets it
            creds = self.sts.assume_role_with_saml(role_arn=grant.role_arn, principal_arn=grant.provider_arn,
                                                   saml_response=self.mint_saml(grant, identity, duration, now),
                                                   duration=duration)
        else:
            token = mint_token(grant, identity, self.keyring.active, issuer=self.settings.issuer_url,
                               audience=grant.audience or self.settings.issuer.audience, now=now,
                               lifetime=self.settings.issuer.token_lifetime)
            creds = self.sts.assume_role_with_web_identity(role_arn=grant.role_arn,
                                                           session_name=grant.session_name, token=token,
                                                           duration=duration)
        self.metrics.grants_issued.labels(grant.path, "credentials").inc()
        event("credentials_issued", role_arn=grant.role_arn, rule=grant.via, path=grant.path, cached=False,
              session_name=grant.session_name, connector=identity.connector_id, duration=duration,
              tags=sorted(grant.tags), sts_ms=round((time.monotonic() - started) * 1000, 1))
        if self.cache is not None:
            self.cache.put(identity, grant, duration, creds)
        return creds, False

    # -- console sign-in (docs/aws-rules.md §3) ---------------------------------
    def console_method(self, grant: Grant) -> str:
        """``federation`` or ``saml_post`` for ``grant``: its own choice, else aws.console_method.
        Passthrough grants always use the federation endpoint: their SAML provider trusts the
        upstream IdP, not our signing key."""
        if grant.path == "passthrough":
            return "federation"
        return grant.console or self.settings.aws.console_method

    def federation_endpoint(self) -> str:
        aws = self.settings.aws
        return aws.federation_endpoint or console.federation_endpoint(aws.partition, aws.signin_region)

    def console_logout_url(self) -> str:
        """The AWS console sign-out link offered after the bridge's own sign-out (same sign-in host as
        the federation endpoint; the ``/oauth?Action=logout`` path is what AWS's console uses, not an
        AWS-documented API: UNCONFIRMED)."""
        return self.federation_endpoint().removesuffix("/federation") + "/oauth?Action=logout"

    def signin_saml_url(self) -> str:
        aws = self.settings.aws
        return aws.signin_saml_url or signin_saml_endpoint(aws.partition, aws.signin_region)[0]

    def console_destination(self, destination: str | None, region: str | None) -> str:
        """The allowlisted console URL for a destination (a path or a console URL of our partition)."""
        try:
            return console.resolve_destination(destination, self.settings.aws.partition, region or None)
        except ValueError as e:
            raise BadRequest(f"destination refused: {e}", code="bad_destination",
                             message="That console destination is not allowed: give a console path such as "
                                     "/s3/home or a console URL of this AWS partition.") from None

    def console_login_url(self, identity: Identity, grant: Grant, duration: int, destination: str,
                          passthrough: dict[str, str] | None = None, *, ctx: audit.Context | None = None) -> str:
        """Federation endpoint: credentials → getSigninToken (with SessionDuration: the bridge's
        credentials come from AssumeRoleWith{SAML,WebIdentity}, never chained or GetFederationToken)
        → the ``Action=login`` URL. A secret for 15 minutes: the caller 302s to it and never logs it.
        Audited as a ``console`` record (besides the ``credentials`` one for the STS call)."""
        ctx = ctx or audit.Context()
        base = self._console_audit(identity, grant, duration, "federation", destination)
        try:
            creds = self.issue_credentials(identity, grant, duration, passthrough=passthrough, ctx=ctx)
            session = min(max(duration, console.MIN_SESSION), console.MAX_SESSION)
            endpoint = self.federation_endpoint()
            token = get_signin_token(endpoint, creds, session, timeout=self.settings.aws.sts_timeout)
        except BridgeError as e:
            self.auditor.record("console", ctx, outcome="failure", error=e.code, **base)
            raise
        self.auditor.record("console", ctx, outcome="success", access_key_id=creds.access_key_id, **base)
        self.metrics.grants_issued.labels(grant.path, "console").inc()
        return console.login_url(endpoint, token, issuer=f"{self.settings.base_url}/portal", destination=destination)

    def console_saml_post(self, identity: Identity, grant: Grant, duration: int, *,
                          ctx: audit.Context | None = None, destination: str = "") -> tuple[str, str]:
        """SAML POST: (sign-in SAML URL, signed SAMLResponse) for an auto-submitting form; no STS call
        here — AWS's sign-in endpoint redeems it. SessionDuration in the assertion sets the console session."""
        ctx = ctx or audit.Context()
        base = self._console_audit(identity, grant, duration, "saml_post", destination)
        try:
            if grant.mfa_required and not identity.mfa:
                raise MfaRequired(f"{grant.role_arn} requires MFA; the sign-in did not use it")
            if problems := validate_assume_params(grant.session_name, duration, grant.max_duration):
                raise BadRequest("; ".join(p.message for p in problems), code="invalid_duration",
                                 message="That session duration is not allowed for this role.")
            out = self.signin_saml_url(), self.mint_saml(grant, identity, duration, int(self.clock()))
        except BridgeError as e:
            self.auditor.record("console", ctx, outcome="failure", error=e.code, **base)
            raise
        self.auditor.record("console", ctx, outcome="success", **base)
        self.metrics.grants_issued.labels(grant.path, "console").inc()
        return out

    @staticmethod
    def _console_audit(identity: Identity, grant: Grant, duration: int, method: str,
                       destination: str) -> dict[str, object]:
        return {"who": audit.who(identity), "how": audit.how(identity), "duration": duration, "method": method,
                "destination": destination.split("?", 1)[0], **audit.grant_fields(grant)}

    def passthrough_record(self, identity: Identity) -> tuple[dict[str, str], int] | None:
        """What to keep of an aws_passthrough login, and for how long (STS's own limits)."""
        if not identity.passthrough:
            return None
        connector = self.connectors.get(identity.connector_id)
        if connector is None:
            return None
        if connector.type == "saml":
            return {"kind": "saml", "value": identity.passthrough}, 300  # STS: redeem within 5 minutes
        ttl = 300
        try:  # the token was verified at login; only its exp is read here
            payload = identity.passthrough.split(".")[1]
            exp = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))["exp"]
            ttl = max(1, min(3600, int(exp) - int(self.clock())))
        except (IndexError, KeyError, ValueError, TypeError):
            pass
        return {"kind": "oidc", "value": identity.passthrough}, ttl

    def saml_issuer(self) -> SamlIssuer:
        return saml_issuer_for(self.settings)

    def idp_metadata(self) -> bytes:
        """Our SAML IdP metadata for `aws iam create-saml-provider` (every SAML signing cert)."""
        return idp_metadata(self.settings.saml_entity_id, self.keyring.saml, f"{self.settings.base_url}/idp/sso")

    def mint_saml(self, grant: Grant, identity: Identity, duration: int, now: int) -> str:
        """The signed base64 SAMLResponse for ``grant`` (AssumeRoleWithSAML or console POST)."""
        key = self.keyring.saml_active
        if key is None:
            raise ConfigError(["issuer.keys_dir: no SAML signing key (run `bridge keys generate --kind saml`)"])
        return mint_saml_response(grant, identity, key, self.saml_issuer(), now=now, duration=duration)


def saml_issuer_for(settings: Settings) -> SamlIssuer:
    """Our SAML identity (entity id) and where assertions go (partition's sign-in Recipient/Audience)."""
    recipient, audience = signin_saml_endpoint(settings.aws.partition, settings.aws.signin_region)
    return SamlIssuer(settings.saml_entity_id, recipient, audience, settings.saml_idp.sign_response)


def load_keys(settings: Settings) -> tuple[KeyRing | None, list[str]]:
    """The key ring and every problem with it for these settings (what startup and check-config report)."""
    keyring, problems = load_keyring(settings.keys_dir)
    problems = [f"issuer.keys_dir: {p}" for p in problems]
    if keyring is not None:
        if settings.credential_cache.enabled and not keyring.cache:
            problems.append(f"issuer.keys_dir: no credential cache key in {settings.keys_dir} (run `bridge keys "
                            "generate --kind cache`, or set credential_cache.enabled: false)")
        uses_saml = settings.aws.default_path == "saml" or any(
            g.path == "saml" for r in settings.mapping.rules for g in r.grants or [])
        if uses_saml and not keyring.saml:
            problems.append(f"issuer.keys_dir: rules use the SAML path but {settings.keys_dir} has no SAML key "
                            "(run `bridge keys generate --kind saml`)")
    return keyring, problems


def build_auditor(settings: Settings, store: Store, metrics: Metrics) -> Auditor:
    a = settings.audit
    sink: audit.Sink
    if a.sink == "file":
        assert a.path is not None  # validated
        sink = audit.FileSink(settings.resolve(a.path))
    elif a.sink == "redis":
        sink = audit.RedisStreamSink(lambda line, maxlen: store.audit_append(a.stream, line, maxlen), a.maxlen)
    elif a.sink == "stdout":
        sink = audit.StdoutSink()
    else:
        sink = audit.NullSink()
    return Auditor(sink, fail_closed=a.fail_closed, on_error=lambda name: metrics.audit_errors.labels(name).inc())


def build_services(settings: Settings) -> Services:
    """Wire store, connectors, keys, STS, cache, metrics and audit; raise ConfigError listing every problem."""
    keyring, problems = load_keys(settings)
    if problems or keyring is None:
        raise ConfigError(problems)
    keys = KeySource(settings.keys_dir, keyring, interval=settings.issuer.keys_reload_interval, clock=time.time)
    holder: list[Services] = []
    metrics = Metrics(keys=lambda: holder[0].key_info() if holder else (),
                      rules=lambda: holder[0].rules.status() if holder else None)
    try:
        client = redis_client(settings.redis, settings.resolve)
    except Exception as e:  # noqa: BLE001 - Cluster reads its slot map at construction
        raise ConfigError([f"redis: cannot reach the cluster at {settings.redis.url} ({type(e).__name__})"]) from None
    store = Store(client, settings.redis.key_prefix, on_error=metrics.redis_error)
    connectors = {c.id: build_connector(c, base_url=settings.base_url, resolve=settings.resolve,
                                        replay_guard=store.remember_once, on_stale=metrics.stale)
                  for c in settings.enabled_connectors}
    flow = LoginFlow(store, connectors, base_url=settings.base_url, ttl=settings.session.pending_login_ttl)
    sts = StsGateway(region=settings.aws.region, endpoint_url=settings.aws.sts_endpoint_url,
                     timeout=settings.aws.sts_timeout, max_attempts=settings.aws.sts_max_attempts,
                     on_call=metrics.sts_call)
    cache = (CredentialCache(store, keyring.cache, refresh_window=settings.credential_cache.refresh_window)
             if settings.credential_cache.enabled else None)
    if cache is not None:
        keys.on_reload = lambda ring: cache.use_keys(ring.cache)  # a cache key added while running
    rules = rule_book(settings, on_failure=metrics.rules_reload_failed)
    svc = Services(settings=settings, store=store, flow=flow, connectors=connectors, keys=keys, sts=sts,
                   rules=rules, cache=cache, device=DeviceFlow(store, settings.cli), metrics=metrics,
                   auditor=build_auditor(settings, store, metrics))
    holder.append(svc)
    return svc
