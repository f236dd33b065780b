"""IAM Identity Center protocol under attack (issue 22's black-box review), through real HTTP: botocore's
``sso-oidc`` and ``sso`` clients (their exception classes are what an SDK user sees), a browser session
from the sign-in stand-in, a real Redis, a bridge served in this process with a ``TestClock``.

- a reused refresh token revokes every token descended from its grant (RFC 9700 §4.14.2), audited;
- redirect URIs are loopback URIs of RFC 8252 and nothing else: nothing they hold reaches a header;
- RegisterClient is rate-limited and capped per address and in total, unused clients end in an hour;
- bad input (ports out of range, lone surrogates) is a clear 4xx in the AWS shapes, never a 500;
- nothing under /sso is cached (CSRF tokens, e-mails, authorization codes).
"""

from __future__ import annotations

import base64
import json
import re
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import pytest
import requests

from bridge.storage import SsoClient
from tests.conftest import ACCOUNT
from tests.integration.helpers import TestClock, cli_token, dev_login
from tests.integration.test_identity_center import (
    DEVICE_GRANT,
    Loopback,
    approve_device,
    oidc_client,
    portal_client,
    register,
)

pytestmark = pytest.mark.integration
CHALLENGE = "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM"  # RFC 7636's example S256 challenge
BASE_CSP = ("default-src 'self'; img-src 'self' data:; frame-ancestors 'none'; base-uri 'none'; "
            "form-action 'self'")


@pytest.fixture
def clock() -> TestClock:
    return TestClock()


Served = tuple[str, Any, Path]


@pytest.fixture
def serve(live_bridge, make_settings, tmp_path: Path, clock: TestClock) -> Callable[..., Served]:  # type: ignore[no-untyped-def]
    """A bridge in this process with ``clock`` and a file audit trail: (base URL, services, audit path)."""

    def start(**overrides: Any) -> Served:
        audit = tmp_path / "audit.jsonl"
        cli = {"poll_interval": 1, **overrides.pop("cli", {})}
        base = live_bridge(make_settings(audit={"sink": "file", "path": str(audit)}, cli=cli, **overrides))
        svc = live_bridge.app.extensions["bridge"]
        svc.store.clock = svc.device.clock = clock
        assert svc.identity_center is not None
        svc.identity_center.clock = clock
        return base, svc, audit

    return start


def login(oidc: Any, base: str, browser: requests.Session) -> tuple[dict[str, Any], dict[str, Any]]:
    """Register, start, approve in ``browser``, then one CreateToken (approved: no polling, no waiting)."""
    reg = register(oidc, [DEVICE_GRANT, "refresh_token"])
    start = oidc.start_device_authorization(clientId=reg["clientId"], clientSecret=reg["clientSecret"],
                                            startUrl=base)
    assert "Approved" in approve_device(browser, base, start["userCode"])
    token = oidc.create_token(grantType=DEVICE_GRANT, deviceCode=start["deviceCode"], clientId=reg["clientId"],
                              clientSecret=reg["clientSecret"])
    return reg, dict(token)


def refresh(oidc: Any, reg: dict[str, Any], refresh_token: str) -> dict[str, Any]:
    return dict(oidc.create_token(grantType="refresh_token", refreshToken=refresh_token, clientId=reg["clientId"],
                                  clientSecret=reg["clientSecret"]))


def audit_records(path: Path, type_: str) -> list[dict[str, Any]]:
    lines = path.read_text().splitlines() if path.exists() else []
    return [doc for doc in map(json.loads, lines) if doc["type"] == type_]


def client_keys(svc: Any) -> list[bytes]:
    return sorted(svc.store.r.scan_iter(match=f"{svc.store.prefix}ssoclient:*"))


# ---- 1. refresh-token reuse -------------------------------------------------------------------------


