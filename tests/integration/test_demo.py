"""`make demo`'s program, end to end: `bridge demo --smoke` starts Redis, moto, the demo IdP and the
bridge under gunicorn, signs in, fetches credentials, calls STS with them, and stops everything."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import redis
import requests

from bridge.runtime.localredis import free_port
from tests.conftest import ROOT

pytestmark = pytest.mark.integration


def test_demo_smoke() -> None:
    out = subprocess.run([sys.executable, "-m", "bridge", "demo", "--smoke", "--port", str(free_port())],
                         cwd=ROOT, capture_output=True, text=True, timeout=180)
    assert out.returncode == 0, (out.stdout[-2000:], out.stderr[-3000:])
    assert "demo smoke ok: arn:aws:sts::123456789012:assumed-role/Admin/alice@example.com" in out.stdout
    assert "demo chain ok: arn:aws:sts::210987654321:assumed-role/Developer/alice@example.com (via hub/BridgeHub)" \
        in out.stdout
    assert "demo console ok: signed in as Admin" in out.stdout
    assert "demo console (SAML POST) ok: signed in as ReadOnly" in out.stdout
    # the demo app (config/demo.yaml apps: photos): alice's ID token of photos-spa, exchanged with a DPoP proof
    assert "demo exchange ok: arn:aws:sts::123456789012:assumed-role/Admin/photos.alice@example.com (app photos, " \
        "DPoP key " in out.stdout


def test_demo_forgets_what_an_earlier_run_left_in_redis(redis_url: str, keys_dir: Path) -> None:
    """A demo restarted on a Redis that outlived it (6379 is reused) must not hand out credentials
    cached from the earlier run's STS (the new moto answers unknown keys with its default user): its
    key prefix is emptied before the bridge starts; nothing else in that Redis is touched."""
    from bridge.runtime.demo import forget_earlier_runs

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


def _descendants(root: int) -> list[int]:
    """Every live process below ``root`` (from /proc: each one's parent)."""
    parents: dict[int, int] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            parents[int(entry.name)] = int(stat.rsplit(")", 1)[1].split()[1])
    found, todo = [], [root]
    while todo:
        parent = todo.pop()
        kids = [pid for pid, ppid in parents.items() if ppid == parent]
        found += kids
        todo += kids
    return found


def _group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    return True


def _port_free(port: int) -> bool:
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def test_ctrl_c_ends_every_child_group_even_a_stuck_worker_and_frees_the_port() -> None:
    """Issue 23 #7: Ctrl-C on `bridge demo` could leave a gunicorn worker hung in its signal handler,
    holding the port ("Connection in use" at the next `make demo`). The terminal's Ctrl-C signals its
    whole foreground group; here that is `bridge demo` alone: each child runs in a group of its own,
    and the demo ends them as groups — SIGTERM, a bounded wait, then SIGKILL. A worker stopped with
    SIGSTOP stands in for the hung one: it takes no signal but SIGKILL."""
    port = free_port()
    demo = subprocess.Popen([sys.executable, "-m", "bridge", "demo", "--port", str(port)], cwd=ROOT,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True)  # a shell job
    seen: set[int] = set()
    try:
        deadline = time.monotonic() + 120
        while True:
            assert demo.poll() is None, demo.communicate(timeout=30)[0][-3000:]
            assert time.monotonic() < deadline, "the demo did not come up"
            try:
                if requests.get(f"http://127.0.0.1:{port}/healthz", timeout=1).status_code == 200:
                    break
            except requests.RequestException:
                time.sleep(0.3)
        children = _descendants(demo.pid)
        direct = [p for p in children if int(Path(f"/proc/{p}/stat").read_text().rsplit(")", 1)[1].split()[1])
                  == demo.pid]
        seen = {os.getpgid(p) for p in children}
        assert len(direct) >= 3, direct  # the STS, the bridge, the console stand-in (and the IdP, Redis)
        assert all(os.getpgid(p) == p for p in direct), "a child runs in the terminal's process group"
        master = next(p for p in direct if b"gunicorn" in Path(f"/proc/{p}/cmdline").read_bytes())
        worker = next(p for p in children if p != master and os.getpgid(p) == master
                      and int(Path(f"/proc/{p}/stat").read_text().rsplit(")", 1)[1].split()[1]) == master)
        os.kill(worker, signal.SIGSTOP)
        started = time.monotonic()
        os.killpg(demo.pid, signal.SIGINT)  # Ctrl-C
        out = demo.communicate(timeout=60)[0].decode()
        assert time.monotonic() - started < 30, out[-2000:]  # bounded: 8 s of grace, then SIGKILL
        assert demo.returncode == 0, out[-2000:]
        assert "stopped with SIGKILL (did not end on SIGTERM): bridge" in out
        assert [g for g in seen if _group_alive(g)] == []
        assert _port_free(port)
    finally:
        for g in seen | {demo.pid}:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(g, signal.SIGKILL)
        if demo.poll() is None:
            demo.kill()
            demo.wait(10)


def test_demo_with_the_github_stand_in_signs_in_with_github() -> None:
    """``DEMO_GITHUB=stand-in make demo``: the GitHub connector on the stand-in, octocat (team acme/platform)
    gets the sandbox Admin role of the demo's github-platform-team rule."""
    from tests.integration.test_github_login import authorize

    port = free_port()
    demo = subprocess.Popen([sys.executable, "-m", "bridge", "demo", "--port", str(port)], cwd=ROOT,
                            env={**os.environ, "DEMO_GITHUB": "stand-in"},
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        while True:
            assert demo.poll() is None, demo.communicate()[0][-3000:]
            assert time.monotonic() < deadline, "the demo did not come up"
            try:
                if requests.get(f"{base}/healthz", timeout=1).status_code == 200:
                    break
            except requests.RequestException:
                time.sleep(0.3)
        s = requests.Session()
        assert "GitHub (stand-in)" in s.get(f"{base}/", timeout=10).text
        r = s.get(f"{base}/login/github", allow_redirects=False, timeout=10)
        assert r.status_code in (302, 303), r.text[:300]
        portal = s.get(authorize(r.headers["Location"], "octocat", s=s), headers={"Accept": "application/json"},
                       timeout=20)
        assert portal.status_code == 200, portal.text[:300]
        doc = portal.json()
        assert doc["identity"]["email"] == "octocat@example.com"
        assert "arn:aws:iam::123456789012:role/Admin" in {g["role_arn"] for g in doc["grants"]}
        os.killpg(demo.pid, signal.SIGINT)  # Ctrl-C
        out = demo.communicate(timeout=60)[0].decode()
        assert demo.returncode == 0 and '"GitHub (stand-in)": type octocat' in out, out[-2000:]
    finally:
        if demo.poll() is None:  # a failed assertion: Ctrl-C first, so the demo stops its children
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(demo.pid, signal.SIGINT)
            with contextlib.suppress(subprocess.TimeoutExpired):
                demo.communicate(timeout=60)
        if demo.poll() is None:
            demo.kill()
            demo.wait(10)
