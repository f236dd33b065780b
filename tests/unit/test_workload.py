"""Workload connectors (bridge/upstream/workload*.py) without a network: their settings (every bad option a
startup problem), the presets' claims → identity, verification against a ``jwks_file`` on an injected clock,
and no browser sign-in (not on the sign-in page; start/finish refuse)."""

from __future__ import annotations

import json
import socket
from pathlib import Path
from typing import Any

import pytest
import yaml

from bridge.config import WorkloadConnectorSettings, load_settings
from bridge.domain.errors import ConfigError, InvalidIdToken, LoginError
from bridge.keys.signing import generate_cache_key, generate_key, generate_saml_key
from bridge.runtime.app import create_app
from bridge.storage.memory import MemoryStore
from bridge.upstream.base import ExchangesTokens, Headless, PendingLogin, sign_in_choices
from bridge.upstream.base_settings import ConnectorEnv
from bridge.upstream.workload import WorkloadConnector
from bridge.upstream.workload_claims import identity_from_claims
from bridge.web.services import build_services
from tests.peers.workload_issuer import WorkloadIssuer, ec_key, k8s_claims

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = ROOT / "docs" / "examples" / "workloads"
NOW = 1_800_000_100


def github(**kw: Any) -> WorkloadConnectorSettings:
    return WorkloadConnectorSettings(**{"id": "github", "type": "workload", "preset": "github_actions",
                                        "audiences": ["https://bridge.test"], **kw})


def settings_problems(**kw: Any) -> str:
    with pytest.raises(ValueError) as e:
        github(**kw)
    return str(e.value)


# --------------------------------------------------------------------------- settings


@pytest.mark.parametrize(("options", "says"), [
    ({"allowed_algs": ["none"]}, "Input should be 'RS256' or 'ES256'"),
    ({"allowed_algs": ["HS256", "RS256"]}, "Input should be 'RS256' or 'ES256'"),
    ({"allowed_algs": []}, "at least 1 item"),
    ({"audiences": []}, "at least 1 item"),
    ({"audiences": [" "]}, "empty strings are not audiences"),
    ({"issuer": "token.actions.githubusercontent.com"}, "must be an http(s) URL"),
    ({"jwks_uri": "file:///etc/jwks.json"}, "must be an http(s) URL"),
    ({"jwks_uri": "https://x.test/jwks", "jwks_file": "jwks.json"}, "at most one of jwks_uri, jwks_file"),
    ({"single_use": True, "insecure_reusable_tokens": True}, "contradict each other"),
    ({"clock_skew": 600}, "less than or equal to 120"),
    ({"preset": "travis"}, "'github_actions', 'gitlab_ci', 'kubernetes' or 'generic'"),
    ({"preset": "generic"}, "the generic preset has no default issuer: set issuer"),
    ({"client_id": "x"}, "Extra inputs are not permitted"),
])
def test_bad_settings_are_refused_with_what_to_do(options: dict[str, Any], says: str) -> None:
    assert says in settings_problems(**options)


def test_presets_give_the_issuer_and_single_use() -> None:
    assert github().issuer_url == "https://token.actions.githubusercontent.com" and github().once_only
    gitlab = github(preset="gitlab_ci", issuer="https://gitlab.internal.test")
    assert gitlab.issuer_url == "https://gitlab.internal.test" and gitlab.once_only
    k8s = github(preset="kubernetes")
    assert k8s.issuer_url == "https://kubernetes.default.svc.cluster.local" and not k8s.once_only
    assert github(preset="kubernetes", single_use=True).once_only
    assert not github(insecure_reusable_tokens=True).once_only


def test_weakening_options_warn_at_startup() -> None:
    assert github().warnings() == []
    (warning,) = github(insecure_reusable_tokens=True).warnings()
    assert "insecure_reusable_tokens lets a github_actions token be exchanged again" in warning
    assert "plain http" in github(issuer="http://127.0.0.1:1").warnings()[0]


def test_a_config_with_workload_connectors_loads_and_a_bad_one_lists_every_problem(tmp_path: Path) -> None:
    settings = load_settings(EXAMPLES / "bridge.yaml")
    assert [(c.id, c.type) for c in settings.connectors] == [("github", "workload"), ("gitlab", "workload"),
                                                              ("cluster", "workload")]
    cluster = settings.connectors[2].open(ConnectorEnv(settings.base_url, settings.resolve, lambda k, t: True))
    assert isinstance(cluster, WorkloadConnector) and not cluster.single_use  # its jwks_file read at startup
    doc = yaml.safe_load((EXAMPLES / "bridge.yaml").read_text(encoding="utf-8"))
    doc["connectors"][0]["allowed_algs"] = ["none"]
    doc["connectors"][1]["audiences"] = []
    (tmp_path / "bad.yaml").write_text(yaml.safe_dump(doc), encoding="utf-8")
    with pytest.raises(ConfigError) as e:
        load_settings(tmp_path / "bad.yaml")
    text = "\n".join(e.value.problems)
    assert "connectors[0]" in text and "allowed_algs" in text and "connectors[1]" in text and "audiences" in text


