"""What a person sees on the portal, the credentials page and the error pages, in a real browser:
a realistic portal (a dozen accounts of four roles each), a phone, new tabs, reloads, dark mode, and
axe-core finding no accessibility violations."""

from __future__ import annotations

import json
import re
import time
from typing import Any

import pytest

from tests.conftest import PEERS
from tests.e2e.conftest import SHOTS

pytestmark = pytest.mark.integration

ROLES = ("Admin", "Developer", "ReadOnly", "Billing")
# Labels out of alphabetical order on purpose: the portal sorts accounts by the name it shows.
LABELS = ["Payments", "Analytics", "Zeta Labs", "Identity", "Marketing", "Billing Platform", "Core Network",
          "Data Lake", "Edge", "Warehouse", "Growth", "Search"]
ACCOUNTS = {f"3000000000{i:02d}": {"alias": f"acct-{i:02d}", "label": label} for i, label in enumerate(LABELS)}
AXE = PEERS / "node_modules" / "axe-core" / "axe.min.js"


def large_settings(make_settings: Any, **overrides: Any) -> Any:
    rules = [{"name": "everyone-admins", "match": {"group": "aws-admins"},
              "grants": [{"account": a["alias"], "role": r} for a in ACCOUNTS.values() for r in ROLES]}]
    return make_settings(mapping={"accounts": ACCOUNTS, "rules": rules}, **overrides)


def sign_in(page: Any, base: str, user: str = "alice") -> None:
    page.goto(f"{base}/login/dev")
    with page.expect_navigation(url=f"{base}/portal"):
        page.click(f"#user-{user}")


def visible_rows(page: Any, scope: str = "#accounts") -> list[str]:
    rows = page.locator(f"{scope} li.role")
    return [rows.nth(i).locator("a").first.text_content() for i in range(rows.count()) if rows.nth(i).is_visible()]


def axe_violations(page: Any, base: str) -> list[dict[str, Any]]:
    """Run axe-core in the page, served from the page's own origin (the CSP stays on)."""
    page.route(f"{base}/__axe.js", lambda route: route.fulfill(body=AXE.read_text(), content_type="text/javascript"))
    page.add_script_tag(url=f"{base}/__axe.js")
    result = page.evaluate("async () => (await axe.run(document, {resultTypes: ['violations']})).violations")
    return [{"id": v["id"], "help": v["help"], "nodes": [n["target"] for n in v["nodes"]][:5]} for v in result]


def test_filter_hides_rows_and_enter_opens_the_top_one(page, live_bridge, make_settings, federation_stub) -> None:
    SHOTS.mkdir(parents=True, exist_ok=True)
    base = live_bridge(large_settings(make_settings))
    sign_in(page, base)
    # Accounts sorted by the name shown, each with its role count.
    heads = page.locator("details.account summary h2").all_text_contents()
    assert heads == sorted(LABELS, key=str.lower)
    assert page.locator("details.account").first.locator(".count").inner_text() == "4 roles"
    assert len(visible_rows(page)) == 48
    page.fill("#filter", "ReadOnly")
    shown = visible_rows(page)
    assert shown == ["ReadOnly"] * 12, shown  # what is on screen, not only what the counter says
    assert page.text_content("#filter-count") == "12 roles shown"
    # Across account name, alias, id and role.
    for query, want in (("zeta billing", ["Billing"]), ("acct-07 admin", ["Admin"]), ("300000000003", sorted(ROLES)),
                        ("data lake dev", ["Developer"])):
        page.fill("#filter", query)
        assert visible_rows(page) == want, query
        assert page.locator("details.account:visible").count() == 1
    page.screenshot(path=str(SHOTS / "portal-large-filtered.png"), full_page=True)
    # Enter opens the row on top of the screen, in a new tab.
    page.fill("#filter", "readonly")
    top_account = sorted(LABELS, key=str.lower)[0]
    alias = next(a["alias"] for a in ACCOUNTS.values() if a["label"] == top_account)
    with page.context.expect_page() as opened:
        page.press("#filter", "Enter")
    console = opened.value
    console.wait_for_selector("#role")
    assert console.text_content("#role") == "ReadOnly"
    assert federation_stub.signed_in[-1]["arn"].startswith(f"arn:aws:sts::{_account_of(alias)}:assumed-role/ReadOnly/")
    assert page.url == f"{base}/portal"
    # Real links: Ctrl-click and middle-click open a background tab, and the portal stays.
    for how in ({"modifiers": ["Control"]}, {"button": "middle"}):
        with page.context.expect_page() as opened:
            page.locator("li.role:visible a.k").first.click(**how)
        opened.value.wait_for_selector("#assumed-arn")
        assert page.url == f"{base}/portal"
    # `/` brings the filter back; Escape clears it.
    page.click("h1")
    page.keyboard.press("/")
    assert page.evaluate("document.activeElement.id") == "filter"
    page.keyboard.press("Escape")
    assert len(visible_rows(page)) == 48


