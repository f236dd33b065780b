"""`bridge aws-setup`: providers and trust policies from the rules (bridge/aws/iam_setup.py, bridge/aws/iam_render.py,
bridge/mapping/roles.py). CloudFormation passes cfn-lint; Terraform parses (python-hcl2) and passes
`terraform fmt -check` where a terraform binary is installed; every generated trust policy passes
`bridge doctor`."""

from __future__ import annotations

import functools
import json
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import hcl2
import pytest
import yaml
from cfnlint.config import ConfigMixIn
from cfnlint.decode.decode import decode_str
from cfnlint.runner import Runner
from click.testing import CliRunner

from bridge.aws import iam_render, iam_setup
from bridge.aws.doctor import RoleDocument, diagnose
from bridge.aws.iam_setup import Environment, RoleSent, Setup, trust_policy
from bridge.commands.cli import main
from bridge.mapping import GrantDefaults, load_mapping
from bridge.mapping.roles import roles_sent

ROOT = Path(__file__).resolve().parents[2]
DEMO = str(ROOT / "config" / "demo.yaml")
ACCT = "123456789012"
ENV = Environment("https://bridge.example.com", "aws", "https://signin.aws.amazon.com/saml")
DEFAULTS = GrantDefaults("sts.amazonaws.com")


@functools.cache
def cfn_runner() -> Runner:
    """cfn-lint with its rules loaded once (0.6 CPU s a time): the CLI runs each of several templates through one
    runner the same way."""
    return Runner(ConfigMixIn(regions=["us-east-1"]))


@pytest.fixture(scope="module", autouse=True)
def _forget_the_cfn_rules() -> Iterator[None]:
    yield
    cfn_runner.cache_clear()  # its schemas, kept for the whole session, made each garbage collection slower


def cfn_problems(text: str) -> list[str]:
    template, errors = decode_str(text)  # what cfnlint.api.lint does, with the one runner
    if errors or template is None:
        return [str(m) for m in errors] or ["cfn-lint decoded no template"]
    return [str(m) for m in cfn_runner().validate_template(template)]


def run(*args: str) -> Any:
    return CliRunner().invoke(main, list(args), prog_name="bridge", catch_exceptions=False)


def demo_roles() -> dict[str, RoleSent]:
    r = run("aws-setup", "--config", DEMO, "--format", "json")
    assert r.exit_code == 0, r.output
    return {x["name"]: x for x in json.loads(r.stdout)["accounts"][ACCT]["roles"]}  # type: ignore[misc]


# --------------------------------------------------------------------------- what the rules send


def rules(*rule: dict[str, Any], accounts: dict[str, Any] | None = None) -> Any:
    return load_mapping({"rules": list(rule), "accounts": accounts or {}})


def test_static_role_sends_tags_and_source_identity_only_when_rules_do() -> None:
    ms = rules({"name": "a", "match": {"group": "g"}, "grants": [
        {"role_arn": f"arn:aws:iam::{ACCT}:role/Plain"},
        {"role_arn": f"arn:aws:iam::{ACCT}:role/Tagged", "tags": {"Team": "{claims.team}"},
         "source_identity": "{email}", "duration": {"max": 7200}}]})
    roles, notes = roles_sent(ms, DEFAULTS)
    by = {r.name: r for r in roles}
    assert by["Plain"].actions("jwt") == ["sts:AssumeRoleWithWebIdentity"]
    assert by["Tagged"].actions("jwt") == ["sts:AssumeRoleWithWebIdentity", "sts:TagSession", "sts:SetSourceIdentity"]
    assert by["Tagged"].max_session_duration == 7200 and by["Plain"].max_session_duration == 3600
    assert notes == []


def test_catalog_max_session_duration_and_templated_grants() -> None:
    ms = rules({"name": "conv", "match": {"claim": "groups", "regex": r"aws#(?P<account>\d{12})#(?P<role>\w+)"},
                "grants": [{"account": "{match.account}", "role": "{match.role}", "tags": {"Team": "{match.role}"}}]},
               accounts={ACCT: {"alias": "sandbox", "roles": {"Admin": {"max_session_duration": 43200}}}})
    roles, notes = roles_sent(ms, DEFAULTS)
    assert [(r.name, r.rules, r.max_session_duration) for r in roles] == [("Admin", ("conv",), 43200)]
    assert any("rule conv also grants roles named by claims" in n for n in notes)
    roles, _ = roles_sent(ms, DEFAULTS, extra=[f"arn:aws:iam::{ACCT}:role/Billing"])
    assert {r.name for r in roles} == {"Admin", "Billing"}


