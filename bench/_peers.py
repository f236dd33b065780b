"""The harness the benchmarks share, so each benchmark is only its config, its targets and its checks.

- the repository on sys.path, free loopback ports and a local redis-server (``bridge.runtime.localredis``, as
  the tests and the demo use), waiting for a server to answer, the ``STUB`` line every stand-in must print;
- ``Stack``: what a served benchmark starts — redis-server, moto's STS, signing keys — and any number of
  real ``bridge serve`` (gunicorn, deploy/gunicorn.conf.py) on free ports, each in its own process
  group so its CPU (master + workers, from /proc) can be read and it can be stopped whole;
- ``ab``: Apache's C keep-alive load generator (``ab -k``), so the client is not the bottleneck;
- ``interleave`` + ``report``: rounds of baseline and targets, alternated so machine noise hits them
  alike, each round with req/s, latency percentiles, the server's CPU per request and the Redis
  commands and round trips per request (``INFO commandstats`` / ``INFO stats``), ending with ratios
  to the baseline as ``BENCH`` lines;
- ``python_client_ceiling``: what a Python ``requests`` client reaches against nginx answering a
  constant (so a benchmark that must drive a multi-step flow from Python can print its own ceiling).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import resource
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import redis
import requests

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bridge.runtime.localredis import LocalRedis, free_port, start_redis  # noqa: E402

__all__ = ["ROOT", "LocalRedis", "Round", "Server", "Stack", "Target", "ab", "bench", "free_port",
           "interleave", "machine_line", "nginx_exe", "parse", "python_client_ceiling", "report", "server_cpu_seconds",
           "sign_in", "start_redis", "stop_processes", "stub", "target", "wait"]

# Rate limits stay on in every benchmark, high enough that the one user and one client IP are never
# refused, so every request still pays for the limiter's Redis count as each production request does.
RATE_LIMIT = 10_000_000
RATE_LIMITS = {k: RATE_LIMIT for k in ("sign_in_per_minute", "credentials_per_minute", "device_per_minute",
                                       "device_code_per_minute", "sso_register_per_minute", "requests_per_minute",
                                       "exchange_per_minute")}
# Every benchmark's process tree sees this checkout's bridge, whatever the venv has installed.
# No worker recycling (max_requests) in a measured run: a recycled worker's CPU would leave the /proc sum.
ENV = {**os.environ, "BRIDGE_ACCESS_LOG": "0", "BRIDGE_MAX_REQUESTS": "0", "PYTHONPATH": str(ROOT)}


def parse(ap: argparse.ArgumentParser, **smoke: Any) -> argparse.Namespace:
    """``ap.parse_args()`` with ``--smoke``: the ``smoke`` values instead (a few requests), for
    tests/integration/test_bench_smoke.py to check the benchmark still runs; targets are then not checked."""
    ap.add_argument("--smoke", action="store_true",
                    help="a few requests, to check the benchmark runs (its targets are not checked)")
    args = ap.parse_args()
    if args.smoke:
        for k, v in smoke.items():
            setattr(args, k, v)
    return args


def parse_load(*, requests: int = 3000, rounds: int = 5, workers: int = 2) -> argparse.Namespace:
    """The options of an ``ab`` load benchmark (``--requests`` per round and kind, ``--rounds``,
    ``--concurrency``, ``--workers``), through ``parse`` with its smoke values."""
    ap = argparse.ArgumentParser()
    ap.add_argument("--requests", type=int, default=requests, help="per round and kind")
    ap.add_argument("--rounds", type=int, default=rounds)
    ap.add_argument("--concurrency", type=int, default=8)
    ap.add_argument("--workers", type=int, default=workers,
                    help="gunicorn workers; with more than one, the rounds where one worker got all of ab's "
                    "keep-alive connections are counted in the output")
    return parse(ap, requests=100, rounds=1, workers=1)


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


def bench(name: str, value: float | int, unit: str) -> None:
    """One ``BENCH <name> <value> <unit>`` line."""
    text = f"{value:.3f}".rstrip("0").rstrip(".") if isinstance(value, float) else str(value)
    print(f"BENCH {name} {text} {unit}", flush=True)


def target(name: str, value: float, goal: float, *, at_most: bool = False) -> bool:
    """Print whether ``value`` meets ``goal`` (>= it, or <= it with ``at_most``). A missed target is
    reported, not an exit status: a benchmark fails only when its requests do, so ``make bench`` runs all."""
    met = value <= goal if at_most else value >= goal
    print(f"TARGET {name}: {value:.3g} {'<=' if at_most else '>='} {goal:g} {'met' if met else 'MISSED'}", flush=True)
    return met


def machine_line(what: str) -> None:
    print(f"machine: {platform.machine()} {os.cpu_count()} cores (shared with other jobs: compare ratios from "
          f"one run, not absolute figures), Python {platform.python_version()}; load average "
          f"{' '.join(f'{x:.1f}' for x in os.getloadavg())}; {what}", flush=True)


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


def _children_cpu_seconds() -> float:
    """utime+stime of this process's finished children (``ab`` runs)."""
    used = resource.getrusage(resource.RUSAGE_CHILDREN)
    return used.ru_utime + used.ru_stime


