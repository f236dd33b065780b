"""The ``github`` connector against the GitHub stand-in (tests/peers/github_standin.py: GitHub's OAuth
endpoints and REST shapes, every body validated against GitHub's OpenAPI description), through the
bridge app with a real redis-server and the strict STS peer. Attacks and failures:

- callback with another sign-in's state, a code for another verifier (PKCE), a refused code → refused
- an unverified primary e-mail (a verified secondary one is not used) → github_email_unverified
- a member of another org only → github_not_member, no session
- removed from a team at GitHub, keeps using the session → the team's role gone at the next re-check
- the OAuth token revoked at GitHub → the session and its CLI tokens end (401 idp_revoked)
"""

from __future__ import annotations

import base64
import json
import re
import secrets
from collections.abc import Iterator
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
import requests

from bridge.config import settings_from_dict
from bridge.domain.errors import EmailUnverified, IdpDenied, LoginError, UpstreamUnavailable
from bridge.upstream.base import PendingLogin, ReverifyOk, ReverifyRevoked, ReverifyUnreachable
from bridge.upstream.github import GithubConnector
from bridge.upstream.github_settings import GithubConnectorSettings
from tests.conftest import ACCOUNT
from tests.integration.helpers import cli_token, grant_id, portal_json
from tests.peers.github_standin import GithubStandin, serve

pytestmark = pytest.mark.integration
GH = "gh"
ADMIN = f"arn:aws:iam::{ACCOUNT}:role/Admin"
READONLY = f"arn:aws:iam::{ACCOUNT}:role/ReadOnly"
RULES = [
    {"name": "platform", "match": {"group": "acme/platform"},
     "grants": [{"role_arn": ADMIN, "source_identity": "{email}", "tags": {"Email": "{email}"}}]},
    {"name": "acme", "match": {"group": "acme"}, "grants": [{"account": "sandbox", "role": "ReadOnly"}]},
]


@pytest.fixture
def github() -> Iterator[GithubStandin]:
    with serve() as s:
        s.add_user("octocat", name="The Octocat", email="octocat@example.com", orgs=("acme", "other"),
                   teams=("acme/platform", "other/secret"))
        s.add_user("outsider", email="outsider@example.com", orgs=("other",), teams=("other/platform",))
        u = s.add_user("unverified", email="unverified@example.com", verified=False, orgs=("acme",))
        u.emails.append(("verified-secondary@example.com", False, True))
        yield s
        assert s.schema_errors == []  # every body the stand-in sent is one GitHub's description allows


def connector_cfg(github: GithubStandin, **extra: Any) -> dict[str, Any]:
    return {"id": GH, "type": "github", "client_id": github.client_id, "client_secret": github.client_secret,
            "orgs": ["acme"], "web_url": github.base, "api_url": f"{github.base}/api/v3", "reverify_interval": 60,
            **extra}


def connector(github: GithubStandin, **extra: Any) -> GithubConnector:
    return GithubConnector(GithubConnectorSettings.model_validate(connector_cfg(github, **extra)))


def pending() -> PendingLogin:
    return PendingLogin(state=secrets.token_urlsafe(16), connector_id=GH, nonce=secrets.token_urlsafe(16),
                        code_verifier=secrets.token_urlsafe(48), return_to="/portal", created_at=0)


def authorize(url: str, login: str, decision: str = "authorize", s: requests.Session | None = None) -> str:
    """At the stand-in's consent page, as ``login``: returns where GitHub sends the browser back."""
    s = s or requests.Session()
    page = s.get(url, timeout=10)
    assert page.status_code == 200 and 'id="login"' in page.text, page.text[:300]
    form = dict(re.findall(r'<input type="hidden" name="([^"]+)" value="([^"]*)">', page.text))
    form = {k: v.replace("&amp;", "&") for k, v in form.items()}
    r = s.post(page.url, data={**form, "login": login, "decision": decision}, allow_redirects=False, timeout=10)
    assert r.status_code == 302
    return str(r.headers["Location"])


