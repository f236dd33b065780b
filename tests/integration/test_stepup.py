"""Step-up MFA end to end (docs/step-up-mfa.md "Asking the IdP"): the real npm oidc-provider already holds a
password-only session; the plain sign-in comes back password-only, the step-up asks again (prompt=login,
max_age), and the role unlocks only when the IdP says MFA. What comes back is verified: an answer without
MFA, a stale one or one for another session is refused with its page, and the session is left as it was.
Everything issued after the step-up passes the strict STS under a hardened trust policy, with bridge:mfa=true."""

from __future__ import annotations

import base64
import json
import re
from typing import Any
from urllib.parse import urljoin

import pytest
import requests

from bridge.aws.iam_setup import trust_policy
from bridge.commands.awssetup import environment_for, sent_roles
from tests.conftest import ACCOUNT, OIDC_CONNECTOR
from tests.integration.helpers import TestClock, grant_id, oidc_login, portal_json

pytestmark = pytest.mark.integration

ROLE = f"arn:aws:iam::{ACCOUNT}:role/Prod"


@pytest.fixture
def settings(make_settings: Any, oidc_issuer: str) -> Any:
    return make_settings(
        connectors=[{"id": OIDC_CONNECTOR, "type": "oidc", "issuer": oidc_issuer, "client_id": "bridge",
                     "client_secret": "bridge-secret", "step_up": {"max_age": 120, "mfa_max_age": 600}}],
        mapping={"accounts": {ACCOUNT: {"alias": "prod", "roles": {"Prod": {}, "ReadOnly": {}}}},
                 "rules": [{"name": "ops", "match": {"group": "aws-admins"},
                            "grants": [{"account": "prod", "role": "Prod", "mfa_required": True,
                                        "tags": {"Team": "ops"}},
                                       {"account": "prod", "role": "ReadOnly"}]}]})


def _seen(issuer: str) -> dict[str, Any]:
    doc: dict[str, Any] = requests.get(f"{issuer}/test-admin/last-authorization", timeout=5).json()
    return doc


def _at_idp_form(r: requests.Response, s: requests.Session, **form: str) -> requests.Response:
    """Fill the OP's sign-in form that ``r`` shows."""
    assert 'id="username"' in r.text, r.text[:300]
    action = re.search(r'action="([^"]+)"', r.text)
    assert action
    return s.post(urljoin(r.url, action[1]), data=form, timeout=20)


def _tags_sent(token: str) -> dict[str, str]:
    claims = json.loads(base64.urlsafe_b64decode(token.split(".")[1] + "=="))
    tags = claims["https://aws.amazon.com/tags"]
    return {k: v[0] for k, v in tags["principal_tags"].items()}


