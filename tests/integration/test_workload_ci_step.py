"""The GitHub Actions step of docs/workloads.md ("CI workloads"), read from the page and run with bash, curl and
jq as a runner would, against the real bridge (served like tests/integration/test_exchange.py's, on a real
redis-server, in front of the strict STS and moto): the stand-in GitHub issuer (tests/peers/workload_issuer.py)
hands out the job's token at ACTIONS_ID_TOKEN_REQUEST_URL; the bridge's ``type: workload`` connector verifies it,
the rules decide (no app: the step sends no client_id), the replay store keeps its jti, and the step's exports
land in GITHUB_ENV, masked in the log. Every refusal fails the step with the OAuth error and code, exports
nothing, and calls no STS."""

from __future__ import annotations

import os
import re
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.conftest import ACCOUNT
from tests.integration.helpers import caller_arn
from tests.peers.workload_issuer import WorkloadIssuer, running

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
PAGE = ROOT / "docs" / "workloads.md"
DEPLOYER = f"arn:aws:iam::{ACCOUNT}:role/Deployer"
FROM_MAIN = {"all": [{"claim": "claims.repository", "equals": "octo-org/octo-repo"},
                     {"claim": "claims.repository_owner", "equals": "octo-org"},
                     {"claim": "claims.ref", "equals": "refs/heads/main"},
                     {"claim": "claims.environment", "equals": "prod"}]}
MAPPING = {"accounts": {ACCOUNT: {"alias": "prod", "roles": {"Deployer": {}, "Reader": {}}}}, "rules": [
    {"name": "deploy-prod-from-main", "connectors": ["github"], "match": FROM_MAIN,
     "grants": [{"account": "prod", "role": "Deployer", "tags": {"Repository": "{claims.repository}"}},
                {"account": "prod", "role": "Reader", "session_name": "gha-{claims.run_id}"}]}]}


def the_step() -> tuple[str, dict[str, str]]:
    """The docs' step: its script and its env."""
    text = PAGE.read_text(encoding="utf-8")
    block = re.search(r"<!-- github-actions-step -->\n```yaml\n(.*?)\n```", text, re.DOTALL)
    assert block, "docs/workloads.md lost its github-actions-step block"
    step = yaml.safe_load(block[1])["jobs"]["deploy"]["steps"][0]
    return step["run"], {k: str(v) for k, v in step["env"].items()}


@pytest.fixture
def issuer() -> Iterator[WorkloadIssuer]:
    with running(WorkloadIssuer(job_claims={"environment": "prod"})) as iss:
        yield iss


@pytest.fixture
def bridge(live_bridge, make_settings, issuer: WorkloadIssuer, bridge_port: int) -> str:  # type: ignore[no-untyped-def]
    base = f"http://127.0.0.1:{bridge_port}"
    settings = make_settings(
        connectors=[{"id": "github", "type": "workload", "preset": "github_actions", "issuer": issuer.issuer,
                     "audiences": [base], "http_timeout": 5}],
        mapping=MAPPING, insecure_dev_login=False)
    assert live_bridge(settings) == base
    return base


def run_step(issuer: WorkloadIssuer, bridge: str, github_env: Path, *, request_token: str | None = None,
             **env_over: str) -> subprocess.CompletedProcess[str]:
    script, env = the_step()
    env.update(BRIDGE=bridge, PATH=os.environ["PATH"], GITHUB_ENV=str(github_env),
               ACTIONS_ID_TOKEN_REQUEST_URL=f"{issuer.issuer}/token-request?api-version=2.0",
               ACTIONS_ID_TOKEN_REQUEST_TOKEN=request_token or issuer.request_token, **env_over)
    return subprocess.run(["bash", "-c", script], env=env, capture_output=True, text=True, timeout=60, check=False)


def exports(path: Path) -> dict[str, str]:
    if not path.exists():
        return {}
    return dict(line.split("=", 1) for line in path.read_text(encoding="utf-8").splitlines())


def web_identity_calls(sts: Any) -> list[Any]:
    return [c for c in sts.seen if c.action == "AssumeRoleWithWebIdentity"]


