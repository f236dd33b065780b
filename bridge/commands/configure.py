"""`bridge configure`: an ~/.aws/config profile per role (credential_process), or with --sso the
Identity Center sections (bridge/client/ssoconfig.py). Standard library and click only, as the other
developer commands (bridge.commands.developer); never loaded by `bridge credential-process`.
"""

from __future__ import annotations

import contextlib
import os
import re
import sys
from typing import Any

import click

from bridge.client import core as client
from bridge.client.core import ClientError
from bridge.commands.developer import URL, _die, _fail


@click.command()
@URL
@click.option("--region", default=None, help="region to put in each profile (default: the bridge's aws.region)")
@click.option("--config-file", type=click.Path(dir_okay=False), default=None,
              help="default: $AWS_CONFIG_FILE or ~/.aws/config")
@click.option("--yes", is_flag=True, help="replace existing profiles of the same name without asking")
@click.option("--sso", is_flag=True,
              help="Identity Center profiles (sso-session, sso_role_name, a services section) instead of "
                   "credential_process: AWS CLI v2 and the SDKs' own SSO providers, nothing of the bridge needed")
@click.option("--session-name", default="bridge", show_default=True, help="with --sso: the sso-session's name")
def configure(url: str | None, region: str | None, config_file: str | None, yes: bool, sso: bool,
              session_name: str) -> None:
    """Write an ~/.aws/config profile per role.

    Profiles are named <account alias>-<role> (sandbox-Admin).

    Each runs this bridge (by absolute path) as `credential-process`. A profile name that holds
    static keys (in ~/.aws/credentials, or aws_access_key_id in the config) is left alone: the
    bridge's profile gets the name with -bridge added.

    With --sso: an [sso-session NAME], a profile per role in the Identity Center role list and a
    [services NAME-endpoints] section pointing sso-oidc and sso at the bridge; then
    `aws sso login --sso-session NAME`. Rerunning replaces only the sections it wrote (marked with a
    comment) and keeps every other line of the file; a same-named section of anyone else's stops it.
    """
    from pathlib import Path

    path = Path(config_file or os.environ.get("AWS_CONFIG_FILE") or Path.home() / ".aws" / "config")
    if sso:
        configure_sso(url, region, path, session_name)
        return
    try:
        base = client.resolve_url(url)
        doc = client.grants_doc(base)
    except ClientError as e:
        _die(e)
    held = list(doc["grants"])
    # A profile without a region fails at the first AWS call ("You must specify a region"): the
    # bridge's own region (aws.region, the one `configure --sso` writes too) unless --region says.
    region = region or doc.get("region") or "us-east-1"
    text = path.read_text(encoding="utf-8") if path.exists() else ""
    static = static_key_profiles(text, Path(os.environ.get("AWS_SHARED_CREDENTIALS_FILE")
                                            or Path.home() / ".aws" / "credentials"))
    blocks = profile_blocks(held, base, region, static)
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
    click.echo(f"use: aws --profile {next(iter(blocks), '<name>')} sts get-caller-identity{client.sts_hint(doc)}",
               err=True)


def profile_blocks(held: list[dict[str, Any]], base: str, region: str, static: set[str]) -> dict[str, str]:
    """Profile name → its ``[profile …]`` text, one per role held (a credential_process profile)."""
    command = self_command()
    names = [client.profile_name(g) for g in held]
    blocks = {}
    for g, name in zip(held, names, strict=True):
        if names.count(name) > 1:  # two accounts with one alias: the account id tells them apart
            name = client.profile_name({**g, "account_alias": ""})
        if name in static:
            # A profile of that name with keys would win over credential_process (botocore reads the
            # credentials file first) and go stale: keep the two apart.
            click.echo(f"profile {name!r} holds static keys; writing the bridge's as {name}-bridge", err=True)
            name = f"{name}-bridge"
        blocks[name] = client.profile_block(name, base, g["role_arn"], region, command)
    return blocks


