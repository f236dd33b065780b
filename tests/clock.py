"""An injected clock for tests: ``clock()`` is ``clock.now``, moved by assigning or adding to it (no sleeping)."""

from __future__ import annotations


class Clock:
    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now
