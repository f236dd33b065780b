"""``bridge storage migrate``: rewrite in place the keys an earlier version wrote (bridge/storage/redis_legacy.py)
into today's layout, so the legacy reads have nothing left to find before they go (in ``REMOVED_IN``).

What moves (under the key prefix; ``<h>`` a session hash, ``<u>`` a user of the credential cache)::

    session:<h>, passthrough:<h>, upstream:<h>   → <kind>:{<h>}      same value, same TTL (SET NX: a newer one wins)
    session-tokens:<h>                           → session-tokens:{<h>}   members added, TTL never shortened
    creds-index:<u> and the creds:<entry> it lists → creds:{<u>}:<entry> and creds-index:{<u>}   (same sealed blob:
                                                   its associated data names the entry, not the key)

Each key is moved as the bridge's first read of it would (copy, then delete the old one), so migrating a
deployment that is serving is safe: a CLI-token set is copied before its old key goes, so a revocation
running meanwhile finds every token in one of the two. Idempotent: a second run finds nothing. Old keys
are found with SCAN (on a Cluster, on every primary: redis-py's ``scan_iter``). Nothing here prints or
returns a value or a key name: only counts.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass, field

from bridge.storage.redis_client import as_text
from bridge.storage.redis_legacy import REMOVED_IN, SESSION_KINDS, LegacyReads

_HASH = re.compile(r"[0-9a-f]{64}")  # the untagged id of a session key (a SHA-256, no braces)
CREDS_INDEX_TTL = 43200 + 3600  # as ``RedisStore.creds_put`` keeps an index


@dataclass
class Migration:
    """Counts per kind of old key: ``found``, and ``moved`` (written under the new key; 0 in a dry run)."""

    dry_run: bool
    found: dict[str, int] = field(default_factory=dict)
    moved: dict[str, int] = field(default_factory=dict)

    def count(self, kind: str, moved: bool) -> None:
        self.found[kind] = self.found.get(kind, 0) + 1
        self.moved[kind] = self.moved.get(kind, 0) + int(moved)

    @property
    def total(self) -> int:
        return sum(self.found.values())

    def lines(self) -> list[str]:
        """The report: one line per kind (counts only, never a key or a value)."""
        out = []
        for kind in (*SESSION_KINDS, "session-tokens", "creds-index", "creds"):
            found, moved = self.found.get(kind, 0), self.moved.get(kind, 0)
            if self.dry_run:
                out.append(f"  {kind:<15} {found:>6} old key(s): would move")
                continue
            left = f" ({found - moved} ended meanwhile or a newer key kept)" if found != moved else ""
            out.append(f"  {kind:<15} {found:>6} old key(s): {moved} moved{left}")
        return out


def _untagged(store: LegacyReads, kind: str) -> Iterator[tuple[str, str]]:
    """(key, its id) of every ``<prefix><kind>:<id>`` without a hash tag (what an earlier version wrote)."""
    head = f"{store.prefix}{kind}:"
    for raw in store.r.scan_iter(match=f"{head}*", count=1000):
        key = as_text(raw)
        ident = key[len(head):]
        if not ident.startswith("{"):
            yield key, ident


def _copy_set(store: LegacyReads, old: str, new: str) -> bool:
    """Add the members of ``old`` to ``new`` (its TTL extended to old's, never shortened), then delete ``old``."""
    members = [as_text(m) for m in store.r.smembers(old)]
    pttl = int(store.r.pttl(old))
    if not members:
        return False
    store.r.sadd(new, *members)
    if pttl > 0 and int(store.r.pttl(new)) < pttl:
        store.r.expire(new, -(-pttl // 1000))
    store.r.delete(old)
    return True


def _sessions(store: LegacyReads, m: Migration) -> None:
    for kind in (*SESSION_KINDS, "session-tokens"):
        for key, ident in _untagged(store, kind):
            if not _HASH.fullmatch(ident):
                continue  # not a session's key (none such is written under these kinds)
            if m.dry_run:
                m.count(kind, False)
            elif kind == "session-tokens":
                m.count(kind, _copy_set(store, key, store._sk(kind, ident)))
            else:
                m.count(kind, store._move(key, store._sk(kind, ident))[1])


def _credential_cache(store: LegacyReads, m: Migration) -> None:
    entry_head = f"{store.prefix}creds:"
    for index, user in _untagged(store, "creds-index"):
        m.count("creds-index", not m.dry_run)
        for old in sorted(as_text(k) for k in store.r.smembers(index)):
            if not old.startswith(entry_head) or old[len(entry_head):].startswith("{"):
                continue
            if m.dry_run:
                m.count("creds", False)
                continue
            new = store._ck(user, old[len(entry_head):])
            _, moved = store._move(old, new)
            if moved:
                store.r.sadd(store.keys.tagged("creds-index", user), new)
                store.r.expire(store.keys.tagged("creds-index", user), CREDS_INDEX_TTL)
            m.count("creds", moved)
        if not m.dry_run:
            store.r.delete(index)


def migrate(store: LegacyReads, *, dry_run: bool = False) -> Migration:
    """Move every key of the old layout under ``store.prefix`` (``dry_run``: only count them)."""
    m = Migration(dry_run)
    with store.errors():
        _sessions(store, m)
        _credential_cache(store, m)
    return m


__all__ = ["REMOVED_IN", "Migration", "migrate"]
