"""Credential issuing: a grant the decision point gave → AWS credentials (or a signed SAML
assertion for the console). ``CredentialIssuer`` is the one place that

- refuses an issuance the sign-in does not qualify for (``check``: MFA and duration, the same
  check for credentials, console federation and console SAML POST),
- mints the bridge's token or SAML assertion with the current signing key and redeems it at STS
  (or redeems the IdP's own artifact for ``aws_passthrough`` grants),
- for a chained grant (role chaining, docs/aws-rules.md §7) assumes the first hub that way, then each
  next role with sts:AssumeRole signed by the previous credentials — the hubs' credentials never leave
  this module — writing one ``credentials_hop`` audit record per call with STS's request id,
- keeps and reuses credentials through the credential cache (keyed on the whole chain), and
- writes one ``credentials`` audit record per outcome, and with ``audit.fail_closed`` a
  ``credentials_intent`` record before the STS calls (no assumption in CloudTrail without a record).

It decides nothing about *which* grants a user holds: callers pass a grant the decision point
(``bridge.core.access``) gave at the moment of use.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from typing import Any

from bridge.aws.assertion import SamlIssuer, mint_saml_response, signin_saml_endpoint
from bridge.aws.bridge_tags import with_bridge_tags
from bridge.aws.limits import CHAINED_MAX_DURATION, HUB_DURATION
from bridge.aws.metadata import idp_metadata
from bridge.aws.sts import StsGateway
from bridge.aws.token import mint_token
from bridge.aws.upstream_check import upstream_sts_error
from bridge.aws.validate import validate_assume_params
from bridge.config import Settings
from bridge.core.credcache import Cache, Sealed
from bridge.core.keysource import KeySource
from bridge.domain.errors import (
    BadRequest,
    BridgeError,
    ConfigError,
    MfaRequired,
    PassthroughExpired,
    StsError,
)
from bridge.domain.identity import Credentials, Grant, Hop, Identity
from bridge.domain.memo import ByObject
from bridge.telemetry import audit
from bridge.telemetry.audit import Auditor
from bridge.telemetry.logs import event
from bridge.telemetry.metrics import Metrics


def first_call(grant: Grant) -> Grant:
    """``grant`` as the first STS call sees it: itself, or for a chained grant its first hub — the bridge's
    token or assertion names that role, with the hub's session policy, the shortest session and no ExternalId."""
    if not grant.hubs:
        return grant
    first = grant.hubs[0]
    return replace(grant, role_arn=first.role_arn, account_id=first.role_arn.split(":")[4], hubs=(), external_id=None,
                   policy=first.policy, policy_arns=first.policy_arns, max_duration=HUB_DURATION,
                   default_duration=HUB_DURATION)


def _named_error(e: StsError, grant: Grant, n: int = 0) -> StsError:
    """An STS refusal in the words of the rules: which rule's policy was too large or malformed, and for call
    ``n`` of a chain (n > 1: an sts:AssumeRole from the previous hub) what that role's trust policy must allow."""
    hops = grant.hops
    if e.code == "sts_PackedPolicyTooLarge":
        message = (f"The session tags and policies that rule {grant.via!r} sends for {grant.role_name} are too "
                   "large for AWS (PackedPolicyTooLarge).")
        hint = "Ask your administrator to shorten that rule's session policy, or send fewer or shorter session tags."
    elif e.code == "sts_MalformedPolicyDocument":
        message = f"AWS refused the session policy that rule {grant.via!r} sends for {grant.role_name}."
        hint = "Ask your administrator to check that rule's policy (bridge explain shows it)."
    elif n > 1 and e.code == "sts_AccessDenied":
        hop, prev = hops[n - 1], hops[n - 2]
        message = f"AWS denied the step from the hub {prev.label} to {hop.label} (sts:AssumeRole)."
        hint = (f"The trust policy of {hop.role_arn} must allow {prev.role_arn} to call sts:AssumeRole (and "
                "sts:TagSession, sts:SetSourceIdentity when the rules send tags or a source identity)"
                + (", with the ExternalId it was given" if hop.external_id is not None else "")
                + f"; the permissions of {prev.role_arn} must allow sts:AssumeRole on it.")
    else:
        return e
    named = StsError(e.detail, code=e.code, status=e.status, message=message, hint=hint)
    named.sts_request_id = e.sts_request_id
    return named


