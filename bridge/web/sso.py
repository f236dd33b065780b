"""IAM Identity Center's ``sso-oidc`` and ``sso`` portal APIs under ``/sso`` (their paths do not collide):
what `aws sso login`, the AWS SDKs' SSO providers and SSO-aware tools call once their endpoints point
here (``AWS_ENDPOINT_URL_SSO_OIDC`` / ``AWS_ENDPOINT_URL_SSO`` = ``<base_url>/sso``). The protocol
is in bridge/protocols/identity_center.py; this module only reads requests and writes REST-JSON answers, with
the ``x-amzn-ErrorType`` header the SDKs turn into their exception classes."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from flask import Blueprint, Response, g, jsonify, redirect, render_template, request, url_for
from flask.typing import ResponseReturnValue
from werkzeug.exceptions import RequestEntityTooLarge

from bridge.client import ssoconfig
from bridge.core.device import PendingDevice
from bridge.domain import present
from bridge.domain.errors import BridgeError, NotSignedIn, RateLimited
from bridge.domain.identity import Grant
from bridge.protocols.identity_center import Caller, IdentityCenter
from bridge.protocols.identity_center_protocol import SsoError, check_text, portal_error
from bridge.storage import CliToken, DeviceCode, SessionRecord
from bridge.telemetry.logs import correlation_id, event
from bridge.web import ahead
from bridge.web.common import (
    audit_context,
    check_csrf,
    client_address,
    current_session,
    rate_limit,
    require_confirmation,
    require_session,
    services,
    session_access,
    session_hash,
)

bp = Blueprint("sso", __name__, url_prefix="/sso")
page = Blueprint("aws_cli", __name__)  # the portal's page for it: /portal/aws-cli
TOKEN_HEADER = "x-amz-sso_bearer_token"  # noqa: S105 - a header name


def center() -> IdentityCenter:
    return services().identity_center


def _json(body: dict[str, Any], status: int = 200) -> Response:
    resp = jsonify(body)
    resp.status_code = status
    resp.headers["Cache-Control"] = "no-store"
    return resp


def _error(e: SsoError) -> Response:
    resp = _json(e.body, e.status)
    resp.headers["x-amzn-ErrorType"] = e.type
    event("sso_error", type=e.type, status=e.status, path=request.path)
    return resp


def _body() -> dict[str, Any]:
    """The JSON object of the request, every string in it Unicode text; InvalidRequestException otherwise."""
    try:
        doc = json.loads(request.get_data(cache=True))
    except RequestEntityTooLarge:
        raise SsoError("InvalidRequestException", 413, {"error": "invalid_request",
                                                        "error_description": "the body is too large"}) from None
    except (ValueError, RecursionError):  # not JSON (or not UTF-8 / -16 / -32), or nested too deep
        doc = None
    if not isinstance(doc, dict):
        raise SsoError.oidc("invalid_request", "the body must be a JSON object")
    check_text(doc)
    return doc


def _limit(endpoint: str, code: str = "") -> None:
    try:
        if endpoint == "register":  # per address (an IPv6 /64), as the registrations are capped
            rate_limit("sso_register", f"sso-register\0{client_address()}")
        else:
            rate_limit("device", f"sso-{endpoint}\0{client_address()}")
        if code:
            rate_limit("device_code", f"sso-{endpoint}\0{code}")
    except RateLimited as e:
        raise SsoError.oidc("slow_down", f"too many requests; retry in {e.retry_after} s") from None


def _oidc(fn: Callable[[], dict[str, Any]]) -> dict[str, Any]:
    """Run an sso-oidc operation; a bridge error met on the way (the store, the audit trail) as its shape."""
    try:
        return fn()
    except SsoError:
        raise
    except BridgeError as e:
        if e.status < 500:
            raise SsoError.oidc("invalid_request", e.message or e.code) from None
        raise SsoError("InternalServerException", e.status,
                       {"error": "server_error", "error_description": e.message or "try again later"}) from None


# --------------------------------------------------------------------------- sso-oidc


@bp.post("/client/register")
def register_client() -> ResponseReturnValue:
    try:
        _limit("register")
        body = _body()
        out = _oidc(lambda: center().register_client(body, client_ip=request.remote_addr or ""))
    except SsoError as e:
        return _error(e)
    event("sso_client_registered", grant_types=len(out), authorization_code="authorizationEndpoint" in out)
    return _json(out)


@bp.post("/device_authorization")
def start_device_authorization() -> ResponseReturnValue:
    try:
        _limit("device_authorization")
        body = _body()
        out = _oidc(lambda: center().start_device_authorization(body, client_ip=request.remote_addr or "",
                                                                user_agent=request.headers.get("User-Agent", "")))
    except SsoError as e:
        return _error(e)
    event("device_code_issued", client_id="sso")
    return _json(out)


@bp.post("/token")
def create_token() -> ResponseReturnValue:
    try:
        body = _body()
        code = body.get("deviceCode") or body.get("code") or body.get("refreshToken") or ""
        _limit("token", code if isinstance(code, str) else "")
        out = _oidc(lambda: center().create_token(body, audit_context()))
    except SsoError as e:
        return _error(e)
    event("cli_token_issued", client_id="sso", grant_type=str(body.get("grantType"))[:64])
    return _json(out)


@bp.route("/authorize", methods=["GET", "POST"])
def authorize() -> ResponseReturnValue:
    """The browser step of the authorization code grant (AWS CLI v2's default): sign in if needed, the
    same approval page as the device flow (an explicit confirmation), then back to the loopback
    redirect URI with ``code`` and ``state``."""
    params = {k: v for k, v in request.args.items()}
    ic = center()
    req = ic.authorize_request(params)  # BadRequest pages: nothing is redirected for a bad client
    session = current_session()
    if session is None:
        if request.method == "POST":
            raise NotSignedIn()
        return redirect(url_for("login.index", return_to=request.full_path.rstrip("?")))
    if request.method == "GET":
        now = int(ic.clock())
        shown = DeviceCode(user_code="", client_id=req.client.name, status="pending", expires_at=now + 300,
                           interval=0, client_ip=request.remote_addr or "",
                           user_agent=request.headers.get("User-Agent", "")[:200], created_at=now)
        # Browsers check form-action on the redirect that follows the form too: allow the loopback origin.
        g.form_action_extra = [req.redirect.origin]  # rebuilt from the parsed URI, never copied from it
        return render_template("device.html", code="", pending=PendingDevice(shown, 300), csrf=session.csrf,
                               done=None, from_link=False, grants=session_access(session)[0],
                               form_action=request.full_path)
    check_csrf(session)
    approve = request.form.get("decision") == "approve"
    require_confirmation(approve, terminal=False)
    shash = session_hash()
    assert shash is not None
    target = ic.authorize_decide(req, approve=approve, session_hash=shash, session=session,
                                 client_ip=request.remote_addr or "", user_agent=request.headers.get("User-Agent", ""))
    event("sso_authorize_decided", approved=approve)
    return redirect(target, code=303)


# --------------------------------------------------------------------------- sso portal


def _caller(pick: ahead.BearerPick | None = None) -> Caller:
    """The caller, its token and session read in one round trip (once this process has seen them live);
    ``pick``: a credential request's grant, read (and counted) with them."""
    token = request.headers.get(TOKEN_HEADER, "").strip()
    c = center().caller(token, ahead.bearer(token, kind="credentials", pick=pick) if pick is not None
                        else ahead.bearer(token))
    if c.doc.correlation_id:
        correlation_id.set(str(c.doc.correlation_id))
    return c


def _portal(fn: Callable[[], dict[str, Any]]) -> Response:
    """Run a portal operation; every failure as an Identity Center error."""
    try:
        return _json(fn())
    except SsoError as e:
        return _error(e)
    except BridgeError as e:
        return _error(portal_error(e))


@bp.get("/assignment/accounts")
def list_accounts() -> ResponseReturnValue:
    return _portal(lambda: center().list_accounts(_caller(), request.args.get("next_token"),
                                                  request.args.get("max_result")))


@bp.get("/assignment/roles")
def list_account_roles() -> ResponseReturnValue:
    return _portal(lambda: center().list_account_roles(_caller(), request.args.get("account_id", "")[:64],
                                                       request.args.get("next_token"),
                                                       request.args.get("max_result")))


def _role_credentials() -> dict[str, Any]:
    ic = center()
    token, account, role = (request.headers.get(TOKEN_HEADER, "").strip(), request.args.get("account_id", "")[:64],
                            request.args.get("role_name", "")[:128])

    def pick(doc: CliToken, session: SessionRecord) -> tuple[Grant, int]:
        grant = ic.role_grant(Caller(token, doc, session), account, role)
        return grant, grant.default_duration

    c = _caller(pick)
    grant = ic.role_grant(c, account, role)
    identity = c.session.identity
    rate_limit("credentials", f"{identity.issuer}\0{identity.subject}")
    out = ic.role_credentials(c, grant, audit_context(c.doc), sealed=ahead.sealed())
    g.no_store = True
    return out


@bp.get("/federation/credentials")
def get_role_credentials() -> ResponseReturnValue:
    return _portal(_role_credentials)


@bp.post("/logout")
def logout() -> ResponseReturnValue:
    def run() -> dict[str, Any]:
        center().logout(request.headers.get(TOKEN_HEADER, "").strip())
        return {}

    return _portal(run)


# --------------------------------------------------------------------------- the portal's page


@page.get("/portal/aws-cli")
def aws_cli() -> ResponseReturnValue:
    """AWS CLI v2 and SDKs with the signed-in user's roles: the ``~/.aws/config`` text `bridge configure
    --sso` writes (the same function, from the same grant list as ``/api/v1/grants``), the answers to
    type at `aws configure sso`, and the endpoint variables."""
    session = require_session()
    settings = services().settings
    base, region = settings.base_url.rstrip("/"), settings.aws.region
    grants = [present.api_grant(gr) for gr in session_access(session)[0]]
    return render_template(
        "aws_cli.html", config=ssoconfig.sso_config_text(base, grants, session=ssoconfig.DEFAULT_SESSION,
                                                         region=region),
        answers=ssoconfig.configure_sso_answers(base, session=ssoconfig.DEFAULT_SESSION, region=region),
        env=ssoconfig.endpoint_env(base), session=ssoconfig.DEFAULT_SESSION, base_url=base, region=region,
        profiles=ssoconfig.sso_profiles(grants), services_name=ssoconfig.services_name(ssoconfig.DEFAULT_SESSION),
        sts_endpoint=settings.aws.local_sts_endpoint)
