"""``bridge demo``: Redis, a local STS (moto_server), the demo OIDC IdP and the bridge, on loopback.

Uses the Redis on 127.0.0.1:6379 when one answers, else starts its own ``redis-server``.
The demo IdP (npm ``oidc-provider``, tests/peers/op.mjs) runs when Node and its
node_modules are present; the insecure "Dev login" works either way. Ctrl-C stops
everything this command started.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import click
import requests

from bridge.keys.signing import generate_cache_key, generate_key, generate_saml_key, load_keyring
from bridge.runtime.demo_exchange import APP_CLIENT, APP_REDIRECT
from bridge.runtime.localredis import LocalRedis, RedisNotInstalled, free_port


def _redis_up(url: str) -> bool:
    import redis

    try:
        return bool(redis.Redis.from_url(url, socket_timeout=0.5, socket_connect_timeout=0.5).ping())
    except redis.RedisError:
        return False


def forget_earlier_runs(config: Path, env: dict[str, str]) -> int:
    """Delete every key under the demo's ``redis.key_prefix`` before the bridge starts; returns how many.

    A Redis that outlives the demo (the one on 127.0.0.1:6379 is reused) would otherwise hand this
    run credentials cached from an earlier run's local STS, which the new moto does not know and
    answers with its default user: the demo would show a wrong identity. Only the demo's own prefix
    is touched (SCAN + DEL), never the rest of that Redis."""
    import redis

    from bridge.config import load_settings

    saved = dict(os.environ)
    try:
        os.environ.update(env)
        settings = load_settings(config)
    finally:
        os.environ.clear()
        os.environ.update(saved)
    cfg = settings.redis
    client = redis.Redis.from_url(cfg.url, socket_timeout=2, socket_connect_timeout=2)
    gone = 0
    batch: list[bytes] = []
    for key in client.scan_iter(match=f"{cfg.key_prefix}*", count=1000):
        batch.append(key)
        if len(batch) >= 500:
            gone += int(client.delete(*batch))
            batch.clear()
    if batch:
        gone += int(client.delete(*batch))
    return gone


def _wait(url: str, what: str, seconds: float = 20.0) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            if requests.get(url, timeout=1).status_code < 500:
                return
        except requests.RequestException:
            pass
        time.sleep(0.2)
    raise RuntimeError(f"{what} did not come up at {url}")


STOP_GRACE = 8.0  # seconds each process group has after SIGTERM before SIGKILL
KILL_WAIT = 5.0  # seconds to see SIGKILLed groups go


class _Procs:
    """The demo's children, each started in a process group (a session) of its own and stopped as a
    group. A Ctrl-C on the terminal then reaches only ``bridge demo``: were the children in the
    terminal's group too, gunicorn's workers would get SIGINT on their own while the master stops
    them, and a worker interrupted inside its handler (logging holds a lock) could hang there, holding
    the port for the next ``make demo``. Here each group gets SIGTERM, then a bounded wait, then
    SIGKILL for whatever is left of it (a stuck worker included)."""

    def __init__(self) -> None:
        self.procs: list[tuple[str, subprocess.Popen[bytes]]] = []

    def start(self, name: str, args: list[str], **kw: object) -> subprocess.Popen[bytes]:
        p = subprocess.Popen(args, start_new_session=True, **kw)  # type: ignore[call-overload]
        self.procs.append((name, p))
        return p  # type: ignore[no-any-return]

    def stop(self, grace: float = STOP_GRACE) -> list[str]:
        """End every child's group; returns the names of those that needed SIGKILL. A second Ctrl-C
        while this runs is ignored: it is bounded, and leaving would strand the children."""
        previous = signal.signal(signal.SIGINT, signal.SIG_IGN) if _main_thread() else None
        try:
            groups = [(name, p, p.pid) for name, p in reversed(self.procs)]  # start_new_session: pgid == pid
            for _, _, pgid in groups:
                _signal_group(pgid, signal.SIGTERM)
            _wait_groups(groups, time.monotonic() + grace)
            left = [(name, pgid) for name, p, pgid in groups if _group_alive(p, pgid)]
            for _, pgid in left:
                _signal_group(pgid, signal.SIGKILL)
            _wait_groups(groups, time.monotonic() + KILL_WAIT)
            return [name for name, _ in left]
        finally:
            if previous is not None:
                signal.signal(signal.SIGINT, previous)


def _main_thread() -> bool:
    import threading

    return threading.current_thread() is threading.main_thread()


def _signal_group(pgid: int, sig: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):  # the group is gone already
        os.killpg(pgid, sig)


def _group_alive(p: subprocess.Popen[bytes], pgid: int) -> bool:
    """Whether any process of the group is left (the leader is reaped first: a zombie still counts)."""
    p.poll()
    try:
        os.killpg(pgid, 0)
    except (ProcessLookupError, PermissionError):
        return False
    return True


def _wait_groups(groups: list[tuple[str, subprocess.Popen[bytes], int]], deadline: float) -> None:
    while any(_group_alive(p, pgid) for _, p, pgid in groups) and time.monotonic() < deadline:
        time.sleep(0.05)


def run_demo(config: Path, port: int, *, smoke: bool = False) -> int:
    """Start everything, print what to open, wait for Ctrl-C (or run one smoke login and stop)."""
    root = config.resolve().parent.parent
    state = root / ".demo"
    keys_dir = state / "keys"
    _ensure_keys(keys_dir)
    procs = _Procs()
    env = {**os.environ, "DEMO_PORT": str(port), "DEMO_KEYS_DIR": str(keys_dir)}
    try:
        if not _start_redis(procs, env, smoke) or not _start_sts(procs, env):
            return 1
        peers = root / "tests" / "peers"
        _start_idp(procs, env, peers, port)
        _wait(f"{env['DEMO_STS_URL']}/", "local STS")
        _start_console_stand_in(procs, env, peers, port)
        _start_github_stand_in(procs, env, peers)
        _forget_earlier_runs(config, env)
        procs.start("bridge", [sys.executable, "-m", "bridge", "serve", "--config", str(config)], env=env)
        _wait(f"http://127.0.0.1:{port}/healthz", "bridge", 30)
        if smoke:
            return _smoke(port, env["DEMO_STS_URL"], env.get("DEMO_CONSOLE_URL"), env.get("DEMO_OIDC_ISSUER"))
        _banner(port, env)
        return _watch(procs)
    except KeyboardInterrupt:
        click.echo("\nstopping the demo…")
        return 0
    except RuntimeError as e:
        click.echo(f"demo failed: {e}", err=True)
        return 1
    finally:
        if killed := procs.stop():
            click.echo(f"stopped with SIGKILL (did not end on SIGTERM): {', '.join(killed)}", err=True)


def _ensure_keys(keys_dir: Path) -> None:
    """The demo's signing, SAML and cache keys: kept from an earlier run, created when missing."""
    ring, _ = load_keyring(keys_dir)
    if ring is None:
        shutil.rmtree(keys_dir, ignore_errors=True)
        generate_key(keys_dir, "RS256")
    if ring is None or not ring.saml:
        generate_saml_key(keys_dir)
    if ring is None or not ring.cache:
        generate_cache_key(keys_dir)


