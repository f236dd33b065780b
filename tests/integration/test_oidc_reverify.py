"""Continuous evaluation, connector side: sign in through the real npm oidc-provider (its login form),
then ``OidcConnector.reverify`` the kept upstream grant while the account changes at the IdP.
The fake OP covers what oidc-provider will not do (another sub or nonce, MFA in a refresh, 5xx)."""

from __future__ import annotations

import json
import re
import secrets
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any
from urllib.parse import parse_qs, urljoin, urlsplit

import pytest
import requests
from werkzeug.serving import make_server

from bridge.config import OidcConnectorSettings
from bridge.domain.identity import Identity
from bridge.runtime.localredis import free_port
from bridge.upstream.base import (
    PendingLogin,
    ReverifyExpired,
    ReverifyOk,
    ReverifyRevoked,
    ReverifyUnreachable,
)
from bridge.upstream.oidc import OidcConnector
from tests.conftest import OIDC_CONNECTOR
from tests.peers import fake_op

pytestmark = pytest.mark.integration


def pending() -> PendingLogin:
    return PendingLogin(state=secrets.token_urlsafe(16), connector_id=OIDC_CONNECTOR, nonce=secrets.token_urlsafe(16),
                        code_verifier=secrets.token_urlsafe(48), return_to="/portal", created_at=0)


def sign_in(conn: OidcConnector, redirect_uri: str, username: str = "", password: str = "") -> Identity:
    """start_login → the OP (its form when it shows one, consent automatic) → finish_login."""
    p = pending()
    s = requests.Session()
    url = conn.start_login(p, redirect_uri).url
    for _ in range(10):
        if url.startswith(redirect_uri):
            params = {k: v[0] for k, v in parse_qs(urlsplit(url).query).items()}
            assert params.get("state") == p.state, params
            return conn.finish_login(p, params, redirect_uri)
        r = s.get(url, allow_redirects=False, timeout=10)
        if r.status_code == 200 and 'id="username"' in r.text:
            action = re.search(r'action="([^"]+)"', r.text)
            assert action
            r = s.post(urljoin(r.url, action[1]), data={"username": username, "password": password},
                       allow_redirects=False, timeout=10)
        assert r.status_code in (302, 303), (r.status_code, r.text[:300])
        url = urljoin(r.url, r.headers["Location"])
    raise AssertionError("too many redirects")


# -- against the real oidc-provider -------------------------------------------------------------
@pytest.fixture
def peer_user(oidc_issuer: str) -> Callable[..., dict[str, Any]]:
    """A fresh account at the peer per test (the shared accounts stay untouched); returns a changer."""
    name = f"u{secrets.token_hex(4)}"

    def change(**fields: Any) -> dict[str, Any]:
        r = requests.post(f"{oidc_issuer}/test-admin/users/{name}", data=json.dumps(fields), timeout=5)
        assert r.status_code == 200, r.text
        doc: dict[str, Any] = {**r.json(), "name": name}
        return doc

    change(password="pw", groups=["aws-readonly"], amr=["pwd"])
    return change


@pytest.fixture
def connect(oidc_issuer: str, bridge_port: int) -> Callable[..., tuple[OidcConnector, str]]:
    def make(**cfg: Any) -> tuple[OidcConnector, str]:
        settings = OidcConnectorSettings.model_validate({
            "id": OIDC_CONNECTOR, "type": "oidc", "issuer": oidc_issuer, "client_id": "bridge",
            "client_secret": "bridge-secret", "request_offline_access": True, **cfg})
        return OidcConnector(settings), f"http://127.0.0.1:{bridge_port}/callback/{OIDC_CONNECTOR}"

    return make


def test_start_asks_for_offline_access_with_consent(connect) -> None:
    conn, redirect = connect()
    q = parse_qs(urlsplit(conn.start_login(pending(), redirect).url).query)
    assert "offline_access" in q["scope"][0].split() and q["prompt"] == ["consent"]
    conn, redirect = connect(offline_access_consent=False)
    q = parse_qs(urlsplit(conn.start_login(pending(), redirect).url).query)
    assert "offline_access" in q["scope"][0].split() and "prompt" not in q
    conn, redirect = connect(request_offline_access=False)
    q = parse_qs(urlsplit(conn.start_login(pending(), redirect).url).query)
    assert "offline_access" not in q["scope"][0].split() and "prompt" not in q


