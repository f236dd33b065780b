"""The rules engine (bridge/mapping): matching, grants from templates, merging, deny, MFA, the catalog,
and explain's reasons. Operators and filters one by one: test_rules_operators.py; load-time problems:
test_rules_validation.py; AWS limits for arbitrary claims: test_rules_properties.py."""

from __future__ import annotations

import json
from typing import Any

import pytest

from bridge.domain.identity import Identity
from bridge.mapping import (
    GrantDefaults,
    MappingSettings,
    decide,
    evaluate,
    explain,
    load_mapping,
    report,
    report_text,
    resolve_claim,
)

ACCOUNT = "123456789012"
OTHER = "210987654321"
ADMIN = f"arn:aws:iam::{ACCOUNT}:role/Admin"
READONLY = f"arn:aws:iam::{ACCOUNT}:role/ReadOnly"
DEPLOY = f"arn:aws:iam::{ACCOUNT}:role/deploy/PlatformDeploy"
AUD = "sts.amazonaws.com"
CONVENTION = r"aws#(?P<account>\d{12})#(?P<role>[\w+=,.@-]{1,64})"


def ident(**kw: Any) -> Identity:
    base: dict[str, Any] = {
        "connector_id": "corp",
        "subject": "00u1abcd",
        "issuer": "https://idp.example.com",
        "email": "alice@example.com",
        "name": "Alice Example",
        "groups": ("aws-admins", "devs"),
        "claims": {
            "department": "Platform",
            "teams": ["red", "blue"],
            "org": {"unit": "R&D", "cc": 4711},
            "single": ["only"],
            "contractor": False,
        },
        "mfa": False,
    }
    base.update(kw)
    return Identity(**base)


def rules(*rs: dict[str, Any], accounts: dict[str, Any] | None = None) -> MappingSettings:
    doc: dict[str, Any] = {"rules": list(rs)}
    if accounts:
        doc["accounts"] = accounts
    return load_mapping(doc)


def rule(name: str = "r", role_arn: str | None = ADMIN, *, match: Any = None, connectors: list[str] | None = None,
         deny: Any = None, **grant: Any) -> dict[str, Any]:
    d: dict[str, Any] = {"name": name, "match": match if match is not None else {"group": "aws-admins"}}
    if connectors is not None:
        d["connectors"] = connectors
    if deny is not None:
        d["deny"] = deny
    else:
        d["grants"] = [{"role_arn": role_arn, **grant} if role_arn else grant]
    return d


def grants(m: MappingSettings, i: Identity | None = None) -> list[Any]:
    return evaluate(m, i or ident(), default_audience=AUD)


def results(m: MappingSettings, i: Identity | None = None) -> list[Any]:
    return explain(m, i or ident(), default_audience=AUD)


def only(items: list[Any]) -> Any:
    assert len(items) == 1, items
    return items[0]


# --------------------------------------------------------------------------- matching


def test_group_match_grants_role() -> None:
    grant = only(grants(rules(rule("admins"))))
    assert grant.role_arn == ADMIN
    assert grant.account_id == ACCOUNT
    assert grant.label == "Admin"  # defaults to the role name
    assert grant.via == "admins"
    assert grant.audience == AUD
    assert grant.session_name == "alice@example.com"
    assert (grant.default_duration, grant.max_duration) == (3600, 3600)
    assert grant.provider_arn == f"arn:aws:iam::{ACCOUNT}:saml-provider/FederationBridge"
    r = only(results(rules(rule("admins"))))
    assert r.matched and r.reason == "member of group 'aws-admins'" and r.outcome == "granted"


def test_label_audience_path_provider_and_durations_come_from_the_grant() -> None:
    m = rules(rule("admins", role_arn=DEPLOY, label="Platform deploy", audience="my-aud", path="saml",
                   provider="Okta", duration={"default": 7200, "max": 43200}))
    grant = only(grants(m))
    assert (grant.label, grant.audience, grant.path, grant.default_duration, grant.max_duration) == (
        "Platform deploy", "my-aud", "saml", 7200, 43200)
    assert grant.provider_arn == f"arn:aws:iam::{ACCOUNT}:saml-provider/Okta"
    assert grant.role_name == "PlatformDeploy"


