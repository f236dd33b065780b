"""The portal (roles the rules grant), the credentials page, and why: the user's own explanation
and the admins' explain-any-identity page."""

from __future__ import annotations

import json
import weakref
from collections.abc import Callable
from typing import Any
from urllib.parse import quote

from flask import Blueprint, abort, current_app, g, jsonify, make_response, redirect, render_template, request, url_for
from flask.typing import ResponseReturnValue

from bridge import mapping
from bridge.aws import formats
from bridge.core import credview
from bridge.core.flow import safe_return_to
from bridge.core.stepup import mfa_age
from bridge.domain import present
from bridge.domain.errors import AdminOnly, BadRequest, BridgeError
from bridge.domain.identity import SAMPLE_SHAPE, Credentials, Grant, Identity, grant_id_for, identity_from_sample
from bridge.storage import SessionRecord
from bridge.telemetry.logs import event
from bridge.web import ahead, portal_html
from bridge.web.common import (
    SECONDS_RE,
    audit_context,
    check_csrf,
    chosen_duration,
    granted,
    own_navigation,
    passthrough_left,
    passthrough_spent,
    rate_limit,
    remember_use,
    require_session,
    services,
    session_access,
    session_hash,
    session_id,
    session_identity,
    session_passthrough,
    user_key,
    wants_json,
)

bp = Blueprint("portal", __name__)
WHY_UNMATCHED_SHOWN = 200  # rules that did not match, listed on the page (all of them in JSON)


@bp.get("/portal")
def portal() -> ResponseReturnValue:
    """Accounts and the roles this user holds in each (and those an MFA sign-in would add)."""
    ahead.browser(prefs=True)
    session = require_session()
    grants, locked = session_access(session)
    grants = _in_order(grants)
    identity = session_identity(session)
    svc = services()
    recent_ids, fav_ids = ahead.preferences(identity)
    # Roles given on request (README "Access requests"): shown with "Request", used once approved.
    requestable = [r.grant for r in svc.access.requestable(identity)] if session.passthrough_grants is None else []
    if wants_json():
        method = svc.console.method
        age = mfa_age(identity, int(svc.sessions.clock()))
        return jsonify(identity={"email": identity.email, "name": identity.name, "mfa": identity.mfa,
                                 "connector": identity.connector_id},
                       **({} if age is None else {"mfa_age": age}),  # seconds since the MFA sign-in
                       grants=[present.portal_grant(gr, method(gr)) for gr in grants],
                       locked=[present.portal_grant(gr, method(gr)) for gr in locked],
                       recent=[i for i in recent_ids if any(gr.id == i for gr in grants)],
                       favourites=sorted(fav_ids), csrf_token=session.csrf, expires_at=session.expires_at,
                       passthrough=_passthrough_json(session),
                       requestable=[present.portal_offer(gr, method(gr)) for gr in requestable])
    by_id = {gr.id: gr for gr in grants}
    recent = [by_id[i] for i in recent_ids if i in by_id]
    favourites = [gr for gr in grants if gr.id in fav_ids]
    accounts = _accounts(grants)
    connector = svc.connectors.get(identity.connector_id)
    ends, narrowed, pending, waiting = _request_state(identity, grants)
    cards = portal_html.account_cards(accounts, fav_ids, ends, lazy=len(grants) > portal_html.INLINE_ROWS,
                                      open_id=request.args.get("open", ""), narrowed=narrowed)
    return render_template("portal.html", identity=identity, accounts=cards if accounts else None, locked=locked,
                           mfa_age=mfa_age(identity, int(svc.sessions.clock())),
                           csrf=session.csrf, expires_at=session.expires_at, is_admin=_is_admin(identity),
                           recent=recent, favourites=favourites, fav_ids=fav_ids, total=len(grants), waiting=waiting,
                           pending=pending,
                           rows=lambda quick: portal_html.rows_html(quick, fav_ids, True, ends, narrowed),
                           base_url=svc.settings.base_url, passthrough=_passthrough_json(session),
                           idp_name=getattr(connector, "name", "") or identity.connector_id,
                           support=svc.settings.support_href, requestable=requestable)


@bp.get("/portal/rows")
def rows() -> ResponseReturnValue:
    """The role rows of one account (``?account=<id>``) or of all, for the portal's script to put into
    collapsed account cards when they are opened or the filter needs them (bridge/web/portal_html.py)."""
    session = require_session()
    grants = session_access(session)[0]
    if wanted := request.args.get("account"):
        grants = [gr for gr in grants if gr.account_id == wanted]
    identity = session_identity(session)
    fav_ids = services().store.preferences(user_key(identity))[1]
    ends, narrowed = _request_state(identity, grants)[:2]
    resp = make_response(portal_html.account_rows(_accounts(_in_order(grants)), fav_ids, ends, narrowed))
    resp.mimetype = "text/html"
    return resp