def _account_of(alias: str) -> str:
    return next(k for k, v in ACCOUNTS.items() if v["alias"] == alias)


def test_favourites_and_recent_update_without_reload(page, live_bridge, make_settings, federation_stub) -> None:
    base = live_bridge(large_settings(make_settings))
    sign_in(page, base)
    assert not page.is_visible("#favourites")
    star = page.locator("details.account[data-a='300000000004'] li.role", has_text="Developer").locator("button.f")
    star.click()
    page.wait_for_selector("#favourites li.role")
    assert star.get_attribute("aria-pressed") == "true"
    assert visible_rows(page, "#favourites") == ["Developer"]
    page.fill("#filter", "marketing developer")
    assert page.text_content("#filter-count") == "1 role shown"  # the favourite is not counted twice
    assert visible_rows(page, "#favourites") == ["Developer"]
    page.fill("#filter", "readonly")
    assert not page.is_visible("#favourites")
    page.fill("#filter", "")
    # Credentials: a new tab, and the role is under Recent at once.
    with page.context.expect_page() as opened:
        page.locator("details.account[data-a='300000000001'] li.role", has_text="Admin").locator("a.k").click()
    opened.value.wait_for_selector("#assumed-arn")
    assert visible_rows(page, "#recent") == ["Admin"]
    page.reload()
    assert visible_rows(page, "#favourites") == ["Developer"] and visible_rows(page, "#recent") == ["Admin"]
    page.locator("#favourites button.f").click()
    page.wait_for_selector("#favourites", state="hidden")
    assert page.locator("button.f[aria-pressed=true]").count() == 0


@pytest.mark.parametrize("where", ["portal", "credentials"])
def test_phone_width_no_sideways_scroll(where, browser, live_bridge, make_settings) -> None:
    SHOTS.mkdir(parents=True, exist_ok=True)
    base = live_bridge(large_settings(make_settings))
    ctx = browser.new_context(viewport={"width": 390, "height": 844}, device_scale_factor=2, is_mobile=True,
                              has_touch=True)
    page = ctx.new_page()
    try:
        sign_in(page, base)
        page.click("details.account summary")  # collapsible
        assert page.locator("details.account").first.get_attribute("open") is None
        page.click("details.account summary")
        if where == "credentials":
            page.goto(f"{base}/credentials/{page.locator('li.role').first.get_attribute('data-g')}")
            page.click("#get-creds")  # typed, not a click on the portal: one more click
            page.wait_for_selector("#assumed-arn")
        page.screenshot(path=str(SHOTS / f"phone-{where}.png"))
        assert page.evaluate("document.scrollingElement.scrollWidth <= window.innerWidth"), \
            page.evaluate("[document.scrollingElement.scrollWidth, window.innerWidth]")
        outside = page.evaluate("""() => {
          const bad = [];
          for (const el of document.querySelectorAll('button, a.btn, a.button, select, input')) {
            if (!el.checkVisibility()) continue;
            const card = el.closest('.card, header'); if (!card) continue;
            const r = el.getBoundingClientRect(), c = card.getBoundingClientRect();
            if (r.left < c.left - 0.5 || r.right > c.right + 0.5 || r.right > window.innerWidth)
              bad.push(`${el.className} ${el.textContent.trim().slice(0, 20)} ${r.left}-${r.right} in ${c.right}`);
          }
          return bad;
        }""")
        assert outside == []
        header = page.locator("header.top").bounding_box()
        assert header is not None and header["height"] <= 100  # two short lines at most, not five
    finally:
        ctx.close()


