"""THE decision point: ``AccessPoint.decide(identity)`` says what the rules in force give an
identity now. Every issuance (portal, credentials, console, API, device approval, admin rights)
asks here at the moment of use; sessions and CLI tokens keep the identity, never grants.

Seam: ``decide`` → ``Decision`` (usable grants, MFA-locked grants, grants given on request,
rules version, ``deny: all``, and what each rule did), ``record`` (at sign-in: the decision's log
lines and audit records), ``is_admin``, ``explain``. Deciding writes nothing down: decisions are
memoised per (rules version, identity), bounded by the grants they hold; a rules reload changes the
version, so nothing stale is served.

Access requests (README "Access requests"): a grant the rules give *on request* is ``requestable``.
For an identity that has any, the decision point asks ``requests`` (bridge/core/access_requests.py) for the
approved requests of this exact account (connector, issuer, subject) that are within their window,
at each decision — never memoised, never stored in a session — and such a request turns the rules'
grant into a usable one (``Grant.request_id`` set; its durations end with the window). The rules
still decide: a request whose rule no longer offers its role on request, or no longer allows it as it stands
(a window past its ``max_duration``, a break-glass one without ``break_glass``: ``outlived``), activates
nothing and is ended —
at the next decision that finds it, and for every live request after each rules reload (and under rules
a process has not checked the requests against yet), so an approval never returns with its rule.
No I/O here beyond the rules book, that lookup and the audit records ``record`` writes.
"""

from __future__ import annotations

import hashlib
import json
import logging
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Protocol

from bridge import mapping
from bridge.aws.upstream_check import UpstreamCheck
from bridge.config import AdminSettings, Settings, reload_mapping, rules_file_path
from bridge.core.rulebook import RuleBook
from bridge.domain.identity import Grant, Identity
from bridge.domain.memo import ByObject
from bridge.mapping import gcpause
from bridge.mapping.gcpause import gc_paused
from bridge.mapping.paths import View
from bridge.mapping.ruleset import RequestPolicy
from bridge.storage.records import AccessRequest
from bridge.telemetry import audit
from bridge.telemetry.audit import Auditor
from bridge.telemetry.logs import event
from bridge.upstream import Connector
from bridge.upstream.base import NO_POLICY, ConnectorPolicy

PASSTHROUGH_VERSION = "aws_passthrough"  # sessions whose roles came from the IdP, not from rules
RULE_CHANGED = "its rule changed: the rules no longer give this role on request"  # an access request's end


def own_policy(grant: Grant) -> str | None:
    """Why a request's narrower policy cannot go with ``grant`` (None: it can): AWS takes one inline session
    policy and intersects the managed ones with it, so the rule's own and the request's would not both narrow."""
    if grant.policy is not None or grant.policy_arns:
        return f"rule {grant.via!r} gives this role with its own session policy; a request's narrower policy " \
               f"cannot be combined with it (AWS does not intersect several session policies sent together)"
    return None


def outlived(req: AccessRequest, policy: RequestPolicy | None, grant: Grant | None = None) -> str | None:
    """Why the rules in force no longer back ``req`` as it stands (None: they do), ``policy`` being what its
    rule gives its role on request now and ``grant`` that rule's on-request grant (when known): the rule must
    still offer it, allow its window, and allow break-glass for one that broke the glass; a pending one must
    also still meet what an approver is shown (a reason); one with a narrower policy needs a grant without its own."""
    if policy is None:
        return RULE_CHANGED
    if req.policy is not None and grant is not None and own_policy(grant) is not None:
        return "its rule changed: its grant now has its own session policy, which a request's narrower " \
               "policy cannot be combined with"
    if req.duration > policy.max_duration:
        return f"its rule changed: it now allows at most {policy.max_duration // 60} min (this request: " \
               f"{req.duration // 60} min)"
    if req.break_glass and not policy.break_glass:
        return "its rule changed: it no longer allows break-glass"
    if req.status == "pending" and policy.reason_required and not req.reason:
        return "its rule changed: it now requires a reason"
    return None

# Decisions kept in this process, bounded by the grants they hold (a portal user may hold thousands).
ACCESS_MEMO_GRANTS = 50_000
# Rules with this many grants are frozen out of the garbage collector's scans after each load (gcpause.settle).
SETTLE_GRANTS = 1_000


