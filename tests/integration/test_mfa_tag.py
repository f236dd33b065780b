"""MFA reaches AWS (docs/step-up-mfa.md): every issuance carries the transitive session tag bridge:mfa, and
the trust policies `bridge aws-setup --harden` (and the --organization StackSet, for a spoke reached through
a hub) write for a role given only with MFA refuse a session without it — played by the strict STS, in front
of moto, for AssumeRoleWithWebIdentity, AssumeRoleWithSAML and a chained sts:AssumeRole.

To show the trust policy doing the refusing (and not the bridge's own MFA check, which refuses earlier), the
policies are written from rules that say ``mfa_required: true`` and the bridge under test runs the same rules
without it: a non-MFA sign-in then reaches STS, which must refuse it."""

from __future__ import annotations

import base64
import json
from typing import Any

import pytest
import requests
import yaml

from bridge.aws.iam_setup import trust_policy
from bridge.commands.accounts import organization_stackset
from bridge.commands.awssetup import environment_for, sent_roles
from bridge.config import Settings
from tests.conftest import ACCOUNT
from tests.integration.helpers import caller_arn, dev_login, grant_id, portal_json

pytestmark = pytest.mark.integration

ROLE = f"arn:aws:iam::{ACCOUNT}:role/Prod"
HUB, SPOKE_ACCOUNT = "111111111111", "210987654321"
HUB_ARN = f"arn:aws:iam::{HUB}:role/BridgeHub"
SPOKE = f"arn:aws:iam::{SPOKE_ACCOUNT}:role/Deploy"
USERS = [{"subject": "alice", "email": "alice@example.com", "groups": ["ops"], "mfa": True},
         {"subject": "bob", "email": "bob@example.com", "groups": ["ops"], "mfa": False}]


def _settings(make_settings: Any, *, mfa_required: bool, path: str = "jwt") -> Settings:
    grant = {"tags": {"Team": "ops"}, "mfa_required": mfa_required, "path": path}
    return make_settings(
        connectors=[{"id": "dev", "type": "dev", "users": USERS}],
        mapping={"accounts": {ACCOUNT: {"alias": "prod", "roles": {"Prod": {}}},
                              HUB: {"alias": "hub", "roles": {"BridgeHub": {}}},
                              SPOKE_ACCOUNT: {"alias": "work", "roles": {"Deploy": {"via": "hub/BridgeHub"}}}},
                 "rules": [{"name": "ops", "match": {"group": "ops"},
                            "grants": [{"account": "prod", "role": "Prod", **grant},
                                       {"account": "work", "role": "Deploy", **grant}]}]})


def _hardened(settings: Settings, arn: str) -> dict[str, Any]:
    """The trust policy `bridge aws-setup --harden` writes for ``arn`` (what render_json puts in the document)."""
    role = next(r for r in sent_roles(settings, [arn])[0] if r.arn == arn)
    return trust_policy(role, environment_for(settings), harden=True)


def _credentials(base: str, user: str, suffix: str) -> requests.Response:
    s = dev_login(base, user)
    portal = portal_json(s, base)
    return s.post(f"{base}/credentials/{grant_id(portal, suffix)}", timeout=30,
                  headers={"Accept": "application/json", "X-CSRF-Token": portal["csrf_token"]})


def _tags_sent(seen: Any) -> dict[str, str]:
    if seen.action == "AssumeRoleWithWebIdentity":
        claims = json.loads(base64.urlsafe_b64decode(seen.token.split(".")[1] + "=="))
        tags = claims["https://aws.amazon.com/tags"]
        assert "bridge:mfa" in tags["transitive_tag_keys"]
        return {k: v[0] for k, v in tags["principal_tags"].items()}
    xml = base64.b64decode(seen.token).decode()
    assert "TransitiveTagKeys" in xml
    return {k: v for k, v in (("bridge:mfa", "true"), ("bridge:mfa", "false"))
            if f'PrincipalTag:{k}" NameFormat="urn:oasis:names:tc:SAML:2.0:attrname-format:uri"><saml:AttributeValue>'
               f"{v}<" in xml}


@pytest.mark.parametrize("path", ["jwt", "saml"])
def test_a_hardened_trust_policy_admits_mfa_and_refuses_a_session_without(path: str, make_settings: Any,
                                                                           live_bridge: Any, strict_sts_peer: Any,
                                                                           moto_url: str) -> None:
    policy = _hardened(_settings(make_settings, mfa_required=True, path=path), ROLE)
    condition = policy["Statement"][0]["Condition"]
    assert condition["StringEquals"]["aws:RequestTag/bridge:mfa"] == "true"
    assert "bridge:mfa" in condition["ForAllValues:StringEquals"]["sts:TransitiveTagKeys"]
    strict_sts_peer.trust_policy(ROLE, policy)
    base = live_bridge(_settings(make_settings, mfa_required=False, path=path))

    ok = _credentials(base, "alice", "/Prod")
    assert ok.status_code == 200, ok.text
    assert caller_arn(moto_url, ok.json()).endswith(f"{ACCOUNT}:assumed-role/Prod/alice@example.com")
    assert _tags_sent(strict_sts_peer.seen[-1])["bridge:mfa"] == "true"

    refused = _credentials(base, "bob", "/Prod")
    assert refused.status_code == 403 and refused.json()["error"] == "sts_AccessDenied", refused.text
    last = strict_sts_peer.seen[-1]
    assert _tags_sent(last)["bridge:mfa"] == "false"
    assert last.denied == f"the trust policy of {ROLE} refuses {policy['Statement'][0]['Action'][0]}"
    assert "AccessKeyId" not in refused.text


def test_a_spoke_of_the_stackset_refuses_a_hub_session_without_mfa(make_settings: Any, live_bridge: Any,
                                                                    strict_sts_peer: Any, moto_url: str) -> None:
    mfa_rules = _settings(make_settings, mfa_required=True)
    stackset = yaml.safe_load(organization_stackset(mfa_rules, None, ()))
    spoke_policy = stackset["Resources"]["RoleDeploy"]["Properties"]["AssumeRolePolicyDocument"]
    assert spoke_policy["Statement"][0]["Condition"] == {"StringEquals": {"aws:PrincipalTag/bridge:mfa": "true"}}
    strict_sts_peer.trust_policy(HUB_ARN, _hardened(mfa_rules, HUB_ARN))  # the hub: any sign-in, with the tag
    strict_sts_peer.trust_policy(SPOKE, spoke_policy)
    base = live_bridge(_settings(make_settings, mfa_required=False))

    ok = _credentials(base, "alice", "/Deploy")
    assert ok.status_code == 200, ok.text
    assert caller_arn(moto_url, ok.json()).endswith(f"{SPOKE_ACCOUNT}:assumed-role/Deploy/alice@example.com")
    hop = strict_sts_peer.assume_role_calls[-1]
    # bridge:mfa is transitive: it rides the hub's session and is never sent again (AWS would refuse that)
    assert "bridge:mfa" not in hop.params.values() and hop.params["Tags.member.1.Key"] == "Team"

    refused = _credentials(base, "bob", "/Deploy")
    assert refused.status_code == 403 and refused.json()["error"] == "sts_AccessDenied", refused.text
    first, hop = strict_sts_peer.seen[-2:]
    assert (first.action, first.denied) == ("AssumeRoleWithWebIdentity", "")  # the hub took bob's session …
    assert _tags_sent(first)["bridge:mfa"] == "false"
    assert hop.denied == f"the trust policy of {SPOKE} refuses sts:AssumeRole"  # … the spoke did not
