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
- Connectors never see AWS, Flask or Redis. They never log tokens.
Not verified by connectors: what the user may do (that is mapping's job).

Example::

    start = connector.start_login(pending, "https://bridge.example.com/callback/corp")
    identity = connector.finish_login(pending, {"code": "...", "state": pending.state}, redirect_uri)
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

from bridge.domain.identity import Identity
from bridge.storage.records import PendingLogin as PendingLogin  # the store's record, re-exported


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


@runtime_checkable
class IdpInitiated(Protocol):
    """A connector that can tell an IdP-initiated response (``isinstance(connector, IdpInitiated)``)."""

    def looks_unsolicited(self, params: Mapping[str, str]) -> bool: ...


@runtime_checkable
class Reverifier(Protocol):
    """A connector that can re-check a signed-in user (``isinstance(connector, Reverifier)``)."""

    def reverify(self, upstream_grant: Mapping[str, Any]) -> ReverifyResult: ...
