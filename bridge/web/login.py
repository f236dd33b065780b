"""Sign-in pages: the IdP picker, login start, callbacks (OIDC redirect / form POST), sign-out."""

from __future__ import annotations

from flask import Blueprint, abort, make_response, redirect, render_template, request, url_for
from flask.typing import ResponseReturnValue

from bridge import audit
from bridge.errors import BridgeError, IdpDenied, NotSignedIn, StoreUnavailable
from bridge.flow import safe_return_to
from bridge.logs import correlation_id, event
from bridge.services import PASSTHROUGH_VERSION
from bridge.upstream.base import Connector
from bridge.upstream.dev import DevConnector
from bridge.upstream.saml import SamlConnector
from bridge.web.common import (
    audit_context,
    check_csrf,
    client_ip,
    current_session,
    end_session,
    rate_limit,
    services,
    session_identity,
    start_session,
)

bp = Blueprint("login", __name__)


def _connector(connector_id: str) -> Connector:
    c = services().connectors.get(connector_id)
    if c is None:
        abort(404, description=f"There is no identity provider called {connector_id!r} here.")
    return c


@bp.get("/")
def index() -> ResponseReturnValue:
    """Sign-in page: one button per configured identity provider."""
    return_to = safe_return_to(request.args.get("return_to"))
    return render_template("index.html", connectors=list(services().connectors.values()),
                           return_to=return_to, signed_in=current_session() is not None, note=None)


@bp.get("/login/<connector_id>")
def login(connector_id: str) -> ResponseReturnValue:
    """Start a sign-in with one IdP."""
    connector = _connector(connector_id)
    rate_limit("sign_in", client_ip())
    url = services().flow.begin(connector, request.args.get("return_to"))
    event("login_started", connector=connector_id)
    return redirect(url, code=302)


@bp.get("/dev-login/<connector_id>")
def dev_login(connector_id: str) -> ResponseReturnValue:
    """The dev connector's pick-a-user form (only exists with insecure_dev_login)."""
    connector = _connector(connector_id)
    if not isinstance(connector, DevConnector):
        abort(404)
    return render_template("dev_login.html", connector=connector, state=request.args.get("state", ""))


@bp.route("/callback/<connector_id>", methods=["GET", "POST"])
def callback(connector_id: str) -> ResponseReturnValue:
    """OIDC redirect URI (GET) and form-POST callback."""
    connector = _connector(connector_id)
    rate_limit("sign_in", client_ip())  # before any signature or XML work on what was posted
    params = request.form.to_dict() if request.method == "POST" else request.args.to_dict()
    svc = services()
    try:
        identity, return_to, correlation = svc.flow.complete(connector, params)
    except Exception as e:
        code = getattr(e, "code", "error")
        outcome = "denied" if isinstance(e, IdpDenied) else "failure"
        svc.metrics.logins.labels(connector_id, outcome).inc()
        event("login_failed", connector=connector_id, error_type=type(e).__name__, code=code)
        if not (isinstance(e, StoreUnavailable) and svc.settings.audit.sink == "redis"):  # it would fail too
            svc.auditor.record("sign_in", audit_context(), outcome=outcome, error=code,
                               how={"connector": connector_id})
        raise
    correlation_id.set(correlation)
    ctx = audit_context(correlation=correlation)
    svc.auditor.record("sign_in", ctx, outcome="success", who=audit.who(identity), how=audit.how(identity))
    access = svc.access_for(identity, ctx=ctx)  # audited here; decided again at each use
    start_session(identity, correlation=correlation,
                  passthrough_grants=access.grants if access.version == PASSTHROUGH_VERSION else None)
    svc.metrics.logins.labels(connector_id, "success").inc()
    event("login_succeeded", connector=connector_id, issuer=identity.issuer, subject=identity.subject,
          mfa=identity.mfa, grants=len(access.grants), locked=len(access.locked))
    return redirect(return_to, code=303)


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
    """End the bridge session (Redis record deleted, cookie cleared)."""
    doc = current_session()
    if doc is None:
        raise NotSignedIn()
    check_csrf(doc)
    connector_id = session_identity(doc).connector_id
    end_session()
    event("logout", connector=connector_id)
    return redirect(url_for("login.signed_out", connector=connector_id), code=303)


@bp.get("/signed-out")
def signed_out() -> ResponseReturnValue:
    """After sign-out: offer the AWS console sign-out and, where the IdP supports it, the IdP's."""
    svc = services()
    connector = svc.connectors.get(request.args.get("connector", ""))
    upstream = None
    logout_url = getattr(connector, "logout_url", None)
    if connector is not None and callable(logout_url):
        try:
            upstream = logout_url(f"{svc.settings.base_url}/")
        except BridgeError as e:  # discovery down: just do not offer it
            event("upstream_logout_unavailable", connector=connector.id, error=e.code)
    return render_template("signed_out.html", console_logout=svc.console_logout_url(), upstream=upstream,
                           connector=connector, signed_in=current_session() is not None)
