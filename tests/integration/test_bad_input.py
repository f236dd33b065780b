"""Every bad input gets a clear 4xx/503 with a reason and a request id — never a 500 or a trace —
and nothing already established is lost."""

from __future__ import annotations

import html
import re
from collections.abc import Iterator
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
import redis
import requests
from joserfc.jwk import RSAKey

from bridge.runtime.localredis import free_port
from tests.conftest import ACCOUNT
from tests.integration.helpers import dev_login, grant_id, portal_json
from tests.peers import fake_op

pytestmark = pytest.mark.integration


@pytest.fixture
def op() -> Iterator[fake_op.FakeOp]:
    o = fake_op.FakeOp()
    stop = fake_op.serve(o)
    yield o
    stop()


@pytest.fixture
def bridge(live_bridge, make_settings, op) -> str:  # type: ignore[no-untyped-def]
    dev = {"id": "dev", "type": "dev", "users": [
        {"subject": "alice", "email": "alice@example.com", "groups": ["aws-admins"], "mfa": True}]}
    fake = {"id": "fake", "type": "oidc", "issuer": op.issuer, "client_id": op.client_id,
            "client_secret": op.client_secret, "clock_skew": 30}
    return str(live_bridge(make_settings(connectors=[fake, dev])))


def assert_error_page(r: requests.Response, status: int, code: str) -> None:
    assert r.status_code == status, (r.status_code, r.text[:500])
    assert f'data-code="{code}"' in r.text, r.text[:800]
    rid = re.search(r'<code id="request-id">([0-9a-f]{16})</code>', r.text)
    assert rid and r.headers["X-Request-ID"] == rid[1]
    assert "Traceback" not in r.text and "bridge_session" not in r.headers.get("Set-Cookie", "")


def start(base: str, s: requests.Session) -> str:
    """Begin a login at the fake OP and return the bridge callback URL it redirects to (unused yet)."""
    r = s.get(f"{base}/login/fake", allow_redirects=False, timeout=10)
    r = s.get(r.headers["Location"], allow_redirects=False, timeout=10)
    return str(r.headers["Location"])


def test_happy_path_through_the_fake_op(bridge, op) -> None:
    s = requests.Session()
    r = s.get(start(bridge, s), timeout=10)
    assert r.url == f"{bridge}/portal" and "Administrator" in r.text


def test_state_missing(bridge) -> None:
    assert_error_page(requests.get(f"{bridge}/callback/fake?code=abc", timeout=10), 400, "state_missing")


def test_state_unknown_or_for_another_connector(bridge) -> None:
    assert_error_page(requests.get(f"{bridge}/callback/fake?code=abc&state=nope", timeout=10), 400, "login_expired")
    s = requests.Session()
    r = s.get(f"{bridge}/login/dev", allow_redirects=False, timeout=10)
    dev_state = parse_qs(urlsplit(r.headers["Location"]).query)["state"][0]
    r = s.get(f"{bridge}/callback/fake?code=abc&state={dev_state}", timeout=10)
    assert_error_page(r, 400, "state_mismatch")


def test_callback_planted_in_another_browser_is_refused(bridge, op) -> None:
    """Login CSRF (RFC 6749 §10.12): the attacker signs in at the IdP as themselves and hands the
    callback URL to a victim's browser. The victim gets a clear error and no session, the IdP's code
    is never redeemed, and the attacker's sign-in is spent: their identity is signed in nowhere."""
    bystander = requests.Session()  # a victim who has a sign-in of their own under way
    bystander.get(f"{bridge}/login/dev", allow_redirects=False, timeout=10)
    for victim in (requests.Session(), bystander):
        attacker = requests.Session()
        callback = start(bridge, attacker)
        code = parse_qs(urlsplit(callback).query)["code"][0]
        r = victim.get(callback, timeout=10)
        assert_error_page(r, 400, "login_browser_mismatch")
        assert "started in another browser" in r.text and "Start the sign-in again here" in r.text
        assert code in op.codes  # refused before the connector redeemed anything at the IdP
        assert "bridge_session" not in victim.cookies
        assert victim.get(f"{bridge}/portal", headers={"Accept": "application/json"}, timeout=10).status_code == 401
        # The planted callback used up the attacker's sign-in: it cannot be finished anywhere now.
        assert_error_page(attacker.get(callback, timeout=10), 400, "login_expired")
        assert attacker.get(f"{bridge}/portal", headers={"Accept": "application/json"},
                            timeout=10).status_code == 401