def test_defaults_fill_what_the_grant_leaves_unsaid() -> None:
    d = decide(rules(rule("admins")), ident(), GrantDefaults("aud-x", "saml", "Corp")).grants[0]
    assert (d.audience, d.path, d.provider_arn) == ("aud-x", "saml", f"arn:aws:iam::{ACCOUNT}:saml-provider/Corp")


def test_claim_equals_match() -> None:
    r = only(results(rules(rule("platform", match={"claim": "claims.department", "equals": "Platform"}))))
    assert r.matched and r.grant is not None
    assert r.reason == "claims.department equals 'Platform'"


@pytest.mark.parametrize("team", ["red", "blue"])
def test_claim_equals_matches_any_value_of_a_multi_valued_claim(team: str) -> None:
    m = rules(rule("team", match={"claim": "claims.teams", "equals": team}))
    assert only(grants(m)).role_arn == ADMIN


@pytest.mark.parametrize(
    ("path", "value"),
    [("claims.org.unit", "R&D"), ("claims.org.cc", "4711"), ("email", "alice@example.com"), ("groups", "devs"),
     ("connector_id", "corp"), ("connector", "corp"), ("subject", "00u1abcd"), ("mfa", "false"),
     ('claims["org"].unit', "R&D"), ("claims.teams[]", "blue")],
)
def test_claim_paths(path: str, value: str) -> None:
    assert only(results(rules(rule("x", match={"claim": path, "equals": value})))).matched


def test_lists_of_objects_are_searched() -> None:
    i = ident(claims={"memberships": [{"account": "111", "role": "a"}, {"account": "222", "role": "b"}]})
    assert only(results(rules(rule("x", match={"claim": "claims.memberships[].account", "equals": "222"})), i)).matched
    assert only(results(rules(rule("x", match={"claim": "claims.memberships.role", "in": ["b"]})), i)).matched


def test_no_match_reasons_show_the_value_seen() -> None:
    m = rules(
        rule("admins", match={"group": "aws-root"}),
        rule("fin", role_arn=READONLY, match={"claim": "claims.department", "equals": "Finance"}),
        rule("missing", role_arn=DEPLOY, match={"claim": "claims.nope", "equals": "x"}),
    )
    a, b, c = results(m)
    assert not a.matched and a.grant is None and a.outcome == "no match"
    assert a.reason == "not in group 'aws-root' (groups: ['aws-admins', 'devs'])"
    assert not b.matched and b.reason == "claims.department is 'Platform', not 'Finance'"
    assert not c.matched and c.reason == "claims.nope is missing, not 'x'"
    assert grants(m) == []


def test_multi_valued_no_match_reason_lists_values() -> None:
    r = only(results(rules(rule("team", match={"claim": "claims.teams", "equals": "green"}))))
    assert not r.matched and r.reason == "claims.teams is ['red', 'blue'], not 'green'"


def test_all_any_not_reasons_name_the_failing_condition() -> None:
    m = rules(rule("combo", match={"all": [
        {"group": "aws-admins"},
        {"any": [{"claim": "claims.department", "equals": "Finance"}, {"mfa": True}]},
        {"not": {"claim": "email", "ends_with": "@contractor.example.com"}},
    ]}))
    r = only(results(m))
    assert not r.matched
    assert r.reason == ("none of: (claims.department is 'Platform', not 'Finance'); (the sign-in did not use MFA)")
    ok = only(results(m, ident(mfa=True)))
    assert ok.matched and ok.reason == ("member of group 'aws-admins' and the sign-in used MFA and email is "
                                        "'alice@example.com'; nothing ends with '@contractor.example.com'")
    excluded = only(results(m, ident(mfa=True, email="bob@contractor.example.com")))
    assert not excluded.matched
    assert excluded.reason == ("excluded because email 'bob@contractor.example.com' ends with "
                               "'@contractor.example.com'")


def test_a_list_as_match_means_all() -> None:
    m = rules(rule("both", match=[{"group": "aws-admins"}, {"group": "devs"}]))
    assert only(results(m)).matched
    assert not only(results(m, ident(groups=("devs",)))).matched


