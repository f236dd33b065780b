"""Web hardening through Flask's test client against a real app (real Redis): /metrics protection and
its bounded method label, input numbers that never become a 500, HSTS and the CSP form-action."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import requests

from tests.conftest import ACCOUNTS

pytestmark = pytest.mark.integration

RULES = [
    {"name": "admins", "match": {"group": "aws-admins"},
     "grants": [{"account": "sandbox", "role": "Admin", "duration": {"max": 43200}}]},
    {"name": "billing", "match": {"group": "aws-readonly"},
     "grants": [{"account": "sandbox", "role": "Billing", "console": "saml_post"}]},
]


def signed_in(client: Any) -> dict[str, Any]:
    """The dev connector's sign-in through the test client; returns the portal JSON."""
    r = client.get("/login/dev")
    state = re.search(r"state=([\w-]+)", r.headers["Location"])
    assert state, r.headers["Location"]
    r = client.post("/callback/dev", data={"state": state[1], "user": "alice"})
    assert r.status_code == 303, r.text[:300]
    doc: dict[str, Any] = client.get("/portal", headers={"Accept": "application/json"}).get_json()
    return doc


def grant(portal: dict[str, Any], role: str) -> str:
    return str(next(g["id"] for g in portal["grants"] if g["role_arn"].endswith(f"role/{role}")))


@pytest.fixture
def app(make_settings, app_factory) -> Any:  # type: ignore[no-untyped-def]
    return app_factory(make_settings(mapping={"accounts": ACCOUNTS, "rules": RULES}))


# -- /metrics -------------------------------------------------------------------------------------

def test_metrics_method_label_is_bounded(app) -> None:  # type: ignore[no-untyped-def]
    c = app.test_client()
    for method in ("BREW", "XYZZY1", "XYZZY2"):
        c.open("/healthz", method=method)
    c.get("/healthz")
    m = app.extensions["bridge"].metrics
    assert m.value("bridge_http_requests_total", endpoint="/healthz", method="GET", status="200") == 1
    assert m.value("bridge_http_requests_total", endpoint="unmatched", method="other", status="405") == 3
    assert "XYZZY" not in c.get("/metrics").text


def test_metrics_bearer_token(make_settings, app_factory, tmp_path: Path) -> None:
    (tmp_path / "token").write_text("s3cret-scrape-token\n")
    app = app_factory(make_settings(metrics={"bearer_token_file": str(tmp_path / "token")}))
    c = app.test_client()
    for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": "Basic czNjcmV0"},
                    {"Authorization": "Bearer s3cret-scrape-token-and-more"}):
        r = c.get("/metrics", headers=headers)
        assert r.status_code == 401, headers
        assert r.headers["WWW-Authenticate"].startswith("Bearer")
        assert "Traceback" not in r.text and "bridge_" not in r.text
    assert c.get("/metrics", headers={"Accept": "application/json"}).get_json()["error"] == "unauthorized"
    r = c.get("/metrics", headers={"Authorization": "Bearer s3cret-scrape-token"})
    assert r.status_code == 200 and "bridge_http_requests_total" in r.text


def test_metrics_on_a_separate_listener(make_settings, app_factory) -> None:
    app = app_factory(make_settings(metrics={"listen": "127.0.0.1:9109"}))
    c = app.test_client()
    assert c.get("/metrics").status_code == 404  # the main listener does not serve it
    r = c.get("/metrics", base_url="http://127.0.0.1:9109")
    assert r.status_code == 200 and "bridge_http_requests_total" in r.text
    # ... and the metrics listener serves nothing else
    assert c.get("/portal", base_url="http://127.0.0.1:9109").status_code == 404
    assert c.get("/healthz").status_code == 200


def test_metrics_settings_and_warning(make_settings, tmp_path: Path) -> None:
    from bridge.domain.errors import ConfigError

    open_metrics = make_settings(base_url="https://bridge.example.com", insecure_dev_login=False,
                                 connectors=[{"id": "c", "type": "oidc", "issuer": "https://idp.example.com",
                                              "client_id": "x", "client_secret": "y"}])
    assert any("/metrics" in w for w in open_metrics.warnings())
    (tmp_path / "t").write_text("tok")
    assert not any("/metrics" in w for w in make_settings(metrics={"bearer_token_file": str(tmp_path / "t")})
                   .warnings())
    assert not any("/metrics" in w for w in make_settings(metrics={"listen": "127.0.0.1:9100"}).warnings())
    with pytest.raises(ConfigError) as e:
        make_settings(metrics={"listen": "nope", "bearer_token_file": str(tmp_path / "missing")})
    text = "\n".join(e.value.problems)
    assert "metrics.listen" in text and "metrics.bearer_token_file" in text
    (tmp_path / "empty").write_text("\n")
    with pytest.raises(ConfigError):
        make_settings(metrics={"bearer_token_file": str(tmp_path / "empty")})