def test_credentials_page_is_a_page(page, browser, live_bridge, make_settings, monkeypatch) -> None:
    """POST issues and redirects to a GET page: reload is a GET, the URL works in another tab of the same
    session, not in another session; once expired, no secrets and a Refresh button."""
    from bridge.core import credview

    base = live_bridge(make_settings())
    sign_in(page, base)
    with page.context.expect_page() as opened:
        page.locator("li.role", has_text="Administrator").locator("a.k").click()
    creds = opened.value
    creds.wait_for_selector("#assumed-arn")
    url = creds.url
    assert re.fullmatch(rf"{base}/credentials/view/[A-Za-z0-9_-]{{22}}", url)
    key = creds.text_content("#fmt-env")
    assert "AWS_SECRET_ACCESS_KEY" in key and "SECRET" not in url
    methods: list[str] = []
    creds.on("request", lambda r: methods.append(f"{r.method} {r.url}") if "/credentials/" in r.url else None)
    resp = creds.reload()
    assert resp is not None and resp.status == 200 and resp.headers["cache-control"] == "no-store"
    assert methods == [f"GET {url}"]
    assert creds.text_content("#fmt-env") == key
    # A new tab of the same session.
    again = page.context.new_page()
    again.goto(url)
    assert again.text_content("#fmt-env") == key
    # Another session (another browser profile, the same user): nothing.
    other = browser.new_context()
    try:
        op = other.new_page()
        sign_in(op, base)
        r = op.goto(url)
        assert r is not None and r.status == 404
        assert op.text_content("h1") == "These credentials are not here"
        assert "AWS_SECRET" not in op.content()
        assert op.text_content("#back") == "Back to your roles"
    finally:
        other.close()
    # Tabs: a real tablist.
    assert creds.get_attribute("#tab-env", "aria-selected") == "true" and creds.is_visible("#panel-env")
    creds.focus("#tab-env")
    creds.keyboard.press("ArrowRight")
    assert creds.get_attribute("#tab-fish", "aria-selected") == "true"
    assert creds.evaluate("document.activeElement.id") == "tab-fish"
    assert creds.is_visible("#panel-fish") and not creds.is_visible("#panel-env")
    creds.keyboard.press("End")
    assert creds.get_attribute("#tab-config", "aria-selected") == "true"
    # Later: expired. The page shows no secret any more, and Refresh (a POST) gets new ones.
    monkeypatch.setattr(credview, "now", lambda: time.time() + 13 * 3600)
    creds.reload()
    assert creds.is_visible("#expired") and creds.locator("#fmt-env").count() == 0
    assert "AWS_SECRET" not in creds.content()
    monkeypatch.undo()
    creds.click("#refresh")
    creds.wait_for_selector("#fmt-env")
    assert creds.url != url and creds.url.startswith(f"{base}/credentials/view/")
    creds.go_back()
    assert creds.url == url  # Back is the earlier page, a GET


def test_credentials_expire_in_an_open_page(page, live_bridge, make_settings) -> None:
    base = live_bridge(make_settings())
    sign_in(page, base)
    page.goto(f"{base}/credentials/{page.locator('li.role').first.get_attribute('data-g')}")
    page.click("#get-creds")
    page.wait_for_selector("#fmt-env")
    page.evaluate("document.querySelector('.countdown').dataset.epoch = String(Date.now() / 1000 + 1)")
    page.wait_for_selector("#expired", state="visible", timeout=5000)
    assert page.locator("#fmt-env").count() == 0 and page.is_visible("#refresh")


