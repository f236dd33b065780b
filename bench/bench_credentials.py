"""POST /credentials/<grant> freshly minted (mint + STS on local moto) and from the server-side cache,
beside /healthz, on the gunicorn config; and `bridge credential-process` with a warm local cache.

Starts its own redis-server, moto_server and two `bridge serve` (deploy/gunicorn.conf.py) on free
loopback ports — the same config, one with the credential cache off — signs in once on each
through the dev connector, then runs the three request kinds in alternating rounds from one
client process (so machine noise hits all alike) and reports throughput, p50/p99 latency, the
ratios, and the bytes one signed-in session takes in Redis. Targets: cache hit within
2x of /healthz throughput; credential-process warm <= 150 ms.

    .venv/bin/python bench/bench_credentials.py [--seconds 5] [--rounds 3] [--clients 8]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import redis
import requests
from _peers import free_port, start_redis, stub, wait  # noqa: E402 - bench/ is on sys.path when run

# High enough that the benchmark's one user and one client IP are never refused, so every request
# still pays for the limiter's Redis round trip, as each production request does.
RATE_LIMIT = 10_000_000


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


def credential_process_warm_ms(base: str, s: requests.Session, csrf: str, tmp: Path, runs: int = 15) -> list[float]:
    """Wall time of `bridge credential-process` once its local cache is warm (a device login first)."""
    d = requests.post(f"{base}/oauth/device_authorization", data={"client_id": "bridge-cli"}, timeout=10).json()
    s.post(f"{base}/device", data={"csrf_token": csrf, "user_code": d["user_code"], "decision": "approve",
                                   "confirm": "yes"}, timeout=10)
    tok = requests.post(f"{base}/oauth/token", data={"grant_type": "urn:ietf:params:oauth:grant-type:device_code",
                                                     "client_id": "bridge-cli", "device_code": d["device_code"]},
                        timeout=10).json()
    env = {**os.environ, "XDG_CONFIG_HOME": str(tmp / "cfg"), "XDG_CACHE_HOME": str(tmp / "cache")}
    (tmp / "cfg" / "federation-bridge").mkdir(parents=True)
    (tmp / "cfg" / "federation-bridge" / "tokens.json").write_text(json.dumps(
        {base: {"access_token": tok["access_token"], "expires_at": int(time.time()) + tok["expires_in"]}}))
    cmd = [str(Path(sys.executable).parent / "bridge"), "credential-process", "--url", base, "--role",
           "arn:aws:iam::123456789012:role/Admin"]
    subprocess.run(cmd, env=env, check=True, capture_output=True)  # fills the local cache
    out = []
    for _ in range(runs):
        t0 = time.perf_counter()
        subprocess.run(cmd, env=env, check=True, capture_output=True)
        out.append((time.perf_counter() - t0) * 1000)
    return out


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--seconds", type=float, default=5.0, help="per round and kind")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--clients", type=int, default=8)
    ap.add_argument("--workers", type=int, default=2)
    args = ap.parse_args()

    tmp = Path(tempfile.mkdtemp(prefix="bridge-bench-"))
    procs: list[subprocess.Popen[bytes]] = []
    stop_redis = None
    try:
        redis_url, stop_redis = start_redis(tmp / "redis")
        sport, bport, fport = free_port(), free_port(), free_port()
        moto = Path(sys.executable).parent / "moto_server"
        procs.append(subprocess.Popen([str(moto), "-H", "127.0.0.1", "-p", str(sport)], stdout=subprocess.DEVNULL,
                                      stderr=subprocess.DEVNULL))
        subprocess.run([sys.executable, "-m", "bridge", "keys", "generate", "--dir", str(tmp / "keys")],
                       check=True, stdout=subprocess.DEVNULL)
        def config(port: int, cache: bool) -> Path:
            path = tmp / f"bench-{port}.yaml"
            path.write_text(f"""
