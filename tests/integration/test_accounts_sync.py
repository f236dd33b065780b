"""`bridge accounts sync` against AWS Organizations (moto_server of this module's own: the organization is
global state) and `bridge accounts stackset`: the catalog from OUs and tags, merged with what the config
says, loadable as written; the spokes' roles as CloudFormation that cfn-lint accepts."""

from __future__ import annotations

import copy
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest
import yaml
from click.testing import CliRunner

from bridge.commands.cli import main
from bridge.config import settings_from_dict
from bridge.runtime.localredis import free_port
from tests.unit.test_aws_setup import cfn_problems

pytestmark = pytest.mark.integration
HUB = "111111111111"


@pytest.fixture(scope="module")
def org() -> Iterator[dict[str, Any]]:
    from moto.server import ThreadedMotoServer

    srv = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    srv.start()
    host, port = srv.get_host_and_port()
    url = f"http://{host}:{port}"
    keys = {"aws_access_key_id": "testing", "aws_secret_access_key": "testing"}
    o = boto3.client("organizations", endpoint_url=url, region_name="us-east-1", **keys)
    o.create_organization(FeatureSet="ALL")
    root = o.list_roots()["Roots"][0]["Id"]
    workloads = o.create_organizational_unit(ParentId=root, Name="Workloads")["OrganizationalUnit"]["Id"]
    prod = o.create_organizational_unit(ParentId=workloads, Name="Prod")["OrganizationalUnit"]["Id"]

    def account(name: str, parent: str, **tags: str) -> str:
        made = o.create_account(Email=f"{name.lower().replace(' ', '-')}@example.com", AccountName=name,
                                Tags=[{"Key": k, "Value": v} for k, v in tags.items()])["CreateAccountStatus"]
        o.move_account(AccountId=made["AccountId"], SourceParentId=root, DestinationParentId=parent)
        return str(made["AccountId"])

    ids = {"payments": account("Payments", prod, env="prod"), "search": account("Search", workloads, env="dev"),
           "sandbox": account("Sandbox", root)}
    yield {"url": url, "ids": ids, "workloads": workloads, "env": keys}
    srv.stop()


def config(tmp_path: Path, accounts: dict[str, Any] | None = None) -> Path:
    doc = {"base_url": "http://127.0.0.1:1", "insecure_dev_login": True,
           "connectors": [{"id": "dev", "type": "dev", "users": [{"subject": "alice"}]}],
           "mapping": {"accounts": accounts or {HUB: {"alias": "hub", "roles": {"BridgeHub": {}}}}, "rules": []}}
    path = tmp_path / "bridge.yaml"
    path.write_text(yaml.safe_dump(doc))
    return path


def run(org: dict[str, Any], *args: str, **env: str) -> Any:
    environ = {**{k: v for k, v in os.environ.items() if not k.startswith("AWS_")},
               "AWS_ACCESS_KEY_ID": org["env"]["aws_access_key_id"],
               "AWS_SECRET_ACCESS_KEY": org["env"]["aws_secret_access_key"], **env}
    return CliRunner(env=environ).invoke(main, list(args))


def test_sync_picks_by_ou_and_tag_and_the_result_loads(org: dict[str, Any], tmp_path: Path) -> None:
    cfg = config(tmp_path)
    r = run(org, "accounts", "sync", "--config", str(cfg), "--ou", "Root/Workloads", "--tag", "env=prod",
            "--role", "Developer", "--via", "hub/BridgeHub", "--endpoint-url", org["url"])
    assert r.exit_code == 0, r.output
    doc = yaml.safe_load(r.stdout)["accounts"]
    pay = org["ids"]["payments"]
    assert doc == {pay: {"alias": "payments", "label": "Payments", "email": "payments@example.com",
                         "ou": "Root/Workloads/Prod", "tags": {"env": "prod"},
                         "roles": {"Developer": {"via": "hub/BridgeHub"}}}}  # below Workloads, tagged prod
    merged = {HUB: {"alias": "hub", "roles": {"BridgeHub": {}}}, **doc}
    s = settings_from_dict({"base_url": "http://127.0.0.1:1", "insecure_dev_login": True,
                            "connectors": [{"id": "dev", "type": "dev", "users": [{"subject": "alice"}]}],
                            "mapping": {"accounts": merged}})
    assert [str(h) for h in s.mapping.compiled.catalog.chains[f"arn:aws:iam::{pay}:role/Developer"]] == [
        f"arn:aws:iam::{HUB}:role/BridgeHub"]
    by_id = run(org, "accounts", "sync", "--config", str(cfg), "--ou", org["workloads"], "--role", "ReadOnly",
                "--endpoint-url", org["url"])
    assert set(yaml.safe_load(by_id.stdout)["accounts"]) == {pay, org["ids"]["search"]}  # an OU id, below counts


