"""Everything a request needs, built once by ``create_app`` from settings (no module-level clients).

``Services`` is a container, not a decision maker: the web layer gets it from
``app.extensions["bridge"]`` and calls the part that decides what it asks:

- ``access``   (bridge/access.py)         identity → the grants the rules in force give it: THE decision point
- ``issuer``   (bridge/issuing.py)        a grant → credentials (one MFA + duration check, cache, STS, audit)
- ``console``  (bridge/console_signin.py) a grant → a console sign-in (federation URL or SAML POST)
- ``sessions`` (bridge/sessions.py)       browser sessions: start, load, re-check with the IdP, end, offboarding
- ``device``   (bridge/device.py)         device codes and the CLI tokens they become
- ``identity_center`` (bridge/identity_center.py) IAM Identity Center's sso-oidc and sso portal protocol
- ``requests`` (bridge/access_requests.py) just-in-time access requests (the decision point asks it)
- ``flow``     (bridge/flow.py)           pending sign-ins with the upstream IdPs
- ``scim``     (bridge/scim)              SCIM provisioning from the IdP (None unless ``scim.token`` is set)
- ``store``    (bridge/storage)           the state, behind one interface
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass

from bridge import audit
from bridge.access import PASSTHROUGH_VERSION, Access, AccessPoint, rule_book
from bridge.access_requests import AccessRequests
from bridge.audit import Auditor
from bridge.aws.keys import KeyRing
from bridge.aws.sts import StsGateway
from bridge.config import Settings
from bridge.console_signin import ConsoleSignin
from bridge.credcache import CredentialCache
from bridge.device import DeviceFlow
from bridge.errors import ConfigError
from bridge.flow import LoginFlow
from bridge.identity_center import IdentityCenter
from bridge.issuing import CredentialIssuer, saml_issuer_for
from bridge.keysource import KeySource, load_keys
from bridge.logs import event
from bridge.metrics import Metrics
from bridge.rulebook import RuleBook
from bridge.scim.service import ScimService, build_scim
from bridge.sealing import Sealer
from bridge.sessions import Sessions
from bridge.storage import Store
from bridge.storage.redis import RedisStore, redis_client
from bridge.upstream import Connector
from bridge.upstream.build import build_connector

# Re-exported: callers that imported these from here before the split (bridge.cli, tests).
__all__ = ["PASSTHROUGH_VERSION", "Access", "KeySource", "Services", "build_auditor", "build_services",
           "load_keys", "rule_book", "saml_issuer_for"]


@dataclass
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
    device: DeviceFlow | None = None
    cache: CredentialCache | None = None
    identity_center: IdentityCenter | None = None
    requests: AccessRequests | None = None
    scim: ScimService | None = None  # bridge/scim: SCIM provisioning (scim.token set)

    @property
    def keyring(self) -> KeyRing:
        """The keys as published at this moment (the signing one is ``.active`` / ``.saml_active``)."""
        return self.keys.current()

    def idp_metadata(self) -> bytes:
        """Our SAML IdP metadata (every SAML signing cert), for IAM."""
        return self.issuer.idp_metadata()


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
    keys = KeySource(settings.keys_dir, keyring, interval=settings.issuer.keys_reload_interval, clock=time.time,
                     max_age_days=settings.issuer.key_max_age_days)
    metrics = Metrics(keys=keys.info)
    rules = rule_book(settings, on_failure=metrics.rules_reload_failed)
    metrics.watch(rules=rules.status)
    try:
        client = redis_client(settings.redis, settings.resolve)
    except Exception as e:  # noqa: BLE001 - Cluster reads its slot map at construction
        raise ConfigError([f"redis: cannot reach the cluster at {settings.redis.url} ({type(e).__name__})"]) from None
    store = RedisStore(client, settings.redis.key_prefix, on_error=metrics.redis_error)
    metrics.watch(sso_clients=store.sso_client_count)
    connectors = {c.id: build_connector(c, base_url=settings.base_url, resolve=settings.resolve,
                                        replay_guard=store.remember_once, on_stale=metrics.stale)
                  for c in settings.enabled_connectors}
    sts = StsGateway(region=settings.aws.region, endpoint_url=settings.aws.sts_endpoint_url,
                     timeout=settings.aws.sts_timeout, max_attempts=settings.aws.sts_max_attempts,
                     on_call=metrics.sts_call, max_concurrency=settings.aws.sts_max_concurrency,
                     on_in_flight=metrics.sts_in_flight_change)
    # The cache keys seal cached credentials and what is kept beside sessions (bridge/sealing.py).
    sealer = Sealer(keyring.cache, on_unknown_key=lambda: keys.ring(force=True)) if keyring.cache else None
    cache = (CredentialCache(store, sealer, refresh_window=settings.credential_cache.refresh_window)
             if settings.credential_cache.enabled and sealer is not None else None)
    if sealer is None:
        event("config_warning", logging.WARNING, message=f"issuer.keys_dir: no cache key in {settings.keys_dir}: "
              "upstream refresh tokens and pass-through artifacts are kept in Redis unencrypted (run `bridge keys "
              "generate --kind cache`, then restart).")
    else:
        keys.on_reload = lambda ring: sealer.use_keys(ring.cache)  # a cache key added while running
    auditor = build_auditor(settings, store, metrics)
    device = DeviceFlow(store, settings.cli)
    issuer = CredentialIssuer(settings, keys, sts, connectors, cache=cache, metrics=metrics, auditor=auditor)
    access = AccessPoint(settings, rules, connectors, auditor)
    requests = AccessRequests(settings, store, access, auditor)
    access.requests = requests  # the decision point asks for active approved requests at each decision
    sessions = Sessions(store, settings, connectors, device, cache, sealer=sealer)
    svc = Services(
        settings=settings, store=store, connectors=connectors, keys=keys, rules=rules, metrics=metrics,
        auditor=auditor, cache=cache, device=device, issuer=issuer,
        flow=LoginFlow(store, connectors, base_url=settings.base_url, ttl=settings.session.pending_login_ttl),
        access=access, console=ConsoleSignin(settings, issuer, metrics=metrics, auditor=auditor), sessions=sessions,
        identity_center=IdentityCenter(settings, store, device, sessions, access, issuer, auditor=auditor,
                                       on_register=metrics.sso_registered), requests=requests)
    svc.scim = build_scim(settings, store, sessions, svc.flow, auditor)
    return svc
