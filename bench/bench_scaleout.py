"""Scale-out: two ``bridge serve`` instances behind nginx on a Redis Cluster, against one, in one run.

Started here on loopback: a Redis Cluster (3 masters + 3 replicas, tests/redis_topologies.py), moto's
STS, two ``bridge serve`` instances (gunicorn, ``--workers`` each, worker recycling off) with one
config (``redis.mode: cluster``), and nginx (Debian's package) with two listeners:

  one   proxies to instance A only
  two   proxies round-robin to A and B (no sticky sessions: a sign-in's steps land on either)

Phases, ``--seconds`` each, alternated one/two ``--rounds`` times so machine noise hits both alike:

  signin   sign-in (dev connector) → portal → POST /credentials (mint + STS), a new user each time,
           from Python clients (a multi-step flow with cookies); their own ceiling — the same client
           against nginx answering a constant — is measured and printed beside the figure
  cached   POST /credentials again for the same role and duration (credential cache hits), `ab -k`
           (a C client), with the bridges' CPU and the Cluster's Redis round trips per request

Every instance has the same ``--workers`` (2, as bench_load.py's single instance): the ratio is what
a second instance adds, not what more workers add.

Then a soak (``--soak-minutes``, 10 by default) through the ``two`` listener: ``--soak-users`` users
sign in → credentials → sign out, over and over. Sampled after a warm-up and every
``--sample`` seconds: the RSS of every gunicorn worker, and the cluster's ``used_memory`` (masters),
keys and sessions. Memory must not grow beyond what the sessions held at the end explain.

    .venv/bin/python bench/bench_scaleout.py [--seconds 15] [--requests 5000] [--clients 40] [--soak-minutes 10]

All parts share this machine's cores (clients, nginx, six Redis nodes, moto, the bridges): the
ratio is what a second instance adds here, a floor for instances on their own machines.
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import bench_load  # noqa: E402
import requests
from _peers import (  # noqa: E402 - bench/ is on sys.path when run
    ROOT,
    Round,
    Server,
    Target,
    bench,
    free_port,
    machine_line,
    measure,
    nginx_exe,
    parse,
    python_client_ceiling,
    stop_processes,
    stub,
    wait,
)
from bench_load import credentials, run_phase, sign_in  # noqa: E402

from tests.redis_topologies import Cluster, start_cluster  # noqa: E402

PREFIX = "so:"
PER_SIGNIN = 1500  # users set aside per sign-in phase: each flow is a new user (no cached credentials)
WARM = 8  # the last users of the pool: one sign-in per path and instance before the phases


class Instances(Server):
    """Several ``bridge serve`` read as one: their CPU summed."""

    def __init__(self, base: str, servers: list[Server]) -> None:
        super().__init__(base, servers[0].proc, servers[0].config)
        self.servers = servers

    def cpu_seconds(self) -> float:
        return sum(s.cpu_seconds() for s in self.servers)


def nginx_conf(tmp: Path, listeners: dict[int, list[int]], host: str) -> Path:
    """nginx in ``tmp``: one server per listener port, proxying to its list of bridge ports."""
    ups, servers = [], []
    for port, backends in listeners.items():
        # Pooled upstream connections, idle up to nginx's default 60 s (keepalive_timeout), as
        # ingress-nginx and an ALB do: the bridge must keep them open longer (deploy/gunicorn.conf.py).
        ups.append(f"upstream u{port} {{ {' '.join(f'server 127.0.0.1:{b};' for b in backends)} keepalive 64; }}")
        # One Host for both listeners (the config's base_url): the bridge builds its links from it.
        servers.append(f"""server {{ listen 127.0.0.1:{port};
    location / {{ proxy_pass http://u{port}; proxy_http_version 1.1; proxy_set_header Connection "";
                  proxy_set_header Host {host}; proxy_read_timeout 60s; }} }}""")
    temp = " ".join(f"{k}_temp_path {tmp / k};" for k in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi"))
    conf = tmp / "nginx.conf"
    conf.write_text(f"""worker_processes 1;
