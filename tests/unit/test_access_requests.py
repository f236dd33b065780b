"""Just-in-time access through the one decision point: requestable grants, approval by the rules'
approvers (never oneself), activation for a window, expiry on an injected clock, revocation, rules
changes, break-glass, the audit trail under one correlation id, config problems, and webhooks received
by a real HTTP server on 127.0.0.1."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from bridge.config import ConfigError, Settings, settings_from_dict
from bridge.core.access import AccessPoint, rule_book
from bridge.core.access_requests import AccessRequests, RequestLedger, RequestRefused
from bridge.core.notify import Notifier
from bridge.domain.errors import BadRequest, NotGranted
from bridge.domain.identity import Identity
from bridge.storage.memory import MemoryStore
from bridge.telemetry.audit import Auditor
from bridge.web.services import grant_defaults
from tests.modules import ListSink

ADMIN = "arn:aws:iam::123456789012:role/Admin"
READ = "arn:aws:iam::123456789012:role/ReadOnly"
T0 = 1_800_000_000.0


def ident(subject: str, groups: tuple[str, ...] = (), email: str | None = None, mfa: bool = True) -> Identity:
    return Identity(connector_id="dev", subject=subject, issuer="dev", email=email or f"{subject}@example.com",
                    groups=groups, mfa=mfa)


BOB = ident("bob", ("devs",))
CAROL = ident("carol", ("sre-leads",))
DAVE = ident("dave", ("sre-leads", "contractors"))
ERIN = ident("erin", ("devs", "sre-leads"))  # may request, and approves others' requests


def rules(break_glass: bool = False, deny_admin: bool = False) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = [
        {"name": "readonly", "match": {"group": "devs"}, "grants": [{"role_arn": READ}]},
        {"name": "prod-admin", "match": {"group": "devs"},
         "grants": [{"role_arn": ADMIN, "duration": {"max": 3600},
                     "request": {"approvers": {"group": "sre-leads"}, "max_duration": 7200,
                                 "reason_required": True, "break_glass": break_glass}}]},
        {"name": "no-contractors", "match": {"group": "contractors"}, "deny": "all"},
    ]
    if deny_admin:
        out.append({"name": "freeze", "match": {"group": "devs"}, "deny": {"roles": ["Admin"]}})
    return out


class World:
    def __init__(self, **settings: Any) -> None:
        self.now = [T0]
        self.settings = make_settings(rules(), **settings)
        self.sink = ListSink()
        self.store = MemoryStore("t:", clock=lambda: self.now[0])
        ledger = RequestLedger(self.settings.requests, self.store, Auditor(self.sink),
                               approve_url=f"{self.settings.base_url}/requests/approve",
                               notifier=Notifier(self.settings.requests, sleep=lambda s: None),
                               clock=lambda: self.now[0])
        self.access = AccessPoint(rule_book(self.settings), {}, Auditor(self.sink),
                                  defaults=grant_defaults(self.settings), admin=self.settings.admin, requests=ledger)
        self.requests = AccessRequests(ledger, self.access)

    def set_rules(self, new: list[dict[str, Any]]) -> None:
        s = make_settings(new)
        self.access.rules = rule_book(s)

    def grants(self, who: Identity) -> list[str]:
        return [g.role_arn for g in self.access.decide(who).grants]

    def admin_grant_id(self, who: Identity) -> str:
        return next(r.grant.id for r in self.access.requestable(who) if r.grant.role_arn == ADMIN)

    def events(self, request_id: str) -> list[str]:
        return [r["event"] for r in self.sink.lines if r["type"] == "access_request"
                and r["correlation_id"] == request_id]


def make_settings(rule_list: list[dict[str, Any]], **extra: Any) -> Settings:
    return settings_from_dict({"base_url": "https://bridge.example.com", "insecure_dev_login": True,
                               "connectors": [{"id": "dev", "type": "dev", "users": [{"subject": "x"}]}],
                               "mapping": {"rules": rule_list}, **extra})


@pytest.fixture
def w() -> World:
    return World()


def test_an_on_request_role_is_requestable_not_granted(w: World) -> None:
    access = w.access.decide(BOB)
    assert [g.role_arn for g in access.grants] == [READ]
    assert [r.grant.role_arn for r in access.requestable] == [ADMIN]
    assert w.access.decide(CAROL).requestable == ()  # not matched by the rule


def test_approved_request_activates_the_grant_for_its_window_then_expires(w: World) -> None:
    req = w.requests.create(BOB, w.admin_grant_id(BOB), reason="INC-42", duration=1800)
    assert req.status == "pending" and ADMIN not in w.grants(BOB)
    approved = w.requests.decide(CAROL, req.id, approve=True, comment="go")
    assert approved.expires_at == int(T0) + 1800
    grant = next(g for g in w.access.decide(BOB).grants if g.role_arn == ADMIN)
    assert grant.request_id == req.id and grant.max_duration == 1800  # credentials end with the window
    assert w.access.requestable(BOB) == []
    w.now[0] += 1799
    assert ADMIN in w.grants(BOB)
    w.now[0] += 1
    assert ADMIN not in w.grants(BOB)  # on time, without any timer
    assert w.store.get_access_request(req.id).status == "expired"  # type: ignore[union-attr]
    assert w.events(req.id) == ["requested", "approved", "activated", "expired"]
    assert [r.grant.role_arn for r in w.access.requestable(BOB)] == [ADMIN]  # may be requested again


def test_the_grant_is_for_that_exact_account_only(w: World) -> None:
    req = w.requests.create(BOB, w.admin_grant_id(BOB), reason="INC-42", duration=1800)
    w.requests.decide(CAROL, req.id, approve=True)
    other_connector = Identity(connector_id="corp", subject="bob", issuer="https://idp", email="bob@example.com",
                               groups=("devs",), mfa=True)
    assert ADMIN in w.grants(BOB) and ADMIN not in w.grants(other_connector)


def test_no_self_approval_and_approvers_are_rechecked_at_approval(w: World) -> None:
    req = w.requests.create(ERIN, w.admin_grant_id(ERIN), reason="deploy", duration=900)
    with pytest.raises(RequestRefused, match="own request"):
        w.requests.decide(ERIN, req.id, approve=True)
    same_mail = ident("erin-alt", ("sre-leads",), email="ERIN@example.com")
    with pytest.raises(RequestRefused, match="own request"):
        w.requests.decide(same_mail, req.id, approve=True)
    with pytest.raises(RequestRefused, match="does not match the approvers"):
        w.requests.decide(BOB, req.id, approve=True)
    with pytest.raises(RequestRefused, match="deny: all"):
        w.requests.decide(DAVE, req.id, approve=True)  # in sre-leads, but denied everything
    assert [r.id for r in w.requests.for_approver(CAROL)] == [req.id]
    assert w.requests.for_approver(ERIN) == [] and w.requests.for_approver(BOB) == []
    assert "refused" in w.events(req.id) and ADMIN not in w.grants(ERIN)


def test_deny_with_a_comment(w: World) -> None:
    req = w.requests.create(BOB, w.admin_grant_id(BOB), reason="curious", duration=900)
    denied = w.requests.decide(CAROL, req.id, approve=False, comment="not without a ticket")
    assert denied.status == "denied" and denied.comment == "not without a ticket"
    assert ADMIN not in w.grants(BOB)
    with pytest.raises(RequestRefused):
        w.requests.decide(CAROL, req.id, approve=True)  # decided once


def test_reason_duration_and_duplicates_are_checked(w: World) -> None:
    gid = w.admin_grant_id(BOB)
    with pytest.raises(BadRequest, match="reason"):
        w.requests.create(BOB, gid, reason="  ", duration=900)
    with pytest.raises(BadRequest, match="duration"):
        w.requests.create(BOB, gid, reason="x", duration=7201)
    with pytest.raises(NotGranted):
        w.requests.create(CAROL, gid, reason="x", duration=900)
    w.requests.create(BOB, gid, reason="x", duration=900)
    with pytest.raises(BadRequest, match="already pending"):
        w.requests.create(BOB, gid, reason="again", duration=900)
    with pytest.raises(RequestRefused, match="break-glass"):
        w.requests.create(ERIN, w.admin_grant_id(ERIN), reason="x", duration=900, break_glass=True)


def test_revoked_early_by_the_requester_or_an_approver(w: World) -> None:
    for revoker in (BOB, CAROL):
        req = w.requests.create(BOB, w.admin_grant_id(BOB), reason="INC", duration=3600)
        w.requests.decide(CAROL, req.id, approve=True)
        assert ADMIN in w.grants(BOB)
        with pytest.raises(RequestRefused):
            w.requests.revoke(ident("mallory", ("devs",)), req.id)
        w.requests.revoke(revoker, req.id, comment="done")
        assert ADMIN not in w.grants(BOB)
        assert w.events(req.id)[-1] == "revoked"


def test_a_deny_rule_or_a_rule_change_ends_it(w: World) -> None:
    req = w.requests.create(BOB, w.admin_grant_id(BOB), reason="INC", duration=3600)
    w.requests.decide(CAROL, req.id, approve=True)
    w.set_rules(rules(deny_admin=True))
    assert ADMIN not in w.grants(BOB)  # deny wins at once
    w.set_rules([*rules()[:1], {"name": "other", "match": {"group": "devs"},
                                "grants": [{"role_arn": "arn:aws:iam::123456789012:role/Other",
                                            "request": {"approvers": {"group": "sre-leads"}}}]}])
    assert ADMIN not in w.grants(BOB)
    assert w.store.get_access_request(req.id).status == "ended"  # type: ignore[union-attr]
    w.set_rules(rules())
    assert ADMIN not in w.grants(BOB)  # an ended request stays ended


def test_break_glass_activates_alone_with_a_reason_and_is_flagged() -> None:
    w = World()
    w.set_rules(rules(break_glass=True))
    gid = w.admin_grant_id(BOB)
    with pytest.raises(BadRequest, match="reason"):
        w.requests.create(BOB, gid, reason="", duration=900, break_glass=True)
    req = w.requests.create(BOB, gid, reason="prod down, nobody answers", duration=900, break_glass=True)
    assert req.status == "approved" and ADMIN in w.grants(BOB)
    recs = [r for r in w.sink.lines if r.get("request_id") == req.id]
    assert [r["event"] for r in recs] == ["requested", "activated"] and all(r["break_glass"] for r in recs)


def test_pending_requests_expire_without_a_decision(w: World) -> None:
    req = w.requests.create(BOB, w.admin_grant_id(BOB), reason="INC", duration=900)
    w.now[0] += w.settings.requests.pending_ttl
    assert w.requests.get(req.id).status == "expired"
    with pytest.raises(RequestRefused):
        w.requests.decide(CAROL, req.id, approve=True)


def test_config_lists_every_request_problem() -> None:
    with pytest.raises(ConfigError) as e:
        make_settings([{"name": "r", "match": {"group": "g"},
                        "grants": [{"role_arn": ADMIN, "request": {"approvers": {"claim": "groups", "regex": "("},
                                                                    "max_duration": 60}}]}],
                      requests={"webhooks": [{"url": "ftp://x"}, {"url": "https://h", "format": "msteams"},
                                             {"url": "https://h", "secret_header": {"name": "Host", "value": "v"}}]})
    text = "\n".join(e.value.problems)
    for needle in ("request.max_duration", "requests.webhooks[0].url", "requests.webhooks[1].format",
                   "requests.webhooks[2]"):
        assert needle in text, text
    with pytest.raises(ConfigError) as e:  # meaning, once the shape is right: the approvers' condition compiles
        make_settings([{"name": "r", "match": {"group": "g"},
                        "grants": [{"role_arn": ADMIN, "request": {"approvers": {"claim": "groups", "regex": "("}}},
                                   {"role_arn": READ, "path": "passthrough",
                                    "request": {"approvers": {"group": "x"}}}]}])
    text = "\n".join(e.value.problems)
    assert "grants[0].request.approvers.regex: bad regex" in text and "grants[1].request" in text, text


# --------------------------------------------------------------------------- webhooks


class Receiver:
    """A real HTTP server on 127.0.0.1 that records what it is sent; fails the first ``fail`` posts."""

    def __init__(self, fail: int = 0) -> None:
        self.got: list[tuple[str, dict[str, str], dict[str, Any]]] = []
        self.fail = fail
        outer = self

        class H(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                if outer.fail > 0:
                    outer.fail -= 1
                    self.send_response(500)
                else:
                    outer.got.append((self.path, dict(self.headers), body))
                    self.send_response(200)
                self.end_headers()

            def log_message(self, *a: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), H)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    r = Receiver(fail=1)
    yield r
    r.server.shutdown()


def test_webhooks_json_and_slack_with_retries_and_secret_header(receiver: Receiver) -> None:
    w = World(requests={"webhook_backoff": 0, "webhooks": [
        {"url": f"{receiver.url}/json", "secret_header": {"name": "X-Bridge-Secret", "value": "s3cret"}},
        {"url": f"{receiver.url}/slack", "format": "slack"}]})
    req = w.requests.create(BOB, w.admin_grant_id(BOB), reason="INC-7", duration=900)
    w.requests.decide(CAROL, req.id, approve=True, comment="ok")
    assert w.requests.notifier.wait()
    by_path: dict[str, list[dict[str, Any]]] = {}
    for path, headers, body in receiver.got:
        by_path.setdefault(path, []).append(body)
        if path == "/json":
            assert headers["X-Bridge-Secret"] == "s3cret"
    assert sorted(b["event"] for b in by_path["/json"]) == ["approved", "requested"]  # one retried after a 500
    first = next(b for b in by_path["/json"] if b["event"] == "requested")
    assert first["request_id"] == req.id and first["reason"] == "INC-7" and first["requester"]["subject"] == "bob"
    assert first["url"].endswith(f"/requests/approve#r-{req.id}")
    assert len(by_path["/slack"]) == 2 and all("bob@example.com" in b["text"] for b in by_path["/slack"])
    assert all(b["blocks"][0]["type"] == "section" for b in by_path["/slack"])


def test_a_dead_webhook_never_blocks_a_request() -> None:
    import time

    w = World(requests={"webhook_backoff": 0, "webhook_attempts": 2, "webhook_timeout": 1,
                        "webhooks": [{"url": "http://127.0.0.1:9/nothing-listens"}]})
    started = time.monotonic()
    w.requests.create(BOB, w.admin_grant_id(BOB), reason="INC", duration=900)
    assert time.monotonic() - started < 0.5
    assert w.requests.notifier.wait() and w.requests.notifier.failed == 1


# --------------------------------------------------------------------------- issue 22: webhooks that leak


def test_webhook_receivers_outside_loopback_need_https_and_never_link_local() -> None:
    def problems(*hooks: dict[str, Any]) -> str:
        with pytest.raises(ConfigError) as e:
            make_settings(rules(), requests={"webhooks": list(hooks)})
        return "\n".join(e.value.problems)

    text = problems({"url": "http://hooks.example.com/x"}, {"url": "http://10.0.0.7/x"},
                    {"url": "https://169.254.169.254/latest/meta-data"}, {"url": "https://[fe80::1]/x"},
                    {"url": "https://[::ffff:169.254.169.254]/x"}, {"url": "http://metadata.google.internal/x",
                                                                     "insecure_allow_http": True},
                    {"url": "https://[fd00:ec2::254]/x"})
    for i in range(7):
        assert f"requests.webhooks[{i}].url" in text, text
    assert "https" in text and "insecure_allow_http" in text and "link-local" in text, text
    ok = make_settings(rules(), requests={"webhooks": [
        {"url": "http://127.0.0.1:9/x"}, {"url": "http://localhost:9/x"}, {"url": "http://[::1]:9/x"},
        {"url": "https://hooks.example.com/x"}, {"url": "http://hooks.internal/x", "insecure_allow_http": True}]})
    warned = "\n".join(ok.warnings())
    assert "requests.webhooks[4]" in warned and "insecure_allow_http" in warned, warned
    assert "requests.webhooks[0]" not in warned and "requests.webhooks[3]" not in warned, warned


def test_metadata_addresses_in_any_spelling_are_refused_at_load() -> None:
    """Issue 22 item 10: ``http://2852039166/`` (169.254.169.254 in decimal; octal, hex and short forms too)
    passed the load check (not an address to ``ipaddress``) and was refused only at each delivery, where the
    resolver reads it as one; the EKS Pod Identity agent's IPv6 address (``fd00:ec2::23``, credentials) was
    not a metadata address at all."""
    spellings = ["2852039166", "0251.0376.0251.0376", "0xa9fea9fe", "0xa9.0xfe.0xa9.0xfe", "169.254.43518",
                 "[fd00:ec2::23]", "[fd00:ec2:0::23]"]
    with pytest.raises(ConfigError) as e:
        make_settings(rules(), requests={"webhooks": [{"url": f"https://{h}/x"} for h in spellings]})
    text = "\n".join(e.value.problems)
    for i in range(len(spellings)):
        assert f"requests.webhooks[{i}].url" in text, text
    assert "metadata" in text or "link-local" in text, text
    ok = make_settings(rules(), requests={"webhooks": [{"url": "https://1234.example/x"},
                                                       {"url": "https://0x10.example/x"}]})
    assert len(ok.requests.webhooks) == 2  # names that only look like numbers are names


def _resolver(answers: dict[str, list[list[str]]]) -> Any:
    """A resolver answering each name with the next of its address lists (the last one again after that):
    a DNS server whose answer changes between calls (DNS rebinding)."""
    import socket

    def resolve(host: str, port: int, *a: Any, **kw: Any) -> list[Any]:
        queue = answers[host]
        ips = queue.pop(0) if len(queue) > 1 else queue[0]
        return [(socket.AF_INET6 if ":" in ip else socket.AF_INET, socket.SOCK_STREAM, 6, "", (ip, port))
                for ip in ips]

    return resolve


def test_a_webhook_is_sent_to_the_address_checked_and_never_to_a_link_local_one(bridge_logs: Any) -> None:
    from tests.integration.helpers import WebhookReceiver

    got = WebhookReceiver()
    try:
        s = make_settings(rules(), requests={"webhook_backoff": 0, "webhook_attempts": 1, "webhooks": [
            {"url": f"http://hooks.example.test:{got.port}/x", "insecure_allow_http": True,
             "secret_header": {"name": "X-Bridge-Secret", "value": "s3cret"}}]})
        resolve = _resolver({"hooks.example.test": [["127.0.0.1"], ["169.254.169.254"], ["127.0.0.1", "fe80::1"]]})
        n = Notifier(s.requests, sleep=lambda _: None, resolve=resolve)
        hook = s.requests.webhooks[0]
        assert n.deliver(hook, b"{}") is True  # resolved to loopback: sent there, named as in the URL
        (path, headers, _), = got.got
        assert headers["Host"] == f"hooks.example.test:{got.port}" and headers["X-Bridge-Secret"] == "s3cret"
        assert n.deliver(hook, b"{}") is False  # the name now points at the metadata service: not sent
        assert n.deliver(hook, b"{}") is False  # one of its addresses is link-local: not sent either
        assert len(got.got) == 1
        failed = [json.loads(x) for x in bridge_logs.lines if '"webhook_failed"' in x]
        assert [f["reason"] for f in failed] == ["blocked address 169.254.169.254", "blocked address fe80::1"]
        assert "s3cret" not in bridge_logs.text
    finally:
        got.close()


# --------------------------------------------------------------------------- issue 22: rules change, offboarding


def test_an_approval_ends_when_its_rule_goes_and_stays_ended_when_it_returns(w: World) -> None:
    req = w.requests.create(BOB, w.admin_grant_id(BOB), reason="INC", duration=3600)
    w.requests.decide(CAROL, req.id, approve=True)
    w.set_rules(rules()[:1])  # nothing is given on request any more
    assert ADMIN not in w.grants(BOB)
    w.set_rules(rules())
    assert ADMIN not in w.grants(BOB)
    ended = w.store.get_access_request(req.id)
    assert ended is not None and ended.status == "ended" and "rule" in (ended.end_reason or "")
    assert w.events(req.id)[-1] == "ended"


def test_a_rules_reload_ends_the_requests_it_no_longer_backs_without_anyone_using_them(w: World) -> None:
    approved = w.requests.create(BOB, w.admin_grant_id(BOB), reason="INC", duration=3600)
    w.requests.decide(CAROL, approved.id, approve=True)
    pending = w.requests.create(ERIN, w.admin_grant_id(ERIN), reason="later", duration=900)
    current = [[r for r in rules() if r["name"] != "prod-admin"]]
    book = w.access.rules = type(w.access.rules)(w.settings.mapping, loader=lambda: make_settings(current[0]).mapping)
    w.access.watch(book)
    assert book.reload()
    assert {r.id: r.status for r in w.requests.all()} == {approved.id: "ended", pending.id: "ended"}
    current[0] = rules()
    assert book.reload() and ADMIN not in w.grants(BOB) and w.requests.for_approver(CAROL) == []


def test_a_rule_renamed_or_turned_into_a_plain_grant_ends_the_request(w: World) -> None:
    req = w.requests.create(BOB, w.admin_grant_id(BOB), reason="INC", duration=3600)
    w.requests.decide(CAROL, req.id, approve=True)
    outright = [*rules()[:1], {"name": "prod-admin", "match": {"group": "devs"}, "grants": [{"role_arn": ADMIN}]}]
    w.set_rules(outright)
    assert ADMIN in w.grants(BOB)  # the rules give it outright now
    w.set_rules(rules())
    assert ADMIN not in w.grants(BOB) and w.events(req.id)[-1] == "ended"


def test_offboarding_ends_pending_and_approved_requests(w: World) -> None:
    approved = w.requests.create(BOB, w.admin_grant_id(BOB), reason="INC", duration=3600)
    w.requests.decide(CAROL, approved.id, approve=True)
    other = Identity(connector_id="corp", subject="bob-corp", issuer="https://idp", email="BOB@example.com",
                     groups=("devs",), mfa=True)
    pending = w.requests.create(other, w.admin_grant_id(other), reason="later", duration=900)
    kept = w.requests.create(ERIN, w.admin_grant_id(ERIN), reason="mine", duration=900)
    ended = w.requests.end_for_user("bob@example.com", by="bridge sessions revoke")
    assert sorted(r.id for r in ended) == sorted([approved.id, pending.id])
    assert {r.id: r.status for r in w.requests.all()} == {approved.id: "revoked", pending.id: "revoked",
                                                          kept.id: "pending"}
    assert ADMIN not in w.grants(BOB) and w.events(approved.id)[-1] == "revoked"
    assert [r.id for r in w.requests.end_for_user("bob-corp", by="x")] == []  # nothing left to end


def test_https_to_the_checked_address_still_verifies_the_certificate_for_the_name(tmp_path: Any) -> None:
    import ssl

    from tests.integration.helpers import WebhookReceiver
    from tests.redis_topologies import make_ca

    tls = make_ca(tmp_path / "ca")
    got = WebhookReceiver(tls=tls)
    try:
        s = make_settings(rules(), requests={"webhook_backoff": 0, "webhook_attempts": 1, "webhooks": [
            {"url": f"https://localhost:{got.port}/x"}, {"url": f"https://hooks.example.test:{got.port}/x"}]})
        trust = ssl.create_default_context(cafile=str(tls.ca))
        n = Notifier(s.requests, sleep=lambda _: None, tls=trust,
                     resolve=_resolver({"localhost": [["127.0.0.1"]], "hooks.example.test": [["127.0.0.1"]]}))
        assert n.deliver(s.requests.webhooks[0], b"{}") is True
        assert n.deliver(s.requests.webhooks[1], b"{}") is False  # the certificate is not for that name
        assert [p for p, _, _ in got.got] == ["/x"]
    finally:
        got.close()


def test_a_sign_in_without_mfa_does_not_end_an_approval_its_rule_still_offers() -> None:
    w = World()
    mfa_rules = [*rules(), {"name": "other", "match": {"group": "devs"},  # something requestable without MFA
                            "grants": [{"role_arn": "arn:aws:iam::123456789012:role/Other",
                                        "request": {"approvers": {"group": "sre-leads"}}}]}]
    mfa_rules[1]["grants"][0]["mfa_required"] = True
    w.set_rules(mfa_rules)
    req = w.requests.create(BOB, w.admin_grant_id(BOB), reason="INC", duration=3600)
    w.requests.decide(CAROL, req.id, approve=True)
    no_mfa = ident("bob", ("devs",), mfa=False)  # the same account, another sign-in
    assert ADMIN not in w.grants(no_mfa)  # locked on this sign-in…
    assert ADMIN not in w.grants(no_mfa) and ADMIN in w.grants(BOB)  # …and still approved for the MFA one
    assert w.store.get_access_request(req.id).status == "approved"  # type: ignore[union-attr]


# -- a request's narrower session policy (issue 25 item 3) ------------------------------------------------------
NARROW = '{"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "s3:GetObject", ' \
         '"Resource": "arn:aws:s3:::logs/*"}]}'
NARROW_COMPACT = json.dumps(json.loads(NARROW), separators=(",", ":"))
RULE_POLICY = {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "ec2:Describe*",
                                                        "Resource": "*"}]}


def with_rule_policy(**extra: Any) -> list[dict[str, Any]]:
    out = rules()
    out[1]["grants"][0].update(extra)
    return out


def admin_grant(w: World, who: Identity) -> Any:
    return next(g for g in w.access.decide(who).grants if g.role_arn == ADMIN)


def test_an_approved_request_with_a_policy_activates_the_grant_bound_to_exactly_it(w: World) -> None:
    req = w.requests.create(BOB, w.admin_grant_id(BOB), reason="INC", duration=1800, session_policy=NARROW)
    assert req.policy == NARROW_COMPACT
    assert w.store.get_access_request(req.id).policy == NARROW_COMPACT  # type: ignore[union-attr]
    w.requests.decide(CAROL, req.id, approve=True)
    grant = admin_grant(w, BOB)
    assert grant.request_id == req.id and grant.policy == NARROW_COMPACT
    audited = [r for r in w.sink.lines if r["type"] == "access_request" and r["correlation_id"] == req.id]
    assert {r["event"] for r in audited} >= {"requested", "approved"} and all(r["policy"] == NARROW_COMPACT
                                                                              for r in audited)


def test_a_request_without_a_policy_activates_the_whole_role(w: World) -> None:
    req = w.requests.create(BOB, w.admin_grant_id(BOB), reason="INC", duration=1800, session_policy="  ")
    assert req.policy is None
    w.requests.decide(CAROL, req.id, approve=True)
    assert admin_grant(w, BOB).policy is None


@pytest.mark.parametrize("text, says", [
    ("{not json", "not JSON"),
    ('{"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "*", "Resource": "*"}]}',
     'Action "*"'),
    (json.dumps({"Version": "2012-10-17", "Statement": [{
        "Effect": "Allow", "Action": "s3:GetObject", "Resource": [f"arn:aws:s3:::b/{i:04}" for i in range(200)]}]}),
     "2048"),
])
def test_a_bad_policy_is_a_clear_error_and_nothing_is_stored(w: World, text: str, says: str) -> None:
    with pytest.raises(BadRequest) as e:
        w.requests.create(BOB, w.admin_grant_id(BOB), reason="INC", duration=1800, session_policy=text)
    assert e.value.code == "invalid_request_policy" and says in e.value.public()["message"].replace(",", "")
    assert w.store.access_requests() == [] and w.events("") == []


RO_ARNS = ["arn:aws:iam::aws:policy/ReadOnlyAccess"]


@pytest.mark.parametrize("extra", [{"policy": RULE_POLICY}, {"policy_arns": RO_ARNS}])
def test_a_policy_request_on_a_grant_with_its_own_policy_is_refused(extra: dict[str, Any]) -> None:
    w = World()
    w.set_rules(with_rule_policy(**extra))
    with pytest.raises(BadRequest) as e:
        w.requests.create(BOB, w.admin_grant_id(BOB), reason="INC", duration=1800, session_policy=NARROW)
    assert e.value.code == "request_policy_refused" and "does not combine" in e.value.public()["message"]
    assert w.store.access_requests() == []
    req = w.requests.create(BOB, w.admin_grant_id(BOB), reason="INC", duration=1800)  # without: as before
    assert req.policy is None


def test_a_rule_that_gains_its_own_policy_ends_a_policy_request_at_the_next_decision(w: World) -> None:
    req = w.requests.create(BOB, w.admin_grant_id(BOB), reason="INC", duration=1800, session_policy=NARROW)
    w.requests.decide(CAROL, req.id, approve=True)
    plain = w.requests.create(ERIN, w.admin_grant_id(ERIN), reason="INC", duration=1800)
    w.requests.decide(CAROL, plain.id, approve=True)
    w.set_rules(with_rule_policy(policy=RULE_POLICY))
    assert ADMIN not in w.grants(BOB)
    ended = w.store.get_access_request(req.id)
    assert ended is not None and ended.status == "ended" and "own session policy" in ended.end_reason
    assert "ended" in w.events(req.id)
    assert admin_grant(w, ERIN).policy is not None  # a request without a policy keeps the rule's


def test_a_pending_policy_request_cannot_be_approved_once_its_rule_has_a_policy(w: World) -> None:
    req = w.requests.create(BOB, w.admin_grant_id(BOB), reason="INC", duration=1800, session_policy=NARROW)
    w.set_rules(with_rule_policy(policy_arns=RO_ARNS))
    with pytest.raises(RequestRefused, match="own session policy"):
        w.requests.decide(CAROL, req.id, approve=True)
    assert w.store.get_access_request(req.id).status == "ended"  # type: ignore[union-attr]


def test_a_record_without_a_policy_still_loads_and_one_with_it_round_trips(w: World) -> None:
    from bridge.storage.records import AccessRequest
    req = w.requests.create(BOB, w.admin_grant_id(BOB), reason="INC", duration=1800, session_policy=NARROW)
    assert AccessRequest.from_json(json.loads(json.dumps(req.to_json()))) == req
    old = {k: v for k, v in req.to_json().items() if k != "policy"}
    assert AccessRequest.from_json(old).policy is None


def test_the_webhooks_say_a_request_narrows_the_role_without_carrying_the_policy(receiver: Receiver) -> None:
    w = World(requests={"webhook_backoff": 0, "webhooks": [
        {"url": f"{receiver.url}/json"}, {"url": f"{receiver.url}/slack", "format": "slack"},
        {"url": f"{receiver.url}/teams", "format": "teams"}]})
    w.requests.create(BOB, w.admin_grant_id(BOB), reason="INC-7", duration=900, session_policy=NARROW)
    w.requests.create(ERIN, w.admin_grant_id(ERIN), reason="INC-8", duration=900)
    assert w.requests.notifier.wait()
    sent = {(path, json.dumps(body)) for path, _, body in receiver.got}
    assert len(sent) == 6 and not any("s3:GetObject" in body for _, body in sent)  # never the policy itself
    narrowed = {path for path, body in sent if "narrower session policy" in body}
    assert narrowed == {"/slack", "/teams"}
    assert sorted(json.loads(body)["narrower_policy"] for path, body in sent if path == "/json") == [False, True]
    assert sum("narrower session policy" in body for _, body in sent) == 2  # ERIN's asks for the whole role
