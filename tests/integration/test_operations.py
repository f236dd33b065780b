"""Running it in production: metrics, the audit trail, and surviving faults — each fault injected
for real (a Redis process killed and restarted, an STS that does not answer, an IdP that went
away, keys rotated under a running bridge)."""

from __future__ import annotations

import base64
import json
import re
import socket
import threading
import time
from collections.abc import Callable, Iterator
from types import SimpleNamespace
from typing import Any

import pytest
import redis
import requests
import yaml
from click.testing import CliRunner
from werkzeug.serving import make_server

from bridge.aws.validate import validate_jwt
from bridge.commands import keys as keys_commands
from bridge.commands.cli import main as cli
from bridge.keys.signing import generate_key, generate_saml_key
from bridge.runtime.localredis import LocalRedis
from tests.conftest import ACCOUNT, ISSUER, RULES
from tests.integration.helpers import TestClock, caller_arn, dev_login, grant_id, portal_json
from tests.integration.test_bad_input import assert_error_page
from tests.peers import fake_op

pytestmark = pytest.mark.integration


@pytest.fixture
def serve_app(bridge_port: int, app_factory: Callable[[Any], Any]) -> Iterator[Callable[[Any], tuple[str, Any]]]:
    """Like live_bridge, but hands back the app too (to reach its services)."""
    servers: list[Any] = []

    def start(settings: Any) -> tuple[str, Any]:
        app = app_factory(settings)
        srv = make_server("127.0.0.1", bridge_port, app, threaded=True)
        threading.Thread(target=srv.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
        servers.append(srv)
        return f"http://127.0.0.1:{bridge_port}", app

    yield start
    for srv in servers:
        srv.shutdown()
        srv.server_close()


def _creds(s: requests.Session, base: str, portal: dict[str, Any], suffix: str = "/Admin",
           **data: str) -> requests.Response:
    return s.post(f"{base}/credentials/{grant_id(portal, suffix)}", data=data,
                  headers={"Accept": "application/json", "X-CSRF-Token": portal["csrf_token"]}, timeout=30)


def _metric(base: str, line_start: str) -> float:
    text = requests.get(f"{base}/metrics", timeout=10).text
    for line in text.splitlines():
        if line.startswith(line_start + " "):
            return float(line.rsplit(" ", 1)[1])
    return 0.0


# -- metrics and audit --------------------------------------------------------------------------

def test_metrics_audit_trail_and_credential_cache(live_bridge, make_settings, tmp_path, moto_url) -> None:
    audit_file = tmp_path / "audit.jsonl"
    settings = make_settings(audit={"sink": "file", "path": str(audit_file)})
    base = live_bridge(settings)
    s = dev_login(base, "alice", requests.Session())
    portal = portal_json(s, base)
    first = _creds(s, base, portal, duration="3600")
    again = _creds(s, base, portal, duration="3600")
    assert first.status_code == again.status_code == 200
    # The second fetch came from the cache: the same credentials, still working at STS.
    assert again.json() == first.json()
    assert caller_arn(moto_url, again.json()) == f"arn:aws:sts::{ACCOUNT}:assumed-role/Admin/alice@example.com"
    other = _creds(s, base, portal, duration="7200")  # another duration: a fresh call
    assert other.json()["AccessKeyId"] != first.json()["AccessKeyId"]
    requests.get(f"{base}/callback/dev?state=gone", timeout=10)  # a failed sign-in

    text = requests.get(f"{base}/metrics", timeout=10).text
    for line in ('bridge_logins_total{connector="dev",outcome="success"} 1.0',
                 'bridge_logins_total{connector="dev",outcome="failure"} 1.0',
                 'bridge_grants_issued_total{kind="credentials",path="jwt"} 2.0',
                 'bridge_credential_cache_total{result="hit"} 1.0',
                 'bridge_credential_cache_total{result="miss"} 2.0',
                 'bridge_sts_latency_seconds_count{operation="assume_role_with_web_identity"} 2.0',
                 'bridge_http_requests_total{endpoint="/credentials/<grant_id>",method="POST",status="200"} 3.0'):
        assert line in text, line
    assert re.search(r'bridge_signing_key_expiry_days\{kid="[^"]+",kind="jwt",state="signing"\} \d+', text)
    assert re.search(r'bridge_signing_key_expiry_days\{kid="[0-9a-f]{16}",kind="saml",state="signing"\} \d+', text)

    records = [json.loads(x) for x in audit_file.read_text().splitlines()]
    sign_in = next(r for r in records if r["type"] == "sign_in" and r["outcome"] == "success")
    cid = sign_in["correlation_id"]
    assert re.fullmatch(r"[0-9a-f]{24}", cid)
    assert sign_in["who"] == {"issuer": f"{base}/dev/dev", "subject": "alice", "email": "alice@example.com",
                              "connector": "dev"}
    assert sign_in["how"]["mfa"] is True and sign_in["client_ip"] == "127.0.0.1" and sign_in["user_agent"]
    decisions = [r for r in records if r["type"] == "grant_decision"]
    assert {(d["rule"], d["outcome"], d["correlation_id"]) for d in decisions} == {
        ("admins", "granted", cid), ("readonly", "granted", cid)}
    admin = next(d for d in decisions if d["rule"] == "admins")
    assert admin["tags"] == {"Email": "alice@example.com", "Department": "Platform"}
    assert admin["source_identity"] == "alice@example.com" and admin["transitive_tags"] == ["Department"]
    issued = [r for r in records if r["type"] == "credentials"]
    assert [(r["cached"], r["duration"], r["correlation_id"]) for r in issued] == [
        (False, 3600, cid), (True, 3600, cid), (False, 7200, cid)]
    assert issued[0]["access_key_id"] == first.json()["AccessKeyId"] and issued[0]["rule"] == "admins"
    assert issued[0]["assumed_role_arn"].endswith(":assumed-role/Admin/alice@example.com")
    failed = next(r for r in records if r["type"] == "sign_in" and r["outcome"] == "failure")
    assert failed["error"] == "login_expired" and failed["correlation_id"] is None
    raw = audit_file.read_text()
    for secret in (first.json()["SecretAccessKey"], first.json()["SessionToken"], s.cookies.get("bridge_session"),
                   portal["csrf_token"]):
        assert secret not in raw
    assert "eyJ" not in raw

    # `bridge audit tail` reads the file sink, filtered by the sign-in's correlation id.
    cfg = tmp_path / "bridge.yaml"
    cfg.write_text(yaml.safe_dump({"base_url": "https://b.example.com", "audit": {"sink": "file",
                                   "path": str(audit_file)}, "connectors": [
        {"id": "x", "type": "oidc", "issuer": "https://idp.example.com", "client_id": "c", "client_secret": "s"}]}))
    out = CliRunner().invoke(cli, ["audit", "tail", "--config", str(cfg), "-n", "100", "--correlation-id", cid,
                                   "--type", "credentials"])
    assert out.exit_code == 0, out.output
    assert [json.loads(x)["cached"] for x in out.output.splitlines()] == [False, True, False]


def test_audit_to_a_redis_stream(live_bridge, make_settings, tmp_path) -> None:
    settings = make_settings(audit={"sink": "redis", "stream": "audit", "maxlen": 1000})
    base = live_bridge(settings)
    s = dev_login(base, "alice", requests.Session())
    portal = portal_json(s, base)
    assert _creds(s, base, portal).status_code == 200
    cfg = tmp_path / "bridge.yaml"
    cfg.write_text(yaml.safe_dump({
        "base_url": "https://b.example.com", "audit": {"sink": "redis", "stream": "audit"},
        "redis": {"url": settings.redis.url, "key_prefix": settings.redis.key_prefix},
        "connectors": [{"id": "x", "type": "oidc", "issuer": "https://idp.example.com", "client_id": "c",
                        "client_secret": "s"}]}))
    out = CliRunner().invoke(cli, ["audit", "tail", "--config", str(cfg), "-n", "4"])
    assert out.exit_code == 0, out.output
    lines = [json.loads(x) for x in out.output.splitlines()]
    # fail_closed (the default): the intent is in the trail before STS is called, then the outcome.
    assert [x["type"] for x in lines] == ["grant_decision", "grant_decision", "credentials_intent", "credentials"]
    assert lines[2]["role_arn"] == lines[3]["role_arn"] and lines[2]["correlation_id"] == lines[3]["correlation_id"]
    assert "access_key_id" not in lines[2] and lines[3]["outcome"] == "success"
    # --follow prints what arrives later.
    got: list[str] = []

    def follow() -> None:
        r = CliRunner().invoke(cli, ["audit", "tail", "--config", str(cfg), "-n", "1", "-f", "--max-seconds", "4",
                                     "--type", "credentials"])
        got.append(r.output)

    t = threading.Thread(target=follow)
    t.start()
    time.sleep(1.5)
    assert _creds(s, base, portal, duration="1800").status_code == 200
    t.join(30)
    lines = [json.loads(x) for x in got[0].splitlines()]
    assert [x["duration"] for x in lines] == [3600, 1800]
    stream_len = redis.Redis.from_url(settings.redis.url).xlen(f"{settings.redis.key_prefix}audit")
    assert stream_len == 7  # the sign-in, two decisions, two issuances each with its intent


# -- Redis killed and restarted ----------------------------------------------------------------

def test_redis_down_then_back(serve_app, make_settings, tmp_path) -> None:
    rp = LocalRedis(tmp_path)  # the test's own: crashed and restarted on the same port and folder
    rp.start()
    try:
        base, app = serve_app(make_settings(redis={"url": rp.url, "socket_timeout": 0.5}))
        s = dev_login(base, "alice", requests.Session())
        portal = portal_json(s, base)
        assert _creds(s, base, portal).status_code == 200
        redis.Redis.from_url(rp.url).save()  # the snapshot the restart will load: the session is in it
        lost = requests.Session()
        r = lost.get(f"{base}/login/dev", allow_redirects=False, timeout=10)
        state = re.search(r"state=([\w-]+)", r.headers["location"])[1]  # type: ignore[index]
        # Traffic throughout the outage: only 200s and 503s, never a 500.
        statuses: list[int] = []
        errors: list[str] = []
        stop = threading.Event()

        def traffic() -> None:
            t = requests.Session()
            while not stop.is_set():
                try:
                    statuses.append(t.get(f"{base}/portal", cookies=s.cookies, timeout=10).status_code)
                except requests.RequestException as e:
                    errors.append(repr(e))
                time.sleep(0.02)

        worker = threading.Thread(target=traffic, daemon=True)  # daemon: a failed assert must not leave it
        worker.start()
        time.sleep(0.3)
        rp.crash()
        time.sleep(0.5)
        r = s.get(f"{base}/portal", timeout=10)
        assert_error_page(r, 503, "store_unavailable")
        assert r.headers["Retry-After"] == "5" and "Traceback" not in r.text
        r = s.get(f"{base}/portal", headers={"Accept": "application/json"}, timeout=10)
        assert r.status_code == 503 and r.json()["error"] == "store_unavailable" and r.headers["Retry-After"]
        r = requests.get(f"{base}/readyz", timeout=10)
        assert r.status_code == 503 and r.headers["Retry-After"] and r.json()["redis"] is False
        assert requests.get(f"{base}/healthz", timeout=10).status_code == 200
        r = s.post(f"{base}/credentials/{grant_id(portal, '/Admin')}", data={"csrf_token": portal["csrf_token"]},
                   timeout=30)
        assert_error_page(r, 503, "store_unavailable")
        rp.start()  # same port, same folder: loads the snapshot
        deadline = time.monotonic() + 10
        while requests.get(f"{base}/readyz", timeout=10).status_code != 200:
            assert time.monotonic() < deadline, "the bridge did not recover by itself"
            time.sleep(0.1)
        time.sleep(0.3)
        stop.set()
        worker.join(30)
        assert errors == [] and set(statuses) == {200, 503}, (errors[:3], sorted(set(statuses)))
        assert statuses[-1] == 200
        # The session survived intact; credentials work again.
        assert portal_json(s, base)["csrf_token"] == portal["csrf_token"]
        assert _creds(s, base, portal).status_code == 200
        # The sign-in that was in progress is gone: back to the sign-in page, with a note.
        r = lost.post(f"{base}/callback/dev", data={"state": state, "user": "alice"}, timeout=10)
        assert_error_page(r, 400, "login_expired")
        assert 'id="idp-dev"' in r.text and "interrupted" in r.text
        dev_login(base, "alice", lost)  # and signing in again works
        assert app.extensions["bridge"].metrics.value("bridge_redis_errors_total", error="ConnectionError") > 0
    finally:
        rp.stop()


# -- STS slow / 5xx -------------------------------------------------------------------------------

class SlowServer:
    """Accepts connections and reads the request, then says nothing for ``delay`` seconds."""

    def __init__(self, delay: float) -> None:
        self.delay = delay
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.url = f"http://127.0.0.1:{self.sock.getsockname()[1]}"
        self.accepted = 0
        self.closed = False
        threading.Thread(target=self._run, daemon=True).start()

    def _run(self) -> None:
        while not self.closed:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            self.accepted += 1
            threading.Thread(target=self._hold, args=(conn,), daemon=True).start()

    def _hold(self, conn: socket.socket) -> None:
        conn.recv(65536)
        time.sleep(self.delay)
        conn.close()

    def close(self) -> None:
        self.closed = True
        self.sock.close()


def test_slow_sts_times_out(live_bridge, make_settings) -> None:
    slow = SlowServer(delay=10)
    try:
        base = live_bridge(make_settings(aws={"sts_endpoint_url": slow.url, "sts_timeout": 0.5,
                                              "sts_max_attempts": 2}))
        s = dev_login(base, "alice", requests.Session())
        portal = portal_json(s, base)
        started = time.monotonic()
        r = _creds(s, base, portal)
        elapsed = time.monotonic() - started
        assert r.status_code == 503 and r.json()["error"] == "sts_timeout", r.text
        assert r.headers["Retry-After"] == "5"
        assert 0.9 < elapsed < 4, elapsed  # two attempts of 0.5 s plus backoff, not the 10 s STS takes
        assert slow.accepted == 2
        text = requests.get(f"{base}/metrics", timeout=10).text
        assert 'bridge_sts_errors_total{code="timeout"} 1.0' in text
    finally:
        slow.close()


def test_sts_5xx_retried_then_a_clear_error(live_bridge, make_settings, strict_sts_peer) -> None:
    base = live_bridge(make_settings(aws={"sts_max_attempts": 3}))
    s = dev_login(base, "alice", requests.Session())
    portal = portal_json(s, base)
    for _ in range(3):
        strict_sts_peer.fail_next(503, "ServiceUnavailable", "try later")
    started = time.monotonic()
    r = _creds(s, base, portal)
    assert r.status_code == 503 and r.json()["error"] == "sts_ServiceUnavailable" and r.headers["Retry-After"]
    assert strict_sts_peer.calls == 3 and time.monotonic() - started < 10  # bounded: 3 attempts, no more
    assert 'bridge_sts_errors_total{code="ServiceUnavailable"} 1.0' in requests.get(f"{base}/metrics",
                                                                                    timeout=10).text


# -- upstream IdP unreachable -----------------------------------------------------------------------

def test_idp_unreachable_uses_last_good_copy_with_a_warning_metric(serve_app, make_settings) -> None:
    op = fake_op.FakeOp()
    stop = fake_op.serve(op)
    fake = {"id": "fake", "type": "oidc", "issuer": op.issuer, "client_id": op.client_id,
            "client_secret": op.client_secret, "discovery_ttl": 60}
    base, app = serve_app(make_settings(connectors=[fake]))
    s = requests.Session()
    assert s.get(f"{base}/login/fake", timeout=10).url == f"{base}/portal"  # discovery + JWKS fetched
    stop()  # the IdP goes away
    connector = app.extensions["bridge"].connectors["fake"]
    connector.clock = lambda: time.time() + 3600  # caches are due for a refresh
    r = requests.get(f"{base}/login/fake", allow_redirects=False, timeout=10)
    assert r.status_code == 302 and r.headers["Location"].startswith(f"{op.issuer}/authorize")  # last good copy
    ks = connector._keyset()
    assert ks.keys  # last good JWKS
    assert _metric(base, 'bridge_upstream_stale_total{connector="fake",document="discovery"}') >= 1
    assert _metric(base, 'bridge_upstream_stale_total{connector="fake",document="jwks"}') == 1


# -- signing-key rotation, end to end ---------------------------------------------------------------

def _kid(token: str) -> str:
    head = token.split(".")[0]
    return str(json.loads(base64.urlsafe_b64decode(head + "=" * (-len(head) % 4)))["kid"])


def test_key_rotation_end_to_end(serve_app, make_settings, strict_sts_peer, tmp_path) -> None:
    keys = tmp_path / "keys"
    old = generate_key(keys)
    old_saml = generate_saml_key(keys, bits=2048)
    rules = [{**r, "grants": [{**r["grants"][0], "path": "saml"}]} if r["name"] == "admins" else r for r in RULES]
    settings = make_settings(issuer={"url": ISSUER, "keys_dir": str(keys), "keys_reload_interval": 0},
                             credential_cache={"enabled": False}, mapping={"rules": rules})
    base, app = serve_app(settings)
    svc = app.extensions["bridge"]
    clock = TestClock()  # the bridge's key schedule runs on it: the test jumps ahead instead of sleeping
    svc.keys.clock = clock
    # IAM fetches the published JWKS / holds the uploaded metadata: always the current ones.
    strict_sts_peer.register_oidc_provider(ISSUER, {settings.issuer.audience}, lambda: svc.keyring.jwks())
    strict_sts_peer.register_saml_provider(settings.aws.saml_provider_name, lambda: svc.idp_metadata())
    s = dev_login(base, "alice", requests.Session())
    portal = portal_json(s, base)

    def mint() -> str:
        assert _creds(s, base, portal, "/ReadOnly").status_code == 200
        return strict_sts_peer.seen[-1].token

    def jwks_kids() -> set[str]:
        return {k["kid"] for k in requests.get(f"{base}/.well-known/jwks.json", timeout=10).json()["keys"]}

    def still_valid(token: str) -> list[str]:
        jwks = requests.get(f"{base}/.well-known/jwks.json", timeout=10).json()
        return [str(p) for p in validate_jwt(token, jwks=jwks, issuer=ISSUER, audiences={settings.issuer.audience},
                                             now=int(clock()))]

    token_old = mint()
    assert _kid(token_old) == old.kid
    t0 = int(time.time())  # rotate stamps whole seconds: the next key signs from t0 + 4 at the latest
    out = CliRunner().invoke(cli, ["keys", "rotate", "--dir", str(keys), "--kind", "all", "--publish-for", "4",
                                   "--overlap", "4"])
    assert out.exit_code == 0, out.output
    new_kid = re.search(r"jwt, kid ([\w-]+)\)", out.output)[1]  # type: ignore[index]
    # Published before it signs: JWKS and IdP metadata carry both; tokens are still signed by the old key.
    assert jwks_kids() == {old.kid, new_kid}
    metadata = requests.get(f"{base}/idp/metadata.xml", timeout=10).text
    assert metadata.count("<ds:X509Certificate>") == 2 and old_saml.cert_b64() in metadata
    assert _kid(mint()) == old.kid
    listing = CliRunner().invoke(cli, ["keys", "list", "--dir", str(keys)]).output
    assert re.search(rf"jwt\s+signing\s+{old.kid}", listing) and re.search(rf"jwt\s+next\s+{new_kid}", listing)
    assert clock() < t0 + 4, "the checks before the switch took longer than --publish-for"
    clock.advance(t0 + 5.2 - clock())
    # The new key signs; a token signed by the old key still validates during the overlap.
    token_new = mint()
    assert _kid(token_new) == new_kid
    assert still_valid(token_old) == [] and still_valid(token_new) == []
    assert jwks_kids() == {old.kid, new_kid}
    metrics = requests.get(f"{base}/metrics", timeout=10).text
    assert f'kid="{old.kid}",kind="jwt",state="retiring"' in metrics
    assert f'kid="{new_kid}",kind="jwt",state="signing"' in metrics
    clock.advance(t0 + 9.2 - clock())  # sign_from + overlap, past
    # Overlap over: the old key is no longer published, and what it signed no longer validates.
    assert jwks_kids() == {new_kid}
    assert any("kid" in p for p in still_valid(token_old))
    assert requests.get(f"{base}/idp/metadata.xml", timeout=10).text.count("<ds:X509Certificate>") == 1
    # The SAML path signs with the new SAML key: IAM's metadata now holds only its certificate.
    assert _creds(s, base, portal, "/Admin").status_code == 200
    assert strict_sts_peer.seen[-1].action == "AssumeRoleWithSAML" and strict_sts_peer.seen[-1].problems == []
    with pytest.MonkeyPatch.context() as mp:  # `bridge keys prune` reads the time where the bridge does
        mp.setattr(keys_commands, "time", SimpleNamespace(time=clock))
        out = CliRunner().invoke(cli, ["keys", "prune", "--dir", str(keys)])
    assert old.path.name in out.output and not old.path.exists() and not old_saml.path.exists()
    assert _kid(mint()) == new_kid  # the running bridge notices the folder changed, nothing breaks


# -- rate limits ------------------------------------------------------------------------------------

def test_rate_limits(live_bridge, make_settings) -> None:
    base = live_bridge(make_settings(rate_limits={"sign_in_per_minute": 4, "credentials_per_minute": 2}))
    clock = TestClock()  # the windows count on a clock just past a window's start: no straddling, no waiting
    clock.to_window_start()
    live_bridge.app.extensions["bridge"].store.clock = clock
    s = dev_login(base, "alice", requests.Session())  # login start + callback: 2 of 4
    portal = portal_json(s, base)
    assert _creds(s, base, portal).status_code == 200
    assert _creds(s, base, portal).status_code == 200  # a cache hit counts too: it is a request
    r = _creds(s, base, portal)
    assert r.status_code == 429 and r.json()["error"] == "rate_limited"
    assert 50 <= int(r.headers["Retry-After"]) <= 59  # the rest of the window the clock started 1 s into
    dev_login(base, "carol", requests.Session())  # 4 of 4
    r = requests.get(f"{base}/login/dev", timeout=10)
    assert_error_page(r, 429, "rate_limited")
    assert 1 <= int(r.headers["Retry-After"]) <= 60
    text = requests.get(f"{base}/metrics", timeout=10).text
    assert 'bridge_rate_limited_total{kind="credentials"} 1.0' in text
    assert 'bridge_rate_limited_total{kind="sign_in"} 1.0' in text


def test_cache_key_added_while_running_is_used(serve_app, make_settings, tmp_path) -> None:
    import hashlib

    from bridge.keys.signing import generate_cache_key

    keys = tmp_path / "keys"
    generate_key(keys)
    generate_cache_key(keys)
    settings = make_settings(issuer={"url": ISSUER, "keys_dir": str(keys), "keys_reload_interval": 0})
    base, _ = serve_app(settings)  # keys_reload_interval 0: the folder is re-checked on every use
    newer = generate_cache_key(keys)  # `bridge keys generate --kind cache` on a running bridge
    s = dev_login(base, "alice", requests.Session())
    portal = portal_json(s, base)
    first = _creds(s, base, portal)
    assert first.status_code == 200
    r = redis.Redis.from_url(settings.redis.url)
    (key,) = list(r.scan_iter(match=f"{settings.redis.key_prefix}creds:*"))
    blob = r.get(key)
    raw = base64.b64decode(newer.read_bytes().strip())
    assert blob is not None and blob[1:9] == hashlib.sha256(raw).digest()[:8]  # encrypted under the new key
    assert _creds(s, base, portal).json() == first.json()  # and read back


@pytest.mark.parametrize("method", ["federation", "saml_post"])
def test_console_sign_in_is_audited_and_counted(method, live_bridge, make_settings, federation_stub, tmp_path) -> None:
    from tests.conftest import ACCOUNTS

    audit_file = tmp_path / "audit.jsonl"
    rules = [{"name": "admins", "match": {"group": "aws-admins"},
              "grants": [{"account": "sandbox", "role": "Admin", "source_identity": "{email}"}]}]
    base = live_bridge(make_settings(mapping={"accounts": ACCOUNTS, "rules": rules},
                                     aws={"console_method": method},
                                     audit={"sink": "file", "path": str(audit_file)}))
    s = dev_login(base, "alice", requests.Session())
    portal = portal_json(s, base)
    r = s.post(f"{base}/console/{grant_id(portal, 'role/Admin')}",
               data={"csrf_token": portal["csrf_token"], "duration": "900", "destination": "/s3/home?x=secret"},
               allow_redirects=False, timeout=30)
    assert r.status_code in (200, 302), r.text[:300]
    records = [json.loads(x) for x in audit_file.read_text().splitlines()]
    cid = next(x for x in records if x["type"] == "sign_in")["correlation_id"]
    (rec,) = [x for x in records if x["type"] == "console"]
    assert rec["outcome"] == "success" and rec["method"] == method and rec["correlation_id"] == cid
    assert rec["role_arn"] == f"arn:aws:iam::{ACCOUNT}:role/Admin" and rec["rule"] == "admins"
    assert "secret" not in audit_file.read_text() and "SigninToken" not in audit_file.read_text()
    assert 'bridge_grants_issued_total{kind="console",path="jwt"} 1.0' in requests.get(f"{base}/metrics",
                                                                                      timeout=10).text
