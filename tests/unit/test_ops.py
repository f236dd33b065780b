"""Operations pieces without sockets: Redis client construction per topology, key schedules and
rotation, audit sinks, metrics exposition."""

from __future__ import annotations

import io
import json
import os
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import redis
from redis.sentinel import SentinelConnectionPool

from bridge.config import RedisSettings, settings_from_dict
from bridge.domain.errors import ConfigError
from bridge.keys.signing import (
    Schedule,
    expiry,
    generate_key,
    generate_saml_key,
    load_keyring,
    prune,
    read_schedule,
    rotate,
    write_schedule,
)
from bridge.storage.redis import redis_client
from bridge.telemetry import audit
from bridge.telemetry.metrics import Metrics


def _problems(**redis_cfg: Any) -> list[str]:
    raw = {"base_url": "https://b.example.com", "redis": redis_cfg,
           "connectors": [{"id": "x", "type": "oidc", "issuer": "https://idp.example.com", "client_id": "c",
                           "client_secret": "s"}]}
    try:
        settings_from_dict(raw)
    except ConfigError as e:
        return e.problems
    return []


# -- Redis topologies ---------------------------------------------------------------------------

def test_single_and_tls_clients() -> None:
    c = redis_client(RedisSettings(url="redis://10.0.0.5:6380/3", socket_timeout=1.5))
    kw = c.connection_pool.connection_kwargs
    assert isinstance(c, redis.Redis) and (kw["host"], kw["port"], kw["db"]) == ("10.0.0.5", 6380, 3)
    assert kw["socket_timeout"] == 1.5 and c.connection_pool.connection_class is redis.Connection
    c = redis_client(RedisSettings(url="rediss://cache.internal:6379/0", ssl_ca_file=Path("/ca.pem"),
                                   ssl_cert_file=Path("/c.pem"), ssl_key_file=Path("/k.pem")),
                     resolve=lambda p: Path("/etc/bridge") / p.name)
    kw = c.connection_pool.connection_kwargs
    assert c.connection_pool.connection_class is redis.SSLConnection
    assert kw["ssl_ca_certs"] == "/etc/bridge/ca.pem" and kw["ssl_certfile"] == "/etc/bridge/c.pem"
    assert kw["ssl_cert_reqs"] == "required"


def test_sentinel_client() -> None:
    cfg = RedisSettings(mode="sentinel", url="rediss://:pw@ignored/2", sentinels=["s1:26379", "s2:26380"],
                        sentinel_master="bridge", sentinel_password="spw")
    c = redis_client(cfg)
    pool = c.connection_pool
    assert isinstance(pool, SentinelConnectionPool) and pool.service_name == "bridge"
    kw = pool.connection_kwargs
    assert kw["db"] == 2 and kw["password"] == "pw" and "SSL" in pool.connection_class.__name__
    sentinels = pool.sentinel_manager.sentinels
    assert [(s.connection_pool.connection_kwargs["host"], s.connection_pool.connection_kwargs["port"])
            for s in sentinels] == [("s1", 26379), ("s2", 26380)]
    assert sentinels[0].connection_pool.connection_kwargs["password"] == "spw"


def test_cluster_client(monkeypatch: pytest.MonkeyPatch) -> None:
    from redis.cluster import RedisCluster

    seen: dict[str, Any] = {}

    def fake_from_url(url: str, **kw: Any) -> str:
        seen.update(kw, url=url)
        return "cluster"

    monkeypatch.setattr(RedisCluster, "from_url", staticmethod(fake_from_url))
    assert redis_client(RedisSettings(mode="cluster", url="rediss://node1:7000", password="p")) == "cluster"
    assert seen["url"] == "rediss://node1:7000" and seen["password"] == "p" and seen["ssl_cert_reqs"] == "required"


def test_topology_problems_are_listed_with_paths() -> None:
    p = _problems(mode="sentinel", url="redis://x/0")
    assert any("redis: " in x and "sentinels" in x and "sentinel_master" in x for x in p), p
    assert any("only used with mode: sentinel" in x for x in _problems(sentinels=["a:1"]))
    assert any("database 0" in x for x in _problems(mode="cluster", url="redis://n:7000/3"))
    assert any("rediss://" in x for x in _problems(ssl_ca_file="/ca.pem"))
    assert any("redis.url" in x for x in _problems(url="http://x"))
    assert any("redis.sentinels" in x and "host:port" in x for x in _problems(mode="sentinel", sentinels=["nope"],
                                                                               sentinel_master="m"))
    assert any("redis.key_prefix" in x for x in _problems(key_prefix="has space"))
    assert _problems(mode="sentinel", sentinels=["a:26379"], sentinel_master="m") == []


