"""Destructive buttons in a real browser (Debian chromium via Playwright), with and without script: Deny,
Revoke and "Sign out everywhere else" look unlike Approve and act only after a second, explicit step."""

from __future__ import annotations

import re
from typing import Any

import pytest

from tests.e2e.test_access_requests_browser import RULES, USERS, sign_in

pytestmark = pytest.mark.integration


def reddish(css: str) -> bool:
    r, g, b = (int(x) for x in re.findall(r"\d+", css)[:3])
    return r > 1.5 * max(g, b)


@pytest.mark.parametrize("script", [True, False])
def test_deny_and_revoke_ask_first(script: bool, browser: Any, live_bridge: Any, make_settings: Any,
                                   strict_sts_peer: Any) -> None:
    base = live_bridge(make_settings(connectors=[{"id": "dev", "type": "dev", "users": USERS}],
                                     mapping={"rules": RULES}))
    bob = browser.new_context().new_page()
    carol_ctx = browser.new_context(java_script_enabled=script)
    carol = carol_ctx.new_page()
    sign_in(bob, base, "bob")
    sign_in(carol, base, "carol")
    ask(bob, base, "first")
    carol.goto(f"{base}/requests/approve")
    card = carol.locator("section.request[data-status=pending]")
    deny, approve = card.locator("summary.deny"), card.locator("button.approve")
    colours = [x.evaluate("e => [getComputedStyle(e).color, getComputedStyle(e).backgroundColor]")
               for x in (deny, approve)]
    assert reddish(colours[0][0]) and colours[0] != colours[1], colours  # red, unlike Approve
    assert not card.locator("button.deny-confirm").is_visible()
    deny.click()  # the first step only shows what will happen
    assert card.locator(".confirm-panel").inner_text().startswith("Deny Bob's request for Administrator?")
    carol.reload()
    assert carol.locator("section.request").get_attribute("data-status") == "pending"  # nothing was sent
    card.locator("summary.deny").click()
    with carol.expect_navigation():
        card.locator("button.deny-confirm").click()
    assert carol.locator("section.request").count() == 0
    bob.goto(f"{base}/requests")
    assert bob.locator("li.request[data-status=denied]").count() == 1
    # Revoke now, on an approved request: the same second step.
    ask(bob, base, "second")
    carol.goto(f"{base}/requests/approve")
    with carol.expect_navigation():
        carol.locator("section.request button.approve").click()
    card = carol.locator("section.request[data-status=approved]")
    card.locator("summary.revoke-request").click()
    assert card.locator(".confirm-panel").inner_text().startswith("End Bob's access to Administrator now?")
    carol.reload()
    assert carol.locator("section.request").get_attribute("data-status") == "approved"
    card.locator("summary.revoke-request").click()
    with carol.expect_navigation():
        card.locator("button.revoke-confirm").click()
    assert carol.locator("section.request").count() == 0
    carol_ctx.close()


def ask(page: Any, base: str, reason: str) -> None:
    page.goto(f"{base}/requests")
    form = page.locator("form.request-form", has_text="Admin")
    form.locator("textarea[name=reason]").fill(reason)
    with page.expect_navigation():
        form.locator("button.request-submit").click()


def test_sign_out_everywhere_else_asks_first(browser: Any, live_bridge: Any, make_settings: Any) -> None:
    base = live_bridge(make_settings())
    here, there = browser.new_context().new_page(), browser.new_context().new_page()
    sign_in(here, base, "alice")
    sign_in(there, base, "alice")
    here.goto(f"{base}/portal/sign-ins")
    others = here.locator("#revoke-others")
    assert others.inner_text() == "Sign out everywhere else…"
    assert reddish(others.evaluate("e => getComputedStyle(e).color"))
    others.click()
    assert "Sign out every other browser (1)" in here.locator("#revoke-others + .confirm-panel").inner_text()
    assert there.goto(f"{base}/portal").url == f"{base}/portal"  # still signed in: nothing was sent yet
    with here.expect_navigation():
        here.click("#revoke-others-confirm")
    assert here.locator("section[data-current=no]").count() == 0
    there.goto(f"{base}/portal")
    assert there.url != f"{base}/portal" and there.locator("#user-alice").count() + there.locator(".idps").count()
