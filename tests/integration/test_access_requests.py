"""Just-in-time access against a served bridge (real Redis, the strict STS, the console stand-in):
the requester asks in the portal, an approver decides on their page, the approved role works on every
path (browser credentials and console, API credentials and console for the CLI token, /go), is revoked
mid-session, and ends on time; the audit trail ties it together under the request's id; the
operators' `bridge requests` commands. The attacks of an outside review: chat markup in a reason
(real webhook receivers record the bytes each chat gets), a receiver redirecting the secret elsewhere,
an approval outliving a rules change, offboarding that left the elevation behind, cached pages."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
import requests
import yaml
from click.testing import CliRunner

from bridge.config import load_settings
from tests.conftest import ACCOUNT
from tests.integration.helpers import TestClock, WebhookReceiver, cli_token, dev_login, portal_json

pytestmark = pytest.mark.integration
ADMIN = f"arn:aws:iam::{ACCOUNT}:role/Admin"
READONLY = f"arn:aws:iam::{ACCOUNT}:role/ReadOnly"
USERS = [{"subject": "bob", "email": "bob@example.com", "name": "Bob", "groups": ["devs"], "mfa": True},
         {"subject": "carol", "email": "carol@example.com", "name": "Carol", "groups": ["sre-leads"], "mfa": True}]
RULES: list[dict[str, Any]] = [
    {"name": "readonly", "match": {"group": "devs"}, "grants": [{"role_arn": READONLY}]},
    {"name": "prod-admin", "match": {"group": "devs"},
     "grants": [{"account": "sandbox", "role": "Admin",
                 "request": {"approvers": {"group": "sre-leads"}, "max_duration": 7200, "reason_required": True}}]},
]
JSON = {"Accept": "application/json"}


class Bridge:
    def __init__(self, base: str, app: Any, audit: Path) -> None:
        self.base, self.app, self.audit = base, app, audit

    @property
    def svc(self) -> Any:
        return self.app.extensions["bridge"]

    def cli_token(self, s: requests.Session) -> str:
        return cli_token(self.base, s)

    def api(self, token: str, method: str, path: str) -> requests.Response:
        return requests.request(method, f"{self.base}{path}", headers={"Authorization": f"Bearer {token}"},
                                timeout=30)

    def records(self) -> list[dict[str, Any]]:
        return [json.loads(x) for x in self.audit.read_text(encoding="utf-8").splitlines() if x.strip()]


@pytest.fixture
def serve(live_bridge: Any, make_settings: Any, tmp_path: Path) -> Any:
    """Serve a bridge with these users and rules (and further settings); its audit trail in a file."""
    def start(users: list[dict[str, Any]] = USERS, rules: list[dict[str, Any]] = RULES, **more: Any) -> Bridge:
        audit = tmp_path / "audit.jsonl"
        settings = make_settings(connectors=[{"id": "dev", "type": "dev", "users": users}],
                                 mapping={"rules": rules}, audit={"sink": "file", "path": str(audit)},
                                 rate_limits={"credentials_per_minute": 0, **more.pop("rate_limits", {})}, **more)
        base = live_bridge(settings)
        return Bridge(base, live_bridge.app, audit)

    return start


@pytest.fixture
def bridge(serve: Any) -> Bridge:
    return serve()


def config_file(settings: Any, audit: Path, tmp_path: Path, mapping: dict[str, Any] | None = None) -> Path:
    """A bridge.yaml for a bridge of ``settings`` (its Redis, keys, STS) and ``audit`` file: what an
    operator's `bridge …` commands read, or (with ``mapping``) what a bridge loads its rules from."""
    cfg = tmp_path / "bridge.yaml"
    cfg.write_text(yaml.safe_dump({
        "base_url": settings.base_url, "secret_key": "x", "insecure_dev_login": True,
        "redis": {"url": settings.redis.url, "key_prefix": settings.redis.key_prefix},
        "issuer": {"url": settings.issuer_url, "keys_dir": str(settings.keys_dir)},
        "aws": {"sts_endpoint_url": settings.aws.sts_endpoint_url, "sts_max_attempts": 1},
        "audit": {"sink": "file", "path": str(audit)},
        "rate_limits": {"credentials_per_minute": 0},
        "connectors": [{"id": "dev", "type": "dev", "users": USERS}],
        "mapping": mapping or {"accounts": {ACCOUNT: {"alias": "sandbox"}}, "rules": RULES}}), encoding="utf-8")
    return cfg


