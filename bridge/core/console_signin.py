"""Console sign-in (docs/aws-rules.md §3): a grant → a signed-in AWS console.

Seam: ``method(grant)`` picks ``federation`` or ``saml_post``; ``login_url`` (federation endpoint:
credentials → getSigninToken → ``Action=login`` URL) and ``saml_post`` (a signed SAMLResponse for an
auto-submitting form) do it, both after the issuer's one MFA + duration check, each audited as a
``console`` record. ``destination`` keeps console destinations on the allowlist. Like the issuer, it
decides nothing about which grants a user holds.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping

from bridge.aws import console
from bridge.aws.assertion import signin_saml_endpoint
from bridge.aws.signin import get_signin_token
from bridge.config import AwsSettings
from bridge.core.issuing import CredentialIssuer
from bridge.domain.errors import BadRequest, BridgeError
from bridge.domain.identity import Grant, Identity
from bridge.telemetry import audit
from bridge.telemetry.audit import Auditor
from bridge.telemetry.metrics import Metrics


class ConsoleSignin:
    def __init__(self, aws: AwsSettings, issuer: CredentialIssuer, *, portal_url: str, metrics: Metrics,
                 auditor: Auditor, clock: Callable[[], float] = time.time) -> None:
        self.aws = aws
        self.portal_url = portal_url  # the console's "Issuer" link: where to sign in again
        self.issuer = issuer
        self.metrics = metrics
        self.auditor = auditor
        self.clock = clock

    def method(self, grant: Grant) -> str:
        """``federation`` or ``saml_post`` for ``grant``: its own choice, else aws.console_method.
        Passthrough grants always use the federation endpoint: their SAML provider trusts the
        upstream IdP, not our signing key; so do chained grants (AWS's SAML sign-in cannot call
        sts:AssumeRole from a hub)."""
        if grant.path == "passthrough" or grant.chained:
            return "federation"
        return grant.console or self.aws.console_method

    def federation_endpoint(self) -> str:
        aws = self.aws
        return aws.federation_endpoint or console.federation_endpoint(aws.partition, aws.signin_region)

    def logout_url(self) -> str:
        """The AWS console sign-out link offered after the bridge's own sign-out (same sign-in host as
        the federation endpoint; the ``/oauth?Action=logout`` path is what AWS's console uses, not an
        AWS-documented API: UNCONFIRMED)."""
        return self.federation_endpoint().removesuffix("/federation") + "/oauth?Action=logout"

    def signin_saml_url(self) -> str:
        aws = self.aws
        return aws.signin_saml_url or signin_saml_endpoint(aws.partition, aws.signin_region)[0]

    def destination(self, destination: str | None, region: str | None) -> str:
        """The allowlisted console URL for a destination (a path or a console URL of our partition)."""
        try:
            return console.resolve_destination(destination, self.aws.partition, region or None)
        except ValueError as e:
            raise BadRequest(f"destination refused: {e}", code="bad_destination",
                             message="That console destination is not allowed: give a console path such as "
                                     "/s3/home or a console URL of this AWS partition.") from None

    def login_url(self, identity: Identity, grant: Grant, duration: int, destination: str,
                  passthrough: Mapping[str, str] | None = None, *, ctx: audit.Context | None = None) -> str:
        """Federation endpoint: credentials → getSigninToken → the ``Action=login`` URL. With SessionDuration
        for credentials from AssumeRoleWith{SAML,WebIdentity}; without it for a chained grant's (AWS refuses
        SessionDuration with role-chained credentials, docs/aws-rules.md §7.2): that console session lasts as
        long as the credentials, ``duration``. A secret for 15 minutes: the caller 302s to it and never logs
        it. Audited as a ``console`` record (besides the ``credentials`` one for the STS call)."""
        session_ctx = ctx or audit.Context()
        ctx, under = audit.for_grant(session_ctx, grant)
        base = {**self._audit_fields(identity, grant, duration, "federation", destination), **under}
        try:
            creds = self.issuer.issue_credentials(identity, grant, duration, passthrough=passthrough, ctx=session_ctx)
            session = None if grant.chained else min(max(duration, console.MIN_SESSION), console.MAX_SESSION)
            endpoint = self.federation_endpoint()
            token = get_signin_token(endpoint, creds, session, timeout=self.aws.sts_timeout)
        except BridgeError as e:
            self.auditor.record("console", ctx, outcome="failure", error=e.code, **base)
            raise
        self.auditor.record("console", ctx, outcome="success", access_key_id=creds.access_key_id, **base)
        self.metrics.grants_issued.labels(grant.path, "console").inc()
        return console.login_url(endpoint, token, issuer=self.portal_url, destination=destination)

    def saml_post(self, identity: Identity, grant: Grant, duration: int, *,
                  ctx: audit.Context | None = None, destination: str = "") -> tuple[str, str]:
        """SAML POST: (sign-in SAML URL, signed SAMLResponse) for an auto-submitting form; no STS call
        here — AWS's sign-in endpoint redeems it. SessionDuration in the assertion sets the console session."""
        ctx, under = audit.for_grant(ctx or audit.Context(), grant)
        base = {**self._audit_fields(identity, grant, duration, "saml_post", destination), **under}
        try:
            self.issuer.check(identity, grant, duration)
            out = self.signin_saml_url(), self.issuer.mint_saml(grant, identity, duration, int(self.clock()))
        except BridgeError as e:
            self.auditor.record("console", ctx, outcome="failure", error=e.code, **base)
            raise
        self.auditor.record("console", ctx, outcome="success", **base)
        self.metrics.grants_issued.labels(grant.path, "console").inc()
        return out

    @staticmethod
    def _audit_fields(identity: Identity, grant: Grant, duration: int, method: str,
                      destination: str) -> dict[str, object]:
        return {"who": audit.who(identity), "how": audit.how(identity), "duration": duration, "method": method,
                "destination": destination.split("?", 1)[0], **audit.grant_fields(grant)}