def _start_redis(procs: _Procs, env: dict[str, str], smoke: bool) -> bool:
    """Redis: reuse a running one, else our own. False (after saying why) when there is none."""
    if not smoke and _redis_up("redis://127.0.0.1:6379/0"):
        env["DEMO_REDIS_URL"] = "redis://127.0.0.1:6379/0"
        return True
    try:
        own_redis = LocalRedis(tempfile.mkdtemp(prefix="bridge-redis-"), preferred_port=6390,
                               own_session=True).start()
    except RedisNotInstalled:
        click.echo("No Redis answers on 127.0.0.1:6379 and redis-server is not installed "
              "(apt-get install redis-server).", err=True)
        return False
    assert own_redis.proc is not None  # in a session of its own (own_session): stopped as a group
    procs.procs.append(("redis", own_redis.proc))  # watched and stopped with the others
    env["DEMO_REDIS_URL"] = own_redis.url
    return True


def _start_sts(procs: _Procs, env: dict[str, str]) -> bool:
    """Local STS. False (after saying why) when moto_server is missing."""
    sport = free_port(5055)
    moto = shutil.which("moto_server", path=str(Path(sys.executable).parent)) or shutil.which("moto_server")
    if not moto:
        click.echo("moto_server is missing: run `make demo` (it installs the demo's Python deps).", err=True)
        return False
    procs.start("sts", [moto, "-H", "127.0.0.1", "-p", str(sport)], stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL)
    env["DEMO_STS_URL"] = f"http://127.0.0.1:{sport}"
    return True


