"""``bridge storage migrate`` against a real redis-server: the keys an earlier version wrote (before the hash
tags) are rewritten in place into today's layout, so a store without the legacy reads (as in 0.2.0) finds
everything; a dry run changes nothing; a second run finds nothing; only counts are printed."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis
import yaml
from click.testing import CliRunner

from bridge.commands.cli import main as cli
from bridge.runtime.localredis import free_port
from bridge.storage import hash_id
from bridge.storage.redis import RedisStore
from bridge.storage.redis_migrate import migrate

pytestmark = pytest.mark.integration

T0 = 1_800_000_000
SH = hash_id("old-cookie")  # a session an earlier version wrote
NEWER = hash_id("raced-cookie")  # one whose upstream grant was rewritten under the new key meanwhile
USER = "u0"
SECRET = "refresh-token-VALUE-never-printed"


@pytest.fixture
def prefix(redis_url: str) -> Iterator[str]:
    p = f"mig{time.monotonic_ns()}:"
    yield p
    client = redis.Redis.from_url(redis_url)
    for key in client.scan_iter(match=f"{p}*"):
        client.delete(key)


def config(tmp_path: Path, url: str, prefix: str) -> str:
    cfg = tmp_path / "bridge.yaml"
    cfg.write_text(yaml.safe_dump({
        "base_url": "https://b.example.com", "redis": {"url": url, "key_prefix": prefix},
        "connectors": [{"id": "x", "type": "oidc", "issuer": "https://idp.example.com", "client_id": "c",
                        "client_secret": "s"}]}))
    return str(cfg)


def write_old_layout(r: redis.Redis, p: str) -> None:
    """What a version before the hash tags left in Redis, plus keys whose layout never changed."""
    doc = {"identity": {"connector_id": "corp", "subject": "alice", "issuer": "https://idp.test"}, "csrf": "c",
           "created_at": T0, "expires_at": T0 + 3600}
    r.set(f"{p}session:{SH}", json.dumps(doc), ex=300)
    r.set(f"{p}upstream:{SH}", json.dumps({"refresh_token": SECRET}), ex=3600)
    r.set(f"{p}passthrough:{SH}", json.dumps({"kind": "oidc", "value": "v"}), ex=300)
    r.sadd(f"{p}session-tokens:{SH}", "t0", "t1")
    r.expire(f"{p}session-tokens:{SH}", 7200)
    r.set(f"{p}creds:e0", b"\x01sealed-0", ex=900)
    r.set(f"{p}creds:e1", b"\x01sealed-1", ex=900)
    r.sadd(f"{p}creds-index:{USER}", f"{p}creds:e0", f"{p}creds:e1")
    r.set(f"{p}upstream:{NEWER}", json.dumps({"refresh_token": "old"}), ex=3600)
    r.set(f"{p}upstream:{{{NEWER}}}", json.dumps({"refresh_token": "rotated"}), ex=3600)
    r.sadd(f"{p}fav:someone", "g1")  # same name in every version: left alone
    r.set(f"{p}pending:state-1", json.dumps({"state": "state-1"}), ex=60)


def snapshot(r: redis.Redis, p: str) -> dict[bytes, tuple[bytes | None, bool]]:
    return {k: (r.dump(k), r.pttl(k) > 0) for k in sorted(r.scan_iter(match=f"{p}*"))}


def test_migrate_moves_the_old_layout_so_a_store_without_legacy_reads_finds_it(redis_url, prefix, tmp_path) -> None:
    r = redis.Redis.from_url(redis_url)
    write_old_layout(r, prefix)
    store = RedisStore(r, prefix, clock=lambda: float(T0))
    store.legacy_reads = False  # the store as 0.2.0 will be
    assert store.get_session(SH) is None and store.session_tokens(SH) == []  # not found without the legacy reads
    cfg = config(tmp_path, redis_url, prefix)

    out = CliRunner().invoke(cli, ["storage", "migrate", "--config", cfg])
    assert out.exit_code == 0, out.output
    assert out.output.splitlines() == [
        f"keys under {prefix} in the layout before the hash tags:",
        "  session              1 old key(s): 1 moved",
        "  passthrough          1 old key(s): 1 moved",
        "  upstream             2 old key(s): 1 moved (1 ended meanwhile or a newer key kept)",
        "  session-tokens       1 old key(s): 1 moved",
        "  creds-index          1 old key(s): 1 moved",
        "  creds                2 old key(s): 2 moved",
        "8 old key(s) handled; none left for the legacy reads, removed in 0.2.0.",
    ]
    assert SECRET not in out.output and SH not in out.output and "sealed" not in out.output  # counts only

    rec = store.get_session(SH)
    assert rec is not None and rec.csrf == "c" and store.load_session("old-cookie", idle=300) is not None
    assert 0 < r.ttl(f"{prefix}session:{{{SH}}}") <= 300  # its TTL came along
    assert store.get_upstream(SH) == {"refresh_token": SECRET}
    assert store.get_passthrough("old-cookie") == {"kind": "oidc", "value": "v"}
    assert store.session_tokens(SH) == ["t0", "t1"] and 3600 < r.ttl(f"{prefix}session-tokens:{{{SH}}}") <= 7200
    assert store.get_upstream(NEWER) == {"refresh_token": "rotated"}  # the newer key won
    assert store.creds_get(USER, "e0") == b"\x01sealed-0" and store.creds_get(USER, "e1") == b"\x01sealed-1"
    assert 0 < r.ttl(store._ck(USER, "e0")) <= 900
    assert store.creds_forget(USER) == 2  # indexed under the new layout: sign-out finds them
    left = sorted(k.decode()[len(prefix):] for k in r.scan_iter(match=f"{prefix}*"))
    assert all("{" in k for k in left if not k.startswith(("fav:", "pending:"))), left  # nothing untagged left
    assert r.smembers(f"{prefix}fav:someone") == {b"g1"} and r.exists(f"{prefix}pending:state-1")


def test_a_dry_run_changes_nothing_and_a_second_run_finds_nothing(redis_url, prefix, tmp_path) -> None:
    r = redis.Redis.from_url(redis_url)
    write_old_layout(r, prefix)
    before = snapshot(r, prefix)
    cfg = config(tmp_path, redis_url, prefix)
    out = CliRunner().invoke(cli, ["storage", "migrate", "--config", cfg, "--dry-run"])
    assert out.exit_code == 0, out.output
    assert out.output.splitlines()[0] == f"dry run: keys under {prefix} in the layout before the hash tags:"
    assert "  upstream             2 old key(s): would move" in out.output.splitlines()
    assert out.output.splitlines()[-1] == "8 old key(s) found; nothing changed (run without --dry-run to move them)."
    assert snapshot(r, prefix) == before

    store = RedisStore(r, prefix)
    assert migrate(store).total == 8
    after = snapshot(r, prefix)
    again = migrate(store)
    assert again.total == 0 and set(again.found.values()) <= {0}
    assert snapshot(r, prefix) == after  # idempotent
    out = CliRunner().invoke(cli, ["storage", "migrate", "--config", cfg])
    assert out.exit_code == 0 and out.output.splitlines()[-1].startswith("0 old key(s) handled")


def test_an_unreachable_redis_is_a_clear_error_and_nothing_else(prefix, tmp_path) -> None:
    cfg = config(tmp_path, f"redis://127.0.0.1:{free_port()}/0", prefix)
    out = CliRunner().invoke(cli, ["storage", "migrate", "--config", cfg])
    assert out.exit_code == 1
    assert out.output.splitlines() == [f"cannot migrate the keys under {prefix}:", "  - redis: ConnectionError"]
    assert out.exception is None or isinstance(out.exception, SystemExit)  # no traceback


def test_a_bad_config_lists_its_problems(tmp_path) -> None:
    cfg = tmp_path / "bridge.yaml"
    cfg.write_text("redis: {url: 'http://nope'}\n")
    out = CliRunner().invoke(cli, ["storage", "migrate", "--config", str(cfg)])
    assert out.exit_code == 1 and "problem(s):" in out.output and "redis.url" in out.output