def callback_params(location: str) -> dict[str, str]:
    return {k: v[0] for k, v in parse_qs(urlsplit(location).query).items()}


REDIRECT = "http://127.0.0.1:1/callback/gh"


def test_the_stand_in_refuses_to_send_a_body_githubs_description_does_not_allow() -> None:
    from tests.peers.github_standin import schema_errors_for

    with serve() as s:
        user = s.add_user("octocat", email="octocat@example.com")
        assert schema_errors_for("/user", "200", s._user(user)) == []
        body = {**s._user(user), "id": "583231"}  # GitHub's ids are integers
        assert schema_errors_for("/user", "200", body)
        assert schema_errors_for("/user/emails", "200", [{"email": "a@example.com", "primary": "yes"}])
        s.users["octocat"].name = 42  # type: ignore[assignment]  # a body GitHub would never send
        token = "gho_x"
        s.tokens[token] = "octocat"
        r = requests.get(f"{s.base}/api/v3/user", headers={"Authorization": f"Bearer {token}"}, timeout=10)
        assert r.status_code == 599 and s.schema_errors


# -- the connector against the stand-in -------------------------------------------------------------
def test_sign_in_maps_user_verified_primary_email_and_allowed_orgs_only(github) -> None:
    conn, p = connector(github), pending()
    start = conn.start_login(p, REDIRECT).url
    q = callback_params(start)
    assert q["scope"] == "read:user user:email read:org" and q["state"] == p.state
    assert q["code_challenge_method"] == "S256" and q["code_challenge"] != p.code_verifier
    identity = conn.finish_login(p, callback_params(authorize(start, "octocat")), REDIRECT)
    assert (identity.subject, identity.issuer, identity.email, identity.name) == (
        str(github.users["octocat"].id), github.base, "octocat@example.com", "The Octocat")
    assert identity.groups == ("acme", "acme/platform")  # not "other", not "other/secret"
    assert identity.claims == {"login": "octocat", "github_id": github.users["octocat"].id,
                               "two_factor_authentication": True}
    assert identity.mfa is False and identity.upstream and identity.upstream["access_token"] in github.tokens
    assert identity.upstream["access_token"] not in repr(identity)


def test_denied_at_github_is_idp_denied(github) -> None:
    conn, p = connector(github), pending()
    with pytest.raises(IdpDenied) as e:
        conn.finish_login(p, callback_params(authorize(conn.start_login(p, REDIRECT).url, "octocat", "cancel")),
                          REDIRECT)
    assert "access_denied" in e.value.detail and github.api_calls == []


def test_bad_state_pkce_and_refused_code(github) -> None:
    conn, p = connector(github), pending()
    params = callback_params(authorize(conn.start_login(p, REDIRECT).url, "octocat"))
    with pytest.raises(LoginError) as e:
        conn.finish_login(p, {**params, "state": "another"}, REDIRECT)
    assert e.value.code == "state_mismatch"
    other = PendingLogin(**{**p.__dict__, "code_verifier": secrets.token_urlsafe(48)})
    with pytest.raises(LoginError) as e:  # a code stolen from another sign-in: its PKCE verifier is not ours
        conn.finish_login(other, params, REDIRECT)
    assert e.value.code == "github_token_refused" and "bad_verification_code" in e.value.detail
    with pytest.raises(LoginError) as e:  # a code works once
        conn.finish_login(p, params, REDIRECT)
    assert e.value.code == "github_token_refused"
    bad = GithubConnector(conn.cfg.model_copy(update={"client_secret": conn.cfg.client_secret.__class__("wrong")}))
    p2 = pending()
    with pytest.raises(LoginError) as e:
        bad.finish_login(p2, callback_params(authorize(bad.start_login(p2, REDIRECT).url, "octocat")), REDIRECT)
    assert "incorrect_client_credentials" in e.value.detail and github.tokens == {}
    with pytest.raises(LoginError) as e:
        conn.finish_login(p, {"state": p.state}, REDIRECT)
    assert "neither code nor error" in e.value.detail


