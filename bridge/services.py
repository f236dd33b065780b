"""Everything a request needs, built once by ``create_app`` from settings (no module-level clients)."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from bridge import mapping
from bridge.aws.keys import KeyRing, load_keyring
from bridge.aws.sts import StsGateway
from bridge.aws.token import mint_token
from bridge.aws.validate import validate_assume_params
from bridge.config import Settings, reload_mapping, rules_file_path
from bridge.errors import BadRequest, ConfigError, MfaRequired
from bridge.flow import LoginFlow
from bridge.identity import Credentials, Grant, Identity
from bridge.logs import event
from bridge.rulebook import RuleBook
from bridge.store import Store
from bridge.upstream import Connector, build_connector


@dataclass(frozen=True)
class Access:
    """What the rules in force (``version``) give one identity: usable grants, and MFA-locked ones."""

    grants: list[Grant]
    locked: list[Grant]
    version: str


def rule_book(settings: Settings, clock: Callable[[], float] = time.monotonic) -> RuleBook:
    """The reloadable rules for ``settings``: watches the config file (if any) and the rules file."""
    def files(m: mapping.MappingSettings) -> list[Path]:
        return [p for p in (settings.source_file, rules_file_path(m.rules_file, settings.source_dir)) if p]

    reloadable = settings.source_file is not None or settings.rules_path is not None
    return RuleBook(settings.mapping, loader=(lambda: reload_mapping(settings)) if reloadable else None,
                    files=files, clock=clock)


@dataclass
class Services:
    settings: Settings
    store: Store
    flow: LoginFlow
    connectors: dict[str, Connector]
    keyring: KeyRing
    sts: StsGateway
    rules: RuleBook
    clock: Callable[[], float] = field(default=time.time)

    def _defaults(self) -> mapping.GrantDefaults:
        d = self.settings.grant_defaults()
        return mapping.GrantDefaults(d["default_audience"], d["default_path"], d["saml_provider"])

    def access_for(self, identity: Identity, *, log: bool = True) -> Access:
        """Run the rules in force; log what was sanitized, merged or withheld (rule names and reasons,
        never claim sets) unless ``log`` is off (sessions re-evaluated after a reload)."""
        rules = self.rules.mapping
        decision = mapping.decide(rules, identity, self._defaults())
        for r in decision.results if log else ():
            if r.notes or r.withheld:
                event("mapping_notes", logging.INFO, rule=r.rule, granted=len(r.grants),
                      withheld=[{"role_arn": w.role_arn, "code": w.code, "reason": w.reason} for w in r.withheld],
                      notes=list(r.notes[:20]))
        return Access(decision.grants, decision.locked, rules.compiled.version)

    def grants_for(self, identity: Identity) -> list[Grant]:
        """The grants the rules in force give ``identity``."""
        return self.access_for(identity).grants

    def explain(self, identity: Identity) -> list[mapping.RuleResult]:
        """Every rule in force, matched or not and why (for /portal/why and the admin page)."""
        return mapping.decide(self.rules.mapping, identity, self._defaults(), explain_all=True).results

    def issue_credentials(self, identity: Identity, grant: Grant, duration: int) -> Credentials:
        """Mint a token for ``grant`` and redeem it at STS (AssumeRoleWithWebIdentity)."""
        if grant.mfa_required and not identity.mfa:
            raise MfaRequired(f"{grant.role_arn} requires MFA; the sign-in did not use it")
        if problems := validate_assume_params(grant.session_name, duration, grant.max_duration):
            raise BadRequest("; ".join(p.removeprefix("9: ") for p in problems), code="invalid_duration",
                             message="That session duration is not allowed for this role.")
        token = mint_token(grant, identity, self.keyring.active, issuer=self.settings.issuer_url,
                           audience=grant.audience or self.settings.issuer.audience, now=int(self.clock()),
                           lifetime=self.settings.issuer.token_lifetime)
        started = time.monotonic()
        creds = self.sts.assume_role_with_web_identity(role_arn=grant.role_arn, session_name=grant.session_name,
                                                       token=token, duration=duration)
        event("credentials_issued", role_arn=grant.role_arn, rule=grant.via, session_name=grant.session_name,
              connector=identity.connector_id, duration=duration, tags=sorted(grant.tags),
              sts_ms=round((time.monotonic() - started) * 1000, 1))
        return creds


def build_services(settings: Settings) -> Services:
    """Wire store, connectors, keys and STS; raise ConfigError listing every runtime problem."""
    keyring, problems = load_keyring(settings.keys_dir)
    if problems or keyring is None:
        raise ConfigError([f"issuer.keys_dir: {p}" for p in problems])
    store = Store.from_url(settings.redis.url, settings.redis.key_prefix, settings.redis.socket_timeout)
    connectors = {c.id: build_connector(c, base_url=settings.base_url) for c in settings.enabled_connectors}
    flow = LoginFlow(store, connectors, base_url=settings.base_url, ttl=settings.session.pending_login_ttl)
    sts = StsGateway(region=settings.aws.region, endpoint_url=settings.aws.sts_endpoint_url,
                     timeout=settings.aws.sts_timeout, max_attempts=settings.aws.sts_max_attempts)
    return Services(settings=settings, store=store, flow=flow, connectors=connectors, keyring=keyring, sts=sts,
                    rules=rule_book(settings))
