"""Shared fixtures: real peers on free loopback ports, stopped by the fixture.

- ``redis_url``: a real redis-server (apt) per test session.
- ``moto_url``: moto's STS (ThreadedMotoServer) per session; ``strict_sts``: the validating
  proxy in front of it (tests/peers/strict_sts.py) that every bridge under test talks to.
- ``oidc_issuer``: the npm oidc-provider peer (tests/peers/op.mjs).
- ``make_settings`` / ``live_bridge``: a bridge configured against those peers.
"""

from __future__ import annotations

import gc
import logging
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import requests
from hypothesis import settings as hypothesis_settings

from bridge.config import SamlConnectorSettings, Settings, settings_from_dict
from bridge.keys.signing import SamlKey, generate_cache_key, generate_key, generate_saml_key
from bridge.runtime.localredis import LocalRedis, RedisNotInstalled, free_port, redis_server
from bridge.upstream.saml import SamlConnector
from tests.peers import strict_sts
from tests.peers.federation_stub import FederationStub
from tests.peers.federation_stub import serve as serve_federation_stub

ROOT = Path(__file__).resolve().parent.parent
# config/demo.yaml names ../.demo (audit trail, keys) and the config check wants that folder to exist;
# unit tests that read the shipped demo config (rules cases, aws-setup, doctor) run in a fresh clone too.
(ROOT / ".demo").mkdir(exist_ok=True)
PEERS = ROOT / "tests" / "peers"
OIDC_CONNECTOR = "corp"
SAML_CONNECTOR = "corpsaml"
ISSUER = "https://bridge.example.com"
ACCOUNT = "123456789012"


# Property tests (hypothesis): the `ci` profile by default (what `make test` and CI run), `thorough`
# for a deep run: HYPOTHESIS_PROFILE=thorough make unit. A test that names its own max_examples keeps it.
hypothesis_settings.register_profile("ci", max_examples=100, deadline=None, print_blob=True)
hypothesis_settings.register_profile("thorough", max_examples=1000, deadline=None, print_blob=True)
hypothesis_settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))


def pytest_collection_finish(session: pytest.Session) -> None:
    """What collection made (modules, test items, parametrize values) lives until the end: out of the
    garbage collector's sight (gc.freeze), each full collection only walks what the tests make. They were
    several CPU seconds of the unit suite."""
    gc.collect()
    gc.freeze()


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter, config: pytest.Config) -> None:
    """Print the random-order seed even under ``-q``, so a failing order can be replayed."""
    seed = getattr(config.option, "randomly_seed", None)
    if isinstance(seed, int) and config.pluginmanager.has_plugin("randomly"):
        terminalreporter.write_line(f"test order: random, seed {seed}; replay with `--randomly-seed={seed}`,"
                                    " or run in file order with `-p no:randomly`")


def wait_http(url: str, seconds: float = 15) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            requests.get(url, timeout=1)
            return
        except requests.RequestException:
            time.sleep(0.1)
    raise RuntimeError(f"{url} did not answer")


@pytest.fixture(scope="session")
def redis_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    try:
        redis_server()
    except RedisNotInstalled as e:
        pytest.fail(f"{e}: run `make test` (it installs it)")
    with LocalRedis(tmp_path_factory.mktemp("redis")) as rd:
        yield rd.url


@pytest.fixture(scope="session")
def moto_url() -> Iterator[str]:
    from moto.server import ThreadedMotoServer

    srv = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    srv.start()
    host, port = srv.get_host_and_port()
    yield f"http://{host}:{port}"
    srv.stop()


@pytest.fixture(scope="session")
def _strict_sts_server(moto_url: str) -> Iterator[strict_sts.StrictSts]:
    sts = strict_sts.StrictSts(upstream=moto_url)
    _, stop = strict_sts.serve(sts)
    yield sts
    stop()


@pytest.fixture
def strict_sts_peer(_strict_sts_server: strict_sts.StrictSts) -> Iterator[strict_sts.StrictSts]:
    """The validating STS; after each test, no token it saw may have broken an AWS rule."""
    _strict_sts_server.reset()
    yield _strict_sts_server
    bad = _strict_sts_server.failures
    _strict_sts_server.providers.clear()
    _strict_sts_server.saml_providers.clear()
    assert not bad, f"tokens the bridge minted broke AWS rules: {[b.problems for b in bad]}"


# The IdP metadata of the bridge app_factory made last, for the federation stub. One slot, replaced
# per app: a list appended to per app kept every app of the session (and all it holds) alive.
_BRIDGE_METADATA: dict[str, Callable[[], bytes]] = {}


@pytest.fixture(scope="session")
def _federation_stub_server(_strict_sts_server: strict_sts.StrictSts) -> Iterator[FederationStub]:
    stub = FederationStub(_strict_sts_server.url, saml_metadata=lambda: _BRIDGE_METADATA["last"](),
                          chained=_strict_sts_server.is_chained)
    stop = serve_federation_stub(stub)
    yield stub
    stop()