@dataclass(frozen=True)
class Decision:
    """What the rules in force (``version``) give ``identity``: usable grants, MFA-locked ones, and
    whether a ``deny: all`` rule matched it (such an identity is no admin, whatever its groups).
    ``results`` (what each matched rule gave or withheld, and its notes) and ``problems`` (why AWS
    would refuse a pass-through artifact) are what ``AccessPoint.record`` writes down."""

    grants: list[Grant]
    locked: list[Grant]
    version: str
    denied_all: bool = False
    withheld: tuple[mapping.Withheld, ...] = ()  # aws_passthrough: what the IdP asserted that AWS would refuse
    requestable: tuple[mapping.Requestable, ...] = ()  # given on request (no active approved request now)
    # (rule, role ARN) → policy the matching rules give on request (requestable, MFA-locked, or masked by an
    # outright grant): an access request lives only while its rule is in here for its role and allows it.
    on_request: Mapping[tuple[str, str], RequestPolicy] = field(default_factory=dict)
    identity: Identity = field(kw_only=True)
    results: tuple[mapping.RuleResult, ...] = ()
    problems: tuple[str, ...] = ()


class ActiveRequests(Protocol):
    """What the decision point asks of the access requests (bridge/core/access_requests.py)."""

    def now(self) -> float: ...

    def active_for(self, identity: Identity) -> Sequence[AccessRequest]:
        """Approved requests of ``identity``'s exact account within their window."""

    def end(self, req: AccessRequest, why: str) -> None:
        """End an approved request the rules no longer back (audited once)."""

    def sweep(self, outlived: Callable[[AccessRequest], str | None]) -> int:
        """End every pending or approved request ``outlived`` says the rules no longer back, with why (audited)."""


def same_person(a: Identity, b: Identity) -> bool:
    """The same account, the same subject at the same issuer, or the same e-mail (ignoring case)."""
    if (a.connector_id, a.issuer, a.subject) == (b.connector_id, b.issuer, b.subject) or (a.issuer, a.subject) == (
            b.issuer, b.subject):
        return True
    return bool(a.email and b.email and a.email.lower() == b.email.lower())


def rule_book(settings: Settings, clock: Callable[[], float] = time.monotonic,
              on_failure: Callable[[str], None] = lambda kind: None) -> RuleBook:
    """The reloadable rules for ``settings``: watches the config file (if any) and the rules file."""
    def files(m: mapping.MappingSettings) -> list[Path]:
        return [p for p in (settings.source_file, rules_file_path(m.rules_file, settings.source_dir),
                            rules_file_path(m.accounts_file, settings.source_dir)) if p]

    reloadable = settings.source_file is not None or settings.rules_path is not None
    return RuleBook(settings.mapping, loader=(lambda: reload_mapping(settings)) if reloadable else None,
                    files=files, clock=clock, on_failure=on_failure)


# What the decision may read of an identity: every field but its secrets (never part of a memo key).
_KEYED = tuple(f.name for f in fields(Identity) if f.name not in ("passthrough", "upstream"))


def memo_digest(identity: Identity) -> str:
    """The decision memo's key for ``identity``: a digest of every field the rules can see. Built directly,
    not through ``Identity.to_json`` (``dataclasses.asdict`` deep-copies the claims: a fifth of a warm
    ListAccounts), on every decision."""
    doc = {k: getattr(identity, k) for k in _KEYED}
    doc["claims"] = dict(identity.claims)
    return hashlib.sha256(json.dumps(doc, sort_keys=True, default=str).encode()).hexdigest()


