"""The device-code approval page against RFC 8628 §5.4 phishing (a victim approving an attacker's code
from a link), and rate limits on the device endpoints. Real Redis, a live bridge."""

from __future__ import annotations

import html
import re
import time

import pytest
import requests

from tests.conftest import ACCOUNT
from tests.integration.helpers import TestClock, dev_login
from tests.integration.test_cli_login import poll, start

pytestmark = pytest.mark.integration
UA = "attacker-laptop/1.0 " + "x" * 500


def _page(s: requests.Session, base: str, user_code: str, **headers: str) -> requests.Response:
    r = s.get(f"{base}/device", params={"user_code": user_code}, headers=headers, timeout=10)
    assert r.status_code == 200, r.text[:500]
    return r


def _csrf(text: str) -> str:
    return re.search(r'name="csrf_token" value="([^"]+)"', text)[1]  # type: ignore[index]


def _approve(s: requests.Session, base: str, user_code: str, csrf: str, **extra: str) -> requests.Response:
    return s.post(f"{base}/device", data={"csrf_token": csrf, "user_code": user_code, "decision": "approve",
                                          **extra}, timeout=10)


def _fresh_window(live_bridge) -> None:  # type: ignore[no-untyped-def]
    """The limits count in fixed one-minute windows: the bridge's store counts on a clock set just
    after a window starts, so a counting test never straddles two (no waiting for the next minute)."""
    clock = TestClock()
    clock.to_window_start()
    live_bridge.app.extensions["bridge"].store.clock = clock


def test_approval_page_shows_who_asked_when_and_what_the_token_carries(live_bridge, make_settings) -> None:
    """Attack: a phishing link to the attacker's code; the page gives the victim nothing to tell whose
    device asks, since when, or which roles it would get."""
    base = live_bridge(make_settings())
    r = requests.post(f"{base}/oauth/device_authorization", data={"client_id": "bridge-cli"},
                      headers={"User-Agent": UA}, timeout=10)
    code = r.json()["user_code"]
    page = _page(dev_login(base, "alice"), base, code).text
    assert re.search(r'id="device-ip">127\.0\.0\.1<', page)
    agent = html.unescape(re.search(r'id="device-agent">([^<]*)<', page)[1])  # type: ignore[index]
    assert agent.startswith("attacker-laptop/1.0 xxx") and len(agent) <= 201  # truncated
    asked = re.search(r'<time id="device-asked" datetime="([^"]+)"', page)
    assert asked and abs(time.mktime(time.strptime(asked[1], "%Y-%m-%dT%H:%M:%SZ")) - time.mktime(time.gmtime())) < 60
    left = re.search(r'class="countdown" id="device-expires" data-epoch="(\d+)">\(in (\d+) min (\d+) s\)', page)
    assert left, page
    assert abs(int(left[1]) - time.time() - 600) < 10 and int(left[2]) * 60 + int(left[3]) > 580
    roles = re.search(r'<ul id="device-roles">(.*?)</ul>', page, re.S)
    assert roles and "Administrator" in roles[1] and "Read-only" in roles[1] and "Sandbox" in roles[1]
    assert ACCOUNT in roles[1]
    assert "<script>" not in page  # the countdown is static/bridge.js (CSP: default-src 'self')


def test_prefilled_code_is_never_a_one_click_approval(live_bridge, make_settings) -> None:
    """Attack: /device?user_code=<attacker's code> in a mail; one click on Approve hands over the victim's
    roles."""
    base = live_bridge(make_settings())
    d = start(base)
    s = dev_login(base, "alice")
    page = _page(s, base, d["user_code"]).text  # from a link (no same-origin Sec-Fetch-Site)
    assert 'id="device-from-link"' in page and "terminal" in page
    assert re.search(r'<input type="checkbox" name="confirm" value="yes" id="device-confirm" required>', page)
    r = _approve(s, base, d["user_code"], _csrf(page))  # no confirmation ticked
    assert r.status_code == 400 and "device_confirm_missing" in r.text and "nothing was approved" in r.text.lower()
    assert poll(base, d["device_code"]).json()["error"] == "authorization_pending"  # still pending
    assert 'id="device-unknown"' not in _page(s, base, d["user_code"]).text
    r = _approve(s, base, d["user_code"], _csrf(page), confirm="yes")
    assert r.status_code == 200 and 'id="device-result">Approved' in r.text


