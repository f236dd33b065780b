"""Sign in with Apple in Chromium: the stand-in (tests/apple_peer.py) on 127.0.0.2 — another site — answers
with a form POST to the bridge on 127.0.0.1. That cross-site POST carries none of the bridge's SameSite=Lax
cookies, so the bridge's hop page re-POSTs it from its own origin, and the sign-in ends on the portal."""

from __future__ import annotations

from typing import Any

import pytest

from tests import apple_peer
from tests.apple_peer import APPLE_CONNECTOR
from tests.conftest import ACCOUNT
from tests.e2e.conftest import SHOTS
from tests.integration.test_apple_login import RULES

pytestmark = pytest.mark.integration
apple_op = apple_peer.apple_op  # the fixture


def test_apple_form_post_callback_crosses_sites_through_the_hop(page, live_bridge, make_settings, apple_op,
                                                                 strict_sts_peer) -> None:
    SHOTS.mkdir(parents=True, exist_ok=True)
    base = live_bridge(make_settings(connectors=[apple_op.connector()], mapping={"rules": RULES}))
    callbacks: list[tuple[str, int, bool]] = []

    def seen(r: Any) -> None:
        if "/callback/" in r.url:
            callbacks.append((r.request.method, r.status, "bridge_login=" in r.request.all_headers().get("cookie", "")))

    page.on("response", seen)
    user = apple_op.new_user(first="Tim", last="Relay")  # a first authorization: Apple sends the name
    page.goto(f"{base}/")
    page.click(f"#idp-{APPLE_CONNECTOR}")
    assert page.url.startswith(f"{apple_op.issuer}/interaction/")  # the IdP is on another site
    page.fill("#username", user["name"])
    page.fill("#password", "pw")
    with page.expect_navigation(url=f"{base}/portal", timeout=15000):  # its form auto-POSTs to our callback
        page.click("#submit")
    # The cross-site POST came without the sign-in cookie (the hop page), its same-site re-POST with it.
    assert callbacks == [("POST", 200, False), ("POST", 303, True)]
    assert "Tim Relay" in page.inner_text("header")
    page.screenshot(path=str(SHOTS / "apple-portal.png"), full_page=True)
    with page.context.expect_page() as opened:
        page.locator("li.role", has_text="Administrator").locator("a.k").click()
    creds = opened.value
    creds.wait_for_selector("#assumed-arn")
    assert creds.text_content("#assumed-arn").startswith(f"arn:aws:sts::{ACCOUNT}:assumed-role/Admin/")
    (sts,) = strict_sts_peer.seen
    assert sts.problems == []
