"""Console sign-in against the federation-endpoint / SAML-POST stand-in (tests/peers/federation_stub.py),
/go deep links through login, 403s naming the role, and open-redirect refusals."""

from __future__ import annotations

import html
import re
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
import requests

from tests.conftest import ACCOUNT, ACCOUNTS
from tests.integration.helpers import dev_login, grant_id, portal_json

pytestmark = pytest.mark.integration

RULES = [
    {"name": "admins", "match": {"group": "aws-admins"},
     "grants": [{"account": "sandbox", "role": "Admin", "source_identity": "{email}", "duration": {"max": 43200}}]},
    {"name": "readonly", "match": {"group": "aws-readonly"},
     "grants": [{"account": "sandbox", "role": "ReadOnly", "label": "Read-only", "path": "saml"}]},
    {"name": "billing", "match": {"group": "aws-readonly"},
     "grants": [{"account": "sandbox", "role": "Billing", "console": "saml_post"}]},
]


def _form(text: str, form_id: str) -> tuple[str, dict[str, str]]:
    m = re.search(rf'<form id="{form_id}"[^>]*action="([^"]+)"(.*?)</form>', text, re.S)
    assert m, text[:800]
    fields = {k: html.unescape(v) for k, v in re.findall(r'<input type="hidden" name="(\w+)" value="([^"]*)"',
                                                         m[2])}
    return html.unescape(m[1]), fields


def _bridge(live_bridge: Any, make_settings: Any, method: str = "federation") -> str:
    return str(live_bridge(make_settings(mapping={"accounts": ACCOUNTS, "rules": RULES},
                                         aws={"console_method": method})))


@pytest.mark.parametrize("method", ["federation", "saml_post"])
@pytest.mark.parametrize("role", ["Admin", "ReadOnly"])  # jwt path and saml path
def test_console_sign_in(method: str, role: str, live_bridge, make_settings, federation_stub,
                         bridge_logs) -> None:
    base = _bridge(live_bridge, make_settings, method)
    s = dev_login(base, "alice")
    portal = portal_json(s, base)
    gid = grant_id(portal, f"role/{role}")
    assert next(g for g in portal["grants"] if g["id"] == gid)["console"] == method
    r = s.post(f"{base}/console/{gid}", data={"csrf_token": portal["csrf_token"], "duration": "900",
                                              "destination": "/s3/home", "region": "eu-west-1"},
               allow_redirects=False, timeout=30)
    if method == "federation":
        assert r.status_code == 302, r.text[:500]
        loc = r.headers["location"]
        assert loc.startswith(f"{federation_stub.url}/federation?")
        q = parse_qs(urlsplit(loc).query)
        assert q["Action"] == ["login"] and q["Issuer"] == [f"{base}/portal"]
        assert q["Destination"] == ["https://eu-west-1.console.aws.amazon.com/s3/home?region=eu-west-1"]
        assert r.headers["Cache-Control"].startswith("no-store")
        landed = requests.get(loc, timeout=30)
        token = q["SigninToken"][0]
        assert token not in bridge_logs.text and "SigninToken" not in bridge_logs.text
        # single use, as the stand-in enforces: the same URL a second time fails
        assert requests.get(loc, timeout=30).status_code == 400
    else:
        assert r.status_code == 200, r.text[:500]
        action, fields = _form(r.text, "saml-post")
        assert action == f"{federation_stub.url}/saml"
        # The page's CSP lets exactly this form leave the bridge (the sign-in origin, then the console).
        form_action = re.search(r"form-action ([^;]+)", r.headers["Content-Security-Policy"])
        assert form_action and form_action[1].split()[:2] == ["'self'", federation_stub.url]
        assert fields["RelayState"] == "https://eu-west-1.console.aws.amazon.com/s3/home?region=eu-west-1"
        assert "SAMLResponse" in fields and "csrf_token" not in fields
        landed = requests.post(action, data=fields, timeout=30)
        assert fields["SAMLResponse"] not in bridge_logs.text
    assert landed.status_code == 200, landed.text[:500]
    assert re.search(r"id='role'>([^<]+)<", landed.text)[1] == role  # type: ignore[index]
    done = federation_stub.signed_in[-1]
    assert done["via"] == ("federation" if method == "federation" else "saml")
    assert done["arn"].startswith(f"arn:aws:sts::{ACCOUNT}:assumed-role/{role}/")
    if method == "federation":
        assert done["duration"] == "900"
    assert '"event": "console_signin"' in bridge_logs.text
    assert portal_json(s, base)["recent"][0] == gid  # last used comes first


