"""A real browser (Debian chromium via Playwright) through the pages a person uses.

Screenshots land in test-artifacts/e2e/ (kept by CI on failure).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import ACCOUNT, OIDC_CONNECTOR
from tests.e2e.conftest import SHOTS

pytestmark = pytest.mark.integration


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
    with page.context.expect_page() as opened:  # Credentials opens in a new tab; the portal stays
        role.locator("a.k").click()
    portal_page, page = page, opened.value
    page.wait_for_selector("#assumed-arn")
    assert portal_page.url == f"{base}/portal"
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
    # Plain words first; the rule details are folded away until asked for.
    assert "Administrator in Sandbox, because you are a member of group 'aws-admins'" in page.inner_text("#why-summary")
    assert not page.is_visible("li[data-rule=admins]")
    page.click("#why-matched summary")
    page.click("#why-grants summary")
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
    with page.context.expect_page() as opened:
        page.locator("li.role", has_text="Administrator").locator("a.k").click()
    page = opened.value
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
    assert page.locator("details.account:visible").count() == 1
    assert page.text_content("#filter-count") == "1 role shown"
    page.screenshot(path=str(SHOTS / f"portal-filtered-{method}.png"), full_page=True)
    page.fill("#filter", "team-1")  # team-1 and team-10..19
    assert page.locator("details.account:visible").count() == 11
    page.fill("#filter", "sandbox")
    role = page.locator("li.role:visible", has_text="Administrator")
    role.locator("select.dur").select_option("1800")
    with page.context.expect_page() as opened:  # the console opens in a new tab; the portal stays
        role.locator("a.c").click()
    portal_page, page = page, opened.value
    page.wait_for_selector("#role")
    assert portal_page.url == f"{base}/portal"
    page.screenshot(path=str(SHOTS / f"console-{method}.png"), full_page=True)
    assert page.url.startswith(federation_stub.url)
    assert page.text_content("#role") == "Admin"
    assert page.text_content("#destination") == "https://console.aws.amazon.com/console/home"
    done = federation_stub.signed_in[-1]
    assert done["via"] == ("federation" if method == "federation" else "saml")
    if method == "federation":
        assert done["duration"] == "1800"
    # back on the portal the role is listed first under Recent, at once and after a reload
    assert "Administrator" in portal_page.inner_text("#recent li.role")
    portal_page.reload()
    assert "Administrator" in portal_page.inner_text("#recent li.role")


@pytest.fixture
def other_site(tmp_path: Path) -> Iterator[Any]:
    """A page on another origin (127.0.0.2: another site, not only another port), stopped by the fixture."""
    import functools
    import http.server
    import threading

    from bridge.runtime.localredis import free_port

    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(tmp_path))
    srv = http.server.ThreadingHTTPServer(("127.0.0.2", free_port()), handler)
    threading.Thread(target=srv.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
    srv.url = f"http://127.0.0.2:{srv.server_address[1]}"  # type: ignore[attr-defined]
    srv.dir = tmp_path  # type: ignore[attr-defined]
    yield srv
    srv.shutdown()
    srv.server_close()


def test_go_link_from_another_site_needs_a_click(page, live_bridge, make_settings, federation_stub,
                                                 other_site) -> None:
    """Attack: another site links to /go with its own duration and destination; the console sign-in must
    not happen until the user presses the button (a link on the bridge's own pages still goes straight)."""
    SHOTS.mkdir(parents=True, exist_ok=True)
    base = live_bridge(make_settings())
    link = f"{base}/go/sandbox/Admin?duration=43200&destination=/iam/home&auto=1"
    (other_site.dir / "index.html").write_text(f'<!doctype html><a id="lure" href="{link}">cat pictures</a>')
    page.goto(f"{base}/login/dev")
    with page.expect_navigation(url=f"{base}/portal"):
        page.click("#user-alice")
    page.goto(f"{other_site.url}/index.html")
    page.click("#lure")
    page.wait_for_selector("#go-confirm")
    page.wait_for_timeout(1500)  # time for any auto-submit to have happened
    page.screenshot(path=str(SHOTS / "go-confirm.png"), full_page=True)
    assert page.url.startswith(f"{base}/go/sandbox/Admin")
    assert not federation_stub.signed_in
    assert "12 h" in page.text_content("#confirm-duration")
    assert page.text_content("#confirm-destination") == "https://console.aws.amazon.com/iam/home"
    assert "Administrator" in page.text_content("#confirm-role")
    page.click("#go-console")
    page.wait_for_selector("#role")
    assert page.url.startswith(federation_stub.url) and page.text_content("#role") == "Admin"
    assert federation_stub.signed_in[-1]["duration"] == "43200"
    # Typed or bookmarked (Sec-Fetch-Site: none — also what links from mail and chat apps send): asks too.
    page.goto(f"{base}/go/sandbox/Admin?duration=900")
    page.wait_for_selector("#go-confirm")
    assert len(federation_stub.signed_in) == 1
    # A link on the bridge's own pages (same-origin) goes straight to the console.
    page.goto(f"{base}/portal")
    page.evaluate("""() => { const a = document.createElement('a'); a.id = 'own-link';
                             a.href = '/go/sandbox/Admin?duration=900'; a.textContent = 'go';
                             document.body.appendChild(a); }""")
    page.click("#own-link")
    page.wait_for_url(f"{federation_stub.url}/**")
    page.wait_for_selector("#role")
    assert len(federation_stub.signed_in) == 2 and federation_stub.signed_in[-1]["duration"] == "900"


def test_device_approval_from_a_link_needs_the_tick(page, live_bridge, make_settings) -> None:
    """Attack: a link to /device with someone else's code; Approve alone does nothing, the countdown runs."""
    import requests

    SHOTS.mkdir(parents=True, exist_ok=True)
    base = live_bridge(make_settings())
    d = requests.post(f"{base}/oauth/device_authorization", data={"client_id": "bridge-cli"}, timeout=10).json()
    page.goto(f"{base}/login/dev")
    with page.expect_navigation(url=f"{base}/portal"):
        page.click("#user-alice")
    page.goto(d["verification_uri_complete"])
    assert page.is_visible("#device-from-link") and page.text_content("#device-code") == d["user_code"]
    first = page.text_content("#device-expires")
    page.wait_for_timeout(1500)
    assert page.text_content("#device-expires") != first  # static/bridge.js counts down (CSP allows it)
    page.screenshot(path=str(SHOTS / "device-approve.png"), full_page=True)
    page.click("#approve")  # the box is not ticked: the browser does not send the form
    page.wait_for_timeout(500)
    assert not page.is_visible("#device-result") and page.is_visible("#approve")
    page.check("#device-confirm")
    page.click("#approve")
    assert page.text_content("#device-result").startswith("Approved")
