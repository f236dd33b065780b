"""Step-up MFA on SAML (docs/step-up-mfa.md): the real pysaml2 IdP holds a password-only single sign-on session.
The plain AuthnRequest is answered from it, password-only; the step-up's carries ForceAuthn="true" and a
RequestedAuthnContext with the configured class, the IdP asks again, and only an assertion with an MFA class
unlocks the role. An assertion without it, or an IdP that ignores ForceAuthn, is refused; nothing changes."""

from __future__ import annotations

import base64
import re
from typing import Any
from urllib.parse import urljoin

import pytest
import requests

from tests.conftest import ACCOUNT, SamlIdp
from tests.conftest import SAML_CONNECTOR as CONNECTOR
from tests.integration.helpers import grant_id, portal_json
from tests.integration.test_saml import _auto_post, cross_site_post, saml_login

pytestmark = pytest.mark.integration

MFA = "urn:oasis:names:tc:SAML:2.0:ac:classes:MobileTwoFactorContract"
ROLE = f"arn:aws:iam::{ACCOUNT}:role/Admin"


@pytest.fixture
def settings(make_settings: Any, saml_idp: SamlIdp) -> Any:
    return make_settings(
        connectors=[{"id": CONNECTOR, "type": "saml", "metadata_url": f"{saml_idp.url}/metadata",
                     "step_up": {"authn_contexts": [MFA]}}],
        mapping={"rules": [{"name": "admins", "group": "aws-admins", "role_arn": ROLE, "path": "saml",
                            "mfa_required": True}]})


def _last(idp: SamlIdp) -> dict[str, Any]:
    doc: dict[str, Any] = requests.get(f"{idp.url}/last-request", timeout=5).json()
    return doc


def _answered(base: str, s: requests.Session, r: requests.Response, **form: str) -> requests.Response:
    """The IdP's page ``r``: its form filled with ``form`` when it shows one; its answer posted to the bridge."""
    if 'id="username"' in r.text:
        r = s.post(urljoin(r.url, "/login"), data=form, timeout=10)
    action, fields = _auto_post(r.text)
    assert action == f"{base}/callback/{CONNECTOR}" and "SAMLResponse" in fields, r.text[:300]
    return cross_site_post(s, action, fields)


def test_saml_step_up_asks_again_and_verifies_the_class(live_bridge: Any, settings: Any, saml_idp: SamlIdp,
                                                        strict_sts_peer: Any) -> None:
    base = live_bridge(settings)
    s = requests.Session()
    r = saml_login(base, "frank", "frank-pw", s)
    assert r.status_code == 200 and 'id="step-up"' in r.text
    assert _last(saml_idp)["force_authn"] is None and _last(saml_idp)["authn_context"] is None
    assert [g["role_arn"] for g in portal_json(s, base)["locked"]] == [ROLE]

    # Before: the plain request is answered from the IdP's session, no form, password-only again.
    forms = _last(saml_idp)["forms"]
    r = _answered(base, s, s.get(f"{base}/login/{CONNECTOR}", timeout=10))
    assert r.status_code == 200 and _last(saml_idp)["forms"] == forms
    assert portal_json(s, base)["identity"]["mfa"] is False

    # The step-up's AuthnRequest: ForceAuthn and the RequestedAuthnContext; the IdP shows its form again.
    before = portal_json(s, base)
    r = s.get(f"{base}/step-up", timeout=10)
    assert 'id="username"' in r.text and _last(saml_idp)["forms"] == forms + 1
    assert _last(saml_idp)["force_authn"] == "true"
    assert _last(saml_idp)["authn_context"] == [MFA] and _last(saml_idp)["comparison"] == "exact"
    # An assertion without the required class (password only) is refused; the session is as it was.
    r = _answered(base, s, r, username="frank", password="frank-pw")
    assert r.status_code == 403 and "step_up_no_mfa" in r.text
    assert portal_json(s, base)["csrf_token"] == before["csrf_token"]

    # An IdP that ignores ForceAuthn answers from its session: refused too.
    requests.post(f"{saml_idp.url}/ignore-force-authn?on=1", timeout=5)
    try:
        r = _answered(base, s, s.get(f"{base}/step-up", timeout=10))
        assert r.status_code == 403 and re.search(r"step_up_(no_mfa|stale)", r.text)
    finally:
        requests.post(f"{saml_idp.url}/ignore-force-authn?on=0", timeout=5)

    # After: the form again, with the one-time code: the MFA class comes back, the role unlocks.
    r = _answered(base, s, s.get(f"{base}/step-up", timeout=10), username="frank", password="frank-pw", otp="424242")
    assert r.status_code == 200 and r.url == f"{base}/portal"
    up = portal_json(s, base)
    assert up["identity"]["mfa"] is True and up["locked"] == [] and "mfa_age" in up
    # The assertion the bridge mints passes the strict STS and carries bridge:mfa=true.
    r = s.post(f"{base}/credentials/{grant_id(up, '/Admin')}", timeout=30,
               headers={"Accept": "application/json", "X-CSRF-Token": up["csrf_token"]})
    assert r.status_code == 200, r.text[:500]
    seen = strict_sts_peer.seen[-1]
    assert seen.action == "AssumeRoleWithSAML"
    xml = base64.b64decode(seen.token).decode()
    assert 'PrincipalTag:bridge:mfa" NameFormat="urn:oasis:names:tc:SAML:2.0:attrname-format:uri">' \
           "<saml:AttributeValue>true<" in xml
