"""The STS bulkhead under a stalled STS: how fast /healthz and the JWKS answer while ~100 credential
requests want an STS that accepts connections and never answers (tests/peers/silent_sts.py).

One `bridge serve` (gunicorn gthread, 1 worker, 8 threads, ``aws.sts_max_concurrency`` 4) with its
own redis-server. Phases, each ``--seconds`` long, one prober opening a fresh connection per probe
(as kubelet does) alternating /healthz and /.well-known/jwks.json:

  baseline   nothing else going on
  stall      ``--clients`` threads each asking for credentials, and again after each 503 as its
             Retry-After says (with jitter: 0.5-1.5 x); ``--hammer``: again after 0.5 s, ignoring it
  no cap     the same stall against a second server with the cap off (sts_max_concurrency 1000):
             what the bulkhead prevents (probes time out after 2 s)

    .venv/bin/python bench/bench_bulkhead.py [--seconds 8] [--clients 100] [--hammer]

BENCH lines: healthz/JWKS p50/p99 per phase, the stall-to-baseline p99 ratio, the latency of the
fast 503s, and the share of probes answered without the cap. Client and server share this
machine's cores, so figures are a ceiling for the server alone.
"""

from __future__ import annotations

import argparse
import os
import platform
import random
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import requests

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # tests.peers, when run as a script
from _peers import free_port, wait  # noqa: E402 - bench/ is on sys.path when run

from tests.peers.silent_sts import SilentSts  # noqa: E402

ROLE = "arn:aws:iam::123456789012:role/Admin"
PROBE_TIMEOUT = 2.0


def pct(values: list[float], p: float) -> float:
    return statistics.quantiles(values, n=100)[int(p) - 1] if len(values) >= 2 else float("nan")


def probe(base: str, seconds: float) -> tuple[dict[str, list[float]], int, int]:
    """(latencies in ms per path, probes sent, probes that failed or timed out)."""
    lat: dict[str, list[float]] = {"/healthz": [], "/.well-known/jwks.json": []}
    sent = failed = 0
    stop = time.monotonic() + seconds
    while time.monotonic() < stop:
        for path, out in lat.items():
            sent += 1
            t0 = time.perf_counter()
            try:
                ok = requests.get(f"{base}{path}", timeout=PROBE_TIMEOUT).status_code == 200
            except requests.RequestException:
                ok = False
            if ok:
                out.append((time.perf_counter() - t0) * 1000)
            else:
                failed += 1
            time.sleep(0.02)
    return lat, sent, failed


class Stall:
    """``clients`` threads asking for credentials, again after each answer, until stopped."""

    def __init__(self, base: str, cookie: dict[str, str], grant: str, csrf: str, clients: int,
                 hammer: bool) -> None:
        self.busy_ms: list[float] = []
        self.statuses: dict[str, int] = {}
        self._stop = threading.Event()
        self._lock = threading.Lock()
        url = f"{base}/credentials/{grant}"
        headers = {"Accept": "application/json", "X-CSRF-Token": csrf}

        def run() -> None:
            rng = random.Random()
            while not self._stop.is_set():
                t0 = time.perf_counter()
                pause = 0.5
                try:
                    r = requests.post(url, headers=headers, cookies=cookie, timeout=60)
                    code = r.json().get("error", str(r.status_code)) if r.status_code != 200 else "200"
                    if not hammer:
                        pause = float(r.headers.get("Retry-After", "1")) * rng.uniform(0.5, 1.5)
                except (requests.RequestException, ValueError):
                    code = "client_error"
                ms = (time.perf_counter() - t0) * 1000
                with self._lock:
                    self.statuses[code] = self.statuses.get(code, 0) + 1
                    if code == "sts_busy":
                        self.busy_ms.append(ms)
                self._stop.wait(pause)

        self.threads = [threading.Thread(target=run, daemon=True) for _ in range(clients)]
        for t in self.threads:
            t.start()

    def stop(self) -> None:
        self._stop.set()