def test_connectors_restriction() -> None:
    m = rules(rule("corp-only", connectors=["corp"]), rule("dev-only", role_arn=READONLY, connectors=["dev"]))
    corp, dev = results(m)
    assert corp.matched and corp.grant is not None
    assert not dev.matched and dev.reason == "applies to connectors ['dev'], not 'corp'"
    assert [g.role_arn for g in grants(m, ident(connector_id="dev"))] == [READONLY]


def test_boolean_and_number_claims_match_their_json_spelling() -> None:
    m = rules(rule("verified", match={"claim": "claims.email_verified", "equals": True}),
              rule("cc", role_arn=READONLY, match={"claim": "claims.cc", "in": [4711, 12]}))
    assert [r.matched for r in results(m, ident(claims={"email_verified": True, "cc": 4711}))] == [True, True]
    assert [r.matched for r in results(m, ident(claims={"email_verified": "true", "cc": "4711"}))] == [True, True]


# --------------------------------------------------------------------------- merging (docs/rules.md: first rule wins)


def test_first_rule_for_a_role_sets_everything_and_tags_merge() -> None:
    m = rules(
        rule("first", label="First", tags={"Team": "{claims.department}"}, session_name="{subject}"),
        rule("second", match={"claim": "claims.department", "equals": "Platform"}, label="Second",
             duration=900, tags={"Unit": "{claims.org.cc}"}, transitive_tags=["Unit"]),
    )
    first, second = results(m)
    assert first.grant is not None and first.grant.label == "First"
    assert second.matched and second.grant is None and second.outcome == "merged"
    assert second.notes == ("Admin: merged into the grant from rule 'first'",)
    grant = only(grants(m))
    assert (grant.via, grant.label, grant.default_duration, grant.session_name) == ("first", "First", 3600,
                                                                                    "00u1abcd")
    assert dict(grant.tags) == {"Team": "Platform", "Unit": "4711"} and grant.transitive_keys == ("Unit",)


def test_conflicting_runtime_tag_values_keep_the_first_with_a_note() -> None:
    m = rules(rule("a", tags={"Team": "{claims.department}"}),
              rule("b", match={"group": "devs"}, tags={"team": "{name}"}))
    grant = only(grants(m))
    assert dict(grant.tags) == {"Team": "Platform"}
    assert "Admin: tag 'team' differs from the value rule 'a' set; kept the first" in results(m)[1].notes


def test_same_value_from_two_rules_is_not_a_conflict() -> None:
    m = rules(rule("a", tags={"Team": "x"}), rule("b", match={"group": "devs"}, tags={"Team": "x"}))
    assert dict(only(grants(m)).tags) == {"Team": "x"}
    assert "differs" not in " ".join(results(m)[1].notes)


def test_grants_follow_rule_order_and_are_deterministic() -> None:
    m = rules(rule("ro", role_arn=READONLY, match={"group": "devs"}), rule("admin"), rule("deploy", role_arn=DEPLOY))
    assert [g.role_arn for g in grants(m)] == [READONLY, ADMIN, DEPLOY]
    shuffled = ident(groups=("devs", "aws-admins"), claims={"teams": ["blue", "red"]})
    assert [g.role_arn for g in grants(m, shuffled)] == [READONLY, ADMIN, DEPLOY]
    assert grants(m) == grants(m)


# --------------------------------------------------------------------------- conventions and captures


def test_one_rule_turns_group_conventions_into_grants_for_every_account() -> None:
    m = rules(rule("convention", role_arn="arn:aws:iam::{match.account}:role/{match.role}",
                   match={"claim": "groups", "regex": CONVENTION}, label="{match.role} in {match.account}",
                   tags={"Role": "{match.role|lower}"}))
    i = ident(groups=("staff", f"aws#{OTHER}#ReadOnly", f"aws#{ACCOUNT}#Admin", "aws#123#TooShort"))
    got = grants(m, i)
    assert [(g.account_id, g.role_name, g.label, dict(g.tags)) for g in got] == [
        (ACCOUNT, "Admin", f"Admin in {ACCOUNT}", {"Role": "admin"}),
        (OTHER, "ReadOnly", f"ReadOnly in {OTHER}", {"Role": "readonly"}),
    ]
    r = only(results(m, i))
    assert r.reason.startswith(f"groups ['aws#{ACCOUNT}#Admin', 'aws#{OTHER}#ReadOnly'] matches regex")


