"""The store's part for SCIM provisioning (bridge/scim): users and groups the IdP pushed, with their index
names, kept until the IdP deletes them (no TTL). One record type, ``ScimRecord``; the ``ScimStore`` protocol
(part of ``Store``); ``MemoryScim`` here and ``RedisScim`` (bridge/storage/redis_scim.py), mixed into
``MemoryStore`` and ``RedisStore``.

Redis keys (under the key prefix)::

    scim:<kind>:<id>               ScimRecord JSON (kind: User | Group)
    scim-ids:<kind>                set of the ids of that kind
    scim-name:<kind>:<name hash>   set of the ids filed under an index name (``username:alice@example.com``)

Index names are lower-cased by the caller; a record keeps its own (``names``), so a rewrite drops the names it
no longer holds and a delete drops them all, in the same MULTI/EXEC.
"""

from __future__ import annotations

import hashlib
import json
import threading
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

from bridge.storage.records import RecordError


@dataclass(frozen=True)
class ScimRecord:
    """A SCIM resource as the bridge keeps it: ``doc`` is the resource as the IdP wrote it, without what the
    bridge computes (``id``, ``meta``, a user's ``groups``); ``groups`` are a user's groups (group id, name);
    ``deleted``: a user the IdP deleted (kept so their next sign-in is refused until the IdP creates them anew)."""

    kind: str
    id: str
    doc: Mapping[str, Any]
    created: int
    modified: int
    version: int = 1
    names: tuple[str, ...] = ()
    groups: tuple[tuple[str, str], ...] = ()
    deleted: bool = False

    def to_json(self) -> dict[str, Any]:
        return {"kind": self.kind, "id": self.id, "doc": dict(self.doc), "created": self.created,
                "modified": self.modified, "version": self.version, "names": list(self.names),
                "groups": [list(g) for g in self.groups], "deleted": self.deleted}

    @classmethod
    def from_json(cls, d: Mapping[str, Any]) -> ScimRecord:
        try:
            if not isinstance(d["doc"], Mapping):
                raise TypeError("doc is not an object")
            return cls(str(d["kind"]), str(d["id"]), dict(d["doc"]), int(d["created"]), int(d["modified"]),
                       int(d.get("version", 1)), tuple(str(n) for n in d.get("names") or ()),
                       tuple((str(g[0]), str(g[1])) for g in d.get("groups") or ()), bool(d.get("deleted")))
        except (KeyError, TypeError, ValueError, IndexError) as e:
            raise RecordError(f"ScimRecord: {e}") from None


def name_key(name: str) -> str:
    """An index name as a key part: its SHA-256 (names are e-mails and user names: bounded, not spelled out)."""
    return hashlib.sha256(name.encode()).hexdigest()


class ScimStore(Protocol):
    """SCIM users and groups: by id, listed per kind, found by index name."""

    def scim_get(self, kind: str, rid: str) -> ScimRecord | None: ...
    def scim_put(self, record: ScimRecord, old: ScimRecord | None = None) -> None:
        """Write ``record`` and file it under its names (dropping those of ``old`` it no longer holds)."""
    def scim_delete(self, record: ScimRecord) -> None: ...
    def scim_find(self, kind: str, name: str) -> list[str]:
        """The ids filed under the index name ``name`` (sorted)."""
    def scim_ids(self, kind: str) -> list[str]:
        """Every id of ``kind`` (sorted)."""


class MemoryScim:
    """``ScimStore`` in process (unit tests), on ``MemoryStore``'s primitives and Redis's key layout."""

    prefix: str
    _lock: threading.RLock

    if TYPE_CHECKING:  # MemoryStore's primitives
        def _get(self, key: str) -> Any: ...
        def _set(self, key: str, value: Any, ttl: float | None) -> None: ...
        def _pop(self, key: str) -> Any: ...
        def _sadd(self, key: str, member: str, ttl: int | None) -> None: ...
        def _members(self, key: str) -> list[str]: ...
        def _srem(self, key: str, member: str) -> bool: ...

    def _scim_key(self, kind: str, rid: str) -> str:
        return f"{self.prefix}scim:{kind}:{rid}"

    def _scim_name(self, kind: str, name: str) -> str:
        return f"{self.prefix}scim-name:{kind}:{name_key(name)}"

    def scim_get(self, kind: str, rid: str) -> ScimRecord | None:
        with self._lock:
            raw = self._get(self._scim_key(kind, rid))
        try:
            return None if raw is None else ScimRecord.from_json(json.loads(raw))
        except (RecordError, ValueError):
            return None

    def scim_put(self, record: ScimRecord, old: ScimRecord | None = None) -> None:
        with self._lock:
            for name in set(old.names if old else ()) - set(record.names):
                self._srem(self._scim_name(record.kind, name), record.id)
            for name in record.names:
                self._sadd(self._scim_name(record.kind, name), record.id, None)
            self._sadd(f"{self.prefix}scim-ids:{record.kind}", record.id, None)
            self._set(self._scim_key(record.kind, record.id), json.dumps(record.to_json()), None)

    def scim_delete(self, record: ScimRecord) -> None:
        with self._lock:
            for name in record.names:
                self._srem(self._scim_name(record.kind, name), record.id)
            self._srem(f"{self.prefix}scim-ids:{record.kind}", record.id)
            self._pop(self._scim_key(record.kind, record.id))

    def scim_find(self, kind: str, name: str) -> list[str]:
        return self._members(self._scim_name(kind, name))

    def scim_ids(self, kind: str) -> list[str]:
        return self._members(f"{self.prefix}scim-ids:{kind}")
