"""The mapping seam (bridge/mapping): rules in file order → grants, with a reason for every rule."""

from __future__ import annotations

import json
from typing import Any

import pytest
from pydantic import ValidationError

from bridge.identity import Identity
from bridge.mapping import MappingSettings, Rule, evaluate, explain, resolve_claim

ACCOUNT = "123456789012"
ADMIN = f"arn:aws:iam::{ACCOUNT}:role/Admin"
READONLY = f"arn:aws:iam::{ACCOUNT}:role/ReadOnly"
DEPLOY = f"arn:aws:iam::{ACCOUNT}:role/deploy/PlatformDeploy"
AUD = "sts.amazonaws.com"


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


def rules(*rs: dict[str, Any]) -> MappingSettings:
    return MappingSettings.model_validate({"rules": list(rs)})


def rule(name: str = "r", role_arn: str = ADMIN, **kw: Any) -> dict[str, Any]:
    d: dict[str, Any] = {"name": name, "role_arn": role_arn}
    if "group" not in kw and "claim" not in kw:
        d["group"] = "aws-admins"
    d.update(kw)
    return d


def only(results: list[Any]) -> Any:
    assert len(results) == 1
    return results[0]


# --------------------------------------------------------------------------- matching


def test_group_match_grants_role() -> None:
    grant = only(evaluate(rules(rule("admins")), ident(), default_audience=AUD))
    assert grant.role_arn == ADMIN
    assert grant.account_id == ACCOUNT
    assert grant.label == "Admin"  # defaults to the role name
    assert grant.via == "admins"
    assert grant.audience == AUD
    assert grant.session_name == "alice@example.com"
    assert (grant.default_duration, grant.max_duration) == (3600, 3600)
    r = only(explain(rules(rule("admins")), ident(), default_audience=AUD))
    assert r.matched and r.reason == "member of group 'aws-admins'"


def test_label_audience_and_durations_come_from_the_rule() -> None:
    m = rules(
        rule(
            "admins",
            role_arn=DEPLOY,
            label="Platform deploy",
            audience="my-aud",
            duration=7200,
            max_duration=43200,
        )
    )
    grant = only(evaluate(m, ident(), default_audience=AUD))
    assert (grant.label, grant.audience, grant.default_duration, grant.max_duration) == (
        "Platform deploy",
        "my-aud",
        7200,
        43200,
    )
    assert grant.role_name == "PlatformDeploy"


def test_claim_equals_match() -> None:
    m = rules(rule("platform", claim="claims.department", equals="Platform"))
    r = only(explain(m, ident(), default_audience=AUD))
    assert r.matched and r.grant is not None
    assert r.reason == "claims.department equals 'Platform'"


@pytest.mark.parametrize("team", ["red", "blue"])
def test_claim_equals_matches_any_value_of_a_multi_valued_claim(team: str) -> None:
    m = rules(rule("team", claim="claims.teams", equals=team))
    assert only(evaluate(m, ident(), default_audience=AUD)).role_arn == ADMIN


@pytest.mark.parametrize(
    ("path", "value"),
    [
        ("claims.org.unit", "R&D"),
        ("claims.org.cc", "4711"),
        ("email", "alice@example.com"),
        ("groups", "devs"),
        ("connector_id", "corp"),
        ("subject", "00u1abcd"),
    ],
)
def test_claim_paths(path: str, value: str) -> None:
    m = rules(rule("x", claim=path, equals=value))
    assert only(explain(m, ident(), default_audience=AUD)).matched


def test_no_match_reasons_show_the_value_seen() -> None:
    m = rules(
        rule("admins", group="aws-root"),
        rule("fin", role_arn=READONLY, claim="claims.department", equals="Finance"),
        rule("missing", role_arn=DEPLOY, claim="claims.nope", equals="x"),
    )
    a, b, c = explain(m, ident(), default_audience=AUD)
    assert not a.matched and a.grant is None
    assert a.reason == "not in group 'aws-root' (groups: ['aws-admins', 'devs'])"
    assert not b.matched and b.reason == "claims.department is 'Platform', not 'Finance'"
    assert not c.matched and c.reason == "claims.nope is None, not 'x'"
    assert evaluate(m, ident(), default_audience=AUD) == []


def test_multi_valued_no_match_reason_lists_values() -> None:
    m = rules(rule("team", claim="claims.teams", equals="green"))
    r = only(explain(m, ident(), default_audience=AUD))
    assert not r.matched and r.reason == "claims.teams is ['red', 'blue'], not 'green'"


def test_connectors_restriction() -> None:
    m = rules(rule("corp-only", connectors=["corp"]), rule("dev-only", role_arn=READONLY, connectors=["dev"]))
    corp, dev = explain(m, ident(), default_audience=AUD)
    assert corp.matched and corp.grant is not None
    assert not dev.matched and dev.reason == "applies to connectors ['dev'], not 'corp'"
    assert [g.role_arn for g in evaluate(m, ident(connector_id="dev"), default_audience=AUD)] == [READONLY]