def test_trust_policy_has_exactly_what_the_bridge_sends() -> None:
    ms = rules({"name": "s", "match": {"group": "g"}, "grants": [
        {"role_arn": f"arn:aws:iam::{ACCT}:role/Both", "tags": {"Env": "prod"}},
        {"role_arn": f"arn:aws:iam::{ACCT}:role/Both", "path": "saml", "provider": "Corp"}]})
    (role,), _ = roles_sent(ms, DEFAULTS)
    policy = trust_policy(role, ENV)
    web, saml = policy["Statement"]
    assert web["Principal"] == {"Federated": f"arn:aws:iam::{ACCT}:oidc-provider/bridge.example.com"}
    assert web["Condition"] == {"StringEquals": {"bridge.example.com:aud": "sts.amazonaws.com"}}
    assert saml["Principal"] == {"Federated": f"arn:aws:iam::{ACCT}:saml-provider/Corp"}
    assert saml["Action"] == ["sts:AssumeRoleWithSAML", "sts:TagSession"]
    assert saml["Condition"] == {"StringEquals": {"SAML:aud": "https://signin.aws.amazon.com/saml"}}
    hardened = trust_policy(role, ENV, harden=True)["Statement"][0]["Condition"]
    assert "aws:RequestTag/Env" not in hardened.get("StringEquals", {})  # the second grant sends no Env
    (role,), _ = roles_sent(rules({"name": "s", "match": {"group": "g"}, "grants": [
        {"role_arn": f"arn:aws:iam::{ACCT}:role/Both", "tags": {"Env": "prod"}}]}), DEFAULTS)
    hardened = trust_policy(role, ENV, harden=True)["Statement"][0]["Condition"]
    assert hardened["StringLike"] == {"bridge.example.com:sub": "u-*"}
    assert hardened["StringEquals"]["aws:RequestTag/Env"] == "prod"
    assert hardened["ForAllValues:StringEquals"]["aws:TagKeys"] == ["Env"]


def test_issuer_with_a_path_names_the_provider_and_key_with_it() -> None:
    env = Environment("https://idp.example.com/bridge/")
    assert env.oidc_provider_arn(ACCT) == f"arn:aws:iam::{ACCT}:oidc-provider/idp.example.com/bridge"
    assert env.aud_key == "idp.example.com/bridge:aud"


# --------------------------------------------------------------------------- the demo, every format


def test_demo_json_lists_each_role_with_its_rules_and_catalog_entry() -> None:
    roles = demo_roles()
    assert set(roles) == {"Admin", "ReadOnly", "PlatformDeploy"}
    admin = roles["Admin"]
    assert admin["rules"] == ["admins", "group-convention", "admin-on-request"] and admin["label"] == "Administrator"
    assert admin["max_session_duration"] == 43200
    assert admin["trust_policy"]["Statement"][0]["Action"] == [
        "sts:AssumeRoleWithWebIdentity", "sts:TagSession", "sts:SetSourceIdentity"]
    # readonly uses SAML; group-convention can grant it by web identity too
    assert [s["Sid"] for s in roles["ReadOnly"]["trust_policy"]["Statement"]] == ["BridgeWebIdentity", "BridgeSaml"]


@pytest.mark.parametrize("flags", [[], ["--harden"], ["--revocation"], ["--harden", "--revocation"]])
def test_every_generated_trust_policy_passes_doctor(flags: list[str], tmp_path: Path) -> None:
    r = run("aws-setup", "--config", DEMO, "--format", "json", *flags)
    for role in json.loads(r.stdout)["accounts"][ACCT]["roles"]:
        doc = {"Role": {"Arn": role["arn"], "MaxSessionDuration": role["max_session_duration"],
                        "AssumeRolePolicyDocument": role["trust_policy"]}}
        (tmp_path / "role.json").write_text(json.dumps(doc))
        out = run("doctor", "--config", DEMO, "--role", role["arn"], "--trust-policy", str(tmp_path / "role.json"))
        assert out.exit_code == 0 and "ok: AWS would let the bridge assume" in out.output, out.output
        assert "depends on the user" not in out.output


@pytest.mark.parametrize("flags", [[], ["--harden", "--revocation"]])
def test_cloudformation_passes_cfn_lint(flags: list[str]) -> None:
    r = run("aws-setup", "--config", DEMO, "--account", ACCT, "--format", "cloudformation", *flags)
    assert r.exit_code == 0
    assert cfn_problems(r.stdout) == []
    template = yaml.safe_load(r.stdout)
    assert template["Resources"]["BridgeOidcProvider"]["Properties"]["ClientIdList"] == ["sts.amazonaws.com"]
    admin = template["Resources"]["RoleAdmin"]["Properties"]
    assert admin["MaxSessionDuration"] == 43200
    principal = admin["AssumeRolePolicyDocument"]["Statement"][0]["Principal"]
    assert principal == {"Federated": {"Ref": "BridgeOidcProvider"}}
    assert ("Policies" in admin) == ("--revocation" in flags)


def test_cfn_lint_does_catch_a_broken_template() -> None:
    text = run("aws-setup", "--config", DEMO, "--account", ACCT, "--format", "cloudformation").stdout
    assert cfn_problems(text.replace("MaxSessionDuration: 43200", "MaxSessionDuration: 100"))


def test_the_committed_demo_template_is_current() -> None:
    text = run("aws-setup", "--config", DEMO, "--account", ACCT, "--format", "cloudformation", "--revocation").stdout
    assert (ROOT / "docs" / "examples" / "demo-cloudformation.yaml").read_text() == text


