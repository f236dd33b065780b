"""Just-in-time access: requests for roles the rules give *on request* (README "Access requests").

The lifecycle, each step an ``access_request`` audit record whose correlation id is the request's id
(as is that of every issuance under it):

    requested ──approve──▶ approved (activated: window starts) ──▶ expired | revoked | ended
        │                      ▲
        ├──deny──▶ denied      └── break-glass: the requester alone, with a reason (approvers alerted)
        ├── (no decision within requests.pending_ttl) ──▶ expired
        └── withdrawn, offboarded ──▶ revoked; its rule changed ──▶ ended

What this module does NOT do is decide access: the decision point (``AccessPoint.decide``,
bridge/core/access.py) asks the ``RequestLedger`` (``active_for``) at each decision and turns the rules'
on-request grant into a usable one while an approved request of that exact account is within its window.
Who may approve is decided there too (``AccessPoint.may_approve``), re-checked at the moment of approval.
So the arrows run one way: ledger ← decision point ← ``AccessRequests`` (what people do with requests).

Expiry needs no timer: a request past its window is simply not active; the first look at it (a
decision, a page, ``bridge requests list``) records it as ``expired`` — once, through the store's
compare-and-set. No Flask here (bridge/web/requests.py is the web side).
"""

from __future__ import annotations

import logging
import secrets
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import replace
from typing import Any

from bridge import mapping
from bridge.config import RequestsSettings
from bridge.core.access import AccessPoint, own_policy, same_person
from bridge.core.notify import Notifier
from bridge.core.request_policy import RequestPolicyError, parse_request_policy
from bridge.core.sessions import exact_handle
from bridge.domain.errors import BadRequest, NotGranted
from bridge.domain.identity import Grant, Identity
from bridge.storage import AccessRequest, RequestStore
from bridge.telemetry import audit
from bridge.telemetry.audit import Auditor
from bridge.telemetry.logs import event

MIN_WINDOW = 900  # seconds: AWS's shortest credentials
MAX_REASON = 1000
MAX_COMMENT = 1000
ENDED = ("denied", "revoked", "expired", "ended")


class RequestNotFound(NotGranted):
    code = "request_unknown"
    status = 404
    title = "No such request"
    message = "That access request does not exist, or is no longer kept."
    hint = "Open the requests page again."


class RequestRefused(NotGranted):
    code = "request_refused"
    title = "Not allowed"
    message = "You cannot do this with that access request."
    hint = "Ask one of its approvers."
    show_detail = True


def clean_text(text: str | None, limit: int) -> str:
    """Free text from a form: control characters out, trimmed, bounded."""
    out = "".join(ch if ch.isprintable() else " " for ch in (text or ""))
    return out.strip()[:limit]


def request_json(r: AccessRequest) -> dict[str, Any]:
    """A request as the pages' JSON and `bridge requests list --json` show it."""
    return {"id": r.id, "status": r.status, "role_arn": r.role_arn, "account_id": r.account_id, "label": r.label,
            "rule": r.rule, "reason": r.reason, "duration": r.duration, "break_glass": r.break_glass,
            "requester": {"subject": r.requester.subject, "email": r.requester.email, "name": r.requester.name,
                          "connector": r.requester.connector_id},
            "created_at": r.created_at, "decided_at": r.decided_at, "decided_by": r.decided_by,
            "comment": r.comment, "activated_at": r.activated_at, "expires_at": r.expires_at,
            "ended_at": r.ended_at, "end_reason": r.end_reason, "policy": r.policy}



