"""Talking to Redis: ``redis_client`` builds a redis-py client for the configured topology (one server,
``redis://`` or ``rediss://`` for TLS; Sentinel; Cluster), and ``RedisBase`` is what ``RedisStore``
(bridge/storage/redis.py) builds on: every Redis failure as ``StoreUnavailable`` (counted through
``on_error``), the key names, and small JSON documents and sets keyed by kind and id.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import unquote, urlsplit

import redis
from redis.backoff import ExponentialBackoff
from redis.retry import Retry

from bridge.config import RedisSettings
from bridge.domain.errors import StoreUnavailable
from bridge.storage.keys import Keys
from bridge.storage.records import RecordError

AnyRedis = Any  # redis.Redis or redis.cluster.RedisCluster: the commands used here exist on both

R = TypeVar("R")


def as_text(x: Any) -> str:
    return x.decode() if isinstance(x, bytes) else str(x)


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
        sentinel = Sentinel(hosts, sentinel_kwargs=sentinel_kw, **pool_kw)
        assert cfg.sentinel_master is not None  # validated
        return sentinel.master_for(cfg.sentinel_master, max_connections=cfg.max_connections)
    return redis.Redis.from_url(cfg.url, health_check_interval=30, **kw)


class RedisBase:
    """A client, the deployment's key ``prefix``, a clock, and the private helpers of ``RedisStore``."""

    def __init__(self, client: AnyRedis, prefix: str = "bridge:", clock: Callable[[], float] = time.time,
                 on_error: Callable[[BaseException], None] | None = None):
        self.r = client
        self.prefix = prefix
        self.keys = Keys(prefix)
        self.clock = clock
        self.on_error = on_error

    @contextmanager
    def errors(self) -> Iterator[None]:
        try:
            yield
        except redis.RedisError as e:
            if self.on_error:
                self.on_error(e)
            raise StoreUnavailable(f"redis: {type(e).__name__}") from None

    def _eval(self, script: str, numkeys: int, *args: str | bytes | int) -> Any:
        """``EVAL`` on one server (``self.r`` a ``redis.Redis``: a single server or Sentinel's master), sent on a
        pooled connection directly: redis-py's command path around it (its retry wrapper, observability hooks
        and argument checks) cost a hot request more CPU than the bridge's own checks. The connection cleans
        itself up on any error (redis-py's ``Connection``); a connection the server dropped hands the command
        to that path, which retries as configured (``redis_client``; a reply lost to a reset connection may
        then have the script run twice, as with redis-py's own retry). A timeout is not tried again: the
        script may still be running, and a hung Redis holds each request one ``socket_timeout``, not more."""
        pool = self.r.connection_pool
        conn = pool.get_connection()
        try:
            conn.send_command("EVAL", script, numkeys, *args)
            return conn.read_response()
        except redis.ConnectionError:
            pass
        finally:
            if conn.should_reconnect():  # the server announced maintenance (redis-py does the same after a command)
                conn.disconnect()
            pool.release(conn)
        return self.r.eval(script, numkeys, *args)

    def _sadd_never_shorten(self, key: str, member: str, ttl: int) -> None:
        """SADD, and extend the set's TTL to ``ttl`` unless it already lives longer: an index must
        outlive the longest thing filed in it (PTTL, not TTL: it is in the bridge's ACL list)."""
        pipe = self.r.pipeline()
        pipe.sadd(key, member)
        pipe.pttl(key)
        _, left_ms = pipe.execute()
        if int(left_ms) < int(ttl) * 1000:
            self.r.expire(key, max(1, int(ttl)))

    @staticmethod
    def _record(load: Callable[[Mapping[str, Any]], R], doc: Mapping[str, Any] | None) -> R | None:
        """``load(doc)`` (a record's ``from_json``); None for no document, or one that is not the record's
        shape (never trusted)."""
        try:
            return None if doc is None else load(doc)
        except RecordError:
            return None

    def _k(self, kind: str, ident: str) -> str:
        return self.keys.plain(kind, ident)

    def _ck(self, user: str, entry: str) -> str:
        """A credential-cache entry: tagged by its user, like the user's index (one slot)."""
        return self.keys.tagged("creds", user, entry)

    def _rl(self, bucket: str, window: int) -> tuple[str, Callable[[int, int], int]]:
        """The key of ``bucket``'s current window, and what a count in it answers: 0 within the
        limit, else the seconds until the window ends (``Store.hit``)."""
        now = int(self.clock())
        start = now - now % window
        return self.keys.plain("rl", f"{bucket}:{start}"), lambda count, limit: (
            0 if count <= limit else max(1, start + window - now))

    # -- small JSON documents and sets, keyed by kind and an id (private) -------------------------
    def _put_json(self, kind: str, ident: str, doc: Mapping[str, Any], ttl: int, **kw: bool) -> bool:
        with self.errors():
            return bool(self.r.set(self._k(kind, ident), json.dumps(doc, separators=(",", ":")),
                                   ex=max(1, int(ttl)), **kw))

    def _get_json(self, kind: str, ident: str) -> dict[str, Any] | None:
        with self.errors():
            raw = self.r.get(self._k(kind, ident))
        return None if raw is None else dict(json.loads(raw))

    def _take_json(self, kind: str, ident: str) -> dict[str, Any] | None:
        """Read and delete in one step (GETDEL: single use, even under concurrent takes)."""
        with self.errors():
            raw = self.r.getdel(self._k(kind, ident))
        return None if raw is None else dict(json.loads(raw))

    def _delete(self, kind: str, ident: str) -> None:
        with self.errors():
            self.r.delete(self._k(kind, ident))

    def _add_to_set(self, kind: str, ident: str, member: str, ttl: int) -> None:
        with self.errors():
            pipe = self.r.pipeline(transaction=True)
            pipe.sadd(self._k(kind, ident), member)
            pipe.expire(self._k(kind, ident), max(1, int(ttl)))
            pipe.execute()

    def _members(self, kind: str, ident: str) -> list[str]:
        with self.errors():
            members = self.r.smembers(self._k(kind, ident))
        return sorted(as_text(m) for m in members)

    def _remove_from_set(self, kind: str, ident: str, member: str) -> None:
        with self.errors():
            self.r.srem(self._k(kind, ident), member)

    # -- the keys of one session ------------------------------------------------------------------
    def _sk(self, kind: str, shash: str) -> str:
        """A key of the session ``shash``: hash-tagged, so all of a session's keys share a slot."""
        return self.keys.tagged(kind, shash)

    def _shkey(self, shash: str) -> str:
        return self._sk("session", shash)