def test_sign_in_keeps_the_grant_apart_from_the_identity(connect, peer_user) -> None:
    conn, redirect = connect()
    identity = sign_in(conn, redirect, peer_user()["name"], "pw")
    grant = identity.upstream
    assert grant is not None and isinstance(grant["refresh_token"], str) and grant["access_token"] is None
    assert grant["sub"] == identity.subject and grant["amr"] == ["pwd"]
    json.dumps(grant)  # JSON-serialisable
    stored = json.dumps(identity.to_json())
    assert "upstream" not in identity.to_json() and grant["refresh_token"] not in stored
    assert grant["refresh_token"] not in repr(identity) and grant["nonce"] not in stored
    restored = Identity.from_json(identity.to_json())
    assert restored == identity and restored.upstream is None


def test_reverify_ok_gives_the_same_identity_and_a_rotated_grant(connect, peer_user) -> None:
    conn, redirect = connect()
    identity = sign_in(conn, redirect, peer_user()["name"], "pw")
    assert identity.upstream is not None
    first = conn.reverify(identity.upstream)
    assert isinstance(first, ReverifyOk) and first.identity is not None
    assert first.identity == identity and first.identity.upstream == first.grant
    assert first.grant["refresh_token"] != identity.upstream["refresh_token"]  # the peer rotates
    assert first.grant["refresh_token"] not in repr(first)
    second = conn.reverify(first.grant)
    assert isinstance(second, ReverifyOk) and second.identity == identity
    # A consumed refresh token used again: oidc-provider revokes the whole grant. The caller must keep
    # the rotated grant (and not re-check one session twice at once).
    assert isinstance(conn.reverify(identity.upstream), ReverifyRevoked)
    assert isinstance(conn.reverify(second.grant), ReverifyRevoked)


def test_group_change_at_the_idp_shows_on_reverify(connect, peer_user) -> None:
    conn, redirect = connect()
    user = peer_user()
    identity = sign_in(conn, redirect, user["name"], "pw")
    assert identity.groups == ("aws-readonly",) and identity.upstream
    peer_user(groups=["aws-admins"], email="moved@example.com")
    r = conn.reverify(identity.upstream)
    assert isinstance(r, ReverifyOk) and r.identity is not None
    assert r.identity.groups == ("aws-admins",) and r.identity.email == "moved@example.com"
    assert (r.identity.subject, r.identity.issuer, r.identity.connector_id) == (
        identity.subject, identity.issuer, identity.connector_id)


def test_disabled_user_is_revoked(connect, peer_user) -> None:
    conn, redirect = connect()
    identity = sign_in(conn, redirect, peer_user()["name"], "pw")
    assert identity.upstream
    peer_user(disabled=True)
    r = conn.reverify(identity.upstream)
    assert isinstance(r, ReverifyRevoked) and "invalid_grant" in r.reason


def test_without_refresh_token_userinfo_is_asked_until_the_access_token_expires(connect, peer_user) -> None:
    conn, redirect = connect(request_offline_access=False)
    identity = sign_in(conn, redirect, peer_user()["name"], "pw")
    grant = identity.upstream
    assert grant and grant["refresh_token"] is None and isinstance(grant["access_token"], str)
    peer_user(groups=[])
    r = conn.reverify(grant)
    assert isinstance(r, ReverifyOk) and r.identity is not None and r.identity.groups == ()
    assert r.identity.mfa == identity.mfa and r.identity.amr == identity.amr
    conn.clock = lambda: grant["access_expires_at"]
    assert isinstance(conn.reverify(grant), ReverifyExpired)
    conn.clock = time.time
    peer_user(disabled=True)
    r = conn.reverify(grant)
    assert isinstance(r, ReverifyRevoked) and "401" in r.reason


def test_reverify_off_keeps_no_grant(connect, peer_user) -> None:
    conn, redirect = connect(request_offline_access=False, reverify_interval=0)
    assert sign_in(conn, redirect, peer_user()["name"], "pw").upstream is None


def test_idp_unreachable_is_reported_as_such(connect, peer_user) -> None:
    conn, redirect = connect()
    identity = sign_in(conn, redirect, peer_user()["name"], "pw")
    assert identity.upstream
    dead = OidcConnector(conn.cfg.model_copy(update={"issuer": f"http://127.0.0.1:{free_port()}",
                                                     "http_timeout": 2}))
    r = dead.reverify(identity.upstream)
    assert isinstance(r, ReverifyUnreachable) and "discovery" in r.reason