@pytest.mark.parametrize("flags", [[], ["--harden", "--revocation"]])
def test_terraform_parses_and_is_formatted(flags: list[str], tmp_path: Path) -> None:
    r = run("aws-setup", "--config", DEMO, "--account", ACCT, "--format", "terraform", *flags)
    assert r.exit_code == 0
    doc = hcl2.loads(r.stdout)
    resources = {(k.strip('"'), n.strip('"')) for block in doc["resource"] for k, v in block.items() for n in v}
    assert {("aws_iam_openid_connect_provider", "bridge"), ("aws_iam_role", "admin"),
            ("aws_iam_saml_provider", "saml_federationbridge")} <= resources
    assert "aws_iam_openid_connect_provider.bridge.arn" in r.stdout
    terraform = shutil.which("terraform")
    if terraform is None:
        pytest.skip("no terraform binary: parsed with python-hcl2 only")
    (tmp_path / "main.tf").write_text(r.stdout)
    fmt = subprocess.run([terraform, "fmt", "-check", "-diff", str(tmp_path)], capture_output=True, text=True,
                         timeout=60, check=False)
    assert fmt.returncode == 0, fmt.stdout


def test_hcl_alignment_matches_terraform_fmt_rules() -> None:
    lines = iam_render._hcl_items({"a": 1, "long_name": "x", "obj": {"k": 1}, "b": 2}, 0)
    assert lines == ["a         = 1", 'long_name = "x"', "obj = {", "  k = 1", "}", "b = 2"]
    assert iam_render._hcl_str("${x} %{y}") == '"$${x} %%{y}"'


def test_several_accounts_need_account_for_cloudformation() -> None:
    ms = rules({"name": "a", "match": {"group": "g"}, "grants": [
        {"role_arn": "arn:aws:iam::111111111111:role/A"}, {"role_arn": "arn:aws:iam::222222222222:role/B"}]})
    roles, _ = roles_sent(ms, DEFAULTS)
    with pytest.raises(ValueError, match="pass --account"):
        iam_render.render_cloudformation(Setup(ENV, tuple(roles)))
    roles, _ = roles_sent(ms, DEFAULTS, account="222222222222")
    assert cfn_problems(iam_render.render_cloudformation(Setup(ENV, tuple(roles)))) == []


def test_account_with_no_role_fails() -> None:
    r = run("aws-setup", "--config", DEMO, "--account", "999999999999")
    assert r.exit_code == 1 and "no role to set up in account 999999999999" in r.output


# --------------------------------------------------------------------------- revocation


def test_revocation_policy_and_commands() -> None:
    rev = iam_setup.revocation_for("alice@example.com", ["alice@example.com"], ["alice@example.com"],
                                   "2026-05-01T10:00:00Z", "inline", [f"arn:aws:iam::{ACCT}:role/Admin"])
    deny_si, deny_name = rev.policy["Statement"]
    assert deny_si["Effect"] == "Deny" and deny_si["Condition"] == {
        "StringEquals": {"aws:SourceIdentity": ["alice@example.com"]},
        "DateLessThan": {"aws:TokenIssueTime": "2026-05-01T10:00:00Z"}}
    assert deny_name["Condition"]["StringLike"] == {"aws:userid": ["*:alice@example.com"]}
    assert rev.commands == (f"aws iam put-role-policy --role-name Admin --policy-name {rev.file[:-5]} "
                            f"--policy-document file://{rev.file}   # arn:aws:iam::{ACCT}:role/Admin",)
    scp = iam_setup.revocation_for("alice", ["alice"], [], "2026-05-01T10:00:00Z", "scp", [])
    assert "SERVICE_CONTROL_POLICY" in scp.commands[0] and len(scp.policy["Statement"]) == 1


def test_revocation_policy_passes_cfn_lint_as_an_inline_role_policy() -> None:
    rev = iam_setup.revocation_for("a", ["a@example.com"], ["b@example.com"], "2026-05-01T10:00:00Z", "inline", [])
    template = {"AWSTemplateFormatVersion": "2010-09-09", "Resources": {"Revoke": {
        "Type": "AWS::IAM::RolePolicy",
        "Properties": {"RoleName": "Admin", "PolicyName": "revoke", "PolicyDocument": rev.policy}}}}
    assert cfn_problems(yaml.safe_dump(template)) == []


def test_a_revocation_does_not_break_the_trust_policy() -> None:
    """The standing statement is a permissions policy: doctor still finds the trust policy fine."""
    roles = demo_roles()
    doc = RoleDocument(roles["Admin"]["trust_policy"], 43200)  # type: ignore[index]
    ms = rules({"name": "admins", "match": {"group": "g"}, "grants": [
        {"role_arn": f"arn:aws:iam::{ACCT}:role/Admin", "tags": {"Email": "{email}", "Department": "x",
                                                                 "Team": "t"},
         "source_identity": "{email}", "transitive_tags": ["Department"], "duration": {"max": 43200}}]})
    (role,), _ = roles_sent(ms, DEFAULTS)
    assert diagnose(doc, role, ENV).ok
