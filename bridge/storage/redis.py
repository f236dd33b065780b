"""Redis as the bridge's ``Store`` (``bridge.storage.interface``): JSON only, never pickle.

Keys (every key starts with the deployment's ``key_prefix``; ``{...}`` is a Redis Cluster hash tag:
the keys of one session, or of one user's credential cache, share a slot, so the commands that touch
several of them are one round trip and atomic (MULTI/EXEC) on a Cluster too)::

    pending:<state>              PendingLogin JSON, TTL, taken with GETDEL (single use)
    loginbrowser:<browser hash>  set of the states a browser started
    session:{<sid hash>}         SessionRecord JSON, TTL = min(idle, time to expires_at)
    passthrough:{<sid hash>}     the aws_passthrough artifact {"kind", "value"}
    upstream:{<sid hash>}        the IdP's upstream grant (refresh token: secret)
    session-tokens:{<sid hash>}  set of the hashes of the CLI tokens the session approved
    usersessions:<handle hash>   set of session hashes (offboarding)
    clitoken:<token hash>        CliToken JSON
    device:<code hash>           DeviceCode JSON; usercode:<user code>: {"device": <code hash>}
    ssoclient:<client id>        SsoClient JSON (IAM Identity Center RegisterClient)
    authcode:<code hash>         AuthCode JSON (single use, GETDEL)
    replay:<key>, rl:<bucket>:<window start>, lock:<name>, recent:<user>, fav:<user>
    creds:{<user>}:<entry>, creds-index:{<user>}   sealed credential-cache blobs and the user's entries
    <stream>                     the audit stream (XADD, approximate MAXLEN)

Until this version the session keys had no braces (``session:<sid hash>``, ...) and credential
entries were ``creds:<entry>`` with ``creds-index:<user>``. Sessions, upstream grants, passthrough
artifacts and CLI-token sets written that way are still read (a session is moved to its tagged key
the first time it is read) and deleted with their session; see ``_legacy``. Old credential-cache
entries are not read (a miss: fetched again from STS) but are deleted at sign-out.

Every Redis failure becomes ``StoreUnavailable`` (a 503 for the user), never a 500, and is counted
through ``on_error`` (the app's metrics). Any instance can serve any step: nothing is kept in a
process between requests. Topologies (``redis_client``): one server (``redis://``, ``rediss://``
for TLS), Sentinel, Cluster.
"""

from __future__ import annotations

import json
import secrets
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

import redis
from redis.backoff import ExponentialBackoff
from redis.retry import Retry

from bridge.config import RedisSettings
from bridge.errors import StoreUnavailable
from bridge.storage.interface import hash_id
from bridge.storage.records import (
    AuthCode,
    CliToken,
    DeviceCode,
    PendingLogin,
    RecordError,
    SessionRecord,
    SsoClient,
)

AnyRedis = Any  # redis.Redis or redis.cluster.RedisCluster: the commands used here exist on both


def _text(x: Any) -> str:
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
        sentinel = Sentinel(hosts, sentinel_kwargs=sentinel_kw, **pool_kw)  # type: ignore[no-untyped-call]
        assert cfg.sentinel_master is not None  # validated
        return sentinel.master_for(cfg.sentinel_master, max_connections=cfg.max_connections)  # type: ignore[no-untyped-call]
    return redis.Redis.from_url(cfg.url, health_check_interval=30, **kw)


