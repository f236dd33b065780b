"""Sign-in as a use case: an IdP's callback → a verified identity, an audited decision, a new session.

``SignIn.complete`` is the one sequence every browser sign-in goes through; no Flask here (the view
reads the request into ``params`` and a ``Browser``, and turns ``SignedIn`` into a cookie and a redirect):

1. the login flow takes the pending sign-in back and the connector verifies the callback
   (bridge/core/flow.py); a failure is counted, logged (``login_failed``) and audited (``sign_in``, outcome
   ``denied`` or ``failure``), then raised for the view to show;
2. the success is audited (``sign_in``) under the sign-in's correlation id;
3. an ``aws_passthrough`` sign-in's artifact is judged against AWS's rules, with what its connector
   trusts (a ``Passthrough`` connector: its IdP metadata, or our client id and its keys), before any
   role is offered;
4. the decision point decides and writes the decision down (``grant_decision`` records, at sign-in
   only): the session keeps the identity, and every later use decides again;
5. the browser's old session ends and a new one starts (a new id: rotated at sign-in), the
   pass-through artifact kept beside it (sealed) for as long as AWS takes it.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

from bridge.aws.upstream_check import UpstreamCheck, check_oidc, check_saml, pem
from bridge.core.access import PASSTHROUGH_VERSION, AccessPoint, Decision
from bridge.core.flow import LoginFlow
from bridge.core.sessions import Sessions
from bridge.core.stepup_flow import StepUps
from bridge.domain.errors import IdpDenied, LoginError, StoreUnavailable
from bridge.domain.identity import Identity
from bridge.storage import NoteStore, PassthroughInfo
from bridge.telemetry import audit
from bridge.telemetry.audit import Auditor
from bridge.telemetry.logs import correlation_id, event
from bridge.telemetry.metrics import Metrics
from bridge.upstream import Connector
from bridge.upstream.base import Passthrough, SamlTrust

PASSTHROUGH_KEEP = 3600  # seconds an upstream artifact is kept at most (an ID token lives ≤ 1 h at AWS)


@dataclass(frozen=True)
class Browser:
    """The browser completing a sign-in, as the web layer reads it: its pre-sign-in cookie's value (None
    when it sent none or a malformed one: the flow refuses the callback), and where it is (for the audit)."""

    cookie: str | None = field(repr=False)
    client_ip: str | None = None
    user_agent: str | None = None

    def audit_context(self, correlation: str | None = None) -> audit.Context:
        return audit.Context(correlation_id=correlation, client_ip=self.client_ip, user_agent=self.user_agent)


@dataclass(frozen=True)
class SignedIn:
    """A completed sign-in: the new session's id (the cookie to set), where to send the user, what was
    decided, and ``browser_done``: the browser has no other sign-in pending (its pre-sign-in cookie can go)."""

    session_id: str = field(repr=False)
    return_to: str
    identity: Identity
    decision: Decision
    correlation: str
    browser_done: bool


class SignIn:
    """The sign-in sequence over the flow, the decision point and the sessions (see the module)."""

    def __init__(self, flow: LoginFlow, connectors: Mapping[str, Connector], access: AccessPoint,
                 sessions: Sessions, store: NoteStore, auditor: Auditor, metrics: Metrics, *, partition: str,
                 audit_in_store: bool, clock: Callable[[], float] = time.time) -> None:
        """``partition``: the AWS partition pass-through artifacts are judged for; ``audit_in_store``: the
        audit sink is the store (a failure because the store is down is then not audited: it would fail too)."""
        self.flow = flow
        self.connectors = connectors
        self.access = access
        self.sessions = sessions
        self.store = store
        self.auditor = auditor
        self.metrics = metrics
        self.partition = partition
        self.audit_in_store = audit_in_store
        self.clock = clock
        self.step_ups = StepUps(sessions, connectors, clock)  # step-up MFA: asked and verified

    def complete(self, connector_id: str, params: Mapping[str, str], browser: Browser,
                 old_session: str | None) -> SignedIn:
        """Complete the sign-in at ``connector_id`` that ``browser`` delivered the callback ``params`` of;
        ``old_session``: the hash of the browser's current session, ended once the new one is decided.
        Raises what the flow or the connector refused (audited), or LoginError for an unknown connector."""
        connector = self.connectors.get(connector_id)
        if connector is None:  # before anything is counted: the metric's labels are configured connectors only
            raise LoginError(f"unknown connector {connector_id[:40]!r}",
                             message="There is no identity provider of that name here.")
        try:
            identity, return_to, correlation = self.flow.complete(connector, params, browser=browser.cookie,
                                                                  verify=self.step_ups.verifier(old_session))
        except Exception as e:
            self._failed(connector_id, e, browser)
            raise
        correlation_id.set(correlation)
        ctx = browser.audit_context(correlation)
        self.auditor.record("sign_in", ctx, outcome="success", who=audit.who(identity), how=audit.how(identity))
        check = self.passthrough_check(identity)  # aws_passthrough: what AWS would say of the IdP's artifact
        decision = self.access.decide(identity, check)
        self.access.record(decision, ctx)  # audited here; decided again at each use
        session_id = self._start_session(identity, correlation, check, decision, old_session)
        self.metrics.logins.labels(connector_id, "success").inc()
        event("login_succeeded", connector=connector_id, issuer=identity.issuer, subject=identity.subject,
              mfa=identity.mfa, grants=len(decision.grants), locked=len(decision.locked))
        self._note_idp_warnings(connector_id, list(identity.warnings))
        done = browser.cookie is not None and not self.flow.browser_has_pending(browser.cookie)
        return SignedIn(session_id, return_to, identity, decision, correlation, browser_done=done)

    def _failed(self, connector_id: str, e: Exception, browser: Browser) -> None:
        code = getattr(e, "code", "error")
        outcome = "denied" if isinstance(e, IdpDenied) else "failure"
        self.metrics.logins.labels(connector_id, outcome).inc()
        event("login_failed", connector=connector_id, error_type=type(e).__name__, code=code)
        if not (isinstance(e, StoreUnavailable) and self.audit_in_store):
            self.auditor.record("sign_in", browser.audit_context(), outcome=outcome, error=code,
                                how={"connector": connector_id})

    def passthrough_check(self, identity: Identity) -> UpstreamCheck | None:
        """AWS's rules on an aws_passthrough sign-in's artifact, judged at sign-in (docs/aws-rules.md §1.10
        against the IdP metadata the connector trusts; §2.2–§2.4 for an ID token). None: no artifact."""
        connector = self.connectors.get(identity.connector_id)
        if not identity.passthrough or not isinstance(connector, Passthrough):
            return None
        now = int(self.clock())
        trust = connector.passthrough_trust()
        if isinstance(trust, SamlTrust):
            return check_saml(identity.passthrough, entity_id=trust.entity_id, certs_pem=tuple(map(pem, trust.certs)),
                              partition=self.partition, now=now, encryption_allowed=trust.encryption_allowed)
        return check_oidc(identity.passthrough, issuer=identity.issuer, client_id=trust.client_id,
                          jwks_uri=trust.jwks_uri, now=now)

    def _start_session(self, identity: Identity, correlation: str, check: UpstreamCheck | None,
                       decision: Decision, old_session: str | None) -> str:
        """End the browser's old session, start a new one. A pass-through sign-in keeps what AWS says of its
        artifact (with the asserted roles not offered, for the portal) and the artifact itself, until AWS
        would no longer take it (SAML: 5 minutes from the assertion's IssueInstant; OIDC: its exp, ≤ 1 h)."""
        if old_session:
            self.sessions.end(old_session, self.sessions.get(old_session))
        info = None if check is None else PassthroughInfo(
            check.kind, check.until, tuple((w.role_arn, w.code, w.reason) for w in decision.withheld)
            + tuple((None, code, reason) for code, reason in check.reasons() if check.kind == "oidc"), check.warnings)
        passthrough_grants = decision.grants if decision.version == PASSTHROUGH_VERSION else None
        session_id = self.sessions.start(identity, correlation=correlation, passthrough_grants=passthrough_grants,
                                         upstream=identity.upstream, passthrough=info)
        if check is not None and identity.passthrough:
            ttl = min(PASSTHROUGH_KEEP, check.until - int(self.clock()) + 1)
            self.sessions.put_passthrough(session_id, {"kind": check.kind, "value": identity.passthrough}, max(1, ttl))
        return session_id

    def _note_idp_warnings(self, connector_id: str, warnings: list[str]) -> None:
        """What the IdP sent that looks misconfigured (attribute and claim names, never values): one log line
        (``login_warnings``, the line to read when checking a new IdP), and a note for ``check-config --probe``."""
        if warnings:
            event("login_warnings", logging.WARNING, connector=connector_id, warnings=warnings)
        with contextlib.suppress(StoreUnavailable):  # the user is signed in; only the probe's note is lost
            self.store.note_sign_in(connector_id, warnings)