def _start_idp(procs: _Procs, env: dict[str, str], peers: Path, port: int) -> None:
    """Demo OIDC IdP (Node), when available."""
    node = shutil.which("node")
    if node and (peers / "node_modules" / "oidc-provider").is_dir():
        oport = free_port(9000)
        procs.start("idp", [node, "op.mjs"], cwd=peers, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                    env={**os.environ, "PORT": str(oport),
                         "REDIRECT_URIS": f"http://127.0.0.1:{port}/callback/demo",
                         "POST_LOGOUT_REDIRECT_URIS": f"http://127.0.0.1:{port}/",
                         # the demo app's own public client (apps: photos; bridge/runtime/demo_exchange.py)
                         "APP_CLIENT_ID": APP_CLIENT, "APP_REDIRECT_URIS": APP_REDIRECT})
        env["DEMO_OIDC_ISSUER"] = f"http://127.0.0.1:{oport}"
        _wait(f"http://127.0.0.1:{oport}/.well-known/openid-configuration", "demo IdP")
    else:
        env["DEMO_OIDC_ENABLED"] = "false"
        click.echo("note: Node or tests/peers/node_modules missing: the demo OIDC IdP is off; use Dev login.")


def _start_console_stand_in(procs: _Procs, env: dict[str, str], peers: Path, port: int) -> None:
    """Console sign-in stand-in (federation endpoint + SAML POST; moto has no console), checking
    what AWS checks against the local STS and our IdP metadata."""
    stub = peers / "federation_stub.py"
    if stub.is_file():
        fport = free_port(5056)
        procs.start("console", [sys.executable, str(stub), "--port", str(fport), "--sts", env["DEMO_STS_URL"],
                                "--saml-metadata", f"http://127.0.0.1:{port}/idp/metadata.xml"],
                    stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        env["DEMO_CONSOLE_URL"] = f"http://127.0.0.1:{fport}"
        _wait(f"{env['DEMO_CONSOLE_URL']}/federation", "console sign-in stand-in")


def _start_github_stand_in(procs: _Procs, env: dict[str, str], peers: Path) -> None:
    """``DEMO_GITHUB=stand-in``: the GitHub stand-in (tests/peers/github_standin.py, its answers from GitHub's
    OpenAPI description in node_modules) and the demo's ``github`` connector on it (docs/idps/github.md)."""
    if env.get("DEMO_GITHUB") != "stand-in":
        env["DEMO_GITHUB_ENABLED"] = "false"
        return
    if not (peers / "node_modules" / "@octokit" / "openapi").is_dir():
        raise RuntimeError("DEMO_GITHUB=stand-in needs tests/peers/node_modules (cd tests/peers && npm ci)")
    gport = free_port(9100)
    procs.start("github", [sys.executable, str(peers / "github_standin.py"), "--port", str(gport),
                           "--client-id", "bridge-demo", "--client-secret", "demo-github-secret"],
                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=peers.parent.parent)
    env["DEMO_GITHUB_URL"], env["DEMO_GITHUB_ENABLED"] = f"http://127.0.0.1:{gport}", "true"
    _wait(f"{env['DEMO_GITHUB_URL']}/login/oauth/authorize?client_id=bridge-demo", "GitHub stand-in")


def _forget_earlier_runs(config: Path, env: dict[str, str]) -> None:
    try:
        gone = forget_earlier_runs(config, env)
    except Exception as e:  # noqa: BLE001 - fail closed: never run on what an earlier run left
        raise RuntimeError(f"could not clear the demo's keys in Redis ({type(e).__name__}: {e})") from None
    else:
        if gone:
            click.echo(f"cleared {gone} Redis keys of an earlier demo run (sessions, cached credentials)")


def _watch(procs: _Procs) -> int:
    """Until Ctrl-C (or SIGTERM) or one of the processes exits: then 1, saying which."""
    signal.signal(signal.SIGTERM, lambda *_: (_ for _ in ()).throw(KeyboardInterrupt()))
    while all(p.poll() is None for _, p in procs.procs):
        time.sleep(0.5)
    dead = [n for n, p in procs.procs if p.poll() is not None]
    click.echo(f"stopped: {', '.join(dead)} exited", err=True)
    return 1


def _banner(port: int, env: dict[str, str]) -> None:
    base = f"http://127.0.0.1:{port}"
    oidc = env.get("DEMO_OIDC_ENABLED") != "false"
    click.echo(f"""
Federation Bridge demo is running.

  Open        {base}/
  Sign in     {'"Demo IdP (OIDC)": alice / alice-pw (admins, MFA), bob / bob-pw, carol / carol-pw' if oidc else ''}
              {'frank / frank-pw: PlatformDeploy needs MFA; "Sign in again with MFA", code 424242' if oidc else ''}
              "Dev login (insecure)": pick alice, bob or carol
              {'"GitHub (stand-in)": type octocat (org acme, team platform) or outsider at its consent page'
               if env.get("DEMO_GITHUB_ENABLED") == "true" else '(DEMO_GITHUB=stand-in make demo adds GitHub)'}
  Demo IdP    {env.get('DEMO_OIDC_ISSUER', '(off)')}
  Local STS   {env['DEMO_STS_URL']}   (moto; accepts any key)
  AWS console {env.get('DEMO_CONSOLE_URL', '(stand-in missing)')}   (stand-in: the Console buttons land here)
  Redis       {env['DEMO_REDIS_URL']}

On the portal, Console signs in through the federation endpoint (Admin) or a SAML POST (Read-only);
links like {base}/go/sandbox/Admin?destination=/s3/home go straight there.
On a role's Credentials page, paste the export lines into a shell, then:
  aws sts get-caller-identity --endpoint-url {env['DEMO_STS_URL']}
An app's token exchange, with DPoP (docs/apps-and-workloads.md):
  .venv/bin/python -m bridge.runtime.demo_exchange --bridge {base} --idp {env.get('DEMO_OIDC_ISSUER', '')} \\
      --sts {env['DEMO_STS_URL']}

Ctrl-C stops everything this command started.
""")


def _smoke(port: int, sts_url: str, console_url: str | None = None, idp: str | None = None) -> int:
    """One dev login → credentials → GetCallerIdentity, then the console via /go (federation endpoint,
    through the stand-in), and the demo app's token exchange with DPoP (when the demo IdP runs); prints the
    ARNs. For `make demo-check`."""
    import re

    import boto3

    base = f"http://127.0.0.1:{port}"
    s = requests.Session()
    r = s.get(f"{base}/login/dev", allow_redirects=False, timeout=10)
    state = re.search(r"state=([\w-]+)", r.headers["location"])
    assert state, "dev login did not redirect with a state"
    s.post(f"{base}/callback/dev", data={"state": state[1], "user": "alice"}, timeout=10)
    portal = s.get(f"{base}/portal", headers={"Accept": "application/json"}, timeout=10).json()

    def caller(grant: dict[str, object]) -> str:
        """The ARN GetCallerIdentity names with the credentials the bridge issues for ``grant``."""
        creds = s.post(f"{base}/credentials/{grant['id']}", headers={"Accept": "application/json",
                       "X-CSRF-Token": portal["csrf_token"]}, timeout=30).json()
        return str(boto3.client("sts", endpoint_url=sts_url, region_name="us-east-1",
                                aws_access_key_id=creds["AccessKeyId"], aws_secret_access_key=creds["SecretAccessKey"],
                                aws_session_token=creds["SessionToken"]).get_caller_identity()["Arn"])

    grant = portal["grants"][0]
    click.echo(f"demo smoke ok: {caller(grant)}")
    chained = next(g for g in portal["grants"] if g.get("hubs"))  # workloads/Developer, through the hub
    click.echo(f"demo chain ok: {caller(chained)} (via {' → '.join(chained['hubs'])})")
    if idp:
        from bridge.runtime.demo_exchange import run

        click.echo(f"demo exchange ok: {run(base, idp, sts_url)}")
    if console_url:
        page = s.get(f"{base}/go/sandbox/Admin", params={"destination": "/s3/home"}, timeout=10).text
        csrf = re.search(r'name="csrf_token" value="([^"]+)"', page)
        assert csrf, "the /go page has no form"
        r = s.post(f"{base}/console/{grant['id']}", data={"csrf_token": csrf[1], "destination": "/s3/home"},
                   allow_redirects=False, timeout=30)
        assert r.status_code == 302 and r.headers["location"].startswith(console_url), r.status_code
        landed = requests.get(r.headers["location"], timeout=30)
        role = re.search(r"id='role'>([^<]+)<", landed.text)
        assert landed.status_code == 200 and role, landed.text[:300]
        click.echo(f"demo console ok: signed in as {role[1]}")
        ro = next(g for g in portal["grants"] if g["role_arn"].endswith("/ReadOnly"))  # console: saml_post
        form = s.post(f"{base}/console/{ro['id']}", data={"csrf_token": csrf[1]}, timeout=30).text
        fields = dict(re.findall(r'name="(SAMLResponse|RelayState)" value="([^"]*)"', form))
        action = re.search(r'id="saml-post"[^>]*action="([^"]+)"', form)
        assert action and "SAMLResponse" in fields, form[:300]
        landed = requests.post(action[1], data=fields, timeout=30)
        role = re.search(r"id='role'>([^<]+)<", landed.text)
        assert landed.status_code == 200 and role, landed.text[:300]
        click.echo(f"demo console (SAML POST) ok: signed in as {role[1]}")
    return 0
