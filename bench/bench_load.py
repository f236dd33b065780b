"""Load: many concurrent clients against the real `bridge serve` with local peers (Redis, moto STS).

In ``--rounds`` interleaved rounds, so machine noise hits all alike:

  healthz    GET /healthz with `ab -k` (a C client: the ceiling of the server)
  signin     sign-in (dev connector) → portal → POST /credentials (mint + STS), a new user each time,
             from ``--clients`` Python client threads in ``--client-procs`` processes (a multi-step flow
             with cookies: no C load generator does it). The client's own ceiling — the same client
             against nginx answering a constant — is measured and printed beside the figure.
  cached     POST /credentials again for the same role and duration (credential cache hits), `ab -k`

then once:

  restart    the signin flow while Redis is killed half-way and started again (AOF on) after
             ``--outage`` seconds: errors must fall inside the outage window (plus the time the
             bridge takes to notice the return), and every answer after it must be right.

Each line shows the server's CPU (gunicorn master + workers, /proc) per request or flow and, for the
`ab` kinds, the Redis round trips per request (bench/_peers.py). Then Redis memory per signed-in user
(session + cached credentials) from ``--users`` sign-ins.

    .venv/bin/python bench/bench_load.py [--seconds 20] [--requests 10000] [--clients 50] [--rounds 2]
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import redis
import requests
from _peers import (  # noqa: E402 - bench/ is on sys.path when run
    LocalRedis,
    Round,
    Server,
    Target,
    bench,
    free_port,
    machine_line,
    measure,
    parse,
    python_client_ceiling,
    stop_processes,
    stub,
    wait,
)
from _peers import report as report_ab  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
ROLE = "arn:aws:iam::123456789012:role/Admin"
POOL = 20000  # distinct users (the credential cache is per user: each sign-in flow is a new user)


def users_and_rules(pool: int) -> str:
    """Config YAML the load benchmarks share: rate limits that count but never refuse, the dev connector
    listing ``pool`` users (u00000…, admins with MFA) and one rule giving them ROLE with session tags, a
    transitive tag and a source identity (every flow mints the full token)."""
    users = ", ".join(f"{{subject: u{k:05d}, email: u{k:05d}@example.com, groups: [aws-admins], "
                      f"claims: {{department: Platform}}, mfa: true}}" for k in range(pool))
    return f"""rate_limits: {{sign_in_per_minute: 1000000, credentials_per_minute: 1000000}}  # one client IP
connectors:
  - {{id: dev, type: dev, users: [{users}]}}
mapping:
  rules:
    - name: admins
      match: {{group: aws-admins}}
      grants:
        - role_arn: "{ROLE}"
          tags: {{Email: "{{email}}", Department: "{{claims.department}}"}}
          transitive_tags: [Department]
          source_identity: "{{email}}"
