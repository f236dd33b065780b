"""`make screenshots`: the pictures in docs/images/ (README, docs pages), taken from a real bridge in a real browser.

Skipped in the normal test run; BRIDGE_SCREENSHOTS=1 turns it on (the Makefile target sets it).
"""

from __future__ import annotations

import os
from typing import Any

import pytest
import requests

from tests.conftest import ROOT

pytestmark = [pytest.mark.integration,
              pytest.mark.skipif(os.environ.get("BRIDGE_SCREENSHOTS") != "1",
                                 reason="pictures for the README and docs: make screenshots")]
OUT = ROOT / "docs" / "images"
ACCOUNTS = {
    "111111111111": ("Payments", "payments-prod", ["Admin", "Developer", "ReadOnly", "OnCall"]),
    "222222222222": ("Analytics", "analytics", ["DataEngineer", "ReadOnly"]),
    "333333333333": ("Identity", "identity-prod", ["Admin", "ReadOnly", "SecurityAudit"]),
    "444444444444": ("Sandbox", "sandbox", ["Admin", "Developer"]),
    "555555555555": ("Billing", "billing", ["ReadOnly", "BillingViewer"]),
    "666666666666": ("Core network", "network-prod", ["NetworkAdmin", "ReadOnly"]),
    "777777777777": ("Data lake", "datalake", ["Developer", "ReadOnly", "Steward"]),
    "888888888888": ("Search", "search-prod", ["Developer", "ReadOnly"]),
}
LABELS = {"ReadOnly": "Read-only", "OnCall": "On-call (break glass)", "DataEngineer": "Data engineer",
          "SecurityAudit": "Security audit", "BillingViewer": "Billing viewer", "NetworkAdmin": "Network admin"}


def _settings(make_settings: Any) -> Any:
    accounts = {aid: {"alias": alias, "label": label,
                      "roles": {r: {"label": LABELS.get(r, r), "max_session_duration": 43200} for r in roles}}
                for aid, (label, alias, roles) in ACCOUNTS.items()}
    rules = [{"name": "engineers", "match": {"group": "aws-admins"},
              "grants": [{"account": alias, "role": r} for _, (_, alias, roles) in ACCOUNTS.items() for r in roles]}]
    users = [{"subject": "alice", "email": "alice@example.com", "name": "Alice Example", "groups": ["aws-admins"],
              "claims": {"department": "Platform"}, "mfa": True}]
    return make_settings(connectors=[{"id": "corp", "type": "dev", "name": "Example Corp SSO", "users": users}],
                         mapping={"accounts": accounts, "rules": rules}, support="https://help.example.com/aws")


def _sign_in(page: Any, base: str) -> None:
    page.goto(f"{base}/login/corp")
    with page.expect_navigation(url=f"{base}/portal"):
        page.click("#user-alice")


def test_readme_pictures(browser, live_bridge, make_settings) -> None:
    OUT.mkdir(parents=True, exist_ok=True)
    base = live_bridge(_settings(make_settings))
    ctx = browser.new_context(viewport={"width": 1200, "height": 760})
    page = ctx.new_page()
    _sign_in(page, base)
    # A favourite and a recent role, as after a day's use.
    page.locator("details.account[data-a='444444444444'] li.role", has_text="Developer").locator("button.f").click()
    page.wait_for_selector("#favourites li.role")
    with ctx.expect_page() as opened:
        page.locator("details.account[data-a='111111111111'] li.role", has_text="Read-only").locator("a.k").click()
    creds = opened.value
    creds.wait_for_selector("#fmt-env")
    creds.set_viewport_size({"width": 1200, "height": 860})
    creds.screenshot(path=str(OUT / "credentials.png"))
    creds.close()
    page.reload()
    page.evaluate("window.scrollTo(0, 0)")
    page.locator("#filter").blur()
    page.screenshot(path=str(OUT / "portal.png"))
    page.fill("#filter", "read")
    page.screenshot(path=str(OUT / "portal-filtered.png"))
    cookies = ctx.cookies()
    ctx.close()

    for name, opts in (("portal-dark.png", {"viewport": {"width": 1200, "height": 760}, "color_scheme": "dark"}),
                       ("portal-phone.png", {"viewport": {"width": 390, "height": 844}, "is_mobile": True,
                                             "has_touch": True, "device_scale_factor": 2})):
        c = browser.new_context(**opts)
        c.add_cookies(cookies)
        p = c.new_page()
        p.goto(f"{base}/portal")
        p.locator("#filter").blur()
        p.screenshot(path=str(OUT / name))
        if name == "portal-dark.png":
            d = requests.post(f"{base}/oauth/device_authorization", data={"client_id": "bridge-cli"},
                              timeout=10).json()
            p.goto(d["verification_uri_complete"])
            p.set_viewport_size({"width": 1000, "height": 900})
            p.screenshot(path=str(OUT / "device-dark.png"))
        c.close()
    c = browser.new_context(viewport={"width": 1000, "height": 900})
    c.add_cookies(cookies)
    p = c.new_page()
    d = requests.post(f"{base}/oauth/device_authorization", data={"client_id": "bridge-cli"}, timeout=10).json()
    p.goto(d["verification_uri_complete"])
    p.screenshot(path=str(OUT / "device.png"))
    c.close()
