"""Sign in with Apple (``preset: apple``) end to end: the Apple-shaped client of the real npm oidc-provider
(tests/apple_peer.py, on another site), the bridge on a real redis-server, the strict STS peer.

Apple answers with a form POST from its own site (``response_mode=form_post``): the browser withholds our
SameSite=Lax pre-sign-in cookie, the bridge answers the same-site hop page, whose re-POST carries it; then
the callback is verified like any other. The stand-in checks the minted client secret JWT the way Apple
does, and sends ``email_verified`` / ``is_private_email`` as strings."""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import parse_qs, urljoin, urlsplit

import pytest
import requests

from tests import apple_peer
from tests.apple_peer import APPLE_CONNECTOR, SERVICES_ID, AppleOp
from tests.conftest import ACCOUNT
from tests.integration.helpers import caller_arn, grant_id, portal_json
from tests.integration.test_bad_input import assert_error_page
from tests.integration.test_saml import _auto_post, cross_site_post

pytestmark = pytest.mark.integration
apple_op = apple_peer.apple_op  # the fixture

RULES = [
    {"name": "relay", "match": {"claim": "claims.is_private_email", "equals": "true"},
     "grants": [{"role_arn": f"arn:aws:iam::{ACCOUNT}:role/Admin", "label": "Administrator",
                 "tags": {"Email": "{email}"}}]},
    {"name": "alice", "match": {"claim": "email", "equals": "alice@example.com"},
     "grants": [{"account": "sandbox", "role": "ReadOnly", "label": "Read-only"}]},
]


@pytest.fixture
def apple_bridge(live_bridge, make_settings, apple_op: AppleOp):  # type: ignore[no-untyped-def]
    def start(**connector: Any) -> str:
        return str(live_bridge(make_settings(connectors=[apple_op.connector(**connector)],
                                             mapping={"rules": RULES})))
    return start


def apple_answer(base: str, s: requests.Session, user: str, password: str) -> tuple[str, dict[str, str]]:
    """Start a sign-in in ``s``, sign in at the stand-in: its form-POST page (action, fields), not posted."""
    r = s.get(f"{base}/login/{APPLE_CONNECTOR}", timeout=10)
    asked = parse_qs(urlsplit(r.history[0].headers["Location"]).query)
    assert asked["response_mode"] == ["form_post"] and asked["scope"] == ["openid email name"]
    assert asked["client_id"] == [SERVICES_ID] and asked["code_challenge_method"] == ["S256"]
    assert 'id="username"' in r.text, r.text[:300]
    action = _auto_post(r.text)[0]
    r = s.post(urljoin(r.url, action), data={"username": user, "password": password}, timeout=20)
    assert r.status_code == 200 and "Submitting Callback" in r.text, r.text[:500]
    action, fields = _auto_post(r.text)
    assert action == f"{base}/callback/{APPLE_CONNECTOR}" and {"code", "state"} <= set(fields), fields.keys()
    return action, fields


def session_keys(base: str, live_bridge) -> set[str]:  # type: ignore[no-untyped-def]
    store = live_bridge.app.extensions["bridge"].store
    return {k.decode() for k in store.r.scan_iter(match=f"{store.prefix}*", count=1000)}


