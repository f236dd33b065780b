"""bridge/client/ssoconfig.py: Identity Center role names (one rule for the server, `configure --sso` and
`bridge explain`), the config sections and their in-place rewriting — every other byte kept — and
botocore itself reading what was written (the ``services`` section's endpoints)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import boto3
import pytest
from click.testing import CliRunner

from bridge.client import ssoconfig
from bridge.commands.cli import main
from bridge.domain.identity import Grant
from bridge.protocols.identity_center import sso_role_names

BASE = "https://bridge.example.com"
A = "123456789012"


def g(arn: str, alias: str = "sandbox", path: str = "jwt") -> dict[str, Any]:
    return {"role_arn": arn, "account_id": arn.split(":")[4], "role_name": arn.rsplit("/", 1)[-1],
            "account_alias": alias, "path": path}


GRANTS = [g(f"arn:aws:iam::{A}:role/team/Admin"), g(f"arn:aws:iam::{A}:role/Admin"),
          g(f"arn:aws:iam::{A}:role/ReadOnly"), g("arn:aws:iam::210987654321:role/Deploy", alias=""),
          g(f"arn:aws:iam::{A}:role/Upstream", path="passthrough")]


def grant(arn: str, via: str = "r", path: str = "jwt") -> Grant:
    return Grant(role_arn=arn, account_id=arn.split(":")[4], label=arn, session_name="alice", via=via, path=path)


# ---- roles by name ---------------------------------------------------------------------------------


def test_two_roles_with_one_name_shortest_path_then_smaller_arn() -> None:
    arns = [f"arn:aws:iam::{A}:role/z/Admin", f"arn:aws:iam::{A}:role/a/b/Admin", f"arn:aws:iam::{A}:role/b/Admin",
            f"arn:aws:iam::{A}:role/a/Admin"]
    grants = [grant(a) for a in arns]
    names = ssoconfig.role_names(grants, lambda x: (x.account_id, x.role_name, x.role_arn))
    assert [x.role_arn for x in names[A]["Admin"]] == [arns[3], arns[2], arns[0], arns[1]]
    # the server answers with the same winner, whatever the order the rules produced
    for order in (grants, grants[::-1]):
        assert sso_role_names(order)[A]["Admin"].role_arn == f"arn:aws:iam::{A}:role/a/Admin"
    assert sso_role_names([grant(f"arn:aws:iam::{A}:role/team/Admin"), grant(f"arn:aws:iam::{A}:role/Admin")])[
        A]["Admin"].role_arn == f"arn:aws:iam::{A}:role/Admin"
    assert ssoconfig.role_path(f"arn:aws:iam::{A}:role/a/b/Admin") == "/a/b/"
    assert ssoconfig.why_wins(f"arn:aws:iam::{A}:role/Admin", f"arn:aws:iam::{A}:role/team/Admin") == \
        "shorter role path (/ vs /team/)"
    assert "smaller ARN" in ssoconfig.why_wins(arns[3], arns[2])


def test_profiles_one_per_listed_role() -> None:
    profiles = ssoconfig.sso_profiles(GRANTS)
    assert [(p.name, p.role_arn) for p in profiles] == [
        ("sandbox-Admin", f"arn:aws:iam::{A}:role/Admin"), ("sandbox-ReadOnly", f"arn:aws:iam::{A}:role/ReadOnly"),
        ("210987654321-Deploy", "arn:aws:iam::210987654321:role/Deploy")]
    # two accounts with one alias: the account ids tell the profiles apart
    two = [g(f"arn:aws:iam::{A}:role/Admin", "x"), g("arn:aws:iam::111111111111:role/Admin", "x")]
    assert [p.name for p in ssoconfig.sso_profiles(two)] == [f"{A}-Admin", "111111111111-Admin"]
    with pytest.raises(ValueError, match="session name"):
        ssoconfig.sso_sections(BASE, GRANTS, session="my session")
    with pytest.raises(ValueError, match="region"):
        ssoconfig.sso_sections(BASE, GRANTS, region="Europe")


def test_explain_names_each_role_as_identity_center_lists_it(tmp_path: Path) -> None:
    from bridge.keys.signing import generate_cache_key, generate_saml_key

    r = CliRunner().invoke(main, ["keys", "generate", "--dir", str(tmp_path / "keys"), "--alg", "ES256", "--kind",
                                  "jwt"])
    assert r.exit_code == 0
    generate_saml_key(tmp_path / "keys", bits=2048)
    generate_cache_key(tmp_path / "keys")
    cfg = tmp_path / "bridge.yaml"
    cfg.write_text(f"""
base_url: {BASE}
issuer: {{keys_dir: keys}}
connectors: [{{id: corp, type: oidc, issuer: "https://idp.example.com", client_id: c, client_secret: s}}]
mapping:
  rules:
    - name: team-admins
      match: {{group: team}}
      grants: [{{role_arn: "arn:aws:iam::{A}:role/team/Admin"}}]
    - name: admins
      match: {{group: aws-admins}}
      grants: [{{role_arn: "arn:aws:iam::{A}:role/Admin", duration: {{default: 3600, max: 7200}},
                tags: {{Level: high}}}}]
    - name: admins-long
      match: {{group: staff}}
      grants: [{{role_arn: "arn:aws:iam::{A}:role/Admin", duration: {{default: 7200, max: 43200}},
                tags: {{Team: core}}}}]
