"""Compatibility shim: the store moved to ``bridge.storage`` (interface, records, Redis, memory)."""

from __future__ import annotations

from bridge.storage.interface import hash_id
from bridge.storage.redis import AnyRedis, RedisStore, redis_client

Store = RedisStore

__all__ = ["AnyRedis", "RedisStore", "Store", "hash_id", "redis_client"]
