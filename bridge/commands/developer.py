"""Developer commands: login, roles, exec, env, console, credential-process, local-server, logout
(configure is in bridge.commands.configure).

Standard library and click only, and of those only what `credential-process` needs at import
(the browser, HTTP server, terminal and subprocess modules load in the commands that use them).
AWS SDKs run `bridge credential-process` on every credential refresh; with fresh credentials in the
cache bridge.__main__ answers it without this module (or click), and on a miss it lands here.
tests/unit/test_cli_lazy.py holds both to that.
"""

from __future__ import annotations

import contextlib
import hmac
import json
import os
import secrets
import sys
import time
from typing import TYPE_CHECKING, Any, NoReturn

import click

from bridge.client import core as client
from bridge.client.core import ClientError

if TYPE_CHECKING:
    from http.server import ThreadingHTTPServer

URL = click.option("--url", default=None, help="the bridge, e.g. https://bridge.example.com (or BRIDGE_URL)")
ROLE = click.option("--role", default=None,
                    help="role ARN, <account alias or id>/<role name>, its label, or a unique role name "
                         "(omitted on a terminal: pick from a list)")
DURATION = click.option("--duration", type=click.IntRange(min=1), default=None,
                        help="session seconds (default: the grant's)")
REGION = click.option("--region", default=None,
                      help="region to export (default: $AWS_REGION, the region `bridge configure` wrote for "
                           "the role, else the bridge's)")
# What another tool may have left in the environment, dropped so the child uses only the bridge's.
AWS_CREDENTIAL_VARS = ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_SECURITY_TOKEN",
                       "AWS_CREDENTIAL_EXPIRATION", "AWS_PROFILE", "AWS_DEFAULT_PROFILE",
                       "AWS_CONTAINER_CREDENTIALS_FULL_URI", "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI",
                       "AWS_CONTAINER_AUTHORIZATION_TOKEN", "AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE",
                       "AWS_WEB_IDENTITY_TOKEN_FILE", "AWS_ROLE_ARN", "AWS_ROLE_SESSION_NAME")


def _fail(message: str, code: int = 1) -> NoReturn:
    click.echo(f"bridge: {message}", err=True)  # never a secret: messages are ours or the bridge's
    sys.exit(code)


def _die(e: ClientError) -> NoReturn:
    _fail(str(e))


# ---- human output -------------------------------------------------------------------------


