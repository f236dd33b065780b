"""MFA reaches AWS (docs/step-up-mfa.md): the reserved transitive session tag ``bridge:mfa`` — set by the bridge
on every issuance, never by rules; in the minted token and assertion (strict validators); required by the
trust policies ``aws-setup --harden`` and the --organization StackSet write for MFA roles; and ``bridge doctor``
flagging an MFA role whose trust policy does not check it."""

from __future__ import annotations

import base64
import json
from pathlib import Path
from typing import Any

import pytest
import yaml
from click.testing import CliRunner

from bridge.aws.assertion import SamlIssuer, mint_saml_response, signin_saml_endpoint
from bridge.aws.bridge_tags import with_bridge_tags
from bridge.aws.doctor import RoleDocument, diagnose
from bridge.aws.doctor_chain import diagnose_spoke
from bridge.aws.iam_setup import Environment, RoleSent, trust_policy, with_bridge_tag
from bridge.aws.metadata import idp_metadata
from bridge.aws.organizations import stackset_template
from bridge.aws.token import mint_token
from bridge.aws.validate import TAGS_CLAIM, validate_jwt
from bridge.aws.validate_saml import IdpMetadata, validate_saml_response
from bridge.commands.cli import main
from bridge.domain.identity import Grant, Identity
from bridge.keys.signing import KeyRing, generate_key, generate_saml_key
from bridge.mapping import evaluate, load_mapping

NOW = 1_800_000_000
ACCOUNT = "123456789012"
ARN = f"arn:aws:iam::{ACCOUNT}:role/Prod"
HUB = "arn:aws:iam::111111111111:role/BridgeHub"
ISSUER = "https://bridge.example.com"
ENV = Environment(ISSUER, "aws", "https://signin.aws.amazon.com/saml")
ALICE = Identity(connector_id="corp", subject="alice", issuer="https://idp.example.com", email="alice@example.com",
                 mfa=True, amr=("pwd", "otp"))
BOB = Identity(connector_id="corp", subject="bob", issuer="https://idp.example.com", email="bob@example.com")
GRANT = Grant(role_arn=ARN, account_id=ACCOUNT, label="Prod", session_name="alice", via="ops",
              provider_arn=f"arn:aws:iam::{ACCOUNT}:saml-provider/FederationBridge", tags={"Team": "ops"},
              transitive_keys=("Team",))
ROLE = RoleSent(arn=ARN, partition="aws", account=ACCOUNT, path="/", name="Prod", rules=("ops",),
                paths=("jwt", "saml"), audiences=("sts.amazonaws.com",),
                saml_providers=(f"arn:aws:iam::{ACCOUNT}:saml-provider/FederationBridge",), tag_keys=("Team",),
                always_tags={"Team": "ops"}, max_duration=3600, mfa_required=True)


def test_the_bridge_adds_bridge_mfa_transitive_from_the_sign_in() -> None:
    assert dict(with_bridge_tags(GRANT, ALICE).tags) == {"Team": "ops", "bridge:mfa": "true"}
    tagged = with_bridge_tags(GRANT, BOB)
    assert dict(tagged.tags) == {"Team": "ops", "bridge:mfa": "false"}
    assert tagged.transitive_keys == ("Team", "bridge:mfa")
    assert with_bridge_tags(tagged, BOB) == tagged  # once
    # whatever else put the key there (any case), the bridge's value wins
    forged = with_bridge_tags(Grant(**{**GRANT.__dict__, "tags": {"BRIDGE:MFA": "true"}}), BOB)
    assert dict(forged.tags) == {"bridge:mfa": "false"}


def test_the_minted_token_carries_it_and_passes_the_strict_validator(tmp_path: Path) -> None:
    key = generate_key(tmp_path / "k", "ES256")
    token = mint_token(with_bridge_tags(GRANT, BOB), BOB, key, issuer=ISSUER, audience="sts.amazonaws.com", now=NOW)
    claims = json.loads(base64.urlsafe_b64decode(token.split(".")[1] + "=="))
    assert claims[TAGS_CLAIM] == {"principal_tags": {"Team": ["ops"], "bridge:mfa": ["false"]},
                                  "transitive_tag_keys": ["Team", "bridge:mfa"]}
    assert validate_jwt(token, jwks=KeyRing((key,)).jwks(), issuer=ISSUER, audiences={"sts.amazonaws.com"},
                        now=NOW) == []


