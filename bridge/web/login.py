"""Sign-in pages: the IdP picker, login start, callbacks (OIDC redirect / form POST), sign-out."""

from __future__ import annotations

import re
import secrets

from flask import Blueprint, abort, g, make_response, redirect, render_template, request, url_for
from flask.typing import ResponseReturnValue

from bridge.core.flow import safe_return_to
from bridge.core.signin import Browser
from bridge.domain.errors import BridgeError, NotSignedIn
from bridge.telemetry.logs import event
from bridge.upstream.base import Connector, SignsOut, sign_in_choices
from bridge.upstream.dev import DevConnector
from bridge.upstream.saml import SamlConnector
from bridge.web.common import (
    check_csrf,
    client_address,
    current_session,
    end_session,
    rate_limit,
    services,
    session_hash,
    session_identity,
    stored_session,
)

bp = Blueprint("login", __name__)

# The pre-sign-in cookie: a random value that binds each pending login to the browser that started
# it (bridge/core/flow.py). HttpOnly, SameSite=Lax, lives as long as a pending login.
LOGIN_COOKIE = "bridge_login"
_LOGIN_COOKIE_VALUE = re.compile(r"\A[A-Za-z0-9_-]{43}\Z")  # secrets.token_urlsafe(32)
# Form field marking the same-site re-POST of a form-POST callback (see ``callback``).
HOP_FIELD = "bridge_hop"


def _login_cookie_name() -> str:
    # On https the __Host- prefix keeps a sibling subdomain from planting a value (cookie tossing)
    # that an attacker's own sign-in could then be bound to: browsers accept it only from this host.
    return f"__Host-{LOGIN_COOKIE}" if services().settings.secure_cookies else LOGIN_COOKIE


def _browser() -> str | None:
    """This browser's pre-sign-in cookie value, if it sent a well-formed one."""
    value = request.cookies.get(_login_cookie_name(), "")
    return value if _LOGIN_COOKIE_VALUE.match(value) else None


def _connector(connector_id: str) -> Connector:
    c = services().connectors.get(connector_id)
    if c is None:
        abort(404, description=f"There is no identity provider called {connector_id!r} here.")
    return c


@bp.get("/")
def index() -> ResponseReturnValue:
    """Sign-in page: one button per configured identity provider."""
    return_to = safe_return_to(request.args.get("return_to"))
    return render_template("index.html", connectors=sign_in_choices(services().connectors.values()),
                           return_to=return_to, signed_in=current_session() is not None, note=None)


@bp.get("/login/<connector_id>")
def login(connector_id: str) -> ResponseReturnValue:
    """Start a sign-in with one IdP."""
    connector = _connector(connector_id)
    rate_limit("sign_in", client_address())
    svc = services()
    # Reuse the browser's value if it has one: a sign-in started in a second tab must not orphan
    # the first tab's.
    browser = _browser() or secrets.token_urlsafe(32)
    url = svc.flow.begin(connector, request.args.get("return_to"), browser=browser)
    event("login_started", connector=connector_id)
    resp = redirect(url, code=302)
    resp.set_cookie(_login_cookie_name(), browser, max_age=svc.settings.session.pending_login_ttl, httponly=True,
                    secure=svc.settings.secure_cookies, samesite="Lax", path="/")
    return resp


@bp.get("/dev-login/<connector_id>")
def dev_login(connector_id: str) -> ResponseReturnValue:
    """The dev connector's pick-a-user form (only exists with insecure_dev_login)."""
    connector = _connector(connector_id)
    if not isinstance(connector, DevConnector):
        abort(404)
    return render_template("dev_login.html", connector=connector, state=request.args.get("state", ""))


@bp.route("/callback/<connector_id>", methods=["GET", "POST"])
def callback(connector_id: str) -> ResponseReturnValue:
    """OIDC redirect URI (GET) and form-POST callback: HTTP in and out; the sign-in is ``SignIn``'s."""
    _connector(connector_id)  # an unknown IdP is a 404, before anything is counted
    rate_limit("sign_in", client_address())  # before any signature or XML work on what was posted
    params = request.form.to_dict() if request.method == "POST" else request.args.to_dict()
    svc = services()
    browser = _browser()
    hopped = params.pop(HOP_FIELD, None) is not None
    if (request.method == "POST" and browser is None and not hopped
            and svc.flow.is_pending(params.get("state") or params.get("RelayState"))):
        # The IdP's auto-POST (a SAMLResponse, or an OIDC form_post answer such as Apple's) comes from its
        # site: a cross-site POST, so the browser withholds our SameSite=Lax pre-sign-in cookie. Send the
        # same fields back to this URL from a page of ours; that same-site POST carries the cookie, and
        # flow.complete checks it. Nothing is taken yet.
        event("login_hop", connector=connector_id)
        return render_template("login_hop.html", fields=params, hop_field=HOP_FIELD,
                               action=url_for("login.callback", connector_id=connector_id))
    signed = svc.signin.complete(connector_id, params, _browser_at(browser), old_session=session_hash())
    g.new_session_id = signed.session_id
    resp = redirect(signed.return_to, code=303)
    if signed.browser_done:  # kept while another tab still signs in
        resp.delete_cookie(_login_cookie_name(), path="/", httponly=True, secure=svc.settings.secure_cookies,
                           samesite="Lax")
    return resp


def _browser_at(cookie: str | None) -> Browser:
    """The browser delivering this callback, for the sign-in: its pre-sign-in cookie, address, user agent."""
    return Browser(cookie, client_ip=request.remote_addr, user_agent=request.headers.get("User-Agent"))


@bp.get("/sp/<connector_id>/metadata.xml")
def sp_metadata(connector_id: str) -> ResponseReturnValue:
    """Our SP metadata for an upstream SAML IdP (paste into ADFS / Entra / Okta / Keycloak)."""
    connector = _connector(connector_id)
    if not isinstance(connector, SamlConnector):
        abort(404, description=f"{connector_id!r} is not a SAML connector.")
    resp = make_response(connector.sp_metadata())
    resp.headers["Content-Type"] = "application/samlmetadata+xml"
    return resp


@bp.post("/logout")
def logout() -> ResponseReturnValue:
    """End the bridge session (Redis record deleted, cookie cleared); no re-check with the IdP first."""
    session = stored_session()
    if session is None or session.expires_at <= services().sessions.clock():
        raise NotSignedIn()
    check_csrf(session)
    connector_id = session_identity(session).connector_id
    end_session()
    event("logout", connector=connector_id)
    return redirect(url_for("login.signed_out", connector=connector_id), code=303)


@bp.get("/signed-out")
def signed_out() -> ResponseReturnValue:
    """After sign-out: offer the AWS console sign-out and, where the IdP supports it, the IdP's."""
    svc = services()
    connector = svc.connectors.get(request.args.get("connector", ""))
    upstream = None
    if isinstance(connector, SignsOut):
        try:
            upstream = connector.logout_url(f"{svc.settings.base_url}/")
        except BridgeError as e:  # discovery down: just do not offer it
            event("upstream_logout_unavailable", connector=connector.id, error=e.code)
    return render_template("signed_out.html", console_logout=svc.console.logout_url(), upstream=upstream,
                           connector=connector, signed_in=current_session() is not None)