def test_plain_redis_to_a_remote_host_is_warned() -> None:
    raw = {"base_url": "https://b.example.com", "redis": {"url": "redis://redis.prod:6379/0"},
           "connectors": [{"id": "x", "type": "oidc", "issuer": "https://idp.example.com", "client_id": "c",
                           "client_secret": "s"}]}
    assert any("without TLS" in w for w in settings_from_dict(raw).warnings())
    raw["redis"] = {"url": "rediss://redis.prod:6379/0"}
    assert not any("without TLS" in w for w in settings_from_dict(raw).warnings())


# -- keys: schedules, rotation ------------------------------------------------------------------

def test_view_publishes_next_key_before_it_signs(tmp_path: Path) -> None:
    old = generate_key(tmp_path)
    new = generate_key(tmp_path)
    write_schedule(new.path, Schedule(sign_from=1000))
    write_schedule(old.path, Schedule(retire_at=1500))
    ring, problems = load_keyring(tmp_path)
    assert ring is not None and problems == []
    before = ring.view(999)
    assert before.active.kid == old.kid and {k["kid"] for k in before.jwks()["keys"]} == {old.kid, new.kid}
    during = ring.view(1200)
    assert during.active.kid == new.kid and {k["kid"] for k in during.jwks()["keys"]} == {old.kid, new.kid}
    after = ring.view(1500)
    assert after.active.kid == new.kid and [k["kid"] for k in after.jwks()["keys"]] == [new.kid]


def test_rotate_and_prune(tmp_path: Path) -> None:
    first = generate_key(tmp_path)
    generate_saml_key(tmp_path, bits=2048)
    new, scheduled = rotate(tmp_path, "jwt", now=10_000, publish_for=60, overlap=600)
    assert scheduled == [first.path]
    assert read_schedule(first.path) == Schedule(retire_at=10_660)
    assert read_schedule(new.path) == Schedule(sign_from=10_060)
    ring, _ = load_keyring(tmp_path)
    assert ring is not None and ring.view(10_000).active.kid == first.kid
    assert ring.view(10_060).active.kid == new.kid
    assert len(ring.view(10_000).saml) == 1  # SAML keys untouched by a jwt rotation
    assert prune(tmp_path, now=10_659) == []
    assert prune(tmp_path, now=10_660) == [first.path]
    assert not first.path.exists() and not first.path.with_suffix(".json").exists()
    ring, _ = load_keyring(tmp_path)
    assert ring is not None and [k.kid for k in ring.keys] == [new.kid]


def test_saml_rotation_keeps_both_certificates_published(tmp_path: Path) -> None:
    generate_key(tmp_path)
    old = generate_saml_key(tmp_path, bits=2048)
    new, _ = rotate(tmp_path, "saml", now=5_000, publish_for=100, overlap=100, saml_bits=2048)
    ring, _ = load_keyring(tmp_path)
    assert ring is not None
    assert [k.path for k in ring.view(5_050).saml] == [new.path, old.path]  # signing one last
    assert [k.path for k in ring.view(5_150).saml] == [old.path, new.path]
    assert [k.path for k in ring.view(5_200).saml] == [new.path]


def test_bad_schedule_is_a_listed_problem(tmp_path: Path) -> None:
    k = generate_key(tmp_path)
    k.path.with_suffix(".json").write_text('{"sign_from": "soon"}')
    ring, problems = load_keyring(tmp_path)
    assert ring is None and any("sign_from" in p for p in problems)


def test_expiry(tmp_path: Path) -> None:
    k = generate_key(tmp_path, now=datetime(2030, 1, 1, tzinfo=UTC))
    assert expiry(k, max_age_days=10) == int(datetime(2030, 1, 11, tzinfo=UTC).timestamp())
    s = generate_saml_key(tmp_path, bits=2048, days=30)
    assert abs(expiry(s, max_age_days=10) - (datetime.now(UTC) + timedelta(days=30)).timestamp()) < 60


