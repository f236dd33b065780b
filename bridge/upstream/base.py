"""The Connector protocol every upstream IdP adapter implements (dex-style).

Contract:
- ``start_login(pending, redirect_uri)`` returns the URL to send the browser to. It must
  carry ``pending.state`` so the callback can find the server-owned PendingLogin.
- ``finish_login(pending, params, redirect_uri)`` receives the callback's query/form
  parameters and the PendingLogin the server already matched by state (single-use), and
  returns a verified ``Identity`` or raises a ``LoginError`` subclass
  (``IdpDenied``, ``InvalidIdToken``) or ``UpstreamUnavailable``.
- Connectors never see AWS, Flask or Redis. They never log tokens.
Not verified by connectors: what the user may do (that is mapping's job).

Example::

    url = connector.start_login(pending, "https://bridge.example.com/callback/corp")
    identity = connector.finish_login(pending, {"code": "...", "state": pending.state}, redirect_uri)
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import Any, Protocol

from bridge.identity import Identity


@dataclass(frozen=True)
class PendingLogin:
    """A sign-in in progress. Owned by the server (Redis, TTL, single use), not by a cookie."""

    state: str
    connector_id: str
    nonce: str
    code_verifier: str
    return_to: str
    created_at: int

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, d: Mapping[str, Any]) -> PendingLogin:
        return cls(**{k: d[k] for k in cls.__dataclass_fields__})


class Connector(Protocol):
    id: str
    name: str
    type: str

    def start_login(self, pending: PendingLogin, redirect_uri: str) -> str: ...

    def finish_login(self, pending: PendingLogin, params: Mapping[str, str], redirect_uri: str) -> Identity: ...
