"""Load-time validation of rules: every problem, each with its path — inline, in a rules file, in the old form."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest
import yaml
from click.testing import CliRunner

from bridge.commands.cli import main
from bridge.config import settings_from_dict
from bridge.domain.errors import ConfigError
from bridge.mapping import load_mapping

ACCOUNT = "123456789012"
ADMIN = f"arn:aws:iam::{ACCOUNT}:role/Admin"
CONFIG: dict[str, Any] = {
    "base_url": "https://bridge.example.com",
    "connectors": [{"id": "corp", "type": "oidc", "issuer": "https://idp.example.com", "client_id": "c",
                    "client_secret": "s"}],
}


def problems(doc: Any, **kw: Any) -> list[str]:
    with pytest.raises(ConfigError) as exc:
        load_mapping(doc, **kw)
    return exc.value.problems


def one_rule(**kw: Any) -> dict[str, Any]:
    rule: dict[str, Any] = {"name": "r", "match": {"group": "g"}, "grants": [{"role_arn": ADMIN}]}
    grant = kw.pop("grant", None)
    rule.update(kw)
    if grant is not None:
        rule["grants"] = [{"role_arn": ADMIN, **grant}]
    return {"rules": [rule]}


@pytest.mark.parametrize(("rule", "expected"), [
    ({"match": {"claim": "groups", "regex": "a(b"}},
     "rules[0].match.regex: bad regex 'a(b': missing ), unterminated subpattern at position 1"),
    ({"match": {"claim": "groups", "matches": "x"}},
     "rules[0].match: unknown operator 'matches'; use one of equals, in, contains"),
    ({"match": {"claim": "groups"}}, "rules[0].match: give exactly one operator with 'claim'"),
    ({"match": {"claim": "groups", "equals": "a", "regex": "b"}},
     "rules[0].match: give exactly one operator with 'claim' (equals, in, contains, starts_with, ends_with, regex, "
     "glob, exists); got equals, regex"),
    ({"match": {"claim": "dept", "equals": "x"}}, "rules[0].match.claim: 'dept' is not a claim path"),
    ({"match": {"all": [{"group": "a"}, {"claim": "email", "in": []}]}}, "rules[0].match.all[1].in: needs at least "
                                                                        "one value"),
    ({"match": {"all": []}}, "rules[0].match.all: List should have at least 1 item"),
    ({"match": "admins"}, "rules[0].match: a condition is a mapping: {group: NAME}"),
    ({"match": {"not": {"group": "a"}, "group": "b"}}, "rules[0].match.group: Extra inputs are not permitted"),
    ({"grant": {"role_arn": "arn:aws:iam::{match.account}:role/x"}},
     "rules[0].grants[0].role_arn: {match.account}: the match sets no capture 'account' (captures: none)"),
    ({"match": {"any": [{"claim": "groups", "regex": "(?P<a>x)"}, {"group": "b"}]},
      "grant": {"label": "{match.a}"}},
     "rules[0].grants[0].label: {match.a}: not every way the match can hold sets 'a'"),
    ({"match": {"all": [{"claim": "groups", "regex": "(?P<a>x)"}, {"claim": "email", "regex": "(?P<a>y)"}]}},
     "rules[0].match.all[1]: capture 'a' is also set by all[0]"),
    ({"grant": {"tags": {"T": "{claims.x|nope}"}}}, "rules[0].grants[0].tags.T: unknown filter 'nope'"),
    ({"grant": {"tags": {"aws:x": "1"}}}, "rules[0].grants[0].tags.aws:x: tag key 'aws:x' starts with the reserved "
                                         "prefix 'aws:'"),
    ({"grant": {"tags": {"a b&c": "1"}}}, "rules[0].grants[0].tags.a b&c: tag key 'a b&c' has characters AWS does "
                                         "not allow: '&'"),
    ({"grant": {"tags": {"K" * 129: "1"}}}, "is longer than 128 characters"),
    ({"grant": {"tags": {"T": "aws:x"}}}, "rules[0].grants[0].tags.T: tag 'T'"[:0] + "tag value starts with the "
                                         "reserved prefix 'aws:'"),
    ({"grant": {"tags": {"T": "a,b"}}}, "rules[0].grants[0].tags.T: tag value has characters AWS does not allow"),
    ({"grant": {"tags": {"Dept": "x", "dept": "y"}}}, "rules[0].grants[0].tags.dept: tag keys 'Dept' and 'dept' "
                                                      "differ only in case"),
    ({"grant": {"tags": {f"K{i}": "v" for i in range(50)}}}, "rules[0].grants[0].tags: 50 tags; a rule may send at "
                                                             "most 49 (AWS allows 50 per session; the bridge sends "
                                                             "bridge:mfa)"),
    ({"grant": {"tags": {"bridge:mfa": "true"}}}, "rules[0].grants[0].tags.bridge:mfa: rule 'r': tag key 'bridge:mfa' "
                                                  "starts with 'bridge:', which is reserved for the tags the bridge "
                                                  "sets itself (bridge:mfa): rename the tag"),
    ({"grant": {"tags": {"Bridge:Team": "{email}"}}}, "rules[0].grants[0].tags.Bridge:Team: rule 'r': tag key "
                                                      "'Bridge:Team' starts with 'bridge:'"),
    ({"grant": {"tags": {"Dept": "x"}, "transitive_tags": ["Team"]}},
     "rules[0].grants[0].transitive_tags[0]: transitive tag key 'Team' is not one of the session tags"),
    ({"grant": {"duration": 600}}, "rules[0].grants[0].duration: default 600s is outside AWS's 900..43200 seconds"),
    ({"grant": {"duration": {"max": 50000}}}, "rules[0].grants[0].duration: max 50000s is outside"),
    ({"grant": {"duration": 7200}}, "rules[0].grants[0].duration: default 7200s is above the max 3600s (set "
                                    "duration.max, or declare the role's max_session_duration in the catalog)"),
    ({"grant": {"duration": {"default": 7200, "max": 3600}}}, "default 7200s is above the max 3600s"),
    ({"grant": {"role_arn": "arn:aws:iam::123:role/x"}}, "rules[0].grants[0].role_arn: 'arn:aws:iam::123:role/x' is "
                                                         "not an IAM role ARN"),
    ({"grant": {"role_arn": "arn:aws-cn:iam::123456789012:role/x"}},
     "rules[0].grants[0].role_arn: not in the configured partition aws"),
    ({"grants": [{"account": "nowhere", "role": "Admin"}]},
     "rules[0].grants[0].account: 'nowhere' is neither a 12-digit account id nor an alias"),
    ({"grants": [{"account": ACCOUNT, "role": "bad role!"}]},
     "rules[0].grants[0].role: 'bad role!' is not a role name"),
    ({"grants": [{"account": ACCOUNT}]}, "rules[0].grants[0]: account and role go together"),
    ({"grants": [{"role_arn": ADMIN, "account": ACCOUNT, "role": "x"}]},
     "rules[0].grants[0]: give either role_arn, or account and role"),
    ({"grants": [{"account": 123456789012, "role": "x"}]}, "rules[0].grants[0].account: quote account ids"),
    ({"grant": {"provider": "bad name!"}}, "rules[0].grants[0].provider: 'bad name!' is neither a SAML provider name"),
    ({"grant": {"session_name": "x"}}, "rules[0].grants[0].session_name: 'x' is not allowed by AWS"),
    ({"grant": {"source_identity": "has space"}}, "rules[0].grants[0].source_identity: 'has space' is not allowed"),
    ({"grant": {"path": "soap"}}, "rules[0].grants[0].path: Input should be 'jwt', 'saml' or 'passthrough'"),
    ({"grant": {"roles": [ADMIN]}}, "rules[0].grants[0].roles: Extra inputs are not permitted"),
    ({"deny": "all"}, "rules[0]: a rule has either grants or deny"),
    ({"grants": None, "deny": {"accounts": ["nowhere"]}}, "rules[0].deny.accounts[0]: 'nowhere' is neither"),
    ({"grants": None, "deny": {}}, "rules[0].deny: deny needs accounts and/or roles"),
    ({"grants": None, "deny": "some"}, "rules[0].deny: write deny: all, or deny: {accounts: [...], roles: [...]}"),
    ({"grants": None}, "rules[0]: a rule has either grants or deny"),
    ({"grants": []}, "rules[0].grants: List should have at least 1 item"),
    ({"name": ""}, "rules[0].name: String should have at least 1 character"),
])
def test_one_problem_with_its_path(rule: dict[str, Any], expected: str) -> None:
    doc = one_rule(**{k: v for k, v in rule.items() if k != "grants" or v is not None})
    if rule.get("grants", ...) is None:
        del doc["rules"][0]["grants"]
    found = problems(doc)
    assert any(p.startswith(expected) or expected in p for p in found), found


def test_every_problem_is_listed_at_once() -> None:
    doc = {"accounts": {"12345": {"alias": "Bad Alias"}}, "rules": [
        {"name": "a", "match": {"claim": "groups", "regex": "("}, "grants": [{"role_arn": ADMIN}]},
        {"name": "b", "match": {"claim": "groups", "oops": 1}, "grants": [{"role_arn": ADMIN}]},
        {"name": "c", "match": {"group": "x"}, "grants": [{"role_arn": ADMIN, "tags": {"aws:k": "{email|bad}"},
                                                          "duration": 100}]},
        {"name": "c", "match": {"group": "y"}, "grants": [{"role_arn": "nope"}]},
    ]}
    found = problems(doc)
    for expected in ("accounts.12345.alias: String should match pattern", "rules[0].match.regex: bad regex",
                     "rules[1].match: unknown operator 'oops'", "rules[2].grants[0].tags.aws:k: unknown filter 'bad'",
                     "rules[2].grants[0].duration: default 100s is outside", "rules[3].name: rule names must be "
                     "unique; 'c' is also rules[2]", "rules[3].grants[0].role_arn: 'nope' is not an IAM role ARN"):
        assert any(p.startswith(expected) for p in found), (expected, found)


def test_catalog_problems() -> None:
    found = problems({"accounts": {"12345": {}, ACCOUNT: {"alias": "dup", "roles": {"A": {"max_session_duration": 99}}},
                                   "210987654321": {"alias": "dup", "partition": "mars"}}})
    assert "accounts.12345: an account id is 12 digits" in found
    assert any(p.startswith(f"accounts.{ACCOUNT}.roles.A.max_session_duration: Input should be greater than or "
                            "equal to 3600") for p in found)
    assert any(p.startswith("accounts.210987654321.partition: Input should be 'aws'") for p in found)
    assert problems({"accounts": {123456789012: {}}}) == [
        "accounts: quote account ids (123456789012): YAML reads them as numbers and drops leading zeros"]
    found = problems({"accounts": {ACCOUNT: {"alias": "dup"}, "210987654321": {"alias": "dup"}}})
    assert found == [f"accounts.210987654321.alias: alias 'dup' is already used by account {ACCOUNT}"]


def test_durations_against_the_catalog() -> None:
    accounts = {ACCOUNT: {"alias": "sandbox", "roles": {"Admin": {"max_session_duration": 7200}}}}
    rule = {"name": "r", "match": {"group": "g"}, "grants": [{"account": "sandbox", "role": "Admin",
                                                              "duration": {"max": 43200}}]}
    assert problems({"accounts": accounts, "rules": [rule]}) == [
        "rules[0].grants[0].duration: max 43200s is above the role's max_session_duration 7200s (accounts catalog); "
        "AWS would refuse it"]
    ok = load_mapping({"accounts": accounts, "rules": [{**rule, "grants": [{"role_arn": ADMIN, "duration": 7200}]}]})
    assert ok.rules[0].name == "r"


def test_partition_from_the_catalog() -> None:
    accounts = {ACCOUNT: {"partition": "aws-us-gov"}}
    ok = load_mapping({"accounts": accounts, "rules": [{"name": "r", "match": {"group": "g"}, "grants": [
        {"role_arn": f"arn:aws-us-gov:iam::{ACCOUNT}:role/A"}, {"account": ACCOUNT, "role": "B"}]}]})
    assert [str(g.static_arn) for g in ok.compiled.rules[0].grants] == [
        f"arn:aws-us-gov:iam::{ACCOUNT}:role/A", f"arn:aws-us-gov:iam::{ACCOUNT}:role/B"]
    assert problems({"accounts": accounts, "rules": [{"name": "r", "match": {"group": "g"},
                                                      "grants": [{"role_arn": ADMIN}]}]}) == [
        "rules[0].grants[0].role_arn: not in the configured partition aws-us-gov"]


# --------------------------------------------------------------------------- tag conflicts between rules


def grant_rule(name: str, tags: dict[str, Any], role: str = ADMIN, **kw: Any) -> dict[str, Any]:
    return {"name": name, "match": {"group": name}, "grants": [{"role_arn": role, "tags": tags}], **kw}


def test_static_tag_conflict_between_rules_granting_the_same_role() -> None:
    found = problems({"rules": [grant_rule("a", {"Team": "red"}), grant_rule("b", {"team": "blue"})]})
    assert found == ["rules[1].grants[0].tags.team: conflicts with rules[0].grants[0].tags.Team (rule 'a'): both grant "
                     f"{ADMIN} and set tag 'team' to different values ('red' vs 'blue'); tags of rules granting the "
                     "same role merge"]


def test_static_conflict_through_the_catalog_spelling_of_the_role() -> None:
    doc = {"accounts": {ACCOUNT: {"alias": "sandbox"}},
           "rules": [grant_rule("a", {"Team": "red"}),
                     {"name": "b", "match": {"group": "b"},
                      "grants": [{"account": "sandbox", "role": "Admin", "tags": {"Team": {"value": "blue"}}}]}]}
    assert len(problems(doc)) == 1


@pytest.mark.parametrize("second", [
    grant_rule("b", {"Team": "red"}),                                    # same value
    grant_rule("b", {"Team": "blue"}, role=f"arn:aws:iam::{ACCOUNT}:role/Other"),  # another role
    grant_rule("b", {"Team": "{claims.team}"}),                          # decided at login (first wins, logged)
    grant_rule("b", {"Team": "blue"}, connectors=["dev"]),               # never matches the same identity
])
def test_not_a_static_conflict(second: dict[str, Any]) -> None:
    assert load_mapping({"rules": [grant_rule("a", {"Team": "red"}, connectors=["corp"]), second]})


# --------------------------------------------------------------------------- in the config and in a rules file


def config_problems(raw: dict[str, Any], tmp_path: Path | None = None) -> list[str]:
    with pytest.raises(ConfigError) as exc:
        settings_from_dict(raw, source_dir=tmp_path or Path("."))
    return exc.value.problems


def test_inline_problems_are_prefixed_with_mapping() -> None:
    raw = copy.deepcopy(CONFIG)
    raw["mapping"] = {"rules": [{"name": "r", "connectors": ["okta"], "match": {"group": "g"},
                                 "grants": [{"role_arn": ADMIN}]}], "reload_interval": -1}
    assert sorted(config_problems(raw)) == ["mapping.reload_interval: Input should be greater than or equal to 0",
                                            "mapping.rules[0].connectors: no connector with id 'okta'"]


def test_mapping_problems_show_even_when_other_sections_are_broken() -> None:
    raw = copy.deepcopy(CONFIG)
    raw["base_url"] = "ftp://x"
    raw["mapping"] = {"rules": [{"name": "r", "match": {"group": "g"}, "grants": [{"role_arn": "x"}]}]}
    found = config_problems(raw)
    assert any(p.startswith("base_url:") for p in found)
    assert any(p.startswith("mapping.rules[0].grants[0].role_arn: 'x' is not an IAM role ARN") for p in found)


def write(path: Path, doc: Any) -> Path:
    path.write_text(yaml.safe_dump(doc, sort_keys=False, allow_unicode=True), encoding="utf-8")
    return path


def test_rules_file_holds_rules_and_accounts(tmp_path: Path) -> None:
    write(tmp_path / "rules.yaml", {"accounts": {ACCOUNT: {"alias": "sandbox"}},
                                    "rules": [{"name": "r", "match": {"group": "g"},
                                               "grants": [{"account": "sandbox", "role": "Admin"}]}]})
    raw = {**copy.deepcopy(CONFIG), "mapping": {"rules_file": "rules.yaml"}}
    s = settings_from_dict(raw, source_dir=tmp_path)
    assert [r.name for r in s.mapping.rules] == ["r"] and s.rules_path == tmp_path / "rules.yaml"
    (tmp_path / "list.yaml").write_text("- {name: r, match: {group: g}, grants: [{role_arn: '" + ADMIN + "'}]}\n")
    raw["mapping"] = {"rules_file": "list.yaml"}
    assert settings_from_dict(raw, source_dir=tmp_path).mapping.rules[0].name == "r"
    (tmp_path / "rules.json").write_text(json.dumps([{"name": "j", "match": {"group": "g"},
                                                      "grants": [{"role_arn": ADMIN}]}]))
    raw["mapping"] = {"rules_file": "rules.json"}
    assert settings_from_dict(raw, source_dir=tmp_path).mapping.rules[0].name == "j"


def test_rules_file_problems_name_the_file(tmp_path: Path) -> None:
    write(tmp_path / "rules.yaml", {"rules": [{"name": "r", "match": {"claim": "groups", "regex": "("},
                                               "grants": [{"role_arn": ADMIN}]}], "extra": 1})
    raw = {**copy.deepcopy(CONFIG), "mapping": {"rules_file": "rules.yaml",
                                                "accounts": {"12": {}}}}
    assert sorted(config_problems(raw, tmp_path)) == [
        "mapping.accounts.12: an account id is 12 digits",
        "rules.yaml:extra: unknown key (a rules file holds rules, accounts and expected_rules)",
        "rules.yaml:rules[0].match.regex: bad regex '(': missing ), unterminated subpattern at position 0",
    ]


@pytest.mark.parametrize(("content", "expected"), [
    (None, "mapping.rules_file: cannot read"),
    ("rules: [\n  - {name: x\n", "rules.yaml (line "),
    ("just text", "rules.yaml: must be a list of rules, or a mapping with rules and accounts"),
])
def test_unreadable_rules_file(tmp_path: Path, content: str | None, expected: str) -> None:
    if content is not None:
        (tmp_path / "rules.yaml").write_text(content)
    raw = {**copy.deepcopy(CONFIG), "mapping": {"rules_file": "rules.yaml"}}
    (problem,) = config_problems(raw, tmp_path)
    assert problem.startswith(expected), problem


def test_rules_inline_and_in_a_file_is_a_problem(tmp_path: Path) -> None:
    write(tmp_path / "rules.yaml", [{"name": "r", "match": {"group": "g"}, "grants": [{"role_arn": ADMIN}]}])
    raw = {**copy.deepcopy(CONFIG), "mapping": {"rules_file": "rules.yaml", "rules": []}}
    assert config_problems(raw, tmp_path) == ["mapping.rules: given here and in rules.yaml; keep one"]


def test_env_variables_work_in_rules_files(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BRIDGE_TEST_ACCOUNT", ACCOUNT)
    (tmp_path / "rules.yaml").write_text("- {name: r, match: {group: g}, grants: [{role_arn: "
                                         "'arn:aws:iam::${BRIDGE_TEST_ACCOUNT}:role/A'}]}\n")
    raw = {**copy.deepcopy(CONFIG), "mapping": {"rules_file": "rules.yaml"}}
    s = settings_from_dict(raw, source_dir=tmp_path)
    assert s.mapping.rules[0].grants is not None and s.mapping.rules[0].grants[0].role_arn == \
        f"arn:aws:iam::{ACCOUNT}:role/A"


# --------------------------------------------------------------------------- the old flat form


def test_flat_form_problems_keep_the_paths_the_admin_wrote() -> None:
    found = problems({"rules": [
        {"name": "a", "group": "g", "role_arn": ADMIN, "tags": {"Dept": "dept"}, "session_name_from": "login",
         "max_duration": 50000},
        {"name": "b", "claim": "email", "role_arn": ADMIN},
    ]})
    assert "rules[0].tags.Dept: {dept}: 'dept' is not a claim path; use subject, email, name, groups, issuer, " \
           "connector_id, amr, acr, mfa, claims.<name> or match.<capture>" in found
    assert any(p.startswith("rules[0].session_name_from: {login}: 'login' is not a claim path") for p in found)
    assert "rules[0].duration: max 50000s is outside AWS's 900..43200 seconds" in found
    assert "rules[1]: 'claim' needs 'equals'" in found


def test_check_config_warns_about_the_flat_form(tmp_path: Path) -> None:
    from bridge.keys.signing import generate_cache_key, generate_key

    generate_key(tmp_path / "keys", "ES256")
    generate_cache_key(tmp_path / "keys")
    raw = {**copy.deepcopy(CONFIG), "issuer": {"keys_dir": "keys"},
           "mapping": {"rules": [{"name": "old", "group": "g", "role_arn": ADMIN}]}}
    write(tmp_path / "bridge.yaml", raw)
    r = CliRunner().invoke(main, ["check-config", "--config", str(tmp_path / "bridge.yaml")])
    assert r.exit_code == 0 and r.stdout == "ok\n"
    assert "warning: mapping: 1 rule(s) use the old flat form (old)" in r.stderr


def test_check_config_lists_every_rules_file_problem(tmp_path: Path) -> None:
    write(tmp_path / "rules.yaml", [
        {"name": "a", "match": {"claim": "groups", "regex": "("}, "grants": [{"role_arn": ADMIN}]},
        {"name": "b", "match": {"group": "g"}, "grants": [{"role_arn": ADMIN, "tags": {"T": "{x}"}}]},
    ])
    write(tmp_path / "bridge.yaml", {**copy.deepcopy(CONFIG), "mapping": {"rules_file": "rules.yaml"}})
    r = CliRunner().invoke(main, ["check-config", "--config", str(tmp_path / "bridge.yaml")])
    assert r.exit_code == 1
    assert "2 problem(s):" in r.stderr
    assert "  - rules.yaml:rules[0].match.regex: bad regex" in r.stderr
    assert "  - rules.yaml:rules[1].grants[0].tags.T: {x}: 'x' is not a claim path" in r.stderr


@pytest.mark.parametrize(("match", "expected"), [
    ({"claim": "email", "exists": True, "ignore_case": True},
     "rules[0].match: ignore_case goes with equals, in, contains, starts_with, ends_with, regex or glob"),
    ({"claim": "email", "ends_with": "@x", "ignore_case": "yes"}, "rules[0].match.ignore_case: Input should be a "
                                                                  "valid boolean"),
    ({"claim": "email", "ignore_case": True}, "rules[0].match: give exactly one operator with 'claim'"),
    ({"group": "g", "ignore_case": True}, "rules[0].match.ignore_case: Extra inputs are not permitted"),
])
def test_ignore_case_problems(match: dict[str, Any], expected: str) -> None:
    found = problems(one_rule(match=match))
    assert any(p.startswith(expected) for p in found), found


# --------------------------------------------------------------------------- rules the index cannot serve


def test_check_config_names_the_rules_the_index_cannot_serve(tmp_path: Path) -> None:
    """A rule whose match holds no text to look up is tested for every identity: the load says which,
    and only those (a regex without a literal prefix, or ignoring case, is served by the index)."""
    from bridge.keys.signing import generate_cache_key, generate_key

    generate_key(tmp_path / "keys", "ES256")
    generate_cache_key(tmp_path / "keys")
    rules = [{"name": "classes", "match": {"claim": "groups", "regex": r"\w+-\d+"}, "grants": [{"role_arn": ADMIN}]},
             {"name": "absent", "match": {"claim": "claims.x", "exists": False}, "grants": [{"role_arn": ADMIN}]},
             {"name": "no-prefix", "match": {"claim": "groups", "regex": "(dev|prod)-ops"},
              "grants": [{"role_arn": ADMIN}]},
             {"name": "folded", "match": {"claim": "groups", "glob": "*-Admins", "ignore_case": True},
              "grants": [{"role_arn": ADMIN}]}]
    ms = load_mapping({"rules": rules})
    assert ms.scanned_rules == ["classes", "absent"]
    raw = {**copy.deepcopy(CONFIG), "issuer": {"keys_dir": "keys"}, "mapping": {"rules": rules}}
    write(tmp_path / "bridge.yaml", raw)
    r = CliRunner().invoke(main, ["check-config", "--config", str(tmp_path / "bridge.yaml")])
    assert r.exit_code == 0 and r.stdout == "ok\n"
    assert "warning: mapping: 2 rule(s) cannot be indexed ('classes', 'absent'): each is tested for every " \
           "identity at every decision" in r.stderr
    assert "no-prefix" not in r.stderr and "folded" not in r.stderr
    assert load_mapping({"rules": rules[2:]}).scanned_warnings() == []