def test_a_reused_refresh_token_revokes_every_token_descended_from_its_grant(serve, bridge_logs) -> None:
    base, svc, audit = serve()
    oidc, sso = oidc_client(base), portal_client(base)
    browser = dev_login(base, "alice")
    reg, first = login(oidc, base, browser)
    _, other = login(oidc, base, browser)  # a second sign-in of the same browser: another grant
    second = refresh(oidc, reg, first["refreshToken"])
    third = refresh(oidc, reg, second["refreshToken"])
    assert sso.list_accounts(accessToken=third["accessToken"])["accountList"]
    # The first refresh token comes back (an attacker's stolen copy, or the user's after the attacker used it).
    with pytest.raises(oidc.exceptions.InvalidGrantException) as e:
        refresh(oidc, reg, first["refreshToken"])
    assert "already used" in e.value.response["error_description"]
    assert "revoked" in e.value.response["error_description"]
    # Everything descended from that grant has ended: the live access token and the live refresh token.
    with pytest.raises(sso.exceptions.UnauthorizedException):
        sso.list_accounts(accessToken=third["accessToken"])
    with pytest.raises(oidc.exceptions.InvalidGrantException):
        refresh(oidc, reg, third["refreshToken"])
    # The other grant of the same browser lives on, and so does the browser session.
    assert sso.list_accounts(accessToken=other["accessToken"])["accountList"]
    assert browser.get(f"{base}/portal", headers={"Accept": "application/json"}, timeout=10).status_code == 200
    # Audited once, naming the client and the user, never a token.
    [rec] = audit_records(audit, "token_reuse")
    assert rec["client_id"] == reg["clientId"] and rec["who"]["email"] == "alice@example.com"
    assert rec["revoked"] == 2  # the live access token and refresh token (the spent ones were gone already)
    text = audit.read_text() + bridge_logs.text
    for token in (first, second, third, other):
        assert token["accessToken"] not in text and token["refreshToken"] not in text


