"""``RedisStore``'s sessions: the record under ``session:{<sid hash>}`` (what hangs off it shares the
hash tag), and ``read_ahead``: a request's session read, sliding expiry, rate-limit count,
credential-cache entry, CLI token and portal preferences in one round trip.

``read_ahead`` is one round trip. Its keys are in up to four slots (the session's ``{<sid hash>}``, the
user's ``{<user>}`` of the credential cache, the token's and the bucket's): one server or Sentinel runs
its commands as one EVAL (a script may use keys of any slot there), so the worker packs and parses one
command, not seven; on a Cluster it is one non-transactional pipeline — redis-py's Cluster pipeline
writes to every node that holds one of them before it reads any answer, one round-trip time too.
A session cannot share a slot with its user's keys: a request names its session (the cookie) before
anyone knows whose it is. What is read with the session is what the caller asked for the session
as it last saw it; a session that ended is answered with nothing else, and its count is given back
(one DECR, on that path only).
"""

from __future__ import annotations

import json
import secrets
from typing import Any

import redis

from bridge.storage.interface import Ahead, AheadRead, hash_id
from bridge.storage.records import CliToken, RecordError, SessionRecord
from bridge.storage.redis_client import as_text
from bridge.storage.redis_legacy import BESIDE_KINDS, LegacyReads

# The read-ahead's commands on one server, run by Redis in one step: the worker packs and parses one command
# instead of seven, the bulk of a cached request's Redis cost in its CPU. Command i runs on KEYS[i]; ARGV[1] is
# "NAME arg ...;NAME ..." (one string: each argument the client packs costs it as much as a command). Replies as
# a pipeline's (an integer for EXPIRE, a list for SMEMBERS): the caller reads both alike. Only read-ahead's own
# commands (names and numbers, never user input) ever come here.
_RUN = """
local out, i = {}, 0
for spec in string.gmatch(ARGV[1], '[^;]+') do
  i = i + 1
  local words = {}
  for w in string.gmatch(spec, '%S+') do words[#words + 1] = w end
  out[i] = redis.call(words[1], KEYS[i], unpack(words, 2))
end
return out
"""
PARSED_KEPT = 4096  # session documents kept parsed (by their exact JSON): a hot session is not parsed per request