def test_apple_sign_in_through_the_hop_to_credentials_the_strict_sts_takes(apple_bridge, apple_op, strict_sts_peer,
                                                                          moto_url, bridge_logs) -> None:
    base = apple_bridge()
    before = apple_op.seen()
    user = apple_op.new_user(first="Tim", last="Relay")  # never signed in yet: Apple sends the name this once
    s = requests.Session()
    action, fields = apple_answer(base, s, user["name"], "pw")
    assert json.loads(fields["user"])["name"] == {"firstName": "Tim", "lastName": "Relay"}
    r = cross_site_post(s, action, fields)
    assert r.status_code == 200 and r.url == f"{base}/portal", r.text[:500]
    portal = portal_json(s, base)
    assert portal["identity"] == {"email": user["email"], "name": "Tim Relay",
                                  "mfa": False, "connector": APPLE_CONNECTOR}
    assert [g["label"] for g in portal["grants"]] == ["Administrator"]  # by claims.is_private_email: "true"
    seen = apple_op.seen()  # the minted client secret passed Apple's checks
    assert seen["verified"] == before["verified"] + 1 and seen["refused"] == before["refused"]
    r = s.post(f"{base}/credentials/{grant_id(portal, '/Admin')}",
               headers={"Accept": "application/json", "X-CSRF-Token": portal["csrf_token"]}, timeout=30)
    assert r.status_code == 200, r.text[:300]
    assert caller_arn(moto_url, r.json()).startswith(f"arn:aws:sts::{ACCOUNT}:assumed-role/Admin/")
    (sts,) = strict_sts_peer.seen
    assert sts.problems == [] and sts.action == "AssumeRoleWithWebIdentity"

    # Apple sends the name only on the first authorization: the next sign-in has no `user` field.
    s2 = requests.Session()
    action, fields = apple_answer(base, s2, user["name"], "pw")
    assert "user" not in fields
    assert cross_site_post(s2, action, fields).url == f"{base}/portal"
    assert portal_json(s2, base)["identity"]["name"] is None
    # Neither the minted client secret (a JWT), nor any token, nor the key was logged.
    assert "eyJ" not in bridge_logs.text and apple_op.p8.splitlines()[1] not in bridge_logs.text
    assert fields["code"] not in bridge_logs.text


def test_string_false_email_verified_is_refused_and_string_true_accepted(apple_bridge) -> None:
    base = apple_bridge()
    s = requests.Session()
    r = cross_site_post(s, *apple_answer(base, s, "eve", "eve-pw"))  # email_verified: "false"
    assert_error_page(r, 403, "email_unverified")
    assert s.get(f"{base}/portal", headers={"Accept": "application/json"}, timeout=10).status_code == 401
    s = requests.Session()
    r = cross_site_post(s, *apple_answer(base, s, "alice", "alice-pw"))  # email_verified: "true"
    assert r.url == f"{base}/portal"
    assert [g["label"] for g in portal_json(s, base)["grants"]] == ["Read-only"]


@pytest.mark.parametrize("tamper", ["code", "state", "replay", "other_browser"])
def test_tampered_or_replayed_form_post_is_refused_and_changes_nothing(apple_bridge, live_bridge, strict_sts_peer,
                                                                       tamper: str) -> None:
    base = apple_bridge()
    s = requests.Session()
    action, fields = apple_answer(base, s, "tim", "tim-pw")
    if tamper == "replay":  # the answer is used once, then posted again (from the same browser)
        assert cross_site_post(s, action, fields).url == f"{base}/portal"
        s = requests.Session()
        s.get(f"{base}/login/{APPLE_CONNECTOR}", allow_redirects=False, timeout=10)
    before, calls = session_keys(base, live_bridge), strict_sts_peer.calls
    if tamper == "code":
        r = cross_site_post(s, action, {**fields, "code": fields["code"][:-2] + "xx"})
        assert_error_page(r, 400, "login_failed")
    elif tamper == "state":  # not a pending sign-in: no hop page, refused at once
        r = requests.post(action, data={**fields, "state": "forged-" + fields["state"][7:]}, timeout=10)
        assert_error_page(r, 400, "login_expired")
    elif tamper == "replay":
        r = requests.post(action, data=fields, timeout=10)
        assert_error_page(r, 400, "login_expired")
    else:  # planted in another browser: after the hop that browser's cookie is not the one bound to the state
        victim = requests.Session()
        victim.get(f"{base}/login/{APPLE_CONNECTOR}", allow_redirects=False, timeout=10)
        r = cross_site_post(victim, action, fields)
        assert_error_page(r, 400, "login_browser_mismatch")
        s = victim
    assert "bridge_session" not in s.cookies
    assert s.get(f"{base}/portal", headers={"Accept": "application/json"}, timeout=10).status_code == 401
    added = session_keys(base, live_bridge) - before
    assert not [k for k in added if "sess" in k], added
    assert strict_sts_peer.calls == calls


