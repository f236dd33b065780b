"""The login state machine. The server owns login state, not a library's cookie.

``begin`` creates a single-use PendingLogin (state, nonce, PKCE verifier, return_to) in
Redis with a TTL and returns where to send the browser. ``complete`` takes it back by
``state`` (deleting it in the same step) and asks the connector to verify the callback.
A missing, unknown, used or expired state is refused before the connector sees anything.
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Callable, Mapping
from dataclasses import replace
from urllib.parse import urlsplit

from bridge.errors import LoginError
from bridge.identity import Identity
from bridge.store import Store
from bridge.upstream.base import Connector, PendingLogin


def safe_return_to(value: str | None, default: str = "/portal") -> str:
    """Same-origin path only: ``/portal?x`` is fine; ``//evil``, ``https://evil``, ``/\\evil`` are not."""
    if not value or not value.startswith("/") or value.startswith(("//", "/\\")):
        return default
    parts = urlsplit(value)
    if parts.scheme or parts.netloc or any(c in value for c in "\r\n\t\\"):
        return default
    return value


class LoginFlow:
    def __init__(self, store: Store, connectors: Mapping[str, Connector], *, base_url: str, ttl: int,
                 clock: Callable[[], float] = time.time) -> None:
        self.store = store
        self.connectors = connectors
        self.base_url = base_url
        self.ttl = ttl
        self.clock = clock

    def redirect_uri(self, connector_id: str) -> str:
        return f"{self.base_url}/callback/{connector_id}"

    def begin(self, connector: Connector, return_to: str | None) -> str:
        """Record a PendingLogin and return the URL that starts the upstream login."""
        pending = PendingLogin(
            state=secrets.token_urlsafe(24), connector_id=connector.id, nonce=secrets.token_urlsafe(24),
            code_verifier=secrets.token_urlsafe(48), return_to=safe_return_to(return_to),
            created_at=int(self.clock()), correlation_id=secrets.token_hex(12))
        # Ask the connector first: if the IdP is unreachable nothing is stored.
        start = connector.start_login(pending, self.redirect_uri(connector.id))
        if start.request_id:
            pending = replace(pending, request_id=start.request_id)
        self.store.put_pending(pending.state, pending.to_json(), self.ttl)
        return start.url

    def complete(self, connector: Connector, params: Mapping[str, str]) -> tuple[Identity, str, str]:
        """Verify a callback; return the identity, where to send the user next, and the sign-in's
        correlation id (minted at ``begin``; a fresh one for an unsolicited SAML response)."""
        state = params.get("state") or params.get("RelayState")
        record = self.store.take_pending(state) if state and len(state) <= 128 else None
        if record is None and connector.allows_unsolicited:
            # IdP-initiated SAML (insecure_allow_idp_initiated): RelayState may be a target, not ours.
            identity = connector.finish_login(None, params, self.redirect_uri(connector.id))
            return identity, safe_return_to(state), secrets.token_hex(12)
        if not state:
            raise LoginError("callback without state", code="state_missing",
                             message="The sign-in response did not say which sign-in it belongs to.")
        if len(state) > 128:
            raise LoginError("state too long", code="state_invalid")
        if record is None:
            raise LoginError("unknown state", code="login_expired",
                             message="This sign-in has expired, was already used, or was interrupted.",
                             hint="Sign in again below; each sign-in link works once, for a few minutes.")
        pending = PendingLogin.from_json(record)
        if pending.connector_id != connector.id:
            raise LoginError("state belongs to another connector", code="state_mismatch",
                             message="The sign-in response does not match the sign-in that was started.")
        identity = connector.finish_login(pending, params, self.redirect_uri(connector.id))
        return identity, pending.return_to, pending.correlation_id or secrets.token_hex(12)