def test_account_and_role_through_the_catalog() -> None:
    accounts = {ACCOUNT: {"alias": "sandbox", "label": "Sandbox",
                          "roles": {"Admin": {"label": "Administrator", "max_session_duration": 43200}}}}
    m = rules(rule("a", role_arn=None, account="sandbox", role="Admin"),
              rule("b", role_arn=None, match={"group": "devs"}, account=OTHER, role="deploy/Dev"),
              accounts=accounts)
    a, b = grants(m)
    assert (a.role_arn, a.label, a.max_duration, a.account_alias, a.account_label) == (
        ADMIN, "Administrator", 43200, "sandbox", "Sandbox")
    assert a.default_duration == 3600
    assert (b.role_arn, b.label, b.max_duration, b.account_alias) == (
        f"arn:aws:iam::{OTHER}:role/deploy/Dev", "Dev", 3600, "")


def test_templated_role_never_exceeds_the_catalog_max() -> None:
    accounts = {ACCOUNT: {"roles": {"Admin": {"max_session_duration": 7200}}}}
    m = rules(rule("conv", role_arn="arn:aws:iam::{match.account}:role/{match.role}",
                   match={"claim": "groups", "regex": CONVENTION}, duration={"default": 14400, "max": 43200}),
              accounts=accounts)
    r = only(results(m, ident(groups=(f"aws#{ACCOUNT}#Admin",))))
    assert r.grant is not None and (r.grant.default_duration, r.grant.max_duration) == (7200, 7200)
    assert "Admin: max duration lowered to the role's max_session_duration 7200s" in r.notes
    assert r.grant.allowed_durations() == [900, 1800, 3600, 7200]


def test_templated_account_alias_resolves_and_unknown_is_withheld() -> None:
    m = rules(rule("by-alias", role_arn=None, account="{match.acct}", role="Admin",
                   match={"claim": "groups", "regex": "acct-(?P<acct>.+)"}),
              accounts={ACCOUNT: {"alias": "sandbox"}})
    r = only(results(m, ident(groups=("acct-sandbox", "acct-nowhere"))))
    assert [g.role_arn for g in r.grants] == [ADMIN]
    (w,) = r.withheld
    assert w.code == "invalid" and "'nowhere': neither a 12-digit account id nor an alias" in w.reason


def test_a_role_arn_that_does_not_render_to_an_arn_is_withheld_not_a_crash() -> None:
    m = rules(rule("conv", role_arn="arn:aws:iam::{match.a}:role/{match.r}",
                   match={"claim": "groups", "regex": r"x-(?P<a>[^-]+)-(?P<r>.+)"}))
    r = only(results(m, ident(groups=("x-١٢٣٤٥٦٧٨٩٠١٢-Admin", "x-notanumber-Admin"))))
    assert r.grants == () and len(r.withheld) == 2
    assert all(w.code == "invalid" and "not an IAM role ARN" in w.reason for w in r.withheld)


# --------------------------------------------------------------------------- deny


def test_deny_wins_over_grants_wherever_it_is() -> None:
    m = rules(rule("admins"), rule("ro", role_arn=READONLY, match={"group": "devs"}),
              rule("no-admin-for-contractors", match={"claim": "email", "ends_with": "@example.com"},
                   deny={"roles": ["Admin"]}))
    assert [g.role_arn for g in grants(m)] == [READONLY]
    admins, _, deny = results(m)
    assert admins.outcome == "withheld"
    assert admins.withheld[0].code == "denied"
    assert admins.withheld[0].reason == "denied by rule 'no-admin-for-contractors'"
    assert deny.outcome == "deny" and f"denied {ADMIN}" in deny.notes


