"""The sign-in sequence without HTTP (``bridge.core.signin.SignIn``) on MemoryStore with the dev
connector: what is audited and which session exists after a success, a decision that gives nothing,
a pass-through artifact AWS would refuse, a replaced session, and callbacks the flow refuses."""

from __future__ import annotations

import base64
from collections.abc import Mapping
from dataclasses import replace
from typing import Any

import pytest

from bridge.config import Settings, settings_from_dict
from bridge.core.access import AccessPoint, rule_book
from bridge.core.access_requests import RequestLedger
from bridge.core.credcache import NoCache
from bridge.core.device import DeviceFlow
from bridge.core.flow import LoginFlow
from bridge.core.sessions import Sessions
from bridge.core.signin import Browser, SignedIn, SignIn
from bridge.domain.errors import LoginError
from bridge.domain.identity import Identity, PendingLogin
from bridge.mapping.passthrough import ROLE_CLAIM
from bridge.storage import hash_id
from bridge.storage.memory import MemoryStore
from bridge.telemetry.audit import Auditor
from bridge.telemetry.metrics import Metrics
from bridge.upstream.base import ConnectorPolicy, SamlTrust
from bridge.upstream.base_settings import ConnectorEnv
from bridge.upstream.dev import DevConnector
from bridge.web.services import grant_defaults
from tests.modules import ListSink

READ = "arn:aws:iam::123456789012:role/ReadOnly"
ADMIN = "arn:aws:iam::123456789012:role/Admin"
PROVIDER = "arn:aws:iam::123456789012:saml-provider/Corp"
T0 = 1_800_000_000.0
BROWSER = "b" * 43  # a pre-sign-in cookie value (secrets.token_urlsafe(32) has 43 characters)
AT = Browser(BROWSER, client_ip="192.0.2.7", user_agent="pytest")

SETTINGS = settings_from_dict({
    "base_url": "https://bridge.example.com", "insecure_dev_login": True,
    "connectors": [{"id": "dev", "type": "dev", "users": [
        {"subject": "alice", "email": "alice@example.com", "groups": ["devs"], "mfa": True},
        {"subject": "bob", "email": "bob@example.com", "groups": ["devs"]},  # no MFA
        {"subject": "mallory", "email": "mallory@example.com", "groups": ["contractors"], "mfa": True}]}],
    "mapping": {"rules": [
        {"name": "readonly", "match": {"group": "devs"}, "grants": [{"role_arn": READ, "mfa_required": True}]},
        {"name": "no-contractors", "match": {"group": "contractors"}, "deny": "all"}]}})


class PassthroughDev(DevConnector):
    """The dev connector as an ``aws_passthrough`` SAML connector would be: its sign-ins bring the IdP's
    response and assert roles, and they hold the asserted roles (the artifact is whatever ``artifact`` is)."""

    artifact = base64.b64encode(b"<not a SAML response/>").decode()

    def __init__(self, cfg: Any, *, base_url: str) -> None:
        super().__init__(cfg, base_url=base_url)
        self.policy = ConnectorPolicy(idp_roles=True)

    def finish_login(self, pending: PendingLogin | None, params: Mapping[str, str], redirect_uri: str) -> Identity:
        identity = super().finish_login(pending, params, redirect_uri)
        return replace(identity, passthrough=self.artifact, claims={ROLE_CLAIM: [f"{ADMIN},{PROVIDER}"]})

    def passthrough_trust(self) -> SamlTrust:
        return SamlTrust(entity_id="https://idp.example.com", certs=(), encryption_allowed=False)


class World:
    def __init__(self, settings: Settings = SETTINGS, passthrough: bool = False) -> None:
        self.now = [T0]
        self.store = MemoryStore("t:", clock=lambda: self.now[0])
        cfg = settings.connectors[0]
        connector = (PassthroughDev(cfg, base_url=settings.base_url) if passthrough else
                     cfg.open(ConnectorEnv(settings.base_url, lambda p: p, replay_guard=lambda k, t: True)))
        assert isinstance(connector, DevConnector)  # the registry opened the dev connector
        connectors = {"dev": connector}
        self.sink = ListSink()
        auditor = Auditor(self.sink)
        self.metrics = Metrics()
        self.flow = LoginFlow(self.store, connectors, base_url=settings.base_url, ttl=600, clock=lambda: self.now[0])
        ledger = RequestLedger(settings.requests, self.store, auditor,
                               approve_url=f"{settings.base_url}/requests/approve", clock=lambda: self.now[0])
        self.access = AccessPoint(rule_book(settings), connectors, auditor, defaults=grant_defaults(settings),
                                  admin=settings.admin, requests=ledger)
        device = DeviceFlow(self.store, settings.cli, clock=lambda: self.now[0])
        self.sessions = Sessions(self.store, settings.session, connectors, device, NoCache(),
                                 clock=lambda: self.now[0])
        self.signin = SignIn(self.flow, connectors, self.access, self.sessions, self.store, auditor, self.metrics,
                             partition="aws", audit_in_store=False, clock=lambda: self.now[0])
        self.connector = connector

    def state(self, browser: str = BROWSER) -> str:
        """Start a sign-in in ``browser``; the state its callback carries."""
        url = self.flow.begin(self.connector, "/portal?tab=roles", browser=browser)
        return url.split("state=", 1)[1]

    def sign_in(self, user: str, old_session: str | None = None) -> SignedIn:
        return self.signin.complete("dev", {"state": self.state(), "user": user}, AT, old_session)

    def audited(self, type_: str) -> list[dict[str, Any]]:
        return [r for r in self.sink.lines if r["type"] == type_]

    def logins(self, outcome: str) -> float:
        return self.metrics.registry.get_sample_value("bridge_logins_total",
                                                      {"connector": "dev", "outcome": outcome}) or 0.0