def test_sync_keeps_what_the_catalog_says_and_never_prints_an_external_id(org: dict[str, Any],
                                                                          tmp_path: Path) -> None:
    pay = org["ids"]["payments"]
    accounts = {HUB: {"alias": "hub", "roles": {"BridgeHub": {}}},
                pay: {"alias": "pay", "label": "Payments (PCI)",
                      "roles": {"Auditor": {"via": "hub/BridgeHub", "external_id": "keep-me-secret-42"}}}}
    cfg = config(tmp_path, copy.deepcopy(accounts))
    r = run(org, "accounts", "sync", "--config", str(cfg), "--ou", "Root/Workloads/Prod", "--role", "Developer",
            "--via", "hub/BridgeHub", "--endpoint-url", org["url"])
    assert r.exit_code == 0, r.output
    entry = yaml.safe_load(r.stdout)["accounts"][pay]
    assert entry["alias"] == "pay" and entry["label"] == "Payments (PCI)"  # written by hand: kept
    assert set(entry["roles"]) == {"Auditor", "Developer"}
    assert "keep-me-secret-42" not in r.output and "external_id" not in r.stdout
    assert f"note: account {pay} role Auditor has an ExternalId: not printed" in r.output
    check = run(org, "accounts", "sync", "--config", str(cfg), "--ou", "Root/Workloads/Prod", "--role", "Developer",
                "--via", "hub/BridgeHub", "--endpoint-url", org["url"], "--check")
    assert check.exit_code == 1 and f"account {pay}: role Developer is not in the catalog" in check.output


def test_sync_errors_are_clear(org: dict[str, Any], tmp_path: Path) -> None:
    cfg = config(tmp_path)
    r = run(org, "accounts", "sync", "--config", str(cfg), "--role", "Developer", "--via", "nohub/X",
            "--endpoint-url", org["url"])
    assert r.exit_code == 1 and "no such hub:" in r.output and "'nohub' is neither" in r.output
    r = run(org, "accounts", "sync", "--config", str(cfg), "--role", "Developer", "--tag", "env",
            "--endpoint-url", org["url"])
    assert r.exit_code == 1 and "--tag 'env': write KEY=VALUE" in r.output
    closed = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    r = run(org, "accounts", "sync", "--config", str(cfg), "--role", "Developer", "--endpoint-url", closed,
            AWS_MAX_ATTEMPTS="1")
    assert r.exit_code == 1 and "cannot read AWS Organizations:" in r.output and "Traceback" not in r.output
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    r = CliRunner(env={**env, "AWS_SHARED_CREDENTIALS_FILE": str(tmp_path / "none"),
                       "AWS_CONFIG_FILE": str(tmp_path / "none"), "AWS_EC2_METADATA_DISABLED": "true"}).invoke(
        main, ["accounts", "sync", "--config", str(cfg), "--role", "Developer", "--endpoint-url", org["url"]])
    assert r.exit_code == 1 and "no AWS credentials" in r.output


