"""Sign in with GitHub in a real browser (Debian chromium via Playwright): the bridge's sign-in page → the
GitHub stand-in's consent page (tests/peers/github_standin.py) → the portal with the roles the org and
team give → credentials the strict STS peer accepts. A user who cancels at GitHub, and one outside the
allowed orgs, get a page saying what happened. Screenshots land in test-artifacts/e2e/."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from tests.conftest import ACCOUNT
from tests.e2e.conftest import SHOTS
from tests.integration.test_github_login import GH, RULES, connector_cfg
from tests.peers.github_standin import GithubStandin, serve

pytestmark = pytest.mark.integration


@pytest.fixture
def github() -> Iterator[GithubStandin]:
    with serve() as s:
        s.add_user("octocat", name="The Octocat", email="octocat@example.com", orgs=("acme",),
                   teams=("acme/platform",))
        s.add_user("outsider", email="outsider@example.com", orgs=("other",))
        yield s
        assert s.schema_errors == []


@pytest.fixture
def base(live_bridge: Any, make_settings: Any, github: GithubStandin) -> str:
    url: str = live_bridge(make_settings(
        connectors=[{**connector_cfg(github), "name": "GitHub"}],
        mapping={"accounts": {ACCOUNT: {"alias": "sandbox", "label": "Sandbox",
                                        "roles": {"Admin": {"label": "Administrator"}}}}, "rules": RULES}))
    return url


def at_github(page: Any, base: str, login: str) -> None:
    page.goto(f"{base}/")
    page.click(f"#idp-{GH}")
    page.wait_for_selector("#login", timeout=10_000)
    assert "read:org" in page.inner_text("body")
    page.fill("#login", login)


def test_github_sign_in_to_credentials(page, base, strict_sts_peer) -> None:
    SHOTS.mkdir(parents=True, exist_ok=True)
    at_github(page, base, "octocat")
    with page.expect_navigation(url=f"{base}/portal", timeout=15_000):
        page.click("button[value=authorize]")
    page.screenshot(path=str(SHOTS / "github-portal.png"), full_page=True)
    assert page.text_content("#who-name") == "The Octocat"
    assert page.locator("li.role", has_text="Administrator").count() == 1
    role = page.locator("li.role", has_text="Administrator")
    with page.context.expect_page() as opened:
        role.locator("a.k").click()
    creds = opened.value
    creds.wait_for_selector("#assumed-arn", timeout=15_000)
    assert creds.text_content("#assumed-arn") == f"arn:aws:sts::{ACCOUNT}:assumed-role/Admin/octocat@example.com"
    (seen,) = strict_sts_peer.seen
    assert seen.problems == []


@pytest.mark.parametrize("login, decision, code", [("octocat", "cancel", "idp_denied"),
                                                   ("outsider", "authorize", "github_not_member")])
def test_github_refusals_show_a_clear_page(page, base, login, decision, code) -> None:
    at_github(page, base, login)
    page.click(f"button[value={decision}]")
    page.wait_for_selector("#error-code", timeout=15_000)
    page.screenshot(path=str(SHOTS / f"github-{code}.png"), full_page=True)
    assert page.text_content("#error-code") == code
    assert page.context.cookies() == [] or all(c["name"] != "bridge_session" for c in page.context.cookies())