def post_request(b: Bridge, s: requests.Session, reason: str = "INC-1234: payments down", duration: int = 3600,
                 **more: str) -> requests.Response:
    portal = portal_json(s, b.base)
    gid = next(g["id"] for g in portal["requestable"] if g["role_arn"] == ADMIN)
    return s.post(f"{b.base}/requests", data={"csrf_token": portal["csrf_token"], "grant": gid, "reason": reason,
                                              "duration": str(duration), **more}, headers=JSON, timeout=10)


def ask(b: Bridge, s: requests.Session, reason: str = "INC-1234: payments down", duration: int = 3600,
        **more: str) -> str:
    r = post_request(b, s, reason, duration, **more)
    assert r.status_code == 200, r.text
    return str(r.json()["request"]["id"])


def act(b: Bridge, s: requests.Session, request_id: str, action: str, comment: str = "") -> requests.Response:
    csrf = portal_json(s, b.base)["csrf_token"]
    return s.post(f"{b.base}/requests/{request_id}/{action}", data={"csrf_token": csrf, "comment": comment},
                  headers=JSON, timeout=10)


def test_request_approve_use_everywhere_then_revoke_mid_session(bridge: Bridge, federation_stub: Any) -> None:
    bob, carol = dev_login(bridge.base, "bob"), dev_login(bridge.base, "carol")
    token = bridge.cli_token(bob)
    portal = portal_json(bob, bridge.base)
    assert [g["role_arn"] for g in portal["grants"]] == [READONLY]
    assert [(g["role_arn"], g["state"]) for g in portal["requestable"]] == [(ADMIN, "request")]
    assert 'data-state="request"' in bob.get(f"{bridge.base}/portal", timeout=10).text
    api = bridge.api(token, "GET", "/api/v1/grants").json()
    assert [g["role_arn"] for g in api["requestable"]] == [ADMIN]  # `bridge roles` shows it as Request

    rid = ask(bridge, bob)
    assert act(bridge, bob, rid, "approve").status_code == 403  # no self-approval
    todo = carol.get(f"{bridge.base}/requests/approve", headers=JSON, timeout=10).json()["requests"]
    assert [(r["id"], r["reason"]) for r in todo] == [(rid, "INC-1234: payments down")]
    assert bob.get(f"{bridge.base}/requests/approve", headers=JSON, timeout=10).json()["requests"] == []
    r = act(bridge, carol, rid, "approve", comment="go ahead")
    assert r.status_code == 200 and r.json()["request"]["status"] == "approved", r.text

    portal = portal_json(bob, bridge.base)
    admin = next(g["id"] for g in portal["grants"] if g["role_arn"] == ADMIN)
    csrf = portal["csrf_token"]
    answers = {
        "browser credentials": bob.post(f"{bridge.base}/credentials/{admin}", data={"csrf_token": csrf},
                                        headers=JSON, timeout=30),
        "browser console": bob.post(f"{bridge.base}/console/{admin}", data={"csrf_token": csrf},
                                    allow_redirects=False, timeout=30),
        "API credentials": bridge.api(token, "POST", f"/api/v1/credentials/{admin}"),
        "API console": bridge.api(token, "POST", f"/api/v1/console/{admin}"),
    }
    assert {k: v.status_code in (200, 302, 303) for k, v in answers.items()} == dict.fromkeys(answers, True), {
        k: v.text[:200] for k, v in answers.items()}
    assert "approved request" not in api  # (the CLI shows approved roles as held)
    assert [g.get("request_id") for g in bridge.api(token, "GET", "/api/v1/grants").json()["grants"]
            if g["role_arn"] == ADMIN] == [rid]

    # revoked mid-session by the approver: every path refuses at once, the session itself lives on
    assert act(bridge, carol, rid, "revoke", comment="done").json()["request"]["status"] == "revoked"
    after = {
        "browser credentials": bob.post(f"{bridge.base}/credentials/{admin}", data={"csrf_token": csrf},
                                        headers=JSON, timeout=30),
        "API credentials": bridge.api(token, "POST", f"/api/v1/credentials/{admin}"),
        "API console": bridge.api(token, "POST", f"/api/v1/console/{admin}"),
    }
    assert {k: v.status_code for k, v in after.items()} == dict.fromkeys(after, 403)
    assert [g["role_arn"] for g in portal_json(bob, bridge.base)["grants"]] == [READONLY]

    records = [r for r in bridge.records() if r["correlation_id"] == rid]
    steps = [r.get("event") or r["type"] for r in records]
    # the refused self-approval is on the record too
    assert steps[:4] == ["requested", "refused", "approved", "activated"] and steps[-1] == "revoked", steps
    issued = [r for r in records if r["type"] in ("credentials", "console")]
    assert len(issued) >= 4 and all(r["request_id"] == rid and r["session_correlation_id"] for r in issued)