def test_stackset_template_trusts_the_hub_and_passes_cfn_lint(tmp_path: Path) -> None:
    cfg = config(tmp_path)
    r = CliRunner().invoke(main, ["accounts", "stackset", "--config", str(cfg), "--via", "hub/BridgeHub",
                                  "--role", "Developer", "--role", "ReadOnly", "--managed-policy",
                                  "ReadOnly=arn:aws:iam::aws:policy/ReadOnlyAccess"])
    assert r.exit_code == 0, r.output
    assert cfn_problems(r.stdout) == []
    res = yaml.safe_load(r.stdout)["Resources"]
    dev = res["RoleDeveloper"]["Properties"]
    assert dev["AssumeRolePolicyDocument"]["Statement"][0]["Principal"] == {"AWS": f"arn:aws:iam::{HUB}:role/BridgeHub"}
    assert dev["MaxSessionDuration"] == 3600 and "ManagedPolicyArns" not in dev
    assert res["RoleReadOnly"]["Properties"]["ManagedPolicyArns"] == ["arn:aws:iam::aws:policy/ReadOnlyAccess"]
    assert "--permission-model SERVICE_MANAGED" in r.stdout
    bad = CliRunner().invoke(main, ["accounts", "stackset", "--config", str(cfg), "--via", "hub/BridgeHub",
                                    "--role", "Developer", "--managed-policy", "Other=arn:aws:iam::aws:policy/X"])
    assert bad.exit_code == 1 and "write ROLE=ARN for one of the --role names" in bad.output


def test_sync_write_feeds_the_accounts_file_and_one_rule_grants_every_account_of_an_ou(
        org: dict[str, Any], tmp_path: Path) -> None:
    from bridge.domain.identity import Identity
    from bridge.mapping import GrantDefaults, decide

    cfg = config(tmp_path)
    doc = yaml.safe_load(cfg.read_text())
    doc["mapping"]["accounts_file"] = "accounts.yaml"
    doc["mapping"]["rules"] = [{"name": "read-workloads", "match": {"group": "eng"},
                                "grants": [{"where": {"account.ou": "Root/Workloads"}, "role": "ReadOnly"}]}]
    (tmp_path / "accounts.yaml").write_text("accounts: {}\n")
    cfg.write_text(yaml.safe_dump(doc))
    r = run(org, "accounts", "sync", "--config", str(cfg), "--role", "ReadOnly", "--via", "hub/BridgeHub",
            "--endpoint-url", org["url"], "--write", str(tmp_path / "accounts.yaml"))
    assert r.exit_code == 0, r.output
    ids = org["ids"]
    written = yaml.safe_load((tmp_path / "accounts.yaml").read_text())["accounts"]
    assert set(written) >= {ids["payments"], ids["search"], ids["sandbox"]} and HUB not in written  # hub: by hand
    assert written[ids["payments"]]["ou"] == "Root/Workloads/Prod" and written[ids["payments"]]["tags"] == {
        "env": "prod"}
    s = settings_from_dict(yaml.safe_load(cfg.read_text()), source_dir=tmp_path, source_file=cfg)
    eng = Identity(connector_id="dev", subject="alice", issuer="dev", email="alice@example.com", groups=("eng",))
    grants = decide(s.mapping, eng, GrantDefaults("sts.amazonaws.com")).grants
    assert sorted(g.role_arn for g in grants) == sorted(
        f"arn:aws:iam::{ids[k]}:role/ReadOnly" for k in ("payments", "search"))  # not the sandbox, at the root
    assert all([h.role_arn for h in g.hubs] == [f"arn:aws:iam::{HUB}:role/BridgeHub"] for g in grants)


