"""Console sign-in: ``POST /console/<grant>`` (federation endpoint 302, or an auto-POSTed SAMLResponse)
and the bookmarkable ``GET /go/<account>/<role>`` links (docs/aws-rules.md §3)."""

from __future__ import annotations

from flask import Blueprint, g, jsonify, make_response, redirect, render_template, request, url_for
from flask.typing import ResponseReturnValue

from bridge.domain.errors import MfaRequired, NotGranted
from bridge.domain.identity import Grant
from bridge.telemetry.logs import event
from bridge.web import ahead
from bridge.web.common import (
    SECONDS_RE,
    allow_console_forms,
    audit_context,
    check_csrf,
    chosen_duration,
    current_session,
    granted,
    on_request,
    own_navigation,
    rate_limit,
    remember_use,
    requestable_grant,
    require_session,
    services,
    session_access,
    session_identity,
    session_passthrough,
    wants_json,
)

bp = Blueprint("console", __name__)


def _destination() -> str:
    return services().console.destination(request.values.get("destination"), request.values.get("region"))


@bp.post("/console/<grant_id>")
def console(grant_id: str) -> ResponseReturnValue:
    """Sign in to the AWS console as ``grant``: a 302 to the Action=login URL, or a SAML POST form."""
    session = require_session()
    check_csrf(session)
    grant = granted(session, grant_id)
    duration = chosen_duration(grant)
    destination = _destination()
    svc = services()
    identity = session_identity(session)
    rate_limit("credentials", f"{identity.issuer}\0{identity.subject}")  # a console sign-in is an issuance
    method = svc.console.method(grant)
    g.no_store = True
    if method == "saml_post":
        action, saml_response = svc.console.saml_post(identity, grant, duration, ctx=audit_context(session),
                                                      destination=destination)
        remember_use(identity, grant)
        event("console_signin", method=method, role_arn=grant.role_arn, rule=grant.via, duration=duration,
              destination=destination.split("?", 1)[0])
        allow_console_forms(action)  # the auto-POST to the AWS sign-in SAML endpoint
        return render_template("console_post.html", action=action, saml_response=saml_response,
                               relay_state=destination, grant=grant)
    url = svc.console.login_url(identity, grant, duration, destination, ctx=audit_context(session),
                                passthrough=session_passthrough() if grant.path == "passthrough" else None)
    remember_use(identity, grant)
    # Never log the URL: it carries a sign-in token that is good for 15 minutes.
    event("console_signin", method=method, role_arn=grant.role_arn, rule=grant.via, duration=duration,
          destination=destination.split("?", 1)[0])
    if wants_json():
        return jsonify(login_url=url)
    return redirect(url, code=302)


def _find(grants: list[Grant], account: str, role: str) -> Grant | None:
    for gr in grants:
        if account in (gr.account_id, gr.account_alias) and role in (gr.role_name,
                                                                     gr.role_arn.split(":role/", 1)[-1]):
            return gr
    return None


def _sign_in_first(here: str) -> ResponseReturnValue:
    """To the sign-in that comes back to ``here``: straight to the IdP when there is only one."""
    connectors = list(services().connectors)
    if len(connectors) == 1:
        return redirect(url_for("login.login", connector_id=connectors[0], return_to=here), code=302)
    return redirect(url_for("login.index", return_to=here), code=302)


@bp.route("/idp/sso", methods=["GET", "POST"])
def idp_sso() -> ResponseReturnValue:
    """The SingleSignOnService of our IdP metadata (bridge/aws/metadata.py): an IdP-initiated start.
    AWS never sends AuthnRequests here; a person who follows it lands on the portal, signed in first
    if needed (a console sign-in is then one click on a role)."""
    if current_session() is None:
        return _sign_in_first("/portal")
    return redirect(url_for("portal.portal"), code=303)


@bp.get("/go/<account>/<path:role>")
def go(account: str, role: str) -> ResponseReturnValue:
    """A bookmarkable console link: sign in if needed, then a form that POSTs to /console/<grant>."""
    destination = _destination()  # refuse a bad destination before anything else
    ahead.browser(prefs=True)
    session = current_session()
    if session is None:
        return _sign_in_first(request.full_path.rstrip("?"))
    grants, locked = session_access(session)
    grant = _find(grants, account, role)
    if grant is None:
        if _find(locked, account, role) is not None:
            raise MfaRequired(f"{role} in {account} requires MFA; the session has none",
                              message=f"The role {role} in account {account} needs a sign-in with "
                                      "multi-factor authentication.")
        if (asked := requestable_grant(session, lambda gr: _find([gr], account, role) is not None)) is not None:
            raise on_request(f"{role} in {account} is given on request", asked.id)
        raise NotGranted(f"no grant for role {role!r} in account {account!r}",
                         message=f"The role {role} in account {account} is not granted to you.")
    svc = services()
    fav = grant.id in ahead.preferences(session_identity(session))[1]
    if svc.console.method(grant) == "federation":  # the form's POST to /console is answered with a 302 to AWS
        allow_console_forms(svc.console.federation_endpoint())
    raw = request.args.get("duration", "")
    duration = int(raw) if SECONDS_RE.match(raw) and int(raw) in grant.allowed_durations() else grant.default_duration
    # Only the browser's own Sec-Fetch-Site may allow the auto-submit; a query parameter can only turn
    # it off (``auto=0``, after starring), never on, since a cross-site link controls the query.
    auto = own_navigation() and request.args.get("auto") != "0"
    g.no_store = True  # the page carries the CSRF token and differs by Sec-Fetch-Site
    resp = make_response(render_template(
        "console_go.html", grant=grant, csrf=session.csrf, destination=destination,
        raw_destination=request.args.get("destination", ""), region=request.args.get("region", ""),
        duration=duration, auto=auto, favourite=fav, return_to=request.full_path))
    resp.vary.add("Sec-Fetch-Site")
    return resp
