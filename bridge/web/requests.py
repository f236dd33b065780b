"""Access requests in the browser (README "Access requests"): the requester's page (the roles they may
request, their requests, revoke) and the approvers' page (pending requests they may decide now, active
ones they may revoke). Every decision is made by bridge/core/access_requests.py and the decision point;
this module turns forms into calls. JSON with ``Accept: application/json`` (and for CLI tokens under
``/api/v1/requests``)."""

from __future__ import annotations

from typing import Any

from flask import Blueprint, jsonify, redirect, render_template, request
from flask.typing import ResponseReturnValue

from bridge.core.access import own_policy
from bridge.core.access_requests import AccessRequests, request_json
from bridge.core.request_policy import pretty
from bridge.domain import present
from bridge.domain.errors import BadRequest
from bridge.domain.identity import Identity, grant_id_for
from bridge.mapping import Requestable
from bridge.storage import AccessRequest
from bridge.web.common import (
    audit_context,
    check_csrf,
    parse_seconds,
    rate_limit,
    require_session,
    services,
    session_identity,
    wants_json,
)

bp = Blueprint("requests", __name__)


def _requests() -> AccessRequests:
    return services().requests


def requestable_json(rq: Requestable) -> dict[str, Any]:
    return {**present.request_offer(rq.grant, max_window=rq.policy.max_duration,
                                    reason_required=rq.policy.reason_required, break_glass=rq.policy.break_glass),
            "narrowable": own_policy(rq.grant) is None}


def windows(max_window: int) -> list[int]:
    steps = [900, 1800, 3600, 7200, 14400, 28800, 43200]
    return sorted({*(s for s in steps if s <= max_window), max_window})


def _done(where: str, req: AccessRequest | None = None) -> ResponseReturnValue:
    if wants_json():
        return jsonify(request=request_json(req) if req else None)
    return redirect(where, code=303)


@bp.get("/requests")
def mine() -> ResponseReturnValue:
    """The roles this user may request, and their requests (newest first)."""
    session = require_session()
    identity = session_identity(session)
    reqs = _requests()
    if wants_json():
        return jsonify(requestable=[requestable_json(r) for r in reqs.requestable(identity)],
                       requests=[request_json(r) for r in reqs.mine(identity)], csrf_token=session.csrf)
    return _mine_page(session, identity, chosen=request.args.get("role", ""))


def _mine_page(session: Any, identity: Identity, *, chosen: str = "", already: AccessRequest | None = None,
               status: int = 200) -> ResponseReturnValue:
    """The requester's page. A role with a pending request shows that request, not a second form
    (``pending``: grant id → request); ``already``: the request a refused duplicate ran into."""
    reqs = _requests()
    mine = reqs.mine(identity)
    pending = {grant_id_for(r.role_arn): r for r in mine if r.status == "pending"}
    return render_template("requests.html", identity=identity, requestable=reqs.requestable(identity), requests=mine,
                           csrf=session.csrf, windows=windows, chosen=chosen, pending=pending, already=already,
                           narrowable=lambda g: own_policy(g) is None, pretty=pretty,
                           approver=bool(reqs.for_approver(identity))), status


@bp.post("/requests")
def create() -> ResponseReturnValue:
    """Request a role (``grant``, ``reason``, ``duration`` in seconds, ``break_glass``, ``policy``: an IAM policy
    JSON narrowing the role, optional)."""
    session = require_session()
    check_csrf(session)
    identity = session_identity(session)
    # Each request notifies every webhook (asked, then decided and ended once each): bounding how many are
    # asked bounds every notification, so nobody floods the approvers' chat by asking and withdrawing.
    rate_limit("requests", f"{identity.issuer}\0{identity.subject}")
    duration = parse_seconds(request.form.get("duration") or "3600", "duration")
    grant_id = request.form.get("grant", "")
    try:
        req = _requests().create(identity, grant_id, reason=request.form.get("reason", ""),
                                 duration=duration, break_glass=bool(request.form.get("break_glass")),
                                 session_policy=request.form.get("policy"), ctx=audit_context(session))
    except BadRequest as e:
        if e.code != "request_exists" or wants_json():
            raise
        # A second tab, or Back and Request again: the page with the request already made, saying so
        # (409, nothing created), rather than an error page.
        open_ = [r for r in _requests().mine(identity) if grant_id_for(r.role_arn) == grant_id
                 and r.status in ("pending", "approved")]
        return _mine_page(session, identity, already=open_[0] if open_ else None, status=409)
    return _done(f"/requests#r-{req.id}", req)


@bp.get("/requests/approve")
def approve_page() -> ResponseReturnValue:
    """Requests this user may decide (pending) or revoke (active) now — never their own."""
    session = require_session()
    identity = session_identity(session)
    todo = _requests().for_approver(identity)
    if wants_json():
        return jsonify(requests=[request_json(r) for r in todo], csrf_token=session.csrf)
    return render_template("requests_approve.html", identity=identity, requests=todo, csrf=session.csrf, pretty=pretty)


def _act(request_id: str, action: str, identity: Identity, session: Any) -> AccessRequest:
    reqs = _requests()
    comment = request.form.get("comment", "")
    if action == "revoke":
        return reqs.revoke(identity, request_id, comment=comment, ctx=audit_context(session))
    return reqs.decide(identity, request_id, approve=action == "approve", comment=comment, ctx=audit_context(session))


@bp.post("/requests/<request_id>/<any(approve, deny, revoke):action>")
def act(request_id: str, action: str) -> ResponseReturnValue:
    """Approve or deny (approvers), or revoke (the requester, or an approver) a request."""
    session = require_session()
    check_csrf(session)
    identity = session_identity(session)
    req = _act(request_id, action, identity, session)
    back = request.form.get("back")
    return _done("/requests/approve" if back == "approve" else "/requests", req)
