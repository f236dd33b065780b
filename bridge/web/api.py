"""The CLI's side: device authorization (RFC 8628), the token endpoint, and a bearer-token JSON API."""

from __future__ import annotations

from dataclasses import dataclass

from flask import Blueprint, g, jsonify, redirect, render_template, request, url_for
from flask.typing import ResponseReturnValue

from bridge.aws import formats
from bridge.core.device import DeviceError, DeviceFlow, normalize_user_code
from bridge.core.exchange import EXCHANGE_GRANT
from bridge.domain import present
from bridge.domain.errors import BadRequest, BridgeError, NotSignedIn, RateLimited
from bridge.domain.identity import Grant, Identity
from bridge.storage import CliToken, SessionRecord, hash_id
from bridge.telemetry.logs import correlation_id, event
from bridge.web import ahead, exchange
from bridge.web.common import (
    audit_context,
    check_csrf,
    client_address,
    current_session,
    granted,
    parse_seconds,
    rate_limit,
    require_confirmation,
    services,
    session_access,
    session_hash,
    session_identity,
)
from bridge.web.form import form_fields
from bridge.web.services import Services

bp = Blueprint("api", __name__)
DEVICE_GRANT = "urn:ietf:params:oauth:grant-type:device_code"


def _device() -> DeviceFlow:
    return services().device


def _oauth_error(e: DeviceError) -> ResponseReturnValue:
    resp = jsonify(error=e.error, error_description=e.description)
    resp.headers["Cache-Control"] = "no-store"
    return resp, e.status


def _device_limits(endpoint: str, code: str = "") -> None:
    """Per client IP on each device endpoint (guessing codes, minting them in bulk) and per user code /
    device code (hammering one code); separate buckets, so a CLI's polls never use up the approval page's."""
    rate_limit("device", f"{endpoint}\0{client_address()}")  # after ProxyFix; an IPv6 /64 is one address
    if code:
        rate_limit("device_code", f"{endpoint}\0{code}")


def _oauth_limited(e: RateLimited) -> ResponseReturnValue:
    # OAuth clients read JSON, never the HTML error page; ``slow_down`` makes an RFC 8628 client (ours
    # included) wait 5 s longer between polls, and Retry-After says how long the window still runs.
    resp = jsonify(error="slow_down", error_description=f"too many requests; retry in {e.retry_after} s")
    resp.headers["Cache-Control"] = "no-store"
    resp.headers["Retry-After"] = str(e.retry_after)
    return resp, 429


@bp.post("/oauth/device_authorization")
def device_authorization() -> ResponseReturnValue:
    """RFC 8628 §3.1: a device code for a CLI client."""
    try:
        _device_limits("device_authorization")
        start = _device().start(request.form.get("client_id", ""), client_ip=request.remote_addr or "",
                                user_agent=request.headers.get("User-Agent", ""))
    except DeviceError as e:
        return _oauth_error(e)
    except RateLimited as e:
        return _oauth_limited(e)
    base = services().settings.base_url
    event("device_code_issued", client_id=request.form.get("client_id"))
    return jsonify(device_code=start.device_code, user_code=start.user_code,
                   verification_uri=f"{base}/device",
                   verification_uri_complete=f"{base}/device?user_code={start.user_code}",
                   expires_in=start.expires_in, interval=start.interval)


@bp.route("/oauth/token", methods=["POST", "OPTIONS"])
def token() -> ResponseReturnValue:
    """RFC 8628 §3.4: poll for the token; the token exchange (RFC 8693) and its CORS: bridge/web/exchange.py."""
    if request.method == "OPTIONS":
        return exchange.preflight()
    fields = form_fields(request)
    if (fields.get("grant_type") or [""])[0] == EXCHANGE_GRANT:
        return exchange.token_exchange(fields)
    try:
        _device_limits("token", request.form.get("device_code", ""))
    except RateLimited as e:
        return _oauth_limited(e)
    if request.form.get("grant_type") != DEVICE_GRANT:
        return _oauth_error(DeviceError("unsupported_grant_type", "only the device_code grant is served here"))
    svc = services()
    try:
        body = _device().poll(request.form.get("client_id", ""), request.form.get("device_code", ""),
                              session_alive=lambda shash: _alive(svc, shash))
    except DeviceError as e:
        return _oauth_error(e)
    event("cli_token_issued", client_id=request.form.get("client_id"))
    resp = jsonify(body)
    resp.headers["Cache-Control"] = "no-store"
    return resp