@contextmanager
def served(tmp_path: Path, cfg: dict[str, Any], bind: str, ready: Callable[[], bool],
           workers: int = 1) -> Iterator[None]:
    """``bridge serve`` (gunicorn, ``workers`` workers) with ``cfg`` on ``bind`` until ``ready()``; stopped after."""
    import yaml

    (tmp_path / "bridge.yaml").write_text(yaml.safe_dump(cfg))
    env = {**os.environ, "BRIDGE_ACCESS_LOG": "0", "BRIDGE_THREADS": "2"}
    env.pop("PROMETHEUS_MULTIPROC_DIR", None)
    log = (tmp_path / "serve.log").open("wb")
    p = subprocess.Popen([sys.executable, "-m", "bridge", "serve", "--config", str(tmp_path / "bridge.yaml"),
                          "--bind", bind, "--workers", str(workers)], env=env, stdout=subprocess.DEVNULL,
                         stderr=log, start_new_session=True)
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                if ready():
                    break
            except OSError:  # requests' connection errors too
                pass
            assert p.poll() is None and time.monotonic() < deadline, (tmp_path / "serve.log").read_text()
            time.sleep(0.1)
        yield
    finally:
        os.killpg(p.pid, signal.SIGTERM)
        try:
            p.wait(15)
        except subprocess.TimeoutExpired:
            os.killpg(p.pid, signal.SIGKILL)
        log.close()


def _serve_config(redis_url: str, keys_dir: Path, metrics: dict[str, str], base_url: str) -> dict[str, Any]:
    return {"base_url": base_url, "secret_key": "t", "log_level": "WARNING",
            "insecure_dev_login": True, "redis": {"url": redis_url, "key_prefix": f"m{time.monotonic_ns()}:"},
            "issuer": {"url": "https://bridge.example.com", "keys_dir": str(keys_dir)}, "metrics": metrics,
            "connectors": [{"id": "dev", "type": "dev", "users": [{"subject": "alice"}]}]}


def test_bridge_serve_metrics_listener(tmp_path: Path, redis_url: str, keys_dir: Path) -> None:
    """`bridge serve` (gunicorn) with metrics.listen and a token: a second listener for /metrics only."""
    from bridge.runtime.localredis import free_port

    main, scrape = free_port(), free_port()
    (tmp_path / "token").write_text("scrape-me\n")
    cfg = _serve_config(redis_url, keys_dir, {"listen": f"127.0.0.1:{scrape}", "bearer_token_file": "token"},
                        f"http://127.0.0.1:{main}")
    with served(tmp_path, cfg, f"127.0.0.1:{main}",
                lambda: requests.get(f"http://127.0.0.1:{main}/healthz", timeout=1).status_code == 200):
        assert requests.get(f"http://127.0.0.1:{main}/metrics", timeout=5).status_code == 404
        url = f"http://127.0.0.1:{scrape}"
        r = requests.get(f"{url}/metrics", timeout=5)
        assert r.status_code == 401 and r.headers["WWW-Authenticate"].startswith("Bearer")
        r = requests.get(f"{url}/metrics", headers={"Authorization": "Bearer scrape-me"}, timeout=5)
        assert r.status_code == 200 and "bridge_http_requests_total" in r.text
        assert requests.get(f"{url}/", timeout=5).status_code == 404
        assert requests.get(f"{url}/healthz", timeout=5).status_code == 404


def test_metrics_listener_is_told_by_the_socket_not_the_host_header(tmp_path: Path, redis_url: str,
                                                                      keys_dir: Path) -> None:
    """gunicorn's main bind on a unix socket (behind a local proxy), metrics.listen on TCP, no token: a
    request on the main socket that names the metrics port in its Host header gets no metrics."""
    import http.client
    import socket

    from bridge.runtime.localredis import free_port

    class UnixConnection(http.client.HTTPConnection):
        def connect(self) -> None:
            self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            self.sock.connect(str(main_sock))

    def on_main(path: str, host: str) -> int:
        c = UnixConnection("localhost", timeout=5)
        try:
            c.request("GET", path, headers={"Host": host})
            return c.getresponse().status
        finally:
            c.close()

    main_sock, scrape = tmp_path / "main.sock", free_port()
    cfg = _serve_config(redis_url, keys_dir, {"listen": f"127.0.0.1:{scrape}"}, "http://127.0.0.1:8080")
    with served(tmp_path, cfg, f"unix:{main_sock}", lambda: on_main("/healthz", "localhost") == 200):
        assert on_main("/metrics", f"127.0.0.1:{scrape}") == 404  # the Host header names the metrics port
        assert on_main("/metrics", "localhost") == 404
        r = requests.get(f"http://127.0.0.1:{scrape}/metrics", timeout=5)
        assert r.status_code == 200 and "bridge_http_requests_total" in r.text
        assert requests.get(f"http://127.0.0.1:{scrape}/healthz", timeout=5).status_code == 404