@pytest.mark.parametrize(("spec", "left"), [
    ("all", []), (True, []), ({"accounts": ["sandbox"]}, [f"arn:aws:iam::{OTHER}:role/X"]),
    ({"accounts": [OTHER]}, [ADMIN]), ({"roles": ["arn:aws:iam::*:role/X"]}, [ADMIN]),
    ({"roles": ["Adm*"]}, [f"arn:aws:iam::{OTHER}:role/X"]),
])
def test_deny_specs(spec: Any, left: list[str]) -> None:
    m = rules(rule("admins"), rule("x", role_arn=f"arn:aws:iam::{OTHER}:role/X"), rule("deny", deny=spec),
              accounts={ACCOUNT: {"alias": "sandbox"}})
    assert [g.role_arn for g in grants(m)] == left


def test_deny_that_does_not_match_changes_nothing() -> None:
    m = rules(rule("admins"), rule("deny", match={"group": "suspended"}, deny="all"))
    assert [g.role_arn for g in grants(m)] == [ADMIN]


# --------------------------------------------------------------------------- MFA


def test_mfa_required_withholds_without_mfa_and_offers_the_step_up() -> None:
    m = rules(rule("admins", mfa_required=True))
    r = only(results(m, ident(mfa=False)))
    assert r.matched and r.grant is None and r.outcome == "withheld"
    assert r.withheld[0].code == "mfa" and "needs a sign-in with MFA" in r.withheld[0].reason
    assert grants(m, ident(mfa=False)) == []
    d = decide(m, ident(mfa=False), GrantDefaults(AUD))
    assert [g.role_arn for g in d.locked] == [ADMIN]


def test_mfa_required_grants_with_mfa() -> None:
    grant = only(grants(rules(rule("admins", mfa_required=True)), ident(mfa=True)))
    assert grant.role_arn == ADMIN and grant.mfa_required is True


def test_withheld_rule_does_not_block_a_later_rule_for_the_same_role() -> None:
    m = rules(rule("strict", mfa_required=True), rule("lenient", match={"group": "devs"}))
    grant = only(grants(m, ident(mfa=False)))
    assert grant.via == "lenient" and grant.mfa_required is False
    assert decide(m, ident(mfa=False), GrantDefaults(AUD)).locked == []


def test_denied_role_is_not_offered_as_locked_either() -> None:
    m = rules(rule("strict", mfa_required=True), rule("deny", deny="all"))
    assert decide(m, ident(), GrantDefaults(AUD)).locked == []


# --------------------------------------------------------------------------- what a grant carries


def test_tag_from_list_valued_claim_is_dropped_with_a_note() -> None:
    r = only(results(rules(rule("admins", tags={"Teams": "{claims.teams}", "Dept": "{claims.department}"}))))
    assert r.grant is not None and dict(r.grant.tags) == {"Dept": "Platform"}
    assert "tag 'Teams' dropped: {claims.teams} has 2 values (use |first or |join)" in r.notes


def test_join_and_first_make_one_value_of_many() -> None:
    m = rules(rule("admins", tags={"Teams": "{claims.teams|join(/)}", "First": "{claims.teams|first}"}))
    assert dict(only(grants(m)).tags) == {"Teams": "red/blue", "First": "red"}


def test_tag_from_missing_claim_is_dropped_with_a_note() -> None:
    r = only(results(rules(rule("admins", tags={"X": "{claims.absent}"}))))
    assert r.grant is not None and dict(r.grant.tags) == {}
    assert r.notes == ("tag 'X' dropped: {claims.absent} has no value",)


def test_required_tag_without_value_withholds_the_grant_with_a_reason() -> None:
    m = rules(rule("admins", tags={"CostCenter": {"value": "{claims.cost_center}", "required": True}}))
    r = only(results(m))
    assert r.grant is None and r.outcome == "withheld"
    assert r.withheld[0].code == "required_tag"
    assert r.withheld[0].reason == "required tag 'CostCenter': {claims.cost_center} has no value"
    ok = only(grants(m, ident(claims={"cost_center": "CC-1"})))
    assert dict(ok.tags) == {"CostCenter": "CC-1"}
    empty = only(results(m, ident(claims={"cost_center": ""})))
    assert empty.withheld[0].reason == "required tag 'CostCenter' is empty"


