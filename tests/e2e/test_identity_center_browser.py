"""`aws sso login` as AWS CLI v2 runs it against the bridge, approved in a real browser (Chromium via
Playwright), then boto3's own SSO credential provider in a separate process: the main path of
docs/identity-center.md."""

from __future__ import annotations

import json

import pytest

from tests.e2e.test_browser import SHOTS
from tests.integration.test_identity_center import (
    DEVICE_GRANT,
    WANT,
    boto3_caller,
    cache_entry,
    home,  # noqa: F401 - fixture
    oidc_client,
    poll,
    register,
    write_profile,
    write_token,
)

pytestmark = pytest.mark.integration


def test_device_code_approved_in_chromium_then_boto3s_sso_provider(page, live_bridge, make_settings,  # noqa: F811
                                                                   home, moto_url, strict_sts_peer) -> None:  # noqa: F811
    SHOTS.mkdir(parents=True, exist_ok=True)
    base = live_bridge(make_settings(cli={"poll_interval": 1}))
    oidc = oidc_client(base)
    reg = register(oidc, [DEVICE_GRANT, "refresh_token"])
    start = oidc.start_device_authorization(clientId=reg["clientId"], clientSecret=reg["clientSecret"],
                                            startUrl=base)
    page.goto(f"{base}/login/dev")
    with page.expect_navigation(url=f"{base}/portal"):
        page.click("#user-alice")
    page.goto(start["verificationUriComplete"])  # what the CLI opens
    assert page.text_content("#device-code") == start["userCode"]
    assert page.text_content("#device-client").startswith("botocore-client-")
    page.screenshot(path=str(SHOTS / "sso-device-approve.png"), full_page=True)
    page.check("#device-confirm")  # the explicit confirmation the approval needs
    page.click("#approve")
    assert page.text_content("#device-result").startswith("Approved")
    token = poll(oidc, reg, start)
    write_profile(home, base, moto_url)
    cache = write_token(home, cache_entry(base, reg, token))
    out = boto3_caller(home)
    assert out.returncode == 0 and out.stdout.strip() == WANT, out.stderr[-3000:]
    assert json.loads(cache.read_text())["accessToken"] == token["accessToken"]  # no refresh needed yet


