"""The once-a-minute guard on fetching an issuer's keys again because a token names an unknown ``kid``.

An unknown ``kid`` usually means the issuer rotated its keys: fetch them at once. But the ``kid`` is whatever the
token says, before any signature is checked: without a guard, every token with a fresh made-up ``kid`` would cost
a fetch from the IdP. One guard per connector lets one such fetch through each ``MIN_REFRESH`` seconds; a token
with an unknown ``kid`` in between is refused without a fetch. The OIDC connector's token exchange
(``oidc_subject``) and the workload connector (``workload``) share it. No I/O, no clock of its own (the caller's
``now``).
"""

from __future__ import annotations

import threading

MIN_REFRESH = 60  # seconds between two fetches of the keys for an unknown kid (a flood of bad kids costs one a minute)


class KidRefetchGuard:
    """Whether a fetch of the keys for an unknown ``kid`` may go now: at most one each ``every`` seconds."""

    def __init__(self, every: float = MIN_REFRESH) -> None:
        self.every = every
        self._lock = threading.Lock()
        self._at = -1e18  # when the last such fetch was let through (the caller's clock)

    def allow(self, now: float) -> bool:
        """True (and the window starts again) when the last fetch let through is ``every`` seconds old or more."""
        with self._lock:
            if now - self._at < self.every:
                return False
            self._at = now
            return True