def test_an_approved_request_ends_on_time(bridge: Bridge) -> None:
    clock = TestClock()
    bridge.svc.requests.ledger.clock = clock
    bob, carol = dev_login(bridge.base, "bob"), dev_login(bridge.base, "carol")
    token = bridge.cli_token(bob)
    rid = ask(bridge, bob, duration=900)
    act(bridge, carol, rid, "approve")
    assert ADMIN in [g["role_arn"] for g in bridge.api(token, "GET", "/api/v1/grants").json()["grants"]]
    clock.advance(901)
    assert ADMIN not in [g["role_arn"] for g in bridge.api(token, "GET", "/api/v1/grants").json()["grants"]]
    assert [r["event"] for r in bridge.records() if r["correlation_id"] == rid][-1] == "expired"


def test_operators_list_approve_and_revoke_on_the_command_line(bridge: Bridge, tmp_path: Path) -> None:
    bob = dev_login(bridge.base, "bob")
    rid = ask(bridge, bob)
    cfg = config_file(bridge.svc.settings, bridge.audit, tmp_path)
    from bridge.commands.cli import main

    listed = CliRunner().invoke(main, ["requests", "list", "--config", str(cfg), "--status", "pending"])
    assert listed.exit_code == 0 and rid in listed.output and "bob@example.com" in listed.output, listed.output
    out = CliRunner().invoke(main, ["requests", "approve", "--config", str(cfg), rid, "--by", "oncall-ops",
                                    "--comment", "by phone"])
    assert out.exit_code == 0 and f"{rid}: approved" in out.output, out.output
    assert ADMIN in [g["role_arn"] for g in portal_json(bob, bridge.base)["grants"]]
    out = CliRunner().invoke(main, ["requests", "revoke", "--config", str(cfg), rid, "--by", "oncall-ops"])
    assert out.exit_code == 0 and "revoked" in out.output, out.output
    assert ADMIN not in [g["role_arn"] for g in portal_json(bob, bridge.base)["grants"]]
    again = CliRunner().invoke(main, ["requests", "deny", "--config", str(cfg), rid])
    assert again.exit_code == 1 and "request is revoked" in again.output
    decided = [r for r in bridge.records() if r["correlation_id"] == rid and r.get("event") == "approved"]
    assert decided and decided[0]["by"] == {"operator": "oncall-ops"}


# --------------------------------------------------------------------------- issue 22: the review's attacks

EVIL = ("<!channel> <https://evil.example/login|Open the request> [Open the request](https://evil.example/md) "
        "see https://evil.example/bare www.evil.example <at>General</at> @channel *bold* _it_ ~s~ `c` &amp;")
MALLORY = {"subject": "mallory", "email": "mallory@example.com", "name": "<!everyone> [boss](https://evil.example/n)",
           "groups": ["devs"], "mfa": True, "claims": {"team": "<!here> [x](https://evil.example/t)"}}
LABELLED = [{"name": "prod-admin", "match": {"group": "devs"},
             "grants": [{"account": "sandbox", "role": "Admin", "label": "Admin of {claims.team}",
                         "request": {"approvers": {"group": "sre-leads"}, "reason_required": True}}]}]


@pytest.fixture
def receiver() -> Any:
    r = WebhookReceiver()
    yield r
    r.close()


def hooks(b: Bridge, receiver: WebhookReceiver, *formats: str) -> None:
    assert b.svc.requests.notifier.wait()
    assert {p for p, _, _ in receiver.got} == {f"/{f}" for f in formats}, receiver.got


