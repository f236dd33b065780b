"""``ByObject``: values derived from immutable objects, kept by those objects' identity.

A hot request meets the very same objects again and again: its session record is parsed once per stored
document (bridge/storage/redis_sessions.py), its decision is the rules memo's (bridge/core/access.py),
its grants are that decision's. What is derived from them only (a grant with the bridge's tags, a cache
entry's name) is then computed once, not per request. Kept by identity (``is``), not equality: the
records hold dicts and are not hashable, and an equal copy is simply computed again. Each entry holds
its objects, so an id cannot be reused by another object while the entry lives.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable
from typing import Generic, TypeVar

V = TypeVar("V")


class ByObject(Generic[V]):
    """``get(objs, extra, make)``: ``make()`` once per (objects, extra); at most ``size`` entries (then
    all are dropped: hot objects come back at once). Thread-safe enough: a race computes a value twice."""

    def __init__(self, size: int = 4096) -> None:
        self.size = size
        self._kept: dict[tuple[Hashable, ...], tuple[tuple[object, ...], V]] = {}

    def get(self, objs: tuple[object, ...], extra: Hashable, make: Callable[[], V]) -> V:
        key = (*map(id, objs), extra)
        hit = self._kept.get(key)
        if hit is not None:
            for kept, obj in zip(hit[0], objs, strict=True):  # a loop, not all(): this runs on every hot request
                if kept is not obj:
                    break
            else:
                return hit[1]
        value = make()
        if len(self._kept) >= self.size:
            self._kept.clear()
        self._kept[key] = (objs, value)
        return value