def _in_order(grants: list[Grant]) -> list[Grant]:
    """By account id, an account's roles in the order people read them: by label, then ARN. (Grouped
    first, then each account's few roles sorted: a fifth of the comparisons of one sort of 5,000.)"""
    groups: dict[str, list[Grant]] = {}
    for gr in grants:
        groups.setdefault(gr.account_id, []).append(gr)
    out: list[Grant] = []
    for account_id in sorted(groups):
        roles = groups[account_id]
        if len(roles) > 1:
            roles.sort(key=lambda gr: (gr.label.lower(), gr.role_arn))
        out += roles
    return out


def _accounts(grants: list[Grant]) -> list[tuple[str, list[Grant]]]:
    """``grants`` by account, the accounts in the order people read them: by the name shown, then the id."""
    groups: dict[str, list[Grant]] = {}
    for gr in grants:
        groups.setdefault(gr.account_id, []).append(gr)
    return sorted(groups.items(), key=lambda a: (present.account_name(a[1][0]).lower(), a[0]))


def _request_state(identity: Identity, grants: list[Grant]) -> tuple[dict[str, int], set[str], dict[str, int], int]:
    """What the portal shows of access requests: request id → when its window ends (roles held by an
    approved request are not permanent: the row says until when); the ids of those that narrow the role
    with the requester's own session policy; grant id → when its pending request
    was made (the role shows that, not "Request" again); how many pending requests this user may
    decide now (approvers)."""
    reqs = services().requests
    mine = reqs.mine(identity)
    held = {gr.request_id for gr in grants if gr.request_id}
    ends = {r.id: int(r.expires_at or 0) for r in mine if r.id in held}
    narrowed = {r.id for r in mine if r.id in held and r.policy is not None}
    pending = {grant_id_for(r.role_arn): r.created_at for r in mine if r.status == "pending"}
    return ends, narrowed, pending, sum(r.status == "pending" for r in reqs.for_approver(identity))


def _passthrough_json(session: SessionRecord) -> dict[str, Any] | None:
    """A pass-through sign-in: how long AWS still takes the IdP's artifact, and the roles it asserted
    that are not offered, with why (what to fix at the identity provider)."""
    info = session.passthrough
    if info is None:
        return None
    return {"kind": info.kind, "until": info.until, "seconds_left": passthrough_left(session),
            "spent": passthrough_spent(session), "warnings": list(info.warnings),
            "not_offered": [{"role_arn": r, "code": c, "reason": why} for r, c, why in info.not_offered]}


@bp.post("/portal/favourite/<grant_id>")
def favourite(grant_id: str) -> ResponseReturnValue:
    """Star or unstar a role (JSON for the portal's script; a redirect back for plain forms)."""
    session = require_session()
    check_csrf(session)
    grant = granted(session, grant_id)
    on = services().store.toggle_favourite(user_key(session_identity(session)), grant.id)
    if wants_json() or request.headers.get("X-CSRF-Token"):
        return jsonify(favourite=on)
    return redirect(safe_return_to(request.form.get("return_to")), code=303)


def _is_admin(identity: Identity) -> bool:
    return services().access.is_admin(identity)


def _why_page(results: list[mapping.RuleResult], identity: Identity, **extra: Any) -> ResponseReturnValue:
    matched = [r for r in results if r.matched]
    unmatched = [r for r in results if not r.matched]
    grants = [gr for r in results for gr in r.grants]
    # Roles an approved request activates now (the rules alone list them as "on request"): held too.
    grants += [gr for gr in services().access.decide(identity).grants if gr.request_id]
    # A rule may withhold a role that another rule, or an approved request, gives: that role is not "held
    # back" — the page says how it is held instead.
    held = {gr.role_arn: "by an approved access request" if gr.request_id else f"rule {gr.via!r} gives it"
            for gr in reversed(grants)}
    return render_template("why.html", identity=identity, matched=matched, unmatched=unmatched[:WHY_UNMATCHED_SHOWN],
                           unmatched_total=len(unmatched), total=len(results), grants=grants, held=held,
                           withheld=[(r.rule, w) for r in results for w in r.withheld], **extra)


@bp.get("/portal/why")
def why() -> ResponseReturnValue:
    """Why the signed-in user has the roles they have: every rule, matched or not, and why."""
    session = require_session()
    identity = session_identity(session)
    results = services().access.explain(identity)
    if wants_json():
        return jsonify({**mapping.report(results, identity), "idp_warnings": list(identity.warnings)})
    return _why_page(results, identity, admin=False, csrf=session.csrf, is_admin=_is_admin(identity),
                     idp_warnings=identity.warnings)


