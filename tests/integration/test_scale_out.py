"""Scale-out without sticky sessions: two `bridge serve` (gunicorn) processes on different ports,
one Redis. Every step of a sign-in may land on either; a replay is refused on the other one."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urljoin, urlsplit, urlunsplit

import pytest
import requests
import yaml

from bridge.aws.metadata import idp_metadata
from bridge.keys.signing import load_keyring
from bridge.runtime.localredis import free_port
from tests.conftest import ACCOUNT, ACCOUNTS, ISSUER, OIDC_CONNECTOR, RULES, SAML_CONNECTOR
from tests.integration.helpers import caller_arn, grant_id, portal_json
from tests.integration.test_bad_input import assert_error_page
from tests.integration.test_saml import _auto_post
from tests.peers.saml_forge import Forge, b64

pytestmark = pytest.mark.integration


def on(instance: str, url: str) -> str:
    """The same path and query, sent to another instance (what a load balancer does)."""
    u, i = urlsplit(url), urlsplit(instance)
    return urlunsplit((i.scheme, i.netloc, u.path, u.query, ""))


@pytest.fixture
def two_bridges(tmp_path: Path, redis_url: str, bridge_port: int, keys_dir: Path, strict_sts_peer: Any,
                oidc_issuer: str, saml_idp: Any) -> Iterator[Callable[..., tuple[str, str, str]]]:
    """Start A and B with one config (public base_url = bridge_port, as behind a load balancer)."""
    procs: list[subprocess.Popen[bytes]] = []

    def start(rate_limits: dict[str, int] | None = None, **overrides: Any) -> tuple[str, str, str]:
        public = f"http://127.0.0.1:{bridge_port}"
        cfg: dict[str, Any] = {
            "base_url": public, "secret_key": "t", "log_level": "WARNING",
            "redis": {"url": redis_url, "key_prefix": f"scale{time.monotonic_ns()}:"},
            "issuer": {"url": ISSUER, "keys_dir": str(keys_dir)},
            "aws": {"sts_endpoint_url": strict_sts_peer.url, "sts_max_attempts": 1},
            "audit": {"sink": "redis"},
            "connectors": [
                {"id": OIDC_CONNECTOR, "type": "oidc", "issuer": oidc_issuer, "client_id": "bridge",
                 "client_secret": "bridge-secret"},
                {"id": SAML_CONNECTOR, "type": "saml", "metadata_url": f"{saml_idp.url}/metadata", **overrides}],
            "mapping": {"accounts": ACCOUNTS, "rules": RULES},
            "rate_limits": rate_limits or {},
        }
        path = tmp_path / "bridge.yaml"
        path.write_text(yaml.safe_dump(cfg))
        ring, _ = load_keyring(keys_dir)
        assert ring is not None
        strict_sts_peer.register_oidc_provider(ISSUER, {"sts.amazonaws.com"}, ring.jwks)
        strict_sts_peer.register_saml_provider("FederationBridge", lambda: idp_metadata(
            f"{public}/idp/metadata.xml", ring.saml, f"{public}/idp/sso"))
        urls = []
        for _ in range(2):
            port = free_port()
            env = {**os.environ, "BRIDGE_ACCESS_LOG": "0", "BRIDGE_THREADS": "4"}
            env.pop("PROMETHEUS_MULTIPROC_DIR", None)
            procs.append(subprocess.Popen([sys.executable, "-m", "bridge", "serve", "--config", str(path),
                                           "--bind", f"127.0.0.1:{port}", "--workers", "2"], env=env,
                                          stdout=subprocess.DEVNULL, stderr=(tmp_path / f"{port}.log").open("wb"),
                                          start_new_session=True))
            urls.append(f"http://127.0.0.1:{port}")
        for u, p in zip(urls, procs[-2:], strict=True):
            deadline = time.monotonic() + 30
            while True:
                try:
                    requests.get(f"{u}/readyz", timeout=1)
                    break
                except requests.RequestException:
                    log = (tmp_path / f"{urlsplit(u).port}.log").read_text(errors="replace")
                    assert p.poll() is None and time.monotonic() < deadline, f"serve did not start:\n{log[-3000:]}"
                    time.sleep(0.1)
        return urls[0], urls[1], public

    yield start
    for p in procs:
        os.killpg(p.pid, signal.SIGTERM)
    for p in procs:
        try:
            p.wait(15)
        except subprocess.TimeoutExpired:
            os.killpg(p.pid, signal.SIGKILL)


def test_oidc_steps_on_alternating_instances(two_bridges, moto_url) -> None:
    a, b, public = two_bridges()
    s = requests.Session()
    # Login starts on A ...
    r = s.get(f"{a}/login/{OIDC_CONNECTOR}", timeout=10)
    assert 'id="username"' in r.text
    action = re.search(r'action="([^"]+)"', r.text)[1]  # type: ignore[index]
    r = s.post(urljoin(r.url, action), data={"username": "alice", "password": "alice-pw"}, allow_redirects=False,
               timeout=20)
    for _ in range(10):  # through the IdP's own redirects (a loop of them fails, never hangs)
        if r.headers["Location"].startswith(f"{public}/callback/"):
            break
        r = s.get(urljoin(r.url, r.headers["Location"]), allow_redirects=False, timeout=20)
    else:
        pytest.fail(f"still redirected after 10 hops, last to {r.headers['Location']}")
    callback = r.headers["Location"]
    # ... the callback lands on B ...
    r = s.get(on(b, callback), allow_redirects=False, timeout=20)
    assert r.status_code == 303, r.text[:500]
    # ... the portal on A ...
    portal = portal_json(s, a)
    assert portal["identity"]["email"] == "alice@example.com"
    # ... credentials on B.
    r = s.post(f"{b}/credentials/{grant_id(portal, '/Admin')}",
               headers={"Accept": "application/json", "X-CSRF-Token": portal["csrf_token"]}, timeout=30)
    assert r.status_code == 200, r.text
    assert caller_arn(moto_url, r.json()) == f"arn:aws:sts::{ACCOUNT}:assumed-role/Admin/alice@example.com"
    # Cached on B, served on A: the credential cache is shared too.
    again = s.post(f"{a}/credentials/{grant_id(portal, '/Admin')}",
                   headers={"Accept": "application/json", "X-CSRF-Token": portal["csrf_token"]}, timeout=30)
    assert again.json()["AccessKeyId"] == r.json()["AccessKeyId"]
    # The callback replayed on A (the other instance) is refused.
    assert_error_page(requests.get(on(a, callback), timeout=10), 400, "login_expired")
    # Metrics are per instance, summed over its gunicorn workers.
    text = requests.get(f"{b}/metrics", timeout=10).text
    assert f'bridge_logins_total{{connector="{OIDC_CONNECTOR}",outcome="success"}} 1.0' in text
    assert 'bridge_credential_cache_total{result="miss"} 1.0' in text
    assert 'bridge_credential_cache_total{result="hit"} 1.0' in requests.get(f"{a}/metrics", timeout=10).text
    # Signing out on A ends the session on B as well.
    s.post(f"{a}/logout", data={"csrf_token": portal["csrf_token"]}, timeout=10)
    assert s.get(f"{b}/portal", headers={"Accept": "application/json"}, timeout=10).status_code == 401


def test_saml_assertion_replayed_on_the_other_instance(two_bridges, moto_url) -> None:
    a, b, public = two_bridges()
    s = requests.Session()
    r = s.get(f"{a}/login/{SAML_CONNECTOR}", timeout=10)
    r = s.post(urljoin(r.url, "/login"), data={"username": "alice", "password": "alice-pw"}, timeout=10)
    action, fields = _auto_post(r.text)
    assert action == f"{public}/callback/{SAML_CONNECTOR}"
    r = s.post(on(b, action), data=fields, allow_redirects=False, timeout=30)
    assert r.status_code == 303, r.text[:500]
    portal = portal_json(s, a)
    r = s.post(f"{b}/credentials/{grant_id(portal, '/ReadOnly')}",
               headers={"Accept": "application/json", "X-CSRF-Token": portal["csrf_token"]}, timeout=30)
    assert r.status_code == 200, r.text
    # The captured response, posted again to A: refused (its sign-in was used up on B).
    assert_error_page(requests.post(on(a, action), data=fields, timeout=30), 400, "login_expired")


def test_idp_initiated_replay_is_caught_by_the_shared_replay_cache(two_bridges, saml_idp) -> None:
    """With unsolicited responses allowed, only the assertion-ID cache stops a replay: it is in Redis."""
    a, b, public = two_bridges(insecure_allow_idp_initiated=True)
    forge = Forge(saml_idp.entity_id, f"{public}/sp/{SAML_CONNECTOR}/metadata.xml",
                  f"{public}/callback/{SAML_CONNECTOR}", saml_idp.key)
    fields = {"SAMLResponse": b64(forge.sign(forge.build(in_response_to=None)))}
    r = requests.post(f"{b}/callback/{SAML_CONNECTOR}", data=fields, allow_redirects=False, timeout=30)
    assert r.status_code == 303, r.text[:500]
    assert_error_page(requests.post(f"{a}/callback/{SAML_CONNECTOR}", data=fields, timeout=30), 400,
                      "saml_replayed")


def test_rate_limits_hold_across_instances(two_bridges) -> None:
    """Three sign-ins a minute per client address, counted in Redis: the fourth is refused whichever
    instance answers. The bridges run in their own processes (no injected clock), so a run that
    straddles two one-minute windows is done again from another loopback address (a fresh count)."""
    import http.client

    a, b, _ = two_bridges(rate_limits={"sign_in_per_minute": 3})

    def login(base: str, source: str) -> tuple[int, str, str]:
        url = urlsplit(base)
        c = http.client.HTTPConnection(url.hostname or "", url.port, timeout=10, source_address=(source, 0))
        try:
            c.request("GET", f"/login/{OIDC_CONNECTOR}", headers={"Accept": "application/json"})
            r = c.getresponse()
            return r.status, r.getheader("Retry-After") or "", r.read().decode()
        finally:
            c.close()

    for last in range(2, 6):  # 127.0.0.2, .3, …: each a client of its own to the bridges
        minute = time.time() // 60
        answers = [login(base, f"127.0.0.{last}") for base in (a, b, a, b)]
        if time.time() // 60 == minute:
            break
    assert [status for status, _, _ in answers] == [302, 302, 302, 429]
    _, retry_after, body = answers[-1]
    assert 1 <= int(retry_after) <= 60 and json.loads(body)["error"] == "rate_limited"