# -- numbers from input ---------------------------------------------------------------------------

@pytest.mark.parametrize("raw", ["²", "1²", "٣٠٠٠", "9" * 5000, "-900", " 900", "0x10", "9e3"])
def test_duration_never_a_500(app, raw: str) -> None:  # type: ignore[no-untyped-def]
    c = app.test_client()
    portal = signed_in(c)
    gid = grant(portal, "Admin")
    for path in (f"/credentials/{gid}", f"/console/{gid}"):
        r = c.post(path, data={"csrf_token": portal["csrf_token"], "duration": raw},
                   headers={"Accept": "application/json"})
        assert r.status_code == 400, (path, raw, r.status_code, r.text[:300])
        assert r.get_json()["error"] == "invalid_duration"


def cli_token(client: Any, csrf: str) -> str:
    """A CLI bearer token through the device flow, approved by the signed-in ``client``."""
    start = client.post("/oauth/device_authorization", data={"client_id": "bridge-cli"}).get_json()
    r = client.post("/device", data={"user_code": start["user_code"], "decision": "approve", "confirm": "yes",
                                     "csrf_token": csrf})
    assert r.status_code == 200, r.text[:300]
    tok = client.post("/oauth/token", data={"grant_type": "urn:ietf:params:oauth:grant-type:device_code",
                                            "client_id": "bridge-cli", "device_code": start["device_code"]})
    assert tok.status_code == 200, tok.text[:300]
    return str(tok.get_json()["access_token"])


@pytest.mark.parametrize("raw", ["²", "9" * 5000, "\x00"])
def test_api_duration_never_a_500(app, raw: str) -> None:  # type: ignore[no-untyped-def]
    c = app.test_client()
    portal = signed_in(c)
    token = cli_token(c, portal["csrf_token"])
    api = app.test_client()  # no browser cookie next to the bearer token
    for path in (f"/api/v1/credentials/{grant(portal, 'Admin')}", f"/api/v1/console/{grant(portal, 'Admin')}"):
        r = api.post(path, data={"duration": raw}, headers={"Authorization": f"Bearer {token}"})
        assert r.status_code == 400, (path, r.status_code, r.text[:300])
        assert r.get_json()["error"] == "invalid_duration"


def test_parse_seconds() -> None:
    from bridge.domain.errors import BadRequest
    from bridge.web.common import parse_seconds

    assert parse_seconds("900", "duration") == 900
    assert parse_seconds("0043200", "duration") == 43200
    for bad in ("", "²", "1²", "٣", "-1", "+5", " 9", "9 ", "1_000", "9" * 13, "\x00", "1.5"):
        with pytest.raises(BadRequest) as e:
            parse_seconds(bad, "duration")
        assert e.value.code == "invalid_duration"


@pytest.mark.parametrize("raw", ["²", "٣٦٠٠", "9" * 5000])
def test_passthrough_session_duration_attribute(raw: str) -> None:
    """The IdP's SessionDuration attribute: odd digits fall back to the default, never a 500 at the callback."""
    from bridge.domain.identity import Identity
    from bridge.mapping.passthrough import DURATION_CLAIM, ROLE_CLAIM, passthrough_grants

    pair = "arn:aws:iam::123456789012:role/Admin,arn:aws:iam::123456789012:saml-provider/Corp"
    ident = Identity(connector_id="c", subject="s", issuer="i", claims={ROLE_CLAIM: [pair], DURATION_CLAIM: raw})
    grants, _ = passthrough_grants(ident)
    assert grants[0].max_duration == 3600


# -- headers --------------------------------------------------------------------------------------

def _csp(resp: Any) -> dict[str, str]:
    return {d.split(" ", 1)[0]: d.partition(" ")[2] for d in
            (x.strip() for x in resp.headers["Content-Security-Policy"].split(";")) if d}


def test_hsts_only_over_https(make_settings, app_factory) -> None:
    plain = app_factory(make_settings()).test_client().get("/healthz")
    assert "Strict-Transport-Security" not in plain.headers
    https = app_factory(make_settings(base_url="https://bridge.example.com")).test_client()
    for r in (https.get("/healthz"), https.get("/nope"), https.get("/")):
        assert r.headers["Strict-Transport-Security"] == "max-age=31536000; includeSubDomains"


