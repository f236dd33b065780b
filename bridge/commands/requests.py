"""Access requests for operators: list, approve, deny, revoke (README "Access requests")."""

from __future__ import annotations

import getpass
import json
import time

import click

from bridge.commands._common import CONFIG, fail, services_from
from bridge.domain.errors import BridgeError


@click.group("requests")
def requests_group() -> None:
    """Access requests: list them, approve, deny or revoke one (audited as the operator)."""


def _when(t: int | None) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%SZ", time.gmtime(t)) if t else "-"


OPERATOR = click.option("--by", "operator", default=None,
                        help="who you are, for the audit trail (default: the login name)")
COMMENT = click.option("--comment", default="", help="a comment kept with the request")


@requests_group.command("list")
@CONFIG
@click.option("--status", type=click.Choice(["pending", "approved", "denied", "revoked", "expired", "ended"]))
@click.option("--json", "as_json", is_flag=True)
def requests_list(config_path: str, status: str | None, as_json: bool) -> None:
    """Every kept request (pending first to decide, approved ones active until their window ends)."""
    from bridge.core.access_requests import request_json

    svc = services_from(config_path)
    try:
        reqs = svc.requests.all(status)
    except BridgeError as e:
        fail([e.detail or e.message], "cannot list requests:")
    if as_json:
        click.echo(json.dumps([request_json(r) for r in reqs], indent=2))
        return
    if not reqs:
        click.echo("no access request" + (f" is {status}" if status else ""))
    for r in reqs:
        who = r.requester.email or r.requester.subject
        until = f" until {_when(r.expires_at)}" if r.status == "approved" else ""
        flag = (" BREAK-GLASS" if r.break_glass else "") + (" NARROWER-POLICY (--json shows it)" if r.policy else "")
        click.echo(f"{r.id}  {r.status:<8} {who}  {r.role_arn}  {r.duration // 60} min{until}{flag}  "
                   f"\"{r.reason}\"")


def _act(config_path: str, request_id: str, action: str, comment: str, operator: str | None) -> None:
    svc = services_from(config_path)
    by = operator or getpass.getuser()
    try:
        if action == "revoke":
            req = svc.requests.revoke(None, request_id, comment=comment, operator=by)
        else:
            req = svc.requests.operator_decide(request_id, approve=action == "approve", comment=comment, operator=by)
    except BridgeError as e:
        fail([e.detail or e.message], f"cannot {action} {request_id}:")
    svc.requests.notifier.wait(10)  # the webhooks run in this process's background thread
    until = f", active until {_when(req.expires_at)}" if req.status == "approved" else ""
    click.echo(f"{req.id}: {req.status}{until}")


@requests_group.command("approve")
@CONFIG
@click.argument("request_id")
@COMMENT
@OPERATOR
def requests_approve(config_path: str, request_id: str, comment: str, operator: str | None) -> None:
    """Approve a pending request: its window starts now (the rules must still give the role on request)."""
    _act(config_path, request_id, "approve", comment, operator)


@requests_group.command("deny")
@CONFIG
@click.argument("request_id")
@COMMENT
@OPERATOR
def requests_deny(config_path: str, request_id: str, comment: str, operator: str | None) -> None:
    """Deny a pending request."""
    _act(config_path, request_id, "deny", comment, operator)


@requests_group.command("revoke")
@CONFIG
@click.argument("request_id")
@COMMENT
@OPERATOR
def requests_revoke(config_path: str, request_id: str, comment: str, operator: str | None) -> None:
    """End a pending or active request now (issued credentials last until they expire, as ever)."""
    _act(config_path, request_id, "revoke", comment, operator)