"""


def pct(values: list[float], p: float) -> float:
    return statistics.quantiles(values, n=100)[int(p) - 1] if len(values) >= 2 else float("nan")


# -- client side (runs in worker processes) --------------------------------------------------------

def sign_in(s: requests.Session, base: str, user: str) -> dict[str, Any]:
    r = s.get(f"{base}/login/dev", allow_redirects=False, timeout=30)
    r.raise_for_status()
    state = re.search(r"state=([\w-]+)", r.headers.get("location", ""))
    if not state:
        raise RuntimeError(f"login start {r.status_code}")
    r = s.post(f"{base}/callback/dev", data={"state": state[1], "user": user}, allow_redirects=False, timeout=30)
    if r.status_code != 303:
        raise RuntimeError(f"callback {r.status_code}")
    r = s.get(f"{base}/portal", headers={"Accept": "application/json"}, timeout=30)
    r.raise_for_status()
    portal: dict[str, Any] = r.json()
    return portal


def credentials(s: requests.Session, base: str, portal: dict[str, Any]) -> dict[str, Any]:
    gid = next(g["id"] for g in portal["grants"] if g["role_arn"] == ROLE)
    r = s.post(f"{base}/credentials/{gid}", data={"duration": "3600"},
               headers={"Accept": "application/json", "X-CSRF-Token": portal["csrf_token"]}, timeout=30)
    if r.status_code != 200:
        raise RuntimeError(f"credentials {r.status_code}")
    doc: dict[str, Any] = r.json()
    # "Nothing wrong served": the credentials are for the role asked, complete, unexpired.
    if not (doc.get("AccessKeyId", "").startswith("ASIA") and doc.get("SessionToken") and doc.get("Expiration")):
        raise RuntimeError("credentials incomplete")
    return doc


def client_proc(kind: str, base: str, threads: int, seconds: float, start_at: float, out: Any, tag: int,
                first: int, stride: int, offset: int) -> None:
    """One client process: ``threads`` loops of ``kind`` until ``start_at + seconds``; client ``first + i``
    signs in as users ``offset + first + i + n * stride`` (all distinct)."""
    results: list[tuple[float, float, bool, str]] = []  # (t_start, ms, ok, error)
    lock = threading.Lock()

    def loop(i: int) -> None:
        s = requests.Session()
        mine: list[tuple[float, float, bool, str]] = []
        portal = None
        n = 0
        while time.time() < start_at:
            time.sleep(0.005)
        me = first + i
        if kind == "cached":
            portal = sign_in(s, base, f"u{(offset + me) % POOL:05d}")
            credentials(s, base, portal)
        end = start_at + seconds
        while time.time() < end:
            t0 = time.time()
            p0 = time.perf_counter()
            err = ""
            try:
                if kind == "healthz":
                    ok = s.get(f"{base}/healthz", timeout=30).status_code == 200
                elif kind == "cached":
                    assert portal is not None
                    credentials(s, base, portal)
                    ok = True
                else:
                    s.cookies.clear()
                    user = f"u{(offset + me + n * stride) % POOL:05d}"
                    n += 1
                    credentials(s, base, sign_in(s, base, user))
                    ok = True
            except Exception as e:  # noqa: BLE001 - every failure counts as an error of the run
                ok, err = False, str(e)[:80]
                time.sleep(0.05)  # do not spin on a refused connection
            mine.append((t0, (time.perf_counter() - p0) * 1000, ok, err))
        with lock:
            results.extend(mine)

    ts = [threading.Thread(target=loop, args=(i,)) for i in range(threads)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    out.put((tag, results))


def run_phase(kind: str, base: str, clients: int, procs: int, seconds: float, offset: int = 0,
              during: Any = None) -> tuple[float, list[tuple[float, float, bool, str]], float]:
    q: Any = mp.get_context("fork").Queue()
    start_at = time.time() + 1.0
    per = [clients // procs + (1 if i < clients % procs else 0) for i in range(procs)]
    firsts = [sum(per[:i]) for i in range(procs)]
    ps = [mp.get_context("fork").Process(target=client_proc, args=(kind, base, n, seconds, start_at, q, i,
                                                                   firsts[i], clients, offset))
          for i, n in enumerate(per)]
    for p in ps:
        p.start()
    if during is not None:
        during(start_at)
    results: list[tuple[float, float, bool, str]] = []
    for _ in ps:
        results.extend(q.get()[1])
    for p in ps:
        p.join()
    ok = sum(1 for r in results if r[2])
    return ok / seconds, results, start_at


# -- server side -------------------------------------------------------------------------------

def main() -> int:
    global POOL  # noqa: PLW0603 - --pool sets it; the client processes (forked) read it
    ap = argparse.ArgumentParser()
    ap.add_argument("--seconds", type=float, default=20.0, help="length of each Python-client phase")
    ap.add_argument("--requests", type=int, default=10000, help="requests per ab round")
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--clients", type=int, default=50)
    ap.add_argument("--client-procs", type=int, default=2)
    ap.add_argument("--workers", type=int, default=2, help="gunicorn worker processes")
    ap.add_argument("--threads", type=int, default=8, help="gunicorn threads per worker")
    ap.add_argument("--max-requests", type=int, default=0, help="gunicorn max_requests (0 = no recycling)")
    ap.add_argument("--outage", type=float, default=3.0, help="seconds Redis stays down in the restart phase")
    ap.add_argument("--users", type=int, default=2000, help="sign-ins (distinct users) for the memory figure")
    ap.add_argument("--pool", type=int, default=POOL, help="users the dev connector lists")
    args = parse(ap, seconds=1.0, requests=100, rounds=1, clients=4, client_procs=1, outage=0.5, users=20, pool=500,
                 workers=1)
    POOL = args.pool

    tmp = Path(tempfile.mkdtemp(prefix="bridge-load-"))
    procs: list[subprocess.Popen[bytes]] = []
    rd = LocalRedis(tmp, appendonly=True)  # restarted after a SIGKILL in the outage phase: keeps what it had
    try:
        rd.start()
        sport, bport = free_port(), free_port()
        moto = Path(sys.executable).parent / "moto_server"
        procs.append(subprocess.Popen([str(moto), "-H", "127.0.0.1", "-p", str(sport)], stdout=subprocess.DEVNULL,
                                      stderr=subprocess.DEVNULL))
        subprocess.run([sys.executable, "-m", "bridge", "keys", "generate", "--dir", str(tmp / "keys")],
                       check=True, stdout=subprocess.DEVNULL)
        cfg = tmp / "bench.yaml"
        cfg.write_text(f"""
