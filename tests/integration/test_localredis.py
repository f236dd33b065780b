"""bridge.runtime.localredis: the one redis-server starter the tests, benchmarks and demo share."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest
import redis

from bridge.runtime.localredis import LocalRedis, free_port, start_redis

pytestmark = pytest.mark.integration


def test_free_port_prefers_the_asked_port_and_falls_back_when_taken() -> None:
    want = free_port()
    assert free_port(want) == want
    with socket.socket() as held:
        held.bind(("127.0.0.1", want))
        other = free_port(want)
    assert other != want and other > 0


def test_start_redis_answers_and_stops(tmp_path: Path) -> None:
    url, stop = start_redis(tmp_path)
    assert url.startswith("redis://127.0.0.1:")
    assert redis.Redis.from_url(url).ping()
    stop()
    with pytest.raises(redis.ConnectionError):
        redis.Redis.from_url(url, socket_connect_timeout=0.5).ping()


def test_crash_and_restart_on_the_same_port_and_folder(tmp_path: Path) -> None:
    with LocalRedis(tmp_path) as rd:
        r = redis.Redis.from_url(rd.url)
        r.set("kept", "1")
        r.save()  # on disk: survives the crash
        r.set("lost", "1")
        rd.crash()
        rd.start()
        assert r.get("kept") == b"1" and r.get("lost") is None
    assert rd.proc is not None and rd.proc.poll() is not None