pid {tmp / 'nginx.pid'};
error_log {tmp / 'nginx-error.log'} warn;
events {{ worker_connections 4096; }}
http {{
  access_log off; {temp}
  {chr(10).join(ups)}
  {chr(10).join(servers)}
}}
""")
    return conf


def workers_of(pid: int) -> list[int]:
    """The gunicorn workers of the master ``pid`` (its child processes)."""
    try:
        return [int(c) for c in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
    except OSError:
        return []


def rss_mib(pid: int) -> float:
    m = re.search(r"VmRSS:\s+(\d+) kB", Path(f"/proc/{pid}/status").read_text())
    return int(m[1]) / 1024 if m else float("nan")


def cpu_ticks(pids: list[int]) -> int:
    """utime + stime of these processes (all their threads), in clock ticks."""
    total = 0
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += int(fields[11]) + int(fields[12])
    return total


def machine_ticks() -> tuple[int, int]:
    """(busy, all) clock ticks of the whole machine, from /proc/stat."""
    v = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    return sum(v) - v[3] - v[4], sum(v)


class CpuShare:
    """Where the machine's CPU went between ``start()`` and ``line()``, by group of processes."""

    def __init__(self, groups: dict[str, Any]) -> None:
        self.groups = groups  # name → callable giving the group's pids now
        self.before: dict[str, int] = {}
        self.m0 = (0, 0)

    def start(self) -> None:
        self.before = {k: cpu_ticks(f()) for k, f in self.groups.items()}
        self.m0 = machine_ticks()

    def line(self) -> str:
        busy, every = (a - b for a, b in zip(machine_ticks(), self.m0, strict=True))
        cores = os.cpu_count() or 1
        used = {k: cpu_ticks(f()) - self.before[k] for k, f in self.groups.items()}
        parts = [f"{k} {v / every * 100 * cores:.0f} %" for k, v in used.items()]
        rest = (busy - sum(used.values())) / every * 100 * cores
        return (f"cpu: machine {busy / every * 100:.0f} % busy of {cores} cores; in % of one core: "
                f"{', '.join(parts)}, clients and the rest {rest:.0f} %")


def redis_state(cluster: Cluster) -> dict[str, int]:
    """Across the masters: used_memory, the part of it that is data (less the replication backlog
    and client buffers, which fill up to their configured sizes), keys, and sessions."""
    used = data = keys = sessions = 0
    for m in cluster.masters():
        c = m.client()
        mem = c.info("memory")
        used += int(mem["used_memory"])
        data += int(mem["used_memory"]) - sum(int(mem.get(k, 0)) for k in (
            "mem_replication_backlog", "mem_clients_normal", "mem_clients_slaves"))
        keys += int(c.dbsize())
        sessions += sum(1 for _ in c.scan_iter(match=f"{PREFIX}session:*", count=1000))
    return {"used": used, "data": data, "keys": keys, "sessions": sessions}


# -- soak clients (run in worker processes) ---------------------------------------------------------

def soak_proc(base: str, users: list[str], end_at: float, out: Any) -> None:
    """One thread per user: sign in → portal (is it me?) → credentials → sign out, until ``end_at``."""
    tally: dict[str, int] = {"ok": 0, "errors": 0, "wrong": 0}
    lock = threading.Lock()

    def loop(user: str) -> None:
        s = requests.Session()
        while time.time() < end_at:
            s.cookies.clear()
            try:
                portal = sign_in(s, base, user)
                if portal["identity"]["email"] != f"{user}@example.com":
                    key = "wrong"
                else:
                    credentials(s, base, portal)
                    r = s.post(f"{base}/logout", headers={"X-CSRF-Token": portal["csrf_token"]},
                               allow_redirects=False, timeout=30)
                    key = "ok" if r.status_code == 303 else f"error: logout {r.status_code}"
            except Exception as e:  # noqa: BLE001 - every failure counts as an error of the soak
                key = f"error: {str(e)[:80]}"
                time.sleep(0.05)
            with lock:
                tally[key] = tally.get(key, 0) + 1
                if key.startswith("error"):
                    tally["errors"] += 1

    ts = [threading.Thread(target=loop, args=(u,)) for u in users]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    out.put(tally)