""")
    ident = tmp_path / "id.json"
    ident.write_text(json.dumps({"connector": "corp", "subject": "alice", "email": "alice@example.com",
                                 "groups": ["team", "aws-admins", "staff"], "claims": {}}))
    r = CliRunner().invoke(main, ["explain", "--config", str(cfg), "--identity", str(ident)])
    assert r.exit_code == 0, r.output
    text = r.output[r.output.index("Identity Center role list"):]
    assert "1 of 2 grant(s)" in text
    assert f"  {A} Admin  ->  arn:aws:iam::{A}:role/Admin\n" in text
    assert f"  not listed: arn:aws:iam::{A}:role/team/Admin\n" in text
    assert (f"arn:aws:iam::{A}:role/Admin holds the name 'Admin' in account {A}: shorter role path (/ vs /team/); "
            "the portal and the bridge CLI still offer it") in text
    assert ("one grant from rules 'admins', 'admins-long': rule 'admins' (first in file order) sets durations, "
            "session name and label; tags merge, the first value of a key wins") in text
    doc = json.loads(CliRunner().invoke(main, ["explain", "--config", str(cfg), "--identity", str(ident),
                                               "--json"]).output)
    listed = {e["role_arn"]: e for e in doc["identity_center"]}
    assert listed[f"arn:aws:iam::{A}:role/Admin"]["listed"] is True
    assert listed[f"arn:aws:iam::{A}:role/Admin"]["merged_rules"] == ["admins-long"]
    assert listed[f"arn:aws:iam::{A}:role/team/Admin"]["listed_instead"] == f"arn:aws:iam::{A}:role/Admin"
    # and the merged grant is the first rule's durations with both rules' tags
    (admin,) = [x for x in doc["grants"] if x["role_arn"] == f"arn:aws:iam::{A}:role/Admin"]
    assert (admin["default_duration"], admin["max_duration"]) == (3600, 7200)
    assert admin["tags"] == {"Level": "high", "Team": "core"}


# ---- rewriting ~/.aws/config -----------------------------------------------------------------------

MESSY = (
    "; my AWS config\r\n"
    "\r\n"
    "[default]\r\n"
    "region=eu-west-1   \r\n"
    "output = json\r\n"
    "\r\n"
    "   # an indented comment\r\n"
    "[profile  work ]\r\n"
    "role_arn = arn:aws:iam::999999999999:role/Work\r\n"
    "source_profile = default\r\n"
    "s3 =\r\n"
    "    max_concurrent_requests = 20\r\n"
    "\r\n"
    "\r\n"
    "# keep me: about the next section\r\n"
    "[sso-session corp]\r\n"
    "sso_start_url = https://corp.awsapps.com/start\r\n"
    "sso_region = us-east-1\r\n"
    "[plugins]\r\n"
    "cli_legacy_plugin_path = /x\r\n"
    "\t\r\n"
    "[profile last]\r\n"
    "region = ap-south-1"  # no line end at the end of the file
)


def test_rewriting_keeps_every_other_byte_and_is_idempotent() -> None:
    blocks = ssoconfig.sso_sections(BASE, GRANTS, region="eu-central-1")
    new, replaced, added = ssoconfig.upsert_sections(MESSY, blocks, BASE)
    assert replaced == [] and added == list(blocks)
    assert new.startswith(MESSY + "\r\n\r\n[sso-session bridge]\r\n")  # the old bytes, one line end, a blank line
    assert new.count("\r\n") == new.count("\n")  # the file's line ends
    again, replaced, added = ssoconfig.upsert_sections(new, blocks, BASE)
    assert again == new and replaced == list(blocks) and added == []
    # a later run with other roles and another region replaces the sections in place
    other = ssoconfig.sso_sections(BASE, GRANTS[:2], region="us-west-2")
    third, replaced, _ = ssoconfig.upsert_sections(again, other, BASE)
    assert third.startswith(MESSY) and third.count("region = us-west-2\r\n") == 2  # sso-session, sandbox-Admin
    assert "[profile sandbox-ReadOnly]" in third  # not a role now: left as it is (configure says so)
    assert ssoconfig.own_profiles(third, "bridge") == ["sandbox-Admin", "sandbox-ReadOnly", "210987654321-Deploy"]


def test_own_sections_are_replaced_in_the_middle_of_a_file_and_comments_after_them_stay() -> None:
    blocks = ssoconfig.sso_sections(BASE, GRANTS[:2])
    mine = blocks[("profile", "sandbox-Admin")].replace("region = us-east-1", "region = old-1")
    text = f"[profile a]\nregion = x\n\n{mine}  # a comment about b\n\n[profile b]\nregion = y\n"
    new, replaced, added = ssoconfig.upsert_sections(text, blocks, BASE)
    assert replaced == [("profile", "sandbox-Admin")]
    assert new.startswith(f"[profile a]\nregion = x\n\n{blocks[('profile', 'sandbox-Admin')]}  # a comment about b\n"
                          "\n[profile b]\nregion = y\n\n[sso-session bridge]\n")
    # a `bridge configure` (credential_process) profile for this bridge is the bridge's own too
    legacy = (f"[profile sandbox-Admin]\ncredential_process = /usr/bin/bridge credential-process --url {BASE} "
              f"--role arn:aws:iam::{A}:role/Admin\nregion = eu-west-1\n")
    new, replaced, _ = ssoconfig.upsert_sections(legacy, blocks, BASE)
    assert ("profile", "sandbox-Admin") in replaced and "credential_process" not in new


@pytest.mark.parametrize("foreign", [
    "[profile sandbox-Admin]\nregion = eu-west-1\n",
    '[profile "sandbox-Admin"]\nsso_session = other\n',
    "[sso-session bridge]\nsso_start_url = https://other.awsapps.com/start\n",
    "[services bridge-endpoints]\ns3 =\n  endpoint_url = http://localhost:4566\n",
    "[profile sandbox-Admin]\ncredential_process = /usr/bin/bridge credential-process --url https://another "
    "--role x\n",
])
def test_a_same_named_section_of_anyone_else_stops_it(foreign: str) -> None:
    with pytest.raises(ssoconfig.ForeignSections) as e:
        ssoconfig.upsert_sections(f"[default]\nregion = x\n\n{foreign}", ssoconfig.sso_sections(BASE, GRANTS), BASE)
    assert str(e.value).startswith("[")


def test_section_headers_as_botocore_reads_them() -> None:
    assert ssoconfig.section_key("[profile  dev ]\r\n") == ("profile", "dev")
    assert ssoconfig.section_key("[sso-session bridge]") == ("sso-session", "bridge")
    assert ssoconfig.section_key("[default]\n") == ("", "default")
    assert ssoconfig.section_key("region = x\n") is None


@pytest.mark.parametrize("crlf", [False, True])
def test_botocore_reads_the_written_config_and_resolves_the_bridge_endpoints(tmp_path: Path, monkeypatch,
                                                                             crlf: bool) -> None:
    text = MESSY if crlf else MESSY.replace("\r\n", "\n")
    new, _, _ = ssoconfig.upsert_sections(text, ssoconfig.sso_sections(BASE, GRANTS, region="eu-central-1"), BASE)
    cfg = tmp_path / "config"
    cfg.write_bytes(new.encode())
    for k in ("AWS_PROFILE", "AWS_DEFAULT_PROFILE", "AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_SSO",
              "AWS_ENDPOINT_URL_SSO_OIDC", "AWS_IGNORE_CONFIGURED_ENDPOINT_URLS"):
        monkeypatch.delenv(k, raising=False)
    monkeypatch.setenv("AWS_CONFIG_FILE", str(cfg))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "none"))
    session = boto3.Session(profile_name="sandbox-Admin")
    assert session.client("sso").meta.endpoint_url == f"{BASE}/sso"
    assert session.client("sso-oidc").meta.endpoint_url == f"{BASE}/sso"
    assert session.region_name == "eu-central-1"
    full = session._session.full_config  # noqa: SLF001 - what the SSO credential provider reads
    assert full["sso_sessions"]["bridge"] == {"sso_start_url": BASE, "sso_region": "eu-central-1",
                                              "sso_registration_scopes": "sso:account:access"}
    assert full["profiles"]["sandbox-Admin"]["sso_role_name"] == "Admin"
    assert full["profiles"]["210987654321-Deploy"]["sso_account_id"] == "210987654321"
    assert full["profiles"]["work"]["s3"] == {"max_concurrent_requests": "20"}  # the user's sections still parse
    assert boto3.Session(profile_name="last").client("sso").meta.endpoint_url == "https://portal.sso.ap-south-1.amazonaws.com"


def test_the_snippet_and_the_answers() -> None:
    text = ssoconfig.sso_config_text(BASE + "/", GRANTS, session="corp-bridge", region="eu-west-1")
    assert text == "".join(ssoconfig.sso_sections(BASE, GRANTS, session="corp-bridge", region="eu-west-1")[k]
                           + "\n" for k in ssoconfig.sso_sections(BASE, GRANTS, session="corp-bridge",
                                                                  region="eu-west-1"))[:-1]
    assert "[services corp-bridge-endpoints]\n" in text and "services = corp-bridge-endpoints\n" in text
    assert "sso_oidc =\n  endpoint_url = https://bridge.example.com/sso\nsso =\n  endpoint_url = " in text
    assert ssoconfig.configure_sso_answers(BASE + "/") == [
        ("SSO session name", "bridge"), ("SSO start URL", BASE), ("SSO region", "us-east-1"),
        ("SSO registration scopes", "sso:account:access")]
    assert ssoconfig.endpoint_env(BASE) == [("AWS_ENDPOINT_URL_SSO_OIDC", f"{BASE}/sso"),
                                            ("AWS_ENDPOINT_URL_SSO", f"{BASE}/sso")]