def test_pre_sign_in_cookie_two_tabs_then_cleared(bridge) -> None:
    """One pre-sign-in cookie per browser (HttpOnly, SameSite=Lax, as long as a pending login): a
    second tab reuses it, both tabs finish, and it is cleared once no sign-in of the browser waits."""
    s = requests.Session()
    first = s.get(f"{bridge}/login/fake", allow_redirects=False, timeout=10)
    cookie = first.headers["Set-Cookie"]
    assert cookie.startswith("bridge_login=") and "HttpOnly" in cookie and "SameSite=Lax" in cookie
    assert "Max-Age=600" in cookie and "Path=/" in cookie and "Secure" not in cookie  # http here
    value = s.cookies["bridge_login"]
    tab_a = s.get(first.headers["Location"], allow_redirects=False, timeout=10).headers["Location"]
    tab_b = start(bridge, s)
    assert s.cookies["bridge_login"] == value  # the second tab reused it
    r = s.get(tab_b, allow_redirects=False, timeout=10)
    assert r.status_code == 303 and "bridge_login" not in r.headers.get("Set-Cookie", "")  # tab A still waits
    r = s.get(tab_a, allow_redirects=False, timeout=10)
    assert r.status_code == 303 and "bridge_login=; Expires=Thu, 01 Jan 1970" in r.headers["Set-Cookie"]  # cleared
    assert "bridge_login" not in s.cookies and s.get(f"{bridge}/portal", timeout=10).status_code == 200


def test_replayed_callback_is_refused_and_first_session_survives(bridge) -> None:
    s = requests.Session()
    callback = start(bridge, s)
    assert s.get(callback, timeout=10).url == f"{bridge}/portal"
    attacker = requests.Session()
    assert_error_page(attacker.get(callback, timeout=10), 400, "login_expired")
    assert_error_page(s.get(callback, timeout=10), 400, "login_expired")
    assert s.get(f"{bridge}/portal", timeout=10).status_code == 200  # nothing lost


def test_expired_pending_login(bridge, make_settings) -> None:
    s = requests.Session()
    callback = start(bridge, s)
    state = parse_qs(urlsplit(callback).query)["state"][0]
    r = redis.Redis.from_url(make_settings().redis.url)
    keys = [k for k in r.scan_iter(match=f"*pending:{state}")]
    assert len(keys) == 1 and 0 < r.ttl(keys[0]) <= 600
    r.delete(keys[0])  # what the TTL does when it runs out
    assert_error_page(s.get(callback, timeout=10), 400, "login_expired")


def test_idp_says_access_denied(bridge) -> None:
    s = requests.Session()
    r = s.get(f"{bridge}/login/fake", allow_redirects=False, timeout=10)
    state = parse_qs(urlsplit(r.headers["Location"]).query)["state"][0]
    r = s.get(f"{bridge}/callback/fake", params={"state": state, "error": "access_denied",
                                                 "error_description": "User <b>cancelled</b>"}, timeout=10)
    assert_error_page(r, 403, "idp_denied")
    assert "access_denied: User &lt;b&gt;cancelled&lt;/b&gt;" in r.text  # the IdP's reason, escaped


