"""Where a worker's CPU goes on a cached POST /credentials/<grant> (and on /healthz, the baseline), in-process.

Not a benchmark (no BENCH lines): the app of bench/bench_credentials.py (same settings, rate limits on, a
real redis-server, moto's STS for the one fill of the cache, prometheus_client in multiprocess mode as under
gunicorn) built in this process and driven through its WSGI callable with a raw environ — no gunicorn, no
sockets to the client — under cProfile (CPU time). The audit trail and logs go to stdout, as under
`bridge serve`: send it to /dev/null. Prints microseconds per request of each kind and the top functions.

    .venv/bin/python bench/profile_credentials.py [--path credentials|chained|exchange] [--requests 3000] \
        [--top 40] [--rounds 3] [--sample | --diff] >/dev/null

``--path``: the cached credentials of bench_credentials.py (default), the cached chained credential of
bench_chains_served.py, or the cached token exchange of bench_exchange_served.py (its OIDC stand-in in this
process); ``--top 0``: the timings only; ``--sample``: a statistical profile (own time by package and
function); ``--diff``: what only the target does — own time per request minus /healthz's, by function.
"""

from __future__ import annotations

import argparse
import cProfile
import io
import json
import os
import pstats
import signal
import sys
import tempfile
import time
from typing import Any
from urllib.parse import urlencode

os.environ.setdefault("PROMETHEUS_MULTIPROC_DIR", tempfile.mkdtemp(prefix="bridge-profile-metrics-"))

from _peers import ROOT, Stack, free_port  # noqa: E402
from bench_chains_served import SETTINGS as CHAINS  # noqa: E402
from bench_credentials import SETTINGS  # noqa: E402
from bench_exchange_served import Idp, exchange_form, exchange_settings  # noqa: E402

from bridge.config.loading import load_settings  # noqa: E402
from bridge.runtime.app import create_app  # noqa: E402


def environ(method: str, path: str, headers: dict[str, str], body: bytes = b"") -> dict[str, Any]:
    env: dict[str, Any] = {
        "REQUEST_METHOD": method, "PATH_INFO": path, "QUERY_STRING": "", "SERVER_NAME": "127.0.0.1",
        "SERVER_PORT": "8000", "SERVER_PROTOCOL": "HTTP/1.1", "REMOTE_ADDR": "127.0.0.1", "wsgi.url_scheme": "http",
        "wsgi.input": io.BytesIO(b""), "wsgi.errors": sys.stderr, "wsgi.multithread": True,
        "wsgi.multiprocess": True, "wsgi.run_once": False, "wsgi.version": (1, 0), "HTTP_HOST": "127.0.0.1:8000",
        "HTTP_USER_AGENT": "ApacheBench/2.3", "HTTP_CONNECTION": "keep-alive"}
    if method == "POST":
        env.update(CONTENT_TYPE="application/x-www-form-urlencoded", CONTENT_LENGTH=str(len(body)))
        env["bridge.profile_body"] = body
    for k, v in headers.items():
        env["HTTP_" + k.upper().replace("-", "_")] = v
    return env


def call(app: Any, env: dict[str, Any]) -> tuple[str, bytes]:
    env = {**env, "wsgi.input": io.BytesIO(env.get("bridge.profile_body", b""))}
    status: list[str] = []
    out = app(env, lambda s, h, exc=None: status.append(s))
    body = b"".join(out)
    if hasattr(out, "close"):
        out.close()
    return status[0], body


