"""Server-side credential cache: per user + grant + tags + duration, AES-256-GCM at rest in the store.

Credentials are reused until ``refresh_window`` seconds (botocore's 15 minutes) before they
expire, so repeated requests make no STS call. The entry's key (namespaced, hashed: the Redis key
``<prefix>creds:<entry>``) is the AES-GCM associated data, so a ciphertext moved to another entry
does not decrypt. The store only ever sees sealed blobs (``Store.creds_*``, bridge/keys/sealing.py).
Keys rotate: the newest key encrypts, every key decrypts (a value under a removed key is a miss).
Sign-out deletes a user's entries through a per-user index.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Protocol

from bridge.domain.identity import Credentials, Grant, Identity
from bridge.domain.memo import ByObject
from bridge.keys.sealing import Sealer
from bridge.storage import CredsStore

OPENED_KEPT = 1024  # entries kept opened (their credentials) per process: the hot ones


@dataclass(frozen=True)
class Sealed:
    """A cache entry as read ahead with its session (``Store.read_ahead``): answers only for that entry."""

    key: tuple[str, str]  # (user, entry)
    blob: bytes | None


class Cache(Protocol):
    """What the issuer and the sessions ask of the credential cache (``NoCache`` when it is off)."""

    def get(self, identity: Identity, grant: Grant, duration: int, *,
            artifact: str | None = None, sealed: Sealed | None = None) -> Credentials | None: ...

    def put(self, identity: Identity, grant: Grant, duration: int, creds: Credentials, *,
            artifact: str | None = None) -> None: ...

    def forget_user(self, identity: Identity) -> int: ...

    def key(self, identity: Identity, grant: Grant, duration: int,
            artifact: str | None = None) -> tuple[str, str] | None:
        """Where the entry lives (user, entry), to read it ahead with the session; None: nothing to read."""


class NoCache:
    """The credential cache switched off (``credential_cache.enabled: false``, or no cache key): keeps nothing."""

    def get(self, identity: Identity, grant: Grant, duration: int, *,
            artifact: str | None = None, sealed: Sealed | None = None) -> Credentials | None:
        return None

    def put(self, identity: Identity, grant: Grant, duration: int, creds: Credentials, *,
            artifact: str | None = None) -> None:
        return None

    def forget_user(self, identity: Identity) -> int:
        return 0

    def key(self, identity: Identity, grant: Grant, duration: int,
            artifact: str | None = None) -> tuple[str, str] | None:
        return None


class CredentialCache:
    def __init__(self, store: CredsStore, keys: Sequence[bytes] | Sealer, *, refresh_window: int = 900,
                 clock: Callable[[], float] = time.time,
                 on_lookup: Callable[[bool], None] = lambda hit: None) -> None:
        self.store = store
        self.sealer = keys if isinstance(keys, Sealer) else Sealer(keys)
        self.refresh_window = refresh_window
        self.clock = clock
        self.on_lookup = on_lookup  # hit or miss: the metrics
        self._keys: ByObject[tuple[str, str]] = ByObject()
        self._opened: dict[tuple[bytes, str], tuple[str, Credentials]] = {}  # (blob, entry) -> (user, opened)

    def use_keys(self, keys: Sequence[bytes]) -> None:
        """Switch to a new key list (a key added to keys_dir while running): the newest encrypts."""
        self.sealer.use_keys(keys)

    @staticmethod
    def user_key(identity: Identity) -> str:
        return hashlib.sha256(f"{identity.issuer}\x00{identity.subject}".encode()).hexdigest()

    def _entry(self, identity: Identity, grant: Grant, duration: int, artifact: str | None = None) -> str:
        parts: list[Any] = [self.user_key(identity), grant.role_arn, grant.session_name, dict(grant.tags),
                            list(grant.transitive_keys), grant.source_identity, grant.path, duration]
        if artifact is not None:  # pass-through: the upstream artifact redeemed (a new sign-in, a new entry)
            parts.append(hashlib.sha256(artifact.encode()).hexdigest())
        if grant.chained or grant.policy is not None or grant.policy_arns:
            # The whole chain: each role on the way, its session policies, whether an ExternalId goes with it (a
            # changed hub or policy is another entry). Grants without either keep the keys they always had.
            parts.append([[h.role_arn, h.policy, list(h.policy_arns), h.external_id is not None] for h in grant.hops])
        material = json.dumps(parts, sort_keys=True)
        return hashlib.sha256(material.encode()).hexdigest()

    def _aad(self, entry: str) -> bytes:
        # The Redis key as versions before the hash tags named it (``creds:{<user>}:<entry>`` now): the
        # associated data stays what it was, and still binds a blob to its entry.
        return f"{self.store.prefix}creds:{entry}".encode()

    def key(self, identity: Identity, grant: Grant, duration: int, artifact: str | None = None) -> tuple[str, str]:
        """(user, entry): where ``get`` looks (to read it ahead, with the session). Named once per identity,
        grant and duration (each request asks for it twice: to read ahead, then to look up)."""
        # the artifact (an upstream token or SAMLResponse) by its digest: the memo never holds one
        seen = hashlib.sha256(artifact.encode()).digest() if artifact is not None else None
        return self._keys.get((identity, grant), (duration, seen), lambda: (
            self.user_key(identity), self._entry(identity, grant, duration, artifact)))

    def get(self, identity: Identity, grant: Grant, duration: int, *,
            artifact: str | None = None, sealed: Sealed | None = None) -> Credentials | None:
        """The cached credentials, unless they expire within ``refresh_window``. ``sealed``: the entry
        as read ahead, used when it is this very entry (else the store is asked)."""
        creds = self._lookup(identity, grant, duration, artifact, sealed)
        self.on_lookup(creds is not None)
        return creds

    def _lookup(self, identity: Identity, grant: Grant, duration: int, artifact: str | None,
                sealed: Sealed | None) -> Credentials | None:
        user, entry = self.key(identity, grant, duration, artifact)
        blob = sealed.blob if sealed is not None and sealed.key == (user, entry) else self.store.creds_get(user, entry)
        creds = self._open(blob or b"", user, entry)
        if creds is None or creds.expiration.timestamp() - self.clock() <= self.refresh_window:
            return None
        return creds

    def _open(self, blob: bytes, user: str, entry: str) -> Credentials | None:
        """The credentials sealed in ``blob`` for ``entry``; None: absent, under a retired key, moved from another
        entry, not ours. The same bytes for the same entry open to the same credentials: those opened lately are
        kept (by blob and entry, while the key that sealed them is held), so a hot entry is not opened per request."""
        key = (blob, entry)
        kept = self._opened.get(key)
        if kept is not None and blob[1:9] in self.sealer.keys:
            return kept[1]
        plain = self.sealer.open(blob, self._aad(entry))
        if plain is None:
            return None  # absent, under a retired key, or moved from another entry: a miss, not an error
        try:
            doc: dict[str, Any] = json.loads(plain)
            creds = Credentials(**{**doc, "expiration": datetime.fromisoformat(doc["expiration"])})
        except ValueError:
            return None
        if len(self._opened) >= OPENED_KEPT:
            self._opened.clear()
        self._opened[key] = (user, creds)
        return creds

    def put(self, identity: Identity, grant: Grant, duration: int, creds: Credentials, *,
            artifact: str | None = None) -> None:
        ttl = int(creds.expiration.timestamp() - self.clock()) - self.refresh_window
        if ttl <= 0:
            return
        entry = self._entry(identity, grant, duration, artifact)
        doc = {"access_key_id": creds.access_key_id, "secret_access_key": creds.secret_access_key,
               "session_token": creds.session_token, "expiration": creds.expiration.astimezone(UTC).isoformat(),
               "assumed_role_arn": creds.assumed_role_arn, "role_arn": creds.role_arn,
               "session_name": creds.session_name, "region": creds.region}
        blob = self.sealer.seal(json.dumps(doc).encode(), self._aad(entry))
        self.store.creds_put(self.user_key(identity), entry, blob, ttl)

    def forget_user(self, identity: Identity) -> int:
        """Delete every cached credential of this user (sign-out), and the ones this worker keeps opened (no
        secret lingers in its memory). Returns how many were deleted from the store."""
        user = self.user_key(identity)
        for key in [k for k, (u, _) in list(self._opened.items()) if u == user]:
            self._opened.pop(key, None)
        return self.store.creds_forget(user)