def test_default_filter_keeps_a_tag() -> None:
    g = only(grants(rules(rule("admins", tags={"Dept": "{claims.absent|default(none)}"}))))
    assert dict(g.tags) == {"Dept": "none"}


def test_single_element_list_and_scalar_claims_become_tag_text() -> None:
    m = rules(rule("admins", tags={"One": "{claims.single}", "CC": "{claims.org.cc}", "Ext": "{claims.contractor}"}))
    assert dict(only(grants(m)).tags) == {"One": "only", "CC": "4711", "Ext": "false"}


def test_tag_value_is_sanitized_with_a_note() -> None:
    r = only(results(rules(rule("admins", tags={"Unit": "{claims.org.unit}"}))))
    assert r.grant is not None and dict(r.grant.tags) == {"Unit": "R-D"}
    assert "tag 'Unit': value from {claims.org.unit} was sanitized" in r.notes


def test_templated_tag_keys_are_sanitized_or_dropped() -> None:
    m = rules(rule("admins", match={"claim": "groups", "regex": "team-(?P<t>.*)"},
                   tags={"team:{match.t}": "yes", "{match.t}": "x"}))
    g = only(grants(m, ident(groups=("team-a&b",))))
    assert dict(g.tags) == {"team:a-b": "yes", "a-b": "x"}
    neutral = only(grants(m, ident(groups=("team-aws:x",))))
    assert dict(neutral.tags) == {"team:aws:x": "yes", "aws-x": "x"}  # a leading aws: is neutralised
    r = only(results(m, ident(groups=("team-",))))
    assert r.grant is not None and dict(r.grant.tags) == {"team:": "yes"}
    assert "tag key from '{match.t}' dropped: it cannot be made valid" in r.notes


def test_session_name_is_sanitized_with_a_note() -> None:
    r = only(results(rules(rule("admins", session_name="{name}")), ident(name="José Müller")))
    assert r.grant is not None and r.grant.session_name == "Jose-Muller"
    assert "session name from {name} was sanitized" in r.notes


def test_session_name_falls_back_to_subject() -> None:
    r = only(results(rules(rule("admins")), ident(email=None)))
    assert r.grant.session_name == "00u1abcd"
    assert "session name: {email} has no value; using the subject" in r.notes


def test_session_name_template_with_filters() -> None:
    g = only(grants(rules(rule("admins", session_name="{email|local_part}-{claims.department|lower|truncate(4)}"))))
    assert g.session_name == "alice-plat"


def test_clean_grant_has_no_notes() -> None:
    assert only(results(rules(rule("admins")))).notes == ()


def test_source_identity() -> None:
    assert only(grants(rules(rule("admins", source_identity="{email}")))).source_identity == "alice@example.com"
    sanitized = only(grants(rules(rule("admins", source_identity="{name}")), ident(name="José Müller")))
    assert sanitized.source_identity == "Jose-Muller"
    absent = only(results(rules(rule("admins", source_identity="{claims.absent}"))))
    assert absent.grant.source_identity is None and "source identity: {claims.absent} has no value; none sent" \
        in absent.notes
    assert only(grants(rules(rule("admins")))).source_identity is None


def test_transitive_keys_only_those_present_spelled_as_the_tag() -> None:
    m = rules(rule("admins", tags={"Dept": "{claims.department}", "Teams": "{claims.teams}"},
                   transitive_tags=["dept", "Teams"]))
    grant = only(grants(m))
    assert dict(grant.tags) == {"Dept": "Platform"}
    assert grant.transitive_keys == ("Dept",)


def test_more_than_49_merged_tags_keep_the_first_49() -> None:
    # AWS allows 50; the 50th is the bridge's own bridge:mfa, added at issuance
    rs = [rule(f"r{i}", tags={f"K{i}-{j}": "v" for j in range(10)}) for i in range(6)]
    r0 = results(rules(*rs))[0]
    assert r0.grant is not None and len(r0.grant.tags) == 49
    assert "Admin: 60 tags; rules may send 49, dropped 11" in r0.notes


