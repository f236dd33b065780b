"""The same-site hop (bridge/web/login.py) for any form-POST callback — SAML's, Apple's form_post, any
other — on the app built on MemoryStore: a POST that names a pending sign-in but comes without the
pre-sign-in cookie (a cross-site POST: SameSite=Lax withholds it) gets a page that re-POSTs the same fields
from our own origin, and nothing is taken; everything else goes straight to the usual checks."""

from __future__ import annotations

import html
import re

from flask.testing import FlaskClient

from tests.unit import test_app_on_memory

built = test_app_on_memory.built  # the fixture


def _start(client: FlaskClient) -> str:
    r = client.get("/login/dev")
    state = re.search(r"state=([\w-]+)", r.headers["location"])
    assert r.status_code == 302 and state
    return state[1]


def _hop_fields(page: str) -> tuple[str, dict[str, str]]:
    action = html.unescape(re.search(r'<form id="login-hop"[^>]*action="([^"]+)"', page)[1])  # type: ignore[index]
    return action, {html.unescape(n): html.unescape(v)
                    for n, v in re.findall(r'<input type="hidden" name="([^"]+)" value="([^"]*)"', page)}


def test_a_cross_site_post_callback_gets_the_hop_and_nothing_is_taken(built) -> None:  # type: ignore[no-untyped-def]
    svc, browser, _, _ = built
    state = _start(browser)
    cross_site = browser.application.test_client()  # the same app, none of the browser's cookies
    fields = {"state": state, "user": "alice", "extra": '"><script>x</script>'}
    r = cross_site.post("/callback/dev", data=fields)
    page = r.get_data(as_text=True)
    assert r.status_code == 200 and 'id="login-hop"' in page and "<script>x</script>" not in page
    assert r.headers["Cache-Control"] == "no-store" and "bridge_session" not in r.headers.get("Set-Cookie", "")
    assert svc.flow.is_pending(state)  # nothing taken yet
    action, hop = _hop_fields(page)
    assert action == "/callback/dev" and hop == {**fields, "bridge_hop": "1"}
    r = browser.post(action, data=hop)  # the same-site re-POST carries the cookie
    assert r.status_code == 303 and r.headers["location"] == "/portal"
    assert not svc.flow.is_pending(state)
    assert browser.get("/portal", headers={"Accept": "application/json"}).status_code == 200


def test_the_hop_is_only_for_a_pending_sign_in_posted_without_the_cookie(built) -> None:  # type: ignore[no-untyped-def]
    svc, browser, _, _ = built
    other = browser.application.test_client()
    # An unknown state: no hop page, refused at once.
    r = other.post("/callback/dev", data={"state": "not-a-pending-one", "user": "alice"})
    assert r.status_code == 400 and 'data-code="login_expired"' in r.get_data(as_text=True)
    # A GET callback never hops (and without the cookie is refused; the pending sign-in is spent).
    state = _start(browser)
    r = other.get(f"/callback/dev?state={state}&user=alice")
    assert r.status_code == 400 and 'data-code="login_browser_mismatch"' in r.get_data(as_text=True)
    assert not svc.flow.is_pending(state)
    # A re-POST marked as hopped that still has no cookie: refused (no second hop, no loop), spent.
    state = _start(browser)
    r = other.post("/callback/dev", data={"state": state, "user": "alice", "bridge_hop": "1"})
    assert r.status_code == 400 and 'data-code="login_browser_mismatch"' in r.get_data(as_text=True)
    assert not svc.flow.is_pending(state)
    # The browser that started it posting directly (same-site, with its cookie): no hop needed.
    state = _start(browser)
    assert browser.post("/callback/dev", data={"state": state, "user": "alice"}).status_code == 303
    assert other.get("/portal", headers={"Accept": "application/json"}).status_code == 401
