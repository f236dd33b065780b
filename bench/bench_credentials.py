"""Baseline: POST /credentials/<grant> (mint + STS on local moto) vs /healthz, on the gunicorn config.

Starts its own redis-server, moto_server and `bridge serve` (deploy/gunicorn.conf.py) on free
loopback ports, signs in once through the dev connector, then runs both request kinds in
alternating rounds from one client process (so machine noise hits both alike) and reports
throughput, p50/p99 latency, their ratio, and the bytes one signed-in session takes in Redis.

    .venv/bin/python bench/bench_credentials.py [--seconds 5] [--rounds 3] [--clients 8]
"""

from __future__ import annotations

import argparse
import os
import platform
import re
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import redis
import requests

ROOT = Path(__file__).resolve().parent.parent


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait(url: str, seconds: float = 30) -> None:
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        try:
            requests.get(url, timeout=1)
            return
        except requests.RequestException:
            time.sleep(0.1)
    raise SystemExit(f"{url} did not come up")


def load(fn, clients: int, seconds: float) -> tuple[float, list[float], int]:  # type: ignore[no-untyped-def]
    """Run ``fn(session)`` from ``clients`` threads for ``seconds``; return (req/s, latencies ms, errors)."""
    lat: list[float] = []
    errors = 0
    lock = threading.Lock()
    stop = time.monotonic() + seconds

    def worker() -> None:
        nonlocal errors
        s = requests.Session()
        mine: list[float] = []
        bad = 0
        while time.monotonic() < stop:
            t0 = time.perf_counter()
            ok = fn(s)
            mine.append((time.perf_counter() - t0) * 1000)
            bad += 0 if ok else 1
        with lock:
            lat.extend(mine)
            errors += bad

    start = time.monotonic()
    threads = [threading.Thread(target=worker) for _ in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return len(lat) / (time.monotonic() - start), lat, errors


def pct(values: list[float], p: float) -> float:
    return statistics.quantiles(values, n=100)[int(p) - 1] if len(values) >= 2 else float("nan")


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--seconds", type=float, default=5.0, help="per round and kind")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--clients", type=int, default=8)
    ap.add_argument("--workers", type=int, default=2)
    args = ap.parse_args()

    tmp = Path(tempfile.mkdtemp(prefix="bridge-bench-"))
    procs: list[subprocess.Popen[bytes]] = []
    try:
        rport, sport, bport = free_port(), free_port(), free_port()
        procs.append(subprocess.Popen([shutil.which("redis-server") or "redis-server", "--bind", "127.0.0.1",
                                       "--port", str(rport), "--save", "", "--appendonly", "no", "--dir", str(tmp)],
                                      stdout=subprocess.DEVNULL))
        moto = Path(sys.executable).parent / "moto_server"
        procs.append(subprocess.Popen([str(moto), "-H", "127.0.0.1", "-p", str(sport)], stdout=subprocess.DEVNULL,
                                      stderr=subprocess.DEVNULL))
        subprocess.run([sys.executable, "-m", "bridge.cli", "keys", "generate", "--dir", str(tmp / "keys")],
                       check=True, stdout=subprocess.DEVNULL)
        cfg = tmp / "bench.yaml"
        cfg.write_text(f"""
base_url: http://127.0.0.1:{bport}
listen: 127.0.0.1:{bport}
insecure_dev_login: true
log_level: WARNING
redis: {{url: "redis://127.0.0.1:{rport}/0"}}
issuer: {{url: https://bridge.example.com, keys_dir: {tmp / 'keys'}}}
aws: {{sts_endpoint_url: "http://127.0.0.1:{sport}"}}
connectors:
  - {{id: dev, type: dev, users: [{{subject: alice, email: alice@example.com, name: Alice Example,
      groups: [aws-admins], claims: {{department: Platform}}, mfa: true}}]}}
mapping:
  rules:
    - name: admins
      match: {{group: aws-admins}}
      grants:
        - role_arn: "arn:aws:iam::123456789012:role/Admin"
          tags: {{Email: "{{email}}", Department: "{{claims.department}}"}}
          transitive_tags: [Department]
          source_identity: "{{email}}"
""")
        env = {**os.environ, "BRIDGE_ACCESS_LOG": "0"}
        procs.append(subprocess.Popen([sys.executable, "-m", "bridge.cli", "serve", "--config", str(cfg),
                                       "--workers", str(args.workers)], env=env, stderr=subprocess.DEVNULL))
        base = f"http://127.0.0.1:{bport}"
        wait(f"{base}/healthz")
        wait(f"http://127.0.0.1:{sport}/")

        s = requests.Session()
        r = s.get(f"{base}/login/dev", allow_redirects=False, timeout=10)
        state = re.search(r"state=([\w-]+)", r.headers["location"])
        assert state
        s.post(f"{base}/callback/dev", data={"state": state[1], "user": "alice"}, timeout=10)
        portal = s.get(f"{base}/portal", headers={"Accept": "application/json"}, timeout=10).json()
        gid, csrf = portal["grants"][0]["id"], portal["csrf_token"]
        cookie = s.cookies.get("bridge_session")

        def creds(sess: requests.Session) -> bool:
            r = sess.post(f"{base}/credentials/{gid}", cookies={"bridge_session": cookie},
                          headers={"Accept": "application/json", "X-CSRF-Token": csrf}, timeout=30)
            return r.status_code == 200 and "SessionToken" in r.text

        def health(sess: requests.Session) -> bool:
            return sess.get(f"{base}/healthz", timeout=30).status_code == 200

        creds(requests.Session())  # warm every code path once
        results: dict[str, list[tuple[float, list[float], int]]] = {"credentials": [], "healthz": []}
        for _ in range(args.rounds):
            results["healthz"].append(load(health, args.clients, args.seconds))
            results["credentials"].append(load(creds, args.clients, args.seconds))

        rc = redis.Redis.from_url(f"redis://127.0.0.1:{rport}/0")
        (key,) = [k for k in rc.scan_iter(match="bridge:session:*")]
        mem = int(rc.memory_usage(key) or 0)
        raw = int(rc.strlen(key))

        print(f"machine: {platform.machine()} {os.cpu_count()} cores, Python {platform.python_version()}; "
              f"gunicorn gthread workers={args.workers} threads=8; {args.clients} client threads in one process; "
              f"{args.rounds} alternating rounds x {args.seconds}s each")
        figures = {}
        for kind, runs in results.items():
            rps = statistics.median(r[0] for r in runs)
            lat = [x for r in runs for x in r[1]]
            errs = sum(r[2] for r in runs)
            figures[kind] = rps
            print(f"{kind:12s} {rps:8.1f} req/s  p50 {pct(lat, 50):7.2f} ms  p99 {pct(lat, 99):7.2f} ms  "
                  f"requests {len(lat)}  errors {errs}")
            print(f"BENCH {kind}_rps {rps:.1f} req/s")
            print(f"BENCH {kind}_p50 {pct(lat, 50):.2f} ms")
            print(f"BENCH {kind}_p99 {pct(lat, 99):.2f} ms")
            print(f"BENCH {kind}_errors {errs} count")
        print(f"BENCH credentials_to_healthz_ratio {figures['credentials'] / figures['healthz']:.3f} ratio")
        print(f"BENCH session_redis_memory {mem} bytes")
        print(f"BENCH session_json_size {raw} bytes")
        return 0
    finally:
        for p in reversed(procs):
            p.terminate()
        for p in procs:
            try:
                p.wait(10)
            except subprocess.TimeoutExpired:
                p.kill()
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