def _alive(svc: Services, shash: str) -> bool:
    """Whether the approving session lives; one that cannot be confirmed now (revoked by the IdP, the
    IdP unreachable past its grace) answers the CLI as an OAuth error, never an HTML page or a 5xx."""
    try:
        return svc.sessions.load(shash) is not None
    except BridgeError:
        return False


@bp.route("/device", methods=["GET", "POST"])
def device() -> ResponseReturnValue:
    """Where a signed-in user sees a CLI's code and approves or denies it."""
    code = normalize_user_code((request.values.get("user_code") or "")[:64])
    _device_limits("device", code)
    session = current_session()
    if session is None:
        if request.method == "POST":
            raise NotSignedIn()
        return redirect(url_for("login.index", return_to=request.full_path.rstrip("?")))
    if request.method == "GET":
        pending = _device().pending(code) if code else None
        # A code that did not come from the bridge's own entry form came from a link, perhaps an attacker's
        # (RFC 8628 §5.4): the page says so. Our form is same-origin; a link from mail or chat is not.
        from_link = bool(code) and request.headers.get("Sec-Fetch-Site") != "same-origin"
        return render_template("device.html", code=code, pending=pending, csrf=session.csrf, done=None,
                               from_link=from_link, grants=session_access(session)[0] if pending else [])
    check_csrf(session)
    approve = request.form.get("decision") == "approve"
    require_confirmation(approve)
    shash = session_hash()
    assert shash is not None  # a session was loaded from this cookie
    if not _device().decide(code, approve=approve, session_hash=shash, session=session):
        raise BadRequest("unknown or expired user code", code="device_code_invalid",
                         message="That code is unknown, expired, or was already used.",
                         hint="Run the login command again to get a new code.")
    event("device_decided", approved=approve)
    return render_template("device.html", code=code, pending=None, csrf=session.csrf,
                           done="approved" if approve else "denied")


@dataclass(frozen=True)
class Bearer:
    """A presented CLI token, its record, and the live session that approved it."""

    token: str
    doc: CliToken
    session: SessionRecord

    @property
    def identity(self) -> Identity:
        return session_identity(self.session)


def _bearer(pick: ahead.BearerPick | None = None) -> Bearer:
    """The presented CLI token and its live session; ``pick``: the grant and duration of a credential
    request, read (and its rate limit counted) with them (bridge/web/ahead.py)."""
    auth = request.headers.get("Authorization", "")
    if not auth.startswith("Bearer ") or request.cookies.get(services().settings.session_cookie):
        # Bearer only, never mixed with a browser cookie (no CSRF surface on the API).
        raise NotSignedIn("no bearer token", message="This API needs a CLI token.",
                          hint="Run `bridge login --url <bridge URL>`.")
    token = auth.removeprefix("Bearer ").strip()
    read = ahead.bearer(token, kind="credentials", pick=pick) if pick is not None else None
    doc = _device().token(token) if read is None else _device().checked(hash_id(token), read.token)
    if doc is None:
        raise NotSignedIn("unknown, expired or revoked token", message="Your CLI login has expired or was revoked.",
                          hint="Run `bridge login --url <bridge URL>` again.")
    # The token is only as alive as the browser session that approved it (re-checked with the IdP
    # when due); its identity is read from there, and its roles are decided now.
    session = services().sessions.load(doc.session) if read is None else read.session
    if session is None:
        _device().revoke(token)
        raise NotSignedIn("the approving session has ended", code="cli_session_ended",
                          message="Your CLI login ended with the browser sign-in that approved it.",
                          hint="Run `bridge login --url <bridge URL>` again.")
    if doc.correlation_id:
        correlation_id.set(str(doc.correlation_id))
    return Bearer(token, doc, session)


