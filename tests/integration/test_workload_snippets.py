"""The GitLab CI job and the Kubernetes pod of docs/workloads.md ("CI workloads"), read from the page and run as
the platforms run them, against the real bridge (served like tests/integration/test_workload_ci_step.py's, on a
real redis-server, in front of the strict STS and moto) with the page's own rules (its ``workload-rules`` block):

- GitLab: the job's ``script`` lines in one bash with the runner's ``set -eo pipefail``, ``BRIDGE_TOKEN`` a token
  of a stand-in GitLab issuer with GitLab's published claim set (tests/peers/workload_issuer.py
  ``gitlab_claims``); its last line ``aws sts get-caller-identity`` runs a stand-in ``aws`` (boto3, against
  moto) with the environment the script exported.
- Kubernetes: the ConfigMap's script as the AWS SDK for Python's ``credential_process`` (the ConfigMap's AWS
  config, the pod's env), the projected token file minted by a stand-in cluster issuer (``k8s_claims``).

Every refusal fails the job (or the SDK) with the OAuth error and the bridge's code, and exports nothing."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml

from tests.conftest import ACCOUNT
from tests.peers.workload_issuer import WorkloadIssuer, gitlab_claims, k8s_claims, running

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
PAGE = ROOT / "docs" / "workloads.md"
STAGING = "210987654321"
ACCOUNTS = {ACCOUNT: {"alias": "prod", "roles": {"Deployer": {}, "BillingReader": {}}},
            STAGING: {"alias": "staging", "roles": {"Release": {}}}}
# `aws sts get-caller-identity` as the CLI runs it: the environment's credentials and region (moto's endpoint)
AWS = """import json, os, sys
import boto3
assert sys.argv[1:] == ["sts", "get-caller-identity"], sys.argv
sts = boto3.client("sts", region_name=os.environ["AWS_REGION"], endpoint_url=os.environ["STS_URL"])
out = sts.get_caller_identity()
print(json.dumps({k: out[k] for k in ("UserId", "Account", "Arn")}))
"""


def block(marker: str) -> str:
    found = re.search(rf"<!-- {marker} -->\n```yaml\n(.*?)\n```", PAGE.read_text(encoding="utf-8"), re.DOTALL)
    assert found, f"docs/workloads.md lost its {marker} block"
    return found[1]


def page_connector(cid: str) -> dict[str, Any]:
    """The connector ``cid`` of the page's configuration block."""
    text = PAGE.read_text(encoding="utf-8")
    found = re.search(r"```yaml\n(connectors:\n.*?)\n```", text, re.DOTALL)
    assert found, "docs/workloads.md lost its connectors block"
    return next(c for c in yaml.safe_load(found[1])["connectors"] if c["id"] == cid)


def page_rules() -> list[dict[str, Any]]:
    """The page's rules for the gitlab and cluster connectors (the github ones are test_workload_ci_step.py's)."""
    rules = yaml.safe_load(block("workload-rules"))["mapping"]["rules"]
    return [r for r in rules if set(r["connectors"]) <= {"gitlab", "cluster"}]


@pytest.fixture
def gitlab() -> Iterator[WorkloadIssuer]:
    with running() as iss:
        yield iss


@pytest.fixture
def cluster() -> Iterator[WorkloadIssuer]:
    with running() as iss:
        yield iss


@pytest.fixture
def bridge(live_bridge, make_settings, gitlab: WorkloadIssuer, cluster: WorkloadIssuer,  # type: ignore[no-untyped-def]
           bridge_port: int) -> str:
    base = f"http://127.0.0.1:{bridge_port}"
    gitlab.audience = base  # the job's id_tokens aud: the bridge's URL
    cluster.audience = page_connector("cluster")["audiences"][0]
    settings = make_settings(
        connectors=[{"id": "gitlab", "type": "workload", "preset": "gitlab_ci", "issuer": gitlab.issuer,
                     "audiences": [base], "http_timeout": 5},
                    {"id": "cluster", "type": "workload", "preset": "kubernetes", "issuer": cluster.issuer,
                     "audiences": page_connector("cluster")["audiences"], "http_timeout": 5}],
        mapping={"accounts": ACCOUNTS, "rules": page_rules()}, insecure_dev_login=False)
    assert live_bridge(settings) == base
    return base


