"""The login state machine. The server owns login state, not a library's cookie.

``begin`` creates a single-use PendingLogin (state, nonce, PKCE verifier, return_to) in
the store with a TTL and returns where to send the browser. ``complete`` takes it back by
``state`` (deleting it in the same step) and asks the connector to verify the callback.
A missing, unknown, used or expired state is refused before the connector sees anything.

Each sign-in is bound to the browser that started it (login CSRF, RFC 6749 §10.12): the web
layer hands ``begin`` and ``complete`` the value of the browser's pre-sign-in cookie; the
PendingLogin keeps its SHA-256 and ``complete`` refuses a callback from any other browser, also
before the connector sees anything. The cookie itself is the web layer's business (no Flask here).
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import time
from collections.abc import Callable, Mapping
from dataclasses import replace
from urllib.parse import urlsplit

from bridge.domain.errors import LoginError, SamlUnsolicited, StepUpRefused
from bridge.domain.identity import Identity
from bridge.domain.stepup import StepUpRequest
from bridge.storage import PendingLogin, PendingStore
from bridge.upstream.base import Connector, IdpInitiated


def safe_return_to(value: str | None, default: str = "/portal") -> str:
    """Same-origin path only: ``/portal?x`` is fine; ``//evil``, ``https://evil``, ``/\\evil`` are not."""
    if not value or not value.startswith("/") or value.startswith(("//", "/\\")):
        return default
    parts = urlsplit(value)
    if parts.scheme or parts.netloc or any(c in value for c in "\r\n\t\\"):
        return default
    return value


def browser_hash(browser: str) -> str:
    return hashlib.sha256(browser.encode()).hexdigest()


class LoginFlow:
    def __init__(self, store: PendingStore, connectors: Mapping[str, Connector], *, base_url: str, ttl: int,
                 clock: Callable[[], float] = time.time,
                 admit: Callable[[Identity], None] | None = None) -> None:
        self.store = store
        self.connectors = connectors
        self.base_url = base_url
        self.ttl = ttl
        self.clock = clock
        # Who may not sign in now (SCIM: a deactivated user, bridge/scim/directory.py); raises to refuse.
        self.admit = admit or (lambda identity: None)

    def redirect_uri(self, connector_id: str) -> str:
        return f"{self.base_url}/callback/{connector_id}"

    def begin(self, connector: Connector, return_to: str | None, *, browser: str,
              step_up: StepUpRequest | None = None) -> str:
        """Record a PendingLogin bound to ``browser`` (the pre-sign-in cookie's value) and return the
        URL that starts the upstream login; ``step_up``: what a step-up sign-in asks (bridge/core/stepup_flow.py)."""
        pending = PendingLogin(
            state=secrets.token_urlsafe(24), connector_id=connector.id, nonce=secrets.token_urlsafe(24),
            code_verifier=secrets.token_urlsafe(48), return_to=safe_return_to(return_to),
            created_at=int(self.clock()), correlation_id=secrets.token_hex(12), browser_hash=browser_hash(browser),
            step_up=step_up)
        # Ask the connector first: if the IdP is unreachable nothing is stored.
        start = connector.start_login(pending, self.redirect_uri(connector.id))
        if start.request_id:
            pending = replace(pending, request_id=start.request_id)
        self.store.put_pending(pending, self.ttl)
        # The states a browser has started: while one is still pending (another tab), that browser's
        # pre-sign-in cookie must outlive the sign-in that just finished.
        self.store.add_browser_login(browser_hash(browser), pending.state, self.ttl)
        return start.url

    def is_pending(self, state: str | None) -> bool:
        """Whether ``state`` names a sign-in still waiting for its callback (without taking it)."""
        if not state or len(state) > 128:
            return False
        return self.store.has_pending(state)

    def browser_has_pending(self, browser: str) -> bool:
        """Whether ``browser`` still has another sign-in waiting (a second tab). When it has none,
        its bookkeeping is dropped and the caller may clear the cookie."""
        key = browser_hash(browser)
        if any(self.store.has_pending(state) for state in self.store.browser_logins(key)):
            return True
        self.store.forget_browser(key)
        return False

    def complete(self, connector: Connector, params: Mapping[str, str], *, browser: str | None,
                 verify: Callable[[PendingLogin, Identity], Identity] | None = None) -> tuple[Identity, str, str]:
        """Verify a callback that ``browser`` (its pre-sign-in cookie's value, None if it sent none)
        delivered; return the identity, where to send the user next, and the sign-in's correlation id
        (minted at ``begin``; a fresh one for an unsolicited SAML response). A step-up's answer goes
        through ``verify`` (pending, identity) → the verified identity, or raises (none given: refused)."""
        state = params.get("state") or params.get("RelayState")
        pending = self.store.take_pending(state) if state and len(state) <= 128 else None
        if pending is None and connector.allows_unsolicited:
            # IdP-initiated SAML (insecure_allow_idp_initiated): RelayState may be a target, not ours.
            identity = connector.finish_login(None, params, self.redirect_uri(connector.id))
            self.admit(identity)
            return identity, safe_return_to(state), secrets.token_hex(12)
        if pending is None and isinstance(connector, IdpInitiated) and connector.looks_unsolicited(params):
            # IdP-initiated (its RelayState, if any, is not one of ours): say so, rather than "expired".
            raise SamlUnsolicited("unsolicited SAML response (no InResponseTo) and no pending sign-in")
        if not state:
            raise LoginError("callback without state", code="state_missing",
                             message="The sign-in response did not say which sign-in it belongs to.")
        if len(state) > 128:
            raise LoginError("state too long", code="state_invalid")
        if pending is None:
            raise LoginError("unknown state", code="login_expired",
                             message="This sign-in has expired, was already used, or was interrupted.",
                             hint="Sign in again below; each sign-in link works once, for a few minutes.")
        # Login CSRF: a callback (code + state, or a signed SAMLResponse) planted in another browser
        # would sign that browser in as whoever got it from the IdP. Checked before the connector
        # verifies anything. The pending login stays taken, like after every other failure here:
        # the one-time answer that left its browser is dead at once (no replay from anywhere), and
        # no new way to cancel someone's sign-in appears (anyone holding a state could already
        # spend it with a bad response). A pending login without a hash (begun before this check
        # existed) is refused too: fail closed, the user simply signs in again.
        if not (browser and pending.browser_hash
                and hmac.compare_digest(browser_hash(browser), pending.browser_hash)):
            raise LoginError("callback from a browser that did not start this sign-in",
                             code="login_browser_mismatch",
                             message="This sign-in was started in another browser (or this browser did not "
                                     "send its sign-in cookie), so it cannot be completed here.",
                             hint="Start the sign-in again here, in this browser. If this keeps happening, "
                                  "allow cookies for this site.")
        if pending.connector_id != connector.id:
            raise LoginError("state belongs to another connector", code="state_mismatch",
                             message="The sign-in response does not match the sign-in that was started.")
        identity = connector.finish_login(pending, params, self.redirect_uri(connector.id))
        if pending.step_up is not None:  # a step-up: its answer is verified, never the request trusted
            if verify is None:
                raise StepUpRefused("step-up answer with nothing to verify it", code="step_up_session_changed")
            identity = verify(pending, identity)
        self.admit(identity)
        return identity, pending.return_to, pending.correlation_id or secrets.token_hex(12)