def sign_in(base: str) -> tuple[dict[str, str], str, str]:
    s = requests.Session()
    r = s.get(f"{base}/login/dev", allow_redirects=False, timeout=10)
    state = r.headers["location"].split("state=")[1].split("&")[0]
    s.post(f"{base}/callback/dev", data={"state": state, "user": "alice"}, timeout=10)
    portal = s.get(f"{base}/portal", headers={"Accept": "application/json"}, timeout=10).json()
    return s.cookies.get_dict(), portal["grants"][0]["id"], portal["csrf_token"]


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--seconds", type=float, default=8.0, help="length of each phase")
    ap.add_argument("--clients", type=int, default=100, help="credential clients during the stall")
    ap.add_argument("--hammer", action="store_true", help="clients retry after 0.5 s, not after Retry-After")
    args = ap.parse_args()

    tmp = Path(tempfile.mkdtemp(prefix="bridge-bulkhead-"))
    procs: list[subprocess.Popen[bytes]] = []
    stalled: list[SilentSts] = []
    try:
        rport = free_port()
        procs.append(subprocess.Popen([shutil.which("redis-server") or "redis-server", "--bind", "127.0.0.1",
                                       "--port", str(rport), "--save", "", "--appendonly", "no", "--dir", str(tmp)],
                                      stdout=subprocess.DEVNULL))
        subprocess.run([sys.executable, "-m", "bridge", "keys", "generate", "--dir", str(tmp / "keys")],
                       check=True, stdout=subprocess.DEVNULL)

        def serve(cap: int) -> str:
            sts = SilentSts("silent")
            stalled.append(sts)
            port = free_port()
            cfg = tmp / f"bench-{port}.yaml"
            cfg.write_text(f"""
base_url: http://127.0.0.1:{port}
listen: 127.0.0.1:{port}
insecure_dev_login: true
log_level: ERROR
rate_limits: {{sign_in_per_minute: 0, credentials_per_minute: 0}}
redis: {{url: "redis://127.0.0.1:{rport}/0", key_prefix: "bench{port}:"}}
issuer: {{url: https://bridge.example.com, keys_dir: {tmp / 'keys'}}}
aws: {{sts_endpoint_url: "{sts.url}", sts_timeout: 30, sts_max_attempts: 1, sts_max_concurrency: {cap}}}
audit: {{sink: none}}
connectors:
  - {{id: dev, type: dev, users: [{{subject: alice, email: alice@example.com, groups: [aws-admins], mfa: true}}]}}
mapping:
  rules:
    - {{name: admins, match: {{group: aws-admins}}, grants: [{{role_arn: "{ROLE}"}}]}}
""")
            env = {**os.environ, "BRIDGE_ACCESS_LOG": "0", "BRIDGE_THREADS": "8"}
            env.pop("PROMETHEUS_MULTIPROC_DIR", None)
            procs.append(subprocess.Popen([sys.executable, "-m", "bridge", "serve", "--config", str(cfg),
                                           "--workers", "1"], env=env, stderr=subprocess.DEVNULL,
                                          start_new_session=True))
            base = f"http://127.0.0.1:{port}"
            wait(f"{base}/readyz", 60)
            return base

        base = serve(4)
        cookie, grant, csrf = sign_in(base)
        probe(base, 1.0)  # warm up
        print(f"machine: {platform.machine()} {os.cpu_count()} cores, Python {platform.python_version()}; "
              f"gunicorn gthread workers=1 threads=8 sts_max_concurrency=4; {args.clients} credential clients "
              f"({'retrying after 0.5 s' if args.hammer else 'obeying Retry-After'}); "
              f"{args.seconds:.0f} s per phase; probes open a fresh connection, timeout {PROBE_TIMEOUT:.0f} s")

        base_lat, _, base_failed = probe(base, args.seconds)
        stall = Stall(base, cookie, grant, csrf, args.clients, args.hammer)
        time.sleep(1.0)  # the STS holds its share; the rest are being refused
        stall_lat, _, stall_failed = probe(base, args.seconds)
        stall.stop()
        held = stalled[0].holding

        off = serve(1000)
        off_cookie, off_grant, off_csrf = sign_in(off)
        off_stall = Stall(off, off_cookie, off_grant, off_csrf, args.clients, args.hammer)
        time.sleep(1.0)
        off_lat, off_sent, off_failed = probe(off, args.seconds)
        off_stall.stop()

        for name, lat, failed in (("baseline", base_lat, base_failed), ("stall", stall_lat, stall_failed)):
            for path, values in lat.items():
                print(f"{name:9s} {path:24s} p50 {pct(values, 50):7.2f} ms  p99 {pct(values, 99):7.2f} ms  "
                      f"n {len(values)}  failed {failed}")
        print(f"stall: credential answers {dict(sorted(stall.statuses.items()))}; STS holding {held} connection(s)")
        print(f"no cap: {off_sent - off_failed}/{off_sent} probes answered within {PROBE_TIMEOUT:.0f} s; "
              f"credential answers {dict(sorted(off_stall.statuses.items()))}")
        hb, hs = pct(base_lat["/healthz"], 99), pct(stall_lat["/healthz"], 99)
        print(f"BENCH bulkhead_healthz_baseline_p99 {hb:.2f} ms")
        print(f"BENCH bulkhead_healthz_stall_p50 {pct(stall_lat['/healthz'], 50):.2f} ms")
        print(f"BENCH bulkhead_healthz_stall_p99 {hs:.2f} ms")
        print(f"BENCH bulkhead_healthz_p99_stall_to_baseline_ratio {hs / hb:.2f} ratio")
        print(f"BENCH bulkhead_jwks_stall_p99 {pct(stall_lat['/.well-known/jwks.json'], 99):.2f} ms")
        print(f"BENCH bulkhead_probes_failed_under_stall {stall_failed} count")
        print(f"BENCH bulkhead_sts_busy_503_p99 {pct(stall.busy_ms, 99):.2f} ms")
        print(f"BENCH bulkhead_off_probes_answered {100 * (off_sent - off_failed) / max(off_sent, 1):.1f} %")
        return 0
    finally:
        for sts in stalled:
            sts.close()
        for p in procs:
            try:
                os.killpg(p.pid, signal.SIGTERM) if p.args[1:3] == ["-m", "bridge"] else p.terminate()
                p.wait(20)
            except (ProcessLookupError, subprocess.TimeoutExpired):
                p.kill()
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