base_url: http://127.0.0.1:{port}
listen: 127.0.0.1:{port}
credential_cache: {{enabled: {str(cache).lower()}}}
rate_limits: {{sign_in_per_minute: {RATE_LIMIT}, credentials_per_minute: {RATE_LIMIT}}}  # on, never hit
insecure_dev_login: true
log_level: WARNING
redis: {{url: "{redis_url}"}}
issuer: {{url: https://bridge.example.com, keys_dir: {tmp / 'keys'}}}
# sts_max_concurrency = threads: a throughput figure, never cut by the bulkhead (bench_bulkhead.py is that)
aws: {{sts_endpoint_url: "http://127.0.0.1:{sport}", sts_max_concurrency: 8}}
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
            return path

        env = {**os.environ, "BRIDGE_ACCESS_LOG": "0"}
        for port, cache in ((bport, True), (fport, False)):
            procs.append(subprocess.Popen([sys.executable, "-m", "bridge", "serve", "--config",
                                           str(config(port, cache)), "--workers", str(args.workers)], env=env,
                                          stderr=subprocess.DEVNULL))
        base, fresh_base = f"http://127.0.0.1:{bport}", f"http://127.0.0.1:{fport}"
        wait(f"{base}/healthz")
        wait(f"{fresh_base}/healthz")
        wait(f"http://127.0.0.1:{sport}/")

        def sign_in(url: str) -> tuple[requests.Session, str, str, str]:
            s = requests.Session()
            r = s.get(f"{url}/login/dev", allow_redirects=False, timeout=10)
            state = re.search(r"state=([\w-]+)", r.headers["location"])
            assert state
            s.post(f"{url}/callback/dev", data={"state": state[1], "user": "alice"}, timeout=10)
            portal = s.get(f"{url}/portal", headers={"Accept": "application/json"}, timeout=10).json()
            return s, portal["grants"][0]["id"], portal["csrf_token"], str(s.cookies.get("bridge_session"))

        s, gid, csrf, cookie = sign_in(base)
        _, fgid, fcsrf, fcookie = sign_in(fresh_base)

        def creds_at(url: str, g: str, c: str, ck: str):  # type: ignore[no-untyped-def]
            def call(sess: requests.Session) -> bool:
                r = sess.post(f"{url}/credentials/{g}", cookies={"bridge_session": ck},
                              headers={"Accept": "application/json", "X-CSRF-Token": c}, timeout=30)
                return r.status_code == 200 and "SessionToken" in r.text
            return call

        cached, fresh = creds_at(base, gid, csrf, cookie), creds_at(fresh_base, fgid, fcsrf, fcookie)

        def health(sess: requests.Session) -> bool:
            return sess.get(f"{base}/healthz", timeout=30).status_code == 200

        cached(requests.Session())  # warm every code path once (and fill the cache)
        fresh(requests.Session())
        results: dict[str, list[tuple[float, list[float], int]]] = {
            "healthz": [], "credentials_cached": [], "credentials_fresh": []}
        for _ in range(args.rounds):
            results["healthz"].append(load(health, args.clients, args.seconds))
            results["credentials_cached"].append(load(cached, args.clients, args.seconds))
            results["credentials_fresh"].append(load(fresh, args.clients, args.seconds))
        process_ms = credential_process_warm_ms(base, s, csrf, tmp)

        rc = redis.Redis.from_url(redis_url)
        keys = list(rc.scan_iter(match="bridge:session:*"))  # one signed-in session per server
        mem = int(statistics.median(int(rc.memory_usage(k) or 0) for k in keys))
        raw = int(statistics.median(int(rc.strlen(k)) for k in keys))

        print(f"machine: {platform.machine()} {os.cpu_count()} cores, Python {platform.python_version()}; "
              f"gunicorn gthread workers={args.workers} threads=8; {args.clients} client threads in one process; "
              f"{args.rounds} alternating rounds x {args.seconds}s each")
        print(f"rate limits on, as in production (sign-in and credentials {RATE_LIMIT}/min: counted in Redis on "
              "every request, never refused)")
        stub("sts", "moto_server on loopback instead of AWS STS",
             "no AWS account in a benchmark; the round trip to AWS is not in the fresh figures")
        stub("upstream-idp", "the dev connector for the one sign-in per server",
             "sign-in is not measured here; no IdP re-verification runs during the measured requests")
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
        print(f"BENCH cached_to_healthz_ratio {figures['credentials_cached'] / figures['healthz']:.3f} ratio")
        print(f"BENCH fresh_to_healthz_ratio {figures['credentials_fresh'] / figures['healthz']:.3f} ratio")
        print(f"BENCH cached_to_fresh_ratio {figures['credentials_cached'] / figures['credentials_fresh']:.3f} ratio")
        print(f"BENCH credential_process_warm_p50 {statistics.median(process_ms):.1f} ms")
        print(f"BENCH credential_process_warm_max {max(process_ms):.1f} ms")
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
        if stop_redis:
            stop_redis()
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