def test_slack_gets_the_reason_as_text_never_a_ping_or_a_disguised_link(serve: Any, receiver: WebhookReceiver) -> None:
    b = serve([*USERS, MALLORY], LABELLED, requests={"webhook_backoff": 0, "webhooks": [
        {"url": f"{receiver.url}/slack", "format": "slack"}, {"url": f"{receiver.url}/json"}]})
    rid = ask(b, dev_login(b.base, "mallory"), reason=EVIL)
    hooks(b, receiver, "slack", "json")
    (raw,) = receiver.bodies("/slack")
    assert b"<!" not in raw and b"<https://evil" not in raw and b"|Open the request>" in raw
    doc = json.loads(raw)
    ours = f"{b.base}/requests/approve#r-{rid}"
    texts = [doc["text"], *(blk["text"]["text"] for blk in doc["blocks"])]
    for text in texts:
        # Slack's control sequences are <…>: the one link is ours; the reason, name and label are text
        assert re.findall(r"<([^>]*)>", text) == [f"{ours}|Open the request"], text
        assert "&lt;!channel&gt; &lt;https[:]//evil.example/login|Open the request&gt;" in text, text
        assert "&lt;!here&gt;" in text and "&amp;amp;" in text, text  # the label from a claim, a literal &amp;
        assert text.count("://") == 1, text  # no bare URL of theirs for the chat to turn into a link
    assert all(blk["text"]["verbatim"] is True for blk in doc["blocks"])  # no auto-linked names or URLs
    (data,) = receiver.bodies("/json")
    assert json.loads(data)["reason"] == EVIL  # the JSON receiver gets the data as it was written


def test_slack_compatible_chats_get_no_mention_and_no_markdown_link_either(serve: Any,
                                                                         receiver: WebhookReceiver) -> None:
    """Attack (issue 22 item 10): the ``slack`` payload goes to Slack-compatible chats too — Mattermost,
    Rocket.Chat, Discord's ``/slack`` webhooks — which render ``text`` as Markdown and turn ``@channel``,
    ``@all``, ``@here``, ``@everyone`` or ``@ceo`` into pings and ``[Open the request](//evil/x)`` into a
    link (protocol-relative: no scheme to defang). Slack escaping (``&<>``) stopped neither."""
    b = serve([*USERS, MALLORY], LABELLED, requests={"webhook_backoff": 0, "webhooks": [
        {"url": f"{receiver.url}/slack", "format": "slack"}]})
    reason = ("@channel @all @here @everyone ping @ceo now; [Open the request](//evil.example/x) "
              "[ref][1] ![img](//evil.example/i.png) (mail bob@example.com)")
    ask(b, dev_login(b.base, "mallory"), reason=reason)
    hooks(b, receiver, "slack")
    doc = json.loads(receiver.bodies("/slack")[0])
    for text in (doc["text"], doc["blocks"][0]["text"]["text"]):
        assert re.search(r"(?<![\w.+-])@\w", text) is None, text  # no mention a chat would parse
        assert re.search(r"\]\s*[(\[]", text) is None, text  # no Markdown inline or reference link
        assert "bob@example.com" in text and "mallory@example.com" in text  # e-mails read as they are
        assert "channel" in text and "Open the request" in text and "evil.example/x" in text  # …and the rest


def test_teams_gets_markdown_escaped_text_and_no_link_or_mention_of_theirs(serve: Any,
                                                                           receiver: WebhookReceiver) -> None:
    b = serve([*USERS, MALLORY], LABELLED, requests={"webhook_backoff": 0, "webhooks": [
        {"url": f"{receiver.url}/teams", "format": "teams"}]})
    rid = ask(b, dev_login(b.base, "mallory"), reason=EVIL)
    hooks(b, receiver, "teams")
    (raw,) = receiver.bodies("/teams")
    doc = json.loads(raw)
    assert doc["type"] == "message" and b"msteams" not in raw  # no mention entities
    (card,) = doc["attachments"]
    assert card["contentType"] == "application/vnd.microsoft.card.adaptive"
    content = card["content"]
    assert content["actions"] == [{"type": "Action.OpenUrl", "title": "Open the request",
                                   "url": f"{b.base}/requests/approve#r-{rid}"}]
    text = "\n".join(blk["text"] for blk in content["body"])
    assert raw.count(b"://") == 1  # only the action's URL: the reason's are defanged
    # every Markdown special of theirs comes escaped: no link, no emphasis, no HTML-ish mention
    assert re.search(r"(?<!\\)[\[\]()<>*_~`]", text.replace("\\\\", "")) is None, text
    assert r"\<at\>General\</at\>" in text and r"\[Open the request\]\(https\[:\]//evil.example/md\)" in text
    assert r"\<\!here\>" in text and "mallory@example.com" in text  # label from a claim, the requester