def test_session_cookie_cannot_be_planted_by_a_sibling_domain_on_https(make_settings, app_factory) -> None:
    """Attack: a sibling subdomain sets `bridge_session=<attacker's session>; Domain=.corp` so the
    victim's console sign-ins run as the attacker. On https the name carries __Host- (host-only,
    Secure, Path=/): browsers refuse such a cookie from another host, and the plain name is ignored."""
    app = app_factory(make_settings(base_url="https://bridge.example.com"))
    c = app.test_client()
    c.environ_base["wsgi.url_scheme"] = "https"
    signed_in(c)
    session = c.get_cookie("__Host-bridge_session")
    assert session is not None and session.secure and session.path == "/" and session.domain in (None, "", "localhost")
    assert c.get_cookie("bridge_session") is None
    planted = app.test_client()
    planted.environ_base["wsgi.url_scheme"] = "https"
    planted.set_cookie("bridge_session", session.value)  # what a sibling domain could set
    assert planted.get("/portal", headers={"Accept": "application/json"}).status_code == 401
    assert c.get("/portal", headers={"Accept": "application/json"}).status_code == 200


def test_csp_form_action_self_by_default(app) -> None:  # type: ignore[no-untyped-def]
    c = app.test_client()
    for r in (c.get("/"), c.get("/healthz"), c.get("/nope"), c.get("/dev-login/dev?state=x")):
        csp = _csp(r)
        assert csp["form-action"] == "'self'", r.headers["Content-Security-Policy"]
        assert csp["default-src"] == "'self'" and csp["frame-ancestors"] == "'none'"


def test_saml_post_page_may_post_to_the_sign_in_endpoint(app, federation_stub) -> None:  # type: ignore[no-untyped-def]
    c = app.test_client()
    portal = signed_in(c)
    r = c.post(f"/console/{grant(portal, 'Billing')}", data={"csrf_token": portal["csrf_token"]})
    assert r.status_code == 200, r.text[:300]
    action = re.search(r'<form id="saml-post"[^>]*action="([^"]+)"', r.text)
    assert action and action[1] == f"{federation_stub.url}/saml"
    stub = "{0.scheme}://{0.netloc}".format(urlsplit(federation_stub.url))
    allowed = _csp(r)["form-action"].split()
    assert allowed[0] == "'self'" and stub in allowed
    # AWS answers the POST with a redirect to the console (the RelayState), which browsers also check
    assert "https://console.aws.amazon.com" in allowed
    # The next page of the same client is back to 'self' only.
    assert _csp(c.get("/portal"))["form-action"].split()[0] == "'self'"


def test_pages_posting_to_the_console_allow_the_federation_redirect(app, federation_stub) -> None:  # type: ignore[no-untyped-def]
    c = app.test_client()
    portal = signed_in(c)
    stub = "{0.scheme}://{0.netloc}".format(urlsplit(federation_stub.url))
    go = c.get("/go/sandbox/Admin?destination=/s3/home&region=eu-west-1")
    assert go.status_code == 200, go.text[:300]
    allowed = _csp(go)["form-action"].split()
    assert allowed[0] == "'self'" and stub in allowed and "https://*.console.aws.amazon.com" in allowed
    # The portal's Console is a link to /go (a new tab): the portal itself posts nowhere else.
    assert _csp(c.get("/portal"))["form-action"] == "'self'"
    assert portal["csrf_token"]
    assert _csp(c.get("/portal/why"))["form-action"] == "'self'"


def test_no_page_with_a_csrf_token_or_personal_data_is_cacheable(app) -> None:  # type: ignore[no-untyped-def]
    """Every page the portal serves without path arguments, signed in: one that carries the session's
    CSRF token or the user's e-mail says ``no-store`` (a shared or back-button cache must keep none)."""
    c = app.test_client()
    portal = signed_in(c)
    csrf, personal = portal["csrf_token"], "alice@example.com"
    checked = []
    for rule in app.url_map.iter_rules():
        if "GET" not in (rule.methods or ()) or rule.arguments or rule.rule.startswith(("/logout", "/metrics")):
            continue
        for headers in ({}, {"Accept": "application/json"}):
            r = c.get(rule.rule, headers=headers)
            body = r.get_data(as_text=True)
            if csrf in body or personal in body:
                checked.append(rule.rule)
                assert "no-store" in r.headers.get("Cache-Control", ""), (rule.rule, headers, r.headers)
    assert {"/portal", "/requests", "/requests/approve"} <= set(checked), checked
    assert c.get("/.well-known/jwks.json").headers["Cache-Control"].startswith("public")  # public metadata may be
