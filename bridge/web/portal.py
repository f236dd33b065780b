"""The portal (roles the rules grant) and the credentials page."""

from __future__ import annotations

from collections.abc import Callable
from itertools import groupby

from flask import Blueprint, g, jsonify, render_template, request
from flask.typing import ResponseReturnValue

from bridge.aws import formats
from bridge.errors import BadRequest, NotGranted
from bridge.identity import Credentials
from bridge.web.common import (
    audit_context,
    check_csrf,
    rate_limit,
    require_session,
    services,
    session_grants,
    session_identity,
    session_passthrough,
    wants_json,
)

bp = Blueprint("portal", __name__)


@bp.get("/portal")
def portal() -> ResponseReturnValue:
    """Accounts and the roles this user holds in each."""
    doc = require_session()
    grants = sorted(session_grants(doc), key=lambda gr: (gr.account_id, gr.label.lower()))
    identity = session_identity(doc)
    if wants_json():
        return jsonify(identity={"email": identity.email, "name": identity.name, "mfa": identity.mfa,
                                 "connector": identity.connector_id},
                       grants=[{"id": gr.id, "role_arn": gr.role_arn, "account_id": gr.account_id,
                                "label": gr.label, "max_duration": gr.max_duration} for gr in grants],
                       csrf_token=doc["csrf"], expires_at=doc["expires_at"])
    accounts = [(acct, list(items)) for acct, items in groupby(grants, key=lambda gr: gr.account_id)]
    return render_template("portal.html", identity=identity, accounts=accounts, csrf=doc["csrf"],
                           expires_at=doc["expires_at"])


@bp.post("/credentials/<grant_id>")
def credentials(grant_id: str) -> ResponseReturnValue:
    """Assume the granted role; show every credential format (or JSON with Accept: application/json)."""
    doc = require_session()
    check_csrf(doc)
    grant = next((gr for gr in session_grants(doc) if gr.id == grant_id), None)
    if grant is None:
        raise NotGranted(f"grant {grant_id[:32]!r} is not one of your roles",
                         message="That role is not one of the roles granted to you.")
    raw = request.form.get("duration") or request.args.get("duration") or str(grant.default_duration)
    if not raw.isdigit():
        raise BadRequest("duration must be a whole number of seconds", code="invalid_duration")
    svc = services()
    identity = session_identity(doc)
    rate_limit("credentials", f"{identity.issuer}\0{identity.subject}")
    creds = svc.issue_credentials(identity, grant, int(raw), ctx=audit_context(doc),
                                  passthrough=session_passthrough() if grant.path == "passthrough" else None)
    g.no_store = True
    if wants_json():
        return jsonify(formats.api_json(creds))
    profile = request.form.get("profile") or formats.default_profile_name(creds)
    if not formats.PROFILE_RE.match(profile):
        profile = formats.default_profile_name(creds)
    tabs = [("env", "bash / zsh", formats.env_exports(creds), "aws-env.sh"),
            ("fish", "fish", formats.fish_exports(creds), "aws-env.fish"),
            ("powershell", "PowerShell", formats.powershell_exports(creds), "aws-env.ps1"),
            ("cmd", "Windows cmd", _or_note(formats.cmd_exports, creds), "aws-env.cmd"),
            ("ini", "~/.aws/credentials", formats.credentials_file(creds, profile), "credentials"),
            ("dotenv", ".env (docker --env-file)", _or_note(formats.dotenv, creds), "aws.env"),
            ("process", "credential_process JSON", formats.credential_process_json(creds), "credentials.json"),
            ("config", "~/.aws/config (no keys on disk)",
             formats.config_snippet(profile, svc.settings.base_url, grant.role_arn, creds.region), "config")]
    return render_template(
        "credentials.html", grant=grant, creds=creds, tabs=tabs, profile=profile, csrf=doc["csrf"],
        sts_endpoint=svc.settings.aws.sts_endpoint_url,
        boto3=formats.boto3_snippet(creds, svc.settings.aws.sts_endpoint_url))


def _or_note(fmt: Callable[[Credentials], str], creds: Credentials) -> str:
    try:
        return fmt(creds)
    except ValueError as e:
        return f"# not available for these credentials: {e}\n"
