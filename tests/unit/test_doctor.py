"""`bridge doctor`: a trust policy against what the bridge sends (bridge/aws/doctor.py): one finding per
thing AWS would refuse, with the fix; exit 1 when it would fail."""

from __future__ import annotations

import copy
import json
import urllib.parse
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from bridge.aws.doctor import RoleDocument, Sample, diagnose, evaluate_condition, read_role_document
from bridge.aws.iam_setup import Environment, RoleSent, trust_policy
from bridge.commands.cli import main

ROOT = Path(__file__).resolve().parents[2]
DEMO = str(ROOT / "config" / "demo.yaml")
ADMIN = "arn:aws:iam::123456789012:role/Admin"
OIDC = "arn:aws:iam::123456789012:oidc-provider/bridge.example.com"
ENV = Environment("https://bridge.example.com", "aws", "https://signin.aws.amazon.com/saml")
ROLE = RoleSent(arn=ADMIN, partition="aws", account="123456789012", path="/", name="Admin", rules=("admins",),
                paths=("jwt",), audiences=("sts.amazonaws.com",), tag_keys=("Email", "Team"),
                always_tags={"Team": "platform"}, transitive_keys=(), source_identity=True, max_duration=43200)
GOOD = trust_policy(ROLE, ENV)


def codes(policy: dict[str, Any], max_s: int | None = 43200, role: RoleSent = ROLE, **kw: Any) -> list[str]:
    return [f.code for f in diagnose(RoleDocument(policy, max_s), role, ENV, **kw).findings]


def edited(**changes: Any) -> dict[str, Any]:
    p = copy.deepcopy(GOOD)
    p["Statement"][0].update(changes)
    return p


def test_the_generated_policy_is_fine() -> None:
    assert codes(GOOD) == []
    assert codes(trust_policy(ROLE, ENV, harden=True)) == []


def test_missing_tag_session_and_set_source_identity() -> None:
    d = diagnose(RoleDocument(edited(Action="sts:AssumeRoleWithWebIdentity"), 43200), ROLE, ENV)
    assert [f.code for f in d.findings] == ["action", "action"]
    assert "sts:TagSession is not allowed, and the rules send session tags (Email, Team)" in str(d.findings[0])
    assert 'fix: add "sts:SetSourceIdentity"' in str(d.findings[1])


def test_wildcard_actions_are_allowed() -> None:
    assert codes(edited(Action="sts:*")) == []
    assert codes(edited(Action=["sts:AssumeRole*", "sts:TagSession", "sts:SetSourceIdentity"])) == []


@pytest.mark.parametrize("key", ["https://bridge.example.com:aud", "bridge.example.com/:aud", "sts.amazonaws.com:aud"])
def test_wrong_audience_key(key: str) -> None:
    d = diagnose(RoleDocument(edited(Condition={"StringEquals": {key: "sts.amazonaws.com"}}), 43200), ROLE, ENV)
    assert [f.code for f in d.findings] == ["audience-key"]
    assert "use the key 'bridge.example.com:aud'" in str(d.findings[0])


def test_wrong_audience_value() -> None:
    d = diagnose(RoleDocument(edited(Condition={"StringEquals": {"bridge.example.com:aud": "my-app"}}), 43200),
                 ROLE, ENV)
    assert [f.code for f in d.findings] == ["audience"] and "allow 'sts.amazonaws.com'" in str(d.findings[0])


@pytest.mark.parametrize(("principal", "why"), [
    ("arn:aws:iam::999999999999:oidc-provider/bridge.example.com", "in account 999999999999"),
    ("arn:aws:iam::123456789012:oidc-provider/other.example.com", "the bridge's provider is " + OIDC),
    ("arn:aws:iam::123456789012:saml-provider/FederationBridge", "by web identity (jwt)"),
])
def test_provider_arn_mismatch(principal: str, why: str) -> None:
    d = diagnose(RoleDocument(edited(Principal={"Federated": principal}), 43200), ROLE, ENV)
    assert [f.code for f in d.findings] == ["principal"] and why in str(d.findings[0])
    assert f'set Principal.Federated to "{OIDC}"' in str(d.findings[0])


def test_max_session_duration_below_the_rules_maximum() -> None:
    d = diagnose(RoleDocument(GOOD, 3600), ROLE, ENV)
    assert [f.code for f in d.findings] == ["max-session-duration"]
    assert "aws iam update-role --role-name Admin --max-session-duration 43200" in str(d.findings[0])
    assert any("MaxSessionDuration not checked" in n for n in diagnose(RoleDocument(GOOD), ROLE, ENV).notes)


def test_an_explicit_deny_wins() -> None:
    p = copy.deepcopy(GOOD)
    p["Statement"].append({"Sid": "NoTags", "Effect": "Deny", "Principal": {"Federated": OIDC},
                           "Action": "sts:TagSession"})
    assert codes(p) == ["deny"]