def test_the_old_flat_form_still_works() -> None:
    m = MappingSettings.model_validate({"rules": [
        {"name": "admins", "group": "aws-admins", "role_arn": ADMIN, "tags": {"Dept": "claims.department"},
         "transitive_tags": ["Dept"], "source_identity_from": "email", "max_duration": 43200},
        {"name": "fin", "claim": "claims.department", "equals": "Platform", "role_arn": READONLY,
         "session_name_from": "name", "saml_provider": "Okta", "path": "saml"}]})
    a, b = grants(m)
    assert (a.role_arn, dict(a.tags), a.transitive_keys, a.source_identity, a.max_duration) == (
        ADMIN, {"Dept": "Platform"}, ("Dept",), "alice@example.com", 43200)
    assert (b.session_name, b.path, b.provider_arn) == ("Alice-Example", "saml",
                                                        f"arn:aws:iam::{ACCOUNT}:saml-provider/Okta")
    assert load_mapping(m.model_dump(by_alias=True, exclude_none=True)).compiled.version == m.compiled.version


# --------------------------------------------------------------------------- explain output


def test_results_are_json_serialisable() -> None:
    m = rules(rule("admins", tags={"Dept": "{claims.department}"}), rule("nope", role_arn=READONLY,
                                                                         match={"group": "x"}))
    doc = json.loads(json.dumps(report(results(m), ident())))
    assert doc["rules"][0]["grants"][0]["tags"] == {"Dept": "Platform"} and doc["rules"][0]["matched"] is True
    assert doc["rules"][1] == {"rule": "nope", "matched": False, "outcome": "no match", "grants": [],
                               "withheld": [], "notes": [],
                               "reason": "not in group 'x' (groups: ['aws-admins', 'devs'])"}
    assert [g["role_arn"] for g in doc["grants"]] == [ADMIN]
    assert doc["identity"]["subject"] == "00u1abcd"


def test_report_text_lists_rules_grants_and_withheld() -> None:
    m = rules(rule("admins", tags={"Dept": "{claims.department}"}, transitive_tags=["Dept"]),
              rule("strict", role_arn=READONLY, mfa_required=True), rule("nope", role_arn=DEPLOY,
                                                                          match={"group": "x"}))
    text = report_text(results(m), ident())
    assert "  MATCH admins: member of group 'aws-admins'" in text
    assert "  no    nope: not in group 'x'" in text
    assert "1 grant(s):" in text and "tags Dept='Platform'  transitive ['Dept']" in text
    assert "via rule 'admins'" in text and "session name alice@example.com  duration 3600s (max 3600s)" in text
    assert f"1 withheld:\n  {READONLY} from rule 'strict': this role needs a sign-in with MFA" in text
    short = report_text(results(m), ident(), only_matched=True)
    assert "nope" not in short and "rules (2 of 3 shown):" in short


def test_explain_of_an_empty_rule_set() -> None:
    assert results(load_mapping({})) == []
    assert "0 grant(s):" in report_text([], ident())


def test_resolve_claim() -> None:
    i = ident()
    assert resolve_claim(i, "claims.org.unit") == "R&D"
    assert resolve_claim(i, "claims.org.absent") is None
    assert resolve_claim(i, "claims.department.deeper") is None
    assert resolve_claim(i, "claims.teams") == ("red", "blue")
    assert resolve_claim(i, "groups") == ("aws-admins", "devs")
    assert resolve_claim(i, "email") == "alice@example.com"


def test_a_broken_templated_provider_withholds_saml_grants_only() -> None:
    m = rules(rule("saml", provider="{claims.idp}", path="saml"),
              rule("jwt", role_arn=READONLY, match={"group": "devs"}, provider="{claims.idp}"))
    saml, jwt = results(m)
    assert saml.grants == () and saml.withheld[0].reason == "provider: {claims.idp} has no value"
    assert jwt.grant is not None and jwt.grant.provider_arn == f"arn:aws:iam::{ACCOUNT}:saml-provider/FederationBridge"
    assert "provider: {claims.idp} has no value; the default provider is kept (this grant uses jwt)" in jwt.notes
    ok = grants(m, ident(claims={"idp": f"arn:aws:iam::{ACCOUNT}:saml-provider/Okta"}))
    assert [g.provider_arn for g in ok] == [f"arn:aws:iam::{ACCOUNT}:saml-provider/Okta"] * 2


