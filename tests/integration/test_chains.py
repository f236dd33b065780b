"""Role chaining end to end (docs/many-accounts.md): a hub assumed with the bridge's token, then signed
sts:AssumeRole into a spoke and into a vendor's role with its ExternalId, against moto behind the strict
STS (which verifies the SigV4 signature of each hop, plays the trust policies and the ExternalId
condition, and checks every parameter of every call: docs/aws-rules.md §7.4)."""

from __future__ import annotations

import base64
import json
import re
from pathlib import Path
from typing import Any

import pytest
import requests

from bridge.domain.identity import grant_id_for
from tests.conftest import ACCOUNT
from tests.integration.helpers import caller_arn, cli_token, dev_login, grant_id, portal_json

pytestmark = pytest.mark.integration

HUB, WORK, VENDOR = "111111111111", "210987654321", "999988887777"
HUB_ARN = f"arn:aws:iam::{HUB}:role/BridgeHub"
DEV_ARN = f"arn:aws:iam::{WORK}:role/Developer"
VENDOR_ARN = f"arn:aws:iam::{VENDOR}:role/VendorAudit"
SECRET = "vendor-7Qx2:k9=Zp/Lm"  # the ExternalId the vendor gave us (a secret: never logged, never shown)
HUB_POLICY = {"Version": "2012-10-17",
              "Statement": [{"Effect": "Allow", "Action": ["sts:AssumeRole", "sts:TagSession", "sts:SetSourceIdentity"],
                             "Resource": "*"}]}
DEV_POLICY = {"Version": "2012-10-17",
              "Statement": [{"Effect": "Allow", "Action": "s3:*",
                             "Resource": "arn:aws:s3:::team-data/home/{email}/*"}]}


def chain_mapping(secret_file: Path) -> dict[str, Any]:
    return {
        "accounts": {
            ACCOUNT: {"alias": "sandbox", "roles": {"Admin": {"max_session_duration": 43200}}},
            HUB: {"alias": "hub", "label": "Hub",
                  "roles": {"BridgeHub": {"label": "Bridge hub", "policy": HUB_POLICY}}},
            WORK: {"alias": "workloads", "label": "Workloads",
                   "roles": {"Developer": {"via": "hub/BridgeHub", "max_session_duration": 43200}}},
            VENDOR: {"alias": "vendor", "label": "Audit vendor",
                     "roles": {"VendorAudit": {"via": "hub/BridgeHub", "external_id_file": str(secret_file)}}},
        },
        "rules": [
            {"name": "admins", "match": {"group": "aws-admins"},
             "grants": [{"account": "sandbox", "role": "Admin"},
                        {"account": "workloads", "role": "Developer", "source_identity": "{email}",
                         "tags": {"Email": "{email}", "Department": "{claims.department}"},
                         "transitive_tags": ["Department"], "policy": DEV_POLICY},
                        {"account": "vendor", "role": "VendorAudit", "source_identity": "{email}"}]},
        ],
    }


@pytest.fixture
def chained(make_settings, strict_sts_peer, tmp_path: Path):  # type: ignore[no-untyped-def]
    secret_file = tmp_path / "vendor-external-id"
    secret_file.write_text(SECRET + "\n")
    strict_sts_peer.trust(DEV_ARN, HUB_ARN)
    strict_sts_peer.trust(VENDOR_ARN, HUB_ARN, external_id=SECRET)
    audit = tmp_path / "audit.jsonl"

    def make(**overrides: Any) -> Any:
        return make_settings(mapping=overrides.pop("mapping", chain_mapping(secret_file)),
                             audit={"sink": "file", "path": str(audit)}, **overrides)

    make.audit = audit  # type: ignore[attr-defined]
    return make


