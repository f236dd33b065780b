"""``bridge check-config --probe``: reach what the config names, and report what sign-ins said.

For every enabled connector: the IdP's documents (OIDC discovery and JWKS, SAML metadata) are fetched
as the bridge fetches them, and the note the running bridge keeps in Redis of the last sign-in through
it is read — so an IdP that sends ``mail`` where the connector reads ``email`` shows here, with the fix,
after one test sign-in. An IdP or Redis that cannot be reached is a problem (exit 1); what sign-ins
noted is a warning.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

from bridge.config import OidcConnectorSettings, SamlConnectorSettings, Settings, WorkloadConnectorSettings
from bridge.domain.errors import BridgeError, ConfigError
from bridge.storage import NoteStore


@dataclass
class ProbeReport:
    """What the probe found: ``lines`` (what answered), ``warnings``, ``problems`` (each names its connector)."""

    lines: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)


def _utc(epoch: int) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(epoch))


def _probe_oidc(cfg: OidcConnectorSettings, report: ProbeReport) -> None:
    from bridge.upstream.oidc import OidcConnector

    c = OidcConnector(cfg)
    meta = c.metadata()
    keys = c._keyset()
    userinfo = "a userinfo endpoint" if isinstance(meta.get("userinfo_endpoint"), str) else "no userinfo endpoint"
    report.lines.append(f"connector {cfg.id}: discovery of {cfg.issuer} answers ({userinfo}), "
                        f"JWKS with {len(keys.keys)} key(s)")
    supported = meta.get("claims_supported")
    if isinstance(supported, list):
        for option in ("email_claim", "groups_claim"):
            claim = getattr(cfg, option)
            if claim not in supported:
                report.warnings.append(f"connector {cfg.id}: the IdP's claims_supported does not list `{claim}` "
                                       f"({option}): it may never send it")


def _probe_saml(cfg: SamlConnectorSettings, settings: Settings, report: ProbeReport) -> None:
    from bridge.upstream.saml import SamlConnector

    c = SamlConnector(cfg, base_url=settings.base_url, resolve=settings.resolve, replay_guard=lambda key, ttl: True)
    idp = c.idp_settings()
    certs = len(idp.get("x509certMulti", {}).get("signing") or []) or (1 if idp.get("x509cert") else 0)
    report.lines.append(f"connector {cfg.id}: IdP metadata answers (entity id {idp['entityId']}, "
                        f"{certs} signing certificate(s)); the bridge asks for NameID "
                        f"{cfg.requested_name_id_format()}")


def _probe_workload(cfg: WorkloadConnectorSettings, settings: Settings, report: ProbeReport) -> None:
    from bridge.upstream.workload import WorkloadConnector

    keys = WorkloadConnector(cfg, resolve=settings.resolve).keyset()
    source = f"jwks_file {settings.resolve(cfg.jwks_file)}" if cfg.jwks_file else (
        f"jwks_uri {cfg.jwks_uri}" if cfg.jwks_uri else f"discovery of {cfg.issuer_url}")
    report.lines.append(f"connector {cfg.id}: workload keys from {source}: {len(keys.keys)} key(s) "
                        f"({', '.join(sorted(str(k.kid) for k in keys.keys))}); no sign-ins (token exchange only)")


def _sign_in_notes(connector_id: str, store: NoteStore, report: ProbeReport) -> None:
    note = store.sign_in_note(connector_id)
    if note is None:
        report.lines.append(f"connector {connector_id}: no sign-in recorded yet: sign in once, then probe again "
                            "(or open \"Why these roles?\" on the portal)")
        return
    report.lines.append(f"connector {connector_id}: last sign-in {_utc(note.last_at)}"
                        + ("" if note.warnings else ", nothing to warn about"))
    for w in note.warnings:
        report.warnings.append(f"connector {connector_id}: the sign-in of {_utc(note.warned_at or 0)}: {w}")


def probe(settings: Settings) -> ProbeReport:
    """Fetch each enabled connector's IdP documents and read the sign-in notes from Redis."""
    from bridge.storage.redis import RedisStore, redis_client

    report = ProbeReport()
    store: RedisStore | None = None
    try:
        store = RedisStore(redis_client(settings.redis, settings.resolve), settings.redis.key_prefix)
        if not store.ping():
            raise ConfigError([f"redis: {settings.redis.url} does not answer"])
    except Exception as e:  # noqa: BLE001 - Cluster reads its slot map at construction; any failure is reported
        report.problems.append(e.problems[0] if isinstance(e, ConfigError) else
                               f"redis: cannot reach {settings.redis.url} ({type(e).__name__})")
        store = None
    for cfg in settings.enabled_connectors:
        try:
            if isinstance(cfg, OidcConnectorSettings):
                _probe_oidc(cfg, report)
            elif isinstance(cfg, SamlConnectorSettings):
                _probe_saml(cfg, settings, report)
            elif isinstance(cfg, WorkloadConnectorSettings):
                _probe_workload(cfg, settings, report)
                continue  # no browser sign-ins: nothing noted
            if store is not None:
                _sign_in_notes(cfg.id, store, report)
        except BridgeError as e:
            detail = (e.detail or e.message).removeprefix(f"{cfg.id}: ")
            report.problems.append(f"connector {cfg.id}: {detail}")
    return report
