"""The storage conformance suite (tests/storage_conformance.py) against ``RedisStore`` and a real
redis-server. Time is moved the way the server would see it pass: the store's clock moves forward
and every key under the test's prefix has its TTL run down by as much."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator, Mapping
from typing import Any

import pytest
import redis

from bridge.storage.redis import RedisStore
from tests.storage_conformance import *  # noqa: F403 - the suite's tests are collected here
from tests.storage_conformance import T0, Harness
from tests.storage_conformance_once import *  # noqa: F403 - and its single-use token ids
from tests.storage_conformance_scim import *  # noqa: F403 - and its SCIM part

pytestmark = pytest.mark.integration


@pytest.fixture
def harness(redis_url: str) -> Iterator[Harness]:
    client = redis.Redis.from_url(redis_url)
    prefix = f"conf{time.monotonic_ns()}:"
    now = [float(T0)]
    store = RedisStore(client, prefix, clock=lambda: now[0])

    def advance(seconds: float) -> None:
        now[0] += seconds
        for key in client.scan_iter(match=f"{prefix}*"):
            left = client.pttl(key)
            if left < 0:
                continue  # no TTL (the audit stream)
            if left <= seconds * 1000:
                client.delete(key)
            else:
                client.pexpire(key, int(left - seconds * 1000))

    def raw_put(key: str, doc: Mapping[str, Any], ttl: int) -> None:
        client.set(f"{prefix}{key}", json.dumps(dict(doc)), ex=ttl)

    yield Harness(store, advance, raw_put)
    for key in client.scan_iter(match=f"{prefix}*"):
        client.delete(key)


def test_every_rate_limit_window_expires(redis_url: str) -> None:
    """A window's first count sets its expiry and later counts keep it (the scripts EXPIRE only then): no
    bucket key is ever left without a TTL, by ``hits`` or by ``hits_reading``."""
    client = redis.Redis.from_url(redis_url)
    prefix = f"rl{time.monotonic_ns()}:"
    store = RedisStore(client, prefix, clock=lambda: float(T0))
    for _ in range(3):
        store.hits([("a", 100), ("b", 100)])
        store.hits_reading([("c", 100)], ("user", "entry"))
    keys = list(client.scan_iter(match=f"{prefix}*"))
    assert len(keys) == 3
    for key in keys:
        assert int(client.get(key)) == 3
        assert 0 < client.ttl(key) <= 65
    for key in keys:
        client.delete(key)