def soak(base: str, masters: list[int], cluster: Cluster, args: argparse.Namespace) -> None:
    first = bench_load.POOL - WARM - args.soak_users  # never used by the phases
    users = [f"u{first + k:05d}" for k in range(args.soak_users)]
    procs = max(1, args.client_procs)
    q: Any = mp.get_context("fork").Queue()
    end_at = time.time() + args.warmup + args.soak_minutes * 60
    ps = [mp.get_context("fork").Process(target=soak_proc, args=(base, users[i::procs], end_at, q))
          for i in range(procs)]
    for p in ps:
        p.start()
    time.sleep(args.warmup)  # every user's credentials cached, the audit stream at its trimmed length

    def sample() -> tuple[dict[int, float], dict[str, int]]:
        return {w: rss_mib(w) for m in masters for w in workers_of(m)}, redis_state(cluster)

    rss0, red0 = sample()
    masters0 = sorted(m.port for m in cluster.masters())
    t0 = time.time()
    print(f"soak: {len(users)} users, sign in → credentials → sign out, {args.soak_minutes:g} min after a "
          f"{args.warmup:.0f} s warm-up; worker recycling off", flush=True)
    last = (rss0, red0)
    while time.time() < end_at - 1:
        time.sleep(min(args.sample, max(0.0, end_at - 1 - time.time())))
        last = sample()
        rss, red = last
        print(f"  {time.time() - t0:5.0f} s  workers RSS {' '.join(f'{v:.1f}' for v in rss.values())} MiB  "
              f"redis used {red['used'] / 2**20:.2f} MiB (data {red['data'] / 2**20:.2f}), keys {red['keys']}, "
              f"sessions {red['sessions']}", flush=True)
    tally: dict[str, int] = {}
    for _ in ps:
        for k, v in q.get().items():
            tally[k] = tally.get(k, 0) + v
    for p in ps:
        p.join()
    rss1, red1 = last
    same = [w for w in rss0 if w in rss1]  # a worker replaced mid-soak would not be comparable
    start, end = sum(rss0[w] for w in same) / len(same), sum(rss1[w] for w in same) / len(same)
    growth = max((rss1[w] - rss0[w]) / rss0[w] * 100 for w in same)
    # What the sessions held at the end may add: a session, its index entry and a browser-login
    # entry each. Measured by the difference per session between the two samples' session counts
    # would be circular, so allow a generous 4 KiB per extra session (bench_load measures ~3 KiB per
    # signed-in user including its cached credentials).
    extra_sessions = red1["sessions"] - red0["sessions"]
    unexplained = red1["data"] - red0["data"] - max(0, extra_sessions) * 4096
    print(f"soak: {tally['ok']} flows, {tally['errors']} errors, {tally['wrong']} wrong identities; "
          f"{len(same)} workers: RSS {start:.1f} → {end:.1f} MiB on average (largest growth {growth:+.1f} %); "
          f"redis used {red0['used'] / 2**20:.2f} → {red1['used'] / 2**20:.2f} MiB (data {red0['data'] / 2**20:.2f} → "
          f"{red1['data'] / 2**20:.2f}), keys {red0['keys']} → "
          f"{red1['keys']}, sessions {red0['sessions']} → {red1['sessions']}")
    for k, v in sorted(tally.items()):
        if k.startswith("error: "):
            print(f"  {v} × {k}")
    if sorted(m.port for m in cluster.masters()) != masters0:
        print("  a Redis master failed over during the soak (the errors are its window)")
    for name, value, unit in [
            ("soak_flows", tally["ok"], "count"), ("soak_errors", tally["errors"], "count"),
            ("soak_wrong_identity", tally["wrong"], "count"),
            ("soak_worker_rss_start", round(start, 1), "MiB"), ("soak_worker_rss_end", round(end, 1), "MiB"),
            ("soak_worker_rss_max_growth", round(growth, 1), "%"),
            ("soak_redis_used_start", round(red0["used"] / 2**20, 2), "MiB"),
            ("soak_redis_used_end", round(red1["used"] / 2**20, 2), "MiB"),
            ("soak_redis_data_start", round(red0["data"] / 2**20, 2), "MiB"),
            ("soak_redis_data_end", round(red1["data"] / 2**20, 2), "MiB"),
            ("soak_redis_keys_start", red0["keys"], "count"), ("soak_redis_keys_end", red1["keys"], "count"),
            ("soak_redis_sessions_end", red1["sessions"], "count"),
            ("soak_redis_growth_beyond_sessions", max(0, unexplained), "bytes")]:
        print(f"BENCH {name} {value} {unit}")