def process_cpu_seconds(pid: int) -> float:
    """utime+stime of process ``pid`` (0 once it is gone)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def server_cpu_seconds(pgid: int) -> float:
    """utime+stime of every live process in process group ``pgid`` (gunicorn's master and workers)."""
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


def sign_in(base: str, user: str, session: requests.Session | None = None) -> tuple[requests.Session, dict[str, Any]]:
    """Sign ``user`` in through the dev connector; return the session and the portal's JSON."""
    s = session or requests.Session()
    r = s.get(f"{base}/login/dev", allow_redirects=False, timeout=30)
    state = re.search(r"state=([\w-]+)", r.headers.get("location", ""))
    if not state:
        raise RuntimeError(f"login start {r.status_code}")
    r = s.post(f"{base}/callback/dev", data={"state": state[1], "user": user}, allow_redirects=False, timeout=60)
    if r.status_code != 303:
        raise RuntimeError(f"callback {r.status_code}")
    r = s.get(f"{base}/portal", headers={"Accept": "application/json"}, timeout=60)
    r.raise_for_status()
    return s, r.json()


# -- the servers ----------------------------------------------------------------------------------

@dataclass
class Server:
    """One ``bridge serve``: its URL and its process (the leader of its process group)."""

    base: str
    proc: subprocess.Popen[bytes]
    config: Path

    def cpu_seconds(self) -> float:
        return server_cpu_seconds(self.proc.pid)

    def wait(self, path: str = "/healthz", seconds: float = 120) -> None:
        if self.proc.poll() is not None:
            raise SystemExit(f"bridge serve ({self.config}) exited with {self.proc.returncode}")
        wait(f"{self.base}{path}", seconds)

    def workers(self) -> list[int]:
        try:
            return [int(c) for c in Path(f"/proc/{self.proc.pid}/task/{self.proc.pid}/children").read_text().split()]
        except OSError:
            return []


class Stack:
    """redis-server, moto's STS and signing keys in a temporary folder, then ``serve(...)`` as many
    ``bridge serve`` as a benchmark needs; everything is stopped on exit."""

    def __init__(self, name: str, *, redis_url: str | None = None) -> None:
        self.tmp = Path(tempfile.mkdtemp(prefix=f"bridge-bench-{name}-"))
        self.procs: list[subprocess.Popen[bytes]] = []
        self._own_redis = redis_url is None
        self.redis_url = redis_url or ""
        self._stop_redis: Callable[[], None] | None = None
        self.sts_port = 0

    def __enter__(self) -> Stack:
        signal.signal(signal.SIGTERM, lambda *_: sys.exit(1))  # killed: still stop what was started
        try:
            if self._own_redis:
                self.redis_url, self._stop_redis = start_redis(self.tmp / "redis")
            self.sts_port = free_port()
            self.procs.append(subprocess.Popen(
                [str(Path(sys.executable).parent / "moto_server"), "-H", "127.0.0.1", "-p", str(self.sts_port)],
                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True))
            # What `bridge keys generate` writes, without starting another interpreter for it.
            from bridge.keys.signing import generate_cache_key, generate_key, generate_saml_key

            generate_key(self.keys)
            generate_saml_key(self.keys)
            generate_cache_key(self.keys)
        except BaseException:
            self.__exit__(None, None, None)
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        stop_processes(self.procs)
        if self._stop_redis:
            self._stop_redis()
        if not os.environ.get("BENCH_KEEP_TMP"):
            shutil.rmtree(self.tmp, ignore_errors=True)

    @property
    def keys(self) -> Path:
        return self.tmp / "keys"

    def redis(self) -> redis.Redis:
        return redis.Redis.from_url(self.redis_url)

    def config(self, port: int, **more: Any) -> dict[str, Any]:
        """The settings every served benchmark shares (rate limits on, never hit; credential cache on),
        merged with ``more`` (connectors, mapping, …)."""
        return {"base_url": f"http://127.0.0.1:{port}", "listen": f"127.0.0.1:{port}",
                "insecure_dev_login": True, "log_level": "WARNING", "credential_cache": {"enabled": True},
                "rate_limits": dict(RATE_LIMITS), "redis": {"url": self.redis_url},
                "issuer": {"url": "https://bridge.example.com", "keys_dir": str(self.keys)},
                # sts_max_concurrency = threads: a throughput figure, never cut by the bulkhead
                "aws": {"sts_endpoint_url": f"http://127.0.0.1:{self.sts_port}", "sts_max_concurrency": 8},
                **more}

    def serve(self, settings: dict[str, Any], *, workers: int = 2, env: dict[str, str] | None = None,
              log: Path | None = None, ready: str | None = "/healthz", seconds: float = 120) -> Server:
        """Start ``bridge serve`` with ``settings`` (written as JSON, which is YAML) and wait until ``ready``
        answers (None: don't wait; ``Server.wait`` later); its output (the access log is on stdout, the
        rest on stderr) goes to ``log`` when given."""
        port = int(settings["listen"].rsplit(":", 1)[1])
        path = self.tmp / f"bridge-{port}.yaml"
        path.write_text(json.dumps(settings))
        out = log.open("ab") if log else subprocess.DEVNULL
        proc = subprocess.Popen([sys.executable, "-m", "bridge", "serve", "--config", str(path), "--workers",
                                 str(workers)], env={**ENV, **(env or {})}, cwd=ROOT, stdout=out,
                                stderr=out, start_new_session=True)
        self.procs.append(proc)
        server = Server(f"http://127.0.0.1:{port}", proc, path)
        if ready:
            server.wait(ready, seconds)
            self.wait_sts()
        return server

    def wait_sts(self) -> None:
        """moto's STS answers (it starts while the bridge does: nothing calls STS before a request)."""
        wait(f"http://127.0.0.1:{self.sts_port}/")


def nginx_exe() -> str:
    exe = shutil.which("nginx") or shutil.which("nginx", path="/usr/sbin:/usr/local/sbin")
    if not exe:
        raise SystemExit("nginx is not installed: scripts/setup-system.sh bench installs it (nginx-light)")
    return exe


# -- the load generator ---------------------------------------------------------------------------

@dataclass
class Target:
    """One request kind: a GET, or a POST when ``body`` is given (``ab -p``); ``requests`` overrides the
    round's count (a slow kind), ``server`` the server whose CPU is read (another instance)."""

    name: str
    url: str
    headers: dict[str, str] = field(default_factory=dict)
    body: Path | None = None
    requests: int | None = None
    server: Server | None = None


@dataclass
class Round:
    """One ``ab`` run of one target, with what the server and Redis spent on it."""

    rps: float
    mean_ms: float
    p50_ms: float
    p99_ms: float
    errors: int
    requests: int
    cpu_ms: float  # server CPU (gunicorn master + workers) per request
    redis_commands: float  # per request, INFO excluded
    redis_round_trips: float  # per request: the reads Redis served (one per round trip: a pipeline is one)
    commands: dict[str, float]  # per request, by command
    redis_cpu_ms: float = float("nan")  # redis-server's own CPU per request (every node: INFO used_cpu_*)
    busiest_worker: float = float("nan")  # the share of the workers' CPU the busiest worker took (1: all of it)
    client_cpu_ms: float = float("nan")  # ab's CPU per request: on a small machine it shares the cores


def ab(url: str, n: int, c: int, headers: dict[str, str] | None = None, body: Path | None = None
       ) -> tuple[float, float, float, float, int]:
    """Run ``ab -k``; return (req/s, mean ms, p50 ms, p99 ms, failed + non-2xx)."""
    if not shutil.which("ab"):
        raise SystemExit("ab is missing: scripts/setup-system.sh bench installs it (apache2-utils)")
    with tempfile.NamedTemporaryFile("r", suffix=".csv") as csv:
        cmd = ["ab", "-k", "-q", "-n", str(n), "-c", str(c), "-e", csv.name]
        for k, v in (headers or {}).items():
            cmd += ["-H", f"{k}: {v}"]
        if body is not None:
            cmd += ["-p", str(body), "-T", "application/x-www-form-urlencoded"]
        out = subprocess.run(cmd + [url], capture_output=True, text=True, check=True).stdout
        pcts = dict(line.split(",") for line in csv.read().splitlines()[1:])  # "percent,ms" from 0 to 100
    rps = float(re.search(r"Requests per second:\s+([\d.]+)", out)[1])  # type: ignore[index]
    mean = float(re.search(r"Time per request:\s+([\d.]+) \[ms\] \(mean\)", out)[1])  # type: ignore[index]
    failed = int(re.search(r"Failed requests:\s+(\d+)", out)[1])  # type: ignore[index]
    non2xx = re.search(r"Non-2xx responses:\s+(\d+)", out)
    # ab's 99 % row can be junk when n is small (it reads one slot past its samples): keep it between
    # the 98 % row and the maximum.
    p99 = min(max(float(pcts["99"]), float(pcts["98"])), float(pcts["100"]))
    return rps, mean, float(pcts["50"]), p99, failed + (int(non2xx[1]) if non2xx else 0)


Redises = redis.Redis | list[redis.Redis] | None  # one server, or a Cluster's masters (summed)


def _redis_counters(rc: Redises) -> tuple[dict[str, int], int, float]:
    calls: dict[str, int] = {}
    reads, cpu = 0, 0.0
    for node in [] if rc is None else rc if isinstance(rc, list) else [rc]:
        info = node.info("everything")
        for k, v in info.items():
            if k.startswith("cmdstat_"):
                calls[k.removeprefix("cmdstat_")] = calls.get(k.removeprefix("cmdstat_"), 0) + int(v["calls"])
        reads += int(info["total_reads_processed"])
        cpu += float(info["used_cpu_sys"]) + float(info["used_cpu_user"])
    return calls, reads, cpu


def measure(server: Server, t: Target, n: int, c: int, rc: Redises) -> Round:
    server, n = t.server or server, t.requests or n
    cmds0, reads0, rcpu0 = _redis_counters(rc)
    cpu0, workers = server.cpu_seconds(), server.workers()
    each0, ab0 = [process_cpu_seconds(w) for w in workers], _children_cpu_seconds()
    rps, mean, p50, p99, errors = ab(t.url, n, c, t.headers, t.body)
    client_cpu = _children_cpu_seconds() - ab0  # ab's own: the only child run meanwhile
    cpu_ms = (server.cpu_seconds() - cpu0) * 1000 / n
    spent = [process_cpu_seconds(w) - w0 for w, w0 in zip(workers, each0, strict=True)]
    cmds1, reads1, rcpu1 = _redis_counters(rc)
    # The diff holds, per node, the first INFO call and the second one's read: neither is the server's.
    per = {k: (v - cmds0.get(k, 0)) / n for k, v in cmds1.items() if k != "info" and v != cmds0.get(k, 0)}
    nodes = 0 if rc is None else len(rc) if isinstance(rc, list) else 1
    trips = max(0, reads1 - reads0 - nodes) / n if rc is not None else float("nan")
    return Round(rps, mean, p50, p99, errors, n, cpu_ms, sum(per.values()) if rc is not None else float("nan"),
                 trips, per, (rcpu1 - rcpu0) * 1000 / n if rc is not None else float("nan"),
                 max(spent) / sum(spent) if len(spent) > 1 and sum(spent) > 0 else float("nan"),
                 client_cpu * 1000 / n)


def interleave(server: Server, targets: list[Target], *, rounds: int, requests_per_round: int, concurrency: int,
               rc: Redises = None, warm: int = 200) -> dict[str, list[Round]]:
    """Warm every target in every worker, then ``rounds`` rounds of all targets in turn."""
    for t in targets:
        ab(t.url, min(warm, t.requests or warm), concurrency, t.headers, t.body)
    out: dict[str, list[Round]] = {t.name: [] for t in targets}
    for _ in range(rounds):
        for t in targets:
            out[t.name].append(measure(server, t, requests_per_round, concurrency, rc))
    return out


def _bracketed(base: list[float]) -> list[float]:
    """The baseline each round's target is compared with: the mean of the baseline round just before it and
    the one just after (``interleave`` runs the baseline first in each round), the last round's own alone.
    On a machine shared with other jobs, a slowdown that starts or ends between two measurements then
    weighs on both sides alike, rather than on whichever ran in it."""
    return [(b + base[i + 1]) / 2 if i + 1 < len(base) else b for i, b in enumerate(base)]


def report(prefix: str, runs: dict[str, list[Round]], baseline: str = "healthz") -> dict[str, float]:
    """Print one line per target (medians over rounds) and its BENCH lines, then each target's ratio to
    ``baseline`` (the median of per-round ratios, each against the baseline rounds around it: ``_bracketed``;
    so a noisy round hits both alike). Returns the ratios."""
    ratios: dict[str, float] = {}
    for name, rs in runs.items():
        med = {k: statistics.median(getattr(r, k) for r in rs)
               for k in ("rps", "p50_ms", "p99_ms", "cpu_ms", "redis_commands", "redis_round_trips", "redis_cpu_ms",
                         "client_cpu_ms")}
        errors = sum(r.errors for r in rs)
        by_cmd = {k: statistics.median(r.commands.get(k, 0.0) for r in rs) for r in rs for k in r.commands}
        cmds = " ".join(f"{k.upper()} {v:.2f}" for k, v in sorted(by_cmd.items(), key=lambda kv: -kv[1]) if v >= 0.01)
        print(f"{prefix}_{name:28s} {med['rps']:8.1f} req/s  p50 {med['p50_ms']:6.2f} ms  p99 {med['p99_ms']:7.2f} ms"
              f"  server CPU {med['cpu_ms']:5.2f} ms/req  Redis {med['redis_round_trips']:.2f} round trips "
              f"{med['redis_commands']:.2f} commands/req ({cmds or 'none'})  redis-server CPU "
              f"{med['redis_cpu_ms']:.3f} ms/req  ab CPU {med['client_cpu_ms']:.3f} ms/req  "
              f"errors {errors}", flush=True)
        bench(f"{prefix}_{name}_rps", round(med["rps"], 1), "req/s")
        bench(f"{prefix}_{name}_p50", round(med["p50_ms"], 2), "ms")
        bench(f"{prefix}_{name}_server_cpu", round(med["cpu_ms"], 3), "ms/req")
        bench(f"{prefix}_{name}_redis_round_trips", round(med["redis_round_trips"], 2), "per_req")
        bench(f"{prefix}_{name}_errors", errors, "count")
    shares = [r.busiest_worker for rs in runs.values() for r in rs if r.busiest_worker == r.busiest_worker]
    if shares:  # more than one worker: gunicorn's accept is a race, and ab opens its connections at once
        lopsided = sum(1 for x in shares if x >= 0.9)
        print(f"{prefix}: one worker took >= 90 % of the workers' CPU in {lopsided} of {len(shares)} runs (it had "
              "accepted every keep-alive connection of ab; that run's req/s is one process's)")
    for name, rs in runs.items():
        if name != baseline:
            base = runs[baseline]
            each = [x.rps / y for x, y in zip(rs, _bracketed([b.rps for b in base]), strict=True)]
            print(f"{prefix}_{name} / {baseline} req/s, each round: " + " ".join(f"{r:.3f}" for r in each))
            ratios[name] = statistics.median(each)
            ratios[f"{name}_p50"] = statistics.median(
                x.p50_ms / y for x, y in zip(rs, _bracketed([b.p50_ms for b in base]), strict=True))
            bench(f"{prefix}_{name}_to_{baseline}_ratio", round(ratios[name], 3), "ratio")
    return ratios


# -- a Python client's own ceiling ----------------------------------------------------------------

def python_client_ceiling(rate: Callable[[str], float]) -> float:
    """What ``rate(base)`` (a benchmark's own Python client, e.g. its healthz phase) reaches against
    nginx answering a constant: the most that client can drive on this machine, whatever the server."""
    tmp = Path(tempfile.mkdtemp(prefix="bridge-bench-ceiling-"))
    port = free_port()
    temp = " ".join(f"{k}_temp_path {tmp / k};" for k in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi"))
    conf = tmp / "nginx.conf"
    conf.write_text(f"""worker_processes 1; pid {tmp / 'nginx.pid'}; error_log {tmp / 'error.log'} warn;
events {{ worker_connections 4096; }}
http {{ access_log off; {temp} keepalive_requests 1000000;
  server {{ listen 127.0.0.1:{port}; location / {{ default_type application/json; return 200 '{{"ok":true}}'; }} }} }}
""")
    proc = subprocess.Popen([nginx_exe(), "-p", str(tmp), "-c", str(conf), "-g", "daemon off;"],
                            stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        wait(f"http://127.0.0.1:{port}/healthz")
        return rate(f"http://127.0.0.1:{port}")
    finally:
        stop_processes([proc])
        shutil.rmtree(tmp, ignore_errors=True)
