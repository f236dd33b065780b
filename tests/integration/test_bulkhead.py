"""The STS bulkhead against a real `bridge serve` (gunicorn, gthread, one worker, few threads): an
STS that accepts and never answers holds at most ``aws.sts_max_concurrency`` threads; the other
credential requests get a fast 503 ``sts_busy`` with Retry-After, and /healthz, /readyz and the
issuer documents keep answering. Then the STS drops its connections: 503 ``sts_unavailable``.
Latency figures are in bench/bench_bulkhead.py; the bounds here are deliberately generous."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
import yaml

from tests.conftest import ACCOUNTS, ISSUER, RULES, free_port
from tests.integration.helpers import dev_login, grant_id, portal_json
from tests.peers.silent_sts import SilentSts

pytestmark = pytest.mark.integration

CAP = 2
THREADS = 6
CLIENTS = 16
Served = tuple[str, Path, "subprocess.Popen[bytes]"]
HEALTH = ("/healthz", "/readyz", "/.well-known/jwks.json", "/.well-known/openid-configuration")


@pytest.fixture
def serve(tmp_path: Path, redis_url: str, keys_dir: Path) -> Iterator[Callable[..., Served]]:
    """`bridge serve` with one worker of THREADS threads against ``sts_url``: (base URL, its TMPDIR, process)."""
    procs: list[subprocess.Popen[bytes]] = []

    def start(sts_url: str, **aws: Any) -> Served:
        port = free_port()
        base = f"http://127.0.0.1:{port}"
        cfg = {
            "base_url": base, "listen": f"127.0.0.1:{port}", "secret_key": "bulkhead-test-secret",
            "insecure_dev_login": True, "log_level": "WARNING",
            "redis": {"url": redis_url, "key_prefix": f"bh{time.monotonic_ns()}:"},
            "issuer": {"url": ISSUER, "keys_dir": str(keys_dir)},
            "aws": {"sts_endpoint_url": sts_url, "sts_timeout": 30, "sts_max_attempts": 1,
                    "sts_max_concurrency": CAP, **aws},
            "audit": {"sink": "file", "path": str(tmp_path / "audit.jsonl")},
            "rate_limits": {"credentials_per_minute": 0},
            "connectors": [{"id": "dev", "type": "dev", "users": [
                {"subject": "alice", "email": "alice@example.com", "groups": ["aws-admins"],
                 "claims": {"department": "Platform"}, "mfa": True}]}],
            "mapping": {"accounts": ACCOUNTS, "rules": RULES},
        }
        path = tmp_path / "bridge.yaml"
        path.write_text(yaml.safe_dump(cfg))
        tmpdir = tmp_path / "tmp"
        tmpdir.mkdir(exist_ok=True)
        env = {**os.environ, "BRIDGE_ACCESS_LOG": "0", "BRIDGE_THREADS": str(THREADS), "TMPDIR": str(tmpdir)}
        env.pop("PROMETHEUS_MULTIPROC_DIR", None)
        log = tmp_path / "serve.log"
        p = subprocess.Popen([sys.executable, "-m", "bridge", "serve", "--config", str(path), "--workers", "1"],
                             env=env, stdout=subprocess.DEVNULL, stderr=log.open("wb"), start_new_session=True)
        procs.append(p)
        deadline = time.monotonic() + 30
        while True:
            try:
                requests.get(f"{base}/readyz", timeout=1)
                break
            except requests.RequestException:
                assert p.poll() is None and time.monotonic() < deadline, log.read_text(errors="replace")[-3000:]
                time.sleep(0.1)
        return base, tmpdir, p

    yield start
    for p in procs:
        stop(p)


def stop(p: subprocess.Popen[bytes]) -> None:
    if p.poll() is None:
        os.killpg(p.pid, signal.SIGTERM)
    try:
        p.wait(20)
    except subprocess.TimeoutExpired:
        os.killpg(p.pid, signal.SIGKILL)
        p.wait(5)


def metric(base: str, line_start: str) -> float:
    for line in requests.get(f"{base}/metrics", timeout=10).text.splitlines():
        if line.startswith(line_start + " "):
            return float(line.rsplit(" ", 1)[1])
    return 0.0


def test_a_silent_sts_holds_only_its_share_of_threads(serve: Any, tmp_path: Path) -> None:
    sts = SilentSts("silent")
    try:
        base, tmpdir, proc = serve(sts.url)
        s = dev_login(base, "alice", requests.Session())
        portal = portal_json(s, base)
        url = f"{base}/credentials/{grant_id(portal, '/Admin')}"
        headers = {"Accept": "application/json", "X-CSRF-Token": portal["csrf_token"]}
        results: list[tuple[float, requests.Response]] = []
        lock = threading.Lock()

        def fetch() -> None:
            started = time.monotonic()
            r = requests.post(url, headers=headers, cookies=s.cookies.get_dict(), timeout=60)
            with lock:
                results.append((time.monotonic() - started, r))

        clients = [threading.Thread(target=fetch) for _ in range(CLIENTS)]
        for t in clients:
            t.start()
        deadline = time.monotonic() + 20
        while sts.holding < CAP or len(results) < CLIENTS - CAP:
            assert time.monotonic() < deadline, (sts.holding, len(results))
            time.sleep(0.05)

        # STS holds CAP threads; everything else answers, and answers now.
        for _ in range(3):
            for path in HEALTH:
                started = time.monotonic()
                r = requests.get(f"{base}{path}", timeout=10)
                assert r.status_code == 200, (path, r.status_code, r.text[:200])
                assert time.monotonic() - started < 2.0, path
        assert requests.get(f"{base}/readyz", timeout=10).json()["redis"] is True  # STS is no readiness dependency
        assert portal_json(s, base)["csrf_token"] == portal["csrf_token"]  # sign-in and portal are served too

        busy = [(sec, r) for sec, r in results]
        assert len(busy) == CLIENTS - CAP
        for sec, r in busy:
            assert r.status_code == 503 and r.json()["error"] == "sts_busy", r.text[:300]
            assert r.headers["Retry-After"] == "5"
            assert sec < 10.0  # not held until the STS timeout (30 s)
        assert sts.accepted == CAP  # the refused ones never reached STS
        assert metric(base, "bridge_sts_in_flight") == CAP
        assert metric(base, 'bridge_sts_errors_total{code="busy"}') == CLIENTS - CAP

        # The STS now drops what it holds, and every new connection: 503 sts_unavailable, not 502.
        sts.mode = "drop"
        sts.release()
        for t in clients:
            t.join(30)
        dropped = [r for _, r in results[CLIENTS - CAP:]]
        assert len(dropped) == CAP
        for r in dropped + [requests.post(url, headers=headers, cookies=s.cookies.get_dict(), timeout=60)]:
            assert r.status_code == 503 and r.json()["error"] == "sts_unavailable", r.text[:300]
            assert r.headers["Retry-After"] == "5"
        assert metric(base, "bridge_sts_in_flight") == 0

        # fail_closed (the default): an intent record went in before each STS call, then the outcome.
        records = [json.loads(x) for x in (tmp_path / "audit.jsonl").read_text().splitlines()]
        kinds = [x["type"] for x in records if x["type"].startswith("credentials")]
        assert kinds.count("credentials_intent") == kinds.count("credentials") == CLIENTS + 1
        assert sorted({x["error"] for x in records if x["type"] == "credentials"}) == ["sts_busy", "sts_unavailable"]
    finally:
        sts.close()

    # `bridge serve` made its metrics folder under TMPDIR; it is gone once the server stops.
    assert len(list(tmpdir.glob("bridge-metrics-*"))) == 1
    stop(proc)
    assert proc.returncode == 0 and list(tmpdir.glob("bridge-metrics-*")) == []