def test_the_docs_step_gets_credentials_sts_accepts(bridge: str, issuer: WorkloadIssuer, strict_sts_peer: Any,
                                                    moto_url: str, tmp_path: Path) -> None:
    github_env = tmp_path / "github_env"
    done = run_step(issuer, bridge, github_env)
    assert done.returncode == 0, done.stderr
    env = exports(github_env)
    assert sorted(env) == ["AWS_ACCESS_KEY_ID", "AWS_REGION", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN"]
    masked = set(re.findall(r"^::add-mask::(.*)$", done.stdout, re.MULTILINE))
    assert {env["AWS_ACCESS_KEY_ID"], env["AWS_SECRET_ACCESS_KEY"], env["AWS_SESSION_TOKEN"]} <= masked
    assert len(masked) == 4  # the job's token too, and it is never printed unmasked
    jwt = next(m for m in masked if m.count(".") == 2)
    assert jwt not in done.stdout.replace(f"::add-mask::{jwt}", "") and jwt not in done.stderr
    (seen,) = web_identity_calls(strict_sts_peer)
    assert seen.problems == [] and seen.role_arn == DEPLOYER
    # no session_name in the rule: the workload's own (repository and run id), within STS's charset
    assert seen.params["RoleSessionName"] == "octo-org-octo-repo.5431"
    assert seen.params["DurationSeconds"] == "3600" and "Policy" not in seen.params  # the grant's; no app policy
    creds = {"AccessKeyId": env["AWS_ACCESS_KEY_ID"], "SecretAccessKey": env["AWS_SECRET_ACCESS_KEY"],
             "SessionToken": env["AWS_SESSION_TOKEN"]}
    assert caller_arn(moto_url, creds) == f"arn:aws:sts::{ACCOUNT}:assumed-role/Deployer/octo-org-octo-repo.5431"
    # a role whose rule names the session: the rule's name wins (a new token: each is single use)
    again = run_step(issuer, bridge, tmp_path / "env2", ROLE="prod/Reader")
    assert again.returncode == 0, again.stderr
    assert web_identity_calls(strict_sts_peer)[-1].params["RoleSessionName"] == "gha-5431"


def test_another_branch_gets_a_clear_error_and_nothing(bridge: str, issuer: WorkloadIssuer, strict_sts_peer: Any,
                                                       tmp_path: Path) -> None:
    issuer.job_claims = {"environment": None, "ref": "refs/heads/feature-x"}
    done = run_step(issuer, bridge, tmp_path / "github_env")
    assert done.returncode == 1
    assert done.stderr.strip() == ("invalid_target: the rules give this workload (octo-org/octo-repo) no role named "
                                   "'prod/Deployer' now (exchange_target_not_granted)")
    assert exports(tmp_path / "github_env") == {} and web_identity_calls(strict_sts_peer) == []


def test_the_same_token_again_is_refused_as_replayed(bridge: str, issuer: WorkloadIssuer, strict_sts_peer: Any,
                                                     tmp_path: Path) -> None:
    issuer.same_token = True
    assert run_step(issuer, bridge, tmp_path / "first").returncode == 0
    again = run_step(issuer, bridge, tmp_path / "second")
    assert again.returncode == 1 and again.stderr.strip().endswith("(exchange_token_replayed)"), again.stderr
    assert again.stderr.startswith("invalid_grant: this subject token was already exchanged")
    assert exports(tmp_path / "second") == {} and len(web_identity_calls(strict_sts_peer)) == 1


@pytest.mark.parametrize(("claims", "code", "says"), [
    ({"environment": "prod", "now": 1_700_000_000}, "exchange_token_expired", "expired"),
    ({"environment": "prod", "aud": "https://github.com/octo-org"}, "exchange_token_audience", "another audience"),
], ids=["expired", "wrong audience"])
def test_a_bad_token_fails_the_step_with_its_code(bridge: str, issuer: WorkloadIssuer, strict_sts_peer: Any,
                                                  tmp_path: Path, claims: dict[str, Any], code: str,
                                                  says: str) -> None:
    issuer.job_claims = claims
    done = run_step(issuer, bridge, tmp_path / "github_env")
    assert done.returncode == 1 and done.stderr.startswith("invalid_grant: ") and says in done.stderr
    assert done.stderr.strip().endswith(f"({code})"), done.stderr
    assert exports(tmp_path / "github_env") == {} and web_identity_calls(strict_sts_peer) == []


def test_a_wrong_request_token_fails_before_any_exchange(bridge: str, issuer: WorkloadIssuer, strict_sts_peer: Any,
                                                         tmp_path: Path) -> None:
    done = run_step(issuer, bridge, tmp_path / "github_env", request_token="stale")
    assert done.returncode != 0 and "401" in done.stderr and exports(tmp_path / "github_env") == {}
    assert web_identity_calls(strict_sts_peer) == []


def test_a_deeply_nested_payload_is_a_clear_oauth_error_not_a_500(bridge: str, issuer: WorkloadIssuer,
                                                                  strict_sts_peer: Any) -> None:
    import requests

    from tests.integration.test_exchange import EXCHANGE, nested_token

    token = nested_token({"alg": "RS256", "kid": "gh-1"}, 12_000)  # within the workload connector's 16,384
    r = requests.post(f"{bridge}/oauth/token", timeout=30, data={
        "grant_type": EXCHANGE, "subject_token": token, "subject_token_type": "urn:ietf:params:oauth:token-type:jwt",
        "audience": "prod/Deployer"})
    assert r.status_code == 400 and r.headers["Content-Type"].startswith("application/json"), r.text[:300]
    body = r.json()
    assert (body["error"], body["error_code"]) == ("invalid_grant", "exchange_token_invalid")
    assert "workload token: malformed (its payload is nested too deeply to read)" in body["error_description"]
    assert token[:40] not in r.text and web_identity_calls(strict_sts_peer) == []
