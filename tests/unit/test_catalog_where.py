"""Grants with `where:` over the accounts catalog (bridge/mapping/catalog_match.py): one rule, one role in
every catalog account of an OU or with a tag; and mapping.accounts_file, the catalog `bridge accounts sync
--write` writes, read and reloaded with the rules, its problems listed at load."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from bridge.config import reload_mapping, settings_from_dict
from bridge.domain.errors import ConfigError
from bridge.domain.identity import Identity
from bridge.mapping import GrantDefaults, decide, load_mapping

PROD, DEV, SEC, LOOSE = "111111111111", "222222222222", "333333333333", "444444444444"
CATALOG: dict[str, Any] = {
    PROD: {"alias": "payments", "ou": "Root/Workloads/Prod", "tags": {"env": "prod", "team": "pay"},
           "roles": {"ReadOnly": {}}},
    DEV: {"alias": "search", "ou": "Root/Workloads", "tags": {"env": "dev"}, "roles": {"ReadOnly": {}}},
    SEC: {"alias": "security", "ou": "Root/Security", "tags": {"env": "prod"}, "roles": {"ReadOnly": {}}},
    LOOSE: {"alias": "workloads-old", "ou": "Root/WorkloadsOld", "roles": {"ReadOnly": {}}},  # not below Workloads
}
ALICE = Identity(connector_id="dev", subject="alice", issuer="dev", email="alice@example.com", groups=("eng",))


def granted(mapping: Any) -> list[str]:
    return sorted(g.role_arn for g in decide(mapping, ALICE, GrantDefaults("sts.amazonaws.com")).grants)


def rule(where: dict[str, Any], role: str = "ReadOnly") -> dict[str, Any]:
    return {"name": "read-everywhere", "match": {"group": "eng"}, "grants": [{"where": where, "role": role}]}


def ro(*accounts: str) -> list[str]:
    return sorted(f"arn:aws:iam::{a}:role/ReadOnly" for a in accounts)


def test_one_rule_grants_the_role_in_every_account_of_an_ou_and_none_outside() -> None:
    m = load_mapping({"accounts": CATALOG, "rules": [rule({"account.ou": "Root/Workloads"})]})
    assert granted(m) == ro(PROD, DEV)  # below counts; Root/WorkloadsOld and Root/Security do not
    m = load_mapping({"accounts": CATALOG, "rules": [rule({"account.ou": "Root/Workloads/Prod"})]})
    assert granted(m) == ro(PROD)
    m = load_mapping({"accounts": CATALOG, "rules": [rule({"account.ou": "Root/Nowhere"})]})
    assert granted(m) == []


def test_tags_must_all_hold_and_a_list_is_any_of() -> None:
    assert granted(load_mapping({"accounts": CATALOG, "rules": [rule({"account.tags.env": "prod"})]})) == ro(PROD, SEC)
    both = rule({"account.tags.env": "prod", "account.ou": "Root/Workloads"})
    assert granted(load_mapping({"accounts": CATALOG, "rules": [both]})) == ro(PROD)
    anyof = rule({"account.tags.env": ["dev", "prod"], "account.tags.team": "pay"})
    assert granted(load_mapping({"accounts": CATALOG, "rules": [anyof]})) == ro(PROD)
    assert granted(load_mapping({"accounts": CATALOG, "rules": [rule({"account.tags.env": "test"})]})) == []


def test_a_where_grant_keeps_its_other_fields_for_each_account() -> None:
    r = rule({"account.ou": "Root/Workloads"})
    r["grants"][0]["tags"] = {"Team": "eng"}
    m = load_mapping({"accounts": CATALOG, "rules": [r]})
    grants = decide(m, ALICE, GrantDefaults("sts.amazonaws.com")).grants
    assert len(grants) == 2 and all(g.tags == {"Team": "eng"} for g in grants)


def test_bad_where_grants_are_clear_errors() -> None:
    bad = [rule({"account.name": "x"}), rule({}),
           {"name": "both", "match": {"group": "eng"}, "grants": [{"where": {"account.ou": "Root"}, "account": PROD,
                                                                    "role": "ReadOnly"}]}]
    with pytest.raises(ConfigError) as e:
        load_mapping({"accounts": CATALOG, "rules": bad})
    assert e.value.problems == [
        "rules[0].grants[0].where: unknown key(s) 'account.name' (write account.ou or account.tags.<key>)",
        "rules[1].grants[0].where: where needs account.ou and/or account.tags.<key>",
        "rules[2].grants[0]: where picks the accounts: give role, not account or role_arn"]


def config(tmp_path: Path, accounts_file: str = "accounts.yaml", **mapping: Any) -> dict[str, Any]:
    return {"base_url": "http://127.0.0.1:1", "insecure_dev_login": True,
            "connectors": [{"id": "dev", "type": "dev", "users": [{"subject": "alice"}]}],
            "mapping": {"accounts_file": accounts_file, "rules": [rule({"account.ou": "Root/Workloads"})],
                        **mapping}}


def test_the_accounts_file_is_read_and_reloaded_with_the_rules(tmp_path: Path) -> None:
    (tmp_path / "accounts.yaml").write_text(yaml.safe_dump({"accounts": {PROD: CATALOG[PROD]}}))
    cfg = tmp_path / "bridge.yaml"
    cfg.write_text(yaml.safe_dump(config(tmp_path)))
    s = settings_from_dict(yaml.safe_load(cfg.read_text()), source_dir=tmp_path, source_file=cfg)
    assert granted(s.mapping) == ro(PROD)
    assert str(tmp_path / "accounts.yaml") in s.mapping.file_stamps
    (tmp_path / "accounts.yaml").write_text(yaml.safe_dump({"accounts": {PROD: CATALOG[PROD], DEV: CATALOG[DEV]}}))
    assert granted(reload_mapping(s)) == ro(PROD, DEV)  # a new account in the OU: granted on reload


def test_a_bad_accounts_file_fails_the_load_listing_every_problem(tmp_path: Path) -> None:
    (tmp_path / "accounts.yaml").write_text(yaml.safe_dump({"accounts": {
        PROD: {"alias": "Not An Alias", "ou": "Root/Workloads", "roles": {"ReadOnly": {}}},
        DEV: {"ou": "Root/Workloads", "tags": {"env": ["dev"]}, "roles": {"ReadOnly": {}}}}}))
    with pytest.raises(ConfigError) as e:
        settings_from_dict(config(tmp_path), source_dir=tmp_path)
    assert e.value.problems == [
        f"accounts.yaml:accounts.{PROD}.alias: String should match pattern '^[a-z0-9]([a-z0-9-]{{1,61}}[a-z0-9])?$'",
        f"accounts.yaml:accounts.{DEV}.tags.env: Input should be a valid string"]
    (tmp_path / "accounts.yaml").write_text("- not\n- a mapping\n")
    with pytest.raises(ConfigError) as e:
        settings_from_dict(config(tmp_path), source_dir=tmp_path)
    assert e.value.problems == ["accounts.yaml: must be a mapping with one key, accounts (as `bridge accounts sync "
                                "--write` writes it)"]
    with pytest.raises(ConfigError) as e:
        settings_from_dict(config(tmp_path, "missing.yaml"), source_dir=tmp_path)
    assert e.value.problems == [f"mapping.accounts_file: cannot read {tmp_path / 'missing.yaml'} "
                                "(No such file or directory)"]


def test_an_account_both_in_the_config_and_the_accounts_file_is_refused(tmp_path: Path) -> None:
    (tmp_path / "accounts.yaml").write_text(yaml.safe_dump({"accounts": {PROD: CATALOG[PROD]}}))
    with pytest.raises(ConfigError) as e:
        settings_from_dict(config(tmp_path, accounts={PROD: {"alias": "pay"}}), source_dir=tmp_path)
    assert e.value.problems == [f"mapping.accounts.{PROD}: also in accounts.yaml; keep one"]