# -- the run ---------------------------------------------------------------------------------------

def config(tmp: Path, cluster: Cluster, sts_port: int, host: str, threads: int) -> Path:
    cfg = tmp / "bench.yaml"
    cfg.write_text(f"""
base_url: http://{host}
secret_key: bench-scaleout-secret-key-0123456789
insecure_dev_login: true
log_level: WARNING
redis: {{mode: cluster, url: "{cluster.url}", key_prefix: "{PREFIX}", socket_timeout: 1.0}}
issuer: {{url: https://bridge.example.com, keys_dir: {tmp / 'keys'}}}
aws: {{sts_endpoint_url: "http://127.0.0.1:{sts_port}", sts_max_attempts: 1, sts_max_concurrency: {threads}}}
audit: {{sink: redis, maxlen: 1000}}
{bench_load.users_and_rules(bench_load.POOL)}""")
    return cfg


def main() -> int:  # noqa: PLR0915 - one linear script: start, measure, report, stop
    ap = argparse.ArgumentParser()
    ap.add_argument("--seconds", type=float, default=15.0, help="length of each phase")
    ap.add_argument("--rounds", type=int, default=2, help="one/two alternations per phase kind")
    ap.add_argument("--clients", type=int, default=40)
    ap.add_argument("--client-procs", type=int, default=2)
    ap.add_argument("--workers", type=int, default=2, help="gunicorn workers per instance (as one instance has)")
    ap.add_argument("--requests", type=int, default=5000, help="requests per ab round of cached fetches")
    ap.add_argument("--threads", type=int, default=8, help="gunicorn threads per worker")
    ap.add_argument("--soak-minutes", type=float, default=10.0, help="0: no soak")
    ap.add_argument("--soak-users", type=int, default=20)
    ap.add_argument("--warmup", type=float, default=30.0, help="seconds of soak before the first sample")
    ap.add_argument("--sample", type=float, default=60.0, help="seconds between soak samples")
    args = parse(ap, seconds=1.0, rounds=1, clients=4, client_procs=1, requests=100, soak_minutes=0.0,
                 workers=1)

    nginx = nginx_exe()
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(1))  # killed: still stop what was started
    # The dev connector lists every user the run signs in (a worker holds them all: the fewer, the
    # closer its memory is to a real config's). bench_load's clients take users modulo this pool.
    bench_load.POOL = 2 * args.rounds * (PER_SIGNIN + args.clients) + args.soak_users + WARM
    tmp = Path(tempfile.mkdtemp(prefix="bridge-scaleout-"))
    procs: list[subprocess.Popen[bytes]] = []
    # Node timeout 5 s (Redis' default is 15 s): the tests' 1 s lets a node starved of CPU for a
    # second by this load be voted down, a failover the soak would then count as errors.
    cluster = start_cluster(tmp / "cluster", node_timeout_ms=5000)
    try:
        sts_port, a_port, b_port, one_port, two_port = (free_port() for _ in range(5))
        moto = Path(sys.executable).parent / "moto_server"
        procs.append(subprocess.Popen([str(moto), "-H", "127.0.0.1", "-p", str(sts_port)],
                                      stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
        subprocess.run([sys.executable, "-m", "bridge", "keys", "generate", "--dir", str(tmp / "keys")],
                       check=True, stdout=subprocess.DEVNULL, cwd=ROOT)
        host = f"127.0.0.1:{two_port}"
        cfg = config(tmp, cluster, sts_port, host, args.threads)
        env = {**os.environ, "BRIDGE_ACCESS_LOG": "0", "BRIDGE_THREADS": str(args.threads),
               "BRIDGE_MAX_REQUESTS": "0"}  # no recycling: the soak follows the same workers throughout
        env.pop("PROMETHEUS_MULTIPROC_DIR", None)
        masters, servers = [], []
        for port in (a_port, b_port):
            p = subprocess.Popen([sys.executable, "-m", "bridge", "serve", "--config", str(cfg), "--bind",
                                  f"127.0.0.1:{port}", "--workers", str(args.workers)], env=env, cwd=ROOT,
                                 stderr=subprocess.DEVNULL, start_new_session=True)
            procs.append(p)
            masters.append(p.pid)
            servers.append(Server(f"http://127.0.0.1:{port}", p, cfg))
        conf = nginx_conf(tmp, {one_port: [a_port], two_port: [a_port, b_port]}, host)
        procs.append(subprocess.Popen([nginx, "-p", str(tmp), "-c", str(conf), "-g", "daemon off;"],
                                      stderr=subprocess.DEVNULL, start_new_session=True))
        for port in (a_port, b_port):
            wait(f"http://127.0.0.1:{port}/readyz", 180)
        one, two = f"http://127.0.0.1:{one_port}", f"http://127.0.0.1:{two_port}"
        wait(f"{two}/healthz")
        for k in range(WARM):  # warm every path on both instances
            s = requests.Session()
            base = (one, two)[k % 2]
            credentials(s, base, sign_in(s, base, f"u{bench_load.POOL - 1 - k:05d}"))

        ceiling = python_client_ceiling(
            lambda b: run_phase("healthz", b, args.clients, args.client_procs, min(5.0, args.seconds))[0])
        cs = requests.Session()
        cportal = sign_in(cs, two, f"u{bench_load.POOL - 1:05d}")
        credentials(cs, two, cportal)  # cached from here on
        gid = next(g["id"] for g in cportal["grants"] if g["role_arn"] == bench_load.ROLE)
        body = tmp / "duration"
        body.write_text("duration=3600")
        headers = {"Accept": "application/json", "X-CSRF-Token": cportal["csrf_token"],
                   "Cookie": f"bridge_session={cs.cookies.get('bridge_session')}"}
        group = {"one": Instances(one, servers), "two": Instances(two, servers)}  # both: B idles behind "one"
        targets = {name: Target(f"cached_{name}", f"{base}/credentials/{gid}", headers, body, server=group[name])
                   for name, base in (("one", one), ("two", two))}
        masters_redis = [m.client() for m in cluster.masters()]

        machine_line(f"per instance gunicorn gthread workers={args.workers} threads={args.threads}; Redis Cluster "
                     f"3+3 nodes; nginx round robin; sign-in flows from {args.clients} Python clients "
                     f"({args.client_procs} processes), {args.seconds:.0f} s per phase; cached fetches ab -k -c "
                     f"{args.clients} x {args.requests}; {args.rounds} rounds")
        print("rate limits on (counted in Redis on every request, never refused)")
        stub("sts", "moto_server on loopback instead of AWS STS",
             "no AWS account in a benchmark; the round trip to AWS is not in the figures")
        stub("upstream-idp", "the dev connector (pick a user) instead of an OIDC/SAML IdP round trip",
             "measures the bridge's side of a sign-in; an IdP's own time is not the bridge's")

        # Where the cores go: what a second instance can add here is what the rest leaves it.
        nginx_proc = procs[-1]
        cpu = CpuShare({
            "bridges": lambda: [w for m in masters for w in (m, *workers_of(m))],
            "moto": lambda: [procs[0].pid],
            "redis": lambda: [srv.proc.pid for srv in cluster.servers],
            "nginx": lambda: [nginx_proc.pid, *workers_of(nginx_proc.pid)]})
        rates: dict[str, list[float]] = {}
        for t in targets.values():  # warm every path in every worker
            measure(t.server or group["two"], t, 400, args.clients, None)
        offset = 0
        for kind, unit in (("signin", "flows/s"), ("cached", "req/s")):
            for r in range(args.rounds):
                for name, base in (("one", one), ("two", two)):
                    cpu.start()
                    if kind == "cached":
                        rnd: Round = measure(group[name], targets[name], args.requests, args.clients, masters_redis)
                        rps, errs = rnd.rps, rnd.errors
                        detail = (f"server CPU {rnd.cpu_ms:.2f} ms/req, Redis {rnd.redis_round_trips:.2f} round trips "
                                  f"{rnd.redis_commands:.2f} commands/req, ")
                        rates.setdefault(f"{kind}_{name}_cpu", []).append(rnd.cpu_ms)
                        rates.setdefault(f"{kind}_{name}_trips", []).append(rnd.redis_round_trips)
                    else:
                        cpu0 = group[name].cpu_seconds()
                        rps, res, _ = run_phase(kind, base, args.clients, args.client_procs, args.seconds,
                                                offset=offset)
                        offset += PER_SIGNIN  # distinct users per phase
                        errs = sum(1 for x in res if not x[2])
                        flows = max(1, len(res) - errs)
                        detail = f"server CPU {(group[name].cpu_seconds() - cpu0) * 1000 / flows:.1f} ms/flow, "
                        if len(res) > PER_SIGNIN:
                            print(f"  note: {len(res)} flows > {PER_SIGNIN} users set aside: some had cached "
                                  "credentials")
                        if errs:
                            print(f"  first errors: {sorted({x[3] for x in res if not x[2]})[:3]}")
                    share = cpu.line()
                    rates.setdefault(f"{kind}_{name}", []).append(rps)
                    rates.setdefault(f"{kind}_errors", []).append(errs)
                    print(f"{kind:7s} {name}  round {r + 1}: {rps:8.1f} {unit}  errors {errs}  ({detail}{share})",
                          flush=True)
            one_rate = sum(rates[f"{kind}_one"]) / args.rounds
            two_rate = sum(rates[f"{kind}_two"]) / args.rounds
            bench(f"scaleout_{kind}_one", round(one_rate, 1), unit)
            bench(f"scaleout_{kind}_two", round(two_rate, 1), unit)
            bench(f"scaleout_{kind}_ratio", round(two_rate / one_rate, 2), "ratio")
            bench(f"scaleout_{kind}_errors", sum(rates[f"{kind}_errors"]), "count")
        for name in ("one", "two"):
            bench(f"scaleout_cached_{name}_server_cpu", round(sum(rates[f"cached_{name}_cpu"]) / args.rounds, 3),
                  "ms/req")
            bench(f"scaleout_cached_{name}_redis_round_trips",
                  round(sum(rates[f"cached_{name}_trips"]) / args.rounds, 2), "per_req")
        signin_two = sum(rates["signin_two"]) / args.rounds
        print(f"Python client ceiling: {ceiling:.0f} req/s against nginx answering a constant = {ceiling / 4:.0f} "
              f"flows/s, {ceiling / 4 / signin_two:.1f} x the faster sign-in figure (>= 3: not the bottleneck)")
        bench("scaleout_python_client_ceiling_to_signin_ratio", round(ceiling / 4 / signin_two, 2), "ratio")
        if args.soak_minutes > 0:
            soak(two, masters, cluster, args)
        return 0
    finally:
        stop_processes(procs, 20)
        cluster.stop()
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