def test_step_up_against_an_idp_that_already_has_a_password_only_session(
        live_bridge: Any, settings: Any, oidc_issuer: str, strict_sts_peer: Any) -> None:
    base = live_bridge(settings)
    svc = live_bridge.app.extensions["bridge"]
    role = next(r for r in sent_roles(settings, [ROLE])[0] if r.arn == ROLE)
    strict_sts_peer.trust_policy(ROLE, trust_policy(role, environment_for(settings), harden=True))
    s = requests.Session()
    r = oidc_login(base, OIDC_CONNECTOR, "frank", "frank-pw", session=s)
    assert r.status_code == 200 and r.url == f"{base}/portal" and 'id="step-up"' in r.text
    first = portal_json(s, base)
    assert first["identity"]["mfa"] is False and [g["role_arn"] for g in first["locked"]] == [ROLE]

    # Before: the plain sign-in. The IdP has a session, asks nothing, and answers password-only again.
    forms = _seen(oidc_issuer)["loginForms"]
    r = s.get(f"{base}/login/{OIDC_CONNECTOR}", timeout=20)
    assert r.url == f"{base}/portal" and _seen(oidc_issuer)["loginForms"] == forms  # no form: stuck
    assert _seen(oidc_issuer)["authorization"] == {"prompt": None, "max_age": None, "acr_values": None}
    assert portal_json(s, base)["identity"]["mfa"] is False

    # The step-up asks again: prompt=login and max_age reached the IdP, which shows its form with the code.
    r = s.get(f"{base}/step-up", params={"return_to": "/portal"}, timeout=20)
    assert 'id="otp"' in r.text and _seen(oidc_issuer)["loginForms"] == forms + 1
    assert _seen(oidc_issuer)["authorization"] == {"prompt": "login", "max_age": "120", "acr_values": None}
    # ...answered with the password only: the IdP says pwd, the bridge refuses, the session is as it was.
    before = portal_json(s, base)
    r = _at_idp_form(r, s, username="frank", password="frank-pw")
    assert r.status_code == 403 and "step_up_no_mfa" in r.text and "did not say that you used multi-factor" in r.text
    after = portal_json(s, base)
    assert after["identity"]["mfa"] is False and after["csrf_token"] == before["csrf_token"]

    # After: the step-up with the code. The IdP says otp; the role unlocks, the portal shows the MFA age.
    r = _at_idp_form(s.get(f"{base}/step-up", params={"return_to": "/portal"}, timeout=20), s,
                     username="frank", password="frank-pw", otp="424242")
    assert r.status_code == 200 and r.url == f"{base}/portal" and 'id="mfa-age"' in r.text
    up = portal_json(s, base)
    assert up["identity"]["mfa"] is True and 0 <= up["mfa_age"] < 60 and up["locked"] == []
    assert up["csrf_token"] != before["csrf_token"]  # a new session (rotated), the old one ended

    # What is issued now passes the strict STS under the hardened trust policy, carrying bridge:mfa=true.
    r = s.post(f"{base}/credentials/{grant_id(up, '/Prod')}", timeout=30,
               headers={"Accept": "application/json", "X-CSRF-Token": up["csrf_token"]})
    assert r.status_code == 200, r.text[:500]
    assert strict_sts_peer.seen[-1].action == "AssumeRoleWithWebIdentity"
    assert _tags_sent(strict_sts_peer.seen[-1].token)["bridge:mfa"] == "true"

    # mfa_max_age: once the MFA sign-in is older, it counts no more: the role locks, the portal asks again.
    clock = TestClock()
    svc.sessions.clock = clock
    clock.advance(540)
    assert portal_json(s, base)["identity"]["mfa"] is True
    clock.advance(61)
    aged = portal_json(s, base)
    assert aged["identity"]["mfa"] is False and [g["role_arn"] for g in aged["locked"]] == [ROLE]
    r = s.post(f"{base}/credentials/{grant_id(up, '/Prod')}", timeout=30,
               headers={"Accept": "application/json", "X-CSRF-Token": up["csrf_token"]})
    assert r.status_code == 403 and r.json()["error"] == "mfa_required"


def test_a_stale_answer_and_an_ended_session_are_refused(live_bridge: Any, settings: Any, oidc_issuer: str) -> None:
    base = live_bridge(settings)
    svc = live_bridge.app.extensions["bridge"]
    clock = TestClock()
    svc.signin.step_ups.clock = clock
    s = requests.Session()
    oidc_login(base, OIDC_CONNECTOR, "frank", "frank-pw", session=s)
    before = portal_json(s, base)

    # The answer arrives later than max_age (+60 s) after the IdP authenticated: stale, nothing changed.
    r = s.get(f"{base}/step-up", timeout=20)
    clock.advance(120 + 61)
    r = _at_idp_form(r, s, username="frank", password="frank-pw", otp="424242")
    assert r.status_code == 403 and "step_up_stale" in r.text
    assert portal_json(s, base)["csrf_token"] == before["csrf_token"]
    clock.advance(-(120 + 61))

    # The session that asked signs out before the answer comes: the answer is not applied to anything.
    r = s.get(f"{base}/step-up", timeout=20)
    assert s.post(f"{base}/logout", data={"csrf_token": before["csrf_token"]}, timeout=10).status_code == 200
    r = _at_idp_form(r, s, username="frank", password="frank-pw", otp="424242")
    assert r.status_code == 403 and "step_up_session_changed" in r.text
    assert s.get(f"{base}/portal", headers={"Accept": "application/json"}, timeout=10).status_code == 401


def test_step_up_without_a_session_is_refused(live_bridge: Any, settings: Any) -> None:
    base = live_bridge(settings)
    r = requests.get(f"{base}/step-up", headers={"Accept": "application/json"}, timeout=10, allow_redirects=False)
    assert r.status_code == 401 and r.json()["error"] == "not_signed_in"