class RedisStore:
    """The bridge's state in one Redis (or Sentinel / Cluster), under ``prefix``."""

    def __init__(self, client: AnyRedis, prefix: str = "bridge:", clock: Callable[[], float] = time.time,
                 on_error: Callable[[BaseException], None] | None = None):
        self.r = client
        self.prefix = prefix
        self.clock = clock
        self.on_error = on_error

    @classmethod
    def from_url(cls, url: str, prefix: str, socket_timeout: float = 2.0) -> RedisStore:
        return cls(redis_client(RedisSettings(url=url, key_prefix=prefix, socket_timeout=socket_timeout)), prefix)

    hash_id = staticmethod(hash_id)
    session_hash = staticmethod(hash_id)  # everything of a session is keyed by the hash of its cookie

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

    def _k(self, kind: str, ident: str) -> str:
        return f"{self.prefix}{kind}:{ident}"

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
        return sorted(_text(m) for m in members)

    def _remove_from_set(self, kind: str, ident: str, member: str) -> None:
        with self.errors():
            self.r.srem(self._k(kind, ident), member)

    # -- pending logins -------------------------------------------------------------------------
    def put_pending(self, pending: PendingLogin, ttl: int) -> None:
        self._put_json("pending", pending.state, pending.to_json(), ttl, nx=True)

    def take_pending(self, state: str) -> PendingLogin | None:
        """The pending login for ``state``, deleted in the same step; None if unknown, used or expired."""
        doc = self._take_json("pending", state)
        return None if doc is None else PendingLogin.from_json(doc)

    def has_pending(self, state: str) -> bool:
        """Whether ``state`` is a pending login still waiting (looked at, not taken)."""
        with self.errors():
            return bool(self.r.exists(self._k("pending", state)))

    def add_browser_login(self, browser: str, state: str, ttl: int) -> None:
        self._add_to_set("loginbrowser", browser, state, ttl)

    def browser_logins(self, browser: str) -> list[str]:
        return self._members("loginbrowser", browser)

    def forget_browser(self, browser: str) -> None:
        self._delete("loginbrowser", browser)

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
            return bool(self.r.set(self._k("replay", key), b"1", ex=max(1, int(ttl)), nx=True))

    # -- upstream artifacts for aws_passthrough (kept apart from the session, short TTL) ----
    def put_passthrough(self, sid: str, artifact: Mapping[str, str], ttl: int) -> None:
        with self.errors():
            self.r.set(self._sk("passthrough", hash_id(sid)), json.dumps(dict(artifact)), ex=max(1, int(ttl)))

    def _get_beside(self, kind: str, shash: str) -> dict[str, Any] | None:
        """A JSON document kept beside a session (tagged key, else the key of an earlier version)."""
        with self.errors():
            raw = self.r.get(self._sk(kind, shash))
            if raw is None:
                raw = self.r.get(self._legacy(kind, shash))
        return None if raw is None else dict(json.loads(raw))

    def get_passthrough(self, sid: str) -> dict[str, str] | None:
        doc = self._get_beside("passthrough", hash_id(sid))
        return None if doc is None else {str(k): str(v) for k, v in doc.items()}

    # -- portal preferences: recent roles (newest first) and favourites, per user -----------
    def push_recent(self, user: str, item: str, *, keep: int = 10, ttl: int = 90 * 86400) -> None:
        with self.errors():
            key = self._k("recent", user)
            pipe = self.r.pipeline(transaction=True)
            pipe.lrem(key, 0, item)
            pipe.lpush(key, item)
            pipe.ltrim(key, 0, keep - 1)
            pipe.expire(key, ttl)
            pipe.execute()

    def preferences(self, user: str) -> tuple[list[str], set[str]]:
        """(recent grant ids newest first, favourite grant ids): one round trip on one server (two keys:
        on a Cluster, one per node that holds them; a read needs no atomicity)."""
        with self.errors():
            pipe = self.r.pipeline(transaction=False)
            pipe.lrange(self._k("recent", user), 0, -1)
            pipe.smembers(self._k("fav", user))
            recent, favs = pipe.execute()
        return [_text(x) for x in recent], {_text(x) for x in favs}

    def toggle_favourite(self, user: str, item: str, *, ttl: int = 365 * 86400) -> bool:
        """Add or remove ``item``; True when it is a favourite now."""
        with self.errors():
            key = self._k("fav", user)
            if self.r.srem(key, item):
                return False
            pipe = self.r.pipeline(transaction=True)
            pipe.sadd(key, item)
            pipe.expire(key, ttl)
            pipe.execute()
            return True

    # -- sessions -----------------------------------------------------------------------
    # Everything kept for a session (the record, its passthrough artifact, its upstream grant, its
    # CLI tokens) is keyed by the SHA-256 of the cookie value: ``session_hash(sid)``. A CLI token
    # or an admin holds only that hash, never the cookie.
    def _sk(self, kind: str, shash: str) -> str:
        """A key of the session ``shash``: hash-tagged, so all of a session's keys share a slot."""
        return f"{self.prefix}{kind}:{{{shash}}}"

    def _shkey(self, shash: str) -> str:
        return self._sk("session", shash)

    # -- keys written before the hash tags (read, moved, deleted; never written) ------------------
    # Remove once every session written by the previous version has ended (session.absolute_timeout).
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

    def session_key(self, sid: str) -> str:
        """The Redis key of a session (for operations and the memory benchmark)."""
        return self._shkey(hash_id(sid))

    def create_session(self, record: SessionRecord, *, idle: int, absolute: int) -> str:
        """Store a new session (stamped ``created_at`` now, ``expires_at`` after ``absolute``); return
        the random id to put in the cookie."""
        sid = secrets.token_urlsafe(32)
        now = int(self.clock())
        doc = {**record.to_json(), "created_at": now, "expires_at": now + absolute}
        with self.errors():
            self.r.set(self.session_key(sid), json.dumps(doc, separators=(",", ":")), ex=min(idle, absolute))
        return sid

    def load_session(self, sid: str, *, idle: int) -> SessionRecord | None:
        """The session for ``sid`` with its idle timer reset, or None if unknown or past either timeout."""
        if not sid or len(sid) > 128:
            return None
        return self.load_session_hash(hash_id(sid), idle=idle)

    def load_session_hash(self, shash: str, *, idle: int) -> SessionRecord | None:
        """The session whose cookie hashes to ``shash`` (a CLI token's approving session), idle timer reset."""
        key = self._shkey(shash)
        with self.errors():
            raw = self._get_session_raw(shash)
            if raw is None:
                return None
            record = SessionRecord.from_json(json.loads(raw))
            remaining = record.expires_at - int(self.clock())
            if remaining <= 0:
                self.r.delete(key)
                return None
            self.r.expire(key, min(idle, remaining))
        return record

    def get_session(self, shash: str) -> SessionRecord | None:
        """The session ``shash`` as stored (no timer touched; may be past ``expires_at``)."""
        with self.errors():
            raw = self._get_session_raw(shash)
        try:
            return None if raw is None else SessionRecord.from_json(json.loads(raw))
        except RecordError:
            return None

    def save_session_hash(self, shash: str, record: SessionRecord, *, idle: int) -> bool:
        """Rewrite an existing session (never recreates one that ended meanwhile: ``xx``); False if
        it had ended."""
        remaining = record.expires_at - int(self.clock())
        if remaining <= 0:
            return False
        with self.errors():
            return bool(self.r.set(self._shkey(shash), json.dumps(record.to_json(), separators=(",", ":")),
                                   ex=min(idle, remaining), xx=True))

    def delete_session(self, sid: str) -> None:
        self.delete_session_hash(hash_id(sid))

    _BESIDE = ("session", "passthrough", "creds", "upstream")

    def delete_session_hash(self, shash: str) -> None:
        """Delete a session and everything kept beside it: one DEL (one slot: the hash tag), and one
        for what an earlier version wrote without the tag."""
        with self.errors():
            self.r.delete(*[self._sk(kind, shash) for kind in self._BESIDE])
            self.r.delete(*[self._legacy(kind, shash) for kind in self._BESIDE])

    # -- who has which sessions (offboarding: ``bridge sessions revoke --user``) -------------
    def _ukey(self, handle: str) -> str:
        return self._k("usersessions", hash_id(handle))

    def index_session(self, handles: list[str], shash: str, ttl: int) -> None:
        """Remember that ``shash`` belongs to the user known by each of ``handles`` (e-mail, subject)."""
        with self.errors():
            for handle in handles:
                key = self._ukey(handle)
                pipe = self.r.pipeline(transaction=True)
                pipe.sadd(key, shash)
                pipe.ttl(key)
                _, left = pipe.execute()
                # Never shorten: the index must outlive the longest session in it (a short SAML
                # session must not expire the index of a long OIDC one of the same e-mail).
                if int(left) < int(ttl):
                    self.r.expire(key, max(1, int(ttl)))

    def user_sessions(self, handle: str) -> list[str]:
        """The hashes of the live sessions of ``handle``; ended ones are dropped from the index."""
        key = self._ukey(handle)
        with self.errors():
            members = sorted(_text(m) for m in self.r.smembers(key))
            live = []
            for h in members:
                if self.r.exists(self._shkey(h), self._legacy("session", h)):
                    live.append(h)
                else:
                    self.r.srem(key, h)
        return live

    def unindex_session(self, handles: list[str], shash: str) -> None:
        with self.errors():
            for handle in handles:
                self.r.srem(self._ukey(handle), shash)

    # -- the upstream grant kept to re-check a user with the IdP (refresh token: secret) ----
    def put_upstream(self, shash: str, grant: Mapping[str, Any], ttl: int) -> None:
        with self.errors():
            self.r.set(self._sk("upstream", shash), json.dumps(dict(grant)), ex=max(1, int(ttl)))
            self.r.delete(self._legacy("upstream", shash))  # a rotated refresh token replaces the old one

    def get_upstream(self, shash: str) -> dict[str, Any] | None:
        return self._get_beside("upstream", shash)

    def delete_upstream(self, shash: str) -> None:
        with self.errors():
            self.r.delete(self._sk("upstream", shash))
            self.r.delete(self._legacy("upstream", shash))

    def try_lock(self, name: str, ttl: int) -> bool:
        """A best-effort lock shared by every instance (one re-check with the IdP at a time)."""
        with self.errors():
            return bool(self.r.set(self._k("lock", name), b"1", ex=max(1, int(ttl)), nx=True))

    def unlock(self, name: str) -> None:
        self._delete("lock", name)

    # -- CLI tokens, filed under the session that approved them ---------------------------------
    def add_cli_token(self, thash: str, token: CliToken, ttl: int) -> None:
        self._put_json("clitoken", thash, token.to_json(), ttl)
        with self.errors():
            key = self._sk("session-tokens", token.session)
            pipe = self.r.pipeline(transaction=True)
            pipe.sadd(key, thash)
            pipe.expire(key, max(1, int(ttl)))
            pipe.execute()

    def get_cli_token(self, thash: str) -> CliToken | None:
        """The token ``thash``; None if unknown, expired, or not bound to a session (never trusted)."""
        doc = self._get_json("clitoken", thash)
        try:
            return None if doc is None else CliToken.from_json(doc)
        except RecordError:
            return None

    def delete_cli_token(self, thash: str) -> None:
        self._delete("clitoken", thash)

    def session_tokens(self, shash: str) -> list[str]:
        with self.errors():
            pipe = self.r.pipeline(transaction=False)  # two slots: one round trip per node
            pipe.smembers(self._sk("session-tokens", shash))
            pipe.smembers(self._legacy("session-tokens", shash))
            tagged, legacy = pipe.execute()
        return sorted({_text(m) for m in tagged | legacy})

    def unlink_cli_token(self, shash: str, thash: str) -> None:
        with self.errors():
            pipe = self.r.pipeline(transaction=False)
            pipe.srem(self._sk("session-tokens", shash), thash)
            pipe.srem(self._legacy("session-tokens", shash), thash)
            pipe.execute()

    def pop_session_tokens(self, shash: str) -> list[str]:
        """Every token the session approved, and the set deleted in the same step (MULTI: a token
        added meanwhile is either returned or comes after the delete, never lost in between)."""
        members: set[str] = set()
        with self.errors():
            for key in (self._sk("session-tokens", shash), self._legacy("session-tokens", shash)):
                pipe = self.r.pipeline(transaction=True)
                pipe.smembers(key)
                pipe.delete(key)
                members |= {_text(m) for m in pipe.execute()[0]}
        return sorted(members)

    # -- device codes ---------------------------------------------------------------------------
    def put_device(self, dhash: str, code: DeviceCode, ttl: int) -> None:
        self._put_json("device", dhash, code.to_json(), ttl)

    def get_device(self, dhash: str) -> DeviceCode | None:
        doc = self._get_json("device", dhash)
        return None if doc is None else DeviceCode.from_json(doc)

    def take_device(self, dhash: str) -> DeviceCode | None:
        doc = self._take_json("device", dhash)
        return None if doc is None else DeviceCode.from_json(doc)

    def delete_device(self, dhash: str) -> None:
        self._delete("device", dhash)

    def put_user_code(self, user_code: str, dhash: str, ttl: int) -> None:
        self._put_json("usercode", user_code, {"device": dhash}, ttl)

    def get_user_code(self, user_code: str) -> str | None:
        doc = self._get_json("usercode", user_code)
        return None if doc is None else str(doc["device"])

    def take_user_code(self, user_code: str) -> str | None:
        doc = self._take_json("usercode", user_code)
        return None if doc is None else str(doc["device"])

    # -- IAM Identity Center protocol -------------------------------------------------------------
    def put_sso_client(self, client: SsoClient, ttl: int) -> None:
        self._put_json("ssoclient", client.client_id, client.to_json(), ttl)

    def get_sso_client(self, client_id: str) -> SsoClient | None:
        doc = self._get_json("ssoclient", client_id)
        try:
            return None if doc is None else SsoClient.from_json(doc)
        except RecordError:
            return None

    def put_auth_code(self, chash: str, code: AuthCode, ttl: int) -> None:
        self._put_json("authcode", chash, code.to_json(), ttl)

    def take_auth_code(self, chash: str) -> AuthCode | None:
        doc = self._take_json("authcode", chash)
        try:
            return None if doc is None else AuthCode.from_json(doc)
        except RecordError:
            return None

    # -- credential cache (sealed by the caller; the key names are the AES-GCM associated data) ----
    # Each user's entries and index share the hash tag ``{<user>}``: one slot, so a put (entry + index)
    # is one MULTI and a sign-out one DEL, on a Cluster too.
    def _ck(self, user: str, entry: str) -> str:
        return f"{self.prefix}creds:{{{user}}}:{entry}"

    def put_view(self, ident: str, sealed: bytes, ttl: int) -> None:
        with self.errors():
            self.r.set(f"{self.prefix}credview:{ident}", sealed, ex=max(1, int(ttl)))

    def get_view(self, ident: str) -> bytes | None:
        with self.errors():
            raw = self.r.get(f"{self.prefix}credview:{ident}")
        return raw if isinstance(raw, bytes) and raw else None

    def creds_get(self, user: str, entry: str) -> bytes | None:
        with self.errors():
            raw = self.r.get(self._ck(user, entry))
        return raw if isinstance(raw, bytes) and raw else None

    def creds_put(self, user: str, entry: str, blob: bytes, ttl: int) -> None:
        key, index = self._ck(user, entry), f"{self.prefix}creds-index:{{{user}}}"
        with self.errors():
            pipe = self.r.pipeline(transaction=True)
            pipe.set(key, blob, ex=max(1, int(ttl)))
            pipe.sadd(index, key)
            pipe.expire(index, 43200 + 3600)
            pipe.execute()

    def creds_forget(self, user: str) -> int:
        """Delete every cached credential of ``user``; returns how many entries were indexed. The index
        is read and deleted in one MULTI, then its entries in one DEL (same slot): an entry cached
        meanwhile (``creds_put`` is one MULTI too) is either deleted here or indexed anew, never left
        unindexed. Entries an earlier version wrote (``creds-index:<user>``, untagged) go too."""
        count = 0
        with self.errors():
            for index in (f"{self.prefix}creds-index:{{{user}}}", self._k("creds-index", user)):
                pipe = self.r.pipeline(transaction=True)
                pipe.smembers(index)
                pipe.delete(index)
                keys = list(pipe.execute()[0])
                if keys:
                    self.r.delete(*keys)  # tagged: one slot; legacy keys: redis-py splits them by slot
                count += len(keys)
        return count

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
            raw = fields.get(b"r", fields.get("r", b""))
            out.append((_text(rid), _text(raw)))
        return out
