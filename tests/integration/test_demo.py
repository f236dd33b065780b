"""`make demo`'s program, end to end: `bridge demo --smoke` starts Redis, moto, the demo IdP and the
bridge under gunicorn, signs in, fetches credentials, calls STS with them, and stops everything."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import redis

from bridge.localredis import free_port
from tests.conftest import ROOT

pytestmark = pytest.mark.integration


def test_demo_smoke() -> None:
    out = subprocess.run([sys.executable, "-m", "bridge.cli", "demo", "--smoke", "--port", str(free_port())],
                         cwd=ROOT, capture_output=True, text=True, timeout=180)
    assert out.returncode == 0, (out.stdout[-2000:], out.stderr[-3000:])
    assert "demo smoke ok: arn:aws:sts::123456789012:assumed-role/Admin/alice@example.com" in out.stdout
    assert "demo chain ok: arn:aws:sts::210987654321:assumed-role/Developer/alice@example.com (via hub/BridgeHub)" \
        in out.stdout
    assert "demo console ok: signed in as Admin" in out.stdout
    assert "demo console (SAML POST) ok: signed in as ReadOnly" in out.stdout


def test_demo_forgets_what_an_earlier_run_left_in_redis(redis_url: str, keys_dir: Path) -> None:
    """A demo restarted on a Redis that outlived it (6379 is reused) must not hand out credentials
    cached from the earlier run's STS (the new moto answers unknown keys with its default user): its
    key prefix is emptied before the bridge starts; nothing else in that Redis is touched."""
    from bridge.demo import forget_earlier_runs

    r = redis.Redis.from_url(redis_url)
    r.set("bridge-demo:creds:{u}:e1", b"\x01sealed")
    r.set("bridge-demo:session:{h}", "{}")
    r.xadd("bridge-demo:audit", {"r": "{}"})
    r.set("someone-else:session:{h}", "{}")
    env = {"DEMO_REDIS_URL": redis_url, "DEMO_KEYS_DIR": str(keys_dir), "DEMO_PORT": "8000"}
    assert forget_earlier_runs(ROOT / "config" / "demo.yaml", env) == 3
    assert not list(r.scan_iter(match="bridge-demo:*"))
    assert r.get("someone-else:session:{h}") == b"{}"
    r.delete("someone-else:session:{h}")
