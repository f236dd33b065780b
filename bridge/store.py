"""Redis state: sessions and pending logins (JSON only, never pickle).

Contract:
- Pending logins are single-use: ``take_pending`` reads and deletes atomically (GETDEL), so a
  replayed callback finds nothing. They expire after their TTL.
- Sessions are keyed by the SHA-256 of the cookie value, so someone reading Redis cannot
  use what they read as a cookie. A session ends at the first of: idle timeout (TTL
  refreshed on each use), absolute timeout (stored in the record), or ``delete_session``.
- Every Redis failure becomes ``StoreUnavailable`` (a 503 for the user), never a 500.
Not verified here: the meaning of the stored documents (the callers own their shape).
"""

from __future__ import annotations

import hashlib
import json
import secrets
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import redis
from redis.backoff import ExponentialBackoff
from redis.retry import Retry

from bridge.errors import StoreUnavailable


@contextmanager
def _redis_errors() -> Iterator[None]:
    try:
        yield
    except redis.RedisError as e:
        raise StoreUnavailable(f"redis: {type(e).__name__}") from None


class Store:
    """Sessions and pending logins in one Redis, under ``prefix``."""

    def __init__(self, client: redis.Redis, prefix: str = "bridge:", clock: Callable[[], float] = time.time):
        self.r = client
        self.prefix = prefix
        self.clock = clock

    @classmethod
    def from_url(cls, url: str, prefix: str, socket_timeout: float = 2.0) -> Store:
        # One quick retry (a reconnect after a Redis restart), not redis-py's default backoff of
        # seconds: when Redis is down, users should get the 503 page at once, not after a hang.
        client = redis.Redis.from_url(url, socket_timeout=socket_timeout, socket_connect_timeout=socket_timeout,
                                      health_check_interval=30,
                                      retry=Retry(ExponentialBackoff(cap=0.1, base=0.01), retries=1))
        return cls(client, prefix)

    def ping(self) -> bool:
        try:
            return bool(self.r.ping())
        except redis.RedisError:
            return False

    # -- pending logins ---------------------------------------------------------------
    def put_pending(self, state: str, record: dict[str, Any], ttl: int) -> None:
        with _redis_errors():
            self.r.set(f"{self.prefix}pending:{state}", json.dumps(record), ex=ttl, nx=True)

    def take_pending(self, state: str) -> dict[str, Any] | None:
        """The pending login for ``state``, deleted in the same step; None if unknown, used or expired."""
        with _redis_errors():
            raw = self.r.getdel(f"{self.prefix}pending:{state}")
        return None if raw is None else dict(json.loads(raw))

    # -- replay cache ---------------------------------------------------------------------
    def remember_once(self, key: str, ttl: int) -> bool:
        """True the first time ``key`` is seen within ``ttl`` seconds, False on a replay (any instance)."""
        with _redis_errors():
            return bool(self.r.set(f"{self.prefix}replay:{key}", b"1", ex=max(1, int(ttl)), nx=True))

    # -- upstream artifacts for aws_passthrough (kept apart from the session, short TTL) ----
    def put_passthrough(self, sid: str, doc: dict[str, Any], ttl: int) -> None:
        with _redis_errors():
            self.r.set(self._pkey(sid), json.dumps(doc), ex=max(1, int(ttl)))

    def get_passthrough(self, sid: str) -> dict[str, Any] | None:
        with _redis_errors():
            raw = self.r.get(self._pkey(sid))
        return None if raw is None else dict(json.loads(raw))

    def _pkey(self, sid: str) -> str:
        return f"{self.prefix}passthrough:{hashlib.sha256(sid.encode()).hexdigest()}"

    # -- small JSON documents (device codes, CLI tokens), keyed by kind and an id ------------
    def put_doc(self, kind: str, ident: str, doc: dict[str, Any], ttl: int) -> None:
        with _redis_errors():
            self.r.set(f"{self.prefix}{kind}:{ident}", json.dumps(doc), ex=max(1, int(ttl)))

    def get_doc(self, kind: str, ident: str) -> dict[str, Any] | None:
        with _redis_errors():
            raw = self.r.get(f"{self.prefix}{kind}:{ident}")
        return None if raw is None else dict(json.loads(raw))

    def take_doc(self, kind: str, ident: str) -> dict[str, Any] | None:
        """Read and delete in one step (single use)."""
        with _redis_errors():
            raw = self.r.getdel(f"{self.prefix}{kind}:{ident}")
        return None if raw is None else dict(json.loads(raw))

    def delete_doc(self, kind: str, ident: str) -> None:
        with _redis_errors():
            self.r.delete(f"{self.prefix}{kind}:{ident}")

    def add_to_set(self, kind: str, ident: str, member: str, ttl: int) -> None:
        with _redis_errors():
            pipe = self.r.pipeline()
            pipe.sadd(f"{self.prefix}{kind}:{ident}", member)
            pipe.expire(f"{self.prefix}{kind}:{ident}", max(1, int(ttl)))
            pipe.execute()

    def pop_set(self, kind: str, ident: str) -> list[str]:
        with _redis_errors():
            key = f"{self.prefix}{kind}:{ident}"
            members = [m.decode() if isinstance(m, bytes) else str(m) for m in self.r.smembers(key)]
            self.r.delete(key)
        return members

    # -- portal preferences: recent roles (newest first) and favourites, per user -----------
    def push_recent(self, user: str, item: str, *, keep: int = 10, ttl: int = 90 * 86400) -> None:
        with _redis_errors():
            key = f"{self.prefix}recent:{user}"
            pipe = self.r.pipeline()
            pipe.lrem(key, 0, item)
            pipe.lpush(key, item)
            pipe.ltrim(key, 0, keep - 1)
            pipe.expire(key, ttl)
            pipe.execute()

    def preferences(self, user: str) -> tuple[list[str], set[str]]:
        """(recent grant ids newest first, favourite grant ids) in one round trip."""
        with _redis_errors():
            pipe = self.r.pipeline()
            pipe.lrange(f"{self.prefix}recent:{user}", 0, -1)
            pipe.smembers(f"{self.prefix}fav:{user}")
            recent, favs = pipe.execute()
        def text(x: Any) -> str:
            return x.decode() if isinstance(x, bytes) else str(x)
        return [text(x) for x in recent], {text(x) for x in favs}

    def toggle_favourite(self, user: str, item: str, *, ttl: int = 365 * 86400) -> bool:
        """Add or remove ``item``; True when it is a favourite now."""
        with _redis_errors():
            key = f"{self.prefix}fav:{user}"
            if self.r.srem(key, item):
                return False
            pipe = self.r.pipeline()
            pipe.sadd(key, item)
            pipe.expire(key, ttl)
            pipe.execute()
            return True

    @staticmethod
    def hash_id(secret: str) -> str:
        """Secrets (device codes, tokens, session ids) are stored only as their SHA-256."""
        return hashlib.sha256(secret.encode()).hexdigest()

    # -- sessions -----------------------------------------------------------------------
    def _skey(self, sid: str) -> str:
        return f"{self.prefix}session:{hashlib.sha256(sid.encode()).hexdigest()}"

    def create_session(self, data: dict[str, Any], *, idle: int, absolute: int) -> str:
        """Store a new session; return the random id to put in the cookie."""
        sid = secrets.token_urlsafe(32)
        now = int(self.clock())
        doc = {**data, "created_at": now, "expires_at": now + absolute}
        with _redis_errors():
            self.r.set(self._skey(sid), json.dumps(doc, separators=(",", ":")), ex=min(idle, absolute))
        return sid

    def load_session(self, sid: str, *, idle: int) -> dict[str, Any] | None:
        """The session for ``sid`` with its idle timer reset, or None if unknown or past either timeout."""
        if not sid or len(sid) > 128:
            return None
        key = self._skey(sid)
        with _redis_errors():
            raw = self.r.get(key)
            if raw is None:
                return None
            doc: dict[str, Any] = json.loads(raw)
            remaining = int(doc.get("expires_at", 0)) - int(self.clock())
            if remaining <= 0:
                self.r.delete(key)
                return None
            self.r.expire(key, min(idle, remaining))
        return doc

    def save_session(self, sid: str, doc: dict[str, Any], *, idle: int) -> None:
        remaining = int(doc.get("expires_at", 0)) - int(self.clock())
        if remaining <= 0:
            return
        with _redis_errors():
            self.r.set(self._skey(sid), json.dumps(doc, separators=(",", ":")), ex=min(idle, remaining), xx=True)

    def delete_session(self, sid: str) -> None:
        with _redis_errors():
            self.r.delete(self._skey(sid), self._pkey(sid))

    def session_key(self, sid: str) -> str:
        """The Redis key of a session (for operations and the memory benchmark)."""
        return self._skey(sid)
