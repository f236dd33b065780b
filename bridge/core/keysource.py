"""The signing keys: ``KeySource`` re-reads the key folder while the bridge runs, and says what it
publishes (``info()``: for the key-expiry metric). ``load_keys`` is what startup and check-config
report about the folder."""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

from bridge.config import Settings
from bridge.keys.signing import KeyRing, SamlKey, SigningKey, expiry, load_keyring
from bridge.telemetry.logs import event
from bridge.telemetry.metrics import KeyInfo


class KeySource:
    """The signing keys on disk, re-read when the folder changes (``bridge keys rotate`` adds and
    schedules keys while the bridge runs; every worker on every instance picks them up).

    Checked at most every ``interval`` seconds; a folder that no longer loads cleanly keeps the
    last good ring (and logs why), so a half-copied key never takes signing down.
    """

    def __init__(self, directory: Path, ring: KeyRing, *, interval: float, clock: Callable[[], float],
                 on_reload: Callable[[KeyRing], None] | None = None, max_age_days: int = 180) -> None:
        self.directory = directory
        self.on_reload = on_reload
        self.interval = interval
        self.clock = clock
        self.max_age_days = max_age_days
        self._ring = ring
        self._sig = self._signature()
        self._checked = clock()
        self._lock = threading.Lock()

    def _signature(self) -> tuple[tuple[str, int], ...]:
        try:
            return tuple(sorted((e.name, e.stat().st_mtime_ns) for e in os.scandir(self.directory)))
        except OSError:
            return ()

    def ring(self, *, force: bool = False) -> KeyRing:
        """The keys, re-read first when ``interval`` has passed (or ``force``: a sealed value names a
        cache key this process has not seen yet)."""
        now = self.clock()
        if (force or now - self._checked >= self.interval) and self._lock.acquire(blocking=False):
            try:
                self._checked = now
                sig = self._signature()
                if sig != self._sig:
                    ring, problems = load_keyring(self.directory)
                    if ring is None or problems:
                        event("keys_reload_failed", logging.ERROR, problems=problems[:5])
                    else:
                        self._ring, self._sig = ring, sig
                        if self.on_reload:
                            self.on_reload(ring)
                        event("keys_reloaded", jwt=[k.kid for k in ring.keys], saml=[k.kid for k in ring.saml],
                              cache_keys=len(ring.cache))
            finally:
                self._lock.release()
        return self._ring

    def current(self) -> KeyRing:
        """The published keys now, the signing one last."""
        return self.ring().view(self.clock())

    def info(self) -> Iterator[KeyInfo]:
        """(kind, kid, state, expires_at) for each published key: state signing | next | retiring."""
        now = self.clock()
        ring = self.current()
        groups: tuple[tuple[str, tuple[SigningKey | SamlKey, ...]], ...] = (("jwt", ring.keys), ("saml", ring.saml))
        for kind, keys in groups:
            for k in keys:
                state = ("signing" if k is keys[-1] else
                         "next" if k.schedule.sign_from is not None and k.schedule.sign_from > now else "retiring")
                yield kind, k.kid, state, expiry(k, max_age_days=self.max_age_days)


def load_keys(settings: Settings) -> tuple[KeyRing | None, list[str]]:
    """The key ring and every problem with it for these settings (what startup and check-config report)."""
    keyring, problems = load_keyring(settings.keys_dir)
    problems = [f"issuer.keys_dir: {p}" for p in problems]
    if keyring is not None:
        if settings.credential_cache.enabled and not keyring.cache:
            problems.append(f"issuer.keys_dir: no credential cache key in {settings.keys_dir} (run `bridge keys "
                            "generate --kind cache`, or set credential_cache.enabled: false)")
        nonced = [a.client_id for a in settings.apps if a.dpop_nonce]
        if nonced and not keyring.cache and not settings.credential_cache.enabled:  # else: said just above
            problems.append(f"issuer.keys_dir: apps {nonced} use dpop_nonce, whose nonces are derived from the "
                            f"credential cache key, and {settings.keys_dir} has none (run `bridge keys generate "
                            "--kind cache`)")
        uses_saml = settings.aws.default_path == "saml" or any(
            g.path == "saml" for r in settings.mapping.rules for g in r.grants or [])
        if uses_saml and not keyring.saml:
            problems.append(f"issuer.keys_dir: rules use the SAML path but {settings.keys_dir} has no SAML key "
                            "(run `bridge keys generate --kind saml`)")
    return keyring, problems