def sample(app: Any, env: dict[str, Any], n: int, top: int) -> None:
    """Inclusive share of CPU samples per function (a function counted once per sample it is on the stack of)."""
    stacks: list[tuple[str, ...]] = []

    def on_tick(_sig: int, frame: Any) -> None:
        names = []
        while frame is not None:
            code = frame.f_code
            names.append(f"{code.co_filename.rsplit('site-packages/', 1)[-1].replace(str(ROOT) + '/', '')}:"
                         f"{code.co_firstlineno}({code.co_name})")
            frame = frame.f_back
        stacks.append(tuple(dict.fromkeys(names)))

    signal.signal(signal.SIGPROF, on_tick)
    signal.setitimer(signal.ITIMER_PROF, 97e-6, 97e-6)
    for _ in range(n):
        call(app, env)
    signal.setitimer(signal.ITIMER_PROF, 0, 0)
    counts: dict[str, int] = {}
    for st in stacks:
        for name in st:
            counts[name] = counts.get(name, 0) + 1
    by_package: dict[str, int] = {}
    for st in stacks:  # where each sample's innermost Python frame is: its own time, by package
        inner = st[0].split(":", 1)[0]
        pkg = inner.split("/")[0] if not inner.startswith("bridge/") else "/".join(inner.split("/")[:2])
        by_package[pkg] = by_package.get(pkg, 0) + 1
    print(f"{len(stacks)} samples; own time by package:", file=sys.stderr)
    for pkg, c in sorted(by_package.items(), key=lambda kv: -kv[1])[:25]:
        print(f"{100 * c / len(stacks):6.1f} %  {pkg}", file=sys.stderr)
    own: dict[str, int] = {}
    for st in stacks:
        own[st[0]] = own.get(st[0], 0) + 1
    print("own time by function:", file=sys.stderr)
    for name, c in sorted(own.items(), key=lambda kv: -kv[1])[:top]:
        print(f"{100 * c / len(stacks):6.1f} %  {name}", file=sys.stderr)
    print("inclusive share of each function:", file=sys.stderr)
    for name, c in sorted(counts.items(), key=lambda kv: -kv[1])[:top]:
        print(f"{100 * c / len(stacks):6.1f} %  {name}", file=sys.stderr)


def signed_in(stack: Stack, **settings: Any) -> tuple[Any, dict[str, Any], dict[str, str]]:
    """The app of ``settings`` in this process, alice signed in: (app, her portal JSON, a cached request's headers)."""
    path = stack.tmp / "bridge.json"
    path.write_text(json.dumps(stack.config(free_port(), **settings)))
    stack.wait_sts()
    app = create_app(load_settings(path))
    client = app.test_client()
    r = client.get("/login/dev")
    state = r.headers["location"].split("state=")[1].split("&")[0]
    r = client.post("/callback/dev", data={"state": state, "user": "alice"})
    assert r.status_code == 303, r.status_code
    portal = client.get("/portal", headers={"Accept": "application/json"}).get_json()
    cookie = client.get_cookie("bridge_session")
    assert cookie is not None
    return app, portal, {"Accept": "application/json", "X-CSRF-Token": portal["csrf_token"],
                         "Cookie": f"bridge_session={cookie.value}"}


def credentials(stack: Stack) -> tuple[Any, dict[str, Any]]:
    app, portal, headers = signed_in(stack, **SETTINGS)
    return app, environ("POST", f"/credentials/{portal['grants'][0]['id']}", headers)


def chained(stack: Stack) -> tuple[Any, dict[str, Any]]:
    app, portal, headers = signed_in(stack, **CHAINS)
    grant = next(g for g in portal["grants"] if g.get("hubs"))
    return app, environ("POST", f"/credentials/{grant['id']}", headers)


def exchange(stack: Stack) -> tuple[Any, dict[str, Any]]:
    idp = Idp()
    path = stack.tmp / "bridge.json"
    path.write_text(json.dumps(stack.config(free_port(), **exchange_settings(idp))))
    stack.wait_sts()
    body = urlencode(exchange_form(idp)).encode()
    env = environ("POST", "/oauth/token", {}, body)
    return create_app(load_settings(path)), env