def test_error_pages_and_idp_sso(page, live_bridge, make_settings) -> None:
    base = live_bridge(make_settings(support="aws-help@example.com"))
    # Not signed in: a wrong address offers sign-in; /idp/sso (our IdP metadata's SSO URL) signs in first.
    r = page.goto(f"{base}/no/such/page")
    assert r is not None and r.status == 404
    assert page.text_content("h1") == "Page not found" and page.text_content("#back") == "Back to sign-in"
    page.goto(f"{base}/idp/sso")
    assert page.url.startswith(f"{base}/dev-login/dev")
    with page.expect_navigation(url=f"{base}/portal"):
        page.click("#user-alice")
    # Signed in: back to the roles, not to sign-in; 405 is the bridge's page.
    r = page.goto(f"{base}/no/such/page")
    assert r is not None and r.status == 404 and page.text_content("#back") == "Back to your roles"
    r = page.goto(f"{base}/console/0123456789abcdef")
    assert r is not None and r.status == 405
    assert page.text_content("h1") == "This page cannot be opened like this"
    assert "Method Not Allowed" not in page.content()
    page.goto(f"{base}/idp/sso")
    assert page.url == f"{base}/portal"
    # Refused: the support contact is offered.
    r = page.goto(f"{base}/go/123456789012/NotMine")
    assert r is not None and r.status == 403
    assert page.get_attribute("#support a", "href") == "mailto:aws-help@example.com"


def test_no_roles_shows_support(page, live_bridge, make_settings) -> None:
    base = live_bridge(make_settings(support="https://help.example.com/aws"))
    sign_in(page, base, "carol")
    assert page.is_visible("#no-roles")
    assert page.get_attribute("#support", "href") == "https://help.example.com/aws"


@pytest.mark.parametrize("scheme", ["light", "dark"])
def test_axe_finds_no_violations(scheme, browser, live_bridge, make_settings) -> None:
    import requests

    base = live_bridge(large_settings(make_settings))
    ctx = browser.new_context(color_scheme=scheme)
    page = ctx.new_page()
    found: dict[str, Any] = {}
    try:
        page.goto(f"{base}/")
        found["sign-in"] = axe_violations(page, base)
        page.goto(f"{base}/no/such/page")
        found["error"] = axe_violations(page, base)
        sign_in(page, base)
        page.locator("li.role button.f").first.click()
        page.wait_for_selector("#favourites li.role")
        found["portal"] = axe_violations(page, base)
        page.fill("#filter", "readonly")
        found["portal filtered"] = axe_violations(page, base)
        page.goto(f"{base}/credentials/{page.locator('li.role').first.get_attribute('data-g')}")
        page.click("#get-creds")
        page.wait_for_selector("#fmt-env")
        found["credentials"] = axe_violations(page, base)
        page.goto(f"{base}/portal/why")
        found["why"] = axe_violations(page, base)
        d = requests.post(f"{base}/oauth/device_authorization", data={"client_id": "bridge-cli"}, timeout=10).json()
        page.goto(d["verification_uri_complete"])
        found["device"] = axe_violations(page, base)
    finally:
        ctx.close()
    bad = {k: v for k, v in found.items() if v}
    assert not bad, json.dumps(bad, indent=1)


def _contrast(a: str, b: str) -> float:
    def lum(rgb: str) -> float:
        parts = [int(x) / 255 for x in re.findall(r"\d+", rgb)[:3]]
        lin = [c / 12.92 if c <= 0.04045 else ((c + 0.055) / 1.055) ** 2.4 for c in parts]
        return 0.2126 * lin[0] + 0.7152 * lin[1] + 0.0722 * lin[2]
    hi, lo = sorted((lum(a), lum(b)), reverse=True)
    return (hi + 0.05) / (lo + 0.05)