def test_the_minted_assertion_carries_it_and_passes_the_strict_validator(tmp_path: Path) -> None:
    key = generate_saml_key(tmp_path / "s")
    recipient, audience = signin_saml_endpoint("aws")
    b64 = mint_saml_response(with_bridge_tags(GRANT, ALICE), ALICE, key,
                             SamlIssuer(f"{ISSUER}/saml", recipient, audience), now=NOW, duration=3600)
    xml = base64.b64decode(b64).decode()
    assert ('Name="https://aws.amazon.com/SAML/Attributes/PrincipalTag:bridge:mfa" NameFormat="urn:oasis:names:tc:'
            'SAML:2.0:attrname-format:uri"><saml:AttributeValue>true</saml:AttributeValue>') in xml
    assert "<saml:AttributeValue>bridge:mfa</saml:AttributeValue>" in xml  # among TransitiveTagKeys
    metadata = IdpMetadata.from_xml(idp_metadata(f"{ISSUER}/saml", (key,), f"{ISSUER}/idp/sso"))
    assert validate_saml_response(b64, metadata=metadata, now=NOW, role_arn=ARN,
                                  principal_arn=GRANT.provider_arn) == []


@pytest.mark.parametrize(("tags", "problem"), [
    ({"bridge:mfa": "true"}, "tags.bridge:mfa: rule 'ops': tag key 'bridge:mfa' starts with 'bridge:', which is "
                             "reserved for the tags the bridge sets itself (bridge:mfa): rename the tag"),
    ({"BRIDGE:MFA": "{claims.mfa}"}, "tags.BRIDGE:MFA: rule 'ops': tag key 'BRIDGE:MFA' starts with 'bridge:'"),
    ({f"K{i}": "v" for i in range(50)}, "50 tags; a rule may send at most 49"),
])
def test_rules_cannot_set_a_reserved_tag_nor_take_its_slot(tags: dict[str, str], problem: str) -> None:
    from bridge.domain.errors import ConfigError

    with pytest.raises(ConfigError) as e:
        load_mapping({"rules": [{"name": "ops", "match": {"group": "ops"},
                                 "grants": [{"role_arn": ARN, "tags": tags}]}]})
    assert any(problem in p for p in e.value.problems), e.value.problems


def test_a_templated_key_that_renders_to_a_reserved_one_is_dropped() -> None:
    m = load_mapping({"rules": [{"name": "ops", "match": {"group": "ops"},
                                 "grants": [{"role_arn": ARN, "tags": {"{claims.k}": "true", "Team": "ops"}}]}]})
    ident = Identity(connector_id="c", subject="s", issuer="i", groups=("ops",), claims={"k": "bridge:mfa"})
    grant, = evaluate(m, ident, default_audience="sts.amazonaws.com")
    assert dict(grant.tags) == {"Team": "ops"}


def test_harden_requires_true_for_an_mfa_role_and_presence_for_others() -> None:
    cond = trust_policy(with_bridge_tag(ROLE), ENV, harden=True)["Statement"]
    for st in cond:
        c = st["Condition"]
        assert c["StringEquals"]["aws:RequestTag/bridge:mfa"] == "true"
        assert "bridge:mfa" in c["ForAllValues:StringEquals"]["aws:TagKeys"]
        assert c["ForAllValues:StringEquals"]["sts:TransitiveTagKeys"] == ["bridge:mfa"]
        assert "sts:TagSession" in st["Action"]
    other = trust_policy(with_bridge_tag(RoleSent(**{**ROLE.__dict__, "mfa_required": False})), ENV, harden=True)
    assert other["Statement"][0]["Condition"]["Null"] == {"aws:RequestTag/bridge:mfa": "false"}
    assert "aws:RequestTag/bridge:mfa" not in other["Statement"][0]["Condition"]["StringEquals"]
    assert "Null" not in trust_policy(ROLE, ENV, harden=True)["Statement"][0]["Condition"]  # aws.mfa_tag off