@bp.route("/admin/explain", methods=["GET", "POST"])
def admin_explain() -> ResponseReturnValue:
    """Admins: explain the rules for any sample identity pasted as JSON."""
    session = require_session()
    me = session_identity(session)
    svc = services()
    if not svc.settings.admin.groups:
        abort(404, description="The admin pages are off (admin.groups is empty).")
    if not _is_admin(me):
        raise AdminOnly(f"{me.subject} is not in admin.groups, signed in without MFA (admin.require_mfa), "
                        "or is denied by a deny: all rule")
    if request.method == "GET":
        sample = json.dumps({"connector": me.connector_id, "subject": "sample-user", "email": "sample@example.com",
                             "groups": [], "claims": {}, "mfa": False}, indent=2)
        return render_template("why.html", admin=True, csrf=session.csrf, sample=sample, identity=None,
                               is_admin=True, shape=SAMPLE_SHAPE)
    check_csrf(session)
    if request.is_json:
        body = request.get_json(silent=True)
        raw = body.get("identity", body) if isinstance(body, dict) else body
        text = json.dumps(raw, indent=2)
    else:
        text = request.form.get("identity", "")
        try:
            raw = json.loads(text)
        except ValueError as e:
            raise BadRequest(f"the identity is not JSON: {e}", code="bad_identity",
                             message="The sample identity could not be read.",
                             hint=f"Paste a JSON object like {SAMPLE_SHAPE}.") from None
    try:
        sample_identity = identity_from_sample(raw)
    except ValueError as e:
        raise BadRequest(f"not an identity document: {e}", code="bad_identity",
                         message="The sample identity could not be read.",
                         hint=f"Paste a JSON object like {SAMPLE_SHAPE}.") from None
    results = svc.access.explain(sample_identity)
    grants = [gr for r in results for gr in r.grants]
    event("admin_explain", admin=me.subject, connector=sample_identity.connector_id,
          rules_matched=sum(r.matched for r in results), grants=len(grants))
    if wants_json():
        return jsonify(mapping.report(results, sample_identity))
    return _why_page(results, sample_identity, admin=True, csrf=session.csrf, sample=text, is_admin=True,
                     shape=SAMPLE_SHAPE)


@bp.get("/credentials/<grant_id>")
def credentials_start(grant_id: str) -> ResponseReturnValue:
    """A link to fresh credentials (the portal's Credentials link, a bookmark, a new tab): a form that
    POSTs to /credentials/<grant>, sent at once on a click on the bridge's own pages (like /go)."""
    session = require_session()
    grant = granted(session, grant_id)
    raw = request.args.get("duration", "")
    duration = int(raw) if SECONDS_RE.match(raw) and int(raw) in grant.allowed_durations() else grant.default_duration
    g.no_store = True  # carries the CSRF token and differs by Sec-Fetch-Site
    resp = make_response(render_template("credentials_go.html", grant=grant, csrf=session.csrf, duration=duration,
                                         auto=own_navigation() and request.args.get("auto") != "0"))
    resp.vary.add("Sec-Fetch-Site")
    return resp


@bp.post("/credentials/<grant_id>")
def credentials(grant_id: str) -> ResponseReturnValue:
    """Assume the granted role. JSON with Accept: application/json; a browser is sent on (303) to the
    GET-able page of this issuance, /credentials/view/<id> (bridge/core/credview.py)."""
    ahead.browser(kind="credentials", pick=lambda session: _asked(session, grant_id))
    session = require_session()
    check_csrf(session)
    grant = granted(session, grant_id)
    duration = chosen_duration(grant)
    svc = services()
    identity = session_identity(session)
    rate_limit("credentials", f"{identity.issuer}\0{identity.subject}")
    creds = svc.issuer.issue_credentials(identity, grant, duration, ctx=audit_context(session), sealed=ahead.sealed(),
                                         passthrough=session_passthrough() if grant.path == "passthrough" else None)
    remember_use(identity, grant)
    g.no_store = True
    if wants_json():  # encoded once per credentials object (the cache hands the same one again while it lives)
        body = _API_BODIES.get(creds)
        if body is None:
            body = _API_BODIES[creds] = jsonify(formats.api_json(creds)).get_data()
        return current_app.response_class(body, mimetype="application/json")
    sid = session_id()
    view_id = credview.keep(svc.store, sid, grant.id, duration, creds, session_expires_at=float(session.expires_at))
    profile = request.form.get("profile", "")
    to = url_for("portal.credentials_view", view_id=view_id)
    if profile and formats.PROFILE_RE.match(profile):  # not a secret: a name for the ~/.aws/credentials section
        to += f"?profile={quote(profile, safe='')}"
    return redirect(to, code=303)


# Weakly: a body (plaintext secret keys) lives no longer than its credentials object, which the cache drops at
# sign-out and when it is full.
_API_BODIES: weakref.WeakKeyDictionary[Credentials, bytes] = weakref.WeakKeyDictionary()