@pytest.mark.parametrize("tamper, reason", [
    ({"signer": "other-key-same-kid"}, "signature"),
    ({"aud": "someone-else"}, "audience"),
    ({"iss": "https://evil.example"}, "iss"),
    ({"exp": -600, "iat": -900}, "expired"),
    ({"nonce": "not-the-nonce"}, "nonce"),
    ({"iat": 3600}, "iat"),
])
def test_bad_id_tokens_are_rejected(bridge, op, bridge_logs, tamper: dict[str, Any], reason: str) -> None:
    import time

    t = dict(tamper)
    if t.get("signer") == "other-key-same-kid":
        t["signer"] = RSAKey.generate_key(2048, parameters={"kid": op.key.kid})
    for k in ("exp", "iat"):
        if k in t:
            t[k] = int(time.time()) + t[k]
    op.tamper = t
    s = requests.Session()
    r = s.get(start(bridge, s), timeout=10)
    assert_error_page(r, 401, "invalid_id_token")
    assert reason in bridge_logs.text  # the specific check is in the log, the page stays generic
    assert s.get(f"{bridge}/portal", headers={"Accept": "application/json"}, timeout=10).status_code == 401


@pytest.mark.parametrize("verified", [False, "true", None, "missing"])
def test_unverified_email_cannot_sign_in(bridge, op, bridge_logs, verified: Any) -> None:
    """Attack: register an address you do not own at the IdP and let rules trust it. An IdP that sends no
    email_verified at all (None: the fake OP leaves the claim out) is refused too, with its own code and a
    page that tells the user it is not theirs to fix (issue 23 item 11)."""
    op.claims = {**op.claims, "email": "boss@Example.com"}
    if verified == "missing":
        del op.claims["email_verified"]
    else:
        op.claims["email_verified"] = verified
    s = requests.Session()
    r = s.get(start(bridge, s), timeout=10)
    if verified in (None, "missing"):
        assert_error_page(r, 403, "email_verified_missing")
        page = html.unescape(r.text)
        assert "sends no email_verified claim" in page and "There is nothing to verify on your side" in page
        assert "insecure_accept_unverified_email" in page and "Verify your e-mail address" not in page
    else:
        assert_error_page(r, 403, "email_unverified")
        assert "not verified" in r.text
    assert "boss@" not in bridge_logs.text  # the log names the connector and check, not the address
    assert s.get(f"{bridge}/portal", headers={"Accept": "application/json"}, timeout=10).status_code == 401


def test_idp_key_rotation_refreshes_jwks_once(bridge, op) -> None:
    s = requests.Session()
    assert s.get(start(bridge, s), timeout=10).url == f"{bridge}/portal"
    fetches = op.jwks_fetches
    new = RSAKey.generate_key(2048, parameters={"kid": "k2"})
    op.published.append(new)
    op.tamper = {"signer": new}
    s2 = requests.Session()
    assert s2.get(start(bridge, s2), timeout=10).url == f"{bridge}/portal"
    assert op.jwks_fetches == fetches + 1
    # A kid the IdP never published, within a minute of that refresh: refused with no fetch (the keys are
    # refetched at most once a minute, so made-up kids cannot make the bridge hammer the IdP).
    op.tamper = {"signer": RSAKey.generate_key(2048, parameters={"kid": "ghost"})}
    s3 = requests.Session()
    assert_error_page(s3.get(start(bridge, s3), timeout=10), 401, "invalid_id_token")
    assert op.jwks_fetches == fetches + 1


def test_token_endpoint_refuses_code(bridge, op) -> None:
    op.token_error = "invalid_grant"
    s = requests.Session()
    assert_error_page(s.get(start(bridge, s), timeout=10), 400, "login_failed")


def test_unknown_connector_is_a_404_page(bridge) -> None:
    r = requests.get(f"{bridge}/login/nope", timeout=10)
    assert r.status_code == 404 and "nope" in r.text and "Traceback" not in r.text


def test_idp_unreachable_at_login(live_bridge, make_settings, redis_url) -> None:
    dead = f"http://127.0.0.1:{free_port()}"
    base = live_bridge(make_settings(connectors=[{"id": "gone", "type": "oidc", "issuer": dead, "client_id": "c",
                                                  "client_secret": "s", "http_timeout": 1}]))
    r = requests.get(f"{base}/login/gone", timeout=10)
    assert_error_page(r, 503, "idp_unavailable")
    assert not list(redis.Redis.from_url(redis_url).scan_iter(match="*pending:*gone*"))


