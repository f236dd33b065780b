"""Users' sign-ins: sessions list, revoke."""

from __future__ import annotations

import json
import time
from typing import Any

import click

from bridge.commands._common import CONFIG, fail, services_from
from bridge.errors import StoreUnavailable


@click.group("sessions")
def sessions_group() -> None:
    """Users' sign-ins: list them, or revoke everything of a user at once (offboarding)."""


def _when(t: Any) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%SZ", time.gmtime(int(t))) if isinstance(t, int) else "?"


def _rows(svc: Any, user: str) -> list[dict[str, Any]]:
    rows = []
    for shash, rec in svc.sessions.of_user(user):
        ident = rec.identity
        tokens = svc.device.tokens_of(shash) if svc.device is not None else []
        rows.append({"session": shash[:16], "connector": ident.connector_id, "subject": ident.subject,
                     "email": ident.email, "created_at": rec.created_at, "expires_at": rec.expires_at,
                     "cli_tokens": [{"client_id": t.client_id, "created_at": t.created_at,
                                     "expires_at": t.expires_at, "client_ip": t.client_ip} for _, t in tokens]})
    return rows


@sessions_group.command("list")
@CONFIG
@click.option("--user", required=True, help="e-mail address or subject")
@click.option("--json", "as_json", is_flag=True)
def sessions_list(config_path: str, user: str, as_json: bool) -> None:
    """The live browser sessions of a user and the CLI logins each approved."""
    svc = services_from(config_path)
    try:
        rows = _rows(svc, user)
    except StoreUnavailable as e:
        fail([e.detail], "cannot read sessions:")
    if as_json:
        click.echo(json.dumps(rows, indent=2))
        return
    if not rows:
        click.echo(f"no live session for {user}")
    for r in rows:
        click.echo(f"{r['session']}  {r['connector']}  {r['email'] or r['subject']}  signed in "
                   f"{_when(r['created_at'])}, ends {_when(r['expires_at'])}, {len(r['cli_tokens'])} CLI login(s)")


@sessions_group.command("revoke")
@CONFIG
@click.option("--user", required=True, help="e-mail address or subject")
def sessions_revoke(config_path: str, user: str) -> None:
    """End every session of a user, every CLI login they approved, and their cached credentials."""
    from bridge.audit import Context

    svc = services_from(config_path)
    try:
        done = svc.sessions.revoke_user(user)
    except StoreUnavailable as e:
        fail([e.detail], "cannot revoke sessions:")
    svc.auditor.record("revocation", Context(), outcome="success", user=user, sessions=done.sessions,
                       cli_tokens=done.tokens, by="bridge sessions revoke")
    click.echo(f"revoked {done.sessions} session(s) and {done.tokens} CLI login(s) of {user}")