def test_per_grant_console_method(live_bridge, make_settings, federation_stub) -> None:
    base = _bridge(live_bridge, make_settings, "federation")
    s = dev_login(base, "alice")
    portal = portal_json(s, base)
    gid = grant_id(portal, "role/Billing")
    r = s.post(f"{base}/console/{gid}", data={"csrf_token": portal["csrf_token"]}, allow_redirects=False,
               timeout=30)
    action, fields = _form(r.text, "saml-post")
    assert fields["RelayState"] == "https://console.aws.amazon.com/console/home"
    landed = requests.post(action, data=fields, timeout=30)
    assert "Billing" in landed.text and federation_stub.signed_in[-1]["via"] == "saml"


def test_deep_link_through_login(live_bridge, make_settings, federation_stub) -> None:
    base = _bridge(live_bridge, make_settings)
    s = requests.Session()
    link = "/go/sandbox/Admin?destination=/ec2/home&region=eu-west-1"
    r = s.get(f"{base}{link}", allow_redirects=False, timeout=10)
    assert r.status_code == 302 and r.headers["location"].startswith("/login/dev?return_to=")
    r = s.get(f"{base}{r.headers['location']}", allow_redirects=False, timeout=10)
    state = re.search(r"state=([\w-]+)", r.headers["location"])
    assert state
    r = s.post(f"{base}/callback/dev", data={"state": state[1], "user": "alice"}, allow_redirects=False, timeout=10)
    assert r.status_code == 303 and r.headers["location"] == link
    r = s.get(f"{base}{link}", headers=SAME_ORIGIN, timeout=10)  # the redirect after a same-origin sign-in
    assert r.status_code == 200 and 'class="autosubmit"' in r.text
    action, fields = _form(r.text, "go-form")
    r = s.post(f"{base}{action}", data={**fields, "duration": "3600"}, allow_redirects=False, timeout=30)
    assert r.status_code == 302
    landed = requests.get(r.headers["location"], timeout=30)
    assert "https://eu-west-1.console.aws.amazon.com/ec2/home?region=eu-west-1" in landed.text
    assert federation_stub.signed_in[-1]["arn"].split("/")[1] == "Admin"
    # by account id as well as alias
    assert s.get(f"{base}/go/{ACCOUNT}/Admin", timeout=10).status_code == 200


SAME_ORIGIN = {"Sec-Fetch-Site": "same-origin"}


