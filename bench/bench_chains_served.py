"""A cached chained credential against a cached direct one and /healthz, on the real `bridge serve`.

Starts its own redis-server, moto_server and one `bridge serve` (deploy/gunicorn.conf.py, credential
cache on, rate limits on and never hit) on free loopback ports, signs in once through the dev
connector, fills the cache for a direct grant (sandbox/Admin) and a chained one (workloads/Developer
through hub/BridgeHub), then drives the server with `ab -k` (a C keep-alive load generator, so the
client's own cost stays out of the figures) in interleaved rounds of the three request kinds. Reports
req/s, mean latency, the server's CPU per request (utime+stime of gunicorn and its workers, read from
/proc), and the ratios. Target: a cached chained credential costs the same as a cached direct one,
both >= 0.5 x /healthz throughput in the same run.

    .venv/bin/python bench/bench_chains_served.py [--requests 3000] [--rounds 5] [--concurrency 8]
"""

from __future__ import annotations

import argparse
import os
import platform
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

import requests
from _peers import free_port, start_redis, stop_processes, stub, wait  # noqa: E402 - bench/ is on sys.path when run

TARGET = 0.5
# High enough that the one user and one client IP are never refused, so every request still pays
# for the limiter's Redis round trip, as each production request does.
RATE_LIMIT = 10_000_000
KINDS = ("healthz", "cached_direct", "cached_chained")


def config(tmp: Path, port: int, redis_url: str, sts_port: int) -> Path:
    path = tmp / "bench.yaml"
    grant = ('tags: {Email: "{email}", Department: "{claims.department}"}, transitive_tags: [Department], '
             'source_identity: "{email}"')
    path.write_text(f"""
base_url: http://127.0.0.1:{port}
listen: 127.0.0.1:{port}
credential_cache: {{enabled: true}}
rate_limits: {{sign_in_per_minute: {RATE_LIMIT}, credentials_per_minute: {RATE_LIMIT}}}  # on, never hit
insecure_dev_login: true
log_level: WARNING
redis: {{url: "{redis_url}"}}
issuer: {{url: https://bridge.example.com, keys_dir: {tmp / 'keys'}}}
aws: {{sts_endpoint_url: "http://127.0.0.1:{sts_port}", sts_max_concurrency: 8}}
connectors:
  - {{id: dev, type: dev, users: [{{subject: alice, email: alice@example.com, name: Alice Example,
      groups: [dev], claims: {{department: Platform}}, mfa: true}}]}}
mapping:
  accounts:
    "111111111111": {{alias: hub, roles: {{BridgeHub: {{}}}}}}
    "210987654321": {{alias: workloads, roles: {{Developer: {{via: hub/BridgeHub}}}}}}
    "123456789012": {{alias: sandbox, roles: {{Admin: {{}}}}}}
  rules:
    - name: devs
      match: {{group: dev}}
      grants:
        - {{account: sandbox, role: Admin, {grant}}}
        - {{account: workloads, role: Developer, {grant}}}
""")
    return path


def server_cpu_seconds(pgid: int) -> float:
    """utime+stime of every live process in ``pgid`` (gunicorn's master and workers)."""
    total = 0
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[2]) == pgid:  # fields after the command: state ppid pgrp ... utime(11) stime(12)
            total += int(fields[11]) + int(fields[12])
    return total / os.sysconf("SC_CLK_TCK")


def ab(url: str, n: int, c: int, headers: dict[str, str], body: Path | None) -> tuple[float, float, int]:
    """Run ``ab -k``; return (req/s, mean ms per request, failed + non-2xx)."""
    cmd = ["ab", "-k", "-q", "-n", str(n), "-c", str(c)]
    for k, v in headers.items():
        cmd += ["-H", f"{k}: {v}"]
    if body is not None:
        cmd += ["-p", str(body), "-T", "application/x-www-form-urlencoded"]
    out = subprocess.run(cmd + [url], capture_output=True, text=True, check=True).stdout
    rps = float(re.search(r"Requests per second:\s+([\d.]+)", out)[1])  # type: ignore[index]
    mean = float(re.search(r"Time per request:\s+([\d.]+) \[ms\] \(mean\)", out)[1])  # type: ignore[index]
    failed = int(re.search(r"Failed requests:\s+(\d+)", out)[1])  # type: ignore[index]
    non2xx = re.search(r"Non-2xx responses:\s+(\d+)", out)
    return rps, mean, failed + (int(non2xx[1]) if non2xx else 0)


