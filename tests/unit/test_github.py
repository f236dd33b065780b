"""The ``github`` connector's pure parts: settings validation (every problem listed at startup), the
mapping of GitHub's API answers to an Identity, the authorize URL, and the refusals that need no HTTP.
The flows through HTTP (stand-in GitHub, bridge app, redis, strict STS) are in
tests/integration/test_github_login.py."""

from __future__ import annotations

from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest

from bridge.config import settings_from_dict
from bridge.domain.errors import ConfigError, IdpDenied, LoginError
from bridge.upstream.base import PendingLogin, Reverifier, ReverifyExpired
from bridge.upstream.github import GithubAnswer, GithubConnector, pkce_challenge, primary_verified_email, teams_in
from bridge.upstream.github_settings import GithubConnectorSettings

BASE = {"id": "gh", "type": "github", "client_id": "cid", "client_secret": "s3cret", "orgs": ["Acme"]}


def settings(**kw: Any) -> GithubConnectorSettings:
    return GithubConnectorSettings.model_validate({**BASE, **kw})


def problems(**kw: Any) -> list[str]:
    raw = {"base_url": "http://127.0.0.1:1", "secret_key": "x", "connectors": [{**BASE, **kw}]}
    with pytest.raises(ConfigError) as e:
        settings_from_dict(raw)
    return e.value.problems


def test_defaults_are_github_com_and_orgs_are_lower_cased() -> None:
    s = settings()
    assert (s.web_url, s.api_url, s.orgs, s.require_org_membership, s.teams) == (
        "https://github.com", "https://api.github.com", ["acme"], True, True)
    assert s.policy().reverify_interval == 900 and s.warnings() == []
    assert "s3cret" not in repr(s)


def test_every_bad_option_is_listed_at_once() -> None:
    found = problems(orgs=[], web_url="ftp://x", api_url="https://h/api?x=1", reverify_interval=5,
                     client_id="", http_timeout=0)
    joined = "\n".join(found)
    for field in ("orgs", "web_url", "api_url", "reverify_interval", "client_id", "http_timeout"):
        assert f".{field}" in joined or f"{field}:" in joined, (field, found)
    assert len(found) >= 6


@pytest.mark.parametrize("orgs, why", [
    (["-acme"], "not GitHub organisation logins"), (["a" * 40], "not GitHub organisation logins"),
    (["ac me"], "not GitHub organisation logins"), (["Acme", "acme"], "twice")])
def test_bad_org_logins_are_refused(orgs: list[str], why: str) -> None:
    assert any(why in p for p in problems(orgs=orgs))


def test_missing_secret_and_orgs_are_refused() -> None:
    raw = {k: v for k, v in BASE.items() if k not in ("client_secret", "orgs")}
    with pytest.raises(ConfigError) as e:
        settings_from_dict({"base_url": "http://127.0.0.1:1", "secret_key": "x", "connectors": [raw]})
    joined = "\n".join(e.value.problems)
    assert "client_secret" in joined and "orgs" in joined


def test_plain_http_enterprise_urls_warn_and_trailing_slashes_go() -> None:
    s = settings(web_url="http://ghe.internal/", api_url="http://ghe.internal/api/v3/")
    assert (s.web_url, s.api_url) == ("http://ghe.internal", "http://ghe.internal/api/v3")
    assert len(s.warnings()) == 2 and all("plain http" in w for w in s.warnings())


def pending() -> PendingLogin:
    return PendingLogin(state="st", connector_id="gh", nonce="n", code_verifier="v" * 43, return_to="/", created_at=0)


def test_authorize_url_carries_state_pkce_and_the_scopes() -> None:
    conn = GithubConnector(settings(web_url="https://ghe.internal"))
    assert isinstance(conn, Reverifier)
    url = conn.start_login(pending(), "https://bridge.internal/callback/gh").url
    assert url.startswith("https://ghe.internal/login/oauth/authorize?")
    q = {k: v[0] for k, v in parse_qs(urlsplit(url).query).items()}
    assert q == {"client_id": "cid", "redirect_uri": "https://bridge.internal/callback/gh", "state": "st",
                 "scope": "read:user user:email read:org", "code_challenge": pkce_challenge("v" * 43),
                 "code_challenge_method": "S256", "allow_signup": "false"}
    from authlib.oauth2.rfc7636 import create_s256_code_challenge  # an independent S256

    assert pkce_challenge("v" * 43) == create_s256_code_challenge("v" * 43)


def test_refusals_before_any_http() -> None:
    conn = GithubConnector(settings(api_url="http://127.0.0.1:1", web_url="http://127.0.0.1:1"))
    with pytest.raises(IdpDenied) as e:
        conn.finish_login(pending(), {"error": "access_denied", "error_description": "The user has denied"}, "r")
    assert e.value.detail == "access_denied: The user has denied"
    with pytest.raises(LoginError) as le:
        conn.finish_login(pending(), {"code": "c", "state": "other"}, "r")
    assert le.value.code == "state_mismatch"
    with pytest.raises(LoginError):
        conn.finish_login(None, {"code": "c", "state": "st"}, "r")
    assert conn.reverify({"v": 99}) == ReverifyExpired("upstream grant of an unknown shape")
    conn.clock = lambda: 2000.0
    assert isinstance(conn.reverify({"v": 1, "id": 1, "access_token": "t", "access_expires_at": 1999}),
                      ReverifyExpired)


@pytest.mark.parametrize("emails, want", [
    ([{"email": "a@x", "primary": True, "verified": True}], "a@x"),
    ([{"email": "a@x", "primary": True, "verified": False}, {"email": "b@x", "primary": False, "verified": True}],
     None),  # a verified secondary address is never used in place of the primary
    ([{"email": "a@x", "primary": True, "verified": "true"}], None),  # exactly true, not a string
    ([{"email": "b@x", "primary": False, "verified": True}], None),
    ([], None),
])
def test_only_a_verified_primary_email_is_taken(emails: list[dict[str, Any]], want: str | None) -> None:
    assert primary_verified_email(emails) == want


def test_answers_of_the_wrong_shape_are_errors_not_guesses() -> None:
    with pytest.raises(ValueError):
        primary_verified_email({"email": "a@x"})
    with pytest.raises(ValueError):
        teams_in({"slug": "x"}, ("acme",))


def test_teams_only_of_allowed_orgs_as_org_slash_slug() -> None:
    teams = [{"slug": "Platform", "organization": {"login": "ACME"}},
             {"slug": "sec", "organization": {"login": "other"}},
             {"slug": "platform", "organization": {"login": "acme"}}, {"slug": 3}, "junk"]
    assert teams_in(teams, ("acme",)) == ("acme/platform",)


def test_identity_from_an_answer() -> None:
    conn = GithubConnector(settings())
    user = {"login": "octocat", "id": 583231, "name": None, "two_factor_authentication": True}
    identity = conn.identity(GithubAnswer(user=user, email="o@x", orgs=("acme",), teams=("acme/platform",)))
    assert (identity.subject, identity.issuer, identity.name, identity.groups, identity.mfa) == (
        "583231", "https://github.com", "octocat", ("acme", "acme/platform"), False)
    assert identity.claims == {"login": "octocat", "github_id": 583231, "two_factor_authentication": True}