def web_identity_calls(sts: Any) -> list[Any]:
    return [c for c in sts.seen if c.action == "AssumeRoleWithWebIdentity"]


# --------------------------------------------------------------------------- GitLab CI


def the_job() -> tuple[dict[str, Any], str]:
    """The page's job and its script as the runner runs it (one bash, ``set -eo pipefail``, line after line)."""
    job = yaml.safe_load(block("gitlab-ci-job"))["deploy-staging"]
    assert job["id_tokens"]["BRIDGE_TOKEN"]["aud"] == job["variables"]["BRIDGE"]  # the token is for this bridge
    assert job["id_tokens"]["BRIDGE_TOKEN"]["aud"] in page_connector("gitlab")["audiences"]
    return job, "set -eo pipefail\n" + "\n".join(job["script"])


def run_job(bridge: str, token: str, tmp_path: Path, moto_url: str) -> subprocess.CompletedProcess[str]:
    job, script = the_job()
    shims = tmp_path / "bin"
    shims.mkdir(exist_ok=True)
    (shims / "aws").write_text(f"#!/bin/sh\nexec {sys.executable} -c '{AWS}' \"$@\"\n", encoding="utf-8")
    (shims / "aws").chmod(0o755)
    env = {**{k: str(v) for k, v in job["variables"].items()}, "BRIDGE": bridge, "BRIDGE_TOKEN": token,
           "PATH": f"{shims}:{os.environ['PATH']}", "HOME": str(tmp_path), "STS_URL": moto_url,
           "AWS_EC2_METADATA_DISABLED": "true", "AWS_CONFIG_FILE": str(tmp_path / "none"),
           "AWS_SHARED_CREDENTIALS_FILE": str(tmp_path / "none")}
    return subprocess.run(["bash", "-c", script], env=env, capture_output=True, text=True, timeout=60, check=False)


def test_the_docs_job_on_protected_main_gets_the_role_sts_accepts(bridge: str, gitlab: WorkloadIssuer,
                                                                 strict_sts_peer: Any, moto_url: str,
                                                                 tmp_path: Path) -> None:
    token = gitlab.mint_as(gitlab_claims)
    done = run_job(bridge, token, tmp_path, moto_url)
    assert done.returncode == 0, done.stderr
    caller = json.loads(done.stdout.strip().splitlines()[-1])  # the job's `aws sts get-caller-identity`
    assert caller["Arn"] == f"arn:aws:sts::{STAGING}:assumed-role/Release/gl-99120"
    (seen,) = web_identity_calls(strict_sts_peer)
    assert seen.problems == [] and seen.role_arn == f"arn:aws:iam::{STAGING}:role/Release"
    assert seen.params["RoleSessionName"] == "gl-99120"
    # the job's log: the caller's identity only (never the token, nor the credentials)
    assert token not in done.stdout and done.stderr == "" and len(done.stdout.strip().splitlines()) == 1


@pytest.mark.parametrize("claims", [{"ref": "feature-x"}, {"ref_protected": False}, {"ref_type": "tag"}],
                         ids=["another branch", "main unprotected", "a tag named main"])
def test_another_ref_fails_the_job_with_a_clear_error_and_nothing(bridge: str, gitlab: WorkloadIssuer,
                                                                 strict_sts_peer: Any, moto_url: str,
                                                                 tmp_path: Path, claims: dict[str, Any]) -> None:
    done = run_job(bridge, gitlab.mint_as(gitlab_claims, **claims), tmp_path, moto_url)
    assert done.returncode == 1 and done.stdout == ""  # `aws` never ran: the job stopped at the exchange
    assert done.stderr.strip() == ("invalid_target: the rules give this workload (platform/billing-api) no role "
                                   "named 'staging/Release' now (exchange_target_not_granted)")
    assert web_identity_calls(strict_sts_peer) == []


