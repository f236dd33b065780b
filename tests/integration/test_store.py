"""The Redis store against a real redis-server: single-use pending logins, session timeouts, JSON only."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
import redis

from bridge.domain.errors import StoreUnavailable
from bridge.domain.identity import Identity
from bridge.runtime.localredis import free_port
from bridge.storage import PendingLogin, SessionRecord
from bridge.storage.redis import RedisStore as Store

pytestmark = pytest.mark.integration
X = Identity(connector_id="c", subject="x", issuer="i")


def pending(state: str, nonce: str) -> PendingLogin:
    return PendingLogin(state=state, connector_id="c", nonce=nonce, code_verifier="v", return_to="/", created_at=1)


@pytest.fixture
def store(redis_url: str) -> Store:
    return Store(redis.Redis.from_url(redis_url), prefix=f"st{time.monotonic_ns()}:")


def test_pending_login_is_single_use_and_has_a_ttl(store: Store) -> None:
    store.put_pending(pending("s1", "1"), ttl=120)
    assert 0 < store.r.ttl(f"{store.prefix}pending:s1") <= 120
    assert store.take_pending("s1") == pending("s1", "1")
    assert store.take_pending("s1") is None  # replay finds nothing
    store.put_pending(pending("s2", "2"), ttl=120)
    store.put_pending(pending("s2", "overwrite?"), ttl=120)  # NX: a state is never overwritten
    assert store.take_pending("s2") == pending("s2", "2")


def test_session_is_json_keyed_by_hash_and_idle_ttl(store: Store) -> None:
    sid = store.create_session(SessionRecord(identity=X, csrf="c"), idle=300, absolute=3600)
    raw_keys = [k.decode() for k in store.r.scan_iter(match=f"{store.prefix}session:*")]
    assert len(raw_keys) == 1 and sid not in raw_keys[0]  # the cookie value is not the key
    doc = json.loads(store.r.get(raw_keys[0]))
    assert doc["identity"] == X.to_json() and doc["expires_at"] - doc["created_at"] == 3600
    assert 0 < store.r.ttl(raw_keys[0]) <= 300
    store.r.expire(raw_keys[0], 5)
    assert store.load_session(sid, idle=300) is not None
    assert store.r.ttl(raw_keys[0]) > 5  # using the session resets the idle timer


def test_session_absolute_timeout(store: Store) -> None:
    now = [1_000_000.0]
    store.clock = lambda: now[0]
    sid = store.create_session(SessionRecord(identity=X, csrf="v"), idle=3600, absolute=600)
    now[0] += 599
    assert store.load_session(sid, idle=3600) == SessionRecord(identity=X, csrf="v", created_at=1_000_000,
                                                               expires_at=1_000_600)
    now[0] += 2
    assert store.load_session(sid, idle=3600) is None
    assert not list(store.r.scan_iter(match=f"{store.prefix}session:*"))  # deleted, not just ignored


def test_unknown_and_oversized_session_ids(store: Store) -> None:
    assert store.load_session("", idle=60) is None
    assert store.load_session("nope", idle=60) is None
    assert store.load_session("x" * 1000, idle=60) is None


def test_redis_down_is_store_unavailable() -> None:
    s = Store.from_url(f"redis://127.0.0.1:{free_port()}/0", "x:", socket_timeout=0.5)
    started = time.monotonic()
    with pytest.raises(StoreUnavailable):
        s.put_pending(pending("s", "n"), ttl=60)
    with pytest.raises(StoreUnavailable):
        s.load_session("abc", idle=60)
    assert s.ping() is False
    assert time.monotonic() - started < 2  # fails fast: users get a 503 at once, not after a hang


def test_the_hot_scripts_fail_over_to_a_new_connection(redis_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """The read-ahead's and the exchange's EVAL go out on a pooled connection directly (``RedisBase._eval``):
    when Redis drops that connection after it was checked out (a restart, a failover, an idle timeout), the
    call is made again on a new one — counted once, nothing lost — and a Redis that is down is a
    ``StoreUnavailable``."""
    import redis

    s = Store.from_url(redis_url, f"hot{time.monotonic_ns()}:")
    bucket = [("kill", 100)]
    assert s.hits_reading(bucket, ("u", "e"))[0] == [0]
    admin = redis.Redis.from_url(redis_url)
    pool = s.r.connection_pool
    checkout = pool.get_connection
    killed: list[int] = []

    def then_killed(*a: object, **k: object) -> object:  # once: the server drops the connection just handed out
        conn = checkout(*a, **k)
        if not killed:
            conn.send_command("CLIENT", "ID")
            killed.append(int(conn.read_response()))
            admin.client_kill_filter(_id=killed[0])
        return conn

    monkeypatch.setattr(pool, "get_connection", then_killed)
    again: list[object] = []
    plain = s.r.eval
    monkeypatch.setattr(s.r, "eval", lambda *a: again.append(a) or plain(*a))
    assert s.hits_reading(bucket, ("u", "e")) == ([0], None)
    assert len(again) == 1  # made again on redis-py's path, once
    assert killed and killed[0] not in [int(c["id"]) for c in admin.client_list()]
    (key,) = list(admin.scan_iter(match=f"{s.prefix}rl:*"))
    assert int(admin.get(key)) == 2  # the first count and this one, made again on a new connection
    down = Store.from_url(f"redis://127.0.0.1:{free_port()}/0", "x:", socket_timeout=0.5)
    with pytest.raises(StoreUnavailable):
        down.hits_reading(bucket, ("u", "e"))


def test_a_timed_out_hot_script_is_not_sent_again(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A Redis that does not answer in ``socket_timeout``: the hot EVAL is a ``StoreUnavailable`` at once, and is
    not sent again (it may still run: a retry would count the request twice, and hold it twice as long)."""
    import os
    import signal

    from bridge.runtime.localredis import LocalRedis

    with LocalRedis(tmp_path / "paused") as rd:
        s = Store.from_url(rd.url, "p:", socket_timeout=0.3)
        admin = redis.Redis.from_url(rd.url)
        assert s.hits_reading([("slow", 100)], ("u", "e"))[0] == [0]
        again: list[object] = []
        plain = s.r.eval
        monkeypatch.setattr(s.r, "eval", lambda *a: again.append(a) or plain(*a))  # redis-py's path, retrying
        os.kill(rd.proc.pid, signal.SIGSTOP)  # the EVAL waits in the socket, unanswered
        try:
            with pytest.raises(StoreUnavailable):
                s.hits_reading([("slow", 100)], ("u", "e"))
        finally:
            os.kill(rd.proc.pid, signal.SIGCONT)
        assert again == []  # not handed to redis-py's retrying path
        (key,) = list(admin.scan_iter(match="p:rl:*"))
        assert int(admin.get(key)) == 2  # the first count, and the timed-out one once (it ran when Redis woke)
