"""The "Why these roles?" page in a real browser (Debian chromium via Playwright): what it says about
roles a rule withholds but the user holds all the same, and its header."""

from __future__ import annotations

from typing import Any

import pytest

from tests.e2e.test_access_requests_browser import sign_in

pytestmark = pytest.mark.integration
USERS = [{"subject": "alice", "email": "alice@example.com", "name": "Alice", "groups": ["aws-admins", "aws-readonly"],
          "mfa": True},
         {"subject": "bob", "email": "bob@example.com", "name": "Bob", "groups": ["aws-readonly"], "mfa": False},
         {"subject": "carol", "email": "carol@example.com", "name": "Carol", "groups": ["sre-leads"], "mfa": True}]
# As in the demo: admins hold Admin; read-only users (alice is one too) may request it.
RULES = [{"name": "admins", "match": {"group": "aws-admins"}, "grants": [{"account": "sandbox", "role": "Admin"}]},
         {"name": "admin-on-request", "match": {"group": "aws-readonly"},
          "grants": [{"account": "sandbox", "role": "Admin", "request": {"approvers": {"group": "sre-leads"}}}]},
         {"name": "deployers", "match": {"group": "aws-readonly"},
          "grants": [{"account": "sandbox", "role": "Deploy", "mfa_required": True}]}]


@pytest.fixture
def base(live_bridge: Any, make_settings: Any) -> str:
    return str(live_bridge(make_settings(connectors=[{"id": "dev", "type": "dev", "users": USERS}],
                                         mapping={"rules": RULES}, admin={"groups": ["aws-admins"]})))


def withheld_text(page: Any, role: str) -> str:
    if page.locator("#why-grants details").get_attribute("open") is None:  # open already when a role is withheld
        page.click("#why-grants summary")
    return str(page.locator("#why-withheld li", has_text=f"role/{role}").inner_text())


def test_a_role_held_is_not_called_held_back(browser: Any, base: str) -> None:
    """Issue 23 #3: alice holds Admin (rule admins), yet the page said a role "was held back" because
    the on-request rule for read-only users withholds it from her; bob's Admin, activated by an approved
    request, was not among his roles at all."""
    alice = browser.new_context().new_page()
    sign_in(alice, base, "alice")
    alice.goto(f"{base}/portal/why")
    summary = alice.locator("#why-summary").inner_text()
    assert "held back" not in summary, summary
    assert "Administrator in Sandbox, because you are a member of group 'aws-admins'." in summary
    assert "You hold this role all the same: rule 'admins' gives it." in withheld_text(alice, "Admin")

    bob, carol = browser.new_context().new_page(), browser.new_context().new_page()
    sign_in(bob, base, "bob")
    bob.goto(f"{base}/portal/why")
    assert bob.text_content("#why-held-back") == "2 roles were held back: see the details below."
    assert "You hold" not in withheld_text(bob, "Admin")
    bob.goto(f"{base}/requests")
    with bob.expect_navigation():
        bob.locator("form.request-form", has_text="Admin").locator("button.request-submit").click()
    sign_in(carol, base, "carol")
    carol.goto(f"{base}/requests/approve")
    with carol.expect_navigation():
        carol.locator("section.request button.approve").click()
    bob.goto(f"{base}/portal/why")
    summary = bob.locator("#why-summary").inner_text()
    assert "You have 1 role" in summary
    assert "Administrator in Sandbox, by an approved access request (rule admin-on-request)." in summary
    assert bob.text_content("#why-held-back") == "1 role was held back: see the details below."  # Deploy: MFA
    assert "You hold this role all the same: by an approved access request." in withheld_text(bob, "Admin")
    assert "You hold" not in withheld_text(bob, "Deploy")


def test_the_header_of_the_why_page_has_no_stray_separator(page: Any, base: str) -> None:
    """Issue 23 #6: for admins the header showed a lone "·" between its two links, far from both."""
    sign_in(page, base, "alice")
    page.goto(f"{base}/portal/why")
    header = page.locator("header.top")
    assert "·" not in header.inner_text()
    back = header.get_by_role("link", name="Back to your roles").bounding_box()
    admin = header.get_by_role("link", name="Explain any identity").bounding_box()
    assert back and admin and 0 < admin["x"] - (back["x"] + back["width"]) < 48  # side by side, as one group