@pytest.fixture
def federation_stub(_federation_stub_server: FederationStub) -> FederationStub:
    """The AWS console sign-in stand-in (federation endpoint + SAML POST) in front of the strict STS."""
    _federation_stub_server.signed_in.clear()
    _federation_stub_server.tokens.clear()
    return _federation_stub_server


@pytest.fixture(scope="session")
def bridge_port() -> int:
    return free_port()


@contextmanager
def oidc_provider(env: dict[str, str]) -> Iterator[str]:
    """The npm oidc-provider peer (tests/peers/op.mjs) on a free port with ``env`` added; yields its issuer."""
    node = shutil.which("node")
    if not node or not (PEERS / "node_modules" / "oidc-provider").is_dir():
        pytest.fail("the oidc-provider peer is not installed: run `make test` (npm ci in tests/peers)")
    port = free_port()
    p = subprocess.Popen([node, "op.mjs"], cwd=PEERS, env={**os.environ, "PORT": str(port), **env},
                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    issuer = f"http://127.0.0.1:{port}"
    try:
        wait_http(f"{issuer}/.well-known/openid-configuration")
        yield issuer
    finally:
        p.terminate()
        p.wait(5)


@pytest.fixture(scope="session")
def oidc_issuer(bridge_port: int) -> Iterator[str]:
    with oidc_provider({"REDIRECT_URIS": f"http://127.0.0.1:{bridge_port}/callback/{OIDC_CONNECTOR}",
                        "POST_LOGOUT_REDIRECT_URIS": f"http://127.0.0.1:{bridge_port}/", "TEST_ADMIN": "1"}) as issuer:
        yield issuer


@pytest.fixture(scope="session")
def keys_dir() -> Iterator[Path]:
    d = Path(tempfile.mkdtemp(prefix="bridge-keys-"))
    generate_key(d, "RS256")
    generate_saml_key(d)
    generate_cache_key(d)
    yield d
    shutil.rmtree(d, ignore_errors=True)


ACCOUNTS = {ACCOUNT: {"alias": "sandbox", "label": "Sandbox",
                      "roles": {"Admin": {"label": "Administrator", "max_session_duration": 43200}}}}
RULES = [
    {"name": "admins", "match": {"group": "aws-admins"},
     "grants": [{"role_arn": f"arn:aws:iam::{ACCOUNT}:role/Admin", "source_identity": "{email}",
                 "tags": {"Email": "{email}", "Department": "{claims.department}"}, "transitive_tags": ["Department"],
                 "duration": {"max": 43200}}]},
    {"name": "readonly", "match": {"group": "aws-readonly"},
     "grants": [{"account": "sandbox", "role": "ReadOnly", "label": "Read-only"}]},
]


@pytest.fixture
def make_settings(redis_url: str, bridge_port: int, keys_dir: Path, strict_sts_peer: strict_sts.StrictSts,
                  federation_stub: FederationStub) -> Callable[..., Settings]:
    """Settings for a bridge on ``bridge_port``; keyword args override top-level sections."""

    def make(*, connectors: list[dict[str, Any]] | None = None, **overrides: Any) -> Settings:
        raw: dict[str, Any] = {
            "base_url": f"http://127.0.0.1:{bridge_port}",
            "secret_key": "test-secret",
            "insecure_dev_login": True,
            "redis": {"url": redis_url, "key_prefix": f"t{time.monotonic_ns()}:"},
            "issuer": {"url": ISSUER, "keys_dir": str(keys_dir)},
            "aws": {"sts_endpoint_url": strict_sts_peer.url, "sts_max_attempts": 1, "sts_timeout": 5,
                    "federation_endpoint": f"{federation_stub.url}/federation",
                    "signin_saml_url": f"{federation_stub.url}/saml"},
            "connectors": connectors or [{"id": "dev", "type": "dev", "users": [
                {"subject": "alice", "email": "alice@example.com", "name": "Alice",
                 "groups": ["aws-admins", "aws-readonly"], "claims": {"department": "Platform"}, "mfa": True},
                {"subject": "carol", "email": "carol@example.com", "groups": []}]}],
            "mapping": {"accounts": ACCOUNTS, "rules": RULES},
        }
        for k, v in overrides.items():
            if isinstance(v, dict) and isinstance(raw.get(k), dict):
                raw[k] = {**raw[k], **v}
            else:
                raw[k] = v
        return settings_from_dict(raw)

    return make


@pytest.fixture
def app_factory(strict_sts_peer: strict_sts.StrictSts) -> Callable[[Settings], Any]:
    """create_app(settings) with the bridge's issuer registered at the strict STS (as IAM would be)."""
    from bridge.runtime.app import create_app

    def make(settings: Settings) -> Any:
        app = create_app(settings)
        svc = app.extensions["bridge"]
        strict_sts_peer.register_oidc_provider(settings.issuer_url, {settings.issuer.audience}, svc.keyring.jwks)
        strict_sts_peer.register_saml_provider(settings.aws.saml_provider_name, svc.idp_metadata)
        _BRIDGE_METADATA["last"] = svc.idp_metadata
        return app

    return make


@pytest.fixture
def live_bridge(bridge_port: int, app_factory: Callable[[Settings], Any]) -> Iterator[Callable[[Settings], str]]:
    """Serve a bridge app on ``bridge_port`` in a thread (werkzeug); returns its base URL."""
    from werkzeug.serving import WSGIRequestHandler, make_server

    class KeepSsoHeader(WSGIRequestHandler):
        """Like gunicorn with deploy/gunicorn.conf.py's ``forwarder_headers``: the one header with an
        underscore the bridge reads (IAM Identity Center's ``x-amz-sso_bearer_token``) is kept."""

        def make_environ(self) -> Any:
            environ = super().make_environ()
            if (value := self.headers.get("x-amz-sso_bearer_token")) is not None:
                environ["HTTP_X_AMZ_SSO_BEARER_TOKEN"] = value
            return environ

    def close_when_sent(app: Any) -> Any:
        """Like gunicorn: the response's ``close`` (``call_on_close`` work, e.g. the portal's recent
        roles) runs once its body is sent. werkzeug's server first drains the socket and skips
        ``close`` when the browser has already reset the connection, which made that work vanish."""
        def wsgi(environ: Any, start_response: Any) -> Any:
            body = app(environ, start_response)
            try:
                yield from body
            finally:
                if hasattr(body, "close"):
                    body.close()
        return wsgi

    servers: list[Any] = []

    def start(settings: Settings) -> str:
        app = app_factory(settings)
        srv = make_server("127.0.0.1", bridge_port, close_when_sent(app), threaded=True,
                          request_handler=KeepSsoHeader)
        threading.Thread(target=srv.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
        servers.append(srv)
        start.app = app  # type: ignore[attr-defined]  # the app last started, for tests that reach inside
        return f"http://127.0.0.1:{bridge_port}"

    yield start
    for srv in servers:
        srv.shutdown()
        srv.server_close()


class LogCapture(logging.Handler):
    """Collects the bridge's log lines exactly as they would be written (JSON)."""

    def __init__(self) -> None:
        super().__init__()
        from bridge.telemetry.logs import JsonFormatter

        self.setFormatter(JsonFormatter())
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(self.format(record))

    @property
    def text(self) -> str:
        return "\n".join(self.lines)


@pytest.fixture
def bridge_logs() -> Iterator[LogCapture]:
    h = LogCapture()
    log = logging.getLogger("bridge")
    log.addHandler(h)
    yield h
    log.removeHandler(h)


# ---- SAML upstream peer (pysaml2 IdP, tests/peers/saml_idp.py) ------------------------------


@dataclass
class SamlIdp:
    url: str
    entity_id: str
    key: SamlKey
    cert_file: Path


def _sp_metadata(bridge_base: str, cert_file: Path, idp_entity: str) -> bytes:
    cfg = SamlConnectorSettings(id=SAML_CONNECTOR, type="saml", idp_entity_id=idp_entity, sso_url="http://unused/",
                                idp_cert_files=[cert_file])
    return SamlConnector(cfg, base_url=bridge_base, resolve=lambda p: p, replay_guard=lambda k, t: True).sp_metadata()


@pytest.fixture(scope="module")
def saml_idp(tmp_path_factory: pytest.TempPathFactory, bridge_port: int) -> Iterator[SamlIdp]:
    if not shutil.which("xmlsec1"):
        pytest.fail("xmlsec1 is not installed: run `make test` (apt-get install xmlsec1)")
    d = tmp_path_factory.mktemp("saml-idp")
    key = generate_saml_key(d, bits=2048)
    shutil.copy(key.path, d / "idp.key")
    shutil.copy(key.path.with_suffix(".crt"), d / "idp.crt")
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    (d / "sp.xml").write_bytes(_sp_metadata(f"http://127.0.0.1:{bridge_port}", d / "idp.crt", f"{url}/metadata"))
    env = {**os.environ, "IDP_PORT": str(port), "IDP_CERT_DIR": str(d), "SP_METADATA": str(d / "sp.xml")}
    p = subprocess.Popen([sys.executable, str(PEERS / "saml_idp.py")], env=env, stdout=subprocess.DEVNULL,
                         stderr=subprocess.DEVNULL)
    wait_http(f"{url}/metadata", 30)
    yield SamlIdp(url, f"{url}/metadata", key, d / "idp.crt")
    p.terminate()
    p.wait(5)


@pytest.fixture
def saml_settings(make_settings, saml_idp: SamlIdp):  # type: ignore[no-untyped-def]
    def make(**connector: Any) -> Any:
        c = {"id": SAML_CONNECTOR, "type": "saml", "name": "Corp SAML", "metadata_url": f"{saml_idp.url}/metadata",
             **connector}
        rules = [
            {"name": "admins", "group": "aws-admins", "role_arn": f"arn:aws:iam::{ACCOUNT}:role/Admin",
             "tags": {"Email": "email", "Department": "claims.department"}, "transitive_tags": ["Department"],
             "source_identity_from": "email", "path": "saml", "max_duration": 43200},
            {"name": "readonly", "group": "aws-readonly", "role_arn": f"arn:aws:iam::{ACCOUNT}:role/ReadOnly"},
        ]
        return make_settings(connectors=[c], mapping={"rules": rules})
    return make