def test_a_webhook_receivers_redirect_is_not_followed_with_the_secret(serve: Any, bridge_logs: Any) -> None:
    elsewhere = WebhookReceiver()
    redirecting = WebhookReceiver(redirect_to=f"{elsewhere.url}/stolen")
    try:
        b = serve(requests={"webhook_backoff": 0, "webhook_attempts": 2, "webhooks": [
            {"url": f"{redirecting.url}/hook", "secret_header": {"name": "X-Bridge-Secret", "value": "hook-s3cret"}}]})
        ask(b, dev_login(b.base, "bob"))
        assert b.svc.requests.notifier.wait()
        assert elsewhere.got == []  # the other port never saw the secret (nor anything else)
        assert [(p, h.get("X-Bridge-Secret")) for p, h, _ in redirecting.got] == [("/hook", "hook-s3cret")] * 2
        assert b.svc.requests.notifier.failed == 1 and b.svc.requests.notifier.delivered == 0
        failed = [json.loads(x) for x in bridge_logs.lines if '"webhook_failed"' in x]
        assert failed and "redirect" in failed[-1]["reason"], failed
        assert "hook-s3cret" not in bridge_logs.text and "/stolen" not in bridge_logs.text
    finally:
        elsewhere.close()
        redirecting.close()


def write_rules(path: Path, rules: list[dict[str, Any]]) -> None:
    path.write_text(yaml.safe_dump({"accounts": {ACCOUNT: {"alias": "sandbox"}}, "rules": rules}), encoding="utf-8")


def test_a_rules_change_ends_an_approval_that_does_not_come_back_with_the_rule(
        make_settings: Any, live_bridge: Any, tmp_path: Path) -> None:
    rules, audit = tmp_path / "rules.yaml", tmp_path / "audit.jsonl"
    write_rules(rules, RULES)  # served from a config file whose rules file reloads
    settings = load_settings(config_file(make_settings(), audit, tmp_path, mapping={"rules_file": "rules.yaml"}))
    b = Bridge(live_bridge(settings), live_bridge.app, audit)
    bob, carol = dev_login(b.base, "bob"), dev_login(b.base, "carol")
    rid = ask(b, bob)
    assert act(b, carol, rid, "approve").json()["request"]["status"] == "approved"
    admin = next(g["id"] for g in portal_json(bob, b.base)["grants"] if g["role_arn"] == ADMIN)

    def reload(new: list[dict[str, Any]]) -> None:  # what SIGHUP does in each worker
        write_rules(rules, new)
        b.svc.access.rules.request_reload()
        b.svc.access.rules.maybe_reload()
        assert b.svc.access.rules.last_failure is None, b.svc.access.rules.last_problems

    reload(RULES[:1])  # the on-request rule is gone…
    reload(RULES)  # …and back: nobody used the bridge in between
    mine = bob.get(f"{b.base}/requests", headers=JSON, timeout=10).json()
    (req,) = mine["requests"]
    assert (req["id"], req["status"]) == (rid, "ended") and "rule" in req["end_reason"], req
    assert "ended" in bob.get(f"{b.base}/requests", timeout=10).text  # what the requester reads
    portal = portal_json(bob, b.base)
    assert [g["role_arn"] for g in portal["grants"]] == [READONLY]
    assert [g["role_arn"] for g in portal["requestable"]] == [ADMIN]  # to be asked (and approved) anew
    r = bob.post(f"{b.base}/credentials/{admin}", data={"csrf_token": portal["csrf_token"]}, headers=JSON, timeout=30)
    assert r.status_code == 403, r.text
    records = [x for x in b.records() if x["correlation_id"] == rid]
    assert [x.get("event") for x in records if x["type"] == "access_request"][-1] == "ended"
    assert not [x for x in records if x["type"] in ("credentials", "console")]  # nothing issued under it


