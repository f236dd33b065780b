"""Step-up MFA in Chromium (docs/step-up-mfa.md): signed in with a password only at the real npm
oidc-provider, the portal shows the MFA role locked; "Sign in again with MFA" makes the IdP ask again (its
form with the one-time code), and back on the portal the role is unlocked, MFA shown with its age, and its
credentials work. Screenshots in test-artifacts/e2e/."""

from __future__ import annotations

from typing import Any

import pytest

from tests.conftest import ACCOUNT, OIDC_CONNECTOR
from tests.e2e.conftest import SHOTS

pytestmark = pytest.mark.integration


def test_step_up_from_the_portal(page: Any, live_bridge: Any, make_settings: Any, oidc_issuer: str,
                                 strict_sts_peer: Any) -> None:
    SHOTS.mkdir(parents=True, exist_ok=True)
    base = live_bridge(make_settings(
        connectors=[{"id": OIDC_CONNECTOR, "type": "oidc", "name": "Corp SSO", "issuer": oidc_issuer,
                     "client_id": "bridge", "client_secret": "bridge-secret"}],
        mapping={"accounts": {ACCOUNT: {"alias": "prod", "roles": {"Prod": {"label": "Production"},
                                                                   "ReadOnly": {"label": "Read-only"}}}},
                 "rules": [{"name": "ops", "match": {"group": "aws-admins"},
                            "grants": [{"account": "prod", "role": "Prod", "mfa_required": True},
                                       {"account": "prod", "role": "ReadOnly"}]}]}))
    page.goto(f"{base}/")
    page.click(f"#idp-{OIDC_CONNECTOR}")
    page.fill("#username", "frank")
    page.fill("#password", "frank-pw")
    assert page.locator("#otp").count() == 0  # a plain sign-in: the IdP asks no second factor
    with page.expect_navigation(url=f"{base}/portal"):
        page.click("#submit")
    assert "MFA no" in page.inner_text("#who-mfa")
    assert page.locator("#locked li", has_text="Prod").count() == 1
    page.screenshot(path=str(SHOTS / "step-up-before.png"), full_page=True)

    page.click("#step-up")  # the IdP already has frank's session, yet asks again: prompt=login
    page.wait_for_selector("#otp")
    page.fill("#username", "frank")
    page.fill("#password", "frank-pw")
    page.fill("#otp", "424242")
    page.screenshot(path=str(SHOTS / "step-up-idp.png"), full_page=True)
    with page.expect_navigation(url=f"{base}/portal"):
        page.click("#submit")
    assert "MFA yes" in page.inner_text("#who-mfa") and page.locator("#mfa-age").count() == 1
    assert page.locator("#locked").count() == 0
    page.screenshot(path=str(SHOTS / "step-up-after.png"), full_page=True)

    role = page.locator("li.role", has_text="Production")
    with page.context.expect_page() as opened:
        role.locator("a.k").click()
    creds = opened.value
    creds.wait_for_selector("#assumed-arn")
    assert creds.text_content("#assumed-arn") == f"arn:aws:sts::{ACCOUNT}:assumed-role/Prod/frank@example.com"
    assert strict_sts_peer.seen[-1].action == "AssumeRoleWithWebIdentity"