@pytest.mark.parametrize("scheme", ["light", "dark"])
def test_star_contrast_and_default_tab_for_windows(scheme, browser, live_bridge, make_settings) -> None:
    base = live_bridge(make_settings())
    ctx = browser.new_context(color_scheme=scheme)
    # Windows, as far as the page can tell (an init script runs before the page's own, CSP or not).
    ctx.add_init_script("Object.defineProperty(navigator, 'platform', { get: () => 'Win32' });"
                        "Object.defineProperty(navigator, 'userAgentData', { get: () => ({ platform: 'Windows' }) });")
    page = ctx.new_page()
    try:
        sign_in(page, base)
        star = page.locator("li.role button.f").first
        for pressed in ("false", "true"):
            assert star.get_attribute("aria-pressed") == pressed
            fg, bg = star.evaluate("b => [getComputedStyle(b).color, getComputedStyle(b).backgroundColor]")
            assert _contrast(fg, bg) >= 3, (pressed, fg, bg)  # WCAG 1.4.11: 3:1 for a control's state
            star.click()
            page.wait_for_function(f"() => document.querySelector('li.role button.f').getAttribute('aria-pressed') "
                                   f"!== '{pressed}'")
        page.goto(f"{base}/credentials/{page.locator('li.role').first.get_attribute('data-g')}")
        page.click("#get-creds")
        page.wait_for_selector("[role=tablist]")
        assert page.get_attribute("#tab-powershell", "aria-selected") == "true"
        assert page.is_visible("#panel-powershell") and not page.is_visible("#panel-env")
    finally:
        ctx.close()


def test_account_heading_names_each_account_once(page, live_bridge, make_settings) -> None:
    """Issue 23 #4: an account without a label showed its id twice in its card's heading (and one with
    only an alias, the alias twice). What a person reads in each heading names each thing once."""
    accounts = {"111111111111": {"alias": "tools"}, "222222222222": {"alias": "ops", "label": "Operations"}}
    rules = [{"name": "all", "match": {"group": "aws-admins"}, "grants": [
        {"role_arn": "arn:aws:iam::333333333333:role/Admin"}, {"account": "tools", "role": "Admin"},
        {"account": "ops", "role": "Admin"}]}]
    base = live_bridge(make_settings(mapping={"accounts": accounts, "rules": rules}))
    sign_in(page, base)
    heads = {d.get_attribute("data-a"): d.locator("summary").inner_text().split() for d in
             page.locator("details.account").all()}
    assert heads["333333333333"] == ["333333333333", "1", "role"], heads
    assert heads["111111111111"] == ["tools", "111111111111", "1", "role"], heads
    assert heads["222222222222"] == ["Operations", "222222222222", "·", "ops", "1", "role"], heads
    page.fill("#filter", "333333333333")  # the id is still what the filter finds the account by
    assert visible_rows(page) == ["Admin"]
    page.fill("#filter", "tools")
    assert page.locator("details.account:visible").count() == 1


def test_each_accounts_role_count_follows_the_filter(page, live_bridge, make_settings) -> None:
    """Issue 23 #5: each account's count said "4 roles" over the one row the filter left."""
    def count_of(card: Any) -> str:
        # Its text: a card off screen is not laid out (content-visibility: auto), so innerText is empty.
        count = card.locator(".count")
        assert count.is_visible()
        return str(count.text_content())

    base = live_bridge(large_settings(make_settings))
    sign_in(page, base)
    zeta = page.locator("details.account", has_text="Zeta Labs")
    assert count_of(zeta) == "4 roles"
    page.locator("#filter").press_sequentially("zeta bill")
    assert visible_rows(page) == ["Billing"]
    assert count_of(zeta) == "1 of 4 roles"
    page.fill("#filter", "zeta")  # the account's own name: all of its roles
    assert count_of(zeta) == "4 roles"
    page.fill("#filter", "admin")
    counts = page.locator("details.account:visible .count").all_text_contents()
    assert counts == ["1 of 4 roles"] * 12, counts
    page.keyboard.press("Escape")
    assert page.locator("details.account .count").all_text_contents() == ["4 roles"] * 12
