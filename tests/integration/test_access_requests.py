"""Just-in-time access against a served bridge (real Redis, the strict STS, the console stand-in):
the requester asks in the portal, an approver decides on their page, the approved role works on every
path (browser credentials and console, API credentials and console for the CLI token, /go), is revoked
mid-session, and ends on time; the audit trail ties it together under the request's id; the
operators' `bridge requests` commands."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import requests
import yaml
from click.testing import CliRunner

from tests.conftest import ACCOUNT
from tests.integration.helpers import TestClock, cli_token, dev_login, portal_json

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
def bridge(live_bridge: Any, make_settings: Any, tmp_path: Path) -> Bridge:
    audit = tmp_path / "audit.jsonl"
    settings = make_settings(connectors=[{"id": "dev", "type": "dev", "users": USERS}],
                             mapping={"rules": RULES}, audit={"sink": "file", "path": str(audit)},
                             rate_limits={"credentials_per_minute": 0})
    base = live_bridge(settings)
    return Bridge(base, live_bridge.app, audit)


def ask(b: Bridge, s: requests.Session, reason: str = "INC-1234: payments down", duration: int = 3600) -> str:
    portal = portal_json(s, b.base)
    gid = next(g["id"] for g in portal["requestable"] if g["role_arn"] == ADMIN)
    r = s.post(f"{b.base}/requests", data={"csrf_token": portal["csrf_token"], "grant": gid, "reason": reason,
                                           "duration": str(duration)}, headers=JSON, timeout=10)
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
    bridge.svc.requests.clock = clock
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
    settings = bridge.svc.settings
    cfg = tmp_path / "bridge.yaml"
    cfg.write_text(yaml.safe_dump({
        "base_url": settings.base_url, "secret_key": "x", "insecure_dev_login": True,
        "redis": {"url": settings.redis.url, "key_prefix": settings.redis.key_prefix},
        "issuer": {"url": settings.issuer_url, "keys_dir": str(settings.keys_dir)},
        "audit": {"sink": "file", "path": str(bridge.audit)},
        "connectors": [{"id": "dev", "type": "dev", "users": USERS}],
        "mapping": {"accounts": {ACCOUNT: {"alias": "sandbox"}}, "rules": RULES}}), encoding="utf-8")
    from bridge.cli import main

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
