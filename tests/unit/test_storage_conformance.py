"""The storage conformance suite (tests/storage_conformance.py) against ``MemoryStore``: every TTL
runs on the injected clock, so expiry is tested without sleeping."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

import pytest

from bridge.storage.memory import MemoryStore
from tests.storage_conformance import *  # noqa: F403 - the suite's tests are collected here
from tests.storage_conformance import T0, Harness
from tests.storage_conformance_once import *  # noqa: F403 - and its single-use token ids
from tests.storage_conformance_scim import *  # noqa: F403 - and its SCIM part


@pytest.fixture
def harness() -> Harness:
    now = [float(T0)]
    store = MemoryStore("conf:", clock=lambda: now[0])

    def advance(seconds: float) -> None:
        now[0] += seconds

    def raw_put(key: str, doc: Mapping[str, Any], ttl: int) -> None:
        store._set(f"{store.prefix}{key}", json.dumps(dict(doc)), ttl)

    return Harness(store, advance, raw_put)