class SessionKeys(LegacyReads):
    """Sessions in Redis, and a request's reads with its session."""

    def _session(self, raw: Any) -> SessionRecord:
        """The record of a stored session document, parsed once per document (records are immutable)."""
        key = raw if isinstance(raw, bytes) else str(raw).encode()
        memo: dict[bytes, SessionRecord] = self.__dict__.setdefault("_parsed", {})
        record = memo.get(key)
        if record is None:
            record = SessionRecord.from_json(json.loads(key))
            if len(memo) >= PARSED_KEPT:
                memo.clear()
            memo[key] = record
        return record

    def _token(self, raw: Any) -> CliToken | None:
        """The CLI token of a stored document (None: none, or not a token's shape), parsed once per document."""
        if raw is None:
            return None
        key = raw if isinstance(raw, bytes) else str(raw).encode()
        memo: dict[bytes, CliToken] = self.__dict__.setdefault("_parsed_tokens", {})
        token = memo.get(key)
        if token is None:
            token = self._record(CliToken.from_json, _doc(key))
            if token is None:
                return None
            if len(memo) >= PARSED_KEPT:
                memo.clear()
            memo[key] = token
        return token

    # Everything kept for a session (the record, its passthrough artifact, its upstream grant, its
    # CLI tokens) is keyed by the SHA-256 of the cookie value: ``session_hash(sid)``. A CLI token
    # or an admin holds only that hash, never the cookie.
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
            record = self._session(raw)
            remaining = record.expires_at - int(self.clock())
            if remaining <= 0:
                self.r.delete(key)
                return None
            self.r.expire(key, min(idle, remaining))
        return record

    def read_ahead(self, ahead: Ahead) -> AheadRead:
        """``load_session_hash`` and what ``ahead`` asks for, in one round trip (module docstring)."""
        left = ahead.expires_at - int(self.clock())
        if left <= 0:  # its end has come: the plain load ends it
            return AheadRead(self.load_session_hash(ahead.shash, idle=ahead.idle))
        key = self._shkey(ahead.shash)
        rl, wait = self._rl(ahead.bucket or "", ahead.window)
        with self.errors():
            got = self._ask(ahead, key, min(ahead.idle, left), rl)
            raw, token, count = got[0], None, None
            if ahead.token is not None:
                token = self._token(got[2])
                if token is None and raw is not None and int(got[1]) > 0:
                    self.r.expire(key, -(-int(got[1]) // 1000))  # a revoked token keeps no session alive
            rest = got[4:] if ahead.token is not None else got[2:]
            if ahead.bucket is not None:
                count, rest = int(rest[0]), rest[2:]
            if raw is None or (ahead.token is not None and token is None):
                if count is not None:
                    self.r.incrby(rl, -1)  # refused: not counted, as when nothing is read ahead
                # none, or a session an earlier version wrote (untagged: moved now)
                return AheadRead(self._session(raw) if raw is not None
                                 else self.load_session_hash(ahead.shash, idle=ahead.idle), token)
        session: SessionRecord | None = self._session(raw)
        if session is not None and session.expires_at != ahead.expires_at:  # not as last seen: its own expiry
            session = self.load_session_hash(ahead.shash, idle=ahead.idle)
        if session is None:
            return AheadRead(None, token)
        return AheadRead(session, token, None if count is None else wait(count, ahead.limit), **_rest(ahead, rest),
                         complete=True)

    def _ask(self, ahead: Ahead, key: str, ttl: int, rl: str) -> list[Any]:
        """The one round trip: session (and token) first, then the count, the entry, the preferences.
        Each command as ("NAME arg ...", key): the EVAL's spec as it is, split for a pipeline."""
        cmds: list[tuple[str, str]] = [("GET", key)]
        if ahead.token is not None:
            cmds += [("PTTL", key), ("GET", self._k("clitoken", ahead.token))]  # PTTL: to put back if it is gone
        cmds.append((f"EXPIRE {ttl}", key))  # nothing if it ended: EXPIRE never creates
        if ahead.bucket is not None:
            cmds += [("INCRBY 1", rl), (f"EXPIRE {ahead.window + 5}", rl)]
        if ahead.creds is not None:
            cmds.append(("GET", self._ck(*ahead.creds)))
        if ahead.prefs is not None:
            cmds += [("LRANGE 0 -1", self._k("recent", ahead.prefs)), ("SMEMBERS", self._k("fav", ahead.prefs))]
        if ahead.recent is not None:
            cmds += [("LRANGE 0 0", self._k("recent", ahead.recent)), ("PTTL", self._k("recent", ahead.recent))]
        if isinstance(self.r, redis.Redis):  # one server (or Sentinel's master): one EVAL, a fraction of the CPU
            return list(self._eval(_RUN, len(cmds), *(k for _, k in cmds), ";".join(c for c, _ in cmds)))
        pipe = self.r.pipeline(transaction=False)  # a Cluster: the keys are in several slots
        for cmd, k in cmds:
            name, *args = cmd.split()
            pipe.execute_command(name, k, *args)
        return list(pipe.execute())

    def get_session(self, shash: str) -> SessionRecord | None:
        """The session ``shash`` as stored (no timer touched; may be past ``expires_at``)."""
        with self.errors():
            raw = self._get_session_raw(shash)
        try:
            return None if raw is None else self._session(raw)
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

    def delete_session_hash(self, shash: str) -> None:
        """Delete a session and everything kept beside it: one DEL (one slot: the hash tag), and one
        for what an earlier version wrote without the tag."""
        with self.errors():
            self.r.delete(*[self._sk(kind, shash) for kind in BESIDE_KINDS])
            self._drop_old(shash, *BESIDE_KINDS)


def _rest(ahead: Ahead, rest: list[Any]) -> dict[str, Any]:
    """The answers after the count: the cache entry, the preferences, the newest recent role."""
    out: dict[str, Any] = {}
    if ahead.creds is not None:
        out["blob"], rest = (rest[0] if isinstance(rest[0], bytes) and rest[0] else None), rest[1:]
    if ahead.prefs is not None:
        out["prefs"], rest = ([as_text(x) for x in rest[0]], {as_text(x) for x in rest[1]}), rest[2:]
    if ahead.recent is not None:
        out["recent"] = (as_text(rest[0][0]) if rest[0] else None, max(0, int(rest[1]) // 1000))
    return out


def _doc(raw: Any) -> dict[str, Any] | None:
    return None if raw is None else dict(json.loads(raw))
