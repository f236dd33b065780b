"""Everything a request needs, built once by ``create_app`` from settings (no module-level clients)."""

from __future__ import annotations

import base64
import json
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from bridge import mapping
from bridge.aws import console
from bridge.aws.assertion import SamlIssuer, mint_saml_response, signin_saml_endpoint
from bridge.aws.keys import KeyRing, load_keyring
from bridge.aws.metadata import idp_metadata
from bridge.aws.signin import get_signin_token
from bridge.aws.sts import StsGateway
from bridge.aws.token import mint_token
from bridge.aws.validate import validate_assume_params
from bridge.config import Settings, reload_mapping, rules_file_path
from bridge.credcache import CredentialCache
from bridge.device import DeviceFlow
from bridge.errors import BadRequest, ConfigError, MfaRequired
from bridge.flow import LoginFlow
from bridge.identity import Credentials, Grant, Identity
from bridge.logs import event
from bridge.rulebook import RuleBook
from bridge.store import Store
from bridge.upstream import Connector, build_connector

PASSTHROUGH_VERSION = "aws_passthrough"  # sessions whose roles came from the IdP, not from rules

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
    cache: CredentialCache | None = None
    device: DeviceFlow | None = None
    clock: Callable[[], float] = field(default=time.time)

    def _defaults(self) -> mapping.GrantDefaults:
        d = self.settings.grant_defaults()
        return mapping.GrantDefaults(d["default_audience"], d["default_path"], d["saml_provider"])

    def access_for(self, identity: Identity, *, log: bool = True) -> Access:
        """Run the rules in force; log what was sanitized, merged or withheld (rule names and reasons,
        never claim sets) unless ``log`` is off (sessions re-evaluated after a reload)."""
        connector = self.connectors.get(identity.connector_id)
        if identity.passthrough and connector is not None and connector.type == "saml":
            # aws_passthrough: exactly the roles the IdP asserted, whatever the rules say (no reload changes them)
            grants, notes = mapping.passthrough_grants(identity)
            if notes and log:
                event("passthrough_notes", connector=identity.connector_id, notes=notes)
            return Access(grants, [], PASSTHROUGH_VERSION)
        rules = self.rules.mapping
        decision = mapping.decide(rules, identity, self._defaults())
        for r in decision.results if log else ():
            if r.notes or r.withheld:
                event("mapping_notes", logging.INFO, rule=r.rule, granted=len(r.grants),
                      withheld=[{"role_arn": w.role_arn, "code": w.code, "reason": w.reason} for w in r.withheld],
                      notes=list(r.notes[:20]))
        return Access(decision.grants, decision.locked, rules.compiled.version)

    def grants_for(self, identity: Identity) -> list[Grant]:
        """The grants the rules in force give ``identity`` (for aws_passthrough SAML: what the IdP asserted)."""
        return self.access_for(identity).grants

    def explain(self, identity: Identity) -> list[mapping.RuleResult]:
        """Every rule in force, matched or not and why (for /portal/why and the admin page)."""
        return mapping.decide(self.rules.mapping, identity, self._defaults(), explain_all=True).results

    def issue_credentials(self, identity: Identity, grant: Grant, duration: int,
                          passthrough: dict[str, str] | None = None) -> Credentials:
        """Mint a token or assertion for ``grant`` and redeem it at STS; passthrough grants redeem
        the stored upstream artifact instead (``{"kind": "saml"|"oidc", "value": …}``)."""
        if grant.mfa_required and not identity.mfa:
            raise MfaRequired(f"{grant.role_arn} requires MFA; the sign-in did not use it")
        if problems := validate_assume_params(grant.session_name, duration, grant.max_duration):
            raise BadRequest("; ".join(p.removeprefix("9: ") for p in problems), code="invalid_duration",
                             message="That session duration is not allowed for this role.")
        if self.cache is not None and (cached := self.cache.get(identity, grant, duration)) is not None:
            event("credentials_issued", role_arn=grant.role_arn, rule=grant.via, path=grant.path, cached=True,
                  session_name=grant.session_name, connector=identity.connector_id, duration=duration)
            return cached
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
        event("credentials_issued", role_arn=grant.role_arn, rule=grant.via, path=grant.path, cached=False,
              session_name=grant.session_name, connector=identity.connector_id, duration=duration,
              tags=sorted(grant.tags), sts_ms=round((time.monotonic() - started) * 1000, 1))
        if self.cache is not None:
            self.cache.put(identity, grant, duration, creds)
        return creds

    # -- console sign-in (shared/spec/aws-federation.md §3) ---------------------------------
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
                          passthrough: dict[str, str] | None = None) -> str:
        """Federation endpoint: credentials → getSigninToken (with SessionDuration: the bridge's
        credentials come from AssumeRoleWith{SAML,WebIdentity}, never chained or GetFederationToken)
        → the ``Action=login`` URL. A secret for 15 minutes: the caller 302s to it and never logs it."""
        creds = self.issue_credentials(identity, grant, duration, passthrough=passthrough)
        session = min(max(duration, console.MIN_SESSION), console.MAX_SESSION)
        endpoint = self.federation_endpoint()
        token = get_signin_token(endpoint, creds, session, timeout=self.settings.aws.sts_timeout)
        return console.login_url(endpoint, token, issuer=f"{self.settings.base_url}/portal", destination=destination)

    def console_saml_post(self, identity: Identity, grant: Grant, duration: int) -> tuple[str, str]:
        """SAML POST: (sign-in SAML URL, signed SAMLResponse) for an auto-submitting form; no STS call
        here — AWS's sign-in endpoint redeems it. SessionDuration in the assertion sets the console session."""
        if grant.mfa_required and not identity.mfa:
            raise MfaRequired(f"{grant.role_arn} requires MFA; the sign-in did not use it")
        if problems := validate_assume_params(grant.session_name, duration, grant.max_duration):
            raise BadRequest("; ".join(p.removeprefix("9: ") for p in problems), code="invalid_duration",
                             message="That session duration is not allowed for this role.")
        return self.signin_saml_url(), self.mint_saml(grant, identity, duration, int(self.clock()))

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


def build_services(settings: Settings) -> Services:
    """Wire store, connectors, keys and STS; raise ConfigError listing every runtime problem."""
    keyring, problems = load_keys(settings)
    if problems or keyring is None:
        raise ConfigError(problems)
    store = Store.from_url(settings.redis.url, settings.redis.key_prefix, settings.redis.socket_timeout)
    connectors = {c.id: build_connector(c, base_url=settings.base_url, resolve=settings.resolve,
                                        replay_guard=store.remember_once)
                  for c in settings.enabled_connectors}
    flow = LoginFlow(store, connectors, base_url=settings.base_url, ttl=settings.session.pending_login_ttl)
    sts = StsGateway(region=settings.aws.region, endpoint_url=settings.aws.sts_endpoint_url,
                     timeout=settings.aws.sts_timeout, max_attempts=settings.aws.sts_max_attempts)
    cache = (CredentialCache(store, keyring.cache, refresh_window=settings.credential_cache.refresh_window)
             if settings.credential_cache.enabled else None)
    return Services(settings=settings, store=store, flow=flow, connectors=connectors, keyring=keyring, sts=sts,
                    rules=rule_book(settings), cache=cache, device=DeviceFlow(store, settings.cli))