def test_aws_setup_organization_writes_the_stackset_of_the_catalog_spokes(tmp_path: Path) -> None:
    spokes = {HUB: {"alias": "hub", "roles": {"BridgeHub": {}}},
              "222222222222": {"alias": "pay", "roles": {"Developer": {"via": "hub/BridgeHub"}, "Local": {}}},
              "333333333333": {"alias": "search", "roles": {"ReadOnly": {"via": "hub/BridgeHub"}}}}
    cfg = config(tmp_path, spokes)
    r = CliRunner().invoke(main, ["aws-setup", "--config", str(cfg), "--organization", "--managed-policy",
                                  "ReadOnly=arn:aws:iam::aws:policy/ReadOnlyAccess"])
    assert r.exit_code == 0, r.output
    assert cfn_problems(r.stdout) == []
    res = yaml.safe_load(r.stdout)["Resources"]
    assert set(res) == {"RoleDeveloper", "RoleReadOnly"}  # the roles reached through the hub, not Local
    for role in res.values():
        stmt = role["Properties"]["AssumeRolePolicyDocument"]["Statement"][0]
        assert stmt["Principal"] == {"AWS": f"arn:aws:iam::{HUB}:role/BridgeHub"}
        assert stmt["Action"] == ["sts:AssumeRole", "sts:TagSession", "sts:SetSourceIdentity"]
    assert res["RoleReadOnly"]["Properties"]["ManagedPolicyArns"] == ["arn:aws:iam::aws:policy/ReadOnlyAccess"]
    same = CliRunner().invoke(main, ["accounts", "stackset", "--config", str(cfg), "--via", "hub/BridgeHub",
                                     "--role", "Developer", "--role", "ReadOnly", "--managed-policy",
                                     "ReadOnly=arn:aws:iam::aws:policy/ReadOnlyAccess"])
    assert same.stdout == r.stdout  # one renderer


def test_aws_setup_organization_errors_are_clear(tmp_path: Path) -> None:
    bare = CliRunner().invoke(main, ["aws-setup", "--config", str(config(tmp_path)), "--organization"])
    assert bare.exit_code == 1 and "no catalog role is reached through a hub" in bare.output
    two = {HUB: {"alias": "hub", "roles": {"BridgeHub": {}, "Other": {}}},
           "222222222222": {"alias": "pay", "roles": {"Developer": {"via": "hub/BridgeHub"},
                                                     "Auditor": {"via": "hub/Other"}}}}
    cfg = config(tmp_path, two)
    r = CliRunner().invoke(main, ["aws-setup", "--config", str(cfg), "--organization"])
    assert r.exit_code == 1 and "through 2 hubs" in r.output and "pick one with --via" in r.output
    r = CliRunner().invoke(main, ["aws-setup", "--config", str(cfg), "--organization", "--via", "hub/Other"])
    assert r.exit_code == 0 and set(yaml.safe_load(r.stdout)["Resources"]) == {"RoleAuditor"}
    r = CliRunner().invoke(main, ["aws-setup", "--config", str(cfg), "--organization", "--format", "terraform"])
    assert r.exit_code == 1 and "drop --format" in r.output
    r = CliRunner().invoke(main, ["aws-setup", "--config", str(cfg), "--via", "hub/Other"])
    assert r.exit_code == 1 and "--via and --managed-policy go with --organization" in r.output
    assert "Traceback" not in r.output


def test_sync_write_never_drops_an_external_id_kept_in_the_accounts_file(org: dict[str, Any], tmp_path: Path) -> None:
    pay = org["ids"]["payments"]
    (tmp_path / "vendor.secret").write_text("keep-me-secret-42")
    before = yaml.safe_dump({"accounts": {pay: {"alias": "pay", "roles": {
        "Auditor": {"via": "hub/BridgeHub", "external_id_file": "vendor.secret"}}}}})
    (tmp_path / "accounts.yaml").write_text(before)
    cfg = config(tmp_path)
    doc = yaml.safe_load(cfg.read_text())
    doc["mapping"]["accounts_file"] = "accounts.yaml"
    cfg.write_text(yaml.safe_dump(doc))
    r = run(org, "accounts", "sync", "--config", str(cfg), "--role", "ReadOnly", "--endpoint-url", org["url"],
            "--write", str(tmp_path / "accounts.yaml"))
    assert r.exit_code == 1 and f"account {pay} role Auditor has an ExternalId: move the account" in r.output
    assert (tmp_path / "accounts.yaml").read_text() == before and "keep-me-secret-42" not in r.output