def _signed_in(base: str) -> tuple[requests.Session, dict[str, Any]]:
    s = dev_login(base, "alice")
    return s, portal_json(s, base)


def test_role_not_granted_page(live_bridge, make_settings) -> None:
    base = live_bridge(make_settings())
    s, portal = _signed_in(base)
    r = s.post(f"{base}/credentials/0123456789abcdef", data={"csrf_token": portal["csrf_token"]}, timeout=10)
    assert_error_page(r, 403, "not_granted")
    assert "not one of the roles granted to you" in r.text


def test_csrf_missing_or_wrong(live_bridge, make_settings, strict_sts_peer) -> None:
    base = live_bridge(make_settings())
    s, portal = _signed_in(base)
    gid = grant_id(portal, "/Admin")
    for data in ({}, {"csrf_token": "wrong"}):
        assert_error_page(s.post(f"{base}/credentials/{gid}", data=data, timeout=10), 400, "csrf_failed")
    assert strict_sts_peer.calls == 0


def test_duration_outside_the_grant(live_bridge, make_settings, strict_sts_peer) -> None:
    base = live_bridge(make_settings())
    s, portal = _signed_in(base)
    gid = grant_id(portal, "/ReadOnly")  # max 3600
    for d in ("7200", "60", "abc"):
        r = s.post(f"{base}/credentials/{gid}", data={"csrf_token": portal["csrf_token"], "duration": d}, timeout=10)
        assert_error_page(r, 400, "invalid_duration")
    assert strict_sts_peer.calls == 0


@pytest.mark.parametrize("status, code, ours, status_out", [
    (403, "AccessDenied", "sts_AccessDenied", 403),
    (400, "InvalidIdentityToken", "sts_InvalidIdentityToken", 400),
    (400, "ExpiredTokenException", "sts_ExpiredTokenException", 400),
    (400, "ValidationError", "sts_ValidationError", 400),
    (400, "Throttling", "sts_Throttling", 503),
    (500, "InternalFailure", "sts_InternalFailure", 503),
])
def test_sts_errors_become_clear_answers(live_bridge, make_settings, strict_sts_peer, status, code, ours,
                                         status_out) -> None:
    base = live_bridge(make_settings())
    s, portal = _signed_in(base)
    strict_sts_peer.fail_next(status, code, f"injected {code}")
    r = s.post(f"{base}/credentials/{grant_id(portal, '/Admin')}",
               headers={"Accept": "application/json", "X-CSRF-Token": portal["csrf_token"]}, timeout=30)
    assert r.status_code == status_out, r.text
    body = r.json()
    assert body["error"] == ours and body["request_id"] and body["hint"]
    # Nothing lost: the next try works.
    r = s.post(f"{base}/credentials/{grant_id(portal, '/Admin')}",
               headers={"Accept": "application/json", "X-CSRF-Token": portal["csrf_token"]}, timeout=30)
    assert r.status_code == 200


def test_role_max_session_duration_at_aws(live_bridge, make_settings, strict_sts_peer) -> None:
    base = live_bridge(make_settings())
    s, portal = _signed_in(base)
    strict_sts_peer.role_max_duration[f"arn:aws:iam::{ACCOUNT}:role/Admin"] = 3600
    r = s.post(f"{base}/credentials/{grant_id(portal, '/Admin')}",
               data={"csrf_token": portal["csrf_token"], "duration": "7200"}, timeout=30)
    assert_error_page(r, 400, "sts_ValidationError")
    assert "MaxSessionDuration" in r.text
    strict_sts_peer.seen.clear()  # the refusal was the point


def test_sts_unreachable(live_bridge, make_settings) -> None:
    base = live_bridge(make_settings(aws={"sts_endpoint_url": f"http://127.0.0.1:{free_port()}", "sts_timeout": 1}))
    s, portal = _signed_in(base)
    r = s.post(f"{base}/credentials/{grant_id(portal, '/Admin')}", data={"csrf_token": portal["csrf_token"]},
               timeout=30)
    assert_error_page(r, 503, "sts_unavailable")
    assert s.get(f"{base}/portal", timeout=10).status_code == 200