def test_a_sign_in_is_audited_decided_and_starts_a_session() -> None:
    w = World()
    signed = w.sign_in("alice")
    assert signed.return_to == "/portal?tab=roles" and signed.browser_done  # no other tab signing in
    [sign_in] = w.audited("sign_in")
    assert sign_in["outcome"] == "success" and sign_in["who"]["subject"] == "alice"
    assert sign_in["correlation_id"] == signed.correlation and sign_in["client_ip"] == "192.0.2.7"
    [decision] = w.audited("grant_decision")
    assert (decision["outcome"], decision["role_arn"], decision["rule"]) == ("granted", READ, "readonly")
    assert decision["correlation_id"] == signed.correlation  # one sign-in, one correlation id
    assert [g.role_arn for g in signed.decision.grants] == [READ]
    record = w.sessions.get(hash_id(signed.session_id))
    assert record is not None and record.identity.subject == "alice" and record.correlation_id == signed.correlation
    assert record.passthrough_grants is None and record.passthrough is None  # grants are decided at each use
    assert w.logins("success") == 1


def test_a_decision_that_gives_nothing_still_signs_in_and_audits_why() -> None:
    w = World()
    signed = w.sign_in("bob")  # the rule wants MFA; bob's sign-in had none
    assert signed.decision.grants == [] and [g.role_arn for g in signed.decision.locked] == [READ]
    [withheld] = w.audited("grant_decision")
    assert (withheld["outcome"], withheld["role_arn"], withheld["code"]) == ("withheld", READ, "mfa")
    record = w.sessions.get(hash_id(signed.session_id))
    assert record is not None and record.identity.subject == "bob" and not record.identity.mfa
    # A deny: all rule: no grant decision to audit, and the session holds no grants either.
    denied = w.sign_in("mallory")
    assert denied.decision.denied_all and denied.decision.grants == []
    assert [r["who"]["subject"] for r in w.audited("sign_in")] == ["bob", "mallory"]
    assert len(w.audited("grant_decision")) == 1
    record = w.sessions.get(hash_id(denied.session_id))
    assert record is not None and record.passthrough_grants is None


def test_a_pass_through_artifact_aws_would_refuse_offers_no_role() -> None:
    w = World(passthrough=True)
    signed = w.sign_in("alice")
    assert signed.decision.grants == []  # the IdP asserted Admin, but AWS would refuse the response
    [withheld] = w.audited("grant_decision")
    assert (withheld["outcome"], withheld["rule"], withheld["role_arn"]) == ("withheld", "aws_passthrough", ADMIN)
    assert withheld["code"].startswith("aws_rule_")
    record = w.sessions.get(hash_id(signed.session_id))
    assert record is not None and record.passthrough_grants == ()  # the asserted roles, none of them usable
    assert record.passthrough is not None and record.passthrough.kind == "saml"
    assert [(arn, code) for arn, code, _ in record.passthrough.not_offered] == [(ADMIN, withheld["code"])]
    # The artifact is kept beside the session only as long as AWS would take it (here: not at all).
    assert w.sessions.get_passthrough(signed.session_id) == {"kind": "saml", "value": PassthroughDev.artifact}
    w.now[0] += 2
    assert w.sessions.get_passthrough(signed.session_id) is None


def test_a_new_sign_in_replaces_the_browsers_old_session() -> None:
    w = World()
    first = w.sign_in("alice")
    old = hash_id(first.session_id)
    second = w.sign_in("bob", old_session=old)
    assert second.session_id != first.session_id  # a new id at every sign-in
    assert w.sessions.get(old) is None
    assert w.sessions.of_user("alice@example.com") == []  # unindexed too: operators no longer see it
    record = w.sessions.get(hash_id(second.session_id))
    assert record is not None and record.identity.subject == "bob"
    assert [r["who"]["subject"] for r in w.audited("sign_in")] == ["alice", "bob"]


@pytest.mark.parametrize("case", ["unknown user", "other browser", "replayed state"])
def test_a_refused_callback_is_audited_and_starts_no_session(case: str) -> None:
    w = World()
    kept = w.sign_in("alice")  # the browser's current session survives a failed sign-in
    state = w.state()
    if case == "replayed state":
        w.signin.complete("dev", {"state": state, "user": "alice"}, AT, None)
    params = {"state": state, "user": "nobody" if case == "unknown user" else "alice"}
    browser = Browser("c" * 43, client_ip="198.51.100.9") if case == "other browser" else AT
    before = [shash for shash, _ in w.sessions.of_user("alice@example.com")]
    with pytest.raises(LoginError) as e:
        w.signin.complete("dev", params, browser, hash_id(kept.session_id))
    want = {"unknown user": "login_failed", "other browser": "login_browser_mismatch",
            "replayed state": "login_expired"}[case]
    assert e.value.code == want
    failure = w.audited("sign_in")[-1]
    assert (failure["outcome"], failure["error"], failure["how"]) == ("failure", want, {"connector": "dev"})
    assert "who" not in failure  # nobody was verified
    assert [shash for shash, _ in w.sessions.of_user("alice@example.com")] == before  # none started, none ended
    assert w.sessions.get(hash_id(kept.session_id)) is not None
    assert w.logins("failure") == 1


def test_an_unknown_connector_is_refused_before_anything_is_counted() -> None:
    w = World()
    with pytest.raises(LoginError):
        w.signin.complete("nope", {"state": w.state(), "user": "alice"}, AT, None)
    assert w.sink.lines == [] and w.logins("failure") == 0
    assert w.store.has_pending(w.state())  # nothing of the flow was touched
