"""Rules reload under gunicorn (`bridge serve`, 2 worker processes): every worker picks up a changed rules
file on its own, SIGHUP to the master reloads every worker, a broken file keeps the rules in force and the
log says why — and signed-in sessions survive all of it. A truncated or emptied file is refused (the
users keep their roles, /readyz and /metrics say so) until the file itself says it means it."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
import yaml

from bridge.runtime.localredis import free_port
from tests.conftest import ACCOUNT, ROOT, wait_http
from tests.integration.helpers import dev_login

pytestmark = pytest.mark.integration
ADMIN = f"arn:aws:iam::{ACCOUNT}:role/Admin"
READONLY = f"arn:aws:iam::{ACCOUNT}:role/ReadOnly"


def write_rules(path: Path, name: str, role: str) -> None:
    path.write_text(yaml.safe_dump([{"name": name, "match": {"group": "aws-admins"}, "grants": [{"role_arn": role}]}]),
                    encoding="utf-8")
    st = path.stat()
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000_000))


@pytest.fixture
def serve(tmp_path: Path, redis_url: str, keys_dir: Path) -> Iterator[Callable[[float], tuple[str, Any, Path]]]:
    procs: list[subprocess.Popen[bytes]] = []

    def start(interval: float) -> tuple[str, Any, Path]:
        port = free_port()
        rules = tmp_path / "rules.yaml"
        write_rules(rules, "v1", ADMIN)
        cfg = tmp_path / "bridge.yaml"
        cfg.write_text(yaml.safe_dump({
            "base_url": f"http://127.0.0.1:{port}", "listen": f"127.0.0.1:{port}", "insecure_dev_login": True,
            "redis": {"url": redis_url, "key_prefix": f"reload{time.monotonic_ns()}:"},
            "issuer": {"url": "https://bridge.example.com", "keys_dir": str(keys_dir)},
            "connectors": [{"id": "dev", "type": "dev", "users": [
                {"subject": "alice", "email": "alice@example.com", "groups": ["aws-admins"]}]}],
            "mapping": {"rules_file": "rules.yaml", "reload_interval": interval}}), encoding="utf-8")
        log = (tmp_path / "server.log").open("wb")
        p = subprocess.Popen([sys.executable, "-m", "bridge", "serve", "--config", str(cfg), "--workers", "2"],
                             cwd=ROOT, env={**os.environ, "BRIDGE_ACCESS_LOG": "0"}, stdout=log, stderr=log)
        procs.append(p)
        base = f"http://127.0.0.1:{port}"
        wait_http(f"{base}/healthz", 30)
        return base, p, rules

    yield start
    for p in procs:
        p.terminate()
        p.wait(20)


def rules_seen(base: str, cookie: str, n: int = 16) -> set[str]:
    """The rule names /portal/why reports, over ``n`` fresh connections (so both workers answer)."""
    seen = set()
    for _ in range(n):
        r = requests.get(f"{base}/portal/why", cookies={"bridge_session": cookie},
                         headers={"Accept": "application/json", "Connection": "close"}, timeout=10)
        assert r.status_code == 200, r.text
        seen.update(x["rule"] for x in r.json()["rules"])
    return seen


def log_events(tmp_path: Path, name: str) -> list[dict[str, Any]]:
    out = []
    for line in (tmp_path / "server.log").read_text(errors="replace").splitlines():
        if line.startswith("{") and f'"event": "{name}"' in line:
            out.append(json.loads(line))
    return out


def wait_for(predicate: Callable[[], bool], seconds: float = 15) -> None:
    deadline = time.monotonic() + seconds
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError("timed out")
        time.sleep(0.1)


def worker_pids(master: int) -> list[int]:
    pids = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == master:
            pids.append(int(stat.parent.name))
    return pids


def test_each_worker_reloads_a_changed_rules_file(serve: Any, tmp_path: Path) -> None:
    base, master, rules = serve(0.2)
    wait_for(lambda: len(log_events(tmp_path, "app_started")) == 2, 60)  # both workers are up
    cookie = dev_login(base, "alice").cookies["bridge_session"]
    assert rules_seen(base, cookie) == {"v1"}
    write_rules(rules, "v2", READONLY)
    time.sleep(0.5)
    assert rules_seen(base, cookie, 24) == {"v2"}  # the same session, every worker on the new rules
    (rules).write_text("- {name: broken, match: {claim: groups, regex: '('}, grants: [{role_arn: x}]}\n")
    time.sleep(0.5)
    assert rules_seen(base, cookie, 24) == {"v2"}  # a broken file keeps the rules in force
    wait_for(lambda: len(log_events(tmp_path, "rules_reload_failed")) >= 1)
    failed = log_events(tmp_path, "rules_reload_failed")[0]
    assert failed["kept_rules"] == 1 and any("rules.yaml:rules[0].match.regex: bad regex" in p
                                             for p in failed["problems"])


def test_sighup_to_the_master_reloads_every_worker(serve: Any, tmp_path: Path) -> None:
    base, master, rules = serve(3600)  # never by the clock in this test
    wait_for(lambda: len(log_events(tmp_path, "app_started")) == 2, 60)  # both workers are up
    assert len(worker_pids(master.pid)) == 2
    cookie = dev_login(base, "alice").cookies["bridge_session"]
    write_rules(rules, "v2", READONLY)
    assert rules_seen(base, cookie) == {"v1"}
    master.send_signal(signal.SIGHUP)
    wait_for(lambda: len(log_events(tmp_path, "rules_reloaded")) == 2)
    assert {e["reason"] for e in log_events(tmp_path, "rules_reloaded")} == {"signal"}
    assert rules_seen(base, cookie, 24) == {"v2"}
    assert len(worker_pids(master.pid)) == 2 and master.poll() is None  # no worker was restarted


def write_doc(path: Path, doc: Any) -> None:
    path.write_text(doc if isinstance(doc, str) else yaml.safe_dump(doc), encoding="utf-8")
    st = path.stat()
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000_000))


def rules_status(base: str, n: int = 8) -> list[dict[str, Any]]:
    """/readyz's rules part, over ``n`` fresh connections (either worker may answer)."""
    out = []
    for _ in range(n):
        r = requests.get(f"{base}/readyz", headers={"Connection": "close"}, timeout=10)
        assert r.status_code == 200, r.text  # a refused reload never takes the instance out of rotation
        out.append(r.json()["rules"])
    return out