def test_offboarding_ends_the_users_access_requests(bridge: Bridge, tmp_path: Path) -> None:
    bob, carol = dev_login(bridge.base, "bob"), dev_login(bridge.base, "carol")
    rid = ask(bridge, bob)
    act(bridge, carol, rid, "approve")
    assert ADMIN in [g["role_arn"] for g in portal_json(bob, bridge.base)["grants"]]
    from bridge.commands.cli import main

    cfg = config_file(bridge.svc.settings, bridge.audit, tmp_path)
    out = CliRunner().invoke(main, ["sessions", "revoke", "--config", str(cfg), "--user", "bob@example.com"])
    assert out.exit_code == 0, out.output
    assert "1 access request(s)" in out.output, out.output
    again = dev_login(bridge.base, "bob")  # bob signs in again: the elevation is gone
    portal = portal_json(again, bridge.base)
    assert [g["role_arn"] for g in portal["grants"]] == [READONLY]
    (req,) = again.get(f"{bridge.base}/requests", headers=JSON, timeout=10).json()["requests"]
    assert req["status"] == "revoked" and "offboard" in req["end_reason"], req
    assert carol.get(f"{bridge.base}/requests/approve", headers=JSON, timeout=10).json()["requests"] == []
    revoked = [x for x in bridge.records() if x["correlation_id"] == rid and x.get("event") == "revoked"]
    assert revoked and revoked[0]["by"] == {"operator": "bridge sessions revoke"}
    (revocation,) = [x for x in bridge.records() if x["type"] == "revocation"]
    assert revocation["access_requests"] == 1 and revocation["sessions"] == 1


def test_request_pages_are_never_cached(bridge: Bridge) -> None:
    bob, carol = dev_login(bridge.base, "bob"), dev_login(bridge.base, "carol")
    ask(bridge, bob)
    assert "bob@example.com" in carol.get(f"{bridge.base}/requests/approve", timeout=10).text  # someone else's
    for who, path in ((bob, "/requests"), (carol, "/requests/approve")):
        for headers in ({}, JSON):
            r = who.get(f"{bridge.base}{path}", headers=headers, timeout=10)
            assert r.status_code == 200 and "csrf_token" in r.text, r.text[:300]
            assert r.headers.get("Cache-Control") == "no-store", (path, headers, r.headers)


def _policy(**request: Any) -> list[dict[str, Any]]:
    """RULES with the on-request grant's ``request`` policy changed."""
    grant = RULES[1]["grants"][0]
    return [RULES[0], {**RULES[1], "grants": [{**grant, "request": {**grant["request"], **request}}]}]


