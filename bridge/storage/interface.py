"""The store's seam: small protocols per resource (bridge/storage/resources.py: ``PendingStore``,
``SessionStore``, ``CliTokenStore``, … and ``ScimStore``), each service declaring only those it uses, and
``Store``, the façade that is all of them, implemented by ``RedisStore`` (production,
``bridge.storage.redis``) and ``MemoryStore`` (unit tests, ``bridge.storage.memory``). Both pass the same
conformance suite (tests/unit and tests/integration ``test_storage_conformance.py``).

Contract (what every implementation keeps; each resource's own is on its protocol):
- Records are typed (``bridge.storage.records``) and kept as JSON, never pickle. Secrets (session
  ids, device codes, CLI tokens) are kept only as their SHA-256 (``hash_id``): whoever reads the
  store cannot use what they read.
- Every entry expires after its TTL, measured by the store's ``clock``; rate-limit windows are
  aligned on that clock too.
- ``read_ahead`` (``ReadAheadStore``) is ``load_session_hash`` and, only while the session lives (and the
  CLI token asked for is stored), ``get_cli_token``, ``hit``, ``creds_get`` and ``preferences``, in one
  round trip: a session that ended is never answered with what hangs off it, and its bucket is not counted.
- A backend failure is raised as ``bridge.domain.errors.StoreUnavailable`` (a 503 for the user), never as
  the backend's own exception.
Raw (untyped) payloads only where the shape belongs to someone else: the IdP's upstream grant
(connector-owned), the passthrough artifact, sealed credential-cache blobs and audit lines.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Protocol

from bridge.storage.records import CliToken, SessionRecord
from bridge.storage.resources import (
    AuditStore,
    AuthCodeStore,
    BesideStore,
    CliTokenStore,
    CredsStore,
    DeviceStore,
    HealthStore,
    LockStore,
    NoteStore,
    OnceStore,
    PendingStore,
    PreferenceStore,
    RateLimitStore,
    RequestStore,
    SessionStore,
    SsoClientStore,
    ViewStore,
)
from bridge.storage.scim import ScimStore


def hash_id(secret: str) -> str:
    """Secrets (device codes, tokens, session ids) are kept only as their SHA-256."""
    return hashlib.sha256(secret.encode()).hexdigest()


@dataclass(frozen=True)
class Ahead:
    """What one request reads with its session (``Store.read_ahead``), named from the session as last
    seen: the keys of a request depend on who it is, and a session's end never changes."""

    shash: str
    idle: int
    expires_at: int
    token: str | None = None  # a CLI token hash, read too
    bucket: str | None = None  # a rate-limit bucket, counted as ``hit(bucket, limit, window)``
    limit: int = 0
    window: int = 60
    creds: tuple[str, str] | None = None  # (user, entry) of the credential cache
    prefs: str | None = None  # a user's portal preferences
    recent: str | None = None  # a user's most recent role, and how long its list lives


@dataclass(frozen=True)
class AheadRead:
    """What ``read_ahead`` found: the session (None: ended), and only while it lives, the rest."""

    session: SessionRecord | None
    token: CliToken | None = None
    wait: int | None = None  # as ``hit`` answers; None when not counted
    blob: bytes | None = None
    prefs: tuple[list[str], set[str]] | None = None
    recent: tuple[str | None, int] | None = None  # (the newest, seconds left; 0: not known)
    complete: bool = False  # everything asked for was read (and the bucket counted); else only session, token


class ReadAheadStore(Protocol):
    """A request's reads with its session in one round trip (the contract: the module docstring)."""

    def read_ahead(self, ahead: Ahead) -> AheadRead: ...


class Store(HealthStore, PendingStore, SessionStore, ReadAheadStore, BesideStore, LockStore, CliTokenStore,
            DeviceStore, SsoClientStore, AuthCodeStore, RequestStore, OnceStore, RateLimitStore, NoteStore,
            PreferenceStore, ViewStore, CredsStore, AuditStore, ScimStore, Protocol):
    """The façade: every resource's protocol, on one backend under one key ``prefix`` and one ``clock``
    (what the composition root builds and hands out narrowed; the conformance suite tests it whole)."""

    prefix: str
    clock: Callable[[], float]


def read_in_steps(store: Store, ahead: Ahead) -> AheadRead:
    """``read_ahead`` as one call after another (``MemoryStore``; ``RedisStore`` makes it one round trip)."""
    token = None if ahead.token is None else store.get_cli_token(ahead.token)
    if ahead.token is not None and token is None:  # a revoked token keeps no session alive
        return AheadRead(store.get_session(ahead.shash))
    session = store.load_session_hash(ahead.shash, idle=ahead.idle)
    if session is None:
        return AheadRead(None, token)
    wait = None if ahead.bucket is None else store.hit(ahead.bucket, ahead.limit, ahead.window)
    return AheadRead(session, token, wait,
                     None if ahead.creds is None else store.creds_get(*ahead.creds),
                     None if ahead.prefs is None else store.preferences(ahead.prefs),
                     None if ahead.recent is None else (next(iter(store.preferences(ahead.recent)[0]), None), 0),
                     complete=True)


class ReadInSteps:
    """``read_ahead`` and ``hits`` for a store whose every call is in-process (``MemoryStore``)."""

    def read_ahead(self: Store, ahead: Ahead) -> AheadRead:
        return read_in_steps(self, ahead)

    def hits(self: Store, buckets: Sequence[tuple[str, int]], window: int = 60) -> list[int]:
        waits: list[int] = []
        for bucket, limit in buckets:  # in order: none charged after the first over its limit (RedisStore.hits)
            waits.append(self.hit(bucket, limit, window) if not any(waits) else 0)
        return waits

    def hits_reading(self: Store, buckets: Sequence[tuple[str, int]], creds: tuple[str, str] | None,
                     window: int = 60) -> tuple[list[int], bytes | None]:
        return self.hits(buckets, window), None if creds is None else self.creds_get(*creds)
