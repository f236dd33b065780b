"""The one place Redis key names are built (``RedisStore``; the list of keys: bridge/storage/redis.py).

Every key starts with the deployment's ``key_prefix``, then its kind: ``<prefix><kind>:<id>``. A key
with a Cluster hash tag, ``<prefix><kind>:{<tag>}`` (``:<id>`` after the tag when one tag has several
keys), shares its slot with every key of that tag: the keys of one session (``{<sid hash>}``), of one
user's credential cache (``{<user>}``), the Identity Center client counts (``{index}``).
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Keys:
    prefix: str

    def plain(self, kind: str, ident: str) -> str:
        return f"{self.prefix}{kind}:{ident}"

    def tagged(self, kind: str, tag: str, ident: str | None = None) -> str:
        return f"{self.prefix}{kind}:{{{tag}}}" + ("" if ident is None else f":{ident}")

    def stream(self, name: str) -> str:
        """An audit stream (named in the configuration, under the prefix)."""
        return f"{self.prefix}{name}"
