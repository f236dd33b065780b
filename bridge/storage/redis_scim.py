"""``RedisStore``'s part for SCIM users and groups (keys: bridge/storage/scim.py)."""

from __future__ import annotations

import json

from bridge.storage.records import RecordError
from bridge.storage.redis_client import RedisBase, as_text
from bridge.storage.scim import ScimRecord, name_key


class RedisScim(RedisBase):
    """``ScimStore`` in Redis: each write is one MULTI/EXEC (record, id set, index sets)."""

    def _scim_key(self, kind: str, rid: str) -> str:
        return f"{self.prefix}scim:{kind}:{rid}"

    def _scim_name(self, kind: str, name: str) -> str:
        return f"{self.prefix}scim-name:{kind}:{name_key(name)}"

    def scim_get(self, kind: str, rid: str) -> ScimRecord | None:
        with self.errors():
            raw = self.r.get(self._scim_key(kind, rid))
        try:
            return None if raw is None else ScimRecord.from_json(json.loads(raw))
        except (RecordError, ValueError):
            return None

    def scim_put(self, record: ScimRecord, old: ScimRecord | None = None) -> None:
        with self.errors():
            pipe = self.r.pipeline(transaction=True)
            for name in set(old.names if old else ()) - set(record.names):
                pipe.srem(self._scim_name(record.kind, name), record.id)
            for name in record.names:
                pipe.sadd(self._scim_name(record.kind, name), record.id)
            pipe.sadd(f"{self.prefix}scim-ids:{record.kind}", record.id)
            pipe.set(self._scim_key(record.kind, record.id), json.dumps(record.to_json(), separators=(",", ":")))
            pipe.execute()

    def scim_delete(self, record: ScimRecord) -> None:
        with self.errors():
            pipe = self.r.pipeline(transaction=True)
            for name in record.names:
                pipe.srem(self._scim_name(record.kind, name), record.id)
            pipe.srem(f"{self.prefix}scim-ids:{record.kind}", record.id)
            pipe.delete(self._scim_key(record.kind, record.id))
            pipe.execute()

    def scim_find(self, kind: str, name: str) -> list[str]:
        with self.errors():
            return sorted(as_text(m) for m in self.r.smembers(self._scim_name(kind, name)))

    def scim_ids(self, kind: str) -> list[str]:
        with self.errors():
            return sorted(as_text(m) for m in self.r.smembers(f"{self.prefix}scim-ids:{kind}"))
