"""`bridge sessions revoke --aws-policy scp|inline` (the deny policy for credentials already issued) and
`bridge rules diff --audit` — both read the live sessions, faked here (the store has its own tests)."""

from __future__ import annotations

import json
import re
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from click.testing import CliRunner

from bridge.commands.cli import main
from bridge.config import load_settings
from bridge.core.access import Decision
from bridge.domain.identity import identity_from_sample
from bridge.mapping import GrantDefaults, decide

ROOT = Path(__file__).resolve().parents[2]
DEMO = str(ROOT / "config" / "demo.yaml")
ALICE = identity_from_sample(json.loads((ROOT / "config" / "demo-identity.json").read_text()))


class FakeServices:
    """What the two commands use of Services: the settings, sessions, access, the auditor."""

    def __init__(self, identities: list[Any]) -> None:
        self.settings = load_settings(DEMO)
        self.records: list[tuple[str, dict[str, Any]]] = []
        self._identities = identities
        self.sessions = SimpleNamespace(of_user=self.of_user, revoke_user=self.revoke_user)
        self.access = SimpleNamespace(decide=self.decide)
        self.auditor = SimpleNamespace(record=lambda type_, ctx, **kw: self.records.append((type_, kw)))
        # access requests: their own tests (test_access_requests.py); this user has none
        self.requests = SimpleNamespace(end_for_user=lambda user, by: [])

    def of_user(self, user: str) -> list[tuple[str, Any]]:
        return [(f"s{i}", SimpleNamespace(identity=ident)) for i, ident in enumerate(self._identities)
                if user in (ident.email, ident.subject)]

    def revoke_user(self, user: str) -> Any:
        n = len(self.of_user(user))
        self._identities = [i for i in self._identities if user not in (i.email, i.subject)]
        return SimpleNamespace(sessions=n, tokens=0)

    def decide(self, identity: Any) -> Decision:
        d = decide(self.settings.mapping, identity, GrantDefaults("sts.amazonaws.com", "jwt", "FederationBridge"))
        return Decision(d.grants, d.locked, "v", identity=identity)


@pytest.fixture
def fake(monkeypatch: pytest.MonkeyPatch) -> FakeServices:
    svc = FakeServices([ALICE])
    monkeypatch.setattr("bridge.commands.sessions.services_from", lambda path: svc)
    monkeypatch.setattr("bridge.commands._common.services_from", lambda path: svc)
    return svc


def _policy(output: str) -> dict[str, Any]:
    return json.loads(re.search(r"<<'EOF'\n(.*?)\nEOF", output, re.S)[1])  # type: ignore[index]


def test_revoke_prints_the_deny_policy_as_inline_role_policies(fake: FakeServices) -> None:
    r = CliRunner().invoke(main, ["sessions", "revoke", "--config", DEMO, "--user", "alice@example.com",
                                  "--aws-policy", "inline"])
    assert r.exit_code == 0, r.output
    assert r.output.startswith("revoked 1 session(s) and 0 CLI login(s) of alice@example.com")
    by_sid = {s["Sid"]: s for s in _policy(r.output)["Statement"]}
    # Admin sets a source identity; the other roles' sessions are found by session name
    assert by_sid["BridgeRevokedSourceIdentities"]["Condition"]["StringEquals"] == {
        "aws:SourceIdentity": ["alice@example.com"]}
    assert by_sid["BridgeRevokedSessionNames"]["Condition"]["StringLike"] == {"aws:userid": ["*:alice@example.com"]}
    roles = re.findall(r"aws iam put-role-policy --role-name (\w+) ", r.output)
    # chained roles too (their sessions live there; a vendor's role takes the policy from its own admins)
    assert roles == ["Admin", "ReadOnly", "PlatformDeploy", "Billing", "Developer", "VendorAudit"]
    assert "add alice@example.com to RevokedSourceIdentities and set RevokedBefore=" in r.output
    assert fake.records[0][0] == "revocation"


def test_revoke_as_an_scp_and_without_a_live_session(fake: FakeServices) -> None:
    r = CliRunner().invoke(main, ["sessions", "revoke", "--config", DEMO, "--user", "zed@example.com",
                                  "--aws-policy", "scp"])
    assert r.exit_code == 0, r.output
    assert "note: no live session of zed@example.com" in r.output
    assert "aws organizations create-policy --type SERVICE_CONTROL_POLICY" in r.output
    assert "aws organizations attach-policy" in r.output
    statements = _policy(r.output)["Statement"]
    assert statements[0]["Condition"]["StringEquals"] == {"aws:SourceIdentity": ["zed@example.com"]}


def test_revoke_without_aws_policy_is_unchanged(fake: FakeServices) -> None:
    r = CliRunner().invoke(main, ["sessions", "revoke", "--config", DEMO, "--user", "alice@example.com"])
    assert r.exit_code == 0 and r.output == ("revoked 1 session(s) and 0 CLI login(s) of alice@example.com\n"
                                             "revoked 0 access request(s) of alice@example.com (pending or approved)\n")


def test_rules_diff_over_the_audit_trail_uses_live_sessions(fake: FakeServices, tmp_path: Path) -> None:
    trail = tmp_path / "audit.jsonl"
    trail.write_text("\n".join(json.dumps(r) for r in [
        {"type": "sign_in", "outcome": "success",
         "who": {"issuer": "sample", "subject": "alice", "email": "alice@example.com", "connector": "dev"}},
        {"type": "sign_in", "outcome": "success",
         "who": {"issuer": "x", "subject": "gone", "email": "gone@example.com", "connector": "dev"}}]) + "\n")
    r = CliRunner().invoke(main, ["rules", "diff", "--config", DEMO, "--against",
                                  str(ROOT / "docs" / "examples" / "demo-rules-before.yaml"), "--audit", str(trail)])
    assert r.exit_code == 0, r.output
    assert "note: gone@example.com (dev:gone): no live session" in r.output
    assert "1 identities, 0 changed" in r.output
