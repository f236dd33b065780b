"""Just-in-time access in two real browsers (Debian chromium via Playwright): the requester asks for a
role given on request, the approver approves it on their own page, the requester uses it, then gives
it back. Screenshots land in test-artifacts/e2e/."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from tests.conftest import ACCOUNT
from tests.e2e.test_browser import SHOTS

pytestmark = pytest.mark.integration
ADMIN = f"arn:aws:iam::{ACCOUNT}:role/Admin"
USERS = [{"subject": "bob", "email": "bob@example.com", "name": "Bob", "groups": ["devs"], "mfa": True},
         {"subject": "carol", "email": "carol@example.com", "name": "Carol", "groups": ["sre-leads"], "mfa": True}]
RULES = [{"name": "prod-admin", "match": {"group": "devs"},
          "grants": [{"account": "sandbox", "role": "Admin",
                      "request": {"approvers": {"group": "sre-leads"}, "max_duration": 7200,
                                  "reason_required": True}}]}]


@pytest.fixture
def two(browser: Any) -> Iterator[tuple[Any, Any]]:  # noqa: F811
    a, b = browser.new_context(), browser.new_context()  # two browsers: no shared cookies
    yield a.new_page(), b.new_page()
    a.close()
    b.close()


def sign_in(page: Any, base: str, user: str) -> None:
    page.goto(f"{base}/login/dev")
    with page.expect_navigation(url=f"{base}/portal"):
        page.click(f"#user-{user}")


def test_requester_and_approver_in_two_browsers(two: tuple[Any, Any], live_bridge: Any, make_settings: Any,
                                                strict_sts_peer: Any) -> None:
    SHOTS.mkdir(parents=True, exist_ok=True)
    base = live_bridge(make_settings(connectors=[{"id": "dev", "type": "dev", "users": USERS}],
                                     mapping={"rules": RULES}))
    bob, carol = two
    sign_in(bob, base, "bob")
    sign_in(carol, base, "carol")

    row = bob.locator("li.requestable", has_text="Admin")
    assert row.get_attribute("data-state") == "request"
    row.locator("a.request-link").click()
    form = bob.locator("form.request-form", has_text="Admin")
    form.locator("textarea[name=reason]").fill("INC-77: payments are down")
    form.locator("select[name=duration]").select_option("1800")
    with bob.expect_navigation():
        form.locator("button.request-submit").click()
    bob.screenshot(path=str(SHOTS / "request-pending.png"), full_page=True)
    assert bob.locator("li.request").get_attribute("data-status") == "pending"

    carol.goto(f"{base}/requests/approve")
    card = carol.locator("section.request", has_text="INC-77: payments are down")
    assert "bob@example.com" in card.inner_text()
    card.locator("input[name=comment]").fill("go ahead")
    carol.screenshot(path=str(SHOTS / "request-approve.png"), full_page=True)
    with carol.expect_navigation():
        card.locator("button.approve").click()
    assert carol.locator("section.request").get_attribute("data-status") == "approved"

    bob.goto(f"{base}/portal")
    assert bob.locator("li.requestable").count() == 0
    role = bob.locator("li.role", has_text="Admin")
    # The approved role's Credentials link, followed in this tab (the portal's own tests cover the
    # new-tab behaviour): typed in, the page asks once, then the credentials come out.
    bob.goto(base + str(role.locator(".k").get_attribute("href")))
    bob.click("#get-creds")
    bob.wait_for_selector("#assumed-arn")
    assert bob.text_content("#assumed-arn") == f"arn:aws:sts::{ACCOUNT}:assumed-role/Admin/bob@example.com"

    bob.goto(f"{base}/requests")
    assert "go ahead" in bob.locator("li.request").inner_text()
    with bob.expect_navigation():
        bob.locator("button.revoke-request").click()
    assert bob.locator("li.request").get_attribute("data-status") == "revoked"
    bob.goto(f"{base}/portal")
    assert bob.locator("li.requestable", has_text="Admin").count() == 1  # may be asked for again
    bob.screenshot(path=str(SHOTS / "request-given-back.png"), full_page=True)


def test_pending_request_shown_not_offered_again_duplicate_explained(
        two: tuple[Any, Any], live_bridge: Any, make_settings: Any, strict_sts_peer: Any) -> None:
    """Issue 23 #2 and its friction: a role with a pending request was offered "Request" again, and pressing
    it gave a bare 400 page; a 403 for a role one may request had no way to request it; approvers saw
    no count of what waits for them; a role held by request looked permanent."""
    import re

    base = live_bridge(make_settings(connectors=[{"id": "dev", "type": "dev", "users": USERS}],
                                     mapping={"rules": RULES}))
    bob, carol = two
    sign_in(bob, base, "bob")
    sign_in(carol, base, "carol")
    assert carol.locator("#to-approve").count() == 0  # nothing waits yet: no link, no count
    # A bookmark of the role, before it is held: the 403 page leads to the request form.
    r = bob.goto(f"{base}/go/sandbox/Admin")
    assert r is not None and r.status == 403
    assert "given on request" in bob.text_content("#error .message")
    with bob.expect_navigation():
        bob.click("#request-role")
    form = bob.locator("form.request-form.chosen", has_text="Admin")
    form.locator("textarea[name=reason]").fill("INC-78: ledger stuck")
    stale = bob.context.new_page()  # a second tab, its form still showing
    stale.goto(f"{base}/requests")
    with bob.expect_navigation():
        form.locator("button.request-submit").click()
    # The role now shows its pending request, not a second Request button — here and on the portal.
    offered = bob.locator("#requestable")
    assert offered.locator("form.request-form").count() == 0
    assert "waiting for an approver" in offered.inner_text()
    bob.goto(f"{base}/portal")
    assert bob.locator("#requestable a.request-link").count() == 0
    assert "waiting for an approver" in bob.locator("#requestable li.requestable").inner_text()
    # The stale tab's Request: a page that says what happened, and nothing new was asked.
    stale.locator("textarea[name=reason]").fill("again")
    with stale.expect_navigation() as nav:
        stale.locator("button.request-submit").click()
    assert nav.value is not None and nav.value.status == 409
    assert stale.text_content("h1") == "Access requests"  # the requests page, not "Bad request"
    note = stale.locator("#request-exists").inner_text()
    assert note.startswith("You already have a pending request for Administrator") and "nothing new was sent" in note
    assert stale.locator("li.request").count() == 1
    # The approver's portal counts what waits for them; approving empties it.
    carol.goto(f"{base}/portal")
    assert carol.locator("#to-approve").inner_text() == "Waiting for your approval: 1"
    with carol.expect_navigation():
        carol.click("#to-approve")
    with carol.expect_navigation():
        carol.locator("section.request button.approve").click()
    carol.goto(f"{base}/portal")
    assert carol.locator("#to-approve").count() == 0
    # The role held by request says until when.
    bob.goto(f"{base}/portal")
    row = bob.locator("#accounts li.role", has_text="Admin")
    until = row.locator("small.until")
    # a time of day, with the date before it when the end falls on another day (a run near midnight)
    shown = until.inner_text()
    assert re.fullmatch(r"by request, until (\d+/\d+/\d+, )?\d\d?:\d\d( [AP]M)?", shown), shown
    active = bob.evaluate("async () => (await (await fetch('/requests', {headers: {Accept: 'application/json'}}))"
                          ".json()).requests[0]")
    assert until.locator("time").get_attribute("data-epoch") == str(active["expires_at"])