# --------------------------------------------------------------------------- claims → identity


def test_github_claims_become_the_identity_rules_match() -> None:
    claims = json.loads((EXAMPLES / "github-main.json").read_text(encoding="utf-8"))
    ident = identity_from_claims("github", "github_actions", claims)
    assert ident.subject == "repo:octo-org/octo-repo:environment:prod" and ident.name == "octo-org/octo-repo"
    assert ident.issuer == "https://token.actions.githubusercontent.com" and ident.connector_id == "github"
    assert ident.claims["ref"] == "refs/heads/main" and ident.claims["environment"] == "prod"
    assert not {"iss", "sub", "aud", "exp", "nbf", "iat", "jti"} & set(ident.claims)  # registered claims left out
    assert ident.email is None and ident.groups == () and not ident.mfa


def test_kubernetes_and_gitlab_claims() -> None:
    k8s = identity_from_claims("cluster", "kubernetes",
                               json.loads((EXAMPLES / "k8s-exporter.json").read_text(encoding="utf-8")))
    assert k8s.name == "billing/exporter" and k8s.claims["kubernetes.io"]["namespace"] == "billing"
    gl = identity_from_claims("gitlab", "gitlab_ci", json.loads((EXAMPLES / "gitlab-tag.json").read_text("utf-8")))
    assert gl.name == "platform/billing-api" and gl.subject.startswith("project_path:platform/billing-api:")


@pytest.mark.parametrize(("preset", "claims", "says"), [
    ("github_actions", {"sub": "repo:a/b:ref:refs/heads/main", "repository_owner": "a", "job_workflow_ref": "x"},
     "no repository claim (a non-empty string), which the github_actions preset needs"),
    ("github_actions", {"repository": "a/b", "repository_owner": "a", "job_workflow_ref": "x"}, "no sub"),
    ("github_actions", {"sub": "s", "repository": ["a/b"], "repository_owner": "a", "job_workflow_ref": "x"},
     "no repository claim"),
    ("gitlab_ci", {"sub": "s", "project_path": "g/p", "namespace_path": "g"}, "no pipeline_source claim"),
    ("kubernetes", {"sub": "system:serviceaccount:a:b"}, "the kubernetes.io claim must be an object"),
    ("kubernetes", {"sub": "s", "kubernetes.io": {"namespace": "a", "serviceaccount": {}}},
     "kubernetes.io.serviceaccount.name must be a non-empty string"),
])
def test_claims_a_preset_needs_are_named_when_missing(preset: str, claims: dict[str, Any], says: str) -> None:
    with pytest.raises(ValueError) as e:
        identity_from_claims("c", preset, claims)
    assert says in str(e.value)


def test_required_claims_add_to_the_presets() -> None:
    claims = json.loads((EXAMPLES / "github-main.json").read_text(encoding="utf-8"))
    cfg = github(required_claims=["environment", "deployment"])
    with pytest.raises(ValueError, match="no deployment claim"):
        cfg.identity_from_claims(claims)
    assert github(required_claims=["environment"]).identity_from_claims(claims).claims["environment"] == "prod"


# --------------------------------------------------------------------------- verification on a jwks_file


@pytest.fixture
def issuer() -> WorkloadIssuer:
    iss = WorkloadIssuer()
    iss.issuer = "https://token.actions.githubusercontent.com"
    return iss


def file_connector(tmp_path: Path, issuer: WorkloadIssuer, now: list[float] | None = None,
                   **kw: Any) -> WorkloadConnector:
    (tmp_path / "jwks.json").write_text(json.dumps(issuer.jwks()), encoding="utf-8")
    clock = now or [float(NOW)]
    return WorkloadConnector(github(jwks_file="jwks.json", **kw), resolve=lambda p: tmp_path / p,
                             clock=lambda: clock[0])


def test_a_token_verifies_against_the_keys_in_a_file(tmp_path: Path, issuer: WorkloadIssuer) -> None:
    c = file_connector(tmp_path, issuer)
    assert isinstance(c, ExchangesTokens) and isinstance(c, Headless)
    got = c.verify_subject_token(issuer.mint(now=NOW), audiences=())
    assert got.identity.claims["repository"] == "octo-org/octo-repo" and got.single_use
    assert got.token_id and got.expires_at == NOW + 300 + 30  # exp + clock_skew: as long as it would be accepted