def test_deny_on_a_domain_ignoring_case_hits_every_spelling() -> None:
    """The reported hole: a deny on ``@contractor.example.com`` failed open for ``Dave@Contractor.Example.com``."""
    m = rules(rule("admins"),
              rule("no-contractors", match={"claim": "email", "ends_with": "@contractor.example.com",
                                            "ignore_case": True}, deny="all"),
              rule("no-contractors-raw", match={"claim": "claims.email", "ends_with": "@contractor.example.com",
                                                "ignore_case": True}, deny="all"))
    dave = ident(email="Dave@Contractor.Example.com", claims={"email": "Dave@Contractor.Example.com"})
    assert grants(m, dave) == []
    _, deny, deny_raw = results(m, dave)
    assert deny.outcome == deny_raw.outcome == "deny"
    assert "(ignoring case)" in deny_raw.reason
    assert [g.role_arn for g in grants(m, ident(email="alice@example.com"))] == [ADMIN]


# --------------------------------------------------------------------------- the cost of a decision


def test_new_grant_builds_what_the_grant_constructor_builds() -> None:
    """The engine's fast constructor: equal grants, the same compact instance dict, defaults filled, and
    still frozen."""
    import dataclasses
    import sys

    from bridge.domain.identity import Grant
    from bridge.mapping.render import new_grant

    values: dict[str, Any] = {"role_arn": ADMIN, "account_id": ACCOUNT, "label": "Admin", "session_name": "alice",
                              "via": "r", "tags": {"Team": "x"}, "max_duration": 7200}
    fast, slow = new_grant(**values), Grant(**values)
    assert fast == slow and dataclasses.asdict(fast) == dataclasses.asdict(slow) and fast.id == slow.id
    assert list(vars(fast)) == list(vars(slow)) and sys.getsizeof(vars(fast)) == sys.getsizeof(vars(slow))
    assert new_grant(**{k: values[k] for k in ("role_arn", "account_id", "label", "session_name", "via")}).tags == {}
    with pytest.raises(dataclasses.FrozenInstanceError):
        fast.label = "changed"  # type: ignore[misc]


def test_what_a_role_decides_is_kept_per_rule_set_and_defaults() -> None:
    """The parts of a grant that depend only on its rule and the defaults are worked out once, and an
    identity whose connector differs (no aws_passthrough) is not given another's answer."""
    m = rules(rule("pt", ADMIN, match={"group": "g"}, path="passthrough"))
    with_pt, without = GrantDefaults(AUD, passthrough=True), GrantDefaults(AUD, passthrough=False)
    assert [g.role_arn for g in decide(m, ident(groups=("g",)), with_pt).grants] == [ADMIN]
    withheld = decide(m, ident(groups=("g",)), without).withheld
    assert [(w.role_arn, w.code) for _, w in withheld] == [(ADMIN, "no_passthrough")]
    assert [g.role_arn for g in decide(m, ident(groups=("g",)), with_pt).grants] == [ADMIN]
    assert len(m.compiled.fixed) == 2 and all(len(t) == 1 for t in m.compiled.fixed.values())


def test_a_decision_pauses_the_collector_and_resumes_it() -> None:
    """Deciding thousands of grants makes no cyclic collection meanwhile; the collector runs again after
    (nested and concurrent pauses included)."""
    import gc

    from bridge.mapping.gcpause import gc_paused

    seen: list[bool] = []
    m = rules(rule("r", ADMIN, match={"group": "g"}))
    real = m.compiled.candidates

    def spy(view: Any) -> list[int]:
        seen.append(gc.isenabled())
        return real(view)

    m.compiled.candidates = spy  # type: ignore[method-assign]
    assert gc.isenabled()
    decide(m, ident(groups=("g",)), GrantDefaults(AUD))
    assert seen == [False] and gc.isenabled()
    with gc_paused():
        with gc_paused():
            pass
        assert not gc.isenabled()  # the outer pause still holds
    assert gc.isenabled()