def test_typed_code_has_no_link_warning_but_still_needs_the_tick(live_bridge, make_settings) -> None:
    base = live_bridge(make_settings())
    d = start(base)
    s = dev_login(base, "alice")
    page = _page(s, base, d["user_code"], **{"Sec-Fetch-Site": "same-origin"}).text  # the entry form
    assert 'id="device-from-link"' not in page and 'id="device-confirm" required' in page
    assert _approve(s, base, d["user_code"], _csrf(page)).status_code == 400
    # denying needs no confirmation
    r = s.post(f"{base}/device", data={"csrf_token": _csrf(page), "user_code": d["user_code"], "decision": "deny"},
               timeout=10)
    assert r.status_code == 200 and 'id="device-result">Denied' in r.text


@pytest.mark.parametrize("typed", ["{lo}", "{lo4} {lo_4}", " {up4} - {up_4} ", "{up4}{up_4}", "{lo4}–{lo_4}"])
def test_user_code_ignores_case_spaces_and_dashes(typed: str, live_bridge, make_settings) -> None:
    base = live_bridge(make_settings())
    d = start(base)
    c = d["user_code"]
    entered = typed.format(lo=c.lower(), lo4=c[:4].lower(), lo_4=c[5:].lower(), up4=c[:4], up_4=c[5:])
    s = dev_login(base, "alice")
    page = _page(s, base, entered).text
    assert f'id="device-code" class="big">{c}<' in page  # shown as the terminal shows it
    r = _approve(s, base, entered, _csrf(page), confirm="yes")
    assert 'id="device-result">Approved' in r.text


def test_device_authorization_rate_limited_per_ip(live_bridge, make_settings) -> None:
    """Attack: mint device codes in bulk (fill Redis, or keep fresh codes for a phishing run)."""
    base = live_bridge(make_settings(rate_limits={"device_per_minute": 3}))
    _fresh_window(live_bridge)
    for _ in range(3):
        start(base)
    r = requests.post(f"{base}/oauth/device_authorization", data={"client_id": "bridge-cli"}, timeout=10)
    assert r.status_code == 429 and r.headers["Content-Type"] == "application/json"
    assert r.json()["error"] == "slow_down" and int(r.headers["Retry-After"]) >= 1


def test_token_endpoint_rate_limited_per_device_code_and_ip(live_bridge, make_settings) -> None:
    """Attack: hammer the token endpoint (guess device codes, or poll one code as fast as possible)."""
    base = live_bridge(make_settings(rate_limits={"device_per_minute": 6, "device_code_per_minute": 3},
                                     cli={"poll_interval": 1}))
    _fresh_window(live_bridge)
    a, b = start(base), start(base)
    for _ in range(3):
        assert poll(base, a["device_code"]).status_code == 400  # authorization_pending / slow_down (RFC 8628)
    r = requests.post(f"{base}/oauth/token", data={"grant_type": "urn:ietf:params:oauth:grant-type:device_code",
                                                   "client_id": "bridge-cli", "device_code": a["device_code"]},
                      headers={"Accept": "text/html"}, timeout=10)
    assert r.status_code == 429 and r.headers["Content-Type"] == "application/json"  # JSON even for a browser
    assert r.json()["error"] == "slow_down" and int(r.headers["Retry-After"]) >= 1
    assert poll(base, b["device_code"]).json()["error"] == "authorization_pending"  # another code: own budget
    assert poll(base, b["device_code"]).status_code == 400
    r = poll(base, b["device_code"])  # the 7th request from this IP
    assert r.status_code == 429 and r.json()["error"] == "slow_down"


def test_device_page_rate_limited_per_code_and_ip(live_bridge, make_settings) -> None:
    """Attack: guess user codes on the approval page, or retry one code without end."""
    base = live_bridge(make_settings(rate_limits={"device_per_minute": 5, "device_code_per_minute": 2}))
    _fresh_window(live_bridge)
    d = start(base)
    s = dev_login(base, "alice")
    for _ in range(2):
        _page(s, base, d["user_code"])
    r = s.get(f"{base}/device", params={"user_code": d["user_code"].lower()}, timeout=10)  # the same code
    assert r.status_code == 429 and "Too many requests" in r.text and r.headers["Retry-After"]
    for guess in ("BCDF-GHJK", "BCDF-GHJL"):
        assert s.get(f"{base}/device", params={"user_code": guess}, timeout=10).status_code == 200
    assert s.get(f"{base}/device", params={"user_code": "BCDF-GHJM"}, timeout=10).status_code == 429  # per IP