class RequestLedger:
    """The stored access requests and their lifecycle (expiry, ending, each step audited and notified): what the
    decision point asks (``ActiveRequests``). It decides nothing: ``AccessRequests`` asks the decision point."""

    def __init__(self, cfg: RequestsSettings, store: RequestStore, auditor: Auditor, *, approve_url: str,
                 notifier: Notifier | None = None, clock: Callable[[], float] = time.time) -> None:
        self.cfg = cfg
        self.store = store
        self.auditor = auditor
        self.approve_url = approve_url  # the approvers' page, linked from each notification
        self.notifier = notifier or Notifier(cfg)
        self.clock = clock

    def now(self) -> float:
        return self.clock()

    # -- what the decision point asks -----------------------------------------------------------
    def active_for(self, identity: Identity) -> list[AccessRequest]:
        """Approved requests of ``identity``'s exact account within their window (expired ones recorded)."""
        now = self.clock()
        return [r for r in self.refreshed(self.store.access_requests(exact_handle(identity))) if r.active(now)]

    def end(self, req: AccessRequest, why: str) -> None:
        """End a request the rules no longer back (audited once: compare-and-set)."""
        self.finish(req, "ended", why, by={"bridge": "rules"}, quiet_race=True)

    def sweep(self, outlived: Callable[[AccessRequest], str | None]) -> int:
        """End every pending or approved request that ``outlived`` (the decision point) says the rules in force
        no longer back: after a rules reload, nobody has to use a request for its approval to end."""
        n = 0
        for req in self.refreshed(self.store.access_requests()):
            if req.status in ("pending", "approved") and (why := outlived(req)) is not None:
                self.end(req, why)
                n += 1
        if n:
            event("requests_ended_by_rules", logging.WARNING, count=n)
        return n

    def end_for_user(self, user: str, *, by: str) -> list[AccessRequest]:
        """Offboarding (``bridge sessions revoke --user``): revoke every pending or approved request of
        ``user`` — an e-mail (ignoring case) or a subject, as sessions are found — each audited."""
        mail = user.lower() if "@" in user else None
        out = []
        for req in self.refreshed(self.store.access_requests()):
            r = req.requester
            if req.status in ("pending", "approved") and (
                    r.subject == user or (mail is not None and (r.email or "").lower() == mail)):
                out.append(self.finish(req, "revoked", f"offboarding ({by})", by={"operator": by}, quiet_race=True))
        return out

    # -- reads ------------------------------------------------------------------------------------
    def mine(self, identity: Identity) -> list[AccessRequest]:
        """The requests of ``identity``'s exact account, newest first."""
        return sorted(self.refreshed(self.store.access_requests(exact_handle(identity))),
                      key=lambda r: -r.created_at)

    def all(self, status: str | None = None) -> list[AccessRequest]:
        reqs = self.refreshed(self.store.access_requests())
        return [r for r in reqs if status is None or r.status == status]

    def get(self, request_id: str) -> AccessRequest:
        req = self.store.get_access_request(request_id) if 0 < len(request_id) <= 64 else None
        if req is None:
            raise RequestNotFound(f"request {request_id[:64]!r}")
        return self.refreshed([req])[0]

    # -- the lifecycle's steps (AccessRequests takes them too) -----------------------------------
    def ttl(self, req: AccessRequest) -> int:
        now = int(self.clock())
        if req.status == "pending":
            return self.cfg.pending_ttl + self.cfg.retention
        if req.status == "approved":
            return max(0, (req.expires_at or now) - now) + self.cfg.retention
        return self.cfg.retention

    def refreshed(self, reqs: Sequence[AccessRequest]) -> list[AccessRequest]:
        """``reqs`` with the ones whose time is up recorded as expired (once: compare-and-set)."""
        now = self.clock()
        out = []
        for req in reqs:
            if req.status == "approved" and req.expires_at is not None and now >= req.expires_at:
                req = self.finish(req, "expired", "its window ended", by={"bridge": "clock"}, quiet_race=True)
            elif req.status == "pending" and now >= req.created_at + self.cfg.pending_ttl:
                req = self.finish(req, "expired", "no decision in time", by={"bridge": "clock"}, quiet_race=True)
            out.append(req)
        return out

    def finish(self, req: AccessRequest, status: str, why: str, *, by: Mapping[str, Any],
               ctx: audit.Context | None = None, quiet_race: bool = False) -> AccessRequest:
        now = int(self.clock())
        ended_at = min(now, req.expires_at) if status == "expired" and req.expires_at else now
        new = replace(req, status=status, ended_at=ended_at, ended_by=dict(by), end_reason=why)  # type: ignore[arg-type]
        if not self.store.replace_access_request(new, expect=req.status, ttl=self.ttl(new)):
            latest = self.store.get_access_request(req.id)
            if quiet_race:
                return latest or new
            raise RequestRefused("changed meanwhile", message="This request changed meanwhile.",
                                 hint="Reload the page.")
        self.record(new, status, ctx or audit.Context(), by=by, end_reason=why)
        self.notify(new, status, by=by)
        return new

    def record(self, req: AccessRequest, what: str, ctx: audit.Context, **fields: Any) -> None:
        self.auditor.record("access_request", audit.Context(req.id, ctx.client_ip, ctx.user_agent), event=what,
                            request_id=req.id, who=audit.who(req.requester), role_arn=req.role_arn,
                            account_id=req.account_id, rule=req.rule, reason=req.reason, duration=req.duration,
                            status=req.status, break_glass=req.break_glass, expires_at=req.expires_at,
                            comment=req.comment or None, policy=req.policy,
                            session_correlation_id=ctx.correlation_id, **fields)

    def notify(self, req: AccessRequest, what: str, *, by: Mapping[str, Any]) -> None:
        self.notifier.send({
            "event": what, "request_id": req.id, "requester": audit.who(req.requester), "role_arn": req.role_arn,
            "account_id": req.account_id, "label": req.label, "rule": req.rule, "reason": req.reason,
            "duration": req.duration, "status": req.status, "break_glass": req.break_glass,
            "expires_at": req.expires_at, "comment": req.comment or req.end_reason,
            "narrower_policy": req.policy is not None,  # the policy itself is read on the approvers' page
            "by": by.get("email") or by.get("subject") or by.get("operator") or by.get("bridge"),
            "url": f"{self.approve_url}#r-{req.id}"})