def failures(base: str, reason: str) -> float:
    text = requests.get(f"{base}/metrics", timeout=10).text
    prefix = f'bridge_rules_reload_failures_total{{reason="{reason}"}} '
    return sum(float(line.removeprefix(prefix)) for line in text.splitlines() if line.startswith(prefix))


def test_a_truncated_rules_file_keeps_everyones_roles_until_forced(serve: Any, tmp_path: Path) -> None:
    base, master, rules = serve(0.2)
    wait_for(lambda: len(log_events(tmp_path, "app_started")) == 2, 60)  # both workers are up
    four = [{"name": f"r{i}", "match": {"group": "aws-admins"}, "grants": [{"role_arn": role}]}
            for i, role in enumerate((ADMIN, READONLY, ADMIN, READONLY))]
    write_doc(rules, four)
    cookie = dev_login(base, "alice").cookies["bridge_session"]
    wait_for(lambda: rules_seen(base, cookie, 24) == {"r0", "r1", "r2", "r3"})
    assert {s["count"] for s in rules_status(base)} == {4}

    write_doc(rules, four[:1])  # truncated: 3 of 4 rules gone
    time.sleep(0.5)
    assert rules_seen(base, cookie, 24) == {"r0", "r1", "r2", "r3"}  # every worker kept the rules in force
    wait_for(lambda: len(log_events(tmp_path, "rules_reload_failed")) == 2)  # each worker refused it
    for st in rules_status(base):
        assert st["count"] == 4 and st["last_reload_failed"] is True and st["failure"] == "shrink"
        assert "problems" not in st  # rule text stays in the log: /readyz is unauthenticated
    failed = log_events(tmp_path, "rules_reload_failed")[0]
    assert failed["problems"] == ["mapping: 1 rule(s) where 4 are in force: dropping 75% is more than "
                                  "mapping.max_shrink (50%) allows (to mean it, write expected_rules: 1 next "
                                  "to the rules)"]
    assert failures(base, "shrink") == 2  # summed over both workers

    write_doc(rules, "")  # emptied
    time.sleep(0.5)
    assert rules_seen(base, cookie, 24) == {"r0", "r1", "r2", "r3"}
    wait_for(lambda: failures(base, "empty") == 2)

    write_doc(rules, {"expected_rules": 1, "rules": four[:1]})  # the operator means it
    time.sleep(0.5)
    assert rules_seen(base, cookie, 24) == {"r0"}
    assert all(st["count"] == 1 and st["last_reload_failed"] is False for st in rules_status(base))
    assert master.poll() is None