@pytest.mark.parametrize("fetch_site", [None, "cross-site", "same-site", "none"])  # none: mail/chat apps too
def test_go_link_from_another_site_only_asks(fetch_site: str | None, live_bridge, make_settings,
                                             federation_stub) -> None:
    """Attack: a link on another site signs the victim in to the console with the attacker's role, duration
    and destination, without a click."""
    base = _bridge(live_bridge, make_settings)
    s = dev_login(base, "alice")
    headers = {"Sec-Fetch-Site": fetch_site} if fetch_site else {}
    # auto=1 in the link must not bring the auto-submit back
    r = s.get(f"{base}/go/sandbox/Admin", params={"duration": "43200", "destination": "/iam/home", "auto": "1"},
              headers=headers, timeout=10)
    assert r.status_code == 200 and "autosubmit" not in r.text, r.text[:800]
    assert "Sec-Fetch-Site" in r.headers["Vary"] and r.headers["Cache-Control"].startswith("no-store")
    confirm = re.search(r'id="go-confirm">(.*?)</div>', r.text, re.S)
    assert confirm, r.text[:800]
    shown = re.sub(r"<[^>]+>", "", confirm[1])
    for want in ("Administrator", "Admin", "Sandbox", ACCOUNT, "12 h", "https://console.aws.amazon.com/iam/home"):
        assert want in shown, (want, shown)
    assert not federation_stub.signed_in
    # the button still works: it is the CSRF-protected POST, and it signs in with what was shown
    action, fields = _form(r.text, "go-form")
    r = s.post(f"{base}{action}", data={**fields, "duration": "43200"}, allow_redirects=False, timeout=30)
    assert r.status_code == 302
    assert requests.get(r.headers["location"], timeout=30).status_code == 200
    assert federation_stub.signed_in[-1]["duration"] == "43200"


@pytest.mark.parametrize("fetch_site", ["same-origin"])
def test_go_from_the_bridge_submits_itself(fetch_site: str, live_bridge, make_settings,
                                                         federation_stub) -> None:
    base = _bridge(live_bridge, make_settings)
    s = dev_login(base, "alice")
    r = s.get(f"{base}/go/sandbox/Admin", params={"duration": "7200"}, headers={"Sec-Fetch-Site": fetch_site},
              timeout=10)
    assert r.status_code == 200 and 'class="autosubmit"' in r.text and 'id="go-confirm"' not in r.text
    assert re.search(r'<option value="7200" selected>', r.text)
    # auto=0 (what starring a role links back to) still turns it off
    r = s.get(f"{base}/go/sandbox/Admin", params={"auto": "0"}, headers={"Sec-Fetch-Site": fetch_site}, timeout=10)
    assert "autosubmit" not in r.text


def test_go_not_granted_names_the_role(live_bridge, make_settings, federation_stub) -> None:
    base = _bridge(live_bridge, make_settings)
    carol = dev_login(base, "carol")
    r = carol.get(f"{base}/go/sandbox/Admin", timeout=10)
    assert r.status_code == 403 and "Admin" in r.text and "sandbox" in r.text and "request" in r.text.lower()
    alice = dev_login(base, "alice")
    r = alice.get(f"{base}/go/sandbox/Nonexistent", headers={"Accept": "application/json"}, timeout=10)
    assert r.status_code == 403 and "Nonexistent" in r.json()["message"]
    assert not federation_stub.signed_in


EVIL = ["https://evil.example.com/", "//evil.example.com/x", "/\\evil.example.com", "javascript:alert(1)",
        "https://console.aws.amazon.com.evil.example.com/", "https://console.amazonaws.cn/",
        "https://user@console.aws.amazon.com/", "http://console.aws.amazon.com/", "/s3/home\r\nX: y"]


@pytest.mark.parametrize("evil", EVIL)
def test_destination_and_relay_state_refused(evil: str, live_bridge, make_settings, federation_stub) -> None:
    base = _bridge(live_bridge, make_settings, "saml_post")
    s = dev_login(base, "alice")
    portal = portal_json(s, base)
    r = s.get(f"{base}/go/sandbox/Admin", params={"destination": evil}, allow_redirects=False, timeout=10)
    assert r.status_code == 400 and "destination" in r.text.lower()
    for role in ("Admin", "ReadOnly"):  # RelayState (SAML POST) takes the same check
        r = s.post(f"{base}/console/{grant_id(portal, f'role/{role}')}",
                   data={"csrf_token": portal["csrf_token"], "destination": evil}, allow_redirects=False, timeout=10)
        assert r.status_code == 400 and "SAMLResponse" not in r.text
    assert not federation_stub.signed_in


