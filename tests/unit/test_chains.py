"""Role chaining, ExternalIds and session policies in the rules (bridge/mapping/chains.py), the AssumeRole
rules of the strict validator (docs/aws-rules.md §7.4), and what never shows an ExternalId."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest

from bridge.aws.limits import external_id_problem, policy_problems, policy_size
from bridge.aws.validate import AssumeRoleCall, validate_assume_role
from bridge.config import settings_from_dict
from bridge.core.credcache import CredentialCache
from bridge.domain.errors import ConfigError
from bridge.domain.identity import Grant, Identity
from bridge.mapping import GrantDefaults, decide, load_mapping
from bridge.mapping.report import report, report_text
from bridge.storage.memory import MemoryStore

HUB, WORK, VENDOR = "111111111111", "210987654321", "999988887777"
HUB_ARN = f"arn:aws:iam::{HUB}:role/BridgeHub"
DEV_ARN = f"arn:aws:iam::{WORK}:role/Developer"
VENDOR_ARN = f"arn:aws:iam::{VENDOR}:role/VendorAudit"
SECRET = "vendor-7Qx2:k9=Zp/Lm"
ALICE = Identity(connector_id="c", subject="alice-1", issuer="i", email="alice@example.com", groups=("dev",),
                 claims={"department": "Platform"})
D = GrantDefaults("sts.amazonaws.com")
S3_POLICY = {"Version": "2012-10-17", "Statement": [
    {"Effect": "Allow", "Action": "s3:*", "Resource": "arn:aws:s3:::team-data/home/{email}/*"}]}

BASE: dict[str, Any] = {
    "accounts": {
        HUB: {"alias": "hub", "roles": {"BridgeHub": {}}},
        WORK: {"alias": "workloads", "roles": {"Developer": {"via": "hub/BridgeHub", "max_session_duration": 43200}}},
        VENDOR: {"alias": "vendor", "roles": {"VendorAudit": {"via": "hub/BridgeHub", "external_id": SECRET}}},
    },
    "rules": [{"name": "devs", "match": {"group": "dev"}, "grants": [
        {"account": "workloads", "role": "Developer", "tags": {"Team": "{claims.department}"}, "policy": S3_POLICY},
        {"account": "vendor", "role": "VendorAudit"}]}],
}


def mapping(**change: Any) -> Any:
    raw = copy.deepcopy(BASE)
    for k, v in change.items():
        raw[k] = v
    return load_mapping(raw)


def problems_of(raw: dict[str, Any]) -> list[str]:
    with pytest.raises(ConfigError) as e:
        load_mapping(raw)
    return e.value.problems


def grants(m: Any, identity: Identity = ALICE) -> dict[str, Grant]:
    return {g.role_arn: g for g in decide(m, identity, D).grants}


# --------------------------------------------------------------------------- what a chained grant is


def test_a_catalog_via_makes_every_grant_of_that_role_chained_and_caps_it_at_one_hour() -> None:
    d = decide(mapping(), ALICE, D, explain_all=True)
    dev = {g.role_arn: g for g in d.grants}[DEV_ARN]
    assert [h.role_arn for h in dev.hubs] == [HUB_ARN] and dev.hubs[0].label == "hub/BridgeHub"
    assert (dev.max_duration, dev.default_duration) == (3600, 3600)  # the catalog says 43200: chaining caps it
    assert any("role chaining" in n and "43200" in n for r in d.results for n in r.notes)  # said, not silent
    assert json.loads(dev.policy or "")["Statement"][0]["Resource"] == "arn:aws:s3:::team-data/home/alice@example.com/*"
    vendor = grants(mapping())[VENDOR_ARN]
    assert vendor.external_id == SECRET and vendor.sends_external_id


def test_a_grant_may_name_its_own_hub_and_chains_follow_the_catalog() -> None:
    raw = copy.deepcopy(BASE)
    raw["accounts"]["222222222222"] = {"alias": "hub2", "roles": {"Inner": {"via": "hub/BridgeHub"}}}
    raw["rules"][0]["grants"] = [{"account": "vendor", "role": "VendorAudit", "via": "hub2/Inner"}]
    g = grants(load_mapping(raw))[VENDOR_ARN]
    assert [h.role_arn for h in g.hubs] == [HUB_ARN, "arn:aws:iam::222222222222:role/Inner"]
    assert g.external_id == SECRET  # the catalog role's, whoever names the hub


def test_a_hub_denied_by_a_deny_rule_withholds_the_chained_role_only() -> None:
    raw = copy.deepcopy(BASE)
    raw["rules"].append({"name": "no-hub", "match": {"group": "dev"}, "deny": {"accounts": ["hub"]}})
    d = decide(load_mapping(raw), ALICE, D)
    assert not d.grants
    assert {(w.role_arn, w.code) for _, w in d.withheld} == {(DEV_ARN, "denied"), (VENDOR_ARN, "denied")}
    assert all(f"its hub {HUB_ARN}" in w.reason for _, w in d.withheld)


@pytest.mark.parametrize("email", ["*@example.com", "a?b@example.com", "${aws:username}@example.com"])
def test_a_claim_never_puts_a_wildcard_or_policy_variable_into_a_policy(email: str) -> None:
    who = Identity(connector_id="c", subject="x-1", issuer="i", email=email, groups=("dev",))
    d = decide(mapping(), who, D)
    assert DEV_ARN not in {g.role_arn for g in d.grants}
    (w,) = [w for _, w in d.withheld if w.role_arn == DEV_ARN]
    assert w.code == "invalid" and "{email}" in w.reason and "wildcard" in w.reason


def test_a_policy_too_long_for_one_user_is_withheld_for_that_user_only() -> None:
    raw = copy.deepcopy(BASE)
    long_resource = "arn:aws:s3:::b/" + "x" * 1900 + "/{email}/*"
    raw["rules"][0]["grants"][0]["policy"] = {"Version": "2012-10-17", "Statement": [
        {"Effect": "Allow", "Action": "s3:GetObject", "Resource": long_resource}]}
    m = load_mapping(raw)  # fits with a short e-mail
    assert DEV_ARN in grants(m)
    long_mail = Identity(connector_id="c", subject="y-1", issuer="i", email="a" * 120 + "@example.com", groups=("dev",))
    (w,) = [w for _, w in decide(m, long_mail, D).withheld if w.role_arn == DEV_ARN]
    assert w.code == "limits" and "2048" in w.reason


def test_the_explanation_names_the_hub_and_whether_an_external_id_is_set_never_its_value() -> None:
    results = decide(mapping(), ALICE, D, explain_all=True).results
    text = report_text(results, ALICE)
    assert "reached through hub/BridgeHub (role chaining" in text
    assert "ExternalId set for vendor/VendorAudit (its value is never shown)" in text
    doc = json.dumps(report(results, ALICE))
    assert SECRET not in text and SECRET not in doc
    vendor = next(g for r in report(results, ALICE)["rules"] for g in r["grants"] if g["role_arn"] == VENDOR_ARN)
    assert vendor["external_id"] is True and vendor["hubs"][0]["role_arn"] == HUB_ARN
    assert SECRET not in repr(grants(mapping())[VENDOR_ARN])


def test_a_grant_through_json_loses_the_external_id_and_keeps_the_rest() -> None:
    g = grants(mapping())[VENDOR_ARN]
    back = Grant.from_json(json.loads(json.dumps(g.to_json())))
    assert back.hubs == g.hubs and back.external_id is None and SECRET not in json.dumps(g.to_json())
    plain = Grant(role_arn="arn:aws:iam::123456789012:role/A", account_id="123456789012", label="A",
                  session_name="alice", via="r")
    assert set(plain.to_json()) == {"role_arn", "account_id", "label", "session_name", "via", "audience",
                                    "provider_arn", "source_identity", "tags", "transitive_keys", "default_duration",
                                    "max_duration", "mfa_required", "path", "account_alias", "account_label",
                                    "console"}  # grants without chains or policies: the JSON they always had


def test_the_credential_cache_keys_on_the_chain_and_the_policy() -> None:
    cache = CredentialCache(MemoryStore(), [b"k" * 32])
    g = grants(mapping())[DEV_ARN]
    entry = cache._entry(ALICE, g, 3600)
    from dataclasses import replace

    assert cache._entry(ALICE, replace(g, policy=None), 3600) != entry
    assert cache._entry(ALICE, replace(g, hubs=()), 3600) != entry
    plain = replace(g, hubs=(), policy=None)
    assert cache._entry(ALICE, plain, 3600) == cache._entry(ALICE, replace(plain), 3600)


# --------------------------------------------------------------------------- bad config: every problem, no secret


def test_an_unknown_via_and_a_loop_are_config_errors() -> None:
    raw = copy.deepcopy(BASE)
    raw["accounts"][HUB]["roles"] = {"BridgeHub": {"via": "hub/Other"}, "Other": {"via": "hub/BridgeHub"}}
    raw["rules"][0]["grants"].append({"account": "workloads", "role": "Developer", "via": "nowhere/Hub"})
    raw["rules"].append({"name": "x", "match": {"group": "x"}, "grants": [
        {"role_arn": DEV_ARN, "via": "hub/Missing"}]})
    problems = problems_of(raw)
    assert any(p.startswith(f"accounts.{HUB}.roles.BridgeHub.via: the chain loops") for p in problems), problems
    assert any("rules[0].grants[2].via: 'nowhere' is neither a 12-digit account id nor an alias" in p for p in problems)
    assert any(p.startswith("rules[1].grants[0].via: unknown hub 'hub/Missing'") for p in problems), problems


def test_a_grant_that_loops_back_to_itself_is_a_config_error() -> None:
    raw = copy.deepcopy(BASE)
    raw["rules"][0]["grants"] = [{"account": "hub", "role": "BridgeHub", "via": "hub/BridgeHub"}]
    assert any("rules[0].grants[0].via: the chain loops" in p for p in problems_of(raw))


def test_more_hops_than_max_hops_is_a_config_error() -> None:
    raw = copy.deepcopy(BASE)
    raw["accounts"]["222222222222"] = {"alias": "hub-two", "roles": {"H2": {"via": "hub/BridgeHub"}}}
    raw["accounts"]["333333333333"] = {"alias": "hub-three", "roles": {"H3": {"via": "hub-two/H2"}}}
    raw["rules"][0]["grants"] = [{"account": "workloads", "role": "Developer", "via": "hub-three/H3"}]
    assert any("rules[0].grants[0].via: 3 sts:AssumeRole calls to reach it; mapping.max_hops allows 2" in p
               for p in problems_of(raw))
    raw["max_hops"] = 3
    assert DEV_ARN in grants(load_mapping(raw))


@pytest.mark.parametrize("value,why", [("has a space", "space"), ("Ж", "2..1224"), ("é-not-ascii", "non-ASCII"),
                                       ("a" * 1225, "2..1224")])
def test_an_external_id_sts_would_refuse_is_a_config_error_that_never_repeats_it(value: str, why: str) -> None:
    raw = copy.deepcopy(BASE)
    raw["accounts"][VENDOR]["roles"]["VendorAudit"]["external_id"] = value
    problems = problems_of(raw)
    (p,) = [p for p in problems if "external_id" in p]
    assert p.startswith(f"accounts.{VENDOR}.roles.VendorAudit.external_id:") and why in p
    assert value not in "\n".join(problems)


def test_an_external_id_without_a_hub_is_a_config_error() -> None:
    raw = copy.deepcopy(BASE)
    raw["accounts"][VENDOR]["roles"]["VendorAudit"].pop("via")
    raw["rules"].append({"name": "y", "match": {"group": "y"}, "grants": [
        {"role_arn": "arn:aws:iam::123456789012:role/Plain", "external_id": "abc-123"}]})
    problems = problems_of(raw)
    assert any(p.startswith(f"accounts.{VENDOR}.roles.VendorAudit.external_id: an ExternalId goes with "
                            "sts:AssumeRole") for p in problems)
    assert any(p.startswith("rules[1].grants[0].external_id: an ExternalId goes with") for p in problems)


def test_a_chained_grant_cannot_ask_for_more_than_an_hour_a_saml_console_or_passthrough() -> None:
    raw = copy.deepcopy(BASE)
    raw["rules"][0]["grants"] = [
        {"account": "workloads", "role": "Developer", "duration": {"max": 7200}},
        {"account": "workloads", "role": "Developer", "console": "saml_post"},
        {"account": "workloads", "role": "Developer", "path": "passthrough"}]
    problems = problems_of(raw)
    assert any(p.startswith("rules[0].grants[0].duration: a role reached through a hub (role chaining) lasts at most "
                            "3600 s") for p in problems)
    assert any(p.startswith("rules[0].grants[1].console: a chained role signs in") for p in problems)
    assert any(p.startswith("rules[0].grants[2].via: a path: passthrough grant") for p in problems)


def test_bad_policies_are_config_errors_with_their_path() -> None:
    raw = copy.deepcopy(BASE)
    huge = {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "s3:*", "Resource": "x" * 2100}]}
    raw["rules"][0]["grants"] = [
        {"account": "workloads", "role": "Developer", "policy": huge},
        {"account": "workloads", "role": "Developer", "policy": "{not json"},
        {"account": "workloads", "role": "Developer", "policy": {"Version": "2012-10-17"}},
        {"account": "workloads", "role": "Developer",
         "policy_arns": [f"arn:aws:iam::aws:policy/P{i}" for i in range(11)]},
        {"account": "workloads", "role": "Developer", "policy_arns": ["arn:aws:s3:::not-a-policy"]},
        {"account": "workloads", "role": "Developer",
         "policy": {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Resource": "{claims.nope|first"}]}}]
    raw["accounts"][HUB]["roles"]["BridgeHub"]["policy"] = {"Statement": [{"Resource": "{match.x}"}]}
    problems = problems_of(raw)
    expect = ["rules[0].grants[0].policy: the session policy and policy ARNs are",
              "rules[0].grants[1].policy: not JSON", "rules[0].grants[2].policy: a session policy needs a Statement",
              "rules[0].grants[3].policy_arns: 11 policy ARNs; AWS takes at most 10",
              "rules[0].grants[4].policy_arns[0]: 'arn:aws:s3:::not-a-policy' is not a managed policy ARN",
              "rules[0].grants[5].policy.Statement[0].Resource: unclosed '{'",
              f"accounts.{HUB}.roles.BridgeHub.policy.Statement[0].Resource: a catalog role's policy cannot use"]
    for want in expect:
        assert any(p.startswith(want) for p in problems), (want, problems)


def test_yaml_reading_version_as_a_date_is_named() -> None:
    import datetime

    raw = copy.deepcopy(BASE)
    raw["rules"][0]["grants"][0]["policy"] = {"Version": datetime.date(2012, 10, 17), "Statement": []}
    assert any("policy.Version: quote this value" in p for p in problems_of(raw))


def test_external_id_file_is_read_and_its_problems_are_clear(tmp_path: Path) -> None:
    secret = tmp_path / "vendor-id"
    secret.write_text(SECRET + "\n")
    raw = copy.deepcopy(BASE)
    raw["accounts"][VENDOR]["roles"]["VendorAudit"] = {"via": "hub/BridgeHub", "external_id_file": str(secret)}
    base = {"base_url": "http://127.0.0.1:1", "insecure_dev_login": True,
            "connectors": [{"id": "c", "type": "dev", "users": [{"subject": "alice"}]}]}
    s = settings_from_dict({**base, "mapping": raw}, source_dir=tmp_path)
    assert grants(s.mapping)[VENDOR_ARN].external_id == SECRET
    raw["accounts"][VENDOR]["roles"]["VendorAudit"]["external_id_file"] = "missing-file"
    with pytest.raises(ConfigError) as e:
        settings_from_dict({**base, "mapping": copy.deepcopy(raw)}, source_dir=tmp_path)
    assert any(p.startswith(f"mapping.accounts.{VENDOR}.roles.VendorAudit.external_id_file: cannot read")
               for p in e.value.problems)
    secret.write_text("with a space\n")
    raw["accounts"][VENDOR]["roles"]["VendorAudit"]["external_id_file"] = str(secret)
    with pytest.raises(ConfigError) as e:
        settings_from_dict({**base, "mapping": copy.deepcopy(raw)}, source_dir=tmp_path)
    assert "with a space" not in "\n".join(e.value.problems)
    assert any("external_id: an ExternalId may hold only" in p for p in e.value.problems)


# --------------------------------------------------------------------------- AWS's rules (§7)


def test_external_id_and_policy_limits() -> None:
    assert external_id_problem("ab") is None and external_id_problem("a" * 1224) is None
    assert external_id_problem("Abc_123+=,.@:/-x") is None
    for bad in ("a", "a" * 1225, "a b", "tab\there", "ünï"):
        assert external_id_problem(bad) is not None
    assert policy_size('{ "a" :\n 1 }', ["arn:aws:iam::aws:policy/X"]) == len('{"a":1}') + 25
    assert policy_problems("x" * 2048) == [] and policy_problems("x" * 2049)
    assert policy_problems("x" * 2000 + " " * 500) == []  # whitespace is not counted
    assert policy_problems("é€")  # U+20AC is beyond U+00FF


@pytest.mark.parametrize("change,rule", [
    ({"role_session_name": "has space"}, "1"), ({"duration": 3601}, "2"), ({"duration": 899}, "2"),
    ({"external_id": "a b"}, "3"), ({"policy": "x" * 2049}, "4"),
    ({"policy_arns": tuple(f"arn:aws:iam::aws:policy/P{i}" for i in range(11))}, "4"),
    ({"source_identity": "someone-else"}, "5"), ({"tags": {"Department": "x"}}, "6"),
    ({"tags": {"A": "1"}, "transitive_keys": ("B",)}, "6")])
def test_validate_assume_role_rules(change: dict[str, Any], rule: str) -> None:
    ok = AssumeRoleCall("alice@example.com", 3600, external_id="abc-123", policy='{"Statement":[]}',
                        source_identity="alice@example.com", tags={"Email": "a"},
                        caller_source_identity="alice@example.com", inherited_transitive=("department",))
    assert validate_assume_role(ok) == []
    problems = validate_assume_role(AssumeRoleCall(**{**ok.__dict__, **change}))
    assert problems and {p.rule for p in problems} == {rule}, problems


def test_an_unchained_assume_role_may_last_as_long_as_the_role_allows() -> None:
    call = AssumeRoleCall("alice@example.com", 7200, chained=False)
    assert validate_assume_role(call, 43200) == [] and validate_assume_role(call, 3600)


def test_aws_setup_sets_up_the_hub_with_what_chained_grants_send_and_names_the_chained_roles() -> None:
    from bridge.mapping.roles import roles_sent

    raw = copy.deepcopy(BASE)
    raw["rules"][0]["grants"][0]["transitive_tags"] = ["Team"]
    raw["rules"][0]["grants"][0]["source_identity"] = "{email}"
    sent, notes = roles_sent(load_mapping(raw), D)
    assert [r.arn for r in sent] == [HUB_ARN]  # the spoke and the vendor trust the hub, not the bridge
    hub = sent[0]
    assert hub.rules == ("devs",) and hub.tag_keys == ("Team",) and hub.transitive_keys == ("Team",)
    assert hub.source_identity and hub.max_duration == 900  # the hub's session only serves the next call
    for arn in (DEV_ARN, VENDOR_ARN):
        assert any(n.startswith(f"{arn}: reached through {HUB_ARN} (role chaining)") for n in notes), notes


def test_the_external_id_is_in_no_repr_of_the_loaded_rules() -> None:
    m = mapping()
    for text in (repr(m), repr(m.compiled), repr(m.compiled.catalog.by_id), repr(m.compiled.rules),
                 repr(decide(m, ALICE, D))):
        assert SECRET not in text


def test_preview_of_a_chained_role_shows_the_first_call_into_the_hub(demo_config: Path, tmp_path: Path,
                                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    from click.testing import CliRunner

    from bridge.commands.cli import main
    from bridge.keys.signing import generate_key

    generate_key(tmp_path / "keys", "RS256")
    monkeypatch.setenv("DEMO_KEYS_DIR", str(tmp_path / "keys"))
    identity = Path(__file__).resolve().parents[2] / "config" / "demo-identity.json"
    r = CliRunner().invoke(main, ["preview", "--config", str(demo_config), "--identity", str(identity),
                                  "--role", DEV_ARN, "--decode"])
    assert r.exit_code == 0, r.output
    assert f"note: {DEV_ARN} is reached through {HUB_ARN}: this is the first call, into the hub" in r.output
    doc = json.loads(r.output[r.output.index("{"):r.output.rindex("}") + 1])
    assert doc["DurationSeconds"] == 900 and doc["RoleSessionName"] == "alice@example.com"
    assert "AWS rules: ok" in r.output


def test_doctor_on_a_chained_role_checks_it_trusts_the_hub(demo_config: Path, tmp_path: Path) -> None:
    from click.testing import CliRunner

    from bridge.commands.cli import main

    policy = tmp_path / "role.json"
    policy.write_text(json.dumps({"Version": "2012-10-17", "Statement": []}))
    r = CliRunner().invoke(main, ["doctor", "--config", str(demo_config), "--role", DEV_ARN,
                                  "--trust-policy", str(policy)])
    # the spoke's trust policy is checked against the chain's hop (tests/unit/test_doctor_chain.py)
    assert r.exit_code == 1 and f"no Allow statement trusts the hub {HUB_ARN}" in r.output