def audit_records(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def _post_credentials(s: requests.Session, base: str, portal: dict[str, Any], suffix: str,
                      **data: str) -> requests.Response:
    return s.post(f"{base}/credentials/{grant_id(portal, suffix)}", data=data, timeout=30,
                  headers={"Accept": "application/json", "X-CSRF-Token": portal["csrf_token"]})


def test_a_spoke_through_the_hub_each_hop_exactly(live_bridge, chained, strict_sts_peer, moto_url,
                                                  bridge_logs) -> None:
    base = live_bridge(chained())
    s = dev_login(base, "alice")
    portal = portal_json(s, base)
    dev = next(g for g in portal["grants"] if g["role_arn"] == DEV_ARN)
    assert dev["max_duration"] == 3600 and dev["hubs"] == ["hub/BridgeHub"]  # the catalog said 43200: chaining caps
    creds = _post_credentials(s, base, portal, "/Developer").json()
    assert caller_arn(moto_url, creds).endswith(f"{WORK}:assumed-role/Developer/alice@example.com")

    first, hop = strict_sts_peer.seen
    assert (first.action, first.role_arn, first.params["DurationSeconds"]) == (
        "AssumeRoleWithWebIdentity", HUB_ARN, "900")  # the hub's session: the shortest, used at once
    assert json.loads(first.params["Policy"]) == HUB_POLICY  # the hub's own session policy (catalog)
    token_claims = json.loads(base64.urlsafe_b64decode(first.token.split(".")[1] + "=="))
    assert token_claims["https://aws.amazon.com/tags"] == {
        "principal_tags": {"Email": ["alice@example.com"], "Department": ["Platform"], "bridge:mfa": ["true"]},
        "transitive_tag_keys": ["Department", "bridge:mfa"]}  # bridge:mfa: the bridge's own, carried along
    assert token_claims["https://aws.amazon.com/source_identity"] == "alice@example.com"
    assert hop.action == "AssumeRole" and hop.caller == f"arn:aws:sts::{HUB}:assumed-role/BridgeHub/alice@example.com"
    assert {k: v for k, v in hop.params.items() if k != "Policy"} == {
        "Action": "AssumeRole", "Version": "2011-06-15", "RoleArn": DEV_ARN, "RoleSessionName": "alice@example.com",
        "DurationSeconds": "3600", "SourceIdentity": "alice@example.com",
        # Department is transitive: it carries over from the hub's session by itself (sending it again fails)
        "Tags.member.1.Key": "Email", "Tags.member.1.Value": "alice@example.com"}
    assert json.loads(hop.params["Policy"])["Statement"][0]["Resource"] == \
        "arn:aws:s3:::team-data/home/alice@example.com/*"  # templated per user
    assert not strict_sts_peer.failures

    records = audit_records(chained.audit)
    hops = [r for r in records if r["type"] == "credentials_hop"]
    assert [(r["hop"], r["action"], r["hop_role_arn"], r["outcome"]) for r in hops] == [
        (1, "AssumeRoleWithWebIdentity", HUB_ARN, "success"), (2, "AssumeRole", DEV_ARN, "success")]
    assert all(r["sts_request_id"] for r in hops)
    done = [r for r in records if r["type"] == "credentials"][-1]
    assert done["outcome"] == "success" and done["hubs"] == [HUB_ARN] and done["role_arn"] == DEV_ARN
    # The hub's credentials never reach the user, the logs or the audit trail.
    hub_keys = [k for k, v in strict_sts_peer.sessions.items() if v.arn.startswith(f"arn:aws:sts::{HUB}:")]
    assert hub_keys and creds["AccessKeyId"] not in hub_keys
    for key in hub_keys:
        secret = strict_sts_peer.sessions[key].secret
        assert key not in chained.audit.read_text() and secret not in chained.audit.read_text()
        assert key not in bridge_logs.text and secret not in bridge_logs.text


def test_a_vendor_gets_its_external_id_and_it_is_never_written_anywhere(live_bridge, chained, strict_sts_peer,
                                                                         moto_url, bridge_logs, redis_url) -> None:
    settings = chained()
    base = live_bridge(settings)
    s = dev_login(base, "alice")
    portal = portal_json(s, base)
    creds = _post_credentials(s, base, portal, "/VendorAudit").json()
    assert caller_arn(moto_url, creds).endswith(f"{VENDOR}:assumed-role/VendorAudit/alice@example.com")
    hop = strict_sts_peer.assume_role_calls[-1]
    assert hop.params["ExternalId"] == SECRET and hop.params["RoleArn"] == VENDOR_ARN
    assert "Tags.member.1.Key" not in hop.params  # no tags for the vendor: its trust policy needs no TagSession
    # The value is on no page, in no log line, in no audit record, nowhere in Redis.
    why = s.get(f"{base}/portal/why", timeout=10)
    explained = s.get(f"{base}/portal/why", headers={"Accept": "application/json"}, timeout=10).text
    for text in (why.text, explained, s.get(f"{base}/portal", timeout=10).text, bridge_logs.text,
                 chained.audit.read_text()):
        assert SECRET not in text
    page = re.sub(r"<[^>]+>", " ", why.text)
    assert "reached through hub/BridgeHub (role chaining: at most 1 hour) · an ExternalId is sent (never shown)" in page
    vendor = next(g for g in json.loads(explained)["grants"] if g["role_arn"] == VENDOR_ARN)
    assert vendor["external_id"] is True and vendor["hubs"][0]["label"] == "hub/BridgeHub"
    import redis

    r = redis.Redis.from_url(redis_url)
    assert not [k for k in r.scan_iter(match=f"{settings.redis.key_prefix}*") if SECRET.encode() in (r.dump(k) or b"")]
    hops = [x for x in audit_records(chained.audit) if x["type"] == "credentials_hop"]
    assert hops[-1]["external_id"] is True and hops[-1]["hop_role_arn"] == VENDOR_ARN


def test_a_wrong_external_id_is_a_clear_page_naming_the_step(live_bridge, chained, strict_sts_peer, tmp_path,
                                                              bridge_logs) -> None:
    strict_sts_peer.trusts.clear()
    strict_sts_peer.trust(VENDOR_ARN, HUB_ARN, external_id="what-the-vendor-really-wants")
    base = live_bridge(chained())
    s = dev_login(base, "alice")
    portal = portal_json(s, base)
    r = s.post(f"{base}/credentials/{grant_id(portal, '/VendorAudit')}", data={"csrf_token": portal["csrf_token"]},
               timeout=30)
    assert r.status_code == 403
    text = re.sub(r"<[^>]+>", " ", r.text)
    assert "denied the step from the hub hub/BridgeHub to vendor/VendorAudit" in text
    assert "ExternalId" in text and SECRET not in r.text and SECRET not in bridge_logs.text
    hops = [x for x in audit_records(chained.audit) if x["type"] == "credentials_hop"]
    assert [(h["hop"], h["outcome"]) for h in hops] == [(1, "success"), (2, "failure")]
    assert hops[-1]["error"] == "sts_AccessDenied" and hops[-1]["sts_request_id"] == "strict-sts"
    assert SECRET not in chained.audit.read_text()


def test_longer_than_an_hour_is_refused_saying_why(live_bridge, chained, strict_sts_peer) -> None:
    base = live_bridge(chained())
    s = dev_login(base, "alice")
    portal = portal_json(s, base)
    r = _post_credentials(s, base, portal, "/Developer", duration="7200")
    assert r.status_code == 400
    assert "role chaining" in r.json()["message"] and "1 hour" in r.json()["message"]
    assert strict_sts_peer.calls == 0  # refused before any STS call


def test_the_cache_keys_on_the_chain(live_bridge, chained, strict_sts_peer) -> None:
    base = live_bridge(chained())
    s = dev_login(base, "alice")
    portal = portal_json(s, base)
    first = _post_credentials(s, base, portal, "/Developer").json()
    calls = strict_sts_peer.calls
    assert _post_credentials(s, base, portal, "/Developer").json() == first
    assert strict_sts_peer.calls == calls  # served from the cache: no hop repeated


def test_console_for_a_chained_role_has_no_session_duration(live_bridge, chained, strict_sts_peer,
                                                            federation_stub) -> None:
    base = live_bridge(chained())
    s = dev_login(base, "alice")
    portal = portal_json(s, base)
    dev = next(g for g in portal["grants"] if g["role_arn"] == DEV_ARN)
    assert dev["console"] == "federation"
    page = s.get(f"{base}{dev['go']}", timeout=10)
    assert "hub/BridgeHub" in page.text and "as long as the credentials" in page.text
    r = s.post(f"{base}/console/{dev['id']}", data={"csrf_token": portal["csrf_token"], "duration": "1800"},
               allow_redirects=False, timeout=30)
    assert r.status_code == 302, r.text[:500]
    landed = requests.get(r.headers["location"], timeout=30)
    assert landed.status_code == 200 and "Developer" in landed.text
    assert federation_stub.signed_in[-1]["duration"] is None  # no SessionDuration: AWS refuses it for chains
    assert strict_sts_peer.assume_role_calls[-1].params["DurationSeconds"] == "1800"


def test_cli_and_credential_process_and_identity_center_list_and_issue_chained_roles(live_bridge, chained,
                                                                                    moto_url) -> None:
    base = live_bridge(chained())
    s = dev_login(base, "alice")
    token = cli_token(base, s)
    auth = {"Authorization": f"Bearer {token}"}
    grants = requests.get(f"{base}/api/v1/grants", headers=auth, timeout=10).json()["grants"]
    dev = next(g for g in grants if g["role_arn"] == DEV_ARN)
    assert dev["hubs"] == ["hub/BridgeHub"] and dev["max_duration"] == 3600
    vendor = next(g for g in grants if g["role_arn"] == VENDOR_ARN)
    assert vendor["external_id"] is True and "Secret" not in json.dumps(vendor) and SECRET not in json.dumps(grants)
    creds = requests.post(f"{base}/api/v1/credentials/{dev['id']}", headers=auth, timeout=30).json()
    assert caller_arn(moto_url, creds).endswith("assumed-role/Developer/alice@example.com")


def test_the_strict_sts_refuses_an_assume_role_not_signed_by_an_issued_session(live_bridge, chained,
                                                                                strict_sts_peer) -> None:
    """The peer must be able to fail: a hop signed with a made-up secret for a real session is refused."""
    import boto3
    from botocore.exceptions import ClientError

    base = live_bridge(chained())
    s = dev_login(base, "alice")
    portal = portal_json(s, base)
    _post_credentials(s, base, portal, "/Developer")
    key, hub = next((k, v) for k, v in strict_sts_peer.sessions.items() if ":assumed-role/BridgeHub/" in v.arn)
    for secret in ("not-the-secret", hub.secret):
        client = boto3.client("sts", endpoint_url=strict_sts_peer.url, region_name="us-east-1",
                              aws_access_key_id=key, aws_secret_access_key=secret, aws_session_token=hub.token)
        if secret == hub.secret:  # signed right, but asking for two hours: the chain cap
            with pytest.raises(ClientError) as e:
                client.assume_role(RoleArn=DEV_ARN, RoleSessionName="alice@example.com", DurationSeconds=7200)
            assert e.value.response["Error"]["Code"] == "ValidationError"
        else:
            with pytest.raises(ClientError) as e:
                client.assume_role(RoleArn=DEV_ARN, RoleSessionName="alice@example.com")
            assert e.value.response["Error"]["Code"] == "InvalidClientTokenId"
    strict_sts_peer.seen.clear()  # these two were the test's own, not the bridge's


def test_a_chain_on_the_saml_path(live_bridge, chained, strict_sts_peer, moto_url, tmp_path) -> None:
    mapping = chain_mapping(tmp_path / "vendor-external-id")
    mapping["rules"][0]["grants"][1]["path"] = "saml"
    base = live_bridge(chained(mapping=mapping))
    s = dev_login(base, "alice")
    portal = portal_json(s, base)
    creds = _post_credentials(s, base, portal, "/Developer").json()
    assert caller_arn(moto_url, creds).endswith(f"{WORK}:assumed-role/Developer/alice@example.com")
    first, hop = strict_sts_peer.seen
    assert first.action == "AssumeRoleWithSAML" and first.params["RoleArn"] == HUB_ARN
    assert first.params["PrincipalArn"] == f"arn:aws:iam::{HUB}:saml-provider/FederationBridge"  # the hub's account
    assert hop.params["SourceIdentity"] == "alice@example.com" and hop.params["Tags.member.1.Key"] == "Email"


def test_a_hub_denied_by_a_rule_withholds_the_role_and_nothing_is_issued(live_bridge, chained, strict_sts_peer,
                                                                         tmp_path) -> None:
    mapping = chain_mapping(tmp_path / "vendor-external-id")
    mapping["rules"].append({"name": "no-hub-for-platform",
                             "match": {"claim": "claims.department", "equals": "Platform"},
                             "deny": {"roles": [HUB_ARN]}})
    base = live_bridge(chained(mapping=mapping))
    s = dev_login(base, "alice")
    portal = portal_json(s, base)
    assert DEV_ARN not in {g["role_arn"] for g in portal["grants"]}
    assert f"arn:aws:iam::{ACCOUNT}:role/Admin" in {g["role_arn"] for g in portal["grants"]}  # the rest stands
    r = s.get(f"{base}/go/workloads/Developer", timeout=10)
    assert r.status_code == 403 and "not granted to you" in r.text
    why = s.get(f"{base}/portal/why", timeout=10).text
    assert "denied by rule" in why and "its hub" in why
    forged = s.post(f"{base}/credentials/{grant_id_for(DEV_ARN)}",
                    data={"csrf_token": portal["csrf_token"]}, timeout=30)
    assert forged.status_code in (403, 404)
    assert strict_sts_peer.calls == 0


def test_identity_center_lists_and_issues_a_chained_role(live_bridge, chained, moto_url, strict_sts_peer) -> None:
    from tests.integration.test_identity_center import device_login, portal_client

    base = live_bridge(chained(cli={"poll_interval": 1}))
    token = device_login(base, dev_login(base, "alice"))["accessToken"]
    sso = portal_client(base)
    accounts = {a["accountId"]: a["accountName"] for a in sso.list_accounts(accessToken=token)["accountList"]}
    assert accounts[WORK] == "Workloads" and accounts[VENDOR] == "Audit vendor"
    roles = [r["roleName"] for r in sso.list_account_roles(accessToken=token, accountId=WORK)["roleList"]]
    assert roles == ["Developer"]
    rc = sso.get_role_credentials(accessToken=token, accountId=WORK, roleName="Developer")["roleCredentials"]
    keys = {"AccessKeyId": rc["accessKeyId"], "SecretAccessKey": rc["secretAccessKey"],
            "SessionToken": rc["sessionToken"]}
    assert caller_arn(moto_url, keys).endswith("assumed-role/Developer/alice@example.com")
    assert strict_sts_peer.assume_role_calls[-1].params["DurationSeconds"] == "3600"  # at most 1 h, never more
    rc = sso.get_role_credentials(accessToken=token, accountId=VENDOR, roleName="VendorAudit")["roleCredentials"]
    assert strict_sts_peer.assume_role_calls[-1].params["ExternalId"] == SECRET


def test_the_cli_lists_and_runs_a_chained_role(live_bridge, chained, moto_url, strict_sts_peer, tmp_path) -> None:
    import os
    import subprocess
    import sys

    from tests.integration.test_cli_login import cli_login

    base = live_bridge(chained(cli={"poll_interval": 1}))
    bin_dir = Path(sys.executable).parent
    home = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "XDG_", "BRIDGE_"))}
    home.update(HOME=str(tmp_path), PATH=f"{bin_dir}:{home.get('PATH', '')}", AWS_EC2_METADATA_DISABLED="true",
                AWS_CONFIG_FILE=str(tmp_path / ".aws" / "config"),
                AWS_SHARED_CREDENTIALS_FILE=str(tmp_path / ".aws" / "credentials"))
    cli_login(base, home)

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([str(bin_dir / "bridge"), *args, "--url", base] if args[0] != "exec" else
                              [str(bin_dir / "bridge"), *args], env=home, capture_output=True, text=True, timeout=60)

    roles = run("roles")
    assert re.search(r"^workloads +210987654321 +Developer .* 1 h +granted, via hub/BridgeHub$", roles.stdout, re.M), \
        roles.stdout
    out = run("credential-process", "--role", "workloads/Developer")
    assert out.returncode == 0, out.stderr
    doc = json.loads(out.stdout)
    assert doc["Version"] == 1 and caller_arn(moto_url, doc).endswith("assumed-role/Developer/alice@example.com")
    too_long = run("credential-process", "--role", "workloads/Developer", "--duration", "7200")
    assert too_long.returncode != 0 and "role chaining" in too_long.stderr and "1 hour" in too_long.stderr
    sts = f"import boto3; print(boto3.client('sts', endpoint_url={moto_url!r}).get_caller_identity()['Arn'])"
    got = run("exec", "--url", base, "--role", "vendor/VendorAudit", "--", sys.executable, "-c", sts)
    assert got.returncode == 0 and got.stdout.strip().endswith("assumed-role/VendorAudit/alice@example.com"), got.stderr
    assert SECRET not in roles.stdout + out.stderr + got.stderr


