"""The token exchange without a registered app (bridge/core/exchange.py, ``client_id`` omitted): a CI job's token
from a ``type: workload`` connector (its keys from a file: no network), the grant by ``audience`` through the
decision point, a recording STS at the seam. A sign-in IdP's token or a browser page without client_id is
refused; the rate limit counts per connector and subject; the session name is the workload's unless the rule
names one; the audit record names the connector and the workload; the app path is untouched."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from joserfc import jwt
from joserfc.jwk import KeySet, RSAKey

from bridge.core.exchange import EXCHANGE_GRANT, JWT
from tests.peers.workload_issuer import github_claims
from tests.unit.test_exchange import ACCOUNT, ORIGIN, Env, _build, audit_lines, config, form, id_token, post

GITHUB = "https://token.actions.githubusercontent.com"
BRIDGE = "https://bridge.example.com"
GH_KEY = RSAKey.generate_key(2048, parameters={"kid": "gh-1"})
DEPLOYER = f"arn:aws:iam::{ACCOUNT}:role/Deployer"
FROM_MAIN = {"all": [{"claim": "claims.repository", "equals": "octo-org/octo-repo"},
                     {"claim": "claims.ref", "equals": "refs/heads/main"}]}
POLICY = {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "s3:PutObject", "Resource": "*"}]}


def workload_env(tmp_path: Path, rules: tuple[dict[str, Any], ...] = (), scim: dict[str, Any] | None = None,
                 **connector: Any) -> Env:
    raw = config(tmp_path) | ({"scim": scim} if scim else {})
    jwks = tmp_path / "gh-jwks.json"
    jwks.write_text(json.dumps(KeySet([GH_KEY]).as_dict(private=False)))
    raw["connectors"].append({"id": "github", "type": "workload", "preset": "github_actions", "audiences": [BRIDGE],
                              "jwks_file": str(jwks), **connector})
    raw["mapping"]["accounts"][ACCOUNT]["roles"].update({"Deployer": {}, "Uploader": {}})
    raw["mapping"]["rules"].append({"name": "deploy-from-main", "connectors": ["github"], "match": FROM_MAIN,
                                    "grants": [
        {"account": "sandbox", "role": "Deployer", "duration": {"default": 1800, "max": 3600}},
        {"account": "sandbox", "role": "Uploader", "session_name": "gha-{claims.run_id}", "policy": POLICY}]})
    raw["mapping"]["rules"] += rules
    return _build(raw, tmp_path)


def gh_token(**claims: Any) -> str:
    body = {**github_claims(GITHUB, audience=BRIDGE, environment=None), **claims}
    return jwt.encode({"alg": "RS256", "kid": "gh-1"}, {k: v for k, v in body.items() if v is not None}, GH_KEY)


def wl_form(token: str | None = None, **overrides: Any) -> dict[str, Any]:
    f = {"grant_type": EXCHANGE_GRANT, "subject_token": token or gh_token(), "subject_token_type": JWT,
         "audience": "sandbox/Deployer", **overrides}
    return {k: v for k, v in f.items() if v is not None}


@pytest.fixture
def env(tmp_path: Path) -> Env:
    return workload_env(tmp_path)


def test_a_jobs_token_without_client_id_gets_the_rules_grant(env: Env) -> None:
    token = gh_token()
    r = post(env, wl_form(token), origin=None)
    assert r.status_code == 200, r.get_json()
    assert "Access-Control-Allow-Origin" not in r.headers and r.headers["Cache-Control"] == "no-store"
    (call,) = env.sts.calls
    assert call["role_arn"] == DEPLOYER and call["duration"] == 1800 and call["policy"] is None  # the grant's
    assert call["session_name"] == "octo-org-octo-repo.5431"  # the rule names none: the workload's
    (record,) = [a for a in audit_lines(env) if a.get("type") == "credentials"]
    assert record["workload"] == "octo-org/octo-repo" and "app" not in record and record["outcome"] == "success"
    assert record["who"]["connector"] == "github" and record["who"]["subject"] == "repo:octo-org/octo-repo:ref:" \
        "refs/heads/main" and record["who"]["issuer"] == GITHUB
    assert token[:40] not in env.audit.read_text()


def test_the_rules_session_name_and_policy_go_with_the_grant(env: Env) -> None:
    r = post(env, wl_form(audience=None, resource=f"arn:aws:iam::{ACCOUNT}:role/Uploader"), origin=None)
    assert r.status_code == 200, r.get_json()
    (call,) = env.sts.calls
    assert call["session_name"] == "gha-5431" and json.loads(call["policy"])["Statement"][0]["Action"] == "s3:PutObject"


def refused(env: Env, data: dict[str, Any], origin: str | None = None) -> dict[str, Any]:
    r = post(env, data, origin=origin)
    assert r.status_code in (400, 401, 429), r.get_json()
    assert env.sts.calls == [] and not [a for a in audit_lines(env) if a.get("type") == "credentials"]
    return dict(r.get_json())


@pytest.mark.parametrize(("data", "origin", "error", "code", "says"), [
    (lambda: wl_form(id_token()), None, "invalid_request", "exchange_client_required", "client_id is missing"),
    (lambda: wl_form(), ORIGIN, "invalid_request", "exchange_client_required", "browser page"),
    (lambda: wl_form(gh_token(ref="refs/heads/feature-x")), None, "invalid_target", "exchange_target_not_granted",
     "no role named 'sandbox/Deployer'"),
    (lambda: wl_form(audience="sandbox/Photos"), None, "invalid_target", "exchange_target_not_granted",
     "no role named"),
    (lambda: wl_form(gh_token(exp=int(time.time()) - 600)), None, "invalid_grant", "exchange_token_expired", "expired"),
    (lambda: wl_form(gh_token(aud="https://github.com/octo-org")), None, "invalid_grant", "exchange_token_audience",
     "another audience"),
    (lambda: wl_form(gh_token(jti=None)), None, "invalid_grant", "exchange_token_invalid", "no jti"),
    (lambda: wl_form("a.b.c"), None, "invalid_grant", "exchange_token_invalid", "did not verify"),
], ids=["oidc-token", "browser", "other-branch", "not-granted", "expired", "audience", "no-jti", "garbage"])
def test_refusals_without_client_id_are_clear_and_issue_nothing(env: Env, data: Callable[[], dict[str, Any]],
                                                                origin: str | None, error: str, code: str,
                                                                says: str) -> None:
    # Tokens are minted when the test runs, not at collection: a suite slower than their 5 minutes stays green.
    body = refused(env, data(), origin)
    assert (body["error"], body["error_code"]) == (error, code) and says in body["error_description"], body


def test_a_rule_without_connectors_gives_a_workload_nothing(tmp_path: Path) -> None:
    """A rule written for people (a claim any repository's token carries too) does not reach CI jobs: only rules
    naming the workload connector do."""
    env = workload_env(tmp_path, rules=({"name": "octo-org-readers", "grants": [{"account": "sandbox",
                                                                             "role": "ReadOnly"}],
                                         "match": {"claim": "claims.repository_owner", "equals": "octo-org"}},))
    body = refused(env, wl_form(audience="sandbox/ReadOnly"))
    assert (body["error"], body["error_code"]) == ("invalid_target", "exchange_target_not_granted"), body
    assert post(env, wl_form(), origin=None).status_code == 200  # its own rule's grant still comes
    assert [c["role_arn"] for c in env.sts.calls] == [DEPLOYER]


def test_the_same_token_twice_is_a_replay(env: Env) -> None:
    token = gh_token()
    assert post(env, wl_form(token), origin=None).status_code == 200
    again = post(env, wl_form(token), origin=None).get_json()
    assert again["error_code"] == "exchange_token_replayed" and len(env.sts.calls) == 1


def test_the_rate_limit_counts_per_connector_and_subject(tmp_path: Path) -> None:
    env = workload_env(tmp_path, exchanges_per_minute=2)
    for _ in range(2):
        assert post(env, wl_form(), origin=None).status_code == 200
    r = post(env, wl_form(), origin=None)
    assert r.status_code == 429 and r.get_json()["error_code"] == "exchange_rate_limited" and r.headers["Retry-After"]
    other = gh_token(sub="repo:octo-org/octo-repo:environment:prod")
    assert post(env, wl_form(other), origin=None).status_code == 200  # another subject's budget
    assert len([a for a in audit_lines(env) if a.get("type") == "credentials"]) == 3  # the refusal issued nothing


def test_the_app_path_is_unchanged_beside_a_workload_connector(env: Env) -> None:
    assert post(env, form()).status_code == 200  # the photos app, its origin, its policy
    assert env.sts.calls[0]["session_name"] == "photos.alice@example.com"
    body = post(env, form(subject_token=gh_token())).get_json()  # a job's token for the app: not its connector
    assert body["error_code"] == "exchange_unknown_issuer" and len(env.sts.calls) == 1


def test_the_issuers_keys_unreachable_is_a_503_not_a_crash(tmp_path: Path) -> None:
    raw_env = workload_env(tmp_path)
    gh = raw_env.svc.connectors["github"]
    gh.cfg = gh.cfg.model_copy(update={"jwks_file": None, "jwks_uri": "http://127.0.0.1:9/jwks",  # type: ignore[attr-defined]
                                       "http_timeout": 1})
    gh._file, gh._keys = None, None  # type: ignore[attr-defined]  # nothing cached, nothing listening there
    r = post(raw_env, wl_form(), origin=None)
    assert r.status_code == 503 and r.get_json()["error_code"] == "exchange_unavailable" and r.headers["Retry-After"]
    assert raw_env.sts.calls == []
