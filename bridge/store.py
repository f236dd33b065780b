"""Redis state: sessions and pending logins (JSON only, never pickle).

Contract:
- Pending logins are single-use: ``take_pending`` reads and deletes atomically (GETDEL), so a
  replayed callback finds nothing. They expire after their TTL.
- Sessions are keyed by the SHA-256 of the cookie value, so someone reading Redis cannot
  use what they read as a cookie. A session ends at the first of: idle timeout (TTL
  refreshed on each use), absolute timeout (stored in the record), or ``delete_session``.
- Every Redis failure becomes ``StoreUnavailable`` (a 503 for the user), never a 500, and is
  counted through ``on_error`` (the app's metrics).
- Cached credentials are opaque bytes here (the caller encrypts them with a key derived from
  the cookie, which Redis never sees); they live beside the session and go with it.
- Any instance can serve any step: nothing is kept in a process between requests.
Topologies (``redis_client``): one server (``redis://``, ``rediss://`` for TLS), Sentinel, Cluster.
Every key starts with the deployment's ``key_prefix`` and each command names one key, so Cluster
needs no hash tags.
Not verified here: the meaning of the stored documents (the callers own their shape).
"""

from __future__ import annotations

import hashlib
import json
import secrets
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

import redis
from redis.backoff import ExponentialBackoff
from redis.retry import Retry

from bridge.config import RedisSettings
from bridge.errors import StoreUnavailable

AnyRedis = Any  # redis.Redis or redis.cluster.RedisCluster: the commands used here exist on both


def redis_client(cfg: RedisSettings, resolve: Callable[[Path], Path] = lambda p: p) -> AnyRedis:
    """A redis-py client for the configured topology (no connection is made until first use,
    except Cluster, which reads the slot map at construction)."""
    # One quick retry (a reconnect after a Redis restart or failover), not redis-py's default
    # backoff of seconds: when Redis is down, users should get the 503 page at once, not a hang.
    kw: dict[str, Any] = {"socket_timeout": cfg.socket_timeout, "socket_connect_timeout": cfg.socket_timeout,
                          "retry": Retry(ExponentialBackoff(cap=0.1, base=0.01), retries=1),
                          "max_connections": cfg.max_connections}
    if cfg.password is not None:
        kw["password"] = cfg.password.get_secret_value()
    if cfg.tls:
        kw["ssl_cert_reqs"] = "required"
        if cfg.ssl_ca_file:
            kw["ssl_ca_certs"] = str(resolve(cfg.ssl_ca_file))
        if cfg.ssl_cert_file and cfg.ssl_key_file:
            kw["ssl_certfile"] = str(resolve(cfg.ssl_cert_file))
            kw["ssl_keyfile"] = str(resolve(cfg.ssl_key_file))
    if cfg.mode == "cluster":
        from redis.cluster import RedisCluster

        return RedisCluster.from_url(cfg.url, **kw)
    if cfg.mode == "sentinel":
        from redis.sentinel import Sentinel

        u = urlsplit(cfg.url)
        if u.username:
            kw["username"] = unquote(u.username)
        if u.password and "password" not in kw:
            kw["password"] = unquote(u.password)
        if cfg.tls:
            kw["ssl"] = True
        kw["db"] = int(u.path.strip("/") or 0)
        hosts = [(h.rpartition(":")[0], int(h.rpartition(":")[2])) for h in cfg.sentinels]
        sentinel_kw: dict[str, Any] = {"socket_timeout": cfg.socket_timeout,
                                       "socket_connect_timeout": cfg.socket_timeout}
        if cfg.sentinel_password is not None:
            sentinel_kw["password"] = cfg.sentinel_password.get_secret_value()
        pool_kw = {k: v for k, v in kw.items() if k != "max_connections"}
        sentinel = Sentinel(hosts, sentinel_kwargs=sentinel_kw, **pool_kw)  # type: ignore[no-untyped-call]
        assert cfg.sentinel_master is not None  # validated
        return sentinel.master_for(cfg.sentinel_master, max_connections=cfg.max_connections)  # type: ignore[no-untyped-call]
    return redis.Redis.from_url(cfg.url, health_check_interval=30, **kw)


