"""`bridge doctor` for a role reached through a hub (bridge/aws/doctor_chain.py): the spoke's trust policy
against the chain — the hub's session may call sts:AssumeRole, sts:TagSession, sts:SetSourceIdentity, with
the sts:ExternalId condition when the role has an ExternalId (never shown)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import yaml
from click.testing import CliRunner

from bridge.aws.doctor import read_role_document
from bridge.aws.doctor_chain import diagnose_spoke
from bridge.aws.organizations import stackset_template
from bridge.commands.cli import main

HUB = "arn:aws:iam::111111111111:role/BridgeHub"
SPOKE = "arn:aws:iam::222222222222:role/Developer"
SECRET = "vendor-external-id-7f3a9c"


def policy(actions: list[str] | None = None, principal: Any = None, condition: Any = None) -> dict[str, Any]:
    st: dict[str, Any] = {"Sid": "Hub", "Effect": "Allow", "Principal": principal or {"AWS": HUB},
                          "Action": actions or ["sts:AssumeRole", "sts:TagSession", "sts:SetSourceIdentity"]}
    if condition:
        st["Condition"] = condition
    return {"Version": "2012-10-17", "Statement": [st]}


def check(doc: dict[str, Any], external_id: str | None = None, **sent: bool | None) -> tuple[list[str], list[str]]:
    d = diagnose_spoke(read_role_document(doc), SPOKE, HUB, external_id, **sent)
    return [str(f) for f in d.findings], d.notes


def test_the_stackset_trust_policy_passes() -> None:
    template = yaml.safe_load(stackset_template(HUB, {"Developer": []}, description="x"))
    doc = template["Resources"]["RoleDeveloper"]["Properties"]["AssumeRolePolicyDocument"]
    assert check(doc, tags=True, source_identity=True) == ([], [])
    assert check(policy(principal={"AWS": "arn:aws:iam::111111111111:root"})) == ([], [])  # the hub's account


def test_a_policy_not_trusting_the_hub_is_refused() -> None:
    findings, _ = check(policy(principal={"AWS": "arn:aws:iam::999999999999:role/Other"}))
    assert findings == [f"principal: no Allow statement trusts the hub {HUB}: AWS refuses the hub's sts:AssumeRole "
                        f'(AccessDenied) — fix: add a statement with "Principal": {{"AWS": "{HUB}"}} '
                        "(`bridge aws-setup --organization` writes it)"]
    deny = policy()
    deny["Statement"].append({"Sid": "NoHub", "Effect": "Deny", "Principal": {"AWS": HUB}, "Action": "sts:*"})
    assert check(deny)[0] == ["deny: NoHub denies sts:AssumeRole to the hub — fix: remove or narrow that Deny "
                              "statement"]


def test_tag_session_and_source_identity_are_needed_when_the_grant_sends_them() -> None:
    only = policy(["sts:AssumeRole"])
    findings, _ = check(only, tags=True, source_identity=True)
    assert [f.split(":", 1)[0] for f in findings] == ["action", "action"]
    assert "sts:TagSession is not allowed to the hub" in findings[0]
    assert "sts:SetSourceIdentity is not allowed to the hub" in findings[1]
    assert check(only, tags=False, source_identity=False) == ([], [])
    findings, notes = check(only)  # without --identity: not known whether they are sent
    assert findings == [] and len(notes) == 2 and "check with --identity" in notes[0]


def test_the_external_id_condition_is_checked_and_never_shown() -> None:
    cond = {"StringEquals": {"sts:ExternalId": SECRET}}
    assert check(policy(condition=cond), SECRET) == ([], [])
    findings, _ = check(policy(condition=cond))
    assert findings[0].startswith("external-id: Hub asks for an ExternalId and the bridge sends none")
    findings, _ = check(policy(condition=cond), "another-value-123")
    assert findings and "does not match" in findings[0]
    assert all(SECRET not in f and "another-value-123" not in f for f in findings)
    findings, notes = check(policy(), SECRET)
    assert findings == [] and "does not ask for the ExternalId" in notes[0]


def test_doctor_command_checks_a_spoke_against_its_hub(tmp_path: Path) -> None:
    cfg = tmp_path / "bridge.yaml"
    cfg.write_text(yaml.safe_dump({
        "base_url": "http://127.0.0.1:1", "insecure_dev_login": True,
        "connectors": [{"id": "dev", "type": "dev", "users": [{"subject": "alice"}]}],
        "mapping": {"accounts": {"111111111111": {"alias": "hub", "roles": {"BridgeHub": {}}},
                                 "222222222222": {"alias": "pay", "roles": {"Developer": {"via": "hub/BridgeHub"}}}},
                    "rules": [{"name": "devs", "match": {"group": "dev"},
                               "grants": [{"account": "pay", "role": "Developer"}]}]}}))
    good, bad = tmp_path / "good.json", tmp_path / "bad.json"
    good.write_text(json.dumps(policy()))
    bad.write_text(json.dumps(policy(principal={"Federated": "arn:aws:iam::222222222222:oidc-provider/x"})))
    r = CliRunner().invoke(main, ["doctor", "--config", str(cfg), "--role", SPOKE, "--trust-policy", str(good)])
    assert r.exit_code == 0, r.output
    assert f"ok: AWS would let the bridge assume {SPOKE} (sts:AssumeRole from the hub {HUB})" in r.output
    r = CliRunner().invoke(main, ["doctor", "--config", str(cfg), "--role", SPOKE, "--trust-policy", str(bad)])
    assert r.exit_code == 1 and "refused: principal: no Allow statement trusts the hub" in r.output
    assert "1 problem(s): AWS would refuse the bridge" in r.output
