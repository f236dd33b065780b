"""The benchmarks keep running: each HTTP benchmark in ``--smoke`` mode (a few requests, one worker) on
its real peers, and the shared harness's counting (bench/_peers.py) against a server whose Redis
traffic per request is known."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from bridge.runtime.localredis import free_port, start_redis

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
BENCH = ROOT / "bench"
sys.path.insert(0, str(BENCH))

import _peers  # noqa: E402

needs_ab = pytest.mark.skipif(not shutil.which("ab"), reason="ab missing: scripts/setup-system.sh test installs it")
BENCH_LINE = re.compile(r"^BENCH (\S+) (-?[\d.]+|nan) (\S+)$", re.M)


def run_bench(name: str, *args: str) -> tuple[str, dict[str, float]]:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    env.pop("PROMETHEUS_MULTIPROC_DIR", None)
    p = subprocess.run([sys.executable, str(BENCH / f"bench_{name}.py"), "--smoke", *args], capture_output=True,
                       text=True, timeout=300, env=env, cwd=ROOT)
    assert p.returncode == 0, p.stdout[-3000:] + p.stderr[-3000:]
    figures = {m[1]: float(m[2]) for m in BENCH_LINE.finditer(p.stdout)}
    assert figures, p.stdout[-3000:]
    return p.stdout, figures


# -- the harness against a server whose Redis traffic is known --------------------------------------

SERVER = textwrap.dedent("""
    import sys
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
    import redis
    r = redis.Redis.from_url(sys.argv[2])
    class H(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        def log_message(self, *a):
            pass
        def do_GET(self):
            if self.path == "/pipeline":  # two commands, one round trip
                r.pipeline(transaction=False).get("a").incr("b").execute()
            elif self.path == "/two":  # two commands, two round trips
                r.get("a")
                r.incr("b")
            body = b"ok"
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.send_header("Connection", "keep-alive")  # ab -k reuses only a connection said to be kept
            self.end_headers()
            self.wfile.write(body)
    ThreadingHTTPServer(("127.0.0.1", int(sys.argv[1])), H).serve_forever()
""")


@pytest.fixture
def known_server(tmp_path: Path) -> Iterator[tuple[_peers.Server, redis.Redis]]:
    url, stop = start_redis(tmp_path / "redis")
    port = free_port()
    proc = subprocess.Popen([sys.executable, "-c", SERVER, str(port), url], start_new_session=True)
    try:
        server = _peers.Server(f"http://127.0.0.1:{port}", proc, tmp_path)
        server.wait("/none", 20)
        yield server, redis.Redis.from_url(url)
    finally:
        _peers.stop_processes([proc])
        stop()


@needs_ab
def test_harness_counts_redis_round_trips_and_commands_per_request(
        known_server: tuple[_peers.Server, redis.Redis], capsys: pytest.CaptureFixture[str]) -> None:
    server, rc = known_server
    targets = [_peers.Target("none", f"{server.base}/none"), _peers.Target("pipeline", f"{server.base}/pipeline"),
               _peers.Target("two", f"{server.base}/two")]
    runs = _peers.interleave(server, targets, rounds=2, requests_per_round=100, concurrency=4, rc=rc, warm=10)
    med = {k: sorted(r.redis_round_trips for r in v)[0] for k, v in runs.items()}
    assert med["none"] == pytest.approx(0, abs=0.02)
    assert med["pipeline"] == pytest.approx(1, abs=0.02)
    assert med["two"] == pytest.approx(2, abs=0.02)
    assert all(r.redis_commands == pytest.approx(2, abs=0.02) for k in ("pipeline", "two") for r in runs[k])
    by_name = runs["pipeline"][0].commands
    assert by_name["get"] == pytest.approx(1, abs=0.02) and by_name["incrby"] == pytest.approx(1, abs=0.02)
    assert all(r.cpu_ms > 0 and r.rps > 0 and r.errors == 0 for v in runs.values() for r in v)
    ratios = _peers.report("t", runs, baseline="none")
    out = capsys.readouterr().out
    trips = re.search(r"^BENCH t_pipeline_redis_round_trips ([\d.]+) per_req$", out, re.M)
    # the report's figure is the median of the rounds: a worker's first connection (its HELLO) may land in one
    assert trips and float(trips[1]) == pytest.approx(1, abs=0.05), out
    assert set(ratios) >= {"pipeline", "two"}


@needs_ab
def test_harness_counts_failed_requests(known_server: tuple[_peers.Server, redis.Redis]) -> None:
    server, rc = known_server
    server.proc.kill()  # nothing answers: every request fails, none is counted as served
    server.proc.wait(10)
    with pytest.raises(subprocess.CalledProcessError):
        _peers.measure(server, _peers.Target("gone", f"{server.base}/none"), 10, 1, rc)


def test_target_line_says_met_or_missed(capsys: pytest.CaptureFixture[str]) -> None:
    assert _peers.target("ratio", 0.6, 0.5) and not _peers.target("ratio", 0.4, 0.5)
    assert _peers.target("p50", 1.5, 2, at_most=True) and not _peers.target("p50", 2.5, 2, at_most=True)
    assert capsys.readouterr().out.splitlines() == [
        "TARGET ratio: 0.6 >= 0.5 met", "TARGET ratio: 0.4 >= 0.5 MISSED",
        "TARGET p50: 1.5 <= 2 met", "TARGET p50: 2.5 <= 2 MISSED"]


# -- each benchmark in smoke mode --------------------------------------------------------------------

@needs_ab
def test_chains_served_smoke() -> None:
    out, f = run_bench("chains_served")
    assert "STUB sts:" in out and "TARGET cached direct / healthz req/s" in out
    assert f["served_healthz_redis_round_trips"] == 0 and f["served_cached_direct_redis_round_trips"] >= 1
    assert f["served_cached_direct_errors"] == 0 and f["served_cached_direct_server_cpu"] > 0


@needs_ab
def test_exchange_served_smoke() -> None:
    out, f = run_bench("exchange_served")
    assert "STUB upstream-idp:" in out and "TARGET cached exchange / healthz req/s" in out
    assert f["served_cached_exchange_errors"] == 0 and f["served_cached_exchange_redis_round_trips"] >= 1
    assert f["served_exchange_idp_fetches_after_warmup"] == 0


@needs_ab
def test_credentials_smoke() -> None:
    out, f = run_bench("credentials")
    assert "STUB sts:" in out and "TARGET Redis round trips per cached request at 8 connections" in out
    for c in (8, 50):
        assert f[f"c{c}_credentials_cached_errors"] == 0 and f[f"c{c}_credentials_cached_redis_round_trips"] >= 1
        assert f[f"c{c}_credentials_cached_to_healthz_ratio"] > 0
    assert f["c8_credentials_fresh_errors"] == 0 and f["session_redis_memory"] > 0


@needs_ab
def test_sso_smoke() -> None:
    out, f = run_bench("sso")
    assert "STUB sts:" in out
    assert f["sso_get_role_credentials_cached_errors"] == 0 and f["sso_list_accounts_1000_errors"] == 0
    assert f["sso_list_accounts_1000_p50_to_healthz_p50"] > 0


@needs_ab
def test_portal_smoke() -> None:
    out, f = run_bench("portal")
    assert "STUB upstream-idp:" in out
    assert f["portal_healthz_server_median"] > 0 and f["portal_warm_server_median"] > 0
    assert f["portal_cold_reload_server_median"] > 0 and f["portal_cold_fresh_worker_server_median"] > 0


@needs_ab
def test_load_smoke() -> None:
    if not shutil.which("nginx", path=f"{os.environ.get('PATH', '')}:/usr/sbin"):
        pytest.skip("nginx missing (the Python client's ceiling): scripts/setup-system.sh test installs it")
    out, f = run_bench("load")
    assert "Python client ceiling" in out and f["load_python_client_ceiling"] > 0
    assert f["load_cached_errors"] == 0 and f["load_cached_redis_round_trips"] >= 1
    assert f["load_restart_wrong_after"] == 0 and f["load_restart_errors_outside_window"] == 0


@needs_ab
def test_scaleout_smoke() -> None:
    if not shutil.which("nginx", path=f"{os.environ.get('PATH', '')}:/usr/sbin"):
        pytest.skip("nginx missing: scripts/setup-system.sh test installs it")
    out, f = run_bench("scaleout")
    assert "STUB sts:" in out
    assert f["scaleout_cached_errors"] == 0 and f["scaleout_signin_errors"] == 0
    assert f["scaleout_cached_two_redis_round_trips"] >= 1 and f["scaleout_cached_ratio"] > 0


def test_the_in_process_profile_of_a_cached_request_runs() -> None:
    """bench/profile_credentials.py (not a benchmark: a profile) still builds the app and profiles both ways."""
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    env.pop("PROMETHEUS_MULTIPROC_DIR", None)
    for mode in (["--top", "5"], ["--sample", "--top", "5"], ["--path", "exchange", "--diff", "--top", "5"],
                 ["--path", "chained", "--top", "0"]):
        p = subprocess.run([sys.executable, str(BENCH / "profile_credentials.py"), "--requests", "30", "--rounds", "1",
                            *mode], capture_output=True, text=True, timeout=300, env=env, cwd=ROOT)
        assert p.returncode == 0, p.stderr[-3000:]
        path = mode[1] if mode[0] == "--path" else "credentials"
        assert f"{path}_cached" in p.stderr and f"{path} / healthz CPU" in p.stderr, p.stderr[-3000:]
        said = {"--sample": "own time by package", "--diff": "more than /healthz", "0": "healthz CPU"}
        assert next((v for k, v in said.items() if k in mode), "function calls") in p.stderr, p.stderr[-3000:]
