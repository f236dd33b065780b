"""Users' sign-ins: sessions list, revoke."""

from __future__ import annotations

import json
import time
from typing import Any

import click

from bridge.commands._common import CONFIG, fail, services_from
from bridge.domain.errors import StoreUnavailable


@click.group("sessions")
def sessions_group() -> None:
    """Users' sign-ins: list them, or revoke everything of a user at once (offboarding)."""


def _when(t: Any) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%SZ", time.gmtime(int(t))) if isinstance(t, int) else "?"


def _rows(svc: Any, user: str) -> list[dict[str, Any]]:
    rows = []
    for shash, rec in svc.sessions.of_user(user):
        ident = rec.identity
        tokens = svc.device.tokens_of(shash)
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


def _issued(svc: Any, user: str) -> tuple[list[str], list[str], list[str]]:
    """What the user's live sessions were issued under the rules in force: source identities, session
    names of grants without one, role ARNs (read before the sessions go)."""
    sources: set[str] = set()
    names: set[str] = set()
    roles: dict[str, None] = {}
    for _, rec in svc.sessions.of_user(user):
        access = svc.access.decide(rec.identity)
        for g in [*access.grants, *access.locked]:
            roles.setdefault(g.role_arn)
            if g.source_identity:
                sources.add(g.source_identity)
            else:
                names.add(g.session_name)
    return sorted(sources), sorted(names), list(roles)


def _print_aws_policy(svc: Any, user: str, kind: str, issued: tuple[list[str], list[str], list[str]]) -> None:
    from datetime import UTC, datetime

    from bridge.aws.iam_setup import revocation_for
    from bridge.aws.limits import sanitize_session_name
    from bridge.commands.awssetup import defaults_for
    from bridge.mapping.roles import roles_sent

    sources, names, roles = issued
    if not (sources or names):
        guess = sanitize_session_name(user, fallback=sanitize_session_name(user))
        click.echo(f"note: no live session of {user}: the deny names source identity and session name {guess!r} "
                   "(check the audit trail's source_identity/session_name)", err=True)
        sources, names = [guess], [guess]
        roles = [r.arn for r in roles_sent(svc.settings.mapping, defaults_for(svc.settings))[0]]
    before = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    rev = revocation_for(user, sources, names, before, kind, roles)
    where = "a service control policy" if kind == "scp" else "an inline policy on each role"
    click.echo(f"AWS cannot revoke issued credentials: deny the sessions of {user} issued before {before} "
               f"with {where} (remove it after 12 hours, the longest session):")
    click.echo(f"cat > {rev.file} <<'EOF'")
    click.echo(json.dumps(rev.policy, indent=2))
    click.echo("EOF")
    for command in rev.commands:
        click.echo(command)
    if sources:
        click.echo(f"# or, with `bridge aws-setup --revocation` deployed: add {', '.join(sources)} to "
                   f"RevokedSourceIdentities and set RevokedBefore={before}")


@sessions_group.command("revoke")
@CONFIG
@click.option("--user", required=True, help="e-mail address or subject")
@click.option("--aws-policy", type=click.Choice(["scp", "inline"]),
              help="also print the deny policy for credentials already issued, as an SCP or inline role policy")
def sessions_revoke(config_path: str, user: str, aws_policy: str | None) -> None:
    """End every session of a user, every CLI login they approved, their cached credentials, and their
    pending and approved access requests."""
    from bridge.telemetry.audit import Context

    svc = services_from(config_path)
    try:
        issued = _issued(svc, user) if aws_policy else ([], [], [])
        done = svc.sessions.revoke_user(user)
        # and the elevation: an approved request would be active again at the user's next sign-in
        ended = svc.requests.end_for_user(user, by="bridge sessions revoke")
    except StoreUnavailable as e:
        fail([e.detail], "cannot revoke sessions:")
    svc.auditor.record("revocation", Context(), outcome="success", user=user, sessions=done.sessions,
                       cli_tokens=done.tokens, access_requests=len(ended), by="bridge sessions revoke")
    click.echo(f"revoked {done.sessions} session(s) and {done.tokens} CLI login(s) of {user}")
    click.echo(f"revoked {len(ended)} access request(s) of {user} (pending or approved)")
    if aws_policy:
        _print_aws_policy(svc, user, aws_policy, issued)