def test_conditions_on_what_the_bridge_sends() -> None:
    assert codes(edited(Condition={"StringEquals": {"bridge.example.com:aud": "sts.amazonaws.com",
                                                    "aws:RequestTag/Team": "platform"}})) == []
    assert codes(edited(Condition={"StringEquals": {"aws:RequestTag/Team": "finance"}})) == ["condition"]
    assert codes(edited(Condition={"StringEquals": {"aws:RequestTag/Missing": "x"}})) == ["condition"]
    # depends on the user without a sample: a note, not a finding; decided with one
    cond = {"StringEquals": {"aws:RequestTag/Email": "alice@example.com"}}
    d = diagnose(RoleDocument(edited(Condition=cond), 43200), ROLE, ENV)
    assert d.ok and any("depends on the user" in n for n in d.notes)
    sample = Sample("u-" + "1" * 40, {"Email": "bob@example.com", "Team": "platform"}, (), "bob")
    assert codes(edited(Condition=cond), sample=sample) == ["condition"]


@pytest.mark.parametrize(("op", "key", "want", "expected"), [
    ("StringNotEquals", "absent", "x", True), ("StringEqualsIfExists", "absent", "x", True),
    ("StringEquals", "absent", "x", False), ("Null", "absent", "true", True), ("Null", "k", "false", True),
    ("StringLike", "k", "v*", True), ("StringEqualsIgnoreCase", "k", "VALUE", True),
    ("ForAllValues:StringEquals", "keys", ["a", "b", "c"], True), ("ForAllValues:StringEquals", "keys", ["a"], False),
    ("ForAnyValue:StringEquals", "keys", ["b"], True), ("ForAnyValue:StringEquals", "absent", ["b"], False),
    ("DateLessThan", "t", "2030-01-01T00:00:00Z", True), ("Bool", "b", True, True),
])
def test_condition_operators(op: str, key: str, want: Any, expected: bool) -> None:
    ctx: dict[str, Any] = {"k": ["value"], "keys": ["a", "b"], "t": ["2026-01-01T00:00:00Z"], "b": ["true"]}
    assert evaluate_condition(op, key, want, ctx) is expected


def test_reads_get_role_output_bare_policies_and_url_encoded_documents() -> None:
    doc = read_role_document({"Role": {"Arn": ADMIN, "MaxSessionDuration": 7200,
                                       "AssumeRolePolicyDocument": urllib.parse.quote(json.dumps(GOOD))}})
    assert doc.policy == GOOD and doc.max_session_duration == 7200 and doc.arn == ADMIN
    assert read_role_document(GOOD).max_session_duration is None
    with pytest.raises(ValueError):
        read_role_document({"Version": "2012-10-17"})


BROKEN = {"Role": {"RoleName": "Admin", "Arn": ADMIN, "MaxSessionDuration": 3600, "AssumeRolePolicyDocument": {
    "Version": "2012-10-17", "Statement": [{
        "Effect": "Allow", "Principal": {"Federated": OIDC},
        "Action": ["sts:AssumeRoleWithWebIdentity", "sts:SetSourceIdentity"],
        "Condition": {"StringEquals": {"https://bridge.example.com:aud": "sts.amazonaws.com"}}}]}}}


def test_cli_on_a_broken_policy_exits_1_with_one_line_per_problem(tmp_path: Path) -> None:
    (tmp_path / "role.json").write_text(json.dumps(BROKEN))
    r = CliRunner().invoke(main, ["doctor", "--config", DEMO, "--role", ADMIN, "--trust-policy",
                                  str(tmp_path / "role.json")])
    assert r.exit_code == 1
    lines = r.output.splitlines()
    assert [ln.split(":")[1].strip() for ln in lines if ln.startswith("refused:")] == [
        "audience-key", "action", "max-session-duration"]
    assert lines[-1].startswith("3 problem(s): AWS would refuse the bridge for " + ADMIN)


def test_committed_transcript_is_current(tmp_path: Path) -> None:
    (tmp_path / "role.json").write_text(json.dumps(BROKEN))
    r = CliRunner().invoke(main, ["doctor", "--config", DEMO, "--role", ADMIN, "--trust-policy",
                                  str(tmp_path / "role.json")])
    transcript = (ROOT / "docs" / "examples" / "doctor-broken-trust-policy.txt").read_text()
    assert r.output in transcript


def test_cli_with_an_identity_checks_its_grant(tmp_path: Path) -> None:
    fixed = copy.deepcopy(BROKEN)
    fixed["Role"]["MaxSessionDuration"] = 43200
    fixed["Role"]["AssumeRolePolicyDocument"] = trust_policy(ROLE, ENV, harden=False)
    (tmp_path / "role.json").write_text(json.dumps(fixed))
    args = ["doctor", "--config", DEMO, "--role", ADMIN, "--trust-policy", str(tmp_path / "role.json")]
    r = CliRunner().invoke(main, [*args, "--identity", str(ROOT / "config" / "demo-identity.json")])
    assert r.exit_code == 0 and r.output.startswith("ok: "), r.output
    r = CliRunner().invoke(main, [*args, "--identity", str(ROOT / "config" / "demo-identities" / "carol.json")])
    assert r.exit_code == 1 and "gets no grant of" in r.output


def test_cli_role_no_rule_can_grant(tmp_path: Path) -> None:
    (tmp_path / "role.json").write_text(json.dumps(BROKEN))
    r = CliRunner().invoke(main, ["doctor", "--config", DEMO, "--role", "arn:aws-cn:iam::999999999999:role/X",
                                  "--trust-policy", str(tmp_path / "role.json")])
    assert r.exit_code == 1 and "no rule can grant" in r.output
