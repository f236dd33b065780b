"""Helpers the benchmarks share: the repository on sys.path, free loopback ports and a local
redis-server (both from ``bridge.runtime.localredis``, as the tests and the demo use), waiting for a server
to answer, and the ``STUB`` line every stand-in a benchmark uses must print."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import requests

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bridge.runtime.localredis import LocalRedis, free_port, start_redis  # noqa: E402

__all__ = ["ROOT", "LocalRedis", "free_port", "start_redis", "stop_processes", "stub", "wait"]


def wait(url: str, seconds: float = 30) -> None:
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        try:
            requests.get(url, timeout=1)
            return
        except requests.RequestException:
            time.sleep(0.1)
    raise SystemExit(f"{url} did not come up")


def stub(name: str, what: str, why: str) -> None:
    """Say, in the output, that a figure was measured with a stand-in instead of the production part."""
    print(f"STUB {name}: {what} ({why})", flush=True)


def stop_processes(procs: list[subprocess.Popen[bytes]], seconds: float = 20) -> None:
    """Stop what a benchmark started, newest first: SIGTERM to each one's process group (``bridge
    serve`` started with ``start_new_session``: gunicorn and its workers), then SIGKILL after ``seconds``."""
    for p in reversed(procs):
        try:
            os.killpg(p.pid, signal.SIGTERM)
        except (ProcessLookupError, PermissionError):
            p.terminate()
    for p in procs:
        try:
            p.wait(seconds)
        except subprocess.TimeoutExpired:
            p.kill()