def test_a_replayed_gitlab_token_is_refused(bridge: str, gitlab: WorkloadIssuer, strict_sts_peer: Any,
                                            moto_url: str, tmp_path: Path) -> None:
    token = gitlab.mint_as(gitlab_claims)
    assert run_job(bridge, token, tmp_path, moto_url).returncode == 0
    again = run_job(bridge, token, tmp_path, moto_url)
    assert again.returncode == 1 and again.stdout == ""
    assert again.stderr.startswith("invalid_grant: this subject token was already exchanged"), again.stderr
    assert again.stderr.strip().endswith("(exchange_token_replayed)")
    assert len(web_identity_calls(strict_sts_peer)) == 1


def test_a_gitlab_token_without_jti_is_refused(bridge: str, gitlab: WorkloadIssuer, strict_sts_peer: Any,
                                               moto_url: str, tmp_path: Path) -> None:
    done = run_job(bridge, gitlab.mint_as(gitlab_claims, jti=None), tmp_path, moto_url)
    assert done.returncode == 1 and "no jti, and this connector (gitlab_ci) exchanges each token once only" \
        in done.stderr and done.stderr.strip().endswith("(exchange_token_invalid)"), done.stderr
    assert web_identity_calls(strict_sts_peer) == []


# --------------------------------------------------------------------------- Kubernetes


def the_pod() -> tuple[dict[str, Any], dict[str, Any]]:
    """The page's ConfigMap and Pod: valid Kubernetes manifests, checked against each other (mounts, paths,
    the connector's audience, the rule's namespace and service account)."""
    config_map, pod = yaml.safe_load_all(block("kubernetes-pod"))
    for doc in (config_map, pod):  # valid manifests, as tests/unit/test_deploy.py checks the deploy/ ones
        kubernetes_validate.validate(doc, "1.30.0", strict=True)
    spec = pod["spec"]
    (container,) = spec["containers"]
    mounts = {m["name"]: m["mountPath"] for m in container["volumeMounts"]}
    volumes = {v["name"]: v for v in spec["volumes"]}
    (source,) = volumes["bridge-token"]["projected"]["sources"]
    env = {e["name"]: e["value"] for e in container["env"]}
    assert env["BRIDGE_TOKEN_FILE"] == f"{mounts['bridge-token']}/{source['serviceAccountToken']['path']}"
    assert source["serviceAccountToken"]["audience"] in page_connector("cluster")["audiences"]
    assert source["serviceAccountToken"]["expirationSeconds"] <= 3600  # within max_token_lifetime's default
    assert volumes["bridge-aws"]["configMap"]["name"] == config_map["metadata"]["name"]
    assert volumes["bridge-aws"]["configMap"]["defaultMode"] == 0o555  # the script is executable
    assert env["AWS_CONFIG_FILE"] == f"{mounts['bridge-aws']}/config"
    assert f"credential_process = {mounts['bridge-aws']}/aws-credentials" in config_map["data"]["config"]
    rule = next(r for r in page_rules() if r["name"] == "cluster-billing-exporter")
    wanted = {m["claim"]: m["equals"] for m in rule["match"]["all"]}
    assert wanted['claims["kubernetes.io"].namespace'] == pod["metadata"]["namespace"]
    assert wanted['claims["kubernetes.io"].serviceaccount.name'] == spec["serviceAccountName"]
    return config_map, pod