def human_duration(seconds: float) -> str:
    """``11 h 59 min``, ``45 min``, ``30 s`` (rounded down to the minute from a minute up)."""
    s = max(int(seconds), 0)
    if s < 60:
        return f"{s} s"
    h, m = divmod(s // 60, 60)
    return " ".join(part for part in (f"{h} h" if h else "", f"{m} min" if m else "") if part)


def human_time(when: float, now: float | None = None) -> str:
    """A Unix time as local time with its zone, and how far off: ``2025-05-01 21:03 CEST (in 11 h 59 min)``."""
    from datetime import datetime

    left = when - (time.time() if now is None else now)
    local = datetime.fromtimestamp(when).astimezone().strftime("%Y-%m-%d %H:%M %Z").rstrip()
    return f"{local} ({'in ' + human_duration(left) if left >= 0 else human_duration(-left) + ' ago'})"


def _table(rows: list[list[str]]) -> str:
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    return "\n".join("  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() for r in rows)


# ---- choosing a role ------------------------------------------------------------------------


def _on_terminal() -> bool:
    return sys.stdin.isatty() and sys.stdout.isatty()


def choose_role(base: str, role: str | None) -> str:
    """``--role`` as given; without it, the ARN the user picks on a terminal, else a clear error."""
    if role:
        return role
    held = client.grants(base)
    if not held:
        raise ClientError("you hold no roles at this bridge (see `bridge roles`)")
    refs = [client.role_ref(g) for g in held]
    if not _on_terminal():
        raise ClientError(f"which role? pass --role (no terminal to pick on); your roles: {', '.join(refs)}")
    from bridge.client.picker import Cancelled, pick

    width, label_width = max(map(len, refs)), max(len(g["label"]) for g in held)
    rows = [f"{ref.ljust(width)}  {g['label'].ljust(label_width)}  (max {human_duration(g['max_duration'])}"
            f"{_via(g)})" for ref, g in zip(refs, held, strict=True)]
    try:
        index = pick(rows, "Role:", sys.stdin.fileno(), sys.stdout)
    except Cancelled:
        _fail("no role chosen", 130)
    click.echo(f"Role: {refs[index]} ({held[index]['role_arn']})", err=True)
    return str(held[index]["role_arn"])


def _via(g: dict[str, Any]) -> str:
    """A role reached through hubs says which (role chaining: AWS caps it at 1 hour)."""
    return f", via {' → '.join(g['hubs'])}" if g.get("hubs") else ""


def _configured_region(role_arn: str) -> str | None:
    """The region of the ~/.aws/config profile whose credential_process gets ``role_arn`` from the bridge
    (what `bridge configure --region` wrote), if there is one."""
    import configparser
    from pathlib import Path

    path = Path(os.environ.get("AWS_CONFIG_FILE") or Path.home() / ".aws" / "config")
    parser = configparser.RawConfigParser(strict=False, interpolation=None)
    try:
        parser.read_string(path.read_text(encoding="utf-8"))
    except (OSError, configparser.Error, UnicodeDecodeError):
        return None
    for section in parser.sections():
        process = parser.get(section, "credential_process", fallback="")
        if "credential-process" in process and f"--role {role_arn}" in process:
            region = parser.get(section, "region", fallback="").strip()
            if region:
                return region
    return None


def resolve_region(explicit: str | None, doc: dict[str, Any]) -> str:
    """--region, else $AWS_REGION/$AWS_DEFAULT_REGION, else the region `bridge configure` wrote for the
    role, else the bridge's configured region, else us-east-1."""
    return (explicit or os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION")
            or (_configured_region(doc["RoleArn"]) if doc.get("RoleArn") else None)
            or doc.get("Region") or "us-east-1")


def env_pairs(doc: dict[str, Any], region: str) -> list[tuple[str, str]]:
    """The variables AWS tools read, as the portal's export lines give them."""
    return [("AWS_ACCESS_KEY_ID", doc["AccessKeyId"]), ("AWS_SECRET_ACCESS_KEY", doc["SecretAccessKey"]),
            ("AWS_SESSION_TOKEN", doc["SessionToken"]), ("AWS_CREDENTIAL_EXPIRATION", doc["Expiration"]),
            ("AWS_REGION", region), ("AWS_DEFAULT_REGION", region), *sts_endpoint_pairs(doc)]


def sts_endpoint_pairs(doc: dict[str, Any]) -> list[tuple[str, str]]:
    """``AWS_ENDPOINT_URL_STS`` when the bridge uses a stand-in STS (the demo's local one): the
    credentials exist only there, and SDKs and the AWS CLI would otherwise ask real AWS."""
    hint = client.sts_hint(doc)
    return [("AWS_ENDPOINT_URL_STS", hint.removeprefix(" --endpoint-url "))] if hint else []


def _credentials(url: str | None, role: str | None, duration: int | None,
                 recheck: int | None = None) -> tuple[str, str, dict[str, Any]]:
    """(bridge URL, role, credentials document) — the role picked when not given."""
    base = client.resolve_url(url)
    chosen = choose_role(base, role)
    doc = client.credentials(base, chosen, duration, recheck)
    doc.setdefault("RoleArn", chosen if client.ARN_RE.match(chosen) else "")
    return base, chosen, doc


# ---- commands -------------------------------------------------------------------------------


def _no_browser_here() -> bool:
    """True where webbrowser would find no graphical browser (a server over SSH, a container): it
    would then run a text browser such as lynx inside this terminal, or nothing."""
    if sys.platform in ("darwin", "win32") or os.environ.get("BROWSER"):
        return False
    return not (os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY"))


@click.command()
@URL
@click.option("--no-browser", is_flag=True, help="only print the URL and code")
def login(url: str | None, no_browser: bool) -> None:
    """Sign in: approve a device code in your browser."""
    try:
        base = client.resolve_url(url)
        start = client.start_login(base)
        target = start.get("verification_uri_complete") or start["verification_uri"]
        code = start["user_code"]
        click.echo(f"Open {target}\nand check that it shows the code {code}.", err=True)
        if not no_browser:
            import webbrowser

            opened = False
            if not _no_browser_here():
                with contextlib.suppress(webbrowser.Error):
                    opened = webbrowser.open(target)
            if not opened:
                click.echo("No browser could be opened here: open the link above yourself, on this or any other "
                           "device, and sign in there.", err=True)
        click.echo(f"Waiting for approval of {code} in the browser… (Ctrl-C to give up)", err=True)
        token = client.poll_login(base, start)
    except ClientError as e:
        _die(e)
    except KeyboardInterrupt:
        _fail("login abandoned", 130)
    click.echo(f"Signed in to {base} until {human_time(token['expires_at'])}.", err=True)


@click.command()
@URL
def logout(url: str | None) -> None:
    """Sign out here; delete cached credentials."""
    try:
        base = client.resolve_url(url)
        with contextlib.suppress(ClientError):  # already expired or revoked: still forget it locally
            client.api(base, "/api/v1/logout", data={})
        client.forget_token(base)
    except ClientError as e:
        _die(e)
    click.echo(f"Signed out of {base}.", err=True)


@click.command()
@URL
@click.option("--json", "as_json", is_flag=True, help="the bridge's JSON list instead of a table")
def roles(url: str | None, as_json: bool) -> None:
    """List your roles, and the roles you may request."""
    try:
        base = client.resolve_url(url)
        doc = client.grants_doc(base)
        held, requestable = list(doc["grants"]), list(doc.get("requestable") or [])
    except ClientError as e:
        _die(e)
    if as_json:
        click.echo(json.dumps(held + requestable, indent=2))
        return
    if not held and not requestable:
        click.echo("You hold no roles at this bridge now.", err=True)
        return
    rows = [["ALIAS", "ACCOUNT", "ROLE", "LABEL", "MAX SESSION", "STATE"]]
    rows += [[g.get("account_alias") or "-", g["account_id"], g["role_name"], g["label"],
              human_duration(g["max_duration"]), ("approved request" if g.get("request_id") else "granted") + _via(g)]
             for g in held]
    rows += [[g.get("account_alias") or "-", g["account_id"], g["role_name"], g["label"],
              human_duration(g["max_duration"]), "Request"] for g in requestable]
    click.echo(_table(rows))
    if requestable:
        click.echo(f"request a role marked Request at {base}/requests", err=True)
    if held:
        click.echo(f"use: bridge exec --role {client.role_ref(held[0])} -- aws sts get-caller-identity"
                   f"{client.sts_hint(doc)}", err=True)


@click.command("credential-process")
@URL
@ROLE
@DURATION
@click.option("--recheck", default=None, metavar="SECONDS",
              help="ask the bridge whether this login still holds the role when the cache's last answer is older "
                   f"(default: ${client.RECHECK_ENV}, else {client.RECHECK}; 0: every time)")
def credential_process(url: str | None, role: str | None, duration: int | None, recheck: str | None) -> None:
    """Print credential_process JSON for AWS profiles."""
    try:
        _, _, doc = _credentials(url, role, duration, client.recheck_seconds(recheck))
    except ClientError as e:
        _die(e)
    click.echo(json.dumps(client.credential_process_doc(doc)))


@click.command()
@URL
@ROLE
@click.option("--shell", type=click.Choice(["bash", "zsh", "fish", "powershell"]), default="bash")
@DURATION
@REGION
def env(url: str | None, role: str | None, shell: str, duration: int | None, region: str | None) -> None:
    """Print export lines: eval "$(bridge env --role …)".

    On any failure nothing is printed on stdout, a message goes to stderr and the exit status is not 0.
    """
    import shlex

    try:
        _, chosen, doc = _credentials(url, role, duration)
        pairs = env_pairs(doc, resolve_region(region, doc))
        if shell == "fish":
            text = "".join("set -gx {} '{}'\n".format(k, v.replace("\\", "\\\\").replace("'", "\\'"))
                           for k, v in pairs)
        elif shell == "powershell":
            text = "".join("$Env:{} = '{}'\n".format(k, v.replace("'", "''")) for k, v in pairs)
        else:
            text = "".join(f"export {k}={shlex.quote(v)}\n" for k, v in pairs)
        expires = human_time(client.epoch(doc["Expiration"]))
    except ClientError as e:
        _die(e)
    except (KeyError, TypeError, ValueError) as e:  # a bridge answer we cannot use: still loud, still empty
        _fail(f"unexpected credentials from the bridge ({type(e).__name__}: {e})")
    sys.stdout.write(text)  # all at once, only when complete
    sys.stdout.flush()
    click.echo(f"# {chosen}: credentials until {expires}", err=True)


@click.command("exec", context_settings={"ignore_unknown_options": True, "allow_interspersed_args": False})
@URL
@ROLE
@DURATION
@REGION
@click.option("--refresh", is_flag=True,
              help="for long-running commands: give the child a 127.0.0.1 container-credentials endpoint "
                   "(AWS_CONTAINER_CREDENTIALS_FULL_URI) that SDKs refresh from, instead of fixed keys")
@click.argument("command", nargs=-1, required=True, type=click.UNPROCESSED)
def exec_(url: str | None, role: str | None, duration: int | None, region: str | None, refresh: bool,
          command: tuple[str, ...]) -> None:
    """Run a command with a role's credentials.

    bridge exec --role R [--duration N] -- cmd args…

    The child gets AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, AWS_SESSION_TOKEN, AWS_CREDENTIAL_EXPIRATION,
    AWS_REGION and AWS_DEFAULT_REGION (and no other AWS credentials or profile), and its exit status is
    bridge's. With --refresh it gets a local endpoint instead of the keys, so SDKs renew credentials
    for as long as it runs; bridge stays as its parent, forwarding signals.
    """
    try:
        base, chosen, doc = _credentials(url, role, duration)
        region = resolve_region(region, doc)
    except ClientError as e:
        _die(e)
    child_env = {k: v for k, v in os.environ.items() if k not in AWS_CREDENTIAL_VARS}
    child_env.update(AWS_REGION=region, AWS_DEFAULT_REGION=region, **dict(sts_endpoint_pairs(doc)))
    argv = list(command)
    if not refresh:
        child_env.update(env_pairs(doc, region))
        sys.stdout.flush()
        sys.stderr.flush()
        if os.name == "posix":  # become the command (as aws-vault does): its exit status and signals are ours
            try:
                os.execvpe(argv[0], argv, child_env)  # noqa: S606 - the user's own command
            except OSError as e:
                _fail(f"cannot run {argv[0]!r}: {e.strerror}", 127 if isinstance(e, FileNotFoundError) else 126)
        sys.exit(run_child(argv, child_env))
    import threading

    server = make_local_server(base, chosen, duration)
    threading.Thread(target=server.serve_forever, name="credentials", daemon=True).start()
    child_env.update(AWS_CONTAINER_CREDENTIALS_FULL_URI=f"http://127.0.0.1:{server.server_port}/creds",
                     AWS_CONTAINER_AUTHORIZATION_TOKEN=server.auth_token)  # type: ignore[attr-defined]
    try:
        status = run_child(argv, child_env)
    finally:
        server.shutdown()
        server.server_close()
    sys.exit(status)


def run_child(argv: list[str], child_env: dict[str, str]) -> int:
    """Run ``argv`` to its end, forwarding signals; its exit status (128 + N when signal N ended it)."""
    import signal
    import subprocess

    try:
        proc = subprocess.Popen(argv, env=child_env)  # noqa: S603 - the user's own command
    except OSError as e:
        _fail(f"cannot run {argv[0]!r}: {e.strerror}", 127 if isinstance(e, FileNotFoundError) else 126)

    def forward(signum: int, _frame: Any) -> None:
        if proc.poll() is None:
            proc.send_signal(signum)

    # Ctrl-C and Ctrl-\ on a terminal reach the child already (one foreground process group): sent
    # twice, a program could abort its own clean-up. From elsewhere (kill -INT) they are forwarded.
    from_terminal = False
    with contextlib.suppress(OSError):
        from_terminal = os.isatty(0) and os.tcgetpgrp(0) == os.getpgrp()
    names = ["SIGTERM", "SIGHUP", "SIGUSR1", "SIGUSR2", "SIGINT", "SIGQUIT"]
    previous = {}
    for name in names:
        if not hasattr(signal, name):
            continue
        sig = getattr(signal, name)
        handler = signal.SIG_IGN if from_terminal and name in ("SIGINT", "SIGQUIT") else forward
        previous[sig] = signal.signal(sig, handler)
    try:
        status = proc.wait()
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)
    return 128 - status if status < 0 else status


@click.command("local-server")
@URL
@ROLE
@click.option("--port", type=int, default=0, help="127.0.0.1 port (default: a free one)")
@DURATION
def local_server(url: str | None, role: str | None, port: int, duration: int | None) -> None:
    """Serve refreshing credentials to SDKs on 127.0.0.1.

    The container-credentials protocol: AWS_CONTAINER_CREDENTIALS_FULL_URI and _AUTHORIZATION_TOKEN.
    """
    try:
        base, chosen, _ = _credentials(url, role, duration)  # fail now, not at the SDK's first call
    except ClientError as e:
        _die(e)
    server = make_local_server(base, chosen, duration, port)
    click.echo(f"export AWS_CONTAINER_CREDENTIALS_FULL_URI=http://127.0.0.1:{server.server_port}/creds")
    click.echo(f"export AWS_CONTAINER_AUTHORIZATION_TOKEN={server.auth_token}")  # type: ignore[attr-defined]
    click.echo("# serving until Ctrl-C", err=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()


@click.command()
@URL
@ROLE
@click.option("--destination", default=None, help="console path (/s3/home) or console URL")
@click.option("--region", default=None, help="console region, e.g. eu-west-1")
@DURATION
@click.option("--print-url", "print_url", is_flag=True,
              help="print the sign-in URL instead of opening a browser (it works for 15 minutes: treat it as a secret)")
def console(url: str | None, role: str | None, destination: str | None, region: str | None, duration: int | None,
            print_url: bool) -> None:
    """Open the AWS console signed in as a role."""
    try:
        base = client.resolve_url(url)
        login_url = client.console_url(base, choose_role(base, role), destination=destination, region=region,
                                       duration=duration)
    except ClientError as e:
        _die(e)
    if print_url:
        click.echo(login_url)
        return
    import webbrowser

    opened = False
    if not _no_browser_here():
        with contextlib.suppress(webbrowser.Error):
            opened = webbrowser.open(login_url)
    if not opened:
        _fail("no browser could be opened here; rerun with --print-url to get the link (valid 15 minutes)")
    click.echo("Opened the AWS console in your browser.", err=True)


def make_local_server(base: str, role: str, duration: int | None, port: int = 0) -> ThreadingHTTPServer:
    """The container-credentials endpoint botocore speaks to (docs/aws-rules.md §4.4): token-checked,
    loopback only."""
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    token = secrets.token_urlsafe(32)

    class Handler(BaseHTTPRequestHandler):
        def _send(self, status: int, body: dict[str, Any]) -> None:
            data = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def do_GET(self) -> None:  # noqa: N802 - http.server's naming
            if not hmac.compare_digest(self.headers.get("Authorization", "").encode(), token.encode()):
                self._send(403, {"Message": "missing or wrong authorization token"})
                return
            try:
                doc = client.credentials(base, role, duration)  # refreshes 15 min before expiry
            except ClientError as e:
                self._send(500, {"Message": str(e)})
                return
            self._send(200, {"AccessKeyId": doc["AccessKeyId"], "SecretAccessKey": doc["SecretAccessKey"],
                             "Token": doc["SessionToken"], "Expiration": doc["Expiration"]})

        def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - keep requests out of stderr
            pass

    server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
    server.auth_token = token  # type: ignore[attr-defined]
    return server

