"""Everything a request needs, built once by ``create_app`` from settings (no module-level clients).

``Services`` is a container, not a decision maker: the web layer gets it from
``app.extensions["bridge"]`` and calls the part that decides what it asks:

- ``access``   (bridge/core/access.py)         identity → the grants the rules in force give it: THE decision point
- ``issuer``   (bridge/core/issuing.py)        a grant → credentials (one MFA + duration check, cache, STS, audit)
- ``console``  (bridge/core/console_signin.py) a grant → a console sign-in (federation URL or SAML POST)
- ``sessions`` (bridge/core/sessions.py)       browser sessions: start, load, re-check with the IdP, end, offboarding
- ``device``   (bridge/core/device.py)         device codes and the CLI tokens they become
- ``identity_center`` (bridge/protocols/identity_center.py) IAM Identity Center's sso-oidc and sso portal protocol
- ``requests`` (bridge/core/access_requests.py) just-in-time access requests (the decision point asks their ledger)
- ``flow``     (bridge/core/flow.py)           pending sign-ins with the upstream IdPs
- ``signin``   (bridge/core/signin.py)    a callback → audited decision and a new session: the sign-in sequence
- ``exchange`` (bridge/core/exchange.py)       apps' ID tokens, workloads' tokens → AWS credentials (RFC 8693)
- ``scim``     (bridge/scim)              SCIM provisioning from the IdP (None unless ``scim.token`` is set)
- ``store``    (bridge/storage)           the state: the ``Store`` façade (each service above is handed only
                                           the resources it uses: bridge/storage/resources.py)

Each service is handed its own section of the settings or a small frozen value (``IssuerConfig``), never
the whole ``Settings``; every field is set (a credential cache that is off is ``NoCache``); nothing is
assigned after construction: the access requests' ledger is built before the decision point that asks
it, and ``AccessRequests`` (which asks the decision point) after it. ``build_services(settings,
store=MemoryStore())`` builds it all without Redis (the unit tests); ``sts=`` likewise replaces STS.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass

from bridge import mapping
from bridge.aws.sts import StsGateway
from bridge.config import Settings
from bridge.core.access import PASSTHROUGH_VERSION, AccessPoint, Decision, rule_book
from bridge.core.access_requests import AccessRequests, RequestLedger
from bridge.core.console_signin import ConsoleSignin
from bridge.core.credcache import Cache, CredentialCache, NoCache
from bridge.core.device import DeviceFlow
from bridge.core.dpop_nonce import DpopNonces
from bridge.core.exchange import TokenExchange
from bridge.core.flow import LoginFlow
from bridge.core.issuing import CredentialIssuer, IssuerConfig, saml_issuer_for
from bridge.core.keysource import KeySource, load_keys
from bridge.core.rulebook import RuleBook
from bridge.core.sessions import Sessions
from bridge.core.signin import SignIn
from bridge.domain.errors import ConfigError
from bridge.keys.sealing import Sealer
from bridge.keys.signing import KeyRing
from bridge.protocols.identity_center import IdentityCenter
from bridge.scim.directory import Directory, end_inactive
from bridge.scim.service import ScimService, ScimState
from bridge.storage import AuditStore, Store
from bridge.storage.redis import RedisStore, redis_client
from bridge.telemetry import audit
from bridge.telemetry.audit import Auditor
from bridge.telemetry.logs import event
from bridge.telemetry.metrics import Metrics
from bridge.upstream import Connector
from bridge.upstream.base_settings import ConnectorEnv

# Re-exported: callers that imported these from here before the split (bridge.commands.cli, tests).
__all__ = ["PASSTHROUGH_VERSION", "Decision", "KeySource", "Services", "build_auditor", "build_services",
           "load_keys", "rule_book", "saml_issuer_for"]


@dataclass(frozen=True)
class Services:
    settings: Settings
    store: Store
    connectors: dict[str, Connector]
    keys: KeySource
    rules: RuleBook
    metrics: Metrics
    auditor: Auditor
    flow: LoginFlow
    access: AccessPoint
    issuer: CredentialIssuer
    console: ConsoleSignin
    sessions: Sessions
    signin: SignIn
    device: DeviceFlow
    cache: Cache
    identity_center: IdentityCenter
    requests: AccessRequests
    exchange: TokenExchange
    scim: ScimService | None  # None: SCIM off (no scim.token), /scim/v2 not served — not a null object

    @property
    def keyring(self) -> KeyRing:
        """The keys as published at this moment (the signing one is ``.active`` / ``.saml_active``)."""
        return self.keys.current()

    def idp_metadata(self) -> bytes:
        """Our SAML IdP metadata (every SAML signing cert), for IAM."""
        return self.issuer.idp_metadata()


def build_auditor(settings: Settings, store: AuditStore, metrics: Metrics) -> Auditor:
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


def redis_store(settings: Settings, metrics: Metrics) -> Store:
    """The production store: Redis as ``redis:`` says (ConfigError when a cluster cannot be reached)."""
    try:
        client = redis_client(settings.redis, settings.resolve)
    except Exception as e:  # noqa: BLE001 - Cluster reads its slot map at construction
        raise ConfigError([f"redis: cannot reach the cluster at {settings.redis.url} ({type(e).__name__})"]) from None
    return RedisStore(client, settings.redis.key_prefix, on_error=metrics.redis_error)


def grant_defaults(settings: Settings) -> mapping.GrantDefaults:
    """What rules leave unsaid (token audience, AWS path, IAM SAML provider), for the decision point."""
    d = settings.grant_defaults()
    return mapping.GrantDefaults(d["default_audience"], d["default_path"], d["saml_provider"])


def build_services(settings: Settings, *, store: Store | None = None, sts: StsGateway | None = None) -> Services:
    """Wire store, connectors, keys, STS, cache, metrics and audit; raise ConfigError listing every problem.
    ``store`` and ``sts`` replace Redis and AWS STS (the unit tests build the whole app on ``MemoryStore``)."""
    keyring, problems = load_keys(settings)
    if problems or keyring is None:
        raise ConfigError(problems)
    # The cache keys seal cached credentials and what is kept beside sessions (bridge/keys/sealing.py); a value under
    # a key this process has not read yet re-reads the folder, and a re-read hands the sealer the keys it found.
    sealer = Sealer(keyring.cache, on_unknown_key=lambda: keys.ring(force=True)) if keyring.cache else None
    keys = KeySource(settings.keys_dir, keyring, interval=settings.issuer.keys_reload_interval, clock=time.time,
                     max_age_days=settings.issuer.key_max_age_days,
                     on_reload=None if sealer is None else lambda ring: sealer.use_keys(ring.cache))
    metrics = Metrics(keys=keys.info)
    rules = rule_book(settings, on_failure=metrics.rules_reload_failed)
    metrics.watch(rules=rules.status)
    store = store if store is not None else redis_store(settings, metrics)
    metrics.watch(sso_clients=store.sso_client_count)
    env = ConnectorEnv(settings.base_url, settings.resolve, replay_guard=store.remember_once, on_stale=metrics.stale)
    connectors = {c.id: c.open(env) for c in settings.enabled_connectors}
    aws = settings.aws
    sts = sts if sts is not None else StsGateway(
        region=aws.region, endpoint_url=aws.sts_endpoint_url, timeout=aws.sts_timeout,
        max_attempts=aws.sts_max_attempts, on_call=metrics.sts_call, max_concurrency=aws.sts_max_concurrency,
        on_in_flight=metrics.sts_in_flight_change)
    cache: Cache = NoCache()
    if settings.credential_cache.enabled and sealer is not None:
        hits, misses = metrics.credential_cache.labels("hit"), metrics.credential_cache.labels("miss")
        cache = CredentialCache(store, sealer, refresh_window=settings.credential_cache.refresh_window,
                                on_lookup=lambda hit: (hits if hit else misses).inc())
    if sealer is None:
        event("config_warning", logging.WARNING, message=f"issuer.keys_dir: no cache key in {settings.keys_dir}: "
              "upstream refresh tokens and pass-through artifacts are kept in Redis unencrypted (run `bridge keys "
              "generate --kind cache`, then restart).")
    auditor = build_auditor(settings, store, metrics)
    device = DeviceFlow(store, settings.cli)
    issuer = CredentialIssuer(IssuerConfig.from_settings(settings), keys, sts, cache=cache,
                              metrics=metrics, auditor=auditor)
    # The ledger first: the decision point asks it for active requests; AccessRequests asks the decision point.
    ledger = RequestLedger(settings.requests, store, auditor, approve_url=f"{settings.base_url}/requests/approve")
    access = AccessPoint(rules, connectors, auditor, defaults=grant_defaults(settings), admin=settings.admin,
                         requests=ledger)
    # SCIM, when on (scim.token set): asked at each sign-in and each use of a session (bridge/scim/directory.py)
    workloads = frozenset(c.id for c in settings.connectors if c.type == "workload")
    directory = Directory(store, settings.scim, workloads=workloads) if settings.scim.enabled else None
    sessions = Sessions(store, settings.session, connectors, device, cache, sealer=sealer, directory=directory)
    flow = LoginFlow(store, connectors, base_url=settings.base_url, ttl=settings.session.pending_login_ttl,
                     admit=directory.admit if directory else None)
    signin = SignIn(flow, connectors, access, sessions, store, auditor, metrics, partition=aws.partition,
                    audit_in_store=settings.audit.sink == "redis")
    return Services(
        settings=settings, store=store, connectors=connectors, keys=keys, rules=rules, metrics=metrics,
        auditor=auditor, cache=cache, device=device, issuer=issuer, access=access, sessions=sessions,
        flow=flow, signin=signin,
        console=ConsoleSignin(aws, issuer, portal_url=f"{settings.base_url}/portal", metrics=metrics,
                              auditor=auditor),
        identity_center=IdentityCenter(settings.cli, store, device, sessions, access, issuer,
                                       base_url=settings.base_url, auditor=auditor,
                                       on_register=metrics.sso_registered),
        requests=AccessRequests(ledger, access),
        exchange=TokenExchange(settings.apps, connectors, access, issuer, once=store, limits=store,
                               token_url=f"{settings.base_url}/oauth/token", directory=directory,
                               per_address=settings.rate_limits.exchange_per_minute,
                               nonces=DpopNonces(lambda: keys.ring().cache, made=lambda: keys.ring().cache_made,
                                                 clock=time.time,
                                                 apps=[a.client_id for a in settings.apps if a.dpop_nonce])),
        scim=build_scim(settings, store, sessions, directory, auditor))


def build_scim(settings: Settings, store: ScimState, sessions: Sessions, directory: Directory | None,
               auditor: Auditor) -> ScimService | None:
    """The SCIM provider when ``scim.token`` is set (None: off, and ``/scim/v2`` is not served at all)."""
    if directory is None:
        return None
    return ScimService(store, directory, auditor, settings.base_url,
                       end_sessions=lambda handles: end_inactive(sessions, directory, handles))
