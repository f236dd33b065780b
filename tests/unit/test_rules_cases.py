"""Rules as tested code: `bridge rules test` (bridge/mapping/cases.py) — the demo's own cases run here, so
`make test` runs them — and `bridge rules diff`."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml
from click.testing import CliRunner

from bridge.commands.cli import main
from bridge.domain.errors import ConfigError
from bridge.domain.identity import identity_from_sample
from bridge.mapping import GrantDefaults, load_mapping
from bridge.mapping.cases import audit_subjects, diff, load_cases, run_cases

ROOT = Path(__file__).resolve().parents[2]
DEMO = str(ROOT / "config" / "demo.yaml")
CASES = str(ROOT / "config" / "demo-rules-cases.yaml")
IDENTITIES = str(ROOT / "config" / "demo-identities")
ADMIN = "arn:aws:iam::123456789012:role/Admin"
RO = "arn:aws:iam::123456789012:role/ReadOnly"
D = GrantDefaults("sts.amazonaws.com")
RULES = load_mapping({"rules": [
    {"name": "admins", "match": {"group": "admins"},
     "grants": [{"role_arn": ADMIN, "tags": {"Team": "{claims.team}"}}]},
    {"name": "ro", "match": {"group": "ro"}, "grants": [{"role_arn": RO}]}]})
ALICE = {"subject": "alice", "email": "alice@example.com", "groups": ["admins"], "claims": {"team": "core"}}


def run(*args: str) -> Any:
    return CliRunner().invoke(main, list(args), prog_name="bridge")


def test_the_demo_rules_pass_their_cases() -> None:
    r = run("rules", "test", "--config", DEMO, CASES)
    assert r.exit_code == 0, r.output
    assert r.output.strip().endswith("7 passed, 0 failed")


def test_exact_roles_includes_excludes_and_tags() -> None:
    cases = load_cases([
        {"identity": ALICE, "roles": [ADMIN], "tags": {ADMIN: {"Team": "core", "Other": None}}},
        {"identity": ALICE, "roles": [RO]},
        {"identity": ALICE, "includes": [RO], "excludes": [ADMIN]},
        {"identity": ALICE, "includes": [ADMIN], "tags": {ADMIN: {"Team": "edge"}, RO: {"X": "y"}}},
    ])
    results = run_cases(RULES, cases, D)
    assert [r.passed for r in results] == [True, False, False, False]
    assert results[1].differences == (f"missing role {RO}", f"unexpected role {ADMIN} (rule admins)")
    assert results[2].differences == (f"missing role {RO}", f"unexpected role {ADMIN} (rule admins)")
    assert results[3].differences == (f"{ADMIN}: tag Team expected 'edge', got 'core'",
                                      f"{RO}: tags expected, but the role is not granted")


def test_mfa_locked_roles_are_named_as_such() -> None:
    ms = load_mapping({"rules": [{"name": "m", "match": {"group": "admins"},
                                  "grants": [{"role_arn": ADMIN, "mfa_required": True}]}]})
    (r,) = run_cases(ms, load_cases([{"identity": ALICE, "roles": [ADMIN]}]), D)
    assert r.differences == (f"missing role {ADMIN} (locked: needs a sign-in with MFA)",)


@pytest.mark.parametrize(("doc", "problem"), [
    ([{"roles": []}], "give exactly one of identity, identity_file"),
    ([{"identity": ALICE}], "expects nothing"),
    ([{"identity": ALICE, "roles": [], "includes": []}], "do not combine"),
    ([{"identity": ALICE, "roles": "x"}], "cases[0].roles: must be a list of role ARNs"),
    ([{"identity": {"groups": []}, "roles": []}], "cases[0].identity: expected"),
    ([{"identity": ALICE, "roles": [], "role": []}], "unknown key 'role'"),
    ({"case": []}, "expected a list of cases"),
])
def test_bad_cases_are_refused_with_their_path(doc: Any, problem: str) -> None:
    with pytest.raises(ConfigError) as e:
        load_cases(doc, "c.yaml")
    assert any(problem in p for p in e.value.problems), e.value.problems


def test_cli_prints_each_failing_case_and_exits_1(tmp_path: Path) -> None:
    (tmp_path / "c.yaml").write_text(yaml.safe_dump({"cases": [
        {"name": "bob is no admin", "identity_file": str(Path(IDENTITIES) / "bob.json"), "excludes": [RO]},
        {"name": "carol", "identity_file": str(Path(IDENTITIES) / "carol.json"), "roles": []}]}))
    r = run("rules", "test", "--config", DEMO, str(tmp_path / "c.yaml"))
    assert r.exit_code == 1
    assert "FAIL bob is no admin" in r.output and f"unexpected role {RO} (rule readonly)" in r.output
    assert "FAIL carol" not in r.output and r.output.strip().endswith("1 passed, 1 failed")


def test_cli_bad_cases_file(tmp_path: Path) -> None:
    (tmp_path / "c.yaml").write_text("cases: [{roles: []}]\n")
    r = run("rules", "test", "--config", DEMO, str(tmp_path / "c.yaml"))
    assert r.exit_code == 1 and "give exactly one of identity, identity_file" in r.output


# --------------------------------------------------------------------------- diff


def test_diff_gains_losses_and_tag_values() -> None:
    new = load_mapping({"rules": [
        {"name": "admins", "match": {"group": "admins"}, "grants": [{"role_arn": ADMIN, "tags": {"Team": "x"}}]},
        {"name": "ro", "match": {"group": "admins"}, "grants": [{"role_arn": RO}]}]})
    bob = identity_from_sample({"subject": "bob", "groups": ["ro"]})
    changes = diff(RULES, new, [identity_from_sample(ALICE), bob], D)
    assert [str(c) for c in changes] == [f"+ {RO} (rule ro)", f"~ {ADMIN} tags: Team 'core' -> 'x'",
                                         f"- {RO} (was rule ro)"]
    assert [c.who for c in changes][-1] == "bob (sample:bob)"


def test_cli_diff_the_demo_against_its_earlier_rules() -> None:
    args = ["rules", "diff", "--config", DEMO, "--against", str(ROOT / "docs" / "examples" / "demo-rules-before.yaml"),
            "--identities", IDENTITIES]
    r = run(*args)
    assert r.exit_code == 0, r.output
    assert f"  - {ADMIN} (was rule admins)" in r.output
    assert "  + arn:aws:iam::123456789012:role/PlatformDeploy (rule platform-deployers)" in r.output
    assert "6 identities, 3 changed: 1 role(s) gained, 3 lost, 1 with other tag values" in r.output
    assert r.output in (ROOT / "docs" / "examples" / "rules-diff.txt").read_text()
    assert run(*args, "--exit-code").exit_code == 1
    assert run("rules", "diff", "--config", DEMO, "--against", DEMO, "--identities", IDENTITIES,
               "--exit-code").exit_code == 0
    doc = json.loads(run(*args, "--json").output)
    assert {d["who"] for d in doc if d["changes"]} == {"Dave@contractor.example.com (dev:dave)",
                                                      "erin@example.com (demo:erin)", "frank@example.com (demo:frank)"}


def test_cli_diff_needs_one_identity_source() -> None:
    r = run("rules", "diff", "--config", DEMO, "--against", DEMO)
    assert r.exit_code == 1 and "give exactly one of --identities DIR, --audit FILE" in r.output


def test_audit_subjects_are_distinct_and_in_order() -> None:
    who = {"issuer": "i", "subject": "alice", "email": "a@x", "connector": "dev"}
    lines = [json.dumps({"type": "sign_in", "who": who}), "not json",
             json.dumps({"type": "grant_decision", "who": who}),
             json.dumps({"type": "sign_in", "outcome": "failure"}),
             json.dumps({"type": "credentials", "who": {**who, "subject": "bob"}})]
    assert [w["subject"] for w in audit_subjects(lines)] == ["alice", "bob"]