class AccessRequests:
    """What requesters, approvers and operators do with access requests, each step re-asking the decision point
    (``access``) and kept in the ``ledger`` — the one the decision point itself asks for active requests."""

    def __init__(self, ledger: RequestLedger, access: AccessPoint) -> None:
        self.ledger = ledger
        self.access = access

    # -- the ledger's reads, as the pages and `bridge requests` ask them -------------------------
    @property
    def notifier(self) -> Notifier:
        return self.ledger.notifier

    def mine(self, identity: Identity) -> list[AccessRequest]:
        return self.ledger.mine(identity)

    def all(self, status: str | None = None) -> list[AccessRequest]:
        return self.ledger.all(status)

    def get(self, request_id: str) -> AccessRequest:
        return self.ledger.get(request_id)

    def end_for_user(self, user: str, *, by: str) -> list[AccessRequest]:
        return self.ledger.end_for_user(user, by=by)

    # -- the requester ----------------------------------------------------------------------------
    def requestable(self, identity: Identity) -> list[mapping.Requestable]:
        return self.access.requestable(identity)

    def create(self, identity: Identity, grant_id: str, *, reason: str, duration: int, break_glass: bool = False,
               session_policy: str | None = None, ctx: audit.Context | None = None) -> AccessRequest:
        """Request the on-request role ``grant_id`` for ``duration`` seconds; with ``break_glass`` (when
        its rule allows it) it is activated at once, with a reason, and the approvers are alerted. With
        ``session_policy`` (IAM policy JSON) the role is asked for narrowed by it: checked here, the grant the
        approval activates carries exactly it."""
        ctx = ctx or audit.Context()
        rq = next((r for r in self.requestable(identity) if r.grant.id == grant_id), None)
        if rq is None:
            raise NotGranted(f"grant {grant_id[:32]!r} is not given on request to this identity now",
                             message="That role is not one you can request.",
                             hint="Reload the portal: the roles you can request are listed there.")
        policy = rq.policy
        reason = clean_text(reason, MAX_REASON)
        if (policy.reason_required or break_glass) and not reason:
            raise BadRequest("a reason is required", code="reason_required",
                             message="Say why you need this role.", hint="Give a reason (a ticket, an incident).")
        if not MIN_WINDOW <= duration <= policy.max_duration:
            raise BadRequest(f"duration {duration}s outside {MIN_WINDOW}..{policy.max_duration}",
                             code="invalid_duration",
                             message=f"Ask for between {MIN_WINDOW // 60} and {policy.max_duration // 60} minutes.")
        if break_glass and not policy.break_glass:
            raise RequestRefused(f"rule {rq.grant.via!r} allows no break-glass",
                                 message="This role cannot be activated without an approver.")
        ledger = self.ledger
        narrowed = self._session_policy(rq.grant, session_policy)
        account = exact_handle(identity)
        now = int(ledger.now())
        open_ = [r for r in ledger.refreshed(ledger.store.access_requests(account))
                 if r.role_arn == rq.grant.role_arn and r.status in ("pending", "approved")]
        if open_:
            raise BadRequest(f"request {open_[0].id} is already {open_[0].status}", code="request_exists",
                             message=f"You already have a {open_[0].status} request for this role.",
                             hint="See it on your requests page; revoke it to ask again.")
        req = AccessRequest(id=secrets.token_hex(12), account=account, requester=identity, role_arn=rq.grant.role_arn,
                            account_id=rq.grant.account_id, label=rq.grant.label, rule=rq.grant.via, reason=reason,
                            duration=duration, status="pending", created_at=now, break_glass=break_glass,
                            policy=narrowed)
        if break_glass:
            req = replace(req, status="approved", decided_at=now, decided_by=audit.who(identity),
                          activated_at=now, expires_at=now + duration, comment="break-glass")
        ledger.store.put_access_request(req, ledger.ttl(req))
        ledger.record(req, "requested", ctx, by=audit.who(identity))
        if break_glass:
            ledger.record(req, "activated", ctx, by=audit.who(identity))
            event("break_glass", logging.WARNING, request_id=req.id, role_arn=req.role_arn, rule=req.rule)
        ledger.notify(req, "break_glass" if break_glass else "requested", by=audit.who(identity))
        return req

    # -- approvers ------------------------------------------------------------------------------
    def for_approver(self, approver: Identity) -> list[AccessRequest]:
        """Pending and active requests ``approver`` may decide or revoke now (never their own), newest first."""
        out = []
        for req in self.ledger.refreshed(self.ledger.store.access_requests()):
            if req.status in ("pending", "approved") and self.refusal(approver, req) is None:
                out.append(req)
        return sorted(out, key=lambda r: -r.created_at)

    def refusal(self, approver: Identity, req: AccessRequest) -> str | None:
        """Why ``approver`` may not decide ``req`` now (None: they may) — the decision point's answer."""
        return self.access.may_approve(approver, req.requester, req.role_arn)

    def decide(self, approver: Identity, request_id: str, *, approve: bool, comment: str = "",
               ctx: audit.Context | None = None) -> AccessRequest:
        """Approve (the window starts now) or deny a pending request; the approver is re-checked now."""
        ctx = ctx or audit.Context()
        req = self.get(request_id)
        if (why := self.refusal(approver, req)) is not None:
            self.ledger.record(req, "refused", ctx, by=audit.who(approver), refused=why,
                               action="approve" if approve else "deny")
            raise RequestRefused(why, message=f"You cannot decide this request: {why}.")
        req = self._backed(req)
        return self._decide(req, approve, clean_text(comment, MAX_COMMENT), audit.who(approver), ctx)

    def operator_decide(self, request_id: str, *, approve: bool, comment: str, operator: str) -> AccessRequest:
        """``bridge requests approve|deny``: an operator with the bridge's config decides (audited as such).
        The rules must still give the role on request."""
        req = self._backed(self.get(request_id))
        if approve and self.access.request_policy(req.requester, req.role_arn) is None:
            raise RequestRefused("the rules no longer give this role on request",
                                 message="The rules no longer give this role on request.")
        return self._decide(req, approve, clean_text(comment, MAX_COMMENT), {"operator": operator},
                            audit.Context())

    def _decide(self, req: AccessRequest, approve: bool, comment: str, by: Mapping[str, Any],
                ctx: audit.Context) -> AccessRequest:
        if req.status != "pending":
            raise RequestRefused(f"request is {req.status}", message=f"This request is already {req.status}.")
        ledger = self.ledger
        now = int(ledger.now())
        new = replace(req, status="approved" if approve else "denied", decided_at=now, decided_by=dict(by),
                      comment=comment)
        if approve:
            new = replace(new, activated_at=now, expires_at=now + req.duration)
        if not ledger.store.replace_access_request(new, expect="pending", ttl=ledger.ttl(new)):
            raise RequestRefused("decided meanwhile", message="Someone else decided this request meanwhile.",
                                 hint="Reload the page.")
        ledger.record(new, "approved" if approve else "denied", ctx, by=by)
        if approve:
            ledger.record(new, "activated", ctx, by=by)
        ledger.notify(new, "approved" if approve else "denied", by=by)
        return new

    def revoke(self, actor: Identity | None, request_id: str, *, comment: str = "", operator: str | None = None,
               ctx: audit.Context | None = None) -> AccessRequest:
        """End a pending or active request early: by its requester, by an approver who matches now, or by an
        operator (``bridge requests revoke``)."""
        req = self.get(request_id)
        if actor is not None:
            mine = same_person(actor, req.requester) and exact_handle(actor) == req.account
            if not mine and (why := self.refusal(actor, req)) is not None:
                raise RequestRefused(why, message=f"You cannot revoke this request: {why}.")
            by: dict[str, Any] = audit.who(actor)
        else:
            by = {"operator": operator or "operator"}
        if req.status not in ("pending", "approved"):
            raise RequestRefused(f"request is {req.status}", message=f"This request is already {req.status}.")
        return self.ledger.finish(req, "revoked", clean_text(comment, MAX_COMMENT), by=by, ctx=ctx)

    # -- internals ----------------------------------------------------------------------------------
    @staticmethod
    def _session_policy(grant: Grant, text: str | None) -> str | None:
        """The requester's narrower policy, checked (None when none was given); BadRequest listing every problem."""
        if text is None or not text.strip():
            return None
        if (why := own_policy(grant)) is not None:
            raise BadRequest(why, code="request_policy_refused",
                             message="This role cannot be asked for with a narrower policy: its rule already "
                                     "sends its own session policy, and AWS does not combine several.",
                             hint="Ask without a policy, or ask an administrator to narrow the rule.")
        try:
            return parse_request_policy(text.strip())
        except RequestPolicyError as e:
            raise BadRequest("; ".join(e.problems), code="invalid_request_policy",
                             message="The policy cannot be used: " + "; ".join(e.problems) + ".",
                             hint="Fix the policy JSON, or leave it out to ask for the whole role.") from None

    def _backed(self, req: AccessRequest) -> AccessRequest:
        """``req``, if the rules in force still back it as it stands; otherwise it is ended now and refused
        (a stricter rule: a pending request for longer than it now allows is never approved for that long)."""
        if req.status in ("pending", "approved") and (why := self.access.outlived(req)) is not None:
            self.ledger.end(req, why)
            raise RequestRefused(why, message=f"This request can no longer be decided: {why}.",
                                 hint="The requester may ask again, as the rule now allows.")
        return req
