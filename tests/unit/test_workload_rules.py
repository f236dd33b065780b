"""Rules on workload identities: the cases of docs/examples/workloads run with `bridge rules test` (so `make test`
runs them), `bridge explain --connector --token-claims` shows why a token's claims match or not, and every bad
input (claims a connector cannot read, a connector that is not a workload one, a case without its connector)
is a clear message and exit 1."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml
from click.testing import CliRunner

from bridge.commands.cli import main
from bridge.config import load_settings
from bridge.domain.errors import ConfigError
from bridge.mapping.cases import load_cases

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = ROOT / "docs" / "examples" / "workloads"
CONFIG = str(EXAMPLES / "bridge.yaml")
CASES = str(EXAMPLES / "cases.yaml")
DEPLOYER = "arn:aws:iam::123456789012:role/Deployer"


def run(*args: str) -> Any:
    return CliRunner().invoke(main, list(args), prog_name="bridge")


def test_the_workload_examples_pass_their_cases() -> None:
    r = run("rules", "test", "--config", CONFIG, CASES)
    assert r.exit_code == 0, r.output
    assert r.output.strip().endswith("7 passed, 0 failed")


def test_a_case_that_expects_the_wrong_thing_fails(tmp_path: Path) -> None:
    doc = yaml.safe_load(Path(CASES).read_text(encoding="utf-8"))
    feature = next(c for c in doc["cases"] if c["name"].startswith("another branch"))
    feature["roles"].append(DEPLOYER)  # claim the feature branch deploys: the rules say otherwise
    feature["token_claims_file"] = str(EXAMPLES / feature["token_claims_file"])
    (tmp_path / "cases.yaml").write_text(yaml.safe_dump({"cases": [feature]}), encoding="utf-8")
    r = run("rules", "test", "--config", CONFIG, str(tmp_path / "cases.yaml"))
    assert r.exit_code == 1
    assert f"missing role {DEPLOYER}" in r.output and "repo:octo-org/octo-repo:environment:prod (github:" in r.output


def test_explain_shows_which_claim_keeps_a_branch_from_production() -> None:
    r = run("explain", "--config", CONFIG, "--connector", "github", "--token-claims",
            str(EXAMPLES / "github-feature-branch.json"), "--json")
    assert r.exit_code == 0, r.output
    doc = json.loads(r.output)
    deploy = next(x for x in doc["rules"] if x["rule"] == "deploy-prod-from-main")
    assert not deploy["matched"] and "claims.ref" in deploy["reason"] and "refs/heads/feature-x" in deploy["reason"]
    assert [g["role_arn"] for g in doc["grants"]] == ["arn:aws:iam::210987654321:role/ReadOnly"]
    main_branch = run("explain", "--config", CONFIG, "--connector", "github", "--token-claims",
                      str(EXAMPLES / "github-main.json"))
    assert main_branch.exit_code == 0 and "MATCH deploy-prod-from-main" in main_branch.output


@pytest.mark.parametrize(("args", "says"), [
    (["--token-claims", str(EXAMPLES / "github-main.json")], "--token-claims needs --connector"),
    (["--connector", "nope", "--token-claims", str(EXAMPLES / "github-main.json")],
     "'nope' is not a configured connector; token claims are read by a workload connector (cluster, github, gitlab)"),
    (["--connector", "gitlab", "--token-claims", str(EXAMPLES / "github-main.json")],
     "the token has no project_path claim (a non-empty string), which the gitlab_ci preset needs"),
    (["--connector", "github", "--identity", str(EXAMPLES / "github-main.json")],
     "--connector goes with --token-claims"),
    ([], "give exactly one of --identity FILE, --token-claims FILE"),
])
def test_explain_refuses_what_it_cannot_read(args: list[str], says: str) -> None:
    r = run("explain", "--config", CONFIG, *args)
    assert r.exit_code == 1 and says in r.output, r.output
    assert "Traceback" not in r.output


def test_token_claims_that_are_not_an_object_are_refused(tmp_path: Path) -> None:
    (tmp_path / "claims.json").write_text('["sub"]', encoding="utf-8")
    r = run("explain", "--config", CONFIG, "--connector", "github", "--token-claims", str(tmp_path / "claims.json"))
    assert r.exit_code == 1 and "expected a JSON object: the token's claims" in r.output


def test_an_oidc_connector_does_not_read_token_claims(tmp_path: Path) -> None:
    r = run("explain", "--config", str(ROOT / "config" / "demo.yaml"), "--connector", "demo", "--token-claims",
            str(EXAMPLES / "github-main.json"))
    assert r.exit_code == 1 and "'demo' is not a workload connector" in r.output


def test_bad_workload_cases_list_every_problem() -> None:
    settings = load_settings(CONFIG)
    from bridge.commands._common import claims_identity

    def from_claims(cid: str, claims: Any) -> Any:
        return claims_identity(settings, cid, claims)

    with pytest.raises(ConfigError) as e:
        load_cases([
            {"token_claims": {"sub": "x"}, "roles": []},
            {"connector": "github", "token_claims": {"sub": "x"}, "roles": []},
            {"connector": "github", "token_claims_file": "nope.json", "roles": []},
            {"connector": "github", "token_claims": ["x"], "roles": []},
            {"connector": "github", "identity": {"subject": "x"}, "roles": []},
            {"connector": "github", "token_claims": {"sub": "x"}, "identity": {"subject": "x"}, "roles": []},
        ], "w.yaml", EXAMPLES, from_claims=from_claims)
    assert e.value.problems == [
        "w.yaml:cases[0]: token_claims needs connector: <the workload connector's id>",
        "w.yaml:cases[1].token_claims: the token has no repository claim (a non-empty string), which the "
        "github_actions preset needs; the token has no repository_owner claim (a non-empty string), which the "
        "github_actions preset needs; the token has no job_workflow_ref claim (a non-empty string), which the "
        "github_actions preset needs",
        f"w.yaml:cases[2].token_claims_file: cannot read {EXAMPLES / 'nope.json'} ([Errno 2] No such file or "
        f"directory: '{EXAMPLES / 'nope.json'}')",
        "w.yaml:cases[3].token_claims: must be an object (the token's claims)",
        "w.yaml:cases[4]: connector goes with token_claims (an identity names its own connector)",
        "w.yaml:cases[5]: give exactly one of identity, identity_file, token_claims, token_claims_file",
    ]


def test_cases_without_the_config_cannot_read_token_claims() -> None:
    with pytest.raises(ConfigError, match="token claims need the config's connectors"):
        load_cases([{"connector": "github", "token_claims": {"sub": "x"}, "roles": []}])


# --------------------------------------------------------------------------- rules without connectors:

ADMIN = "arn:aws:iam::123456789012:role/Admin"
PEOPLE_RULES = [
    {"name": "octo-org-admins", "match": {"claim": "claims.repository_owner", "equals": "octo-org"},
     "grants": [{"role_arn": ADMIN}]},
    {"name": "admins", "match": {"group": "admins"}, "grants": [{"role_arn": ADMIN}]},
    {"name": "deploy", "connectors": ["gha"], "match": {"claim": "claims.repository", "equals": "octo-org/app"},
     "grants": [{"role_arn": DEPLOYER}, {"role_arn": "arn:aws:iam::123456789012:role/Frozen"}]},
    {"name": "freeze", "match": {"claim": "claims.repository_owner", "equals": "octo-org"},
     "deny": {"roles": ["arn:aws:iam::123456789012:role/Frozen"]}},
]


def _workload(**claims: Any) -> Any:
    from bridge.domain.identity import Identity

    return Identity(connector_id="gha", subject="repo:octo-org/app:ref:refs/heads/main", issuer="https://gh",
                    groups=("admins",), claims={"repository": "octo-org/app", "repository_owner": "octo-org",
                                                **claims})


def test_a_grant_rule_without_connectors_does_not_apply_to_a_workload_a_deny_rule_does() -> None:
    from dataclasses import replace

    from bridge import mapping

    ms = mapping.load_mapping({"rules": PEOPLE_RULES}, connectors=["corp", "gha"], workloads=["gha"])
    defaults = mapping.GrantDefaults("sts.amazonaws.com")
    job = _workload()
    decision = mapping.decide(ms, job, defaults)
    assert [g.role_arn for g in decision.grants] == [DEPLOYER]  # not Admin; Frozen denied by the unscoped deny
    why = {r.rule: r for r in mapping.explain(ms, job, default_audience="sts.amazonaws.com")}
    for name in ("octo-org-admins", "admins"):
        assert not why[name].matched
        assert why[name].reason == ("has no connectors:, and 'gha' is a workload connector: a workload's identity "
                                    "is matched only by rules that name its connector (add connectors: [gha])")
    assert why["freeze"].matched and why["deploy"].matched
    # a person's identity is matched by the same rules as before
    person = replace(job, connector_id="corp")
    assert {g.role_arn for g in mapping.decide(ms, person, defaults).grants} == {ADMIN}
    # without the workload connectors named, the rules would have given the job Admin (what this guards)
    loose = mapping.load_mapping({"rules": PEOPLE_RULES}, connectors=["corp", "gha"])
    assert ADMIN in {g.role_arn for g in mapping.decide(loose, job, defaults).grants}
    assert loose.compiled.version != ms.compiled.version  # which connectors are workloads decides too


def test_the_config_tells_the_rules_its_workload_connectors_at_load_and_reload() -> None:
    from bridge.config import reload_mapping, settings_from_dict

    raw = yaml.safe_load(Path(CONFIG).read_text(encoding="utf-8"))
    raw["connectors"][2]["jwks_file"] = str(EXAMPLES / "cluster-jwks.json")
    settings = settings_from_dict(raw, source_dir=EXAMPLES)
    assert settings.mapping.compiled.workloads == {"github", "gitlab", "cluster"}
    assert reload_mapping(settings).compiled.workloads == {"github", "gitlab", "cluster"}


def _with_people_rule(tmp_path: Path, *, extra_connector: bool = False) -> str:
    doc = yaml.safe_load(Path(CONFIG).read_text(encoding="utf-8"))
    doc["connectors"][2]["jwks_file"] = str(EXAMPLES / "cluster-jwks.json")
    doc["mapping"]["rules"].insert(0, PEOPLE_RULES[0] | {"grants": [{"account": "prod", "role": "Admin"}]})
    if extra_connector:
        doc["connectors"].append({"id": "buildkite", "type": "workload", "preset": "generic",
                                  "issuer": "https://agent.buildkite.com", "audiences": ["https://bridge.example.com"]})
    (tmp_path / "bridge.yaml").write_text(yaml.safe_dump(doc), encoding="utf-8")
    return str(tmp_path / "bridge.yaml")


def test_explain_and_rules_test_say_why_a_rule_without_connectors_skipped_a_workload(tmp_path: Path) -> None:
    config = _with_people_rule(tmp_path)
    r = run("explain", "--config", config, "--connector", "github", "--token-claims",
            str(EXAMPLES / "github-main.json"), "--json")
    assert r.exit_code == 0, r.output
    doc = json.loads(r.output)
    (skipped,) = [x for x in doc["rules"] if x["rule"] == "octo-org-admins"]
    assert not skipped["matched"] and "'github' is a workload connector" in skipped["reason"]
    assert ADMIN not in [g["role_arn"] for g in doc["grants"]]
    text = run("explain", "--config", config, "--connector", "github", "--token-claims",
               str(EXAMPLES / "github-main.json"))
    assert "no    octo-org-admins: has no connectors:, and 'github' is a workload connector" in text.output
    cases = tmp_path / "cases.yaml"
    cases.write_text(yaml.safe_dump({"cases": [{"name": "main deploys", "connector": "github",
                                                 "token_claims_file": str(EXAMPLES / "github-main.json"),
                                                 "includes": [ADMIN, DEPLOYER]}]}), encoding="utf-8")
    r = run("rules", "test", "--config", config, str(cases))
    assert r.exit_code == 1
    assert (f"missing role {ADMIN} (rule octo-org-admins has no connectors:, and 'github' is a workload "
            "connector: a workload's identity is matched only by rules that name its connector (add connectors: "
            "[github]))") in r.output
    assert f"missing role {DEPLOYER}" not in r.output


def test_a_workload_connector_no_rule_names_is_warned_about(tmp_path: Path) -> None:
    assert not [w for w in load_settings(_with_people_rule(tmp_path)).warnings() if "no rule names" in w]
    warned = [w for w in load_settings(_with_people_rule(tmp_path, extra_connector=True)).warnings()
              if "no rule names" in w]
    assert warned == ["connector buildkite: no rule names this workload connector in connectors:, so its tokens get "
                      "no role (a rule without connectors: does not apply to workload identities; docs/workloads.md, "
                      "\"Rules on workload claims\")."]
    from bridge.keys.signing import generate_cache_key, generate_key, generate_saml_key

    for make in (generate_key, generate_cache_key):
        make(tmp_path / "keys")
    generate_saml_key(tmp_path / "keys", bits=2048)
    r = run("check-config", "--config", _with_people_rule(tmp_path, extra_connector=True))
    assert r.exit_code == 0, r.output
    assert "warning: connector buildkite: no rule names this workload connector" in r.output