def login_with(github: GithubStandin, login: str, **cfg: Any) -> Any:
    conn, p = connector(github, **cfg), pending()
    return conn.finish_login(p, callback_params(authorize(conn.start_login(p, REDIRECT).url, login)), REDIRECT)


def test_unverified_primary_email_is_refused_even_with_a_verified_secondary(github) -> None:
    with pytest.raises(EmailUnverified) as e:
        login_with(github, "unverified")
    assert e.value.code == "github_email_unverified" and e.value.status == 403
    assert "unverified@example.com" not in e.value.detail and "secondary" not in e.value.detail


def test_member_of_other_orgs_only_is_refused_or_gets_nothing(github) -> None:
    with pytest.raises(LoginError) as e:
        login_with(github, "outsider")
    assert e.value.code == "github_not_member" and e.value.status == 403 and "acme" in e.value.message
    assert not any(c.startswith("/orgs/other") for c in github.api_calls)  # other orgs are never asked about
    assert login_with(github, "outsider", require_org_membership=False).groups == ()


def test_missing_scope_and_api_errors(github) -> None:
    github.granted_scope = "read:user"
    with pytest.raises(LoginError) as e:
        login_with(github, "octocat")
    assert e.value.code == "github_scope_missing" and "user:email, read:org" in e.value.message
    github.granted_scope = "user,admin:org"  # broader scopes include the narrower ones
    assert login_with(github, "octocat").groups == ("acme", "acme/platform")
    conn, p = connector(github), pending()
    params = callback_params(authorize(conn.start_login(p, REDIRECT).url, "octocat"))
    github.fail_status = 502
    with pytest.raises(UpstreamUnavailable) as u:
        conn.finish_login(p, params, REDIRECT)
    assert "/user: HTTP 502" in u.value.detail


def test_reverify_follows_team_removal_and_token_revocation(github) -> None:
    conn = connector(github)
    identity = login_with(github, "octocat")
    ok = conn.reverify(identity.upstream)
    assert isinstance(ok, ReverifyOk) and ok.identity and ok.identity.groups == ("acme", "acme/platform")
    github.remove_from_team("octocat", "acme/platform")
    ok = conn.reverify(ok.grant)
    assert isinstance(ok, ReverifyOk) and ok.identity and ok.identity.groups == ("acme",)
    github.fail_status = "rate_limited"
    r = conn.reverify(ok.grant)
    assert isinstance(r, ReverifyUnreachable) and "rate limited" in r.reason
    github.fail_status = None
    github.members["acme"].discard("octocat")
    assert conn.reverify(ok.grant) == ReverifyRevoked("github_not_member")
    github.members["acme"].add("octocat")
    github.revoke_tokens("octocat")
    r = conn.reverify(ok.grant)
    assert isinstance(r, ReverifyRevoked) and "401" in r.reason


# -- through the bridge app -----------------------------------------------------------------------
@pytest.fixture
def gh_bridge(live_bridge: Any, make_settings: Any, github: GithubStandin) -> tuple[str, Any]:
    settings = make_settings(connectors=[connector_cfg(github)],
                             mapping={"accounts": {ACCOUNT: {"alias": "sandbox", "label": "Sandbox"}}, "rules": RULES})
    return live_bridge(settings), settings


def browser_login(base: str, login: str, s: requests.Session) -> requests.Response:
    r = s.get(f"{base}/login/{GH}", allow_redirects=False, timeout=10)
    assert r.status_code in (302, 303), r.text[:300]
    return s.get(authorize(r.headers["Location"], login, s=s), timeout=20)


