"""The Connector protocol every upstream IdP adapter implements (dex-style).

Contract:
- ``start_login(pending, redirect_uri)`` returns a ``LoginStart``: the URL to send the browser
  to (carrying ``pending.state`` as ``state`` or ``RelayState`` so the callback finds the
  server-owned PendingLogin) and, for SAML, the AuthnRequest ID that the answer must cite.
- ``finish_login(pending, params, redirect_uri)`` receives the callback's query/form
  parameters and the PendingLogin the server already matched by state (single-use; ``None``
  only for an unsolicited response to a connector that explicitly allows them), and returns
  a verified ``Identity`` or raises a ``LoginError`` subclass (``IdpDenied``,
  ``InvalidIdToken``) or ``UpstreamUnavailable``.
- ``allows_unsolicited`` says whether a callback without a pending login may be tried; a connector
  that is an ``IdpInitiated`` (SAML: ``looks_unsolicited(params)``) has such a callback refused as
  IdP-initiated (``saml_unsolicited``) rather than as an expired sign-in.
- The returned ``Identity.warnings`` name what the IdP sent that looks misconfigured (names, never
  values): the web layer logs them (``login_warnings``) and the Why page shows them.
- ``reverify(upstream_grant)`` (OIDC only, the ``Reverifier`` protocol) re-checks a signed-in
  user with the IdP and returns a ``ReverifyResult``: ``ReverifyOk``, ``ReverifyRevoked``,
  ``ReverifyUnreachable`` or ``ReverifyExpired``. It reports; the caller applies the policy.
- ``policy`` (a ``ConnectorPolicy``, from the connector's settings) is what the core applies to
  the connector's users: session lifetime, re-check interval and grace, pass-through. The core
  reads it and asks capabilities by ``isinstance`` (``Reverifier``, ``IdpInitiated``,
  ``Passthrough``, ``SignsOut``, ``Headless``, ``ExchangesTokens``, ``StepUp``); it never branches on ``type``.
- Connectors never see AWS, Flask or Redis. They never log tokens.
Not verified by connectors: what the user may do (that is mapping's job).

Example::

    start = connector.start_login(pending, "https://bridge.example.com/callback/corp")
    identity = connector.finish_login(pending, {"code": "...", "state": pending.state}, redirect_uri)
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

from bridge.domain.identity import Identity
from bridge.domain.identity import PendingLogin as PendingLogin  # re-exported: the contract's value type
from bridge.domain.stepup import StepUpPolicy
from bridge.telemetry.logs import event


@dataclass(frozen=True)
class ConnectorPolicy:
    """What the core applies to one connector's users, as its settings say (``*Settings.policy()``).

    ``max_session``: seconds since sign-in a session may live at most (None: ``session.absolute_timeout``).
    ``reverify_interval`` (0: off), ``reverify_grace``, ``reverify_fail_closed``: re-checking users with the
    IdP (a ``Reverifier``); ``groups_claim``: the claim whose absence from a re-check means no groups.
    ``passthrough_token``: sign-ins bring an ID token that the rules' ``path: passthrough`` grants redeem.
    ``idp_roles``: a pass-through sign-in holds the roles the IdP asserted, not the rules'."""

    max_session: int | None = None
    reverify_interval: int = 0
    reverify_grace: int = 0
    reverify_fail_closed: bool = True
    groups_claim: str = "groups"
    passthrough_token: bool = False
    idp_roles: bool = False
    mfa_max_age: int | None = None  # seconds an MFA sign-in counts (step_up.mfa_max_age); None: the session


NO_POLICY = ConnectorPolicy()  # a connector no longer configured: nothing beyond the defaults


@dataclass(frozen=True)
class LoginStart:
    """Where to send the browser, and (SAML) the request ID the answer must be InResponseTo."""

    url: str
    request_id: str | None = None


class Connector(Protocol):
    id: str
    name: str
    type: str
    allows_unsolicited: bool

    @property
    def policy(self) -> ConnectorPolicy: ...

    def start_login(self, pending: PendingLogin, redirect_uri: str) -> LoginStart: ...

    def finish_login(self, pending: PendingLogin | None, params: Mapping[str, str],
                     redirect_uri: str) -> Identity: ...


@dataclass(frozen=True)
class ReverifyOk:
    """The IdP still vouches for the user.

    ``identity``: the refreshed identity (same connector/subject/issuer, current groups and claims,
    the sign-in's MFA), or ``None`` when the IdP confirmed the grant but sent no claims (keep the
    current identity). ``grant``: the upstream grant to keep from now on, in place of the old one
    (refresh tokens rotate). Secret: not in the repr.
    """

    identity: Identity | None
    grant: Mapping[str, Any] = field(repr=False)


@dataclass(frozen=True)
class ReverifyRevoked:
    """The IdP refused the user (``invalid_grant``, userinfo 401/403, another subject, an ID token
    that does not verify): the user must lose what this sign-in gave."""

    reason: str


@dataclass(frozen=True)
class ReverifyUnreachable:
    """No answer about the user (network, timeout, 5xx, 429, or an error that concerns the bridge's
    client rather than the user, such as ``invalid_client``): the caller's policy decides."""

    reason: str


@dataclass(frozen=True)
class ReverifyExpired:
    """The grant can no longer be checked (no refresh token and the access token has expired): the
    IdP said nothing bad, but the user cannot be re-checked any more without a new sign-in."""

    reason: str


ReverifyResult = ReverifyOk | ReverifyRevoked | ReverifyUnreachable | ReverifyExpired



