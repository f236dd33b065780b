"""The CLI's side: device authorization (RFC 8628), the token endpoint, and a bearer-token JSON API."""

from __future__ import annotations

from typing import Any

from flask import Blueprint, g, jsonify, redirect, render_template, request, url_for
from flask.typing import ResponseReturnValue

from bridge.aws import formats
from bridge.device import DeviceError, DeviceFlow
from bridge.errors import BadRequest, NotGranted, NotSignedIn
from bridge.identity import Grant, Identity
from bridge.logs import event
from bridge.web.common import audit_context, check_csrf, current_session, parse_seconds, rate_limit, services

bp = Blueprint("api", __name__)
DEVICE_GRANT = "urn:ietf:params:oauth:grant-type:device_code"


def _device() -> DeviceFlow:
    d = services().device
    assert d is not None
    return d


def _oauth_error(e: DeviceError) -> ResponseReturnValue:
    resp = jsonify(error=e.error, error_description=e.description)
    resp.headers["Cache-Control"] = "no-store"
    return resp, e.status


@bp.post("/oauth/device_authorization")
def device_authorization() -> ResponseReturnValue:
    """RFC 8628 §3.1: a device code for a CLI client."""
    try:
        start = _device().start(request.form.get("client_id", ""))
    except DeviceError as e:
        return _oauth_error(e)
    base = services().settings.base_url
    event("device_code_issued", client_id=request.form.get("client_id"))
    return jsonify(device_code=start.device_code, user_code=start.user_code,
                   verification_uri=f"{base}/device",
                   verification_uri_complete=f"{base}/device?user_code={start.user_code}",
                   expires_in=start.expires_in, interval=start.interval)


@bp.post("/oauth/token")
def token() -> ResponseReturnValue:
    """RFC 8628 §3.4: poll for the token."""
    if request.form.get("grant_type") != DEVICE_GRANT:
        return _oauth_error(DeviceError("unsupported_grant_type", "only the device_code grant is served here"))
    try:
        body = _device().poll(request.form.get("client_id", ""), request.form.get("device_code", ""))
    except DeviceError as e:
        return _oauth_error(e)
    event("cli_token_issued", client_id=request.form.get("client_id"))
    resp = jsonify(body)
    resp.headers["Cache-Control"] = "no-store"
    return resp


@bp.route("/device", methods=["GET", "POST"])
def device() -> ResponseReturnValue:
    """Where a signed-in user sees a CLI's code and approves or denies it."""
    doc = current_session()
    code = (request.values.get("user_code") or "").strip()[:20]
    if doc is None:
        if request.method == "POST":
            raise NotSignedIn()
        return redirect(url_for("login.index", return_to=request.full_path.rstrip("?")))
    if request.method == "GET":
        pending = _device().pending(code) if code else None
        return render_template("device.html", code=code, pending=pending, csrf=doc["csrf"], done=None)
    check_csrf(doc)
    approve = request.form.get("decision") == "approve"
    sid = request.cookies.get(services().settings.session.cookie_name, "")
    if not _device().decide(code, approve=approve, session=doc, session_id=sid):
        raise BadRequest("unknown or expired user code", code="device_code_invalid",
                         message="That code is unknown, expired, or was already used.",
                         hint="Run the login command again to get a new code.")
    event("device_decided", approved=approve)
    return render_template("device.html", code=code, pending=None, csrf=doc["csrf"],
                           done="approved" if approve else "denied")


def _bearer() -> dict[str, Any]:
    auth = request.headers.get("Authorization", "")
    if not auth.startswith("Bearer ") or request.cookies.get(services().settings.session.cookie_name):
        # Bearer only, never mixed with a browser cookie (no CSRF surface on the API).
        raise NotSignedIn("no bearer token", message="This API needs a CLI token.",
                          hint="Run `bridge login --url <bridge URL>`.")
    doc = _device().token(auth.removeprefix("Bearer ").strip())
    if doc is None:
        raise NotSignedIn("unknown, expired or revoked token", message="Your CLI login has expired or was revoked.",
                          hint="Run `bridge login --url <bridge URL>` again.")
    return doc


@bp.get("/api/v1/grants")
def api_grants() -> ResponseReturnValue:
    """The token holder's roles."""
    doc = _bearer()
    grants = [Grant.from_json(x) for x in doc["grants"]]
    return jsonify(grants=[{"id": gr.id, "role_arn": gr.role_arn, "account_id": gr.account_id, "label": gr.label,
                            "role_name": gr.role_name, "max_duration": gr.max_duration,
                            "account_alias": gr.account_alias, "account_label": gr.account_label,
                            "default_duration": gr.default_duration} for gr in grants],
                   expires_at=doc["expires_at"])


def _api_grant(doc: dict[str, Any], grant_id: str) -> tuple[Grant, int]:
    grant = next((gr for gr in (Grant.from_json(x) for x in doc["grants"]) if gr.id == grant_id), None)
    if grant is None:
        raise NotGranted(f"grant {grant_id[:32]!r} is not one of your roles",
                         message="That role is not one of the roles granted to you.")
    duration = parse_seconds(request.values.get("duration") or str(grant.default_duration), "duration")
    if grant.path == "passthrough":
        raise BadRequest("passthrough grants need the browser", code="passthrough_browser_only",
                         message="This role is redeemed with your identity provider's own sign-in, which the "
                                 "CLI does not hold.", hint="Use the portal in your browser for this role.")
    return grant, duration


@bp.post("/api/v1/credentials/<grant_id>")
def api_credentials(grant_id: str) -> ResponseReturnValue:
    """Credentials for one of the token holder's grants (cached server side)."""
    doc = _bearer()
    grant, duration = _api_grant(doc, grant_id)
    identity = Identity.from_json(doc["identity"])
    rate_limit("credentials", f"{identity.issuer}\0{identity.subject}")
    creds = services().issue_credentials(identity, grant, duration, ctx=audit_context(doc))
    g.no_store = True
    return jsonify(formats.api_json(creds))


@bp.post("/api/v1/console/<grant_id>")
def api_console(grant_id: str) -> ResponseReturnValue:
    """A console sign-in URL (federation endpoint, whatever the grant's console method: a CLI opens a
    URL, it cannot POST a form in the browser). Secret for 15 minutes; never logged."""
    doc = _bearer()
    grant, duration = _api_grant(doc, grant_id)
    svc = services()
    destination = svc.console_destination(request.values.get("destination"), request.values.get("region"))
    url = svc.console_login_url(Identity.from_json(doc["identity"]), grant, duration, destination,
                                ctx=audit_context(doc))
    event("console_signin", method="federation", role_arn=grant.role_arn, rule=grant.via, duration=duration,
          destination=destination.split("?", 1)[0], via="api")
    g.no_store = True
    return jsonify(login_url=url, expires_in=900)


@bp.post("/api/v1/logout")
def api_logout() -> ResponseReturnValue:
    """Revoke the presented CLI token."""
    _bearer()
    _device().revoke(request.headers["Authorization"].removeprefix("Bearer ").strip())
    return jsonify(status="revoked")