def configure_sso(url: str | None, region: str | None, path: Any, session: str) -> None:
    """`configure --sso`: the Identity Center sections (bridge/client/ssoconfig.py), written in place."""
    from bridge.client import ssoconfig

    try:
        base = client.resolve_url(url)
        doc = client.grants_doc(base)
    except ClientError as e:
        _die(e)
    region = region or doc.get("region") or "us-east-1"
    try:
        blocks = ssoconfig.sso_sections(base, doc["grants"], session=session, region=region)
    except ValueError as e:
        _fail(str(e))
    try:
        raw = path.read_bytes() if path.exists() else b""
        text = raw.decode("utf-8")
    except (OSError, UnicodeDecodeError) as e:
        _fail(f"cannot read {path}: {e}")
    try:
        new, replaced, added = ssoconfig.upsert_sections(text, blocks, base)
    except ssoconfig.ForeignSections as e:
        _fail(f"{path} already has {e}, not written by `bridge configure --sso`; nothing was changed. Rename or "
              "remove that section (for the sso-session and services sections, --session-name picks other "
              "names) and run this again.")
    if new != text:
        write_atomic(path, new.encode("utf-8"))
    profiles = [name for kind, name in blocks if kind == "profile"]
    gone = [n for n in ssoconfig.own_profiles(new, session) if n not in profiles]
    for verb, keys in (("added", added), ("replaced", replaced)):
        for kind, name in keys:
            click.echo(f"{verb} {kind} {name}")
    for name in gone:
        click.echo(f"profile {name} (written earlier for sso-session {session}) is not one of your roles now; "
                   "left as it is", err=True)
    if not profiles:
        click.echo("You hold no role that Identity Center clients can use at this bridge now.", err=True)
    click.echo(f"use: aws sso login --sso-session {session} && aws --profile {profiles[0] if profiles else '<name>'} "
               f"sts get-caller-identity{client.sts_hint(doc)}", err=True)


def write_atomic(path: Any, data: bytes) -> None:
    """Replace the file behind ``path`` (a symlink's target) at once, keeping its permissions."""
    import tempfile

    target = path.resolve() if path.is_symlink() else path
    target.parent.mkdir(parents=True, exist_ok=True)
    mode = target.stat().st_mode & 0o7777 if target.exists() else 0o600
    fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.chmod(tmp, mode)
        os.replace(tmp, target)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def static_key_profiles(config_text: str, credentials_file: Any) -> set[str]:
    """Profile names that hold static keys: every section of the shared credentials file, and config
    profiles with ``aws_access_key_id``."""
    import configparser

    names: set[str] = set()
    for text, prefix in ((config_text, "profile "), (None, "")):
        parser = configparser.RawConfigParser(strict=False, interpolation=None)
        try:
            parser.read_string(text if text is not None else credentials_file.read_text(encoding="utf-8"))
        except (OSError, configparser.Error, UnicodeDecodeError):
            continue
        for section in parser.sections():
            name = section.removeprefix(prefix).strip() if prefix else section.strip()
            if text is None or parser.has_option(section, "aws_access_key_id"):
                names.add(name)
    return names


def self_command() -> list[str]:
    """How to run this bridge from a profile, by absolute path: AWS tools may run with another $PATH
    (IDEs, cron), and `bridge` on $PATH may be another program (iproute2's /usr/sbin/bridge on Linux).
    The console script that runs now, else the one installed beside this Python, else this Python
    with ``-m bridge``."""
    argv0 = sys.argv[0]
    beside = os.path.join(os.path.dirname(os.path.abspath(sys.executable)), "bridge")
    for candidate in (argv0, beside):
        if os.path.basename(candidate) == "bridge" and os.path.isfile(candidate) and os.access(candidate, os.X_OK):
            return [os.path.abspath(candidate)]
    return [os.path.abspath(sys.executable), "-m", "bridge.__main__"]
