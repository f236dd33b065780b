"""A large portal in a real browser (issue 27 #4): 150 accounts of four roles come as collapsed cards
without their rows; a card's rows load when it is opened (mouse or keyboard), and the filter still
finds a role in an account nobody opened. What a person sees is asserted: the visible rows."""

from __future__ import annotations

from typing import Any

import pytest

from bridge.web.portal_html import INLINE_ROWS
from tests.e2e.conftest import SHOTS
from tests.e2e.test_portal_ui import axe_violations, sign_in, visible_rows

pytestmark = pytest.mark.integration

ROLES = ("Admin", "Developer", "ReadOnly", "Billing")
ACCOUNTS = {f"4000000{i:05d}": {"alias": f"team-{i:03d}", "label": f"Team {i:03d}"} for i in range(150)}
ACCOUNTS["400000099999"] = {"alias": "zeta", "label": "Zeta Labs"}


def many_settings(make_settings: Any) -> Any:
    rules = [{"name": "everyone-admins", "match": {"group": "aws-admins"},
              "grants": [{"account": a["alias"], "role": r} for a in ACCOUNTS.values() for r in ROLES]}]
    return make_settings(mapping={"accounts": ACCOUNTS, "rules": rules})


def card(page: Any, label: str) -> Any:
    return page.locator("details.account", has=page.locator("summary h2", has_text=label))


def disclosure(page: Any, label: str) -> tuple[str, bool]:
    """The accessible name and expanded state of an account's summary, from Chromium's accessibility tree."""
    cdp = page.context.new_cdp_session(page)
    try:
        found = [(n["name"]["value"], {p["name"]: p["value"]["value"] for p in n.get("properties", [])})
                 for n in cdp.send("Accessibility.getFullAXTree")["nodes"]
                 if n.get("role", {}).get("value") == "DisclosureTriangle"
                 and str(n.get("name", {}).get("value", "")).startswith(f"{label} ")]
    finally:
        cdp.detach()
    assert len(found) == 1, found
    return found[0][0], bool(found[0][1].get("expanded"))


def test_collapsed_accounts_and_the_filter_finds_a_role_in_one(page, live_bridge, make_settings,
                                                                federation_stub) -> None:
    assert len(ACCOUNTS) * len(ROLES) > INLINE_ROWS
    base = live_bridge(many_settings(make_settings))
    fetched: list[str] = []
    page.on("request", lambda r: fetched.append(r.url) if "/portal/rows" in r.url else None)
    sign_in(page, base)
    assert page.locator("details.account").count() == 151
    assert page.locator("details.account[open]").count() == 0
    assert page.locator("#accounts li.role").count() == 0  # no row was sent with the page
    assert page.locator("details.account").first.locator(".count").text_content() == "4 roles"
    # A role in an account nobody opened: typed as a person types.
    page.locator("#filter").press_sequentially("team-042 readonly")
    page.wait_for_function("() => document.getElementById('filter-count').textContent === '1 role shown'")
    assert visible_rows(page) == ["ReadOnly"]
    assert page.locator("details.account:visible").count() == 1
    assert card(page, "Team 042").get_attribute("open") == ""
    assert fetched == [f"{base}/portal/rows"]  # every account's rows, once, at the first keystroke
    # Across every account, by role; and by account name.
    page.fill("#filter", "billing")
    assert visible_rows(page) == ["Billing"] * 151
    assert page.text_content("#filter-count") == "151 roles shown"
    page.fill("#filter", "zeta")
    assert visible_rows(page) == sorted(ROLES)
    assert card(page, "Zeta Labs").locator(".count").text_content() == "4 roles"
    # Enter opens the top row (its buttons are there although the card was opened by the filter).
    page.fill("#filter", "zeta dev")
    with page.context.expect_page() as opened:
        page.press("#filter", "Enter")
    opened.value.wait_for_selector("#role")
    assert opened.value.text_content("#role") == "Developer"
    assert federation_stub.signed_in[-1]["arn"].startswith("arn:aws:sts::400000099999:assumed-role/Developer/")
    # Escape: every account back, and those the filter opened collapsed again.
    page.keyboard.press("Escape")
    assert page.locator("details.account:visible").count() == 151
    assert page.locator("details.account[open]").count() == 0
    assert visible_rows(page) == []
    assert fetched == [f"{base}/portal/rows"]


