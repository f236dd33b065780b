"""The store's part for single-use token ids (``OnceStore.first_use``, bridge/storage/resources.py): the token
exchange keeps each single-use subject token's ``jti`` until the token expires and refuses it a second time.
``MemoryFirstUse`` and ``RedisFirstUse`` are mixed into ``MemoryStore`` and ``RedisStore``.

Redis key (under the key prefix, beside the other replay keys, so the documented ACL key patterns hold)::

    replay:<kind>:<sha-256 of the id>    "1", TTL until the token's end (SET NX EX: one step, any instance)
"""

from __future__ import annotations

import math
import re
import threading
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from bridge.storage.interface import hash_id
from bridge.storage.redis_client import RedisBase

KIND_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.:-]{0,99}")


def once_key(kind: str, token_id: str) -> str:
    """The key (after the prefix) of ``token_id`` of ``kind``; ValueError for an empty or odd kind, or no id."""
    if not isinstance(kind, str) or not KIND_RE.fullmatch(kind):
        raise ValueError(f"first_use: kind must be 1..100 of A-Z a-z 0-9 _ . : - (got {str(kind)[:40]!r})")
    if not isinstance(token_id, str) or not token_id:
        raise ValueError("first_use: the token id must be a non-empty string")
    return f"replay:{kind}:{hash_id(token_id)}"


def ttl_until(until: int, now: float) -> int:
    """Seconds from ``now`` to ``until`` (epoch seconds), rounded up, at least one."""
    if isinstance(until, bool) or not isinstance(until, int | float):
        raise ValueError("first_use: until must be epoch seconds (a number)")
    return max(1, math.ceil(until - now))


class MemoryFirstUse:
    """``first_use`` in process (unit tests), on ``MemoryStore``'s primitives and its injected clock."""

    prefix: str
    _lock: threading.RLock

    clock: Callable[[], float]

    if TYPE_CHECKING:  # MemoryStore's primitives
        def _get(self, key: str) -> Any: ...
        def _set(self, key: str, value: Any, ttl: float | None) -> None: ...

    def first_use(self, kind: str, token_id: str, until: int) -> bool:
        key = self.prefix + once_key(kind, token_id)
        with self._lock:
            ttl = ttl_until(until, self.clock())
            if self._get(key) is not None:
                return False
            self._set(key, b"1", ttl)
            return True


class RedisFirstUse(RedisBase):
    """``first_use`` in Redis: one ``SET NX EX`` (the TTL counted on the store's clock, like every other)."""

    def first_use(self, kind: str, token_id: str, until: int) -> bool:
        key = self.prefix + once_key(kind, token_id)
        ttl = ttl_until(until, self.clock())
        with self.errors():
            return bool(self.r.set(key, b"1", ex=ttl, nx=True))