def test_a_jwks_file_is_re_read_when_it_changes(tmp_path: Path, issuer: WorkloadIssuer) -> None:
    c = file_connector(tmp_path, issuer)
    old = issuer.mint(now=NOW)
    issuer.published = [issuer.rotate("gh-2")]  # the old key withdrawn
    with pytest.raises(InvalidIdToken, match="'gh-2' is not among the issuer's published keys"):
        c.verify_subject_token(issuer.mint(now=NOW))
    (tmp_path / "jwks.json").write_text(json.dumps(issuer.jwks()), encoding="utf-8")
    import os
    os.utime(tmp_path / "jwks.json", (NOW + 1, NOW + 1))
    assert c.verify_subject_token(issuer.mint(now=NOW)).identity.subject
    with pytest.raises(InvalidIdToken, match="'gh-1' is not among"):
        c.verify_subject_token(old)


def test_a_missing_or_broken_jwks_file_is_a_startup_problem(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"jwks_file: .*nope.json: cannot read \(FileNotFoundError\)"):
        WorkloadConnector(github(jwks_file="nope.json"), resolve=lambda p: tmp_path / p)
    (tmp_path / "empty.json").write_text('{"keys": []}', encoding="utf-8")
    with pytest.raises(ConfigError, match=r"empty.json: not a usable JWKS"):
        WorkloadConnector(github(jwks_file="empty.json"), resolve=lambda p: tmp_path / p)


def test_es256_keys_verify_and_an_alg_not_allowed_is_refused(tmp_path: Path, issuer: WorkloadIssuer) -> None:
    issuer.key = ec_key()
    issuer.published = [issuer.key]
    assert file_connector(tmp_path, issuer).verify_subject_token(issuer.mint(now=NOW)).identity
    with pytest.raises(InvalidIdToken, match="alg 'ES256' is not allowed"):
        file_connector(tmp_path, issuer, allowed_algs=["RS256"]).verify_subject_token(issuer.mint(now=NOW))


def test_time_checks_use_the_clock_and_the_skew(tmp_path: Path, issuer: WorkloadIssuer) -> None:
    now = [float(NOW)]
    c = file_connector(tmp_path, issuer, now)
    token = issuer.mint(now=NOW, lifetime=60)
    now[0] = NOW + 60 + 29
    assert c.verify_subject_token(token).identity  # within the skew
    now[0] = NOW + 60 + 30
    with pytest.raises(InvalidIdToken, match="expired 30 s ago"):
        c.verify_subject_token(token)
    now[0] = NOW - 31
    with pytest.raises(InvalidIdToken, match="issued in the future"):
        c.verify_subject_token(token)


def k8s_connector(tmp_path: Path, issuer: WorkloadIssuer, **kw: Any) -> WorkloadConnector:
    (tmp_path / "jwks.json").write_text(json.dumps(issuer.jwks()), encoding="utf-8")
    cfg = WorkloadConnectorSettings(id="cluster", type="workload", preset="kubernetes", issuer=issuer.issuer,
                                    audiences=["bridge"], jwks_file=Path("jwks.json"), **kw)
    return WorkloadConnector(cfg, resolve=lambda p: tmp_path / p, clock=lambda: float(NOW))


def test_a_reusable_token_must_be_short_lived_a_single_use_one_need_not(tmp_path: Path,
                                                                        issuer: WorkloadIssuer) -> None:
    """No jti kept for a token exchanged again and again (a pod's projected token): its lifetime bounds a copy's
    replay, so a token living longer than ``max_token_lifetime`` is refused; a jti, when there, is not needed."""
    c = k8s_connector(tmp_path, issuer)
    hour = issuer.mint_as(k8s_claims, audience="bridge", now=NOW, lifetime=3600, jti=False)
    got = c.verify_subject_token(hour)
    assert not got.single_use and got.token_id is None and got.identity.name == "billing/exporter"
    assert c.verify_subject_token(hour).identity  # again: not single use
    with pytest.raises(InvalidIdToken) as e:
        c.verify_subject_token(issuer.mint_as(k8s_claims, audience="bridge", now=NOW, lifetime=3601))
    assert e.value.detail == ("workload token: lives 3601 s (exp - iat), longer than the 3600 s this connector "
                              "allows for a token it exchanges more than once (ask the platform for a shorter one, "
                              "e.g. expirationSeconds)")
    year = issuer.mint_as(k8s_claims, audience="bridge", now=NOW, lifetime=365 * 86400)  # the extended default
    with pytest.raises(InvalidIdToken, match="lives 31536000 s"):
        c.verify_subject_token(year)
    assert k8s_connector(tmp_path, issuer, max_token_lifetime=86400).verify_subject_token(
        issuer.mint_as(k8s_claims, audience="bridge", now=NOW, lifetime=86400)).identity
    with pytest.raises(InvalidIdToken, match="lives 7200 s"):  # insecure_reusable_tokens: bounded the same way
        file_connector(tmp_path, issuer, insecure_reusable_tokens=True).verify_subject_token(
            issuer.mint(now=NOW, lifetime=7200))
    # single use (a jti kept until exp) is bounded too: an unused copy of a far-off exp would stay good that long
    with pytest.raises(InvalidIdToken, match=r"lives 7200 s .* allows \(max_token_lifetime\)") as e:
        file_connector(tmp_path, issuer).verify_subject_token(issuer.mint(now=NOW, lifetime=7200))
    assert e.value.code == "subject_token_lifetime"
    assert file_connector(tmp_path, issuer, max_token_lifetime=7200).verify_subject_token(  # GitLab: a 2 h job
        issuer.mint(now=NOW, lifetime=7200)).single_use
    with pytest.raises(InvalidIdToken, match="lives 31536000 s"):
        k8s_connector(tmp_path, issuer, single_use=True).verify_subject_token(year)


