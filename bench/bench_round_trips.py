"""Redis round trips and commands per request on the hot paths, and what they cost next to /healthz.

Starts its own redis-server, moto_server and one `bridge serve` (deploy/gunicorn.conf.py, credential
cache on, rate limits on and never hit) on free loopback ports, signs in once through the dev
connector, gets a CLI token and an Identity Center access token (device flow), fills the credential
cache, then for each request kind:

- sends ``--count`` requests one after another and reads the Redis server's own counters before and
  after: ``INFO commandstats`` (commands per request) and ``total_writes_processed`` of ``INFO stats``
  (each reply batch Redis writes to a client is one round trip: a pipeline is answered in one write);
- drives the cached credential kinds and /healthz with ``ab -k`` (a C keep-alive client, so the load
  generator is not the bottleneck) in interleaved rounds, at each ``--concurrency``.

    .venv/bin/python bench/bench_round_trips.py [--count 200] [--requests 2000] [--rounds 3] [--concurrency 8 50]
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
from collections.abc import Callable
from pathlib import Path

import redis
import requests
from _peers import free_port, start_redis, stop_processes, stub, wait  # noqa: E402 - bench/ is on sys.path when run
from bench_chains_served import RATE_LIMIT, ab, config, server_cpu_seconds  # noqa: E402
from bench_sso import token_for  # noqa: E402

AB_KINDS = ("healthz", "credentials_cached", "sso_get_role_credentials_cached")


def redis_counters(rc: redis.Redis) -> tuple[dict[str, int], int]:
    """(calls per command but INFO, reply writes so far) as the server counts them."""
    stats = rc.info("commandstats")
    calls = {k.removeprefix("cmdstat_"): int(v["calls"]) for k, v in stats.items() if k != "cmdstat_info"}
    return calls, int(rc.info("stats")["total_writes_processed"])


def per_request(rc: redis.Redis, call: Callable[[], bool], count: int) -> tuple[float, float, dict[str, float]]:
    """(round trips, commands, commands by name) per request of ``call``, from the server's counters."""
    assert call(), "the request kind does not answer as expected"
    calls0, writes0 = redis_counters(rc)
    for _ in range(count):
        assert call()
    calls1, writes1 = redis_counters(rc)
    by_name = {k: (v - calls0.get(k, 0)) / count for k, v in calls1.items() if v != calls0.get(k, 0)}
    # the first INFO's own reply is written after it took its snapshot: one write that is not a request's
    return (writes1 - writes0 - 1) / count, sum(by_name.values()), by_name