def test_full_sign_in_issues_credentials_the_strict_sts_accepts(gh_bridge, strict_sts_peer) -> None:
    base, _ = gh_bridge
    s = requests.Session()
    r = browser_login(base, "octocat", s)
    assert r.status_code == 200 and r.url == f"{base}/portal", r.text[:500]
    portal = portal_json(s, base)
    assert portal["identity"] == {"email": "octocat@example.com", "name": "The Octocat", "mfa": False,
                                  "connector": GH}
    assert {g["role_arn"] for g in portal["grants"]} == {ADMIN, READONLY}
    page = s.post(f"{base}/credentials/{grant_id(portal, '/Admin')}",
                  data={"csrf_token": portal["csrf_token"], "duration": "3600"}, timeout=30)
    assert page.status_code == 200, page.text[:300]
    (seen,) = strict_sts_peer.seen
    assert seen.problems == [] and seen.role_arn == ADMIN
    claims = json.loads(base64.urlsafe_b64decode(seen.token.split(".")[1] + "=="))
    assert claims["https://aws.amazon.com/source_identity"] == "octocat@example.com"
    assert claims["https://aws.amazon.com/tags"]["principal_tags"]["Email"] == ["octocat@example.com"]


def test_refusals_through_the_app_leave_no_session(gh_bridge, bridge_logs) -> None:
    base, settings = gh_bridge
    for login, code, status in (("outsider", "github_not_member", 403),
                                ("unverified", "github_email_unverified", 403)):
        s = requests.Session()
        r = browser_login(base, login, s)
        assert r.status_code == status and f'data-code="{code}"' in r.text, (login, r.status_code, r.text[:300])
        assert s.cookies.get(settings.session_cookie) is None
        assert s.get(f"{base}/portal", headers={"Accept": "application/json"}, timeout=10).status_code == 401
    assert "unverified@example.com" not in bridge_logs.text and "gho_" not in bridge_logs.text


def test_github_api_down_at_sign_in_is_a_503_page_and_no_session(gh_bridge, github) -> None:
    base, settings = gh_bridge
    s = requests.Session()
    r = s.get(f"{base}/login/{GH}", allow_redirects=False, timeout=10)
    back = authorize(r.headers["Location"], "octocat", s=s)
    github.fail_status = 502
    page = s.get(back, timeout=20)
    assert page.status_code == 503 and 'data-code="idp_unavailable"' in page.text, page.text[:300]
    assert "Traceback" not in page.text and s.cookies.get(settings.session_cookie) is None


def test_team_removal_and_revoked_token_reach_session_and_cli_token(gh_bridge, github, live_bridge) -> None:
    base, _ = gh_bridge
    svc = live_bridge.app.extensions["bridge"]
    s = requests.Session()
    assert browser_login(base, "octocat", s).url == f"{base}/portal"
    token = cli_token(base, s)
    auth = {"Authorization": f"Bearer {token}"}
    real = svc.sessions.clock
    github.remove_from_team("octocat", "acme/platform")
    assert len(portal_json(s, base)["grants"]) == 2  # not due yet
    try:
        svc.sessions.clock = lambda: real() + 61
        grants = requests.get(f"{base}/api/v1/grants", headers=auth, timeout=10).json()["grants"]
        assert [g["role_arn"] for g in grants] == [READONLY]
        github.revoke_tokens("octocat")
        svc.sessions.clock = lambda: real() + 200
        r = requests.get(f"{base}/api/v1/grants", headers=auth, timeout=10)
        assert r.status_code == 401 and "idp_revoked" in r.text
        assert s.get(f"{base}/portal", headers={"Accept": "application/json"}, timeout=10).status_code == 401
    finally:
        svc.sessions.clock = real


def test_config_refuses_a_github_connector_without_orgs(github) -> None:
    from bridge.domain.errors import ConfigError

    raw = connector_cfg(github)
    del raw["orgs"]
    with pytest.raises(ConfigError) as e:
        settings_from_dict({"base_url": "http://127.0.0.1:1", "secret_key": "x", "connectors": [raw]})
    assert any("orgs" in p and "required" in p.lower() for p in e.value.problems), e.value.problems