def test_redis_unreachable(live_bridge, make_settings) -> None:
    base = live_bridge(make_settings(redis={"url": f"redis://127.0.0.1:{free_port()}/0", "socket_timeout": 0.5}))
    r = requests.get(f"{base}/portal", cookies={"bridge_session": "x" * 43}, timeout=10)
    assert_error_page(r, 503, "store_unavailable")
    r = requests.get(f"{base}/portal", cookies={"bridge_session": "x" * 43}, headers={"Accept": "application/json"},
                     timeout=10)
    assert r.status_code == 503 and r.json()["error"] == "store_unavailable"
    assert_error_page(requests.get(f"{base}/login/dev", timeout=10), 503, "store_unavailable")
    assert requests.get(f"{base}/readyz", timeout=10).status_code == 503
    assert requests.get(f"{base}/healthz", timeout=10).status_code == 200


def test_not_signed_in(live_bridge, make_settings) -> None:
    base = live_bridge(make_settings())
    r = requests.post(f"{base}/credentials/abc", headers={"Accept": "application/json"}, timeout=10)
    assert r.status_code == 401 and r.json()["error"] == "not_signed_in"
    r = requests.get(f"{base}/portal", allow_redirects=False, timeout=10)
    assert r.status_code == 302


def test_no_secret_in_logs_or_pages(bridge, op, bridge_logs, make_settings) -> None:
    s = requests.Session()
    callback = start(bridge, s)
    code = parse_qs(urlsplit(callback).query)["code"][0]
    s.get(callback, timeout=10)
    portal = portal_json(s, bridge)
    r = s.post(f"{bridge}/credentials/{grant_id(portal, '/Admin')}",
               headers={"Accept": "application/json", "X-CSRF-Token": portal["csrf_token"]}, timeout=30)
    creds = r.json()
    secrets_ = [code, "fake-at", op.client_secret, s.cookies.get("bridge_session"), portal["csrf_token"],
                creds["SecretAccessKey"], creds["SessionToken"], "test-secret"]
    logs = bridge_logs.text
    assert "credentials_issued" in logs and "login_succeeded" in logs
    for secret in secrets_:
        assert secret and secret not in logs
    assert "eyJ" not in logs  # no JWT of any kind


def test_sts_throttling_is_retried(live_bridge, make_settings, strict_sts_peer) -> None:
    base = live_bridge(make_settings(aws={"sts_max_attempts": 3}))
    s, portal = _signed_in(base)
    strict_sts_peer.fail_next(400, "Throttling", "Rate exceeded")
    r = s.post(f"{base}/credentials/{grant_id(portal, '/Admin')}",
               headers={"Accept": "application/json", "X-CSRF-Token": portal["csrf_token"]}, timeout=30)
    assert r.status_code == 200 and strict_sts_peer.calls == 2


@pytest.mark.parametrize("status, body", [(200, "<html><body>Bad gateway</body></html>"),
                                          (200, "<AssumeRoleWithWebIdentityResponse><nope"),
                                          (200, "")])
def test_unreadable_sts_answer_is_a_502_page_and_audited(live_bridge, make_settings, strict_sts_peer, capsys,
                                                         status: int, body: str) -> None:
    """botocore's ResponseParserError is no BotoCoreError: it is still the 502 page, and audited."""
    base = live_bridge(make_settings())
    s, portal = _signed_in(base)
    strict_sts_peer.answer_next_raw(status, body)
    r = s.post(f"{base}/credentials/{grant_id(portal, '/Admin')}", data={"csrf_token": portal["csrf_token"]},
               timeout=30)
    assert_error_page(r, 502, "sts_bad_response")
    assert "could not read" in r.text
    audit_lines = [line for line in capsys.readouterr().out.splitlines() if '"type":"credentials"' in line]
    assert audit_lines and '"error":"sts_bad_response"' in audit_lines[-1]