@pytest.mark.parametrize("value", [599, 86401])
def test_max_token_lifetime_is_bounded(value: int) -> None:
    with pytest.raises(ValueError, match="max_token_lifetime"):
        github(max_token_lifetime=value)


# --------------------------------------------------------------------------- no browser


def test_no_browser_sign_in(tmp_path: Path, issuer: WorkloadIssuer) -> None:
    c = file_connector(tmp_path, issuer)
    pending = PendingLogin(state="s", connector_id="github", nonce="n", code_verifier="v" * 43, return_to="/",
                           created_at=NOW)
    for call in (lambda: c.start_login(pending, "https://bridge.test/callback/github"),
                 lambda: c.finish_login(pending, {"code": "x"}, "https://bridge.test/callback/github")):
        with pytest.raises(LoginError) as e:
            call()
        assert "is a workload connector: its tokens are exchanged at POST /oauth/token" in e.value.message
        assert e.value.status == 400
    assert sign_in_choices([c]) == []


def test_the_sign_in_page_does_not_list_workload_connectors(demo_config: Path, tmp_path: Path,
                                                             issuer: WorkloadIssuer,
                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    keys = tmp_path / "keys"
    generate_key(keys)
    generate_saml_key(keys, bits=2048)
    generate_cache_key(keys)
    monkeypatch.setenv("DEMO_KEYS_DIR", str(keys))
    monkeypatch.setenv("DEMO_OIDC_ENABLED", "false")
    (demo_config.parent / "jwks.json").write_text(json.dumps(issuer.jwks()), encoding="utf-8")
    doc = yaml.safe_load(demo_config.read_text(encoding="utf-8"))
    doc["connectors"].append({"id": "gha", "type": "workload", "name": "GitHub Actions",
                              "preset": "github_actions", "audiences": ["https://bridge.test"],
                              "jwks_file": "jwks.json"})
    demo_config.write_text(yaml.safe_dump(doc), encoding="utf-8")
    monkeypatch.setattr(socket.socket, "connect", lambda *_: pytest.fail("no connection expected"))
    settings = load_settings(demo_config)
    svc = build_services(settings, store=MemoryStore(settings.redis.key_prefix))
    client = create_app(settings, services=svc).test_client()
    page = client.get("/").get_data(as_text=True)
    assert "Dev login" in page and "GitHub Actions" not in page and "/login/gha" not in page
    r = client.get("/login/gha")
    assert r.status_code == 400 and "is a workload connector" in r.get_data(as_text=True)
    assert "Traceback" not in r.get_data(as_text=True)


def test_a_token_without_kid_verifies_only_against_a_single_published_key(tmp_path: Path,
                                                                          issuer: WorkloadIssuer) -> None:
    token = issuer.mint(now=NOW, header={"kid": None})
    assert file_connector(tmp_path, issuer).verify_subject_token(token).identity
    issuer.published.append(ec_key("other"))
    with pytest.raises(InvalidIdToken, match="no kid in its header, and the issuer publishes several keys"):
        file_connector(tmp_path, issuer).verify_subject_token(token)


def test_the_token_is_never_in_a_refusal(tmp_path: Path, issuer: WorkloadIssuer) -> None:
    c = file_connector(tmp_path, issuer)
    for token in (issuer.mint(now=NOW, aud="x"), issuer.mint(now=NOW, jti=None), issuer.mint(now=NOW) + "x",
                  "a" * 20_000, "a.b.c"):
        with pytest.raises(InvalidIdToken) as e:
            c.verify_subject_token(token)
        assert token not in e.value.detail and token[:40] not in e.value.detail
