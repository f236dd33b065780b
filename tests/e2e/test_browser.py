"""A real browser (Debian chromium via Playwright) through the pages a person uses.

Screenshots land in test-artifacts/e2e/ (kept by CI on failure).
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import ACCOUNT, OIDC_CONNECTOR, ROOT

pytestmark = pytest.mark.integration
CHROMIUM = "/usr/bin/chromium"
ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
        "--disable-sync", "--no-first-run", "--disable-quic"]
SHOTS = ROOT / "test-artifacts" / "e2e"


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    if not Path(CHROMIUM).exists() or shutil.which("chromium") is None:
        pytest.fail("chromium is not installed: run `make test` (apt-get install chromium)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=ARGS, headless=True)
        yield b
        b.close()


@pytest.fixture
def page(browser: Any) -> Iterator[Any]:
    ctx = browser.new_context()
    pg = ctx.new_page()
    yield pg
    ctx.close()


def test_sign_in_pick_role_get_credentials(page, live_bridge, make_settings, oidc_issuer, strict_sts_peer) -> None:
    SHOTS.mkdir(parents=True, exist_ok=True)
    base = live_bridge(make_settings(connectors=[{"id": OIDC_CONNECTOR, "type": "oidc", "name": "Corp SSO",
                                                  "issuer": oidc_issuer, "client_id": "bridge",
                                                  "client_secret": "bridge-secret"}]))
    page.goto(f"{base}/")
    page.click(f"#idp-{OIDC_CONNECTOR}")
    page.fill("#username", "alice")
    page.fill("#password", "alice-pw")
    with page.expect_navigation(url=f"{base}/portal"):
        page.click("#submit")
    page.screenshot(path=str(SHOTS / "portal.png"), full_page=True)
    assert page.text_content("#who-name") == "Alice Example"
    assert "MFA yes" in page.inner_text("header")
    role = page.locator("li.role", has_text="Administrator")
    role.locator("select.dur").select_option("7200")
    role.locator("button.k").click()
    page.wait_for_selector("#assumed-arn")
    page.screenshot(path=str(SHOTS / "credentials.png"), full_page=True)
    assert page.text_content("#assumed-arn") == f"arn:aws:sts::{ACCOUNT}:assumed-role/Admin/alice@example.com"
    assert "export AWS_SESSION_TOKEN=" in page.text_content("#fmt-env")
    assert '"Version": 1' in page.text_content("#fmt-process")
    assert "in " in (page.text_content(".countdown") or "")  # the countdown script ran (CSP allows it)
    (seen,) = strict_sts_peer.seen
    assert seen.problems == []
    # Why these roles: every rule that matched and why, the resulting roles, the rest folded away.
    page.goto(f"{base}/portal")
    page.click("#to-why")
    page.wait_for_selector("#why-matched")
    page.screenshot(path=str(SHOTS / "why.png"), full_page=True)
    assert "member of group 'aws-admins'" in page.inner_text("li[data-rule=admins]")
    assert "Department=Platform" in page.inner_text(f"li[data-role='arn:aws:iam::{ACCOUNT}:role/Admin']")
    # Sign out from the portal, and the portal sends us back to sign-in.
    page.goto(f"{base}/portal")
    page.click("#sign-out")
    page.wait_for_url(f"{base}/signed-out?connector={OIDC_CONNECTOR}")
    assert page.is_visible("#console-logout") and page.is_visible("#upstream-logout")
    page.goto(f"{base}/portal")
    assert page.url.startswith(f"{base}/?return_to=/portal")


def test_error_page_is_readable(page, live_bridge, make_settings) -> None:
    SHOTS.mkdir(parents=True, exist_ok=True)
    base = live_bridge(make_settings())
    page.goto(f"{base}/callback/dev?state=forged")
    page.screenshot(path=str(SHOTS / "error.png"), full_page=True)
    # A sign-in whose state is gone lands back on the sign-in page, with a note and a way on.
    assert page.text_content("h1") == "Sign in"
    assert "expired, was already used, or was interrupted" in page.text_content(".message")
    assert len(page.text_content("#request-id") or "") == 16
    assert page.is_visible("#idp-dev")
    # Any other failure is an error page with the same parts.
    page.goto(f"{base}/callback/dev")
    assert page.text_content("h1") == "Sign-in could not be completed"
    assert "did not say which sign-in" in page.text_content(".message")
    assert len(page.text_content("#request-id") or "") == 16


def test_saml_sign_in_through_the_pysaml2_idp(page, live_bridge, make_settings, saml_idp, strict_sts_peer) -> None:
    from tests.conftest import SAML_CONNECTOR

    SHOTS.mkdir(parents=True, exist_ok=True)
    rules = [{"name": "admins", "group": "aws-admins", "role_arn": f"arn:aws:iam::{ACCOUNT}:role/Admin",
              "label": "Administrator", "path": "saml", "tags": {"Department": "claims.department"}}]
    base = live_bridge(make_settings(
        connectors=[{"id": SAML_CONNECTOR, "type": "saml", "name": "Corp SAML",
                     "metadata_url": f"{saml_idp.url}/metadata"}], mapping={"rules": rules}))
    # Put the IdP on another site, as in real life (localhost, not 127.0.0.1): its auto-POST to our ACS is
    # then cross-site, the browser withholds our SameSite=Lax sign-in cookie, and the sign-in has to go
    # through the bridge's same-site hop page.
    other_site = saml_idp.url.replace("127.0.0.1", "localhost")

    def to_other_site(route: Any) -> None:  # routes see only the first request of a redirect chain
        resp = route.fetch(max_redirects=0)
        route.fulfill(response=resp, headers={**resp.headers,
                                              "location": resp.headers["location"].replace(saml_idp.url, other_site)})

    page.route(lambda url: url.startswith(f"{base}/login/{SAML_CONNECTOR}"), to_other_site)
    callbacks: list[tuple[str, int]] = []
    page.on("response", lambda r: callbacks.append((r.request.method, r.status)) if "/callback/" in r.url else None)
    page.goto(f"{base}/")
    page.click(f"#idp-{SAML_CONNECTOR}")
    assert page.url.startswith(f"{other_site}/sso/")
    page.fill("#username", "alice")
    page.fill("#password", "alice-pw")
    with page.expect_navigation(url=f"{base}/portal"):  # the IdP's form auto-POSTs to our ACS
        page.click("#submit")
    assert callbacks == [("POST", 200), ("POST", 303)]  # the hop page, then its same-site re-POST
    assert "MFA yes" in page.inner_text("header")
    page.locator("li.role", has_text="Administrator").locator("button.k").click()
    page.wait_for_selector("#assumed-arn")
    page.screenshot(path=str(SHOTS / "saml-credentials.png"), full_page=True)
    assert page.text_content("#assumed-arn") == f"arn:aws:sts::{ACCOUNT}:assumed-role/Admin/alice@example.com"
    (seen,) = strict_sts_peer.seen
    assert seen.action == "AssumeRoleWithSAML" and seen.problems == []


@pytest.mark.parametrize("method", ["federation", "saml_post"])
def test_portal_filter_then_console(method, page, live_bridge, make_settings, oidc_issuer, federation_stub) -> None:
    """Sign in → portal → type in the filter → Console → the stand-in's "signed in" page."""
    SHOTS.mkdir(parents=True, exist_ok=True)
    accounts = {**{f"2000000000{i:02d}": {"alias": f"team-{i}", "label": f"Team {i}"} for i in range(30)},
                ACCOUNT: {"alias": "sandbox", "label": "Sandbox", "roles": {"Admin": {"label": "Administrator"}}}}
    rules = [{"name": "admins", "match": {"group": "aws-admins"},
              "grants": [{"account": "sandbox", "role": "Admin"}]
              + [{"account": f"team-{i}", "role": r} for i in range(30) for r in ("Dev", "ReadOnly")]}]
    base = live_bridge(make_settings(
        connectors=[{"id": OIDC_CONNECTOR, "type": "oidc", "name": "Corp SSO", "issuer": oidc_issuer,
                     "client_id": "bridge", "client_secret": "bridge-secret"}],
        mapping={"accounts": accounts, "rules": rules}, aws={"console_method": method}))
    page.goto(f"{base}/")
    page.click(f"#idp-{OIDC_CONNECTOR}")
    page.fill("#username", "alice")
    page.fill("#password", "alice-pw")
    with page.expect_navigation(url=f"{base}/portal"):
        page.click("#submit")
    assert page.locator("li.role:visible").count() == 61
    page.fill("#filter", "sandbox admin")
    assert page.locator("li.role:visible").count() == 1
    assert page.locator("section.account:visible").count() == 1
    assert page.text_content("#filter-count") == "1 shown"
    page.screenshot(path=str(SHOTS / f"portal-filtered-{method}.png"), full_page=True)
    page.fill("#filter", "team-1")  # team-1 and team-10..19
    assert page.locator("section.account:visible").count() == 11
    page.fill("#filter", "sandbox")
    role = page.locator("li.role:visible", has_text="Administrator")
    role.locator("select.dur").select_option("1800")
    role.locator("button.c").click()
    page.wait_for_selector("#role")
    page.screenshot(path=str(SHOTS / f"console-{method}.png"), full_page=True)
    assert page.url.startswith(federation_stub.url)
    assert page.text_content("#role") == "Admin"
    assert page.text_content("#destination") == "https://console.aws.amazon.com/console/home"
    done = federation_stub.signed_in[-1]
    assert done["via"] == ("federation" if method == "federation" else "saml")
    if method == "federation":
        assert done["duration"] == "1800"
    # back on the portal the role is listed first under Recent
    page.goto(f"{base}/portal")
    assert "Administrator" in page.inner_text("#recent li.role")