SETUPS = {"credentials": credentials, "chained": chained, "exchange": exchange}


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--requests", type=int, default=3000)
    ap.add_argument("--top", type=int, default=40)
    ap.add_argument("--sort", default="tottime")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--path", default="credentials", choices=sorted(SETUPS),
                    help="credentials: a cached POST /credentials/<grant>; chained: the same for a grant reached "
                         "through a hub (bench_chains_served.py); exchange: a cached token exchange at /oauth/token "
                         "(bench_exchange_served.py)")
    ap.add_argument("--kind", default="target", choices=["target", "healthz"], help="what --top/--sample profile")
    ap.add_argument("--sample", action="store_true",
                    help="a statistical profile instead (a stack every 97 us of CPU): cProfile's own cost per call "
                         "inflates code with many small calls")
    ap.add_argument("--diff", action="store_true",
                    help="cProfile both, print the functions whose own time per request exceeds /healthz's the most")
    args = ap.parse_args()
    with Stack("profile") as stack:
        app, target_env = SETUPS[args.path](stack)
        kinds = {"healthz": environ("GET", "/healthz", {}), "target": target_env}
        for name, env in kinds.items():
            for _ in range(200):  # warm: the cache filled, the session seen by this process, read ahead
                status, body = call(app, env)
            assert status.startswith("200"), (name, status, body[:300])
            assert name == "healthz" or b"SessionToken" in body, body[:300]
        best = dict.fromkeys(kinds, float("inf"))
        for _ in range(args.rounds):  # interleaved; the best round of each (the machine is shared)
            for name, env in kinds.items():
                t0 = time.process_time()
                for _ in range(args.requests):
                    call(app, env)
                best[name] = min(best[name], (time.process_time() - t0) / args.requests * 1e6)
        for name, us in best.items():
            label = name if name == "healthz" else f"{args.path}_cached"
            print(f"{label:20s} {us:7.1f} us CPU/request (in-process, no profiler, best of {args.rounds} rounds)",
                  file=sys.stderr)
        print(f"{args.path} / healthz CPU: {best['target'] / best['healthz']:.2f}", file=sys.stderr)
        if args.sample:
            sample(app, kinds[args.kind], args.requests, args.top or 40)
            return 0
        if not args.top:
            return 0
        prof = profile(app, kinds[args.kind], args.requests)
        if args.diff:
            diff(prof, profile(app, kinds["healthz"], args.requests), args.requests, args.top)
            return 0
        s = io.StringIO()
        pstats.Stats(prof, stream=s).sort_stats(args.sort).print_stats(args.top)
        print(s.getvalue(), file=sys.stderr)
    return 0


def profile(app: Any, env: dict[str, Any], n: int) -> cProfile.Profile:
    prof = cProfile.Profile(time.process_time)  # CPU, not the wait on Redis
    prof.enable()
    for _ in range(n):
        call(app, env)
    prof.disable()
    return prof


def diff(target: cProfile.Profile, base: cProfile.Profile, n: int, top: int) -> None:
    """Own time and calls per request, the target's minus /healthz's: the work only the target does."""
    a: dict[Any, Any] = pstats.Stats(target).stats  # type: ignore[attr-defined]
    b: dict[Any, Any] = pstats.Stats(base).stats  # type: ignore[attr-defined]
    zero = (0, 0, 0.0, 0.0)
    rows = sorted(((a.get(k, zero)[2] - b.get(k, zero)[2]) / n * 1e6, a.get(k, zero)[1] / n, b.get(k, zero)[1] / n, k)
                  for k in set(a) | set(b))
    print("own us/request more than /healthz (under cProfile), calls per request target vs /healthz:", file=sys.stderr)
    for us, ca, cb, (file, line, fn) in reversed(rows[-top:]):
        print(f"{us:7.1f} us  {ca:5.1f} vs {cb:5.1f}  {file.rsplit('site-packages/', 1)[-1]}:{line}({fn})",
              file=sys.stderr)


if __name__ == "__main__":
    sys.exit(main())