@bp.get("/api/v1/grants")
def api_grants() -> ResponseReturnValue:
    """The token holder's roles under the rules in force now."""
    b = _bearer()
    grants, _ = session_access(b.session)
    # A stand-in STS (the demo's): the CLI's hints name it and `bridge exec` points the child at it.
    local_sts = {"sts_endpoint_url": ep} if (ep := services().settings.aws.local_sts_endpoint) else {}
    # A role held by an approved request that narrows it: the requester's own session policy goes with it.
    narrowed = ({r.id for r in services().requests.ledger.active_for(b.identity) if r.policy is not None}
                if any(gr.request_id for gr in grants) else set())
    return jsonify(**local_sts, grants=[{**present.api_grant(gr),
                                         **({"narrower_policy": True} if gr.request_id in narrowed else {})}
                                        for gr in grants],
                   requestable=[present.api_offer(gr) for gr in _requestable(b.session)],
                   expires_at=b.doc.expires_at, region=services().settings.aws.region)


def _requestable(session: SessionRecord) -> list[Grant]:
    """Roles the token holder may request (README "Access requests"); none for pass-through SAML sessions."""
    if session.passthrough_grants is not None:
        return []
    return [r.grant for r in services().access.requestable(session.identity)]


def _api_grant(b: Bearer | SessionRecord, grant_id: str) -> tuple[Grant, int]:
    grant = granted(b.session if isinstance(b, Bearer) else b, grant_id)  # the browser's decision, made now
    duration = parse_seconds(request.values.get("duration") or str(grant.default_duration), "duration")
    if grant.path == "passthrough":
        raise BadRequest("passthrough grants need the browser", code="passthrough_browser_only",
                         message="This role is redeemed with your identity provider's own sign-in, which the "
                                 "CLI does not hold.", hint="Use the portal in your browser for this role.")
    return grant, duration


@bp.post("/api/v1/credentials/<grant_id>")
def api_credentials(grant_id: str) -> ResponseReturnValue:
    """Credentials for one of the token holder's grants (cached server side)."""
    b = _bearer(pick=lambda _, session: _api_grant(session, grant_id))
    grant, duration = _api_grant(b, grant_id)
    identity = b.identity
    rate_limit("credentials", f"{identity.issuer}\0{identity.subject}")
    creds = services().issuer.issue_credentials(identity, grant, duration, ctx=audit_context(b.doc),
                                                sealed=ahead.sealed())
    g.no_store = True
    body = formats.api_json(creds)
    if ep := services().settings.aws.local_sts_endpoint:
        body["StsEndpointUrl"] = ep  # `bridge exec` and `env` export it as AWS_ENDPOINT_URL_STS
    return jsonify(body)


@bp.post("/api/v1/console/<grant_id>")
def api_console(grant_id: str) -> ResponseReturnValue:
    """A console sign-in URL (federation endpoint, whatever the grant's console method: a CLI opens a
    URL, it cannot POST a form in the browser). Secret for 15 minutes; never logged."""
    b = _bearer()
    grant, duration = _api_grant(b, grant_id)
    svc = services()
    destination = svc.console.destination(request.values.get("destination"), request.values.get("region"))
    url = svc.console.login_url(b.identity, grant, duration, destination, ctx=audit_context(b.doc))
    event("console_signin", method="federation", role_arn=grant.role_arn, rule=grant.via, duration=duration,
          destination=destination.split("?", 1)[0], via="api")
    g.no_store = True
    return jsonify(login_url=url, expires_in=900)


@bp.post("/api/v1/logout")
def api_logout() -> ResponseReturnValue:
    """Revoke the presented CLI token."""
    b = _bearer()
    _device().revoke(b.token)  # and unfiled from its session
    return jsonify(status="revoked")