# -- against the fake OP ------------------------------------------------------------------------
@pytest.fixture
def fake() -> Iterator[tuple[fake_op.FakeOp, Callable[[], None]]]:
    """The fake OP and a function that takes it down for good (connections then refused)."""
    op = fake_op.FakeOp()
    srv = make_server("127.0.0.1", 0, op, threaded=True)
    op.issuer = f"http://127.0.0.1:{srv.server_port}"
    threading.Thread(target=srv.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
    stopped = []

    def stop() -> None:
        srv.shutdown()
        srv.server_close()
        stopped.append(True)

    yield op, stop
    if not stopped:
        stop()


def fake_sign_in(op: fake_op.FakeOp, **cfg: Any) -> tuple[OidcConnector, Identity]:
    conn = OidcConnector(OidcConnectorSettings.model_validate({
        "id": "fake", "type": "oidc", "issuer": op.issuer, "client_id": op.client_id,
        "client_secret": op.client_secret, "http_timeout": 2, **cfg}))
    identity = sign_in(conn, "http://127.0.0.1:9/callback/fake")
    assert identity.upstream and identity.upstream["refresh_token"]
    return conn, identity


def test_refresh_does_not_upgrade_mfa(fake) -> None:
    op, _ = fake
    conn, identity = fake_sign_in(op)
    assert identity.mfa is False
    op.claims = {**op.claims, "amr": ["pwd", "mfa"], "acr": "urn:strong", "groups": ["aws-readonly"]}
    r = conn.reverify(identity.upstream or {})
    assert isinstance(r, ReverifyOk) and r.identity is not None
    assert r.identity.groups == ("aws-readonly",)
    assert (r.identity.mfa, r.identity.amr, r.identity.acr) == (False, ("pwd",), None)
    assert r.grant["refresh_token"] == (identity.upstream or {})["refresh_token"]  # not rotated: kept


@pytest.mark.parametrize("tamper, outcome", [
    ({"nonce": None}, ReverifyOk),  # OIDC Core §12.2: a refreshed ID token need not carry the nonce
    ({"nonce": "another-sign-in"}, ReverifyRevoked),
    ({"aud": "someone-else"}, ReverifyRevoked),
    ({"iss": "https://evil.example.com"}, ReverifyRevoked),
    ({"exp": 1000}, ReverifyRevoked),
    ({"no_id_token": True}, ReverifyOk),
])
def test_refreshed_id_token_is_verified(fake, tamper: dict[str, Any], outcome: type) -> None:
    op, _ = fake
    conn, identity = fake_sign_in(op)
    op.tamper = tamper
    r = conn.reverify(identity.upstream or {})
    assert isinstance(r, outcome), r
    if tamper.get("no_id_token"):  # no claims to go by (the fake has no userinfo): keep the identity
        assert isinstance(r, ReverifyOk) and r.identity is None and r.grant["refresh_token"]


def test_an_unverified_email_taken_on_at_the_idp_is_not_accepted_on_refresh(fake) -> None:
    """Attack: sign in verified, then change the e-mail at the IdP to someone else's (unverified)."""
    op, _ = fake
    conn, identity = fake_sign_in(op)
    op.claims = {**op.claims, "email": "ceo@example.com", "email_verified": False}
    r = conn.reverify(identity.upstream or {})
    assert isinstance(r, ReverifyRevoked) and r.reason == "email_unverified"


def test_another_subject_is_revoked(fake) -> None:
    op, _ = fake
    conn, identity = fake_sign_in(op)
    op.claims = {**op.claims, "sub": "mallory"}
    r = conn.reverify(identity.upstream or {})
    assert isinstance(r, ReverifyRevoked) and "another subject" in r.reason


@pytest.mark.parametrize("error, status, outcome", [
    ("invalid_grant", 400, ReverifyRevoked),
    ("invalid_client", 401, ReverifyUnreachable),  # the bridge's client, not the user
    ("temporarily_unavailable", 503, ReverifyUnreachable),
])
def test_token_endpoint_errors(fake, error: str, status: int, outcome: type) -> None:
    op, _ = fake
    conn, identity = fake_sign_in(op)
    op.token_error, op.token_status = error, status
    assert isinstance(conn.reverify(identity.upstream or {}), outcome)


def test_idp_going_down_after_sign_in_is_unreachable(fake) -> None:
    op, stop = fake
    conn, identity = fake_sign_in(op)
    stop()
    r = conn.reverify(identity.upstream or {})
    assert isinstance(r, ReverifyUnreachable) and "token endpoint" in r.reason