def test_two_hubs_in_a_row_each_call_signed_by_the_one_before(live_bridge, chained, strict_sts_peer, moto_url,
                                                               tmp_path) -> None:
    inner = "arn:aws:iam::222222222222:role/Inner"
    mapping = chain_mapping(tmp_path / "vendor-external-id")
    mapping["accounts"]["222222222222"] = {"alias": "inner", "roles": {"Inner": {"via": "hub/BridgeHub"}}}
    mapping["rules"][0]["grants"][1]["via"] = "inner/Inner"
    strict_sts_peer.trust(inner, HUB_ARN)
    strict_sts_peer.trusts[DEV_ARN] = []
    strict_sts_peer.trust(DEV_ARN, inner)  # only the inner hub may go on to the spoke
    base = live_bridge(chained(mapping=mapping))
    s = dev_login(base, "alice")
    portal = portal_json(s, base)
    assert next(g for g in portal["grants"] if g["role_arn"] == DEV_ARN)["hubs"] == ["hub/BridgeHub", "inner/Inner"]
    creds = _post_credentials(s, base, portal, "/Developer").json()
    assert caller_arn(moto_url, creds).endswith(f"{WORK}:assumed-role/Developer/alice@example.com")
    first, second, third = strict_sts_peer.seen
    assert (first.action, first.role_arn) == ("AssumeRoleWithWebIdentity", HUB_ARN)
    assert (second.role_arn, second.caller, second.params["DurationSeconds"]) == (
        inner, f"arn:aws:sts::{HUB}:assumed-role/BridgeHub/alice@example.com", "900")
    assert (third.role_arn, third.caller, third.params["DurationSeconds"]) == (
        DEV_ARN, "arn:aws:sts::222222222222:assumed-role/Inner/alice@example.com", "3600")
    for hop in (second, third):  # the transitive Department carries on by itself; Email is sent again
        assert hop.params["SourceIdentity"] == "alice@example.com"
        assert [v for k, v in hop.params.items() if k.startswith("Tags.member.") and k.endswith(".Key")] == ["Email"]
    assert strict_sts_peer.sessions[creds["AccessKeyId"]].transitive == {"Department": "Platform",
                                                                          "bridge:mfa": "true"}
    hops = [r for r in audit_records(chained.audit) if r["type"] == "credentials_hop"]
    assert [(r["hop"], r["hops"], r["hop_role_arn"]) for r in hops] == [(1, 3, HUB_ARN), (2, 3, inner), (3, 3, DEV_ARN)]