def test_an_account_opened_by_keyboard_loads_its_rows_and_says_so(page, live_bridge, make_settings) -> None:
    base = live_bridge(many_settings(make_settings))
    sign_in(page, base)
    summary = card(page, "Team 007").locator("summary")
    # What a screen reader is told: the account, its id, alias and role count, collapsed; then expanded.
    assert disclosure(page, "Team 007") == ("Team 007 400000000007 · team-007 4 roles", False)
    summary.focus()
    page.keyboard.press("Enter")
    team7 = card(page, "Team 007")
    team7.locator("li.role .acts").first.wait_for()
    assert disclosure(page, "Team 007") == ("Team 007 400000000007 · team-007 4 roles", True)
    assert visible_rows(page) == sorted(ROLES)
    assert team7.locator("ul.roles").get_attribute("aria-busy") is None
    assert [b.get_attribute("aria-label") for b in team7.locator("button.f").all()] == [
        f"Favourite: {r}" for r in sorted(ROLES)]
    assert axe_violations(page, base) == []
    page.keyboard.press("Tab")  # into the rows: the first role's link
    assert page.evaluate("document.activeElement.textContent") == "Admin"
    # A favourite from a card that loaded on open: listed (and found by the filter) after a reload too.
    team7.locator("li.role", has_text="Developer").locator("button.f").click()
    page.wait_for_selector("#favourites li.role")
    assert page.locator("#favourites small.in").text_content() == "in Team 007"
    page.reload()
    assert visible_rows(page, "#favourites") == ["Developer"]
    page.fill("#filter", "team-007 dev")
    page.wait_for_function("() => document.getElementById('filter-count').textContent === '1 role shown'")
    assert visible_rows(page, "#favourites") == ["Developer"] and visible_rows(page) == ["Developer"]
    page.keyboard.press("Escape")
    # Collapsing by keyboard again.
    summary = card(page, "Team 000").locator("summary")
    summary.focus()
    page.keyboard.press(" ")
    card(page, "Team 000").locator("li.role").first.wait_for()
    page.keyboard.press(" ")
    assert card(page, "Team 000").get_attribute("open") is None


def test_rows_that_cannot_be_loaded_say_what_to_do(page, live_bridge, make_settings) -> None:
    """The sign-in ended in another tab: opening a card shows why there are no rows, not a sign-in page."""
    base = live_bridge(many_settings(make_settings))
    sign_in(page, base)
    other = page.context.new_page()
    other.goto(f"{base}/portal")
    other.click("#sign-out")
    team3 = card(page, "Team 003")
    team3.locator("summary").click()
    page.wait_for_function("() => document.getElementById('announce').textContent.includes('Could not load')")
    assert team3.locator("li.role").count() == 0
    assert team3.locator("li.lazy a").text_content() == "Could not load these roles: open this link to try again"
    assert team3.locator("ul.roles").get_attribute("aria-busy") is None
    assert "Sign in" not in team3.inner_text()


def test_without_script_an_account_opens_by_its_link(browser, live_bridge, make_settings) -> None:
    base = live_bridge(many_settings(make_settings))
    ctx = browser.new_context(java_script_enabled=False)
    page = ctx.new_page()
    try:
        sign_in(page, base)
        card(page, "Team 011").locator("summary").click()
        page.click("details.account[open] li.lazy a")
        assert page.url == f"{base}/portal?open=400000000011#open"
        assert page.locator("details.account[open]").count() == 1
        assert visible_rows(page) == sorted(ROLES)
    finally:
        ctx.close()


def test_phone_width_with_many_accounts(browser, live_bridge, make_settings) -> None:
    SHOTS.mkdir(parents=True, exist_ok=True)
    base = live_bridge(many_settings(make_settings))
    ctx = browser.new_context(viewport={"width": 390, "height": 844}, device_scale_factor=2, is_mobile=True,
                              has_touch=True)
    page = ctx.new_page()
    try:
        sign_in(page, base)
        card(page, "Team 001").locator("summary").click()
        card(page, "Team 001").locator("li.role .acts").first.wait_for()
        page.locator("#filter").press_sequentially("team-120 bill")
        page.wait_for_function("() => document.getElementById('filter-count').textContent === '1 role shown'")
        assert visible_rows(page) == ["Billing"]
        page.screenshot(path=str(SHOTS / "phone-portal-many-accounts.png"))
        assert page.evaluate("document.scrollingElement.scrollWidth <= window.innerWidth"), \
            page.evaluate("[document.scrollingElement.scrollWidth, window.innerWidth]")
        page.keyboard.press("Escape")
        assert visible_rows(page) == sorted(ROLES)  # the account the person opened stays open
    finally:
        ctx.close()