def sdk_call(bridge: str, token: str, tmp_path: Path, moto_url: str) -> subprocess.CompletedProcess[str]:
    """GetCallerIdentity by the AWS SDK for Python in the pod's environment: its credentials come from the
    ConfigMap's ``credential_process`` (the script, its config), the projected token at ``BRIDGE_TOKEN_FILE``."""
    config_map, pod = the_pod()
    etc = tmp_path / "etc-bridge"
    etc.mkdir(exist_ok=True)
    script = etc / "aws-credentials"
    script.write_text(config_map["data"]["aws-credentials"], encoding="utf-8")
    script.chmod(0o555)
    mount = next(m["mountPath"] for m in pod["spec"]["containers"][0]["volumeMounts"] if m["name"] == "bridge-aws")
    (etc / "config").write_text(config_map["data"]["config"].replace(mount, str(etc)), encoding="utf-8")
    (tmp_path / "token").write_text(token, encoding="utf-8")  # as the kubelet writes it: no newline
    env = {e["name"]: e["value"] for e in pod["spec"]["containers"][0]["env"]}
    env.update(BRIDGE=bridge, BRIDGE_TOKEN_FILE=str(tmp_path / "token"), AWS_CONFIG_FILE=str(etc / "config"),
               PATH=os.environ["PATH"], HOME=str(tmp_path), AWS_EC2_METADATA_DISABLED="true",
               AWS_SHARED_CREDENTIALS_FILE=str(tmp_path / "none"), STS_URL=moto_url)
    code = ("import boto3, os; print(boto3.client('sts', endpoint_url=os.environ['STS_URL'])"
            ".get_caller_identity()['Arn'])")
    return subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=60,
                          check=False)


def test_the_docs_pod_gets_the_role_through_the_sdk_again_and_again(bridge: str, cluster: WorkloadIssuer,
                                                                   strict_sts_peer: Any, moto_url: str,
                                                                   tmp_path: Path) -> None:
    token = cluster.mint_as(k8s_claims)
    arn = f"arn:aws:sts::{ACCOUNT}:assumed-role/BillingReader/k8s-billing-exporter"
    for _ in range(2):  # the same projected token, exchanged again (a new SDK client): not single use
        done = sdk_call(bridge, token, tmp_path, moto_url)
        assert done.returncode == 0 and done.stdout.strip() == arn, done.stderr
    # one STS call: the second exchange got the bridge's cached credentials (credential_cache), not a refusal
    (seen,) = web_identity_calls(strict_sts_peer)
    assert seen.problems == [] and seen.role_arn == f"arn:aws:iam::{ACCOUNT}:role/BillingReader"
    assert seen.params["RoleSessionName"] == "k8s-billing-exporter"


def test_a_token_of_a_cluster_before_1_30_without_jti_is_taken(bridge: str, cluster: WorkloadIssuer,
                                                              moto_url: str, tmp_path: Path) -> None:
    done = sdk_call(bridge, cluster.mint_as(k8s_claims, jti=False), tmp_path, moto_url)
    assert done.returncode == 0 and done.stdout.strip().endswith("/BillingReader/k8s-billing-exporter"), done.stderr


@pytest.mark.parametrize(("kw", "says"), [
    ({"account": "other"}, "invalid_target: the rules give this workload (billing/other) no role named "
                           "'prod/BillingReader' now (exchange_target_not_granted)"),
    ({"namespace": "ops"}, "invalid_target: the rules give this workload (ops/exporter) no role named "
                           "'prod/BillingReader' now (exchange_target_not_granted)"),
    ({"lifetime": 7200}, "lives 7200 s (exp - iat), longer than the 3600 s this connector allows for a token it "
                         "exchanges more than once"),
    ({"audience": "https://kubernetes.default.svc.cluster.local"}, "(exchange_token_audience)"),
    ({"now": 1_700_000_000}, "(exchange_token_expired)"),
    ({"exp": None}, "workload token: no exp (a number)"),  # a Secret's token of the old kind never expires
], ids=["another service account", "another namespace", "lives two hours", "the API server's audience", "expired",
        "no exp"])
def test_another_service_account_or_a_bad_token_is_refused(bridge: str, cluster: WorkloadIssuer, strict_sts_peer: Any,
                                                           moto_url: str, tmp_path: Path, kw: dict[str, Any],
                                                           says: str) -> None:
    done = sdk_call(bridge, cluster.mint_as(k8s_claims, **kw), tmp_path, moto_url)
    assert done.returncode == 1 and "CredentialRetrievalError" in done.stderr and says in done.stderr, done.stderr
    assert web_identity_calls(strict_sts_peer) == []