def _asked(session: SessionRecord, grant_id: str) -> tuple[Grant, int]:
    grant = granted(session, grant_id)
    return grant, chosen_duration(grant)


@bp.get("/credentials/view/<view_id>")
def credentials_view(view_id: str) -> ResponseReturnValue:
    """One issuance's credentials, every format; once expired, no secrets and a Refresh button."""
    session = require_session()
    svc = services()
    g.no_store = True
    view = credview.load(svc.store, request.cookies.get(svc.settings.session_cookie, ""), view_id)
    if view is None:
        raise BridgeError(f"no credentials view {view_id[:24]!r} in this session", code="not_found", status=404,
                          title="These credentials are not here",
                          message="This credentials page has expired, belongs to another sign-in, or never existed.",
                          hint="Open the role's Credentials again from your roles.")
    grant = granted(session, view.grant_id)
    creds = view.creds
    expired = creds.expiration.timestamp() <= credview.now()
    profile = request.args.get("profile") or formats.default_profile_name(creds)
    if not formats.PROFILE_RE.match(profile):
        profile = formats.default_profile_name(creds)
    tabs = [] if expired else [
        ("env", "bash / zsh", formats.env_exports(creds), "aws-env.sh"),
        ("fish", "fish", formats.fish_exports(creds), "aws-env.fish"),
        ("powershell", "PowerShell", formats.powershell_exports(creds), "aws-env.ps1"),
        ("cmd", "Windows cmd", _or_note(formats.cmd_exports, creds), "aws-env.cmd"),
        ("ini", "~/.aws/credentials", formats.credentials_file(creds, profile), "credentials"),
        ("dotenv", ".env (docker --env-file)", _or_note(formats.dotenv, creds), "aws.env"),
        ("process", "credential_process JSON", formats.credential_process_json(creds), "credentials.json"),
        ("config", "~/.aws/config (no keys on disk)",
         formats.config_snippet(profile, svc.settings.base_url, grant.role_arn, creds.region), "config")]
    return render_template(
        "credentials.html", grant=grant, creds=creds, tabs=tabs, profile=profile, csrf=session.csrf,
        duration=view.duration, expired=expired, view_id=view_id,
        sts_endpoint=svc.settings.aws.sts_endpoint_url,
        boto3="" if expired else formats.boto3_snippet(creds, svc.settings.aws.sts_endpoint_url))


def _or_note(fmt: Callable[[Credentials], str], creds: Credentials) -> str:
    try:
        return fmt(creds)
    except ValueError as e:
        return f"# not available for these credentials: {e}\n"


@bp.get("/portal/sign-ins")
def sign_ins() -> ResponseReturnValue:
    """The user's active sign-ins: browser sessions and the CLI logins each approved, with Revoke."""
    session = require_session()
    svc = services()
    identity = session_identity(session)
    here = session_hash()
    rows = []
    for shash, sdoc in svc.sessions.of_identity(identity):  # this exact account, never by e-mail
        tokens = svc.device.tokens_of(shash)
        rows.append({"id": shash[:16], "current": shash == here, "created_at": sdoc.created_at,
                     "expires_at": sdoc.expires_at,
                     "tokens": [{"id": th[:16], "client_id": t.client_id, "created_at": t.created_at,
                                 "expires_at": t.expires_at, "client_ip": t.client_ip,
                                 "user_agent": t.user_agent} for th, t in tokens]})
    if wants_json():
        return jsonify(sessions=rows)
    return render_template("sign_ins.html", identity=identity, sessions=rows, csrf=session.csrf)


@bp.post("/portal/sign-ins/revoke")
def revoke_sign_in() -> ResponseReturnValue:
    """Revoke one of the user's CLI logins (``token``) or browser sessions (``session``), or all others."""
    session = require_session()
    check_csrf(session)
    svc = services()
    identity = session_identity(session)
    mine = svc.sessions.of_identity(identity)
    here = session_hash()
    token_id, session_id = request.form.get("token", ""), request.form.get("session", "")
    done = 0
    for shash, sdoc in mine:
        chosen = len(session_id) == 16 and shash.startswith(session_id)
        if shash != here and (request.form.get("all_others") or chosen):
            svc.sessions.end(shash, sdoc)
            done += 1
        elif token_id and len(token_id) == 16:
            for th, _ in svc.device.tokens_of(shash):
                if th.startswith(token_id) and svc.device.revoke_hash(shash, th):
                    done += 1
    if not done:
        raise BadRequest("nothing to revoke", code="revoke_unknown",
                         message="That sign-in is not one of yours, or has already ended.",
                         hint="Reload the page to see your current sign-ins.")
    event("sign_in_revoked", count=done, kind="token" if token_id else "session")
    if wants_json():
        return jsonify(revoked=done)
    return redirect("/portal/sign-ins", code=303)
