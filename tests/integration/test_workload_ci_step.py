"""The GitHub Actions step of docs/workloads.md ("CI workloads"), read from the page and run with bash, curl and
jq as a runner would: the stand-in GitHub issuer (tests/peers/workload_issuer.py) hands out the job's token at
ACTIONS_ID_TOKEN_REQUEST_URL, the workload connector verifies it, the rules decide, the replay store on a real
redis-server keeps its jti; the step's exports land in GITHUB_ENV, masked in the log.

The exchange here is a stand-in of ``POST /oauth/token`` (the token-exchange branch builds the real one) that
answers in its documented shape with placeholder credentials: what is tested is the step's script (its request,
its error handling, its exports) and the connector seam, not STS."""

from __future__ import annotations

import os
import re
import secrets
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis
import yaml
from werkzeug.serving import make_server
from werkzeug.wrappers import Request, Response

from bridge import mapping
from bridge.domain.errors import InvalidIdToken
from bridge.storage.redis import RedisStore
from bridge.upstream.workload import WorkloadConnector
from bridge.upstream.workload_settings import WorkloadConnectorSettings
from tests.peers.workload_issuer import WorkloadIssuer, running

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
PAGE = ROOT / "docs" / "workloads.md"
EXCHANGE = "urn:ietf:params:oauth:grant-type:token-exchange"
RULES = mapping.load_mapping({"accounts": {"123456789012": {"alias": "prod"}}, "rules": [{
    "name": "deploy-prod-from-main", "connectors": ["github"],
    "match": {"all": [{"claim": "claims.repository", "equals": "octo-org/octo-repo"},
                      {"claim": "claims.ref", "equals": "refs/heads/main"},
                      {"claim": "claims.environment", "equals": "prod"}]},
    "grants": [{"account": "prod", "role": "Deployer", "session_name": "gha-{claims.run_id}"}]}]})


def the_step() -> tuple[str, dict[str, str]]:
    """The docs' step: its script and its env."""
    text = PAGE.read_text(encoding="utf-8")
    block = re.search(r"<!-- github-actions-step -->\n```yaml\n(.*?)\n```", text, re.DOTALL)
    assert block, "docs/workloads.md lost its github-actions-step block"
    step = yaml.safe_load(block[1])["jobs"]["deploy"]["steps"][0]
    return step["run"], {k: str(v) for k, v in step["env"].items()}


class StandInExchange:
    """``POST /oauth/token`` (token exchange) in the exchange branch's answer shape, on the real connector and store."""

    def __init__(self, connector: WorkloadConnector, store: RedisStore) -> None:
        self.connector, self.store, self.url = connector, store, ""

    def refuse(self, why: str) -> Response:
        return Response(_dumps({"error": "invalid_grant", "error_description": why}), status=400,
                        content_type="application/json")

    def __call__(self, environ: dict[str, Any], start_response: Any) -> Any:
        req = Request(environ)
        f = req.form
        if req.path != "/oauth/token" or f.get("grant_type") != EXCHANGE or f.get("client_id") != "ci-deploy" \
                or f.get("subject_token_type") != "urn:ietf:params:oauth:token-type:jwt":
            return Response(_dumps({"error": "invalid_request"}), status=400)(environ, start_response)
        try:
            subject = self.connector.verify_subject_token(f.get("subject_token", ""), audiences=(self.url,))
        except InvalidIdToken as e:
            return self.refuse(e.detail)(environ, start_response)
        if subject.single_use and not self.store.first_use(f"jti:{self.connector.id}", str(subject.token_id),
                                                           subject.expires_at):
            return self.refuse("the token was already exchanged (its jti is single use)")(environ, start_response)
        grants = mapping.decide(RULES, subject.identity, mapping.GrantDefaults("sts.amazonaws.com")).grants
        grant = next((g for g in grants if f"{g.account_alias or g.account_id}/{g.role_name}" == f.get("audience")
                      or g.role_arn == f.get("audience")), None)
        if grant is None:
            return self.refuse(f"the rules give this job no {f.get('audience')}")(environ, start_response)
        creds = {"AccessKeyId": "ASIA" + secrets.token_hex(8).upper(), "SecretAccessKey": secrets.token_urlsafe(30),
                 "SessionToken": secrets.token_urlsafe(60), "Expiration": "2026-12-07T09:15:00Z"}
        return Response(_dumps({"issued_token_type": "urn:ietf:params:aws:token-type:credentials",
                                "token_type": "N_A", "access_token": _dumps(creds), "credentials": creds,
                                "expires_in": 900, "role_arn": grant.role_arn, "region": "us-east-1"}),
                        content_type="application/json", headers={"Cache-Control": "no-store"})(environ, start_response)


def _dumps(doc: Any) -> str:
    import json

    return json.dumps(doc)