def main() -> int:  # noqa: PLR0915 - one straight-line script
    ap = argparse.ArgumentParser()
    ap.add_argument("--count", type=int, default=200, help="sequential requests per kind for the counters")
    ap.add_argument("--requests", type=int, default=2000, help="ab requests per round and kind")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--concurrency", type=int, nargs="+", default=[8, 50])
    ap.add_argument("--workers", type=int, default=2)
    args = ap.parse_args()
    if not shutil.which("ab"):
        raise SystemExit("ab is missing: scripts/setup-system.sh bench installs it (apache2-utils)")
    tmp = Path(tempfile.mkdtemp(prefix="bridge-bench-round-trips-"))
    procs: list[subprocess.Popen[bytes]] = []
    stop_redis = None
    try:
        redis_url, stop_redis = start_redis(tmp / "redis")
        sport, port = free_port(), free_port()
        procs.append(subprocess.Popen([str(Path(sys.executable).parent / "moto_server"), "-H", "127.0.0.1", "-p",
                                       str(sport)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                      start_new_session=True))
        subprocess.run([sys.executable, "-m", "bridge.commands.cli", "keys", "generate", "--dir", str(tmp / "keys")],
                       check=True, stdout=subprocess.DEVNULL)
        serve = subprocess.Popen([sys.executable, "-m", "bridge.commands.cli", "serve", "--config",
                                  str(config(tmp, port, redis_url, sport)), "--workers", str(args.workers)],
                                 env={**os.environ, "BRIDGE_ACCESS_LOG": "0"}, stdout=subprocess.DEVNULL,
                                 stderr=subprocess.DEVNULL, start_new_session=True)
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
        grant = next(g for g in portal["grants"] if g["role_arn"].endswith("role/Admin"))
        cookie = f"bridge_session={s.cookies.get('bridge_session')}"
        browser = {"Accept": "application/json", "X-CSRF-Token": portal["csrf_token"], "Cookie": cookie}
        sso = {"x-amz-sso_bearer_token": token_for(base, "alice")}
        d = requests.post(f"{base}/oauth/device_authorization", data={"client_id": "bridge-cli"}, timeout=10).json()
        s.post(f"{base}/device", data={"csrf_token": portal["csrf_token"], "user_code": d["user_code"],
                                       "decision": "approve", "confirm": "yes"}, timeout=10)
        cli = {"Authorization": "Bearer " + requests.post(f"{base}/oauth/token", data={
            "grant_type": "urn:ietf:params:oauth:grant-type:device_code", "client_id": "bridge-cli",
            "device_code": d["device_code"]}, timeout=10).json()["access_token"]}
        sso_url = f"{base}/sso/federation/credentials?account_id=123456789012&role_name=Admin"
        creds_url = f"{base}/credentials/{grant['id']}"
        c = requests.Session()  # one keep-alive client for the sequential counts
        kinds: dict[str, Callable[[], bool]] = {
            "healthz": lambda: c.get(f"{base}/healthz", timeout=10).status_code == 200,
            "credentials_cached": lambda: "SessionToken" in c.post(creds_url, headers=browser, timeout=30).text,
            "api_credentials_cached": lambda: "SessionToken" in c.post(
                f"{base}/api/v1/credentials/{grant['id']}", headers={**cli, "Accept": "application/json"},
                timeout=30).text,
            "sso_get_role_credentials_cached": lambda: "sessionToken" in c.get(sso_url, headers=sso,
                                                                                timeout=30).text,
            "portal_json": lambda: c.get(f"{base}/portal", headers=browser, timeout=10).status_code == 200,
            "go": lambda: c.get(f"{base}{grant['go']}", headers={"Cookie": cookie}, timeout=10).status_code == 200,
        }
        rc = redis.Redis.from_url(redis_url)
        counted = {kind: per_request(rc, call, args.count) for kind, call in kinds.items()}

        body = tmp / "empty"
        body.write_bytes(b"")
        targets = {"healthz": (f"{base}/healthz", {}, None), "credentials_cached": (creds_url, browser, body),
                   "sso_get_role_credentials_cached": (sso_url, sso, None)}
        for url, h, b in targets.values():  # warm every code path in every worker
            ab(url, 200, 8, h, b)
        runs: dict[tuple[int, str], list[tuple[float, float, int, float]]] = {}
        for _ in range(args.rounds):
            for conc in args.concurrency:
                for kind in AB_KINDS:
                    url, h, b = targets[kind]
                    cpu0 = server_cpu_seconds(serve.pid)
                    rps, mean, errors = ab(url, args.requests, conc, h, b)
                    cpu_ms = (server_cpu_seconds(serve.pid) - cpu0) * 1000 / args.requests
                    runs.setdefault((conc, kind), []).append((rps, mean, errors, cpu_ms))

        print(f"machine: {platform.machine()} {os.cpu_count()} cores (shared, noisy), Python "
              f"{platform.python_version()}; redis-py parser: {redis.utils.HIREDIS_AVAILABLE and 'hiredis' or 'python'}"
              f"; gunicorn gthread workers={args.workers}; ab -k; {args.rounds} interleaved rounds x "
              f"{args.requests} requests per kind and concurrency")
        print(f"rate limits on ({RATE_LIMIT}/min: counted in Redis on every request, never refused); "
              "credential cache on, filled before the measured requests")
        stub("sts", "moto_server on loopback instead of AWS STS", "no AWS account in a benchmark; cached figures "
             "make no STS call")
        stub("upstream-idp", "the dev connector for the one sign-in", "sign-in is not measured here")
        for kind, (trips, cmds, by_name) in counted.items():
            names = " ".join(f"{k}={v:g}" for k, v in sorted(by_name.items()))
            print(f"{kind:32s} {trips:5.2f} round trips  {cmds:5.2f} commands/request  ({names})")
            print(f"BENCH round_trips_{kind} {trips:.2f} count")
            print(f"BENCH redis_commands_{kind} {cmds:.2f} count")
        failed = 0
        for conc in args.concurrency:
            for kind in AB_KINDS:
                rr = runs[(conc, kind)]
                failed += sum(x[2] for x in rr)
                print(f"c={conc:<3d} {kind:32s} {statistics.median(x[0] for x in rr):8.1f} req/s  mean "
                      f"{statistics.median(x[1] for x in rr):6.2f} ms  server CPU "
                      f"{statistics.median(x[3] for x in rr):5.2f} ms/req  errors {sum(x[2] for x in rr)}")
            for kind in AB_KINDS[1:]:  # per-round ratios: a noisy round hits both kinds of that round alike
                ratio = statistics.median(x[0] / y[0] for x, y in zip(runs[(conc, kind)], runs[(conc, "healthz")],
                                                                     strict=True))
                print(f"BENCH {kind}_to_healthz_c{conc} {ratio:.3f} ratio")
        print(f"BENCH ab_errors {failed} count")
        return 0 if failed == 0 else 1
    finally:
        stop_processes(procs)
        if stop_redis:
            stop_redis()
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