def test_first_rule_for_a_role_wins() -> None:
    m = rules(
        rule("first", label="First", tags={"Team": "claims.department"}),
        rule("second", claim="claims.department", equals="Platform", label="Second", duration=900),
    )
    results = explain(m, ident(), default_audience=AUD)
    assert results[0].grant is not None and results[0].grant.label == "First"
    assert results[1].matched and results[1].grant is None
    assert results[1].reason == "claims.department equals 'Platform'; role already granted by an earlier rule"
    grant = only(evaluate(m, ident(), default_audience=AUD))
    assert (grant.via, grant.label, grant.default_duration, dict(grant.tags)) == (
        "first",
        "First",
        3600,
        {"Team": "Platform"},
    )


def test_grants_follow_rule_order() -> None:
    m = rules(rule("ro", role_arn=READONLY, group="devs"), rule("admin"), rule("deploy", role_arn=DEPLOY))
    assert [g.role_arn for g in evaluate(m, ident(), default_audience=AUD)] == [READONLY, ADMIN, DEPLOY]
    assert evaluate(m, ident(), default_audience=AUD) == evaluate(m, ident(), default_audience=AUD)


def test_mfa_required_withholds_without_mfa() -> None:
    m = rules(rule("admins", mfa_required=True))
    r = only(explain(m, ident(mfa=False), default_audience=AUD))
    assert r.matched and r.grant is None
    assert "withheld: rule requires MFA" in r.reason
    assert evaluate(m, ident(mfa=False), default_audience=AUD) == []


def test_mfa_required_grants_with_mfa() -> None:
    m = rules(rule("admins", mfa_required=True))
    grant = only(evaluate(m, ident(mfa=True), default_audience=AUD))
    assert grant.role_arn == ADMIN and grant.mfa_required is True


def test_withheld_rule_does_not_block_a_later_rule_for_the_same_role() -> None:
    m = rules(rule("strict", mfa_required=True), rule("lenient", group="devs"))
    grant = only(evaluate(m, ident(mfa=False), default_audience=AUD))
    assert grant.via == "lenient" and grant.mfa_required is False


# --------------------------------------------------------------------------- what a grant carries


def test_tag_from_list_valued_claim_is_dropped_with_a_note() -> None:
    m = rules(rule("admins", tags={"Teams": "claims.teams", "Dept": "claims.department"}))
    r = only(explain(m, ident(), default_audience=AUD))
    assert r.grant is not None and dict(r.grant.tags) == {"Dept": "Platform"}
    assert "tag 'Teams' dropped: claims.teams has no single value" in r.notes


def test_tag_from_missing_claim_is_dropped_with_a_note() -> None:
    r = only(explain(rules(rule("admins", tags={"X": "claims.absent"})), ident(), default_audience=AUD))
    assert r.grant is not None and dict(r.grant.tags) == {}
    assert r.notes == ("tag 'X' dropped: claims.absent has no single value",)


def test_single_element_list_and_scalar_claims_become_tag_text() -> None:
    m = rules(
        rule("admins", tags={"One": "claims.single", "CC": "claims.org.cc", "Ext": "claims.contractor"})
    )
    grant = only(evaluate(m, ident(), default_audience=AUD))
    assert dict(grant.tags) == {"One": "only", "CC": "4711", "Ext": "false"}


def test_tag_value_is_sanitized_with_a_note() -> None:
    r = only(explain(rules(rule("admins", tags={"Unit": "claims.org.unit"})), ident(), default_audience=AUD))
    assert r.grant is not None and dict(r.grant.tags) == {"Unit": "R-D"}
    assert "tag 'Unit': value from claims.org.unit was sanitized" in r.notes


def test_session_name_is_sanitized_with_a_note() -> None:
    r = only(
        explain(
            rules(rule("admins", session_name_from="name")), ident(name="José Müller"), default_audience=AUD
        )
    )
    assert r.grant is not None and r.grant.session_name == "Jose-Muller"
    assert "session name from name was sanitized" in r.notes


def test_session_name_falls_back_to_subject() -> None:
    grant = only(evaluate(rules(rule("admins")), ident(email=None), default_audience=AUD))
    assert grant.session_name == "00u1abcd"


def test_clean_session_name_has_no_note() -> None:
    r = only(explain(rules(rule("admins")), ident(), default_audience=AUD))
    assert r.notes == ()


def test_source_identity() -> None:
    grant = only(evaluate(rules(rule("admins", source_identity_from="email")), ident(), default_audience=AUD))
    assert grant.source_identity == "alice@example.com"
    sanitized = only(
        evaluate(
            rules(rule("admins", source_identity_from="name")),
            ident(name="José Müller"),
            default_audience=AUD,
        )
    )
    assert sanitized.source_identity == "Jose-Muller"
    absent = only(
        evaluate(rules(rule("admins", source_identity_from="claims.absent")), ident(), default_audience=AUD)
    )
    assert absent.source_identity is None
    assert only(evaluate(rules(rule("admins")), ident(), default_audience=AUD)).source_identity is None