def main() -> int:  # noqa: PLR0915 - one straight-line script
    ap = argparse.ArgumentParser()
    ap.add_argument("--requests", type=int, default=3000, help="per round and kind")
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--concurrency", type=int, default=8)
    ap.add_argument("--workers", type=int, default=2)
    args = ap.parse_args()
    if not shutil.which("ab"):
        raise SystemExit("ab is missing: scripts/setup-system.sh bench installs it (apache2-utils)")
    tmp = Path(tempfile.mkdtemp(prefix="bridge-bench-chains-served-"))
    procs: list[subprocess.Popen[bytes]] = []
    stop_redis = None
    try:
        redis_url, stop_redis = start_redis(tmp / "redis")
        sport, port = free_port(), free_port()
        moto = Path(sys.executable).parent / "moto_server"
        procs.append(subprocess.Popen([str(moto), "-H", "127.0.0.1", "-p", str(sport)], stdout=subprocess.DEVNULL,
                                      stderr=subprocess.DEVNULL, start_new_session=True))
        subprocess.run([sys.executable, "-m", "bridge", "keys", "generate", "--dir", str(tmp / "keys")],
                       check=True, stdout=subprocess.DEVNULL)
        serve = subprocess.Popen([sys.executable, "-m", "bridge", "serve", "--config",
                                  str(config(tmp, port, redis_url, sport)), "--workers", str(args.workers)],
                                 env={**os.environ, "BRIDGE_ACCESS_LOG": "0"}, stdout=subprocess.DEVNULL,
                                 stderr=subprocess.DEVNULL,
                                 start_new_session=True)
        procs.append(serve)
        base = f"http://127.0.0.1:{port}"
        wait(f"{base}/healthz")
        wait(f"http://127.0.0.1:{sport}/")

        s = requests.Session()
        r = s.get(f"{base}/login/dev", allow_redirects=False, timeout=10)
        state = re.search(r"state=([\w-]+)", r.headers["location"])
        assert state
        s.post(f"{base}/callback/dev", data={"state": state[1], "user": "alice"}, timeout=10)
        portal = s.get(f"{base}/portal", headers={"Accept": "application/json"}, timeout=10).json()
        by_role = {g["role_arn"].rsplit("/", 1)[1]: g for g in portal["grants"]}
        direct, chained = by_role["Admin"], by_role["Developer"]
        assert not direct.get("hubs") and chained.get("hubs"), portal["grants"]
        headers = {"Accept": "application/json", "X-CSRF-Token": portal["csrf_token"],
                   "Cookie": f"bridge_session={s.cookies.get('bridge_session')}"}
        body = tmp / "empty"
        body.write_bytes(b"")
        targets = {"healthz": (f"{base}/healthz", {}, None),
                   "cached_direct": (f"{base}/credentials/{direct['id']}", headers, body),
                   "cached_chained": (f"{base}/credentials/{chained['id']}", headers, body)}
        for kind in ("cached_direct", "cached_chained"):  # fill the cache; check the answer is credentials
            resp = s.post(targets[kind][0], headers=headers, timeout=30)
            assert resp.status_code == 200 and "SessionToken" in resp.text, (kind, resp.status_code, resp.text[:200])
        for url, h, b in targets.values():  # warm every code path in every worker
            ab(url, 200, args.concurrency, h, b)

        runs: dict[str, list[tuple[float, float, int, float]]] = {k: [] for k in KINDS}
        for _ in range(args.rounds):
            for kind in KINDS:
                url, h, b = targets[kind]
                cpu0 = server_cpu_seconds(serve.pid)
                rps, mean, errors = ab(url, args.requests, args.concurrency, h, b)
                cpu_ms = (server_cpu_seconds(serve.pid) - cpu0) * 1000 / args.requests
                runs[kind].append((rps, mean, errors, cpu_ms))

        print(f"machine: {platform.machine()} {os.cpu_count()} cores (shared, noisy), Python "
              f"{platform.python_version()}; gunicorn gthread workers={args.workers}; ab -k -c {args.concurrency}; "
              f"{args.rounds} interleaved rounds x {args.requests} requests per kind")
        print(f"rate limits on ({RATE_LIMIT}/min: counted in Redis on every request, never refused); "
              "credential cache on, filled before the measured rounds")
        stub("sts", "moto_server on loopback instead of AWS STS",
             "no AWS account in a benchmark; the cached figures make no STS call")
        stub("upstream-idp", "the dev connector for the one sign-in", "sign-in is not measured here")
        figures: dict[str, float] = {}
        errors_total = 0
        for kind in KINDS:
            rps = statistics.median(r[0] for r in runs[kind])
            mean = statistics.median(r[1] for r in runs[kind])
            cpu = statistics.median(r[3] for r in runs[kind])
            errs = sum(r[2] for r in runs[kind])
            errors_total += errs
            figures[kind] = rps
            print(f"{kind:15s} {rps:8.1f} req/s  mean {mean:6.2f} ms  server CPU {cpu:5.2f} ms/req  errors {errs}")
            print(f"BENCH served_{kind}_rps {rps:.1f} req/s")
            print(f"BENCH served_{kind}_mean {mean:.2f} ms")
            print(f"BENCH served_{kind}_server_cpu {cpu:.3f} ms/req")
            print(f"BENCH served_{kind}_errors {errs} count")
        # per-round ratios, so a noisy round hits all three kinds of that round alike
        def ratio(a: str, b: str) -> float:
            return statistics.median(x[0] / y[0] for x, y in zip(runs[a], runs[b], strict=True))
        chained_h, direct_h, chained_d = (ratio("cached_chained", "healthz"), ratio("cached_direct", "healthz"),
                                          ratio("cached_chained", "cached_direct"))
        print(f"BENCH served_cached_direct_to_healthz_ratio {direct_h:.3f} ratio")
        print(f"BENCH served_cached_chained_to_healthz_ratio {chained_h:.3f} ratio")
        print(f"BENCH served_cached_chained_to_direct_ratio {chained_d:.3f} ratio")
        print(f"BENCH served_cached_to_healthz_target {TARGET:.1f} ratio")
        return 0 if chained_h >= TARGET and direct_h >= TARGET and errors_total == 0 else 1
    finally:
        stop_processes(procs)
        if stop_redis:
            stop_redis()
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
