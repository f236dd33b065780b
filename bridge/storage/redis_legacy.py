"""Keys written before the hash tags: read, moved, deleted; never written.

Until this version the session keys had no braces (``session:<sid hash>``, ...) and credential
entries were ``creds:<entry>`` with ``creds-index:<user>``. Sessions, upstream grants, passthrough
artifacts and CLI-token sets written that way are still read (a session is moved to its tagged key
the first time it is read) and deleted with their session. Old credential-cache entries are not read
(a miss: fetched again from STS) but are deleted at sign-out (``RedisStore.creds_forget``).

Remove in 0.2.0 (the release after the one that wrote the tags, 0.1.0), once every session written by an
earlier version has ended (session.absolute_timeout).
"""

from __future__ import annotations

import json
from typing import Any

from bridge.storage.redis_client import RedisBase


class LegacyKeys(RedisBase):
    """``RedisStore``'s reads of the keys an earlier version wrote."""

    def _legacy(self, kind: str, shash: str) -> str:
        return self._k(kind, shash)

    def _get_session_raw(self, shash: str) -> Any:
        """The session's JSON, moving a session written before the hash tags to its tagged key (same
        TTL; SET NX, so a session written meanwhile under the new key wins)."""
        raw = self.r.get(self._shkey(shash))
        if raw is not None:
            return raw
        old = self._legacy("session", shash)
        pipe = self.r.pipeline(transaction=False)
        pipe.get(old)
        pipe.pttl(old)
        raw, pttl = pipe.execute()
        if raw is not None and pttl and pttl > 0:
            self.r.set(self._shkey(shash), raw, px=pttl, nx=True)
            self.r.delete(old)
        return raw

    def _get_beside(self, kind: str, shash: str) -> dict[str, Any] | None:
        """A JSON document kept beside a session (tagged key, else the key of an earlier version)."""
        with self.errors():
            raw = self.r.get(self._sk(kind, shash))
            if raw is None:
                raw = self.r.get(self._legacy(kind, shash))
        return None if raw is None else dict(json.loads(raw))