def test_transitive_keys_only_those_present() -> None:
    m = rules(
        rule(
            "admins",
            tags={"Dept": "claims.department", "Teams": "claims.teams"},
            transitive_tags=["Dept", "Teams"],
        )
    )
    grant = only(evaluate(m, ident(), default_audience=AUD))
    assert dict(grant.tags) == {"Dept": "Platform"}
    assert grant.transitive_keys == ("Dept",)


def test_transitive_key_accepted_by_the_model_reaches_the_grant() -> None:
    try:
        m = rules(rule("admins", tags={"Department": "claims.department"}, transitive_tags=["department"]))
    except ValidationError:
        return  # refusing the config is a fix too
    r = only(explain(m, ident(), default_audience=AUD))
    assert r.grant is not None and dict(r.grant.tags) == {"Department": "Platform"}
    # Accepted config must either make the key transitive or say why it did not.
    assert [k.lower() for k in r.grant.transitive_keys] == ["department"] or r.notes


def test_boolean_claim_matches_its_json_spelling() -> None:
    m = rules(rule("verified", claim="claims.email_verified", equals="true"))
    assert only(explain(m, ident(claims={"email_verified": True}), default_audience=AUD)).matched


def test_results_are_json_serialisable() -> None:
    m = rules(rule("admins", tags={"Dept": "claims.department"}), rule("nope", role_arn=READONLY, group="x"))
    doc = json.loads(json.dumps([r.to_json() for r in explain(m, ident(), default_audience=AUD)]))
    assert doc[0]["grant"]["tags"] == {"Dept": "Platform"} and doc[0]["matched"] is True
    assert doc[1] == {
        "rule": "nope",
        "matched": False,
        "reason": "not in group 'x' (groups: ['aws-admins', 'devs'])",
        "grant": None,
        "notes": [],
    }


def test_resolve_claim() -> None:
    i = ident()
    assert resolve_claim(i, "claims.org.unit") == "R&D"
    assert resolve_claim(i, "claims.org.absent") is None
    assert resolve_claim(i, "claims.department.deeper") is None
    assert resolve_claim(i, "groups") == ("aws-admins", "devs")
    assert resolve_claim(i, "email") == "alice@example.com"


# --------------------------------------------------------------------------- model validation


@pytest.mark.parametrize(
    ("fields", "text"),
    [
        ({"group": "g", "claim": "email", "equals": "x"}, "set exactly one of 'group' or 'claim'"),
        ({"group": None}, "set exactly one of 'group' or 'claim'"),
        ({"claim": "claims.department"}, "'claim' needs 'equals'"),
        ({"role_arn": "arn:aws:iam::123:role/Admin"}, "is not an IAM role ARN"),
        ({"role_arn": "arn:aws:s3:::bucket"}, "is not an IAM role ARN"),
        ({"claim": "department", "equals": "x"}, "'department' is not a claim path"),
        ({"claim": "claims", "equals": "x"}, "'claims' is not a claim path"),
        ({"session_name_from": "login"}, "'login' is not a claim path"),
        ({"tags": {"Dept": "dept"}}, "'dept' is not a claim path"),
        ({"duration": 7200}, "duration 7200 must be between 900 and max_duration 3600"),
        ({"duration": 600}, "duration 600 must be between 900 and max_duration 3600"),
        ({"max_duration": 50000}, "max_duration must be 900..43200"),
        ({"tags": {"aws:x": "email"}}, "tag key 'aws:x' starts with the reserved prefix 'aws:'"),
        (
            {"tags": {"Dept": "email"}, "transitive_tags": ["Team"]},
            "transitive tag key 'Team' is not one of the session tags",
        ),
        ({"tags": {"Dept": "email", "dept": "name"}}, "differ only in case"),
        ({"name": ""}, "at least 1 character"),
        ({"roles": [ADMIN]}, "Extra inputs are not permitted"),
    ],
)
def test_rule_validation_errors(fields: dict[str, Any], text: str) -> None:
    data = rule("bad", **{k: v for k, v in fields.items() if k != "name"})
    data = {k: v for k, v in {**data, **fields}.items() if v is not None}
    with pytest.raises(ValidationError) as exc:
        Rule.model_validate(data)
    assert text in str(exc.value)


def test_duplicate_rule_names() -> None:
    with pytest.raises(ValidationError) as exc:
        rules(rule("admins"), rule("ro", role_arn=READONLY), rule("admins", role_arn=DEPLOY))
    assert "rule names must be unique; repeated: admins" in str(exc.value)


def test_valid_rule_round_trips() -> None:
    r = Rule(
        name="admins",
        group="aws-admins",
        role_arn=ADMIN,
        tags={"Dept": "claims.department"},
        transitive_tags=["Dept"],
        max_duration=43200,
        duration=900,
    )
    assert Rule.model_validate(r.model_dump()) == r


def test_claim_path_with_suffix_on_a_plain_attribute_is_refused() -> None:
    with pytest.raises(ValidationError):
        Rule(name="x", claim="email.domain", equals="example.com", role_arn=ADMIN)


def test_equals_without_claim_is_refused() -> None:
    with pytest.raises(ValidationError):
        Rule(name="x", group="aws-admins", equals="Platform", role_arn=ADMIN)