def test_an_approval_ends_when_its_rule_no_longer_allows_it_as_approved(
        make_settings: Any, live_bridge: Any, tmp_path: Path) -> None:
    """Attack (issue 22 item 10): only a rule that went away ended an approval. A rule still there but now
    stricter did not: a 2 h window went on after ``max_duration`` became 15 min, a break-glass activation
    after ``break_glass`` was turned off (say, because it was being abused), and a pending request for longer
    than the rule now allows could still be approved for its whole duration."""
    rules, audit = tmp_path / "rules.yaml", tmp_path / "audit.jsonl"
    write_rules(rules, _policy(break_glass=True))
    settings = load_settings(config_file(make_settings(), audit, tmp_path, mapping={"rules_file": "rules.yaml"}))
    b = Bridge(live_bridge(settings), live_bridge.app, audit)
    bob, carol = dev_login(b.base, "bob"), dev_login(b.base, "carol")

    def reload(new: list[dict[str, Any]]) -> None:
        write_rules(rules, new)
        b.svc.access.rules.request_reload()
        b.svc.access.rules.maybe_reload()
        assert b.svc.access.rules.last_failure is None, b.svc.access.rules.last_problems

    def status(rid: str) -> dict[str, Any]:
        return next(r for r in bob.get(f"{b.base}/requests", headers=JSON, timeout=10).json()["requests"]
                    if r["id"] == rid)

    def holds_admin() -> bool:
        return ADMIN in [g["role_arn"] for g in portal_json(bob, b.base)["grants"]]

    # 1. An approved 2 h window, then the rule allows at most 15 minutes: the approval ends.
    rid = ask(b, bob, duration=7200)
    assert act(b, carol, rid, "approve").json()["request"]["status"] == "approved" and holds_admin()
    reload(_policy(break_glass=True, max_duration=900))
    assert not holds_admin()
    req = status(rid)
    assert req["status"] == "ended" and "at most 15 min" in req["end_reason"], req

    # 2. Break-glass, then the rule no longer allows it: the activation ends.
    reload(_policy(break_glass=True))
    portal = portal_json(bob, b.base)
    gid = next(g["id"] for g in portal["requestable"] if g["role_arn"] == ADMIN)
    r = bob.post(f"{b.base}/requests", data={"csrf_token": portal["csrf_token"], "grant": gid, "reason": "prod down",
                                             "duration": "3600", "break_glass": "1"}, headers=JSON, timeout=10)
    glass = r.json()["request"]["id"]
    assert r.json()["request"]["status"] == "approved" and holds_admin()
    reload(_policy(break_glass=False))
    assert not holds_admin()
    req = status(glass)
    assert req["status"] == "ended" and "break-glass" in req["end_reason"], req

    # 3. A pending 2 h request, then at most 1 h: it is ended, and no approver can give the 2 h any more.
    pending = ask(b, bob, duration=7200)
    reload(_policy(max_duration=3600))
    r = act(b, carol, pending, "approve")
    assert r.status_code == 403 and not holds_admin(), r.text
    req = status(pending)
    assert req["status"] == "ended" and "at most 60 min" in req["end_reason"], req
    records = [x for x in b.records() if x["type"] == "access_request" and x.get("event") == "ended"]
    assert {x["request_id"] for x in records} == {rid, glass, pending}
    # A request the stricter rule allows is untouched by it.
    ok = ask(b, bob, duration=1800)
    assert act(b, carol, ok, "approve").json()["request"]["status"] == "approved"
    reload(_policy(max_duration=1800))
    assert holds_admin() and status(ok)["status"] == "approved"


def test_a_requester_cannot_flood_the_approvers_chat(serve: Any, receiver: WebhookReceiver) -> None:
    """Attack (issue 22 item 10): asking and withdrawing, again and again, each a notification to every
    webhook, limited only by the credentials budget (120 a minute) and withdrawing not at all: approvers'
    chats flooded, and with one webhook thread behind a throttling chat, the queue full — a real request or
    a break-glass alert then dropped. Now asking counts against ``rate_limits.requests_per_minute`` per user
    (and a request is withdrawn, like decided, once)."""
    b = serve(requests={"webhook_backoff": 0, "webhooks": [{"url": f"{receiver.url}/json"}]})  # the default: 10
    clock = TestClock()
    clock.to_window_start()
    b.svc.store.clock = clock
    bob = dev_login(b.base, "bob")
    answers = []
    for _ in range(11):
        portal = portal_json(bob, b.base)
        gid = next((g["id"] for g in portal["requestable"] if g["role_arn"] == ADMIN), None)
        r = bob.post(f"{b.base}/requests", data={"csrf_token": portal["csrf_token"], "grant": gid, "reason": "x",
                                                 "duration": "3600"}, headers=JSON, timeout=10)
        answers.append(r.status_code)
        if r.status_code == 200:
            answers.append(act(b, bob, r.json()["request"]["id"], "revoke").status_code)
    assert answers[:20] == [200] * 20 and answers[20:] == [429], answers
    assert b.svc.requests.notifier.wait()
    assert len(receiver.bodies("/json")) == 20  # ten asked, ten withdrawn: nothing more reached the chat
    carol = dev_login(b.base, "carol")  # another user has a budget of their own
    assert carol.get(f"{b.base}/requests/approve", headers=JSON, timeout=10).status_code == 200


NARROW = {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": ["s3:GetObject", "s3:ListBucket"],
                                                   "Resource": "arn:aws:s3:::logs/<b>incident</b>/*"}]}


def _admin_credentials(b: Bridge, s: requests.Session) -> requests.Response:
    portal = portal_json(s, b.base)
    admin = next(g["id"] for g in portal["grants"] if g["role_arn"] == ADMIN)
    return s.post(f"{b.base}/credentials/{admin}", data={"csrf_token": portal["csrf_token"]}, headers=JSON,
                  timeout=30)