@pytest.fixture
def setup(redis_url: str, tmp_path: Path) -> Iterator[tuple[WorkloadIssuer, StandInExchange, Path]]:
    client = redis.Redis.from_url(redis_url)
    prefix = f"ci-step-{secrets.token_hex(4)}:"
    with running(WorkloadIssuer(job_claims={"environment": "prod"})) as issuer:
        exchange = StandInExchange(None, RedisStore(client, prefix))  # type: ignore[arg-type]
        srv = make_server("127.0.0.1", 0, exchange, threaded=True)
        exchange.url = f"http://127.0.0.1:{srv.server_port}"  # the bridge's URL: the job's audience
        exchange.connector = WorkloadConnector(WorkloadConnectorSettings(
            id="github", type="workload", preset="github_actions", issuer=issuer.issuer, audiences=[exchange.url]))
        thread = threading.Thread(target=srv.serve_forever, daemon=True)
        thread.start()
        try:
            yield issuer, exchange, tmp_path / "github_env"
        finally:
            srv.shutdown()
            thread.join(timeout=10)
            for k in client.scan_iter(match=f"{prefix}*"):
                client.delete(k)


def run_step(issuer: WorkloadIssuer, exchange: StandInExchange, github_env: Path) -> subprocess.CompletedProcess[str]:
    script, env = the_step()
    env.update(BRIDGE=exchange.url, PATH=os.environ["PATH"], GITHUB_ENV=str(github_env),
               ACTIONS_ID_TOKEN_REQUEST_URL=f"{issuer.issuer}/token-request?api-version=2.0",
               ACTIONS_ID_TOKEN_REQUEST_TOKEN=issuer.request_token)
    return subprocess.run(["bash", "-c", script], env=env, capture_output=True, text=True, timeout=60, check=False)


def exports(path: Path) -> dict[str, str]:
    if not path.exists():
        return {}
    return dict(line.split("=", 1) for line in path.read_text(encoding="utf-8").splitlines())


def test_the_docs_step_exports_the_credentials_masked(setup: tuple[WorkloadIssuer, StandInExchange, Path]) -> None:
    issuer, exchange, github_env = setup
    done = run_step(issuer, exchange, github_env)
    assert done.returncode == 0, done.stderr
    env = exports(github_env)
    assert sorted(env) == ["AWS_ACCESS_KEY_ID", "AWS_REGION", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN"]
    assert env["AWS_ACCESS_KEY_ID"].startswith("ASIA") and env["AWS_REGION"] == "us-east-1"
    masked = set(re.findall(r"^::add-mask::(.*)$", done.stdout, re.MULTILINE))
    assert {env["AWS_ACCESS_KEY_ID"], env["AWS_SECRET_ACCESS_KEY"], env["AWS_SESSION_TOKEN"]} <= masked
    assert len(masked) == 4  # the job's token too
    jwt = next(m for m in masked if m.count(".") == 2)
    assert jwt not in done.stdout.replace(f"::add-mask::{jwt}", "") and jwt not in done.stderr


def test_another_branch_fails_the_step_and_exports_nothing(
        setup: tuple[WorkloadIssuer, StandInExchange, Path]) -> None:
    issuer, exchange, github_env = setup
    issuer.job_claims = {"environment": None, "ref": "refs/heads/feature-x"}
    done = run_step(issuer, exchange, github_env)
    assert done.returncode == 1
    assert "invalid_grant: the rules give this job no prod/Deployer" in done.stderr
    assert exports(github_env) == {}


def test_a_replayed_token_fails_the_step(setup: tuple[WorkloadIssuer, StandInExchange, Path]) -> None:
    issuer, exchange, github_env = setup
    issuer.same_token = True
    assert run_step(issuer, exchange, github_env).returncode == 0
    before = exports(github_env)
    again = run_step(issuer, exchange, github_env)
    assert again.returncode == 1 and "invalid_grant: the token was already exchanged" in again.stderr
    assert exports(github_env) == before  # nothing more exported


def test_a_wrong_request_token_fails_before_any_exchange(setup: tuple[WorkloadIssuer, StandInExchange, Path]) -> None:
    issuer, exchange, github_env = setup
    issuer.request_token = "rotated"  # the runner's request token is not the one the step sends
    script, env = the_step()
    env.update(BRIDGE=exchange.url, PATH=os.environ["PATH"], GITHUB_ENV=str(github_env),
               ACTIONS_ID_TOKEN_REQUEST_URL=f"{issuer.issuer}/token-request?api-version=2.0",
               ACTIONS_ID_TOKEN_REQUEST_TOKEN="stale")
    done = subprocess.run(["bash", "-c", script], env=env, capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode != 0 and "401" in done.stderr and exports(github_env) == {}