@pytest.mark.parametrize("code,says", [
    ("PackedPolicyTooLarge", "The session tags and policies that rule 'admins' sends for Admin are too large for AWS"),
    ("MalformedPolicyDocument", "AWS refused the session policy that rule 'admins' sends for Admin")])
def test_an_sts_policy_refusal_names_the_rule(live_bridge, chained, strict_sts_peer, tmp_path, code: str,
                                              says: str) -> None:
    mapping = chain_mapping(tmp_path / "vendor-external-id")
    mapping["rules"][0]["grants"][0]["policy"] = DEV_POLICY  # a direct role with a session policy
    base = live_bridge(chained(mapping=mapping))
    s = dev_login(base, "alice")
    portal = portal_json(s, base)
    strict_sts_peer.fail_next(400, code, "Packed size 112% of the limit" if code.startswith("Packed") else "bad")
    r = s.post(f"{base}/credentials/{grant_id(portal, '/Admin')}", data={"csrf_token": portal["csrf_token"]},
               timeout=30)
    assert r.status_code == 400
    assert says in re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", r.text)).replace("&#39;", "'")
    done = [x for x in audit_records(chained.audit) if x["type"] == "credentials"][-1]
    assert done["outcome"] == "failure" and done["error"] == f"sts_{code}" and done["sts_request_id"] == "strict-sts"


def test_a_direct_role_sends_its_session_policy_with_the_web_identity_call(live_bridge, chained, strict_sts_peer,
                                                                           moto_url, tmp_path) -> None:
    mapping = chain_mapping(tmp_path / "vendor-external-id")
    mapping["rules"][0]["grants"][0].update(policy=DEV_POLICY, policy_arns=["arn:aws:iam::aws:policy/ReadOnlyAccess"])
    base = live_bridge(chained(mapping=mapping))
    s = dev_login(base, "alice")
    portal = portal_json(s, base)
    creds = _post_credentials(s, base, portal, "/Admin").json()
    assert caller_arn(moto_url, creds).endswith("assumed-role/Admin/alice@example.com")
    (call,) = strict_sts_peer.seen
    assert call.action == "AssumeRoleWithWebIdentity"
    assert json.loads(call.params["Policy"])["Statement"][0]["Resource"] == \
        "arn:aws:s3:::team-data/home/alice@example.com/*"
    assert call.params["PolicyArns.member.1.arn"] == "arn:aws:iam::aws:policy/ReadOnlyAccess"