def logged_reverify(connector_id: str, result: ReverifyResult) -> ReverifyResult:
    """Log a re-check's outcome (``upstream_reverify``: never the grant or a token) and return it."""
    outcome = type(result).__name__.removeprefix("Reverify").lower()
    level = {"ok": logging.DEBUG, "unreachable": logging.WARNING}.get(outcome, logging.INFO)
    event("upstream_reverify", level, connector=connector_id, outcome=outcome,
          reason=getattr(result, "reason", "")[:200])
    return result

@runtime_checkable
class IdpInitiated(Protocol):
    """A connector that can tell an IdP-initiated response (``isinstance(connector, IdpInitiated)``)."""

    def looks_unsolicited(self, params: Mapping[str, str]) -> bool: ...


@runtime_checkable
class Reverifier(Protocol):
    """A connector that can re-check a signed-in user (``isinstance(connector, Reverifier)``)."""

    def reverify(self, upstream_grant: Mapping[str, Any]) -> ReverifyResult: ...


@dataclass(frozen=True)
class SamlTrust:
    """What AWS judges a SAML IdP's own response against: its entity id and signing certificates (as its
    metadata gives them: bare base64 or PEM), and whether encrypted assertions are expected."""

    entity_id: str
    certs: tuple[str, ...]
    encryption_allowed: bool


@dataclass(frozen=True)
class OidcTrust:
    """What AWS judges an OIDC IdP's own ID token against: the audience (our client id) and where the IdP
    publishes its keys (None: discovery unreachable now)."""

    client_id: str
    jwks_uri: str | None


@runtime_checkable
class Passthrough(Protocol):
    """A connector whose sign-ins can bring the IdP's own artifact for AWS (``aws_passthrough``):
    ``passthrough_trust()`` says what AWS will judge it against (``isinstance(connector, Passthrough)``)."""

    def passthrough_trust(self) -> SamlTrust | OidcTrust: ...


@runtime_checkable
class SignsOut(Protocol):
    """A connector whose IdP offers a sign-out page (RP-initiated logout): where to send the browser, or
    None (``isinstance(connector, SignsOut)``)."""

    def logout_url(self, post_logout_redirect_uri: str) -> str | None: ...


@runtime_checkable
class Headless(Protocol):
    """A connector without a browser sign-in (workloads: the token exchange is its whole flow): the sign-in page
    does not list it, and ``start_login``/``finish_login`` refuse, saying why (``isinstance(c, Headless)``)."""

    def headless_reason(self) -> str: ...


def sign_in_choices(connectors: Iterable[Connector]) -> list[Connector]:
    """The connectors the sign-in page offers: all but the ``Headless`` ones."""
    return [c for c in connectors if not isinstance(c, Headless)]


@runtime_checkable
class StepUp(Protocol):
    """A connector that can ask its IdP for a fresh MFA sign-in (``isinstance(connector, StepUp)``): its
    ``start_login`` reads ``pending.step_up`` (OIDC ``prompt=login``/``max_age``/``acr_values``, SAML
    ``ForceAuthn``/``RequestedAuthnContext``), and ``step_up_policy()`` says what the answer is verified
    against (bridge/core/stepup.py: the core verifies; the request proves nothing)."""

    def step_up_policy(self) -> StepUpPolicy: ...


@dataclass(frozen=True)
class SubjectToken:
    """A subject token verified for an exchange (RFC 8693): who it names, and what replay protection needs.

    ``token_id``: the token's ``jti`` (None when it has none); ``expires_at``: the last moment (epoch seconds)
    the connector still accepts the token — its ``exp``, plus the clock skew the connector allows (workloads);
    ``single_use``: the connector says a token may be exchanged once only (workloads: the core keeps
    the ``jti`` until ``expires_at`` — ``OnceStore.first_use(f"jti:{connector id}", token_id, expires_at)``
    — and refuses it again); ``session_name``: a workload's name for the AWS session (repository and run
    id, STS's charset, at most 64 characters), used when the rule names none of its own."""

    identity: Identity
    expires_at: int
    token_id: str | None = None
    single_use: bool = False
    session_name: str | None = None  # a workload's own name for AWS sessions (e.g. repository.run id)
    cnf: object = None  # the token's `cnf` claim as sent (RFC 7800; DPoP-bound: {"jkt": …}), checked by core/dpop.py


@runtime_checkable
class ExchangesTokens(Protocol):
    """A connector whose tokens an app or a workload may exchange at ``/oauth/token`` (token exchange,
    ``isinstance(connector, ExchangesTokens)``): verify a bearer token it issued (signature, issuer,
    expiry, and an audience among ``audiences``) without a browser, or raise ``InvalidIdToken``."""

    def verify_subject_token(self, token: str, *, audiences: tuple[str, ...]) -> SubjectToken: ...


@runtime_checkable
class WorkloadTokens(Protocol):
    """A connector whose tokens are exchanged **without a registered app** (no ``client_id``: a CI job, a
    service account — ``isinstance(connector, WorkloadTokens)``): the exchange finds it by the token's issuer
    (``verify_subject_token`` raises ``subject_token_issuer`` for another's), verifies the token for the
    connector's own audiences (``audiences=()``), and counts at most ``exchanges_per_minute`` exchanges of one
    subject (0: no limit)."""

    exchanges_per_minute: int

    def verify_subject_token(self, token: str, *, audiences: tuple[str, ...]) -> SubjectToken: ...