def test_kubernetes_secret_volume_modes(tmp_path: Path) -> None:
    k = generate_key(tmp_path)
    os.chmod(k.path, 0o440)
    assert load_keyring(tmp_path)[0] is None  # group-readable in a plain folder: refused
    (tmp_path / "..data").mkdir()  # what kubelet's atomic writer leaves in a Secret volume
    assert load_keyring(tmp_path)[0] is not None
    os.chmod(k.path, 0o444)
    assert load_keyring(tmp_path)[0] is None  # readable by others: refused everywhere


# -- audit ----------------------------------------------------------------------------------------

def test_file_sink_appends_lines_and_follows_rotation(tmp_path: Path) -> None:
    path = tmp_path / "audit.jsonl"
    a = audit.Auditor(audit.FileSink(path))
    ctx = audit.Context("cid", "10.1.2.3", "curl/8")
    for i in range(3):
        a.record("credentials", ctx, n=i)
    os.rename(path, tmp_path / "audit.jsonl.1")  # logrotate
    a.record("credentials", ctx, n=3)
    rows = [json.loads(x) for x in audit.read_file(path, lines=10)]
    assert [r["n"] for r in rows] == [3]
    old = [json.loads(x) for x in audit.read_file(tmp_path / "audit.jsonl.1", lines=2)]
    assert [r["n"] for r in old] == [1, 2]
    assert rows[0]["correlation_id"] == "cid" and rows[0]["client_ip"] == "10.1.2.3"
    assert rows[0]["type"] == "credentials"


def test_audit_failure_closes_or_logs() -> None:
    class Broken:
        name = "file"

        def write(self, line: str) -> None:
            raise OSError("disk full")

    errors: list[str] = []
    with pytest.raises(audit.AuditUnavailable) as e:
        audit.Auditor(Broken(), on_error=errors.append).record("sign_in", audit.Context())
    assert e.value.status == 503 and errors == ["file"]
    audit.Auditor(Broken(), fail_closed=False).record("sign_in", audit.Context())  # logged, not raised


def test_stdout_sink() -> None:
    out = io.StringIO()
    audit.Auditor(audit.StdoutSink(out)).record("sign_in", audit.Context("c"), outcome="success")
    assert json.loads(out.getvalue())["outcome"] == "success"


# -- metrics -----------------------------------------------------------------------------------

def test_metrics_exposition(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("PROMETHEUS_MULTIPROC_DIR", raising=False)
    m = Metrics(keys=lambda: [("jwt", "k1", "signing", 86400 * 11)], clock=lambda: 86400)
    m.logins.labels("corp", "success").inc()
    m.sts_call("assume_role_with_web_identity", 0.2, None)
    m.sts_call("assume_role_with_web_identity", 0.1, "Throttling")
    m.redis_error(redis.ConnectionError())
    m.stale("corp", "jwks")
    body, ctype = m.render()
    text = body.decode()
    assert ctype.startswith("text/plain")
    for line in ('bridge_logins_total{connector="corp",outcome="success"} 1.0',
                 'bridge_sts_errors_total{code="Throttling"} 1.0',
                 'bridge_sts_latency_seconds_count{operation="assume_role_with_web_identity"} 2.0',
                 'bridge_redis_errors_total{error="ConnectionError"} 1.0',
                 'bridge_upstream_stale_total{connector="corp",document="jwks"} 1.0',
                 'bridge_signing_key_expiry_days{kid="k1",kind="jwt",state="signing"} 10.0'):
        assert line in text, line


def test_metrics_across_processes(tmp_path: Path) -> None:
    """Two processes writing counters to one PROMETHEUS_MULTIPROC_DIR are summed by either."""
    import subprocess
    import sys

    code = ("from bridge.telemetry.metrics import Metrics; m = Metrics(); m.logins.labels('corp', 'success').inc(); "
            "import sys; sys.stdout.write(m.render()[0].decode())")
    env = {**os.environ, "PROMETHEUS_MULTIPROC_DIR": str(tmp_path)}
    subprocess.run([sys.executable, "-c", code], env=env, check=True, capture_output=True, timeout=60)
    out = subprocess.run([sys.executable, "-c", code], env=env, check=True, capture_output=True, text=True,
                         timeout=60).stdout
    assert 'bridge_logins_total{connector="corp",outcome="success"} 2.0' in out