base_url: http://127.0.0.1:{bport}
insecure_dev_login: true
log_level: WARNING
redis: {{url: "{rd.url}", socket_timeout: 1.0}}
issuer: {{url: https://bridge.example.com, keys_dir: {tmp / 'keys'}}}
aws: {{sts_endpoint_url: "http://127.0.0.1:{sport}", sts_max_attempts: 1, sts_max_concurrency: {args.threads}}}
audit: {{sink: file, path: {tmp / 'audit.jsonl'}}}
{users_and_rules(POOL)}""")
        # No worker recycling in the measured minutes: with this config's 20,000 listed demo users a
        # worker takes seconds to boot, which a real config (a few connectors and rules) does not.
        env = {**os.environ, "BRIDGE_ACCESS_LOG": "0", "BRIDGE_THREADS": str(args.threads),
               "BRIDGE_MAX_REQUESTS": str(args.max_requests)}
        env.pop("PROMETHEUS_MULTIPROC_DIR", None)
        serve = subprocess.Popen([sys.executable, "-m", "bridge", "serve", "--config", str(cfg), "--bind",
                                  f"127.0.0.1:{bport}", "--workers", str(args.workers)], env=env,
                                 stderr=subprocess.DEVNULL, start_new_session=True)
        procs.append(serve)
        base = f"http://127.0.0.1:{bport}"
        wait(f"{base}/readyz", 120)
        wait(f"http://127.0.0.1:{sport}/")
        s = requests.Session()
        credentials(s, base, sign_in(s, base, f"u{POOL - 1:05d}"))  # warm every path once

        server = Server(base, serve, cfg)
        rc = redis.Redis.from_url(rd.url)
        cs, cportal = requests.Session(), None
        cportal = sign_in(cs, base, f"u{POOL - 2:05d}")
        credentials(cs, base, cportal)  # fills the cache
        gid = next(g["id"] for g in cportal["grants"] if g["role_arn"] == ROLE)
        body = tmp / "duration"
        body.write_text("duration=3600")
        targets = [Target("healthz", f"{base}/healthz"),
                   Target("cached", f"{base}/credentials/{gid}", {
                       "Accept": "application/json", "X-CSRF-Token": cportal["csrf_token"],
                       "Cookie": f"bridge_session={cs.cookies.get('bridge_session')}"}, body)]
        ceiling = python_client_ceiling(
            lambda b: run_phase("healthz", b, args.clients, args.client_procs, min(5.0, args.seconds))[0])

        machine_line(f"gunicorn gthread workers={args.workers} threads={args.threads}; ab -k -c {args.clients} "
                     f"x {args.requests} requests; sign-in flows from {args.clients} Python clients "
                     f"({args.client_procs} processes) for {args.seconds:.0f} s; {args.rounds} interleaved rounds")
        print("rate limits on (counted in Redis on every request, never refused); credential cache on")
        stub("sts", "moto_server on loopback instead of AWS STS",
             "no AWS account in a benchmark; the round trip to AWS is not in the figures")
        stub("upstream-idp", "the dev connector (pick a user) instead of an OIDC/SAML IdP round trip",
             "measures the bridge's side of a sign-in; an IdP's own time is not the bridge's")
        figures: dict[str, float] = {}

        seen = {"hit": 0.0, "miss": 0.0}

        def cache_delta() -> str:
            text = requests.get(f"{base}/metrics", timeout=10).text
            out = []
            for result in ("hit", "miss"):
                m = re.search(rf'bridge_credential_cache_total\{{result="{result}"\}} ([\d.e+]+)', text)
                now = float(m[1]) if m else 0.0
                out.append(f"{result} {now - seen[result]:.0f}")
                seen[result] = now
            return ", ".join(out)

        def report(name: str, rps: float, results: list[tuple[float, float, bool, str]], unit: str,
                   cpu_ms: float, cache: str = "") -> None:
            lat = [r[1] for r in results if r[2]]
            errs = sum(1 for r in results if not r[2])
            print(f"{name:10s} {rps:8.1f} {unit}  p50 {pct(lat, 50):8.1f} ms  p99 {pct(lat, 99):8.1f} ms  "
                  f"server CPU {cpu_ms:6.2f} ms/flow  ok {len(lat)}  errors {errs}{cache}")
            figures[name] = rps
            bench(f"load_{name}_rate", round(rps, 1), unit)
            bench(f"load_{name}_p50", round(pct(lat, 50), 1), "ms")
            bench(f"load_{name}_p99", round(pct(lat, 99), 1), "ms")
            bench(f"load_{name}_server_cpu", round(cpu_ms, 2), "ms/flow")
            bench(f"load_{name}_errors", errs, "count")

        ab_runs: dict[str, list[Round]] = {t.name: [] for t in targets}
        signin: list[tuple[float, list[tuple[float, float, bool, str]], float]] = []
        for t in targets:  # warm every code path in every worker
            measure(server, t, 200, args.clients, None)
        for r in range(args.rounds):
            for t in targets:
                ab_runs[t.name].append(measure(server, t, args.requests, args.clients, rc))
            cpu0 = server.cpu_seconds()
            rps, res, _ = run_phase("signin", base, args.clients, args.client_procs, args.seconds,
                                    offset=r * POOL // 8)
            signin.append((rps, res, (server.cpu_seconds() - cpu0) * 1000 / max(1, sum(1 for x in res if x[2]))))
        ratios = report_ab("load", ab_runs)
        rps = statistics.median(x[0] for x in signin)
        report("signin", rps, [y for x in signin for y in x[1]], "flows/s", statistics.median(x[2] for x in signin))
        signin_ratio = statistics.median(x[0] / h.rps for x, h in zip(signin, ab_runs["healthz"], strict=True))
        # A flow is four requests (login, callback, portal, credentials): the client's ceiling in flows.
        print(f"Python client ceiling: {ceiling:.0f} req/s against nginx answering a constant ({args.clients} "
              f"clients, {args.client_procs} processes) = {ceiling / 4:.0f} flows/s, "
              f"{ceiling / 4 / rps:.1f} x the sign-in figure (>= 3: the client is not the bottleneck)")
        bench("load_python_client_ceiling", round(ceiling, 1), "req/s")
        bench("load_python_client_ceiling_to_signin_ratio", round(ceiling / 4 / rps, 2), "ratio")
        bench("signin_to_healthz_ratio", round(signin_ratio, 4), "ratio")
        bench("cached_to_healthz_ratio", round(ratios["cached"], 3), "ratio")

        # Redis restarted half-way through a sign-in run.
        window: dict[str, float] = {}
        window_thread: list[threading.Thread] = []

        def outage(start_at: float) -> None:
            def go() -> None:
                time.sleep(max(0.0, start_at + args.seconds / 2 - time.time()))
                window["down"] = time.time()
                rd.kill()
                time.sleep(args.outage)
                rd.start()
                window["up"] = time.time()
                while requests.get(f"{base}/readyz", timeout=5).status_code != 200:
                    time.sleep(0.05)
                window["ready"] = time.time()
            th = threading.Thread(target=go, daemon=True)
            th.start()
            window_thread.append(th)

        cache_delta()
        cpu0 = server.cpu_seconds()
        rps, res, _ = run_phase("signin", base, args.clients, args.client_procs, args.seconds, offset=POOL * 3 // 4,
                                during=outage)
        window_thread[0].join(120)  # a short run may end before Redis is back
        report("restart", rps, res, "flows/s", (server.cpu_seconds() - cpu0) * 1000 / max(1, sum(x[2] for x in res)),
               f"  (credential cache {cache_delta()})")
        # An error may start just before the kill (a flow in flight) and end one Redis timeout after.
        lo, hi = window["down"] - 2.0, window["ready"] + 1.5
        errs = [r for r in res if not r[2]]
        outside = [r for r in errs if not lo <= r[0] <= hi]
        after = [r for r in res if r[0] > hi]
        print(f"restart: Redis down {window['down']:.1f}..{window['up']:.1f} (ready {window['ready']:.1f}); "
              f"errors {len(errs)}, outside the window {len(outside)}; {len(after)} flows after it, "
              f"{sum(1 for r in after if not r[2])} wrong")
        if outside:
            print("  outside:", outside[:5])
        print(f"BENCH load_restart_outage {window['ready'] - window['down']:.2f} s")
        print(f"BENCH load_restart_errors_outside_window {len(outside)} count")
        print(f"BENCH load_restart_wrong_after {sum(1 for r in after if not r[2])} count")

        # Memory per signed-in user (session + encrypted cached credentials + cache index), from used_memory.
        rc = redis.Redis.from_url(rd.url)
        rc.flushdb()
        time.sleep(0.2)
        before = int(rc.info("memory")["used_memory"])
        per = max(1, args.users // 10)

        def many(t: int, n: int) -> None:
            ss = requests.Session()
            for k in range(n):
                ss.cookies.clear()
                credentials(ss, base, sign_in(ss, base, f"u{t * n + k:05d}"))

        ts = [threading.Thread(target=many, args=(t, per)) for t in range(10)]
        for t in ts:
            t.start()
        for t in ts:
            t.join()
        users = per * 10
        after_mem = int(rc.info("memory")["used_memory"])
        sessions = sum(1 for _ in rc.scan_iter(match="bridge:session:*", count=1000))
        key = next(rc.scan_iter(match="bridge:session:*"))
        ckey = next(rc.scan_iter(match="bridge:creds:*"))
        per_user = (after_mem - before) / users
        print(f"memory: {users} sign-ins → {sessions} sessions, used_memory +{after_mem - before} bytes = "
              f"{per_user:.0f} bytes/user (session key {rc.memory_usage(key)} B, credential cache "
              f"{rc.memory_usage(ckey)} B); 10,000 users ≈ {per_user * 10000 / 2**20:.1f} MiB")
        print(f"BENCH redis_bytes_per_user {per_user:.0f} bytes")
        print(f"BENCH redis_mib_per_10k_users {per_user * 10000 / 2**20:.1f} MiB")
        # The audit trail's size per record, as JSON lines and in a Redis stream (sink: redis).
        lines = (tmp / "audit.jsonl").read_text(encoding="utf-8").splitlines()
        sample = lines[-5000:]
        pipe = rc.pipeline(transaction=False)
        for line in sample:
            pipe.xadd("bench:audit", {"r": line})
        pipe.execute()
        per_record = int(rc.memory_usage("bench:audit", samples=0) or 0) / len(sample)
        print(f"audit: {len(lines)} records, {sum(map(len, lines)) / len(lines):.0f} bytes per JSON line, "
              f"{per_record:.0f} bytes per record in a Redis stream")
        print(f"BENCH audit_stream_bytes_per_record {per_record:.0f} bytes")
        metrics = requests.get(f"{base}/metrics", timeout=10).text
        hits = re.search(r'bridge_credential_cache_total\{result="hit"\} ([\d.e+]+)', metrics)
        print(f"metrics: credential cache hits {hits[1] if hits else 0}")
        return 0
    finally:
        stop_processes(procs, 15)
        rd.stop()
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
