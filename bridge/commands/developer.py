"""Developer commands: login, logout, credential-process, configure, env, local-server, console.

Standard library and click only, and of those only what `credential-process` needs at import
(the browser and HTTP server modules load in the commands that use them): AWS SDKs run
`bridge credential-process` on every credential refresh, so its start-up is their wait.
tests/unit/test_cli_lazy.py holds it to that.
"""

from __future__ import annotations

import contextlib
import hmac
import json
import os
import re
import secrets
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from bridge import client
from bridge.client import ClientError

if TYPE_CHECKING:
    from http.server import ThreadingHTTPServer

URL = click.option("--url", default=None, help="the bridge, e.g. https://bridge.example.com (or BRIDGE_URL)")
ROLE = click.option("--role", required=True, help="role ARN, <account>/<role name>, or a unique role name")


def _die(e: ClientError) -> None:
    click.echo(f"bridge: {e}", err=True)  # never a secret: messages are ours or the bridge's
    sys.exit(1)


@click.command()
@URL
@click.option("--no-browser", is_flag=True, help="only print the URL and code")
def login(url: str | None, no_browser: bool) -> None:
    """Sign in from the command line (device code: approve it in your browser)."""
    import webbrowser

    try:
        base = client.resolve_url(url)
        start = client.start_login(base)
        target = start.get("verification_uri_complete") or start["verification_uri"]
        click.echo(f"Open {target}\nand check that it shows the code {start['user_code']}.", err=True)
        if not no_browser:
            with contextlib.suppress(webbrowser.Error):
                webbrowser.open(target)
        token = client.poll_login(base, start)
    except ClientError as e:
        _die(e)
    click.echo(f"Signed in to {base} until {token['expires_at']} (epoch).", err=True)


@click.command()
@URL
def logout(url: str | None) -> None:
    """Revoke this machine's CLI login and delete cached credentials."""
    try:
        base = client.resolve_url(url)
        with contextlib.suppress(ClientError):  # already expired or revoked: still forget it locally
            client.api(base, "/api/v1/logout", data={})
        client.forget_token(base)
    except ClientError as e:
        _die(e)
    click.echo(f"Signed out of {base}.", err=True)


@click.command("credential-process")
@URL
@ROLE
@click.option("--duration", type=int, default=None, help="DurationSeconds (default: the grant's)")
def credential_process(url: str | None, role: str, duration: int | None) -> None:
    """Print credentials as `credential_process` JSON (Version 1) for the AWS CLI and SDKs."""
    try:
        doc = client.credentials(client.resolve_url(url), role, duration)
    except ClientError as e:
        _die(e)
    click.echo(json.dumps(doc))


@click.command()
@URL
@click.option("--region", default=None, help="region to put in each profile")
@click.option("--config-file", type=click.Path(dir_okay=False), default=None,
              help="default: $AWS_CONFIG_FILE or ~/.aws/config")
@click.option("--yes", is_flag=True, help="replace existing profiles of the same name without asking")
def configure(url: str | None, region: str | None, config_file: str | None, yes: bool) -> None:
    """Write a ~/.aws/config profile per role you hold, using `bridge credential-process`."""
    try:
        base = client.resolve_url(url)
        grants = client.api(base, "/api/v1/grants")["grants"]
    except ClientError as e:
        _die(e)
    path = Path(config_file or os.environ.get("AWS_CONFIG_FILE") or Path.home() / ".aws" / "config")
    text = path.read_text(encoding="utf-8") if path.exists() else ""
    blocks = {}
    for g in grants:
        name = re.sub(r"[^A-Za-z0-9_.+@-]", "-", f"{g['account_id']}-{g['role_name']}")[:64]
        blocks[name] = client.profile_block(name, base, g["role_arn"], region)
    existing = [n for n in blocks if re.search(rf"^\[\s*profile\s+{re.escape(n)}\s*\]", text, re.M)]
    if existing and not yes:
        keep = [n for n in existing if not click.confirm(f"Profile {n!r} exists. Replace it?", default=False)]
        for n in keep:
            blocks.pop(n)
    new, replaced, added = client.upsert_profiles(text, blocks)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(new, encoding="utf-8")
    for n in added:
        click.echo(f"added profile {n}")
    for n in replaced:
        click.echo(f"replaced profile {n}")
    click.echo(f"use: aws --profile {next(iter(blocks), '<name>')} sts get-caller-identity", err=True)


@click.command()
@URL
@ROLE
@click.option("--shell", type=click.Choice(["bash", "zsh", "fish", "powershell"]), default="bash")
@click.option("--duration", type=int, default=None)
def env(url: str | None, role: str, shell: str, duration: int | None) -> None:
    """Print environment variables for your shell: eval "$(bridge env --role …)"."""
    from datetime import datetime

    from bridge.aws import formats
    from bridge.identity import Credentials

    try:
        base = client.resolve_url(url)
        doc = client.credentials(base, role, duration)
    except ClientError as e:
        _die(e)
    region = os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION") or "us-east-1"
    creds = Credentials(doc["AccessKeyId"], doc["SecretAccessKey"], doc["SessionToken"],
                        datetime.fromisoformat(doc["Expiration"].replace("Z", "+00:00")), "", role, "", region)
    fmt = {"bash": formats.env_exports, "zsh": formats.env_exports, "fish": formats.fish_exports,
           "powershell": formats.powershell_exports}[shell]
    click.echo(fmt(creds), nl=False)


@click.command("local-server")
@URL
@ROLE
@click.option("--port", type=int, default=0, help="127.0.0.1 port (default: a free one)")
@click.option("--duration", type=int, default=None)
def local_server(url: str | None, role: str, port: int, duration: int | None) -> None:
    """Serve credentials to SDKs on 127.0.0.1 (AWS_CONTAINER_CREDENTIALS_FULL_URI); refreshed before expiry."""
    try:
        base = client.resolve_url(url)
        client.credentials(base, role, duration)  # fail now, not at the SDK's first call
    except ClientError as e:
        _die(e)
    server = make_local_server(base, role, duration, port)
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
@click.option("--duration", type=int, default=None, help="console session seconds (default: the grant's)")
@click.option("--print-url", "print_url", is_flag=True,
              help="print the sign-in URL instead of opening a browser (it works for 15 minutes: treat it as a secret)")
def console(url: str | None, role: str, destination: str | None, region: str | None, duration: int | None,
            print_url: bool) -> None:
    """Open the AWS console signed in as ROLE (federation endpoint)."""
    try:
        base = client.resolve_url(url)
        login_url = client.console_url(base, role, destination=destination, region=region, duration=duration)
    except ClientError as e:
        _die(e)
    if print_url:
        click.echo(login_url)
        return
    import webbrowser

    opened = False
    with contextlib.suppress(webbrowser.Error):
        opened = webbrowser.open(login_url)
    if not opened:
        click.echo("bridge: no browser to open; rerun with --print-url to get the link", err=True)
        sys.exit(1)
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

