"""An in-process ``Store`` for fast unit tests: the same contract as ``RedisStore``
(``bridge.storage.interface``), with every TTL measured by the injected ``clock``, so a test moves
time forward instead of sleeping. Records go through their JSON like in Redis, so what a test reads back is
what a real store would give. Thread-safe; not shared between processes (never use it to serve)."""

from __future__ import annotations

import json
import secrets
import threading
import time
from collections.abc import Callable, Mapping
from typing import Any

from bridge.storage.interface import ReadInSteps, hash_id
from bridge.storage.once import MemoryFirstUse
from bridge.storage.records import (
    AccessRequest,
    AuthCode,
    CliToken,
    DeviceCode,
    PendingLogin,
    RecordError,
    SessionRecord,
    SignInNote,
    SsoClient,
)
from bridge.storage.scim import MemoryScim


class MemoryStore(ReadInSteps, MemoryScim, MemoryFirstUse):
    def __init__(self, prefix: str = "bridge:", clock: Callable[[], float] = time.time) -> None:
        self.prefix = prefix
        self.clock = clock
        self._data: dict[str, tuple[Any, float | None]] = {}  # key → (value, expires at by clock)
        self._streams: dict[str, list[tuple[str, str]]] = {}
        self._sso_counts: dict[str | None, dict[str, float]] = {}  # address (None: all) → client id → end
        self._seq = 0
        self._lock = threading.RLock()

    hash_id = staticmethod(hash_id)
    session_hash = staticmethod(hash_id)

    def ping(self) -> bool:
        return True

    # -- primitives (under the lock) ---------------------------------------------------------------
    def _get(self, key: str) -> Any:
        item = self._data.get(key)
        if item is None:
            return None
        value, until = item
        if until is not None and until <= self.clock():
            del self._data[key]
            return None
        return value

    def _set(self, key: str, value: Any, ttl: float | None) -> None:
        self._data[key] = (value, None if ttl is None else self.clock() + max(1, int(ttl)))

    def _expire(self, key: str, ttl: float) -> None:
        if self._get(key) is not None:
            self._data[key] = (self._data[key][0], self.clock() + max(1, int(ttl)))

    def _pop(self, key: str) -> Any:
        value = self._get(key)
        self._data.pop(key, None)
        return value

    def _k(self, kind: str, ident: str) -> str:
        return f"{self.prefix}{kind}:{ident}"

    def _put_json(self, key: str, doc: Mapping[str, Any], ttl: int) -> None:
        self._set(key, json.dumps(dict(doc), separators=(",", ":")), ttl)

    def _json(self, raw: Any) -> dict[str, Any] | None:
        return None if raw is None else dict(json.loads(raw))

    def _sadd(self, key: str, member: str, ttl: int | None) -> None:
        members = self._get(key) or set()
        members.add(member)
        until = self._data[key][1] if key in self._data else None
        if ttl is not None and until is not None and until > self.clock() + ttl:
            ttl = int(until - self.clock())  # never shorten (as the Redis store's index_session)
        self._set(key, members, ttl)

    def _members(self, key: str) -> list[str]:
        with self._lock:
            return sorted(self._get(key) or ())

    def _srem(self, key: str, member: str) -> bool:
        members = self._get(key)
        if not members or member not in members:
            return False
        members.discard(member)
        if not members:
            self._data.pop(key, None)
        return True

    # -- pending logins ----------------------------------------------------------------------------
    def put_pending(self, pending: PendingLogin, ttl: int) -> None:
        with self._lock:
            key = self._k("pending", pending.state)
            if self._get(key) is None:  # nx
                self._put_json(key, pending.to_json(), ttl)

    def take_pending(self, state: str) -> PendingLogin | None:
        with self._lock:
            doc = self._json(self._pop(self._k("pending", state)))
        return None if doc is None else PendingLogin.from_json(doc)

    def has_pending(self, state: str) -> bool:
        with self._lock:
            return self._get(self._k("pending", state)) is not None

    def add_browser_login(self, browser: str, state: str, ttl: int) -> None:
        with self._lock:
            self._sadd(self._k("loginbrowser", browser), state, ttl)

    def browser_logins(self, browser: str) -> list[str]:
        return self._members(self._k("loginbrowser", browser))

    def forget_browser(self, browser: str) -> None:
        with self._lock:
            self._data.pop(self._k("loginbrowser", browser), None)

    # -- sessions ------------------------------------------------------------------------------
    def session_key(self, sid: str) -> str:
        return self._k("session", hash_id(sid))

    def create_session(self, record: SessionRecord, *, idle: int, absolute: int) -> str:
        sid = secrets.token_urlsafe(32)
        now = int(self.clock())
        with self._lock:
            self._put_json(self.session_key(sid), {**record.to_json(), "created_at": now,
                                                   "expires_at": now + absolute}, min(idle, absolute))
        return sid

    def load_session(self, sid: str, *, idle: int) -> SessionRecord | None:
        if not sid or len(sid) > 128:
            return None
        return self.load_session_hash(hash_id(sid), idle=idle)

    def load_session_hash(self, shash: str, *, idle: int) -> SessionRecord | None:
        key = self._k("session", shash)
        with self._lock:
            doc = self._json(self._get(key))
            if doc is None:
                return None
            record = SessionRecord.from_json(doc)
            remaining = record.expires_at - int(self.clock())
            if remaining <= 0:
                self._data.pop(key, None)
                return None
            self._expire(key, min(idle, remaining))
        return record

    def get_session(self, shash: str) -> SessionRecord | None:
        with self._lock:
            doc = self._json(self._get(self._k("session", shash)))
        try:
            return None if doc is None else SessionRecord.from_json(doc)
        except RecordError:
            return None

    def save_session_hash(self, shash: str, record: SessionRecord, *, idle: int) -> bool:
        remaining = record.expires_at - int(self.clock())
        if remaining <= 0:
            return False
        key = self._k("session", shash)
        with self._lock:
            if self._get(key) is None:  # xx: never brings back an ended session
                return False
            self._put_json(key, record.to_json(), min(idle, remaining))
            return True

    def delete_session(self, sid: str) -> None:
        self.delete_session_hash(hash_id(sid))

    def delete_session_hash(self, shash: str) -> None:
        with self._lock:
            for kind in ("session", "passthrough", "creds", "upstream"):
                self._data.pop(self._k(kind, shash), None)

    def index_session(self, handles: list[str], shash: str, ttl: int) -> None:
        with self._lock:
            for handle in handles:
                self._sadd(self._k("usersessions", hash_id(handle)), shash, ttl)

    def user_sessions(self, handle: str) -> list[str]:
        key = self._k("usersessions", hash_id(handle))
        with self._lock:
            live = []
            for h in sorted(self._get(key) or ()):
                if self._get(self._k("session", h)) is not None:
                    live.append(h)
                else:
                    self._srem(key, h)
            return live

    def unindex_session(self, handles: list[str], shash: str) -> None:
        with self._lock:
            for handle in handles:
                self._srem(self._k("usersessions", hash_id(handle)), shash)

    # -- beside a session ---------------------------------------------------------------------------
    def put_passthrough(self, sid: str, artifact: Mapping[str, str], ttl: int) -> None:
        with self._lock:
            self._put_json(self._k("passthrough", hash_id(sid)), artifact, ttl)

    def get_passthrough(self, sid: str) -> dict[str, str] | None:
        with self._lock:
            doc = self._json(self._get(self._k("passthrough", hash_id(sid))))
        return None if doc is None else {str(k): str(v) for k, v in doc.items()}

    def put_upstream(self, shash: str, grant: Mapping[str, Any], ttl: int) -> None:
        with self._lock:
            self._put_json(self._k("upstream", shash), grant, ttl)

    def get_upstream(self, shash: str) -> dict[str, Any] | None:
        with self._lock:
            return self._json(self._get(self._k("upstream", shash)))

    def delete_upstream(self, shash: str) -> None:
        with self._lock:
            self._data.pop(self._k("upstream", shash), None)

    def try_lock(self, name: str, ttl: int) -> bool:
        with self._lock:
            key = self._k("lock", name)
            if self._get(key) is not None:
                return False
            self._set(key, b"1", ttl)
            return True

    def unlock(self, name: str) -> None:
        with self._lock:
            self._data.pop(self._k("lock", name), None)

    # -- CLI tokens -------------------------------------------------------------------------------
    def add_cli_token(self, thash: str, token: CliToken, ttl: int) -> None:
        with self._lock:
            self._put_json(self._k("clitoken", thash), token.to_json(), ttl)
            self._sadd(self._k("session-tokens", token.session), thash, ttl)

    def get_cli_token(self, thash: str) -> CliToken | None:
        with self._lock:
            doc = self._json(self._get(self._k("clitoken", thash)))
        try:
            return None if doc is None else CliToken.from_json(doc)
        except RecordError:
            return None

    def delete_cli_token(self, thash: str) -> None:
        with self._lock:
            self._data.pop(self._k("clitoken", thash), None)

    def session_tokens(self, shash: str) -> list[str]:
        return self._members(self._k("session-tokens", shash))

    def unlink_cli_token(self, shash: str, thash: str) -> None:
        with self._lock:
            self._srem(self._k("session-tokens", shash), thash)

    def pop_session_tokens(self, shash: str) -> list[str]:
        with self._lock:
            return sorted(self._pop(self._k("session-tokens", shash)) or ())

    # -- device codes ---------------------------------------------------------------------------------
    def put_device(self, dhash: str, code: DeviceCode, ttl: int) -> None:
        with self._lock:
            self._put_json(self._k("device", dhash), code.to_json(), ttl)

    def get_device(self, dhash: str) -> DeviceCode | None:
        with self._lock:
            doc = self._json(self._get(self._k("device", dhash)))
        return None if doc is None else DeviceCode.from_json(doc)

    def take_device(self, dhash: str) -> DeviceCode | None:
        with self._lock:
            doc = self._json(self._pop(self._k("device", dhash)))
        return None if doc is None else DeviceCode.from_json(doc)

    def delete_device(self, dhash: str) -> None:
        with self._lock:
            self._data.pop(self._k("device", dhash), None)

    def put_user_code(self, user_code: str, dhash: str, ttl: int) -> None:
        with self._lock:
            self._put_json(self._k("usercode", user_code), {"device": dhash}, ttl)

    def get_user_code(self, user_code: str) -> str | None:
        with self._lock:
            doc = self._json(self._get(self._k("usercode", user_code)))
        return None if doc is None else str(doc["device"])

    def take_user_code(self, user_code: str) -> str | None:
        with self._lock:
            doc = self._json(self._pop(self._k("usercode", user_code)))
        return None if doc is None else str(doc["device"])

    # -- IAM Identity Center protocol -----------------------------------------------------------------
    def _live_clients(self, address: str | None) -> dict[str, float]:
        """client id → its end, of the clients counted for ``address`` (None: all), ended ones dropped."""
        counted = self._sso_counts.setdefault(address, {})
        for cid in [c for c, end in counted.items() if end <= self.clock()]:
            del counted[cid]
        return counted

    def add_sso_client(self, client: SsoClient, ttl: int, *, per_address: int, total: int) -> str | None:
        with self._lock:
            mine, everyone = self._live_clients(client.address), self._live_clients(None)
            if len(mine) >= per_address:
                return "address"
            if len(everyone) >= total:
                return "total"
            mine[client.client_id] = everyone[client.client_id] = self.clock() + max(1, int(ttl))
            self._put_json(self._k("ssoclient", client.client_id), client.to_json(), ttl)
        return None

    def put_sso_client(self, client: SsoClient, ttl: int) -> None:
        with self._lock:
            self._put_json(self._k("ssoclient", client.client_id), client.to_json(), ttl)
            for counted in (self._live_clients(client.address), self._live_clients(None)):
                if client.client_id in counted:
                    counted[client.client_id] = self.clock() + max(1, int(ttl))

    def sso_client_count(self) -> int:
        with self._lock:
            return len(self._live_clients(None))

    def get_sso_client(self, client_id: str) -> SsoClient | None:
        with self._lock:
            doc = self._json(self._get(self._k("ssoclient", client_id)))
        try:
            return None if doc is None else SsoClient.from_json(doc)
        except RecordError:
            return None

    def put_auth_code(self, chash: str, code: AuthCode, ttl: int) -> None:
        with self._lock:
            self._put_json(self._k("authcode", chash), code.to_json(), ttl)

    def take_auth_code(self, chash: str) -> AuthCode | None:
        with self._lock:
            doc = self._json(self._pop(self._k("authcode", chash)))
        try:
            return None if doc is None else AuthCode.from_json(doc)
        except RecordError:
            return None

    # -- access requests ------------------------------------------------------------------------------
    def put_access_request(self, req: AccessRequest, ttl: int) -> bool:
        with self._lock:
            key = self._k("accessrequest", req.id)
            if self._get(key) is not None:
                return False
            self._put_json(key, req.to_json(), ttl)
            for index in (self._k("accessrequests", hash_id(req.account)), self._k("accessrequests", "all")):
                self._sadd(index, req.id, ttl)
            return True

    def get_access_request(self, request_id: str) -> AccessRequest | None:
        with self._lock:
            doc = self._json(self._get(self._k("accessrequest", request_id)))
        try:
            return None if doc is None else AccessRequest.from_json(doc)
        except RecordError:
            return None

    def replace_access_request(self, req: AccessRequest, *, expect: str, ttl: int) -> bool:
        with self._lock:
            key = self._k("accessrequest", req.id)
            doc = self._json(self._get(key))
            if doc is None or doc.get("status") != expect:
                return False
            self._put_json(key, req.to_json(), ttl)
            for index in (self._k("accessrequests", hash_id(req.account)), self._k("accessrequests", "all")):
                self._sadd(index, req.id, ttl)
            return True

    def access_requests(self, account: str | None = None) -> list[AccessRequest]:
        index = self._k("accessrequests", "all" if account is None else hash_id(account))
        out = []
        with self._lock:
            for rid in sorted(self._get(index) or ()):
                req = self.get_access_request(rid)
                if req is None:
                    self._srem(index, rid)
                else:
                    out.append(req)
        return sorted(out, key=lambda r: (r.created_at, r.id))

    # -- replay cache, rate limits --------------------------------------------------------------------
    def remember_once(self, key: str, ttl: int) -> bool:
        with self._lock:
            k = self._k("replay", key)
            if self._get(k) is not None:
                return False
            self._set(k, b"1", ttl)
            return True

    def seen(self, key: str) -> bool:
        with self._lock:
            return self._get(self._k("replay", key)) is not None

    def hit(self, bucket: str, limit: int, window: int = 60) -> int:
        now = int(self.clock())
        start = now - now % window
        key = f"{self.prefix}rl:{bucket}:{start}"
        with self._lock:
            count = int(self._get(key) or 0) + 1
            self._set(key, count, window + 5)
        return 0 if count <= limit else max(1, start + window - now)

    # -- portal preferences -------------------------------------------------------------------------------
    def push_recent(self, user: str, item: str, *, keep: int = 10, ttl: int = 90 * 86400) -> None:
        with self._lock:
            key = self._k("recent", user)
            items = [x for x in (self._get(key) or []) if x != item]
            self._set(key, [item, *items][:keep], ttl)

    def preferences(self, user: str) -> tuple[list[str], set[str]]:
        with self._lock:
            return list(self._get(self._k("recent", user)) or []), set(self._get(self._k("fav", user)) or ())

    def toggle_favourite(self, user: str, item: str, *, ttl: int = 365 * 86400) -> bool:
        with self._lock:
            key = self._k("fav", user)
            if self._srem(key, item):
                return False
            self._sadd(key, item, ttl)
            return True

    # -- what sign-ins said about each IdP --------------------------------------------------------
    def note_sign_in(self, connector_id: str, warnings: list[str], *, ttl: int = 30 * 86400) -> None:
        with self._lock:
            note = SignInNote.after(self.sign_in_note(connector_id), int(self.clock()), warnings)
            self._set(self._k("signin", connector_id), json.dumps(note.to_json()), ttl)

    def sign_in_note(self, connector_id: str) -> SignInNote | None:
        with self._lock:
            doc = self._json(self._get(self._k("signin", connector_id)))
        try:
            return None if doc is None else SignInNote.from_json(doc)
        except RecordError:
            return None

    # -- credential cache ------------------------------------------------------------------------
    def put_view(self, ident: str, sealed: bytes, ttl: int) -> None:
        with self._lock:
            self._set(self._k("credview", ident), bytes(sealed), ttl)

    def get_view(self, ident: str) -> bytes | None:
        with self._lock:
            raw = self._get(self._k("credview", ident))
        return raw if isinstance(raw, bytes) and raw else None

    def creds_get(self, user: str, entry: str) -> bytes | None:
        with self._lock:
            raw = self._get(self._k("creds", f"{user}:{entry}"))
        return raw if isinstance(raw, bytes) and raw else None

    def creds_put(self, user: str, entry: str, blob: bytes, ttl: int) -> None:
        with self._lock:
            key = self._k("creds", f"{user}:{entry}")
            self._set(key, bytes(blob), ttl)
            self._sadd(self._k("creds-index", user), key, 43200 + 3600)

    def creds_forget(self, user: str) -> int:
        with self._lock:
            keys = self._pop(self._k("creds-index", user)) or set()
            for k in keys:
                self._data.pop(k, None)
            return len(keys)

    # -- audit stream --------------------------------------------------------------------------
    def audit_append(self, stream: str, line: str, maxlen: int) -> None:
        with self._lock:
            self._seq += 1
            rows = self._streams.setdefault(stream, [])
            rows.append((f"{int(self.clock() * 1000)}-{self._seq}", line))
            del rows[:max(0, len(rows) - maxlen)]

    def audit_read(self, stream: str, *, count: int, after: str | None = None,
                   block_ms: int | None = None) -> list[tuple[str, str]]:
        """Like Redis: the last ``count`` records oldest first, or with ``after`` those after that id
        (``block_ms`` is not waited: nothing else can append while a test reads)."""
        with self._lock:
            rows = list(self._streams.get(stream, ()))
        if after is None:
            return rows[-count:] if count > 0 else []
        if after == "$":  # Redis: only what is appended from now on
            return []
        return [r for r in rows if _rid(r[0]) > _rid(after)][:count]


def _rid(rid: str) -> tuple[int, int]:
    ms, _, seq = rid.partition("-")
    return int(ms or 0), int(seq or 0)
