"""The portal with 5,000 grants across 1,000 accounts: server render time and HTML size, and the filter
box's time per keystroke in Chromium. Targets: render <= 150 ms median, HTML <= 1.5 MB,
filter <= 50 ms per keystroke.

Starts its own redis-server; serves the app in-process (werkzeug, one thread per request); signs in
through the dev connector; renders /portal N times (median, p90); then opens the portal in
Debian's chromium (Playwright) and types a query one key at a time, timing each keystroke's filter
pass plus the style/layout it forces.

    .venv/bin/python bench/bench_portal.py [--renders 30] [--accounts 1000] [--roles 5]
"""

from __future__ import annotations

import argparse
import os
import platform
import re
import shutil
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

import requests

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from _peers import free_port, start_redis, stub  # noqa: E402 - bench/ is on sys.path when run

from bridge.config import settings_from_dict  # noqa: E402
from bridge.keys.signing import generate_cache_key, generate_key, generate_saml_key  # noqa: E402
from bridge.runtime.app import create_app  # noqa: E402


def bench(name: str, value: float, unit: str) -> None:
    print(f"BENCH {name} {value:.1f} {unit}" if isinstance(value, float) else f"BENCH {name} {value} {unit}",
          flush=True)


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--renders", type=int, default=30)
    ap.add_argument("--accounts", type=int, default=1000)
    ap.add_argument("--roles", type=int, default=5)
    ap.add_argument("--no-browser", action="store_true")
    ap.add_argument("--profile", action="store_true", help="print where one render spends its time")
    a = ap.parse_args()
    print(f"# machine: {platform.platform()} python {platform.python_version()} cpus {os.cpu_count()}")
    tmp = Path(tempfile.mkdtemp(prefix="bench-portal-"))
    url, stop_redis = start_redis(tmp / "redis")
    try:
        keys = tmp / "keys"
        generate_key(keys, "RS256")
        generate_saml_key(keys)
        generate_cache_key(keys)
        role_names = ["Admin", "PowerUser", "Developer", "ReadOnly", "Billing", "Network", "Security"][:a.roles]
        accounts = {f"{100000000000 + i}": {"alias": f"team-{i:04d}", "label": f"Team {i:04d} workloads",
                                            "roles": {r: {"label": f"{r} access", "max_session_duration": 43200}
                                                      for r in role_names}}
                    for i in range(a.accounts)}
        rules = [{"name": "everything", "match": {"group": "everyone"},
                  "grants": [{"account": acct, "role": r, "duration": {"max": 43200}}
                             for acct in accounts for r in role_names]}]
        port = free_port()
        base = f"http://127.0.0.1:{port}"
        settings = settings_from_dict({
            "base_url": base, "secret_key": "bench", "insecure_dev_login": True, "log_level": "WARNING",
            "redis": {"url": url}, "issuer": {"url": "https://bridge.example.com", "keys_dir": str(keys)},
            "aws": {"sts_endpoint_url": "http://127.0.0.1:9"},
            "connectors": [{"id": "dev", "type": "dev", "users": [
                {"subject": "alice", "email": "alice@example.com", "name": "Alice", "groups": ["everyone"]}]}],
            "mapping": {"accounts": accounts, "rules": rules}})
        app = create_app(settings)
        stub("upstream-idp", "the dev connector for the one sign-in",
             "sign-in is not measured; /portal renders from the stored session alone")
        print("# STS: none (its endpoint is unreachable on purpose: rendering /portal never calls it)")
        from werkzeug.serving import make_server

        srv = make_server("127.0.0.1", port, app, threaded=True)
        threading.Thread(target=srv.serve_forever, daemon=True).start()
        s = requests.Session()
        r = s.get(f"{base}/login/dev", allow_redirects=False, timeout=10)
        state = re.search(r"state=([\w-]+)", r.headers["location"])
        assert state
        s.post(f"{base}/callback/dev", data={"state": state[1], "user": "alice"}, allow_redirects=False, timeout=60)
        grants = len(s.get(f"{base}/portal", headers={"Accept": "application/json"}, timeout=60).json()["grants"])
        print(f"# {grants} grants across {a.accounts} accounts")
        # Server-side render, in-process (test client: no socket noise), with the session cookie.
        client = app.test_client()
        client.set_cookie(settings.session.cookie_name, s.cookies[settings.session.cookie_name])
        times, size = [], 0
        for _ in range(a.renders):
            t0 = time.perf_counter()
            resp = client.get("/portal")
            times.append((time.perf_counter() - t0) * 1000)
            size = len(resp.data)
            assert resp.status_code == 200
        if a.profile:
            import cProfile
            import pstats

            prof = cProfile.Profile()
            prof.runcall(client.get, "/portal")
            pstats.Stats(prof).sort_stats("cumulative").print_stats(25)
        bench("portal_render_median", statistics.median(times), "ms")
        bench("portal_render_min", min(times), "ms")
        print(f"# load average while rendering: {os.getloadavg()}")
        bench("portal_render_p90", sorted(times)[int(len(times) * 0.9) - 1], "ms")
        bench("portal_html_bytes", size, "bytes")
        bench("portal_html_gzip_bytes", len(__import__("gzip").compress(resp.data)), "bytes")
        if not a.no_browser:
            browser_bench(base, settings.session.cookie_name, s.cookies[settings.session.cookie_name])
        srv.shutdown()
        return 0
    finally:
        stop_redis()
        shutil.rmtree(tmp, ignore_errors=True)


KEYSTROKES_JS = """async (query) => {
  const f = document.getElementById('filter');
  const out = [];
  for (const ch of query) {
    const t0 = performance.now();
    f.value += ch;
    f.dispatchEvent(new Event('input', { bubbles: true }));
    void document.body.offsetHeight;  // the style and layout the change forces
    out.push(performance.now() - t0);
    await new Promise((r) => requestAnimationFrame(() => setTimeout(r, 0)));
  }
  const shown = document.querySelectorAll('#accounts details:not([hidden]) li.role:not([hidden])').length;
  return { out, shown };
}"""


def browser_bench(base: str, cookie_name: str, cookie: str) -> None:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(executable_path="/usr/bin/chromium", headless=True,
                              args=["--no-sandbox", "--disable-gpu", "--no-first-run"])
        ctx = b.new_context()
        ctx.add_cookies([{"name": cookie_name, "value": cookie, "url": base}])
        page = ctx.new_page()
        t0 = time.perf_counter()
        page.goto(f"{base}/portal", wait_until="load")
        bench("portal_browser_load", (time.perf_counter() - t0) * 1000, "ms")
        all_times: list[float] = []
        for query in ("team-0999 admin", "developer", "12"):
            page.fill("#filter", "")
            page.evaluate("() => document.getElementById('filter').dispatchEvent(new Event('input'))")
            res = page.evaluate(KEYSTROKES_JS, query)
            print(f"# query {query!r}: {res['shown']} roles shown; per key ms "
                  f"{[round(x, 1) for x in res['out']]}")
            all_times += res["out"]
        bench("filter_keystroke_median", statistics.median(all_times), "ms")
        bench("filter_keystroke_max", max(all_times), "ms")
        b.close()


if __name__ == "__main__":
    raise SystemExit(main())
