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
    ssoclient:<client id>, ssoclients:{index}:…, authcode:<code hash>   IAM Identity Center (redis_sso.py)
    replay:<key>, rl:<bucket>:<window start> (the exchange's: rl:{exchange}:…), lock:<name>, recent:<user>, fav:<user>
    replay:<kind>:<id hash>      a single-use token id (OnceStore.first_use: bridge/storage/once.py)
    creds:{<user>}:<entry>, creds-index:{<user>}   sealed credential-cache blobs and the user's entries
    accessrequest:<id>           AccessRequest JSON (changed only by compare-and-set on its status)
    accessrequests:<account hash>, accessrequests:all   sets of request ids (never shortened)
    <stream>                     the audit stream (XADD, approximate MAXLEN)
    signin:<connector id>        SignInNote JSON: what the last sign-ins said about the IdP (check-config --probe)
    scim:<kind>:<id>, scim-ids:<kind>, scim-name:<kind>:<name hash>   SCIM users and groups (scim.py)

Keys written by earlier versions (no hash tags) are still read and moved, until 0.2.0: bridge/storage/redis_legacy.py
(``LegacyReads``, every such read); ``bridge storage migrate`` moves them all at once (redis_migrate.py).
Sessions, and a request's reads in one round trip (``read_ahead``): bridge/storage/redis_sessions.py.

Every Redis failure becomes ``StoreUnavailable`` (a 503 for the user), never a 500, and is counted
through ``on_error`` (the app's metrics). Any instance can serve any step: nothing is kept in a
process between requests. Topologies (``redis_client``, bridge/storage/redis_client.py): one server
(``redis://``, ``rediss://`` for TLS), Sentinel, Cluster.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import redis

from bridge.config import RedisSettings
from bridge.storage.interface import hash_id
from bridge.storage.once import RedisFirstUse
from bridge.storage.records import (
    AccessRequest,
    CliToken,
    DeviceCode,
    PendingLogin,
    RecordError,
    SignInNote,
)
from bridge.storage.redis_client import AnyRedis as AnyRedis  # re-exported
from bridge.storage.redis_client import as_text
from bridge.storage.redis_client import redis_client as redis_client  # re-exported (bridge.web.services)
from bridge.storage.redis_scim import RedisScim
from bridge.storage.redis_sessions import SessionKeys
from bridge.storage.redis_sso import SsoKeys


class RedisStore(SessionKeys, SsoKeys, RedisScim, RedisFirstUse):
    """The bridge's state in one Redis (or Sentinel / Cluster), under ``prefix``."""

    @classmethod
    def from_url(cls, url: str, prefix: str, socket_timeout: float = 2.0) -> RedisStore:
        return cls(redis_client(RedisSettings(url=url, key_prefix=prefix, socket_timeout=socket_timeout)), prefix)

    hash_id = staticmethod(hash_id)
    session_hash = staticmethod(hash_id)  # everything of a session is keyed by the hash of its cookie

    def ping(self) -> bool:
        try:
            return bool(self.r.ping())
        except redis.RedisError as e:
            if self.on_error:
                self.on_error(e)
            return False

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
        key, wait = self._rl(bucket, window)
        with self.errors():
            pipe = self.r.pipeline(transaction=False)
            pipe.incr(key)
            pipe.expire(key, window + 5)
            count = int(pipe.execute()[0])
        return wait(count, limit)

    def hits(self, buckets: Sequence[tuple[str, int]], window: int = 60) -> list[int]:
        """``hit`` for each (bucket, limit) in order, each charged only while every one before it is within its
        limit (one EVAL; a bucket not charged answers 0). On a Cluster the buckets share a hash tag."""
        return self.hits_reading(buckets, None, window)[0]

    # In order, stopping after the first bucket over its limit: a user over their budget does not spend the
    # app's (one stranger's token cannot lock every user out). INCRBY, not INCR: the ACL list's command. The
    # window's first count sets its expiry (the script is atomic: no count can land between the two).
    _HITS = ("local out = {} for i, key in ipairs(KEYS) do "
             "local n = redis.call('INCRBY', key, 1) if n == 1 then redis.call('EXPIRE', key, ARGV[1]) end "
             "out[i] = n if n > tonumber(ARGV[i + 1]) then return out end end return out")
    # The same, then the last key's GET ('' when absent: a nil would end the reply's array).
    _HITS_READING = ("local out, last = {}, #KEYS - 1 for i = 1, last do "
                     "local n = redis.call('INCRBY', KEYS[i], 1) "
                     "if n == 1 then redis.call('EXPIRE', KEYS[i], ARGV[1]) end out[i] = n "
                     "if n > tonumber(ARGV[i + 1]) then break end end "
                     "return {out, redis.call('GET', KEYS[#KEYS]) or ''}")

    def hits_reading(self, buckets: Sequence[tuple[str, int]], creds: tuple[str, str] | None,
                     window: int = 60) -> tuple[list[int], bytes | None]:
        """``hits`` and the credential-cache entry ``creds`` (None: none), in one pipeline."""
        keyed = [(*self._rl(bucket, window), limit) for bucket, limit in buckets]
        if not keyed and creds is None:
            return [], None
        with self.errors():
            if keyed and creds is not None and isinstance(self.r, redis.Redis):  # one server: one EVAL, less CPU
                got = list(self._eval(self._HITS_READING, len(keyed) + 1, *(k for k, _, _ in keyed),
                                      self._ck(*creds), window + 5, *(n for _, _, n in keyed)))
                return _waits(keyed, got[0]), got[1] or None
            pipe = self.r.pipeline(transaction=False)
            if keyed:
                # as a command: a Cluster pipeline has no eval() of its own, but routes EVAL by its keys' slot
                pipe.execute_command("EVAL", self._HITS, len(keyed), *(k for k, _, _ in keyed), window + 5,
                                     *(n for _, _, n in keyed))
            if creds is not None:
                pipe.get(self._ck(*creds))
            got = pipe.execute()
        blob = got[-1] if creds is not None else None
        return _waits(keyed, got[0] if keyed else []), blob if isinstance(blob, bytes) and blob else None

    # -- replay cache ---------------------------------------------------------------------
    def remember_once(self, key: str, ttl: int) -> bool:
        """True the first time ``key`` is seen within ``ttl`` seconds, False on a replay (any instance)."""
        with self.errors():
            return bool(self.r.set(self._k("replay", key), b"1", ex=max(1, int(ttl)), nx=True))

    def seen(self, key: str) -> bool:
        """Whether ``remember_once`` has seen ``key`` within its ttl (looked at, not remembered)."""
        with self.errors():
            return bool(self.r.exists(self._k("replay", key)))

    # -- upstream artifacts for aws_passthrough (kept apart from the session, short TTL) ----
    def put_passthrough(self, sid: str, artifact: Mapping[str, str], ttl: int) -> None:
        with self.errors():
            self.r.set(self._sk("passthrough", hash_id(sid)), json.dumps(dict(artifact)), ex=max(1, int(ttl)))

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
        return [as_text(x) for x in recent], {as_text(x) for x in favs}

    def toggle_favourite(self, user: str, item: str, *, ttl: int = 365 * 86400) -> bool:
        """Add or remove ``item``; True when it is a favourite now."""
        with self.errors():
            if self.r.srem(self._k("fav", user), item):
                return False
        self._add_to_set("fav", user, item, ttl)
        return True

    # -- what sign-ins said about each IdP (bridge check-config --probe) -------------------
    def note_sign_in(self, connector_id: str, warnings: list[str], *, ttl: int = 30 * 86400) -> None:
        note = SignInNote.after(self.sign_in_note(connector_id), int(self.clock()), warnings)
        self._put_json("signin", connector_id, note.to_json(), ttl)  # a race loses one note: only a diagnostic

    def sign_in_note(self, connector_id: str) -> SignInNote | None:
        return self._record(SignInNote.from_json, self._get_json("signin", connector_id))

    # -- who has which sessions (offboarding: ``bridge sessions revoke --user``) -------------
    def _ukey(self, handle: str) -> str:
        return self._k("usersessions", hash_id(handle))

    def index_session(self, handles: list[str], shash: str, ttl: int) -> None:
        """Remember that ``shash`` belongs to the user known by each of ``handles`` (e-mail, subject)."""
        with self.errors():
            for handle in handles:
                self._sadd_never_shorten(self._ukey(handle), shash, ttl)

    def user_sessions(self, handle: str) -> list[str]:
        """The hashes of the live sessions of ``handle``; ended ones are dropped from the index."""
        key = self._ukey(handle)
        with self.errors():
            members = sorted(as_text(m) for m in self.r.smembers(key))
            live = []
            for h in members:
                if self.r.exists(self._shkey(h), *self._old("session", h)):
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
            self._drop_old(shash, "upstream")  # a rotated refresh token replaces the old one

    def get_upstream(self, shash: str) -> dict[str, Any] | None:
        return self._get_beside("upstream", shash)

    def delete_upstream(self, shash: str) -> None:
        with self.errors():
            self.r.delete(self._sk("upstream", shash))
            self._drop_old(shash, "upstream")

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
            # Never shortened: a 1 h token filed after a 12 h one must not end the index with it (sign-out,
            # offboarding, a reused refresh token's sweep and *Your sign-ins* find the session's tokens here).
            self._sadd_never_shorten(self._sk("session-tokens", token.session), thash, ttl)

    def get_cli_token(self, thash: str) -> CliToken | None:
        """The token ``thash``; None if unknown, expired, or not bound to a session (never trusted)."""
        return self._record(CliToken.from_json, self._get_json("clitoken", thash))

    def delete_cli_token(self, thash: str) -> None:
        self._delete("clitoken", thash)

    def session_tokens(self, shash: str) -> list[str]:
        with self.errors():
            pipe = self.r.pipeline(transaction=False)  # with an earlier version's: two slots, one round trip per node
            for key in (self._sk("session-tokens", shash), *self._old("session-tokens", shash)):
                pipe.smembers(key)
            found = pipe.execute()
        return sorted({as_text(m) for members in found for m in members})

    def unlink_cli_token(self, shash: str, thash: str) -> None:
        with self.errors():
            pipe = self.r.pipeline(transaction=False)
            for key in (self._sk("session-tokens", shash), *self._old("session-tokens", shash)):
                pipe.srem(key, thash)
            pipe.execute()

    def pop_session_tokens(self, shash: str) -> list[str]:
        """Every token the session approved, and the set deleted in the same step (MULTI: a token
        added meanwhile is either returned or comes after the delete, never lost in between)."""
        members: set[str] = set()
        with self.errors():
            for key in (self._sk("session-tokens", shash), *self._old("session-tokens", shash)):
                pipe = self.r.pipeline(transaction=True)
                pipe.smembers(key)
                pipe.delete(key)
                members |= {as_text(m) for m in pipe.execute()[0]}
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

    # -- access requests ------------------------------------------------------------------------
    def _index_request(self, req: AccessRequest, ttl: int) -> None:
        """File ``req`` under its account and under ``all``; an index is never shortened."""
        for index in (self._k("accessrequests", hash_id(req.account)), self._k("accessrequests", "all")):
            self._sadd_never_shorten(index, req.id, ttl)

    def put_access_request(self, req: AccessRequest, ttl: int) -> bool:
        """Create ``req`` (never overwrites one with the same id); False if the id exists."""
        if not self._put_json("accessrequest", req.id, req.to_json(), ttl, nx=True):
            return False
        with self.errors():
            self._index_request(req, ttl)
        return True

    def get_access_request(self, request_id: str) -> AccessRequest | None:
        return self._record(AccessRequest.from_json, self._get_json("accessrequest", request_id))

    # Compare-and-set in one server-side step: a Lua script on the one key (EVAL works on a Cluster,
    # where WATCH does not), so two approvers can never both move a request out of "pending".
    _CAS = ("local raw = redis.call('GET', KEYS[1]) "
            "if not raw or cjson.decode(raw)['status'] ~= ARGV[1] then return 0 end "
            "redis.call('SET', KEYS[1], ARGV[2], 'EX', ARGV[3]) return 1")

    def replace_access_request(self, req: AccessRequest, *, expect: str, ttl: int) -> bool:
        """Rewrite ``req`` only while the stored one's status is ``expect`` (one EVAL on one key)."""
        key = self._k("accessrequest", req.id)
        with self.errors():
            done = self.r.eval(self._CAS, 1, key, expect, json.dumps(req.to_json(), separators=(",", ":")),
                               max(1, int(ttl)))
            if not done:
                return False
            self._index_request(req, ttl)
        return True

    def access_requests(self, account: str | None = None) -> list[AccessRequest]:
        """The live requests of ``account`` (an exact account handle), or all; ended ids leave the index."""
        index = self._k("accessrequests", "all" if account is None else hash_id(account))
        out = []
        with self.errors():
            for rid in sorted(as_text(m) for m in self.r.smembers(index)):
                raw = self.r.get(self._k("accessrequest", rid))
                if raw is None:
                    self.r.srem(index, rid)
                    continue
                try:
                    out.append(AccessRequest.from_json(json.loads(raw)))
                except RecordError:
                    continue
        return sorted(out, key=lambda r: (r.created_at, r.id))

    # -- credential cache (sealed by the caller; the key names are the AES-GCM associated data) ----
    # Each user's entries and index share the hash tag ``{<user>}``: one slot, so a put (entry + index)
    # is one MULTI and a sign-out one DEL, on a Cluster too.
    def put_view(self, ident: str, sealed: bytes, ttl: int) -> None:
        with self.errors():
            self.r.set(self._k("credview", ident), sealed, ex=max(1, int(ttl)))

    def get_view(self, ident: str) -> bytes | None:
        with self.errors():
            raw = self.r.get(self._k("credview", ident))
        return raw if isinstance(raw, bytes) and raw else None

    def creds_get(self, user: str, entry: str) -> bytes | None:
        with self.errors():
            raw = self.r.get(self._ck(user, entry))
        return raw if isinstance(raw, bytes) and raw else None

    def creds_put(self, user: str, entry: str, blob: bytes, ttl: int) -> None:
        key, index = self._ck(user, entry), self.keys.tagged("creds-index", user)
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
            for index in (self.keys.tagged("creds-index", user), *self._old_creds_index(user)):
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
            self.r.xadd(self.keys.stream(stream), {"r": line}, maxlen=maxlen, approximate=True)

    def audit_read(self, stream: str, *, count: int, after: str | None = None,
                   block_ms: int | None = None) -> list[tuple[str, str]]:
        """The last ``count`` records (oldest first), or with ``after`` the ones after that id."""
        key = self.keys.stream(stream)
        with self.errors():
            if after is None:
                rows = list(reversed(self.r.xrevrange(key, count=count)))
            else:
                got = self.r.xread({key: after}, count=count, block=block_ms)
                rows = got[0][1] if got else []
        out = []
        for rid, fields in rows:
            raw = fields.get(b"r", fields.get("r", b""))
            out.append((as_text(rid), as_text(raw)))
        return out


def _waits(keyed: Sequence[tuple[str, Callable[[int, int], int], int]], got: Sequence[Any]) -> list[int]:
    """Per (bucket, wait, limit), the seconds to wait (0: within it, or not charged: past the first over)."""
    counts = [int(c) for c in got]
    return [wait(counts[i], limit) if i < len(counts) and counts[i] else 0 for i, (_, wait, limit) in enumerate(keyed)]