@pytest.mark.parametrize("evil", ["https://evil.example.com/", "//evil.example.com", "/\\evil.example.com",
                                  "/%0d%0aSet-Cookie:x", "http:/evil.example.com"])
def test_return_to_is_same_origin_only(evil: str, live_bridge, make_settings, federation_stub) -> None:
    base = _bridge(live_bridge, make_settings)
    s = requests.Session()
    r = s.get(f"{base}/login/dev", params={"return_to": evil}, allow_redirects=False, timeout=10)
    state = re.search(r"state=([\w-]+)", r.headers["location"])
    assert state
    r = s.post(f"{base}/callback/dev", data={"state": state[1], "user": "alice"}, allow_redirects=False, timeout=10)
    loc = r.headers["location"]
    assert r.status_code == 303 and loc.startswith("/") and not loc.startswith(("//", "/\\"))
    assert "evil" not in urlsplit(loc).netloc and "\n" not in loc


def test_console_needs_csrf_and_a_grant(live_bridge, make_settings, federation_stub) -> None:
    base = _bridge(live_bridge, make_settings)
    s = dev_login(base, "alice")
    portal = portal_json(s, base)
    gid = grant_id(portal, "role/Admin")
    assert s.post(f"{base}/console/{gid}", allow_redirects=False, timeout=10).status_code == 400
    carol = dev_login(base, "carol")
    csrf = portal_json(carol, base)["csrf_token"]
    assert carol.post(f"{base}/console/{gid}", data={"csrf_token": csrf}, timeout=10).status_code == 403
    assert requests.post(f"{base}/console/{gid}", timeout=10).status_code == 401
    assert not federation_stub.signed_in


def test_portal_groups_favourites_and_links(live_bridge, make_settings, federation_stub) -> None:
    base = _bridge(live_bridge, make_settings)
    s = dev_login(base, "alice")
    portal = portal_json(s, base)
    gid = grant_id(portal, "role/ReadOnly")
    page = s.get(f"{base}/portal", timeout=10).text
    assert f'data-a="{ACCOUNT}"' in page and "Sandbox" in page and 'id="filter"' in page
    assert 'href="/go/sandbox/ReadOnly"' in page
    assert re.search(r'id="favourites"[^>]*\bhidden', page)  # there for the script to fill, not shown
    r = s.post(f"{base}/portal/favourite/{gid}", headers={"X-CSRF-Token": portal["csrf_token"]}, timeout=10)
    assert r.json() == {"favourite": True}
    assert portal_json(s, base)["favourites"] == [gid]
    page = s.get(f"{base}/portal", timeout=10).text
    assert 'id="favourites"' in page and page.index('id="favourites"') < page.index('id="accounts"')
    assert not re.search(r'id="favourites"[^>]*\bhidden', page)
    r = s.post(f"{base}/portal/favourite/{gid}", headers={"X-CSRF-Token": portal["csrf_token"]}, timeout=10)
    assert r.json() == {"favourite": False} and portal_json(s, base)["favourites"] == []
    assert s.post(f"{base}/portal/favourite/{gid}", timeout=10).status_code == 400  # CSRF


def test_sign_in_service_down_is_a_clear_error(live_bridge, make_settings, federation_stub, bridge_logs) -> None:
    from bridge.runtime.localredis import free_port

    dead = f"http://127.0.0.1:{free_port()}/federation"
    base = str(live_bridge(make_settings(mapping={"accounts": ACCOUNTS, "rules": RULES},
                                         aws={"federation_endpoint": dead})))
    s = dev_login(base, "alice")
    portal = portal_json(s, base)
    r = s.post(f"{base}/console/{grant_id(portal, 'role/Admin')}", data={"csrf_token": portal["csrf_token"]},
               allow_redirects=False, timeout=30)
    assert r.status_code == 503 and "AWS sign-in unreachable" in r.text and 'id="request-id"' in r.text
    assert '"code": "signin_unavailable"' in bridge_logs.text or "signin_unavailable" in bridge_logs.text