def test_a_request_with_a_narrower_policy_sends_exactly_it_to_sts(bridge: Bridge, strict_sts_peer: Any) -> None:
    bob, carol = dev_login(bridge.base, "bob"), dev_login(bridge.base, "carol")
    form = bob.get(f"{bridge.base}/requests", timeout=10).text
    assert "Narrow the session (optional): an IAM policy JSON" in form and 'name="policy"' in form
    rid = ask(bridge, bob, policy=json.dumps(NARROW, indent=4))
    mine = bob.get(f"{bridge.base}/requests", timeout=10).text
    assert "With a narrower policy" in mine and "&lt;b&gt;incident" in mine
    page = carol.get(f"{bridge.base}/requests/approve", timeout=10).text
    assert "With a narrower policy" in page and "&lt;b&gt;incident&lt;/b&gt;" in page and "<b>incident" not in page
    assert "\n  &#34;Statement&#34;: [" in page  # pretty-printed for the approver (escaped like any text)
    assert act(bridge, carol, rid, "approve").status_code == 200
    assert "by request with a narrower policy" in bob.get(f"{bridge.base}/portal", timeout=10).text
    token = bridge.cli_token(bob)
    held = [g for g in bridge.api(token, "GET", "/api/v1/grants").json()["grants"] if g["role_arn"] == ADMIN]
    assert [(g["request_id"], g.get("narrower_policy")) for g in held] == [(rid, True)]

    strict_sts_peer.reset()
    r = _admin_credentials(bridge, bob)
    assert r.status_code == 200, r.text
    [call] = [c for c in strict_sts_peer.seen if c.role_arn == ADMIN]
    assert call.params["Policy"] == json.dumps(NARROW, separators=(",", ":"))  # exactly the request's, compact
    assert bridge.api(token, "POST", f"/api/v1/credentials/{held[0]['id']}").status_code == 200
    assert all(c.params.get("Policy") == call.params["Policy"] for c in strict_sts_peer.seen if c.role_arn == ADMIN)


def test_a_request_without_a_policy_sends_none(bridge: Bridge, strict_sts_peer: Any) -> None:
    bob, carol = dev_login(bridge.base, "bob"), dev_login(bridge.base, "carol")
    rid = ask(bridge, bob, policy="")
    assert act(bridge, carol, rid, "approve").status_code == 200
    assert "with a narrower policy" not in bob.get(f"{bridge.base}/portal", timeout=10).text
    strict_sts_peer.reset()
    assert _admin_credentials(bridge, bob).status_code == 200
    [call] = [c for c in strict_sts_peer.seen if c.role_arn == ADMIN]
    assert "Policy" not in call.params


@pytest.mark.parametrize("policy, says", [
    ("{not json", "not JSON"),
    (json.dumps({"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "*",
                                                          "Resource": "arn:aws:s3:::logs/*"}]}), 'Action "*"'),
    (json.dumps({"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "s3:GetObject", "Resource": [
        f"arn:aws:s3:::logs/{i:04}" for i in range(200)]}]}), "2048"),
])
def test_a_bad_policy_is_a_clear_error_and_nothing_is_stored(bridge: Bridge, policy: str, says: str) -> None:
    bob = dev_login(bridge.base, "bob")
    r = post_request(bridge, bob, policy=policy)
    assert r.status_code == 400 and r.json()["error"] == "invalid_request_policy", r.text
    assert says in r.json()["message"] and "Traceback" not in r.text
    assert bob.get(f"{bridge.base}/requests", headers=JSON, timeout=10).json()["requests"] == []
    assert not [x for x in bridge.records() if x["type"] == "access_request"]


def test_a_role_whose_rule_sends_its_own_policy_offers_no_narrowing_and_refuses_one(serve: Any) -> None:
    rules = json.loads(json.dumps(RULES))
    rules[1]["grants"][0]["policy_arns"] = ["arn:aws:iam::aws:policy/ReadOnlyAccess"]
    b = serve(rules=rules)
    bob = dev_login(b.base, "bob")
    assert 'name="policy"' not in bob.get(f"{b.base}/requests", timeout=10).text
    r = post_request(b, bob, policy=json.dumps(NARROW))
    assert r.status_code == 400 and r.json()["error"] == "request_policy_refused", r.text
    assert "does not combine" in r.json()["message"]
    assert bob.get(f"{b.base}/requests", headers=JSON, timeout=10).json()["requests"] == []