def test_doctor_flags_an_mfa_role_whose_trust_policy_does_not_check_it() -> None:
    role = with_bridge_tag(ROLE)
    assert diagnose(RoleDocument(trust_policy(role, ENV, harden=True), 3600), role, ENV).findings == []
    d = diagnose(RoleDocument(trust_policy(role, ENV), 3600), role, ENV)
    assert [(f.kind, f.code) for f in d.findings] == [("unsafe", "mfa-not-enforced")] * 2  # web identity, SAML
    assert "admits an sts:AssumeRoleWithWebIdentity call whose bridge:mfa is false" in str(d.findings[0])
    assert 'fix: add "StringEquals": {"aws:RequestTag/bridge:mfa": "true"}' in str(d.findings[0])
    plain = with_bridge_tag(RoleSent(**{**ROLE.__dict__, "mfa_required": False}))
    assert diagnose(RoleDocument(trust_policy(plain, ENV), 3600), plain, ENV).findings == []  # no MFA role


def test_doctor_flags_a_spoke_that_does_not_check_the_hub_sessions_tag() -> None:
    def doc(mfa_roles: tuple[str, ...]) -> RoleDocument:
        t = yaml.safe_load(stackset_template(HUB, {"Prod": []}, description="x", mfa_roles=mfa_roles))
        return RoleDocument(t["Resources"]["RoleProd"]["Properties"]["AssumeRolePolicyDocument"])

    assert diagnose_spoke(doc(("Prod",)), ARN, HUB, None, mfa=True).findings == []
    assert diagnose_spoke(doc(()), ARN, HUB, None, mfa=False).findings == []
    found = diagnose_spoke(doc(()), ARN, HUB, None, mfa=True).findings
    assert [(f.kind, f.code) for f in found] == [("unsafe", "mfa-not-enforced")]
    assert "aws:PrincipalTag/bridge:mfa" in found[0].fix


def _config(tmp_path: Path, **aws: Any) -> str:
    cfg = {"base_url": ISSUER, "secret_key": "x", "aws": aws, "insecure_dev_login": True,
           "connectors": [{"id": "dev", "type": "dev", "users": [{"subject": "a"}]}],
           "mapping": {"rules": [{"name": "ops", "match": {"group": "ops"},
                                  "grants": [{"role_arn": ARN, "mfa_required": True}]}]}}
    (tmp_path / "c.yaml").write_text(yaml.safe_dump(cfg))
    return str(tmp_path / "c.yaml")


def test_doctor_cli_says_unsafe_and_exits_1(tmp_path: Path) -> None:
    config = _config(tmp_path)
    hardened = CliRunner().invoke(main, ["aws-setup", "--config", config, "--harden"])
    policy = json.loads(hardened.stdout)["accounts"][ACCOUNT]["roles"][0]["trust_policy"]
    assert policy["Statement"][0]["Condition"]["StringEquals"]["aws:RequestTag/bridge:mfa"] == "true"
    (tmp_path / "good.json").write_text(json.dumps(policy))
    ok = CliRunner().invoke(main, ["doctor", "--config", config, "--role", ARN, "--trust-policy",
                                   str(tmp_path / "good.json")])
    assert ok.exit_code == 0 and ok.output.splitlines()[-1].startswith("ok:"), ok.output
    del policy["Statement"][0]["Condition"]["StringEquals"]["aws:RequestTag/bridge:mfa"]
    (tmp_path / "weak.json").write_text(json.dumps(policy))
    weak = CliRunner().invoke(main, ["doctor", "--config", config, "--role", ARN, "--trust-policy",
                                     str(tmp_path / "weak.json")])
    assert weak.exit_code == 1
    assert weak.output.startswith("unsafe: mfa-not-enforced: the rules give this role only with MFA")
    assert weak.output.splitlines()[-1].startswith("1 problem(s): the trust policy of")


def test_with_mfa_tag_off_nothing_is_added(tmp_path: Path) -> None:
    out = CliRunner().invoke(main, ["aws-setup", "--config", _config(tmp_path, mfa_tag=False), "--harden"])
    assert "bridge:mfa" not in out.stdout and out.exit_code == 0