class Store:
    """Sessions and pending logins in one Redis, under ``prefix``."""

    def __init__(self, client: AnyRedis, prefix: str = "bridge:", clock: Callable[[], float] = time.time,
                 on_error: Callable[[BaseException], None] | None = None):
        self.r = client
        self.prefix = prefix
        self.clock = clock
        self.on_error = on_error

    @classmethod
    def from_url(cls, url: str, prefix: str, socket_timeout: float = 2.0) -> Store:
        return cls(redis_client(RedisSettings(url=url, key_prefix=prefix, socket_timeout=socket_timeout)), prefix)

    @contextmanager
    def errors(self) -> Iterator[None]:
        try:
            yield
        except redis.RedisError as e:
            if self.on_error:
                self.on_error(e)
            raise StoreUnavailable(f"redis: {type(e).__name__}") from None

    def ping(self) -> bool:
        try:
            return bool(self.r.ping())
        except redis.RedisError as e:
            if self.on_error:
                self.on_error(e)
            return False

    # -- pending logins ---------------------------------------------------------------
    def put_pending(self, state: str, record: dict[str, Any], ttl: int) -> None:
        with self.errors():
            self.r.set(f"{self.prefix}pending:{state}", json.dumps(record), ex=ttl, nx=True)

    def take_pending(self, state: str) -> dict[str, Any] | None:
        """The pending login for ``state``, deleted in the same step; None if unknown, used or expired."""
        with self.errors():
            raw = self.r.getdel(f"{self.prefix}pending:{state}")
        return None if raw is None else dict(json.loads(raw))

    def has_pending(self, state: str) -> bool:
        """Whether ``state`` is a pending login still waiting (looked at, not taken)."""
        with self.errors():
            return bool(self.r.exists(f"{self.prefix}pending:{state}"))

    # -- rate limits ------------------------------------------------------------------------
    def hit(self, bucket: str, limit: int, window: int = 60) -> int:
        """Count one request in ``bucket``'s current window (shared by every instance). Returns 0 if
        it is within ``limit``, else the seconds until the window ends (for Retry-After)."""
        now = int(self.clock())
        start = now - now % window
        key = f"{self.prefix}rl:{bucket}:{start}"
        with self.errors():
            pipe = self.r.pipeline(transaction=False)
            pipe.incr(key)
            pipe.expire(key, window + 5)
            count = int(pipe.execute()[0])
        return 0 if count <= limit else max(1, start + window - now)

    # -- replay cache ---------------------------------------------------------------------
    def remember_once(self, key: str, ttl: int) -> bool:
        """True the first time ``key`` is seen within ``ttl`` seconds, False on a replay (any instance)."""
        with self.errors():
            return bool(self.r.set(f"{self.prefix}replay:{key}", b"1", ex=max(1, int(ttl)), nx=True))

    # -- upstream artifacts for aws_passthrough (kept apart from the session, short TTL) ----
    def put_passthrough(self, sid: str, doc: dict[str, Any], ttl: int) -> None:
        with self.errors():
            self.r.set(self._pkey(sid), json.dumps(doc), ex=max(1, int(ttl)))

    def get_passthrough(self, sid: str) -> dict[str, Any] | None:
        with self.errors():
            raw = self.r.get(self._pkey(sid))
        return None if raw is None else dict(json.loads(raw))

    def _pkey(self, sid: str) -> str:
        return f"{self.prefix}passthrough:{self.session_hash(sid)}"

    # -- small JSON documents (device codes, CLI tokens), keyed by kind and an id ------------
    def put_doc(self, kind: str, ident: str, doc: dict[str, Any], ttl: int) -> None:
        with self.errors():
            self.r.set(f"{self.prefix}{kind}:{ident}", json.dumps(doc), ex=max(1, int(ttl)))

    def get_doc(self, kind: str, ident: str) -> dict[str, Any] | None:
        with self.errors():
            raw = self.r.get(f"{self.prefix}{kind}:{ident}")
        return None if raw is None else dict(json.loads(raw))

    def take_doc(self, kind: str, ident: str) -> dict[str, Any] | None:
        """Read and delete in one step (single use)."""
        with self.errors():
            raw = self.r.getdel(f"{self.prefix}{kind}:{ident}")
        return None if raw is None else dict(json.loads(raw))

    def delete_doc(self, kind: str, ident: str) -> None:
        with self.errors():
            self.r.delete(f"{self.prefix}{kind}:{ident}")

    def add_to_set(self, kind: str, ident: str, member: str, ttl: int) -> None:
        with self.errors():
            pipe = self.r.pipeline()
            pipe.sadd(f"{self.prefix}{kind}:{ident}", member)
            pipe.expire(f"{self.prefix}{kind}:{ident}", max(1, int(ttl)))
            pipe.execute()

    def pop_set(self, kind: str, ident: str) -> list[str]:
        with self.errors():
            key = f"{self.prefix}{kind}:{ident}"
            members = [m.decode() if isinstance(m, bytes) else str(m) for m in self.r.smembers(key)]
            self.r.delete(key)
        return members

    # -- portal preferences: recent roles (newest first) and favourites, per user -----------
    def push_recent(self, user: str, item: str, *, keep: int = 10, ttl: int = 90 * 86400) -> None:
        with self.errors():
            key = f"{self.prefix}recent:{user}"
            pipe = self.r.pipeline()
            pipe.lrem(key, 0, item)
            pipe.lpush(key, item)
            pipe.ltrim(key, 0, keep - 1)
            pipe.expire(key, ttl)
            pipe.execute()

    def preferences(self, user: str) -> tuple[list[str], set[str]]:
        """(recent grant ids newest first, favourite grant ids) in one round trip."""
        with self.errors():
            pipe = self.r.pipeline()
            pipe.lrange(f"{self.prefix}recent:{user}", 0, -1)
            pipe.smembers(f"{self.prefix}fav:{user}")
            recent, favs = pipe.execute()
        def text(x: Any) -> str:
            return x.decode() if isinstance(x, bytes) else str(x)
        return [text(x) for x in recent], {text(x) for x in favs}

    def toggle_favourite(self, user: str, item: str, *, ttl: int = 365 * 86400) -> bool:
        """Add or remove ``item``; True when it is a favourite now."""
        with self.errors():
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
    # Everything kept for a session (the record, its passthrough artifact, its upstream grant, its
    # CLI tokens) is keyed by the SHA-256 of the cookie value: ``session_hash(sid)``. A CLI token
    # or an admin holds only that hash, never the cookie.
    @staticmethod
    def session_hash(sid: str) -> str:
        return hashlib.sha256(sid.encode()).hexdigest()

    def _skey(self, sid: str) -> str:
        return self._shkey(self.session_hash(sid))

    def _shkey(self, shash: str) -> str:
        return f"{self.prefix}session:{shash}"

    def create_session(self, data: dict[str, Any], *, idle: int, absolute: int) -> str:
        """Store a new session; return the random id to put in the cookie."""
        sid = secrets.token_urlsafe(32)
        now = int(self.clock())
        doc = {**data, "created_at": now, "expires_at": now + absolute}
        with self.errors():
            self.r.set(self._skey(sid), json.dumps(doc, separators=(",", ":")), ex=min(idle, absolute))
        return sid

    def load_session(self, sid: str, *, idle: int) -> dict[str, Any] | None:
        """The session for ``sid`` with its idle timer reset, or None if unknown or past either timeout."""
        if not sid or len(sid) > 128:
            return None
        return self.load_session_hash(self.session_hash(sid), idle=idle)

    def load_session_hash(self, shash: str, *, idle: int) -> dict[str, Any] | None:
        """The session whose cookie hashes to ``shash`` (a CLI token's approving session), idle timer reset."""
        key = self._shkey(shash)
        with self.errors():
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
        self.save_session_hash(self.session_hash(sid), doc, idle=idle)

    def save_session_hash(self, shash: str, doc: dict[str, Any], *, idle: int) -> None:
        """Rewrite an existing session (never recreates one that ended meanwhile: ``xx``)."""
        remaining = int(doc.get("expires_at", 0)) - int(self.clock())
        if remaining <= 0:
            return
        with self.errors():
            self.r.set(self._shkey(shash), json.dumps(doc, separators=(",", ":")), ex=min(idle, remaining), xx=True)

    def delete_session(self, sid: str) -> None:
        self.delete_session_hash(self.session_hash(sid))

    def delete_session_hash(self, shash: str) -> None:
        """Delete a session and everything kept beside it (one key per command: Cluster)."""
        with self.errors():
            for kind in ("session", "passthrough", "creds", "upstream"):
                self.r.delete(f"{self.prefix}{kind}:{shash}")

    # -- who has which sessions (offboarding: ``bridge sessions revoke --user``) -------------
    def _ukey(self, handle: str) -> str:
        return f"{self.prefix}usersessions:{hashlib.sha256(handle.encode()).hexdigest()}"

    def index_session(self, handles: list[str], shash: str, ttl: int) -> None:
        """Remember that ``shash`` belongs to the user known by each of ``handles`` (e-mail, subject)."""
        with self.errors():
            for handle in handles:
                key = self._ukey(handle)
                pipe = self.r.pipeline()
                pipe.sadd(key, shash)
                pipe.expire(key, max(1, int(ttl)))
                pipe.execute()

    def user_sessions(self, handle: str) -> list[str]:
        """The hashes of the live sessions of ``handle``; ended ones are dropped from the index."""
        key = self._ukey(handle)
        with self.errors():
            members = sorted(m.decode() if isinstance(m, bytes) else str(m) for m in self.r.smembers(key))
            live = []
            for h in members:
                if self.r.exists(self._shkey(h)):
                    live.append(h)
                else:
                    self.r.srem(key, h)
        return live

    def unindex_session(self, handles: list[str], shash: str) -> None:
        with self.errors():
            for handle in handles:
                self.r.srem(self._ukey(handle), shash)

    # -- the upstream grant kept to re-check a user with the IdP (refresh token: secret) ----
    def put_upstream(self, shash: str, doc: dict[str, Any], ttl: int) -> None:
        with self.errors():
            self.r.set(f"{self.prefix}upstream:{shash}", json.dumps(doc), ex=max(1, int(ttl)))

    def get_upstream(self, shash: str) -> dict[str, Any] | None:
        with self.errors():
            raw = self.r.get(f"{self.prefix}upstream:{shash}")
        return None if raw is None else dict(json.loads(raw))

    def try_lock(self, name: str, ttl: int) -> bool:
        """A best-effort lock shared by every instance (one re-check with the IdP at a time)."""
        with self.errors():
            return bool(self.r.set(f"{self.prefix}lock:{name}", b"1", ex=max(1, int(ttl)), nx=True))

    def unlock(self, name: str) -> None:
        with self.errors():
            self.r.delete(f"{self.prefix}lock:{name}")

    def set_members(self, kind: str, ident: str) -> list[str]:
        with self.errors():
            members = self.r.smembers(f"{self.prefix}{kind}:{ident}")
        return sorted(m.decode() if isinstance(m, bytes) else str(m) for m in members)

    def remove_from_set(self, kind: str, ident: str, member: str) -> None:
        with self.errors():
            self.r.srem(f"{self.prefix}{kind}:{ident}", member)

    # -- credential cache (sealed by the caller; goes with the session) --------------------
    def _ckey(self, sid: str) -> str:
        return f"{self.prefix}creds:{self.session_hash(sid)}"

    def cache_get(self, sid: str, field: str) -> bytes | None:
        with self.errors():
            raw = self.r.hget(self._ckey(sid), field)
        return None if raw is None else bytes(raw)

    def cache_put(self, sid: str, field: str, blob: bytes, ttl: int) -> None:
        """Keep ``blob`` under the session's cache for up to ``ttl`` s (entries carry their own expiry)."""
        key = self._ckey(sid)
        with self.errors():
            pipe = self.r.pipeline(transaction=False)
            pipe.hset(key, field, blob)
            pipe.expire(key, max(1, int(ttl)))
            pipe.execute()

    # -- audit stream ---------------------------------------------------------------------
    def audit_append(self, stream: str, line: str, maxlen: int) -> None:
        with self.errors():
            self.r.xadd(f"{self.prefix}{stream}", {"r": line}, maxlen=maxlen, approximate=True)

    def audit_read(self, stream: str, *, count: int, after: str | None = None,
                   block_ms: int | None = None) -> list[tuple[str, str]]:
        """The last ``count`` records (oldest first), or with ``after`` the ones after that id."""
        key = f"{self.prefix}{stream}"
        with self.errors():
            if after is None:
                rows = list(reversed(self.r.xrevrange(key, count=count)))
            else:
                got = self.r.xread({key: after}, count=count, block=block_ms)
                rows = got[0][1] if got else []
        out = []
        for rid, fields in rows:
            rid_s = rid.decode() if isinstance(rid, bytes) else str(rid)
            raw = fields.get(b"r", fields.get("r", b""))
            out.append((rid_s, raw.decode() if isinstance(raw, bytes) else str(raw)))
        return out

    def session_key(self, sid: str) -> str:
        """The Redis key of a session (for operations and the memory benchmark)."""
        return self._skey(sid)
