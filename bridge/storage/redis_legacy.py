"""Keys written before the hash tags: read, moved, deleted; never written. Every read of them is here, in
``LegacyReads``; ``bridge storage migrate`` (bridge/storage/redis_migrate.py) moves them all at once.

Until 0.1.0 the session keys had no braces (``session:<sid hash>``, ...) and credential entries were
``creds:<entry>`` with ``creds-index:<user>``. Sessions, upstream grants, passthrough artifacts and
CLI-token sets written that way are still read (a session is moved to its tagged key the first time it is
read) and deleted with their session. Old credential-cache entries are not read (a miss: fetched again from
STS) but are deleted at sign-out (``RedisStore.creds_forget``).

Removed in ``REMOVED_IN`` (0.2.0, the release after the one that wrote the tags): upgrade to it after
``bridge storage migrate`` has run, or once every session written by an earlier version has ended
(``session.absolute_timeout``). ``legacy_reads = False`` is the store as it will be then (the migrate
tests check that nothing is lost).
"""

from __future__ import annotations

import json
from typing import Any

from bridge.storage.redis_client import RedisBase

REMOVED_IN = "0.2.0"
SESSION_KINDS = ("session", "passthrough", "upstream")  # JSON strings kept per session hash
BESIDE_KINDS = ("session", "passthrough", "creds", "upstream")  # deleted with a session


class LegacyReads(RedisBase):
    """``RedisStore``'s reads of the keys an earlier version wrote (removed in ``REMOVED_IN``)."""

    legacy_reads: bool = True

    def _old(self, kind: str, shash: str) -> list[str]:
        """The key an earlier version wrote for ``kind`` of session ``shash``: [key], or [] without legacy reads."""
        return [self._k(kind, shash)] if self.legacy_reads else []

    def _old_creds_index(self, user: str) -> list[str]:
        """A user's credential-cache index as an earlier version named it (untagged), or []."""
        return [self._k("creds-index", user)] if self.legacy_reads else []

    def _drop_old(self, shash: str, *kinds: str) -> None:
        """Delete what an earlier version wrote for ``kinds`` of the session (a newer write replaces it)."""
        old = [key for kind in kinds for key in self._old(kind, shash)]
        if old:
            self.r.delete(*old)

    def _move(self, old: str, new: str) -> tuple[Any, bool]:
        """Move the string ``old`` to ``new`` with its TTL (SET NX: one written meanwhile under the new key
        wins), then delete ``old``. (its value or None, whether it was written under ``new``)."""
        pipe = self.r.pipeline(transaction=False)
        pipe.get(old)
        pipe.pttl(old)
        raw, pttl = pipe.execute()
        moved = False
        if raw is not None and pttl and pttl > 0:
            moved = bool(self.r.set(new, raw, px=pttl, nx=True))
            self.r.delete(old)
        return raw, moved

    def _get_session_raw(self, shash: str) -> Any:
        """The session's JSON, moving a session written before the hash tags to its tagged key."""
        raw = self.r.get(self._shkey(shash))
        if raw is not None or not self.legacy_reads:
            return raw
        return self._move(self._k("session", shash), self._shkey(shash))[0]

    def _get_beside(self, kind: str, shash: str) -> dict[str, Any] | None:
        """A JSON document kept beside a session (tagged key, else the key of an earlier version)."""
        with self.errors():
            raw = self.r.get(self._sk(kind, shash))
            for old in self._old(kind, shash) if raw is None else ():
                raw = self.r.get(old)
        return None if raw is None else dict(json.loads(raw))