def saml_issuer_for(settings: Settings) -> SamlIssuer:
    """Our SAML identity (entity id) and where assertions go (partition's sign-in Recipient/Audience)."""
    recipient, audience = signin_saml_endpoint(settings.aws.partition, settings.aws.signin_region)
    return SamlIssuer(settings.saml_entity_id, recipient, audience, settings.saml_idp.sign_response)


@dataclass(frozen=True)
class IssuerConfig:
    """What the issuer reads of the settings: the JWT it mints (issuer, default audience, lifetime), our SAML
    identity and our SAML IdP's sign-in URL, and whether it tags sessions with ``bridge:mfa``."""

    issuer_url: str
    audience: str
    token_lifetime: int
    saml: SamlIssuer
    sso_url: str
    mfa_tag: bool = True

    @classmethod
    def from_settings(cls, settings: Settings) -> IssuerConfig:
        return cls(issuer_url=settings.issuer_url, audience=settings.issuer.audience,
                   token_lifetime=settings.issuer.token_lifetime, saml=saml_issuer_for(settings),
                   sso_url=f"{settings.base_url}/idp/sso", mfa_tag=settings.aws.mfa_tag)


class CredentialIssuer:
    def __init__(self, cfg: IssuerConfig, keys: KeySource, sts: StsGateway,
                 *, cache: Cache, metrics: Metrics, auditor: Auditor,
                 clock: Callable[[], float] = time.time) -> None:
        self.cfg = cfg
        self.keys = keys
        self.sts = sts
        self.cache = cache
        self.metrics = metrics
        self.auditor = auditor
        self.clock = clock
        self._tagged: ByObject[Grant] = ByObject()
        self._audit_base: ByObject[audit.Shared] = ByObject()

    def check(self, identity: Identity, grant: Grant, duration: int) -> None:
        """THE issuance check, before anything is minted: MfaRequired when ``grant`` needs an MFA
        sign-in and this one had none; BadRequest(invalid_duration) for a duration the role does not
        allow (or a session name AWS would refuse)."""
        if grant.mfa_required and not identity.mfa:
            raise MfaRequired(f"{grant.role_arn} requires MFA; the sign-in did not use it")
        if problems := validate_assume_params(grant.session_name, duration, grant.max_duration):
            chained = grant.chained and duration > CHAINED_MAX_DURATION
            raise BadRequest("; ".join(p.message for p in problems), code="invalid_duration",
                             message="That session duration is not allowed for this role."
                             + (f" It is reached through the hub {grant.hubs[-1].label} (role chaining), and AWS "
                                "allows such sessions at most 1 hour." if chained else ""),
                             hint=f"Choose at most {grant.max_duration} seconds." if chained else None)

    def issue_credentials(self, identity: Identity, grant: Grant, duration: int,
                          passthrough: Mapping[str, str] | None = None, *,
                          ctx: audit.Context | None = None, sealed: Sealed | None = None,
                          app: str | None = None, workload: str | None = None,
                          dpop_jkt: str | None = None) -> Credentials:
        """Credentials for ``grant``: from the server-side cache when fresh, else minted and redeemed
        at STS. Every outcome (fresh, cached, refused) is one audit record under ``ctx``. ``sealed``: the
        cache entry as read ahead with the session (bridge/web/ahead.py); ``app``: the registered app it is
        for (a token exchange), named in the audit record; ``workload``: the workload's name (repository, service
        account) of an exchange without an app; ``dpop_jkt``: the thumbprint of the key the app proved (DPoP)."""
        ctx, under = audit.for_grant(ctx or audit.Context(), grant)
        # who, how and the grant: the same on every issuance of this grant to this sign-in, encoded once
        base = self._audit_base.get((identity, grant), (duration, app, workload, dpop_jkt), lambda: audit.Shared.of({
            "who": audit.who(identity), "how": audit.how(identity), "duration": duration, **audit.grant_fields(grant),
            **({"app": app} if app else {}), **({"workload": workload} if workload else {}),
            **({"dpop_jkt": dpop_jkt} if dpop_jkt else {})}))

        def intent() -> None:  # raises AuditUnavailable (fail closed) before STS is called
            if self.auditor.fail_closed:
                self.auditor.record("credentials_intent", ctx, base, **under)

        def hop(**fields: Any) -> None:  # each call of a chain (never the hub's credentials)
            self.auditor.record("credentials_hop", ctx, who=base.values["who"], rule=grant.via,
                                role_arn=grant.role_arn, session_name=grant.session_name,
                                source_identity=grant.source_identity, **fields, **under)

        try:
            creds, cached = self._credentials(identity, grant, duration, passthrough, intent, hop, sealed)
        except BridgeError as e:
            sts_id = e.sts_request_id if isinstance(e, StsError) else ""
            self.auditor.record("credentials", ctx, base, outcome="failure", error=e.code, **under,
                                **({"sts_request_id": sts_id} if sts_id else {}))
            raise
        self.auditor.record("credentials", ctx, base, outcome="success", cached=cached,
                            access_key_id=creds.access_key_id, assumed_role_arn=creds.assumed_role_arn,
                            expiration=creds.expiration_iso(), **under,
                            **({"sts_request_id": creds.sts_request_id} if creds.sts_request_id else {}))
        return creds

    def _credentials(self, identity: Identity, grant: Grant, duration: int, passthrough: Mapping[str, str] | None,
                     before_sts: Callable[[], None] = lambda: None,
                     on_hop: Callable[..., None] = lambda **_: None,
                     sealed: Sealed | None = None) -> tuple[Credentials, bool]:
        """Mint a token or assertion for ``grant`` and redeem it at STS; passthrough grants redeem
        the stored upstream artifact instead (``{"kind": "saml"|"oidc", "value": …}``).
        ``before_sts`` runs once nothing is left but the call to STS (the audit intent)."""
        self.check(identity, grant, duration)
        grant = self.tagged(grant, identity)  # before the cache: an MFA sign-in's credentials are another entry
        # A pass-through grant's credentials belong to the artifact redeemed: a new sign-in's is redeemed anew.
        artifact = passthrough["value"] if grant.path == "passthrough" and passthrough else None
        cached = self.cache.get(identity, grant, duration, artifact=artifact, sealed=sealed)
        if cached is not None:
            event("credentials_issued", role_arn=grant.role_arn, rule=grant.via, path=grant.path, cached=True,
                  session_name=grant.session_name, connector=identity.connector_id, duration=duration)
            return cached, True
        now = int(self.clock())
        if grant.path == "passthrough" and passthrough is None:
            raise PassthroughExpired("passthrough artifact expired")
        before_sts()  # the audit intent: after every refusal that needs no STS call
        started = time.monotonic()
        if grant.path == "passthrough":
            assert passthrough is not None
            creds = self._redeem_upstream(grant, duration, passthrough)
        elif grant.chained:
            creds = self._chain(identity, grant, duration, now, on_hop)
        else:
            try:
                creds = self._first(identity, grant, duration, now)
            except StsError as e:
                raise _named_error(e, grant) from None
        self.metrics.grants_issued.labels(grant.path, "credentials").inc()
        event("credentials_issued", role_arn=grant.role_arn, rule=grant.via, path=grant.path, cached=False,
              session_name=grant.session_name, connector=identity.connector_id, duration=duration,
              tags=sorted(grant.tags), sts_ms=round((time.monotonic() - started) * 1000, 1),
              hubs=[h.role_arn for h in grant.hubs] or None)
        self.cache.put(identity, grant, duration, creds, artifact=artifact)
        return creds, False

    def _first(self, identity: Identity, grant: Grant, duration: int, now: int) -> Credentials:
        """The bridge's own token (or assertion) for ``grant``'s role, redeemed at STS with its session policy."""
        if grant.path == "saml":
            assert grant.provider_arn is not None  # mapping always sets it
            return self.sts.assume_role_with_saml(role_arn=grant.role_arn, principal_arn=grant.provider_arn,
                                                  saml_response=self.mint_saml(grant, identity, duration, now),
                                                  duration=duration, policy=grant.policy, policy_arns=grant.policy_arns)
        token = mint_token(grant, identity, self.keys.current().active, issuer=self.cfg.issuer_url,
                           audience=grant.audience or self.cfg.audience, now=now,
                           lifetime=self.cfg.token_lifetime)
        return self.sts.assume_role_with_web_identity(role_arn=grant.role_arn, session_name=grant.session_name,
                                                      token=token, duration=duration, policy=grant.policy,
                                                      policy_arns=grant.policy_arns)

    def _chain(self, identity: Identity, grant: Grant, duration: int, now: int,
               on_hop: Callable[..., None]) -> Credentials:
        """Role chaining: the first hub with the bridge's token or assertion (its session as short as AWS allows:
        it is used at once), then sts:AssumeRole signed with the previous credentials, hop by hop, the last into
        ``grant``'s role for ``duration``. The same session name and source identity on every hop; transitive
        tags carry over by themselves, the others are sent again. Hub credentials stay in this function."""
        hops = grant.hops
        hub_grant = first_call(grant)
        action = "AssumeRoleWithSAML" if grant.path == "saml" else "AssumeRoleWithWebIdentity"
        creds = self._hop(grant, 1, action, on_hop, lambda: self._first(identity, hub_grant, HUB_DURATION, now))
        carried = {k.lower() for k in grant.transitive_keys}
        tags = {k: v for k, v in grant.tags.items() if k.lower() not in carried}
        for i, hop in enumerate(hops[1:], start=2):
            prev = creds
            length = duration if i == len(hops) else HUB_DURATION

            def call(hop: Hop = hop, prev: Credentials = prev, length: int = length) -> Credentials:
                return self.sts.assume_role(prev, role_arn=hop.role_arn, session_name=grant.session_name,
                                            duration=length, external_id=hop.external_id,
                                            source_identity=grant.source_identity, tags=tags, policy=hop.policy,
                                            policy_arns=hop.policy_arns)

            creds = self._hop(grant, i, "AssumeRole", on_hop, call)
        return creds

    @staticmethod
    def _hop(grant: Grant, n: int, action: str, on_hop: Callable[..., None],
             call: Callable[[], Credentials]) -> Credentials:
        """Call ``n`` (1-based) of a chain, audited (``credentials_hop``: which call, into which role, whether an
        ExternalId went with it, STS's request id); an STS refusal says which step failed and what to fix."""
        hop = grant.hops[n - 1]
        fields = {"hop": n, "hops": len(grant.hops), "action": action, "hop_role_arn": hop.role_arn,
                  "external_id": hop.external_id is not None and n > 1}
        try:
            creds = call()
        except StsError as e:
            named = _named_error(e, grant, n)
            on_hop(outcome="failure", error=named.code, sts_request_id=e.sts_request_id, **fields)
            raise named from None
        on_hop(outcome="success", sts_request_id=creds.sts_request_id, **fields)
        return creds

    def _redeem_upstream(self, grant: Grant, duration: int, passthrough: Mapping[str, str]) -> Credentials:
        """Redeem the upstream IdP's own artifact; an STS refusal says what to fix at that IdP."""
        try:
            if passthrough["kind"] == "saml":
                assert grant.provider_arn is not None
                return self.sts.assume_role_with_saml(role_arn=grant.role_arn, principal_arn=grant.provider_arn,
                                                      saml_response=passthrough["value"], duration=duration)
            return self.sts.assume_role_with_web_identity(role_arn=grant.role_arn, session_name=grant.session_name,
                                                          token=passthrough["value"], duration=duration)
        except StsError as e:
            raise upstream_sts_error(e, passthrough["kind"]) from None

    def saml_issuer(self) -> SamlIssuer:
        return self.cfg.saml

    def idp_metadata(self) -> bytes:
        """Our SAML IdP metadata for `aws iam create-saml-provider` (every SAML signing cert)."""
        return idp_metadata(self.cfg.saml.entity_id, self.keys.current().saml, self.cfg.sso_url)

    def tagged(self, grant: Grant, identity: Identity) -> Grant:
        """``grant`` with the session tags the bridge sets itself (``bridge:mfa``, docs/step-up-mfa.md), unless
        ``aws.mfa_tag`` is off; pass-through grants redeem the IdP's own artifact, which the bridge cannot tag."""
        if not self.cfg.mfa_tag or grant.path == "passthrough":
            return grant
        # the decision memo's grants come back on every request: each tagged once (the tags depend on mfa only)
        return self._tagged.get((grant,), identity.mfa, lambda: with_bridge_tags(grant, identity))

    def mint_saml(self, grant: Grant, identity: Identity, duration: int, now: int) -> str:
        """The signed base64 SAMLResponse for ``grant`` (AssumeRoleWithSAML or console POST)."""
        key = self.keys.current().saml_active
        if key is None:
            raise ConfigError(["issuer.keys_dir: no SAML signing key (run `bridge keys generate --kind saml`)"])
        return mint_saml_response(self.tagged(grant, identity), identity, key, self.saml_issuer(), now=now,
                                  duration=duration)
