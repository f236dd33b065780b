"""The portal's "Sign in again with MFA" (docs/step-up-mfa.md): start a step-up sign-in for the current session.

A connector that can ask its IdP for one (``StepUp``) gets a PendingLogin with a ``StepUpRequest``; any other
(the dev connector) gets the plain sign-in it always had. The answer is verified at the callback
(bridge/core/stepup_flow.py), never this request trusted.
"""

from __future__ import annotations

import secrets

from flask import Blueprint, redirect, request
from flask.typing import ResponseReturnValue

from bridge.domain.errors import NotSignedIn
from bridge.telemetry.logs import event
from bridge.web.common import client_address, current_session, rate_limit, services, session_hash
from bridge.web.login import _browser, _login_cookie_name

bp = Blueprint("stepup", __name__)


@bp.get("/step-up")
def step_up() -> ResponseReturnValue:
    """Send the browser to its IdP for a fresh MFA sign-in of the same user (``return_to``: where after)."""
    session, shash = current_session(), session_hash()
    if session is None or shash is None:
        raise NotSignedIn()
    rate_limit("sign_in", client_address())
    svc = services()
    identity = session.identity
    connector = svc.connectors.get(identity.connector_id)
    if connector is None:
        raise NotSignedIn("the session's identity provider is no longer configured")
    asked = svc.signin.step_ups.request(connector, shash, identity)
    browser = _browser() or secrets.token_urlsafe(32)
    url = svc.flow.begin(connector, request.args.get("return_to"), browser=browser, step_up=asked)
    event("step_up_started" if asked else "login_started", connector=connector.id)
    resp = redirect(url, code=302)
    resp.set_cookie(_login_cookie_name(), browser, max_age=svc.settings.session.pending_login_ttl, httponly=True,
                    secure=svc.settings.secure_cookies, samesite="Lax", path="/")
    return resp