def race_refresh(oidc: Any, reg: dict[str, Any], refresh_token: str) -> list[dict[str, Any] | str]:
    """Two CreateToken calls with one refresh token, released at once: each new pair, or the error said."""
    barrier = threading.Barrier(2, timeout=30)  # a thread that fails first cannot leave the other waiting
    results: list[dict[str, Any] | str] = []

    def present() -> None:
        barrier.wait()
        try:
            results.append(refresh(oidc, reg, refresh_token))
        except oidc.exceptions.InvalidGrantException as e:
            results.append(e.response["error_description"])

    threads = [threading.Thread(target=present) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    return results


def test_a_refresh_token_presented_twice_at_once_ends_its_grant_whichever_wins(serve) -> None:
    """Two presentations racing (the attacker's and the user's): one may get a new pair, but it ends with
    the rest of the grant (the reuse marks the grant first; a refresh checks the mark after minting)."""
    base, svc, audit = serve()
    sso = portal_client(base)
    browser = dev_login(base, "alice")
    for _ in range(4):
        oidc = oidc_client(base)
        reg, first = login(oidc, base, browser)
        results = race_refresh(oidc, reg, first["refreshToken"])
        assert len(results) == 2 and any(isinstance(r, str) and "already used" in r for r in results), results
        for r in results:
            if isinstance(r, dict):  # the winner's pair: ended too
                with pytest.raises(sso.exceptions.UnauthorizedException):
                    sso.list_accounts(accessToken=r["accessToken"])
                with pytest.raises(oidc.exceptions.InvalidGrantException):
                    refresh(oidc, reg, r["refreshToken"])
        with pytest.raises(sso.exceptions.UnauthorizedException):
            sso.list_accounts(accessToken=first["accessToken"])
    assert len(audit_records(audit, "token_reuse")) == 4


# ---- 2. redirect URIs: loopback URIs only, nothing that can reach a header ------------------------------

BAD_REDIRECTS = [
    "http://127.0.0.1:1;script-src 'unsafe-inline' *;/cb",  # issue 22: becomes CSP directives
    "http://127.0.0.1/cb;script-src *", "http://127.0.0.1/c,b", "http://127.0.0.1/c b", "http://127.0.0.1/c'b",
    'http://127.0.0.1/c"b', "http://127.0.0.1/cb\r\nSet-Cookie: x=1", "http://127.0.0.1/cb\x00",
    "http://127.0.0.1/cb\x7f", "http://127.0.0.1/cb\t", " http://127.0.0.1/cb", "http://127.0.0.1/é",
    "http://127.0.0.1/cb#frag", "http://user@127.0.0.1/cb", "http://user:pw@localhost/cb",
    "http://127.0.0.1:0/cb", "http://127.0.0.1:65536/cb", "http://127.0.0.1:99999999999/cb",
    "http://127.0.0.1:abc/cb", "http://127.0.0.1:/cb", "http://127.0.0.1:+80/cb", "http://127.0.0.1:٣٣/cb",
    "http://127.0.0.1:080/cb", "https://127.0.0.1/cb", "HTTP://127.0.0.1/cb", "http://LOCALHOST/cb",
    "http://evil.example/cb", "http://127.0.0.1.evil.example/cb", "http://[::1/cb", "http://127.0.0.1\\@evil/cb",
    "http://127.0.0.1/cb?x=1;y", "http://127.0.0.1/%zz", "//127.0.0.1/cb", "http:127.0.0.1/cb",
]
GOOD_REDIRECTS = ["http://127.0.0.1/oauth/callback", "http://127.0.0.1:8400/", "http://localhost:65535/cb",
                  "http://[::1]:1/cb", "http://127.0.0.1", "http://127.0.0.1/cb?client=cli&x=%2F"]


def test_register_client_refuses_redirect_uris_that_are_not_plain_loopback_uris(serve) -> None:
    base, svc, _ = serve(rate_limits={"sso_register_per_minute": 0})  # 40 registrations in a row
    oidc = oidc_client(base)
    before = client_keys(svc)
    accepted = []
    for uri in BAD_REDIRECTS:
        try:
            register(oidc, ["authorization_code"], redirectUris=["http://127.0.0.1/ok", uri])
            accepted.append(uri)
        except oidc.exceptions.InvalidRedirectUriException as e:
            assert e.response["ResponseMetadata"]["HTTPStatusCode"] == 400
            assert "loopback" in e.response["error_description"], e.response
    assert accepted == [], accepted
    assert client_keys(svc) == before  # nothing stored
    for uri in GOOD_REDIRECTS:
        assert register(oidc, ["authorization_code"], redirectUris=[uri])["clientId"]


def _stored_client(svc: Any, redirect: str) -> str:
    """A client an earlier version registered (it took any loopback-looking URI)."""
    now = int(svc.store.clock())
    client_id = f"old-client.{now}"
    svc.store.put_sso_client(SsoClient(client_id=client_id, secret_hash="0" * 64, name="old", issued_at=now,
                                       expires_at=now + 3600, grant_types=("authorization_code",),
                                       redirect_uris=(redirect,), scopes=()), 3600)
    return client_id


def _authorize(s: requests.Session, base: str, client_id: str, redirect: str) -> requests.Response:
    q = {"response_type": "code", "client_id": client_id, "redirect_uri": redirect, "state": "st",
         "code_challenge_method": "S256", "code_challenge": CHALLENGE}
    return s.get(f"{base}/sso/authorize?{urlencode(q)}", allow_redirects=False, timeout=10)


def test_authorize_never_copies_a_redirect_uri_into_the_content_security_policy(serve) -> None:
    base, svc, _ = serve()
    s = dev_login(base, "alice")
    evil = "http://127.0.0.1:1;script-src 'unsafe-inline' *;/cb"
    r = _authorize(s, base, _stored_client(svc, evil), evil)
    assert r.status_code == 400 and "not registered" not in r.headers["Content-Security-Policy"]
    assert r.headers["Content-Security-Policy"] == BASE_CSP
    assert "does not accept this redirect address" in r.text, r.text[:2000]
    # A good client: form-action names exactly the loopback origin, rebuilt from its parsed parts.
    oidc = oidc_client(base)
    reg = register(oidc, ["authorization_code"], redirectUris=["http://127.0.0.1/oauth/callback"])
    loop = Loopback()
    r = _authorize(s, base, reg["clientId"], loop.uri)
    assert r.status_code == 200
    assert r.headers["Content-Security-Policy"] == f"{BASE_CSP} http://127.0.0.1:{loop.port}"


# ---- 8. bad input is a clear 4xx in the AWS shapes --------------------------------------------------------


def test_authorize_with_a_port_out_of_range_or_not_a_number_is_a_clear_400(serve) -> None:
    base, svc, _ = serve()
    oidc = oidc_client(base)
    reg = register(oidc, ["authorization_code"], redirectUris=["http://127.0.0.1/oauth/callback"])
    s = dev_login(base, "alice")
    for port in ("99999", "65536", "0", "abc", "", "-1", "٣"):
        r = _authorize(s, base, reg["clientId"], f"http://127.0.0.1:{port}/oauth/callback")
        assert r.status_code == 400, (port, r.status_code, r.text[:500])
        assert "does not accept this redirect address" in r.text and "Location" not in r.headers
    # and a stored client whose own registered URI has such a port (registered by an earlier version)
    bad = "http://127.0.0.1:99999/cb"
    r = _authorize(s, base, _stored_client(svc, bad), bad)
    assert r.status_code == 400 and "Location" not in r.headers


def _raw(base: str, path: str, body: str) -> requests.Response:
    return requests.post(f"{base}/sso/{path}", data=body.encode(), headers={"Content-Type": "application/json"},
                         timeout=10)


def test_lone_surrogates_in_the_json_bodies_are_a_clear_400_not_a_500(serve) -> None:
    base, svc, _ = serve()
    oidc = oidc_client(base)
    reg = register(oidc, [DEVICE_GRANT])
    start = oidc.start_device_authorization(clientId=reg["clientId"], clientSecret=reg["clientSecret"],
                                            startUrl=base)
    body = {"grantType": DEVICE_GRANT, "deviceCode": start["deviceCode"], "clientId": reg["clientId"],
            "clientSecret": reg["clientSecret"]}
    lone = "\ud800"
    for field in ("clientId", "clientSecret", "deviceCode"):
        # As an SDK sends it (json.dumps escapes the lone surrogate as \ud800: valid JSON text)...
        with pytest.raises(oidc.exceptions.InvalidRequestException) as e:
            oidc.create_token(**{**body, field: f"x{lone}"})
        assert field in e.value.response["error_description"]
        # ...and the raw answer: 400, the sso-oidc error shape, the type header.
        r = _raw(base, "token", json.dumps({**body, field: lone}))
        assert r.status_code == 400 and r.headers["x-amzn-ErrorType"] == "InvalidRequestException"
        assert r.json()["error"] == "invalid_request" and r.headers["Cache-Control"] == "no-store"
    for path, doc in (("device_authorization", {"clientId": lone, "clientSecret": "x", "startUrl": base}),
                      ("client/register", {"clientName": f"cli{lone}", "clientType": "public"}),
                      ("client/register", {"clientName": "cli", "clientType": "public", lone: 1})):
        r = _raw(base, path, json.dumps(doc))
        assert r.status_code == 400 and r.json()["error"] == "invalid_request", (path, r.status_code, r.text)
    # nothing came of them: the device code is still pending, and still works
    with pytest.raises(oidc.exceptions.AuthorizationPendingException):
        oidc.create_token(**body)


# ---- 7. RegisterClient: rate limit, caps, unused clients end early, a metric ---------------------------


def _from(client: Any, address: str) -> Any:
    """Make ``client`` send as if from ``address`` (the bridge trusts one proxy: X-Forwarded-For)."""
    client.meta.events.register("before-send", lambda request, **_: request.headers.__setitem__(
        "X-Forwarded-For", address))
    return client


def test_register_client_is_rate_limited_per_address(serve, clock: TestClock) -> None:
    base, svc, _ = serve(trusted_proxies=1, rate_limits={"sso_register_per_minute": 3})
    clock.to_window_start()
    a, b = _from(oidc_client(base), "192.0.2.10"), _from(oidc_client(base), "192.0.2.20")
    for _ in range(3):
        register(a, [DEVICE_GRANT])
    with pytest.raises(a.exceptions.SlowDownException) as e:
        register(a, [DEVICE_GRANT])
    assert "retry in" in e.value.response["error_description"]
    assert register(b, [DEVICE_GRANT])["clientId"]  # another address has its own budget
    # IPv6: one /64 is one address (a host has a whole /64 to pick from)
    v6 = [_from(oidc_client(base), f"2001:db8:1:2::{n}") for n in range(1, 5)]
    for c in v6[:3]:
        register(c, [DEVICE_GRANT])
    with pytest.raises(v6[3].exceptions.SlowDownException):
        register(v6[3], [DEVICE_GRANT])
    clock.advance(60)
    assert register(a, [DEVICE_GRANT])["clientId"]


def test_live_clients_are_capped_per_address_and_in_total(serve, clock: TestClock) -> None:
    base, svc, _ = serve(trusted_proxies=1, cli={"sso_clients_per_address": 2, "sso_clients_max": 3})
    a, b = _from(oidc_client(base), "192.0.2.10"), _from(oidc_client(base), "192.0.2.20")
    register(a, [DEVICE_GRANT])
    register(a, [DEVICE_GRANT])
    with pytest.raises(a.exceptions.InvalidRequestException) as e:
        register(a, [DEVICE_GRANT])
    assert "from your address" in e.value.response["error_description"]
    assert "cli.sso_clients_per_address" in e.value.response["error_description"]
    register(b, [DEVICE_GRANT])
    keys = client_keys(svc)
    with pytest.raises(b.exceptions.InvalidRequestException) as e:
        register(b, [DEVICE_GRANT])
    assert "cli.sso_clients_max" in e.value.response["error_description"]
    assert client_keys(svc) == keys  # nothing stored
    # Unused registrations end after an hour, and make room again.
    clock.advance(3601)
    assert register(a, [DEVICE_GRANT])["clientId"] and register(b, [DEVICE_GRANT])["clientId"]


def test_a_client_never_used_for_a_token_ends_after_an_hour_a_used_one_lives_on(serve, clock: TestClock) -> None:
    base, svc, _ = serve()
    oidc = oidc_client(base)
    unused = register(oidc, [DEVICE_GRANT, "refresh_token"])
    used, _ = login(oidc, base, dev_login(base, "alice"))
    # As the SDKs need it (botocore refreshes only while the registration lives): the whole lifetime.
    assert unused["clientSecretExpiresAt"] - unused["clientIdIssuedAt"] == svc.settings.cli.sso_client_lifetime
    unused_ttl, used_ttl = (svc.store.r.ttl(f"{svc.store.prefix}ssoclient:{c['clientId']}") for c in (unused, used))
    assert 0 < unused_ttl <= 3600 < svc.settings.cli.sso_client_lifetime - 60 <= used_ttl
    clock.advance(3601)
    with pytest.raises(oidc.exceptions.InvalidClientException) as e:
        oidc.start_device_authorization(clientId=unused["clientId"], clientSecret=unused["clientSecret"],
                                        startUrl=base)
    assert "register again" in e.value.response["error_description"]
    assert oidc.start_device_authorization(clientId=used["clientId"], clientSecret=used["clientSecret"],
                                           startUrl=base)["deviceCode"]


def test_registered_clients_are_counted_in_the_metrics(serve) -> None:
    base, svc, _ = serve(cli={"sso_clients_per_address": 2})
    oidc = oidc_client(base)
    register(oidc, [DEVICE_GRANT])
    register(oidc, [DEVICE_GRANT])
    with pytest.raises(oidc.exceptions.InvalidRequestException):
        register(oidc, [DEVICE_GRANT])
    text = requests.get(f"{base}/metrics", timeout=10).text
    assert re.search(r'^bridge_sso_clients_registered_total\{outcome="registered"\} 2\.0$', text, re.M), text
    assert re.search(r'^bridge_sso_clients_registered_total\{outcome="address_full"\} 1\.0$', text, re.M)
    assert re.search(r"^bridge_sso_clients 2\.0$", text, re.M)


# ---- 9. nothing under /sso is cached ------------------------------------------------------------------


def test_no_sso_response_is_cached(serve) -> None:
    base, svc, _ = serve()
    oidc = oidc_client(base)
    reg = register(oidc, ["authorization_code"], redirectUris=["http://127.0.0.1/oauth/callback"])
    s = dev_login(base, "alice")
    loop = Loopback()
    page = _authorize(s, base, reg["clientId"], loop.uri)  # the approval page: a CSRF token, the user's roles
    assert page.status_code == 200 and 'name="csrf_token"' in page.text
    answers = {"authorize page": page,
               "authorize, unknown client": _authorize(s, base, "nope", loop.uri),
               "authorize, signed out": _authorize(requests.Session(), base, reg["clientId"], loop.uri)}
    csrf = re.search(r'name="csrf_token" value="([^"]+)"', page.text)[1]  # type: ignore[index]
    action = re.search(r'<form method="post" action="([^"]+)"', page.text)[1].replace("&amp;", "&")  # type: ignore[index]
    decided = s.post(f"{base}{action}", data={"csrf_token": csrf, "decision": "approve", "confirm": "yes"},
                     allow_redirects=False, timeout=10)
    assert decided.status_code == 303 and "code=" in decided.headers["Location"]
    answers["authorize, the redirect with the code"] = decided
    answers["register"] = requests.post(f"{base}/sso/client/register", json={"clientName": "x", "clientType": "public"},
                                        timeout=10)
    answers["register, error"] = requests.post(f"{base}/sso/client/register", json={}, timeout=10)
    answers["token, error"] = requests.post(f"{base}/sso/token", json={}, timeout=10)
    answers["accounts, error"] = requests.get(f"{base}/sso/assignment/accounts", timeout=10)
    answers["wrong method"] = requests.get(f"{base}/sso/token", timeout=10)
    for what, r in answers.items():
        assert r.headers.get("Cache-Control") == "no-store", (what, r.status_code, dict(r.headers))


# ---- issue 22 item 10: an independent review of the above -------------------------------------------------


def _decide(s: requests.Session, base: str, page: requests.Response) -> requests.Response:
    """Approve an authorize page (the explicit confirmation ticked); the 303 to the loopback URI."""
    csrf = re.search(r'name="csrf_token" value="([^"]+)"', page.text)[1]  # type: ignore[index]
    action = re.search(r'<form method="post" action="([^"]+)"', page.text)[1].replace("&amp;", "&")  # type: ignore[index]
    return s.post(f"{base}{action}", data={"csrf_token": csrf, "decision": "approve", "confirm": "yes"},
                  allow_redirects=False, timeout=10)


def test_a_code_challenge_that_is_not_an_s256_challenge_is_refused_at_authorize_never_a_500(serve) -> None:
    """Attack: ``code_challenge=éééé…`` (43 characters, as the length check wanted) was taken and stored; the
    code's CreateToken then compared it with ``hmac.compare_digest``, which raises on non-ASCII text: a 500."""
    base, svc, _ = serve()
    oidc = oidc_client(base)
    reg = register(oidc, ["authorization_code"], redirectUris=["http://127.0.0.1/oauth/callback"])
    s = dev_login(base, "alice")
    loop = Loopback()
    for bad in ("é" * 43, CHALLENGE[:-1] + "=", CHALLENGE + "A", CHALLENGE[:-1] + "+", "A" * 128, CHALLENGE[:42]):
        q = {"response_type": "code", "client_id": reg["clientId"], "redirect_uri": loop.uri, "state": "st",
             "code_challenge_method": "S256", "code_challenge": bad}
        r = s.get(f"{base}/sso/authorize?{urlencode(q)}", allow_redirects=False, timeout=10)
        assert r.status_code == 400 and "Location" not in r.headers, (bad, r.status_code)
        assert "PKCE S256" in r.text and "43 base64url characters" in r.text, r.text[:2000]
    assert list(svc.store.r.scan_iter(match=f"{svc.store.prefix}authcode:*")) == []  # no code was issued
    # A code an earlier version issued with such a challenge: a clear InvalidGrantException, not a 500.
    page = _authorize(s, base, reg["clientId"], loop.uri)
    code = re.search(r"code=([^&]+)", _decide(s, base, page).headers["Location"])[1]  # type: ignore[index]
    (key,) = svc.store.r.scan_iter(match=f"{svc.store.prefix}authcode:*")
    svc.store.r.set(key, svc.store.r.get(key).replace(CHALLENGE.encode(), ("é" * 43).encode()), keepttl=True)
    with pytest.raises(oidc.exceptions.InvalidGrantException) as e:
        oidc.create_token(grantType="authorization_code", clientId=reg["clientId"], clientSecret=reg["clientSecret"],
                          code=code, redirectUri=loop.uri, codeVerifier="x" * 43)
    assert "PKCE" in e.value.response["error_description"]


def test_a_next_token_holding_infinity_is_a_clear_400_not_a_500(serve) -> None:
    """Attack: nextToken is base64 JSON the bridge reads back: ``{"o": Infinity}`` (or ``1e400``) made
    ``int()`` raise OverflowError, which nothing caught: a 500 for any signed-in user."""
    base, svc, _ = serve()
    oidc, sso = oidc_client(base), portal_client(base)
    _, token = login(oidc, base, dev_login(base, "alice"))
    for doc in (b'{"o":Infinity,"s":"accounts"}', b'{"o":-Infinity,"s":"accounts"}', b'{"o":1e400,"s":"accounts"}',
                b'{"o":NaN,"s":"accounts"}'):
        nt = base64.urlsafe_b64encode(doc).decode().rstrip("=")
        with pytest.raises(sso.exceptions.InvalidRequestException) as e:
            sso.list_accounts(accessToken=token["accessToken"], nextToken=nt)
        assert "nextToken" in e.value.response["Error"]["Message"], doc
        roles = doc.replace(b'"accounts"', f'"roles:{ACCOUNT}"'.encode())
        with pytest.raises(sso.exceptions.InvalidRequestException):
            sso.list_account_roles(accessToken=token["accessToken"], accountId=ACCOUNT,
                                   nextToken=base64.urlsafe_b64encode(roles).decode().rstrip("="))
    assert sso.list_accounts(accessToken=token["accessToken"])["accountList"]  # the token still works


def pass_time(svc: Any, clock: TestClock, seconds: int) -> None:
    """``seconds`` go by for the bridge (its clock) and for Redis (every TTL under its prefix runs down)."""
    clock.advance(seconds)
    r = svc.store.r
    for key in r.scan_iter(match=f"{svc.store.prefix}*"):
        left = r.pttl(key)
        if left >= 0:
            r.delete(key) if left <= seconds * 1000 else r.pexpire(key, left - seconds * 1000)


def test_a_shorter_login_does_not_hide_a_longer_ones_tokens_from_the_session(serve, clock: TestClock) -> None:
    """Attack (on the session's token index): every token filed under a session set the index's TTL to its
    own, so an Identity Center login without refresh (1 h) after a `bridge login` (12 h) or a refresh token
    ended the index an hour later: *Your sign-ins* no longer listed the long one (nor could Revoke it), and
    a reused refresh token's sweep and sign-out found nothing to revoke."""
    base, svc, _ = serve(session={"idle_timeout": 43200})
    browser = dev_login(base, "alice")
    cli = cli_token(base, browser)  # `bridge login`: cli.token_lifetime (12 h)
    oidc = oidc_client(base)
    reg = register(oidc, [DEVICE_GRANT])  # a client without refresh: its token lives sso_token_lifetime (1 h)
    start = oidc.start_device_authorization(clientId=reg["clientId"], clientSecret=reg["clientSecret"], startUrl=base)
    assert "Approved" in approve_device(browser, base, start["userCode"])
    oidc.create_token(grantType=DEVICE_GRANT, deviceCode=start["deviceCode"], clientId=reg["clientId"],
                      clientSecret=reg["clientSecret"])
    pass_time(svc, clock, 3700)
    assert requests.get(f"{base}/api/v1/grants", headers={"Authorization": f"Bearer {cli}"},
                        timeout=10).status_code == 200  # the `bridge login` token lives on…
    page = browser.get(f"{base}/portal/sign-ins", headers={"Accept": "application/json"}, timeout=10).json()
    (here,) = [row for row in page["sessions"] if row["current"]]
    assert [t["client_id"] for t in here["tokens"]] == ["bridge-cli"], page  # …and is listed, with its Revoke
    csrf = re.search(r'name="csrf_token" value="([^"]+)"',  # type: ignore[index]
                     browser.get(f"{base}/portal/sign-ins", timeout=10).text)[1]
    r = browser.post(f"{base}/portal/sign-ins/revoke", data={"csrf_token": csrf, "token": here["tokens"][0]["id"]},
                     headers={"Accept": "application/json"}, timeout=10)
    assert r.status_code == 200 and r.json()["revoked"] == 1, r.text
    assert requests.get(f"{base}/api/v1/grants", headers={"Authorization": f"Bearer {cli}"},
                        timeout=10).status_code == 401


def test_an_authorization_code_presented_again_revokes_the_tokens_it_gave(serve) -> None:
    """Attack (RFC 6749 §4.1.2): an authorization code with its PKCE verifier is copied (a shared terminal's
    history, a proxy's log of the loopback request and the CLI's memory); whoever presents it second was told
    only "invalid_grant", and the tokens the first got lived on. Now the second presentation — client, redirect
    URI and verifier all right — ends every token that code gave, audited; one without the verifier (someone
    holding the code alone) changes nothing."""
    import hashlib
    import secrets

    base, svc, audit = serve()
    oidc, sso = oidc_client(base), portal_client(base)
    reg = register(oidc, ["authorization_code", "refresh_token"], redirectUris=["http://127.0.0.1/oauth/callback"])
    s = dev_login(base, "alice")
    verifier = secrets.token_urlsafe(64)
    challenge = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=").decode()
    loop = Loopback()
    q = {"response_type": "code", "client_id": reg["clientId"], "redirect_uri": loop.uri, "state": "st",
         "code_challenge_method": "S256", "code_challenge": challenge}
    page = s.get(f"{base}/sso/authorize?{urlencode(q)}", allow_redirects=False, timeout=10)
    code = re.search(r"code=([^&]+)", _decide(s, base, page).headers["Location"])[1]  # type: ignore[index]
    args = {"grantType": "authorization_code", "clientId": reg["clientId"], "clientSecret": reg["clientSecret"],
            "code": code, "redirectUri": loop.uri, "codeVerifier": verifier}
    first = oidc.create_token(**args)
    _, other = login(oidc, base, s)  # another sign-in of the same browser: not descended from the code
    with pytest.raises(oidc.exceptions.InvalidGrantException) as e:  # the code alone, without its verifier
        oidc.create_token(**{**args, "codeVerifier": secrets.token_urlsafe(64)})
    assert "revoked" not in e.value.response["error_description"]
    assert sso.list_accounts(accessToken=first["accessToken"])["accountList"]
    with pytest.raises(oidc.exceptions.InvalidGrantException) as e:  # the whole copy
        oidc.create_token(**args)
    assert "already used" in e.value.response["error_description"]
    assert "revoked" in e.value.response["error_description"]
    with pytest.raises(sso.exceptions.UnauthorizedException):
        sso.list_accounts(accessToken=first["accessToken"])
    with pytest.raises(oidc.exceptions.InvalidGrantException):
        refresh(oidc, reg, first["refreshToken"])
    assert sso.list_accounts(accessToken=other["accessToken"])["accountList"]  # the other sign-in lives on
    [rec] = audit_records(audit, "token_reuse")
    assert rec["client_id"] == reg["clientId"] and rec["who"]["email"] == "alice@example.com"
    assert rec["revoked"] == 2 and rec["grant_type"] == "authorization_code"
    assert code not in audit.read_text() and verifier not in audit.read_text()


def test_every_per_address_limit_counts_an_ipv6_64_as_one_address(serve, clock: TestClock) -> None:
    """Attack: RegisterClient counted an IPv6 /64 as one address, but StartDeviceAuthorization, CreateToken,
    the bridge's own /oauth/device_authorization and sign-in starts counted each IPv6 address: a host picking
    a new source address from its /64 for every request minted device codes and pending sign-ins (each a Redis
    record) without limit, from one registered client."""
    base, svc, _ = serve(trusted_proxies=1, rate_limits={"device_per_minute": 3, "sign_in_per_minute": 3})
    clock.to_window_start()
    reg = register(oidc_client(base), [DEVICE_GRANT])
    v6 = [_from(oidc_client(base), f"2001:db8:1:2::{n}") for n in range(1, 5)]
    for c in v6[:3]:
        c.start_device_authorization(clientId=reg["clientId"], clientSecret=reg["clientSecret"], startUrl=base)
    with pytest.raises(v6[3].exceptions.SlowDownException):
        v6[3].start_device_authorization(clientId=reg["clientId"], clientSecret=reg["clientSecret"], startUrl=base)
    other = _from(oidc_client(base), "2001:db8:1:3::1")  # the next /64 has its own budget
    assert other.start_device_authorization(clientId=reg["clientId"], clientSecret=reg["clientSecret"],
                                            startUrl=base)["deviceCode"]

    def device(n: int) -> int:
        return requests.post(f"{base}/oauth/device_authorization", data={"client_id": "bridge-cli"},
                             headers={"X-Forwarded-For": f"2001:db8:9:9::{n}"}, timeout=10).status_code

    assert [device(n) for n in range(1, 5)] == [200, 200, 200, 429]

    def sign_in(n: int) -> int:
        return requests.get(f"{base}/login/dev", headers={"X-Forwarded-For": f"2001:db8:7:7::{n}"},
                            allow_redirects=False, timeout=10).status_code

    assert [sign_in(n) for n in range(1, 5)] == [302, 302, 302, 429]


def test_authorize_refuses_a_redirect_uri_or_state_too_long_instead_of_cutting_it(serve) -> None:
    """Reject, don't repair: a redirect_uri past 2048 characters was cut to 2048 and, if that prefix was
    registered, the code went to an address the client never asked for; a state past 512 was cut too (the
    client's own check then failed with no word of why)."""
    base, svc, _ = serve()
    oidc = oidc_client(base)
    registered = "http://127.0.0.1/" + "a" * 2031  # 2048 characters
    reg = register(oidc, ["authorization_code"], redirectUris=[registered])
    s = dev_login(base, "alice")
    r = _authorize(s, base, reg["clientId"], registered + "bbbb")
    assert r.status_code == 400 and "Location" not in r.headers, r.status_code
    assert "2048" in r.text, r.text[:2000]
    q = {"response_type": "code", "client_id": reg["clientId"], "redirect_uri": registered, "state": "s" * 513,
         "code_challenge_method": "S256", "code_challenge": CHALLENGE}
    r = s.get(f"{base}/sso/authorize?{urlencode(q)}", allow_redirects=False, timeout=10)
    assert r.status_code == 400 and "512" in r.text, r.status_code
    assert _authorize(s, base, reg["clientId"], registered).status_code == 200  # at the limits: fine