def test_a_client_secret_signed_by_another_key_is_refused_by_apple(apple_bridge, apple_op, bridge_logs) -> None:
    from tests.unit.test_apple import p8

    base = apple_bridge(apple={"team_id": "TEAM123456", "key_id": "KEY1234567", "private_key": p8()})
    s = requests.Session()
    r = cross_site_post(s, *apple_answer(base, s, "tim", "tim-pw"))
    assert_error_page(r, 400, "login_failed")
    assert "token endpoint refused the code: invalid_client" in bridge_logs.text  # the operator's clue
    assert "signature" in apple_op.seen()["refused"]
    assert s.get(f"{base}/portal", headers={"Accept": "application/json"}, timeout=10).status_code == 401


def test_cancelled_at_apple_comes_back_through_the_hop_as_a_clear_refusal(apple_bridge) -> None:
    """Apple form-posts ``error=user_cancelled_authorize`` with the state when the user cancels."""
    base = apple_bridge()
    s = requests.Session()
    r = s.get(f"{base}/login/{APPLE_CONNECTOR}", allow_redirects=False, timeout=10)
    (state,) = parse_qs(urlsplit(r.headers["Location"]).query)["state"]
    r = cross_site_post(s, f"{base}/callback/{APPLE_CONNECTOR}", {"error": "user_cancelled_authorize", "state": state})
    assert_error_page(r, 403, "idp_denied")
    assert "user_cancelled_authorize" in r.text  # what Apple said, on the page
    assert s.get(f"{base}/portal", headers={"Accept": "application/json"}, timeout=10).status_code == 401


def test_reverify_refreshes_with_a_minted_secret_and_reads_the_string_booleans(apple_op, bridge_port) -> None:
    """Apple issues a refresh token with the code; ``reverify`` redeems it with a freshly minted client secret
    (the stand-in checks it), and the refreshed ID token's ``"true"`` strings are read like at sign-in."""
    import secrets

    from bridge.config import OidcConnectorSettings
    from bridge.upstream.apple import AppleConnector
    from bridge.upstream.base import PendingLogin, ReverifyOk
    from bridge.upstream.oidc import open_oidc

    conn = open_oidc(OidcConnectorSettings(**apple_op.connector(request_offline_access=True)))
    assert isinstance(conn, AppleConnector)
    redirect_uri = f"http://127.0.0.1:{bridge_port}/callback/{APPLE_CONNECTOR}"
    p = PendingLogin(state=secrets.token_urlsafe(16), connector_id=APPLE_CONNECTOR, nonce=secrets.token_urlsafe(16),
                     code_verifier=secrets.token_urlsafe(48), return_to="/portal", created_at=0)
    s = requests.Session()
    r = s.get(conn.start_login(p, redirect_uri).url, timeout=10)
    r = s.post(urljoin(r.url, _auto_post(r.text)[0]), data={"username": "tim", "password": "tim-pw"}, timeout=20)
    action, fields = _auto_post(r.text)
    assert action == redirect_uri and fields["state"] == p.state
    identity = conn.finish_login(p, fields, redirect_uri)
    assert identity.claims["is_private_email"] is True and identity.upstream and identity.upstream["refresh_token"]
    before = apple_op.seen()
    result = conn.reverify(identity.upstream)
    assert isinstance(result, ReverifyOk) and result.identity is not None, result
    assert result.identity.email == identity.email and result.identity.claims["is_private_email"] is True
    after = apple_op.seen()
    assert after["verified"] == before["verified"] + 1 and after["refused"] == before["refused"]