class AccessPoint:
    """Identity → the grants the rules in force give it, decided at the moment of use."""

    def __init__(self, rules: RuleBook, connectors: Mapping[str, Connector], auditor: Auditor, *,
                 defaults: mapping.GrantDefaults, admin: AdminSettings, requests: ActiveRequests) -> None:
        self.defaults = defaults  # what rules leave unsaid (audience, path, SAML provider)
        self.admin = admin
        self.rules = rules
        self.connectors = connectors
        self.auditor = auditor
        # (rules version, identity) → Decision: the decision is a pure function of both, so re-deciding
        # on every request costs a dict lookup while the rules and the identity stay the same.
        self._memo: OrderedDict[tuple[str, str], Decision] = OrderedDict()
        self._memo_lock = threading.Lock()
        self._memo_grants = 0
        self._memo_version = ""
        self._digests: ByObject[str] = ByObject()  # memo_digest per identity object (identities never change)
        self.requests = requests
        # The rules version whose offers every live access request was last checked against (a rules reload,
        # or a process starting under rules it has not checked them against, ends those no longer offered).
        self._swept_version = ""
        self._sweep_lock = threading.Lock()
        self.watch(rules)

    def watch(self, rules: RuleBook) -> None:
        """Check the access requests against ``rules`` after each of its reloads (when it is in force), and
        work out its identity-independent roles before the first decision needs them (``warm``)."""
        self.warm(rules.current)
        rules.on_load.append(self.warm)
        rules.on_reload.append(lambda: self._sweep_if_new(str(self.rules.mapping.compiled.version)))

    def warm(self, rules: mapping.MappingSettings) -> None:
        """``rules``' constant roles under both of this point's defaults (with and without pass-through), at
        startup and at each reload before the new rules go in force: off the first view's path
        (bench/bench_portal.py). A large rule set is then frozen out of the collector's scans (``settle``)."""
        compiled = rules.compiled
        with gc_paused():
            for passthrough in (False, True):
                mapping.warm_fixed_roles(compiled, replace(self.defaults, passthrough=passthrough))
        if sum(len(r.grants) for r in compiled.rules) >= SETTLE_GRANTS:
            gcpause.settle()

    def _defaults(self, identity: Identity | None = None) -> mapping.GrantDefaults:
        return replace(self.defaults, passthrough=identity is None or self.passes_through(identity.connector_id))

    def passes_through(self, connector_id: str) -> bool:
        """Whether identities of ``connector_id`` bring an artifact ``path: passthrough`` grants can
        redeem (an OIDC connector with ``aws_passthrough``); other identities are never offered them."""
        return self._policy(connector_id).passthrough_token

    def _policy(self, connector_id: str) -> ConnectorPolicy:
        connector = self.connectors.get(connector_id)
        return NO_POLICY if connector is None else connector.policy

    def _passthrough_decision(self, identity: Identity, check: UpstreamCheck | None) -> Decision:
        """aws_passthrough SAML: exactly the roles the IdP asserted that AWS would take, whatever the
        rules say (no reload changes them); with ``check`` (at sign-in) an assertion AWS would refuse
        offers none, each withheld saying what to fix at the IdP."""
        grants, withheld = mapping.passthrough_grants(identity, self.rules.mapping.compiled.catalog)
        if check is not None and check.problems:
            why = check.reasons()
            withheld += [mapping.Withheld(g.role_arn, why[0][0], " ".join(r for _, r in why)) for g in grants]
            grants = []
        return Decision(grants, [], PASSTHROUGH_VERSION, withheld=tuple(withheld), identity=identity,
                        problems=tuple(str(p)[:300] for p in (check.problems if check else ())))

    def decide(self, identity: Identity, check: UpstreamCheck | None = None) -> Decision:
        """THE decision point: what the rules in force give ``identity`` now, with the grants its
        approved access requests activate now (``check``: what AWS says of an aws_passthrough SAML
        sign-in's assertion, at sign-in). Logs and audits nothing: that is ``record``."""
        return self._with_requests(identity, self._rules_decision(identity, check))

    def record(self, decision: Decision, ctx: audit.Context) -> None:
        """Write ``decision`` down (at sign-in): a log line for what was sanitized, merged or withheld
        (rule names and reasons, never claim sets), and an audit record for every grant decision:
        granted or withheld, which rule, why."""
        identity = decision.identity
        if decision.version == PASSTHROUGH_VERSION:
            if decision.withheld:
                event("passthrough_withheld", logging.WARNING, connector=identity.connector_id,
                      withheld=[{"role_arn": w.role_arn, "code": w.code} for w in decision.withheld][:20],
                      problems=list(decision.problems[:20]))
            for g in decision.grants:
                self.auditor.record("grant_decision", ctx, outcome="granted", who=audit.who(identity),
                                    **audit.grant_fields(g))
            for w in decision.withheld:
                self.auditor.record("grant_decision", ctx, outcome="withheld", who=audit.who(identity),
                                    rule="aws_passthrough", role_arn=w.role_arn, code=w.code, reason=w.reason)
            return
        self._log_notes(decision.results)
        self._audit_decision(decision.results, identity, ctx, decision.version)

    def _with_requests(self, identity: Identity, access: Decision) -> Decision:
        """``access`` with the on-request grants that an approved request of this exact account activates
        now. Asked only of identities the rules offer something on request (the lookup costs a store read)."""
        if not access.requestable:
            return access
        active = self.requests.active_for(identity)
        if not active:
            return access
        now = self.requests.now()
        offered = {r.grant.role_arn: r for r in access.requestable}
        promoted: list[Grant] = []
        for req in active:
            rq = offered.get(req.role_arn)
            why = outlived(req, access.on_request.get((req.rule, req.role_arn)), rq.grant if rq else None)
            if why is not None:
                self.requests.end(req, why)
                continue
            if rq is None:
                continue  # its rule still offers it, but this sign-in lacks MFA or the role is given outright
            del offered[req.role_arn]
            left = int((req.expires_at or 0) - now)
            # The window shrinks every second: the maximum is rounded up and the default down to whole
            # minutes, so a duration a page offered a moment ago is still allowed when it is posted.
            # (Never beyond the window by more than a minute, or than AWS's 15-minute minimum.)
            max_d = max(900, min(rq.grant.max_duration, -(-left // 60) * 60))
            default = max(900, min(rq.grant.default_duration, left - left % 60, max_d))
            # The request's narrower policy goes with the grant it activates: this approval is never usable without it.
            promoted.append(replace(rq.grant, request_id=req.id, max_duration=max_d, default_duration=default,
                                    policy=req.policy if req.policy is not None else rq.grant.policy))
        if not promoted:
            return access
        return replace(access, grants=[*access.grants, *promoted], requestable=tuple(offered.values()))

    def _rules_decision(self, identity: Identity, check: UpstreamCheck | None = None) -> Decision:
        """What the rules alone give (memoised per rules version and identity)."""
        if identity.passthrough and self._policy(identity.connector_id).idp_roles:
            return self._passthrough_decision(identity, check)
        rules = self.rules.mapping
        version = str(rules.compiled.version)
        self._sweep_if_new(version)
        # the same identity object on every request of a session (records are parsed once per stored document)
        memo_key = (version, self._digests.get((identity,), None, lambda: memo_digest(identity)))
        if (hit := self._memo_get(memo_key)) is not None:
            return hit
        decision = mapping.decide(rules, identity, self._defaults(identity))
        deny_all = {r.name for r in rules.rules if r.deny is not None and r.deny.all}
        denied_all = any(r.matched and r.kind == "deny" and r.rule in deny_all for r in decision.results)
        # The memo keeps the identity without its secrets (the upstream grant, the pass-through artifact).
        decided = Decision(decision.grants, decision.locked, version, denied_all,
                           requestable=tuple(decision.requestable), on_request=decision.on_request,
                           identity=replace(identity, upstream=None, passthrough=None), results=tuple(decision.results))
        self._memo_put(memo_key, decided)
        return decided

    def outlived(self, req: AccessRequest) -> str | None:
        """Why the rules in force no longer back ``req`` (its rule giving its role on request to its requester, as
        the request recorded them, and allowing it as it stands), or None when they do."""
        decision = self._rules_decision(req.requester)
        rq = next((r for r in decision.requestable if r.grant.role_arn == req.role_arn), None)
        return outlived(req, decision.on_request.get((req.rule, req.role_arn)), rq.grant if rq else None)

    def _sweep_if_new(self, version: str) -> None:
        """Once per rules version in this process (after a reload, at the first decision after start): end
        the access requests the rules no longer back, so an approval never comes back with its rule.
        A failure (the store unreachable) is logged and tried again at the next decision."""
        if version == self._swept_version or not self._sweep_lock.acquire(blocking=False):
            return
        previous, self._swept_version = self._swept_version, version  # (the sweep's own decisions skip this)
        try:
            self.requests.sweep(self.outlived)
        except Exception as e:  # noqa: BLE001 - a decision must not fail because the sweep could not run now
            self._swept_version = previous
            event("requests_sweep_failed", logging.ERROR, error_type=type(e).__name__, rules_version=version)
        finally:
            self._sweep_lock.release()

    def _memo_get(self, key: tuple[str, str]) -> Decision | None:
        with self._memo_lock:
            if self._memo_version != key[0]:  # decisions under older rules are never asked for again
                self._memo.clear()
                self._memo_grants = 0
                self._memo_version = key[0]
            hit = self._memo.get(key)
            if hit is not None:
                self._memo.move_to_end(key)
            return hit

    def _memo_put(self, key: tuple[str, str], access: Decision) -> None:
        """Keep ``access``, bounded by the grants the memo holds (a portal user may hold thousands)."""
        def size(a: Decision) -> int:
            return len(a.grants) + len(a.locked) + len(a.requestable) + 1

        with self._memo_lock:
            if self._memo_version != key[0]:
                return  # the rules changed while deciding: keep nothing decided under the old ones
            self._memo[key] = access
            self._memo_grants += size(access)
            while self._memo_grants > ACCESS_MEMO_GRANTS and len(self._memo) > 1:
                _, old = self._memo.popitem(last=False)
                self._memo_grants -= size(old)

    @staticmethod
    def _log_notes(results: Sequence[mapping.RuleResult]) -> None:
        """What was sanitized, merged or withheld: rule names and reasons, never claim sets."""
        for r in results:
            if r.notes or r.withheld:
                event("mapping_notes", logging.INFO, rule=r.rule, granted=len(r.grants),
                      withheld=[{"role_arn": w.role_arn, "code": w.code, "reason": w.reason} for w in r.withheld],
                      notes=list(r.notes[:20]))

    def _audit_decision(self, results: Sequence[mapping.RuleResult], identity: Identity, ctx: audit.Context,
                        version: str) -> None:
        """At sign-in every decision is an audit record: granted or withheld, which rule, why."""
        for r in results:
            for g in r.grants:
                self.auditor.record("grant_decision", ctx, outcome="granted", who=audit.who(identity),
                                    rules_version=version, notes=list(r.notes[:20]), **audit.grant_fields(g))
            for w in r.withheld:
                self.auditor.record("grant_decision", ctx, outcome="withheld", who=audit.who(identity),
                                    rules_version=version, rule=r.rule, role_arn=w.role_arn, code=w.code,
                                    reason=w.reason)

    def request_policy(self, identity: Identity, role_arn: str) -> mapping.Requestable | None:
        """The rules' on-request grant of ``role_arn`` for ``identity`` now (whether or not a request of
        it is active), or None when the rules do not give it on request."""
        access = self._rules_decision(identity)
        return next((r for r in access.requestable if r.grant.role_arn == role_arn), None)

    def may_approve(self, approver: Identity, requester: Identity, role_arn: str) -> str | None:
        """Why ``approver`` may not approve ``requester``'s request of ``role_arn`` now, or None when they
        may: the rules must still give the role on request, the approver must match its ``approvers``
        now and not be matched by a ``deny: all`` rule, and nobody approves their own request (same
        account, subject or e-mail: break-glass is the only way to activate one's own)."""
        rq = self.request_policy(requester, role_arn)
        if rq is None:
            return "the rules no longer give this role on request"
        if same_person(approver, requester):
            return "nobody approves their own request"
        if self._rules_decision(approver).denied_all:
            return "a deny: all rule matches the approver"
        if not rq.policy.may_approve(View(approver)):
            return f"the approver does not match the approvers of rule {rq.grant.via!r}"
        return None

    def requestable(self, identity: Identity) -> list[mapping.Requestable]:
        """What ``identity`` may request now (on-request grants without an active approved request)."""
        return list(self.decide(identity).requestable)

    def is_admin(self, identity: Identity) -> bool:
        """Admin rights through the same decision: in ``admin.groups``, with MFA when
        ``admin.require_mfa``, and not matched by a ``deny: all`` rule."""
        if not self.admin.allows(identity.groups, identity.mfa):
            return False
        return not self._rules_decision(identity).denied_all

    def explain(self, identity: Identity) -> list[mapping.RuleResult]:
        """Every rule in force, matched or not and why (for /portal/why and the admin page)."""
        return mapping.decide(self.rules.mapping, identity, self._defaults(identity), explain_all=True).results
