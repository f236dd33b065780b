"""The store and the bridge against the Redis topologies large users run, started here on loopback
(tests/redis_topologies.py):

- ``cluster``: 3 masters + 3 replicas (Redis Cluster), the bridge in ``mode: cluster`` as the ACL
  user (every node has it), so the list's Cluster commands are proven too;
- ``sentinel``: a master, a replica and three sentinels, the bridge in ``mode: sentinel``;
- ``tls-acl``: one ``redis-server --tls-port`` with a CA made by the test (``rediss://`` +
  ``ssl_ca_file``), the bridge signed in as an ACL user limited to ``BRIDGE_COMMANDS`` and its key
  prefix (the list in docs/operations.md): whatever the store sends beyond that list fails here.

Each runs the storage conformance suite (tests/storage_conformance.py) and the flows: sign-in with
the callback served by a second app instance, credentials through the strict STS, the device flow,
a rate limit, the replay cache and the audit stream (``audit.sink: redis``).
"""

from __future__ import annotations

import json
import re
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

import pytest
import requests

from bridge.config import RedisSettings
from bridge.storage import hash_id
from bridge.storage.redis import RedisStore, redis_client
from tests.conftest import ACCOUNT, free_port
from tests.integration.helpers import caller_arn, grant_id, portal_json
from tests.redis_topologies import (
    Cluster,
    SentinelGroup,
    TlsServer,
    add_acl_user,
    start_cluster,
    start_sentinel_group,
    start_tls_server,
)
from tests.storage_conformance import *  # noqa: F403 - the suite's tests are collected here
from tests.storage_conformance import T0, Harness, session, token

pytestmark = pytest.mark.integration

ACL_PREFIX = "acl:"  # the ACL user may touch ``acl:*`` only
ADMIN = f"arn:aws:iam::{ACCOUNT}:role/Admin"
WANT = f"arn:aws:sts::{ACCOUNT}:assumed-role/Admin/alice@example.com"


@pytest.fixture(scope="module")
def redis_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    c = start_cluster(tmp_path_factory.mktemp("cluster"))
    for node in c.servers:
        add_acl_user(node.client(), "bridge", "bridge-pw", ACL_PREFIX)
    yield c
    c.stop()


@pytest.fixture(scope="module")
def redis_sentinel(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SentinelGroup]:
    g = start_sentinel_group(tmp_path_factory.mktemp("sentinel"))
    yield g
    g.stop()


@pytest.fixture(scope="module")
def redis_tls(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TlsServer]:
    t = start_tls_server(tmp_path_factory.mktemp("tls"))
    add_acl_user(t.admin(), "bridge", "bridge-pw", ACL_PREFIX)
    yield t
    t.stop()


@dataclass
class Target:
    name: str
    redis: dict[str, Any]  # the bridge's ``redis:`` section (without key_prefix)
    admin: Any  # a client with every right, for the harness (TTL moves, clean-up), never the store
    prefix_root: str = ""
    servers: tuple[Any, ...] = ()  # admin clients of each server whose ACL log is checked

    def prefix(self) -> str:
        return f"{self.prefix_root}t{time.monotonic_ns()}:"

    def store(self, prefix: str, **kw: Any) -> RedisStore:
        return RedisStore(redis_client(RedisSettings(**self.redis, key_prefix=prefix)), prefix, **kw)


@pytest.fixture(scope="module", params=["cluster", "sentinel", "tls-acl"])
def target(request: pytest.FixtureRequest) -> Target:
    if request.param == "cluster":
        c: Cluster = request.getfixturevalue("redis_cluster")
        return Target("cluster", {"mode": "cluster", "url": c.url.replace("//", "//bridge:bridge-pw@")},
                      c.client(), ACL_PREFIX, tuple(n.client() for n in c.servers))
    if request.param == "sentinel":
        g: SentinelGroup = request.getfixturevalue("redis_sentinel")
        return Target("sentinel", {"mode": "sentinel", "url": "redis://127.0.0.1/0", "sentinels": g.sentinel_addrs,
                                   "sentinel_master": g.name}, g.master().client())
    t: TlsServer = request.getfixturevalue("redis_tls")
    assert t.tls is not None
    return Target("tls-acl", {"url": t.url("bridge", "bridge-pw"), "ssl_ca_file": str(t.tls.ca)}, t.admin(),
                  ACL_PREFIX, (t.admin(),))


@pytest.fixture
def harness(target: Target) -> Iterator[Harness]:
    prefix = target.prefix()
    now = [float(T0)]
    store = target.store(prefix, clock=lambda: now[0])
    admin = target.admin

    def advance(seconds: float) -> None:
        now[0] += seconds
        for key in admin.scan_iter(match=f"{prefix}*"):
            left = admin.pttl(key)
            if left < 0:
                continue  # no TTL (the audit stream)
            if left <= seconds * 1000:
                admin.delete(key)
            else:
                admin.pexpire(key, int(left - seconds * 1000))

    def raw_put(key: str, doc: Mapping[str, Any], ttl: int) -> None:
        admin.set(f"{prefix}{key}", json.dumps(dict(doc)), ex=ttl)

    yield Harness(store, advance, raw_put)
    for key in admin.scan_iter(match=f"{prefix}*"):
        admin.delete(key)
    assert_acl_never_refused(target)


def assert_acl_never_refused(target: Target) -> None:
    """Where the bridge is the ACL user: no server refused it anything (some callers turn a store
    error into a quiet fallback, so the ACL log is the proof). redis-py's CLIENT SETINFO may be refused."""
    refused = []
    for server in target.servers:
        refused += [(e["reason"], e["object"]) for e in server.acl_log()
                    if e["username"] == "bridge" and e["object"] != "client|setinfo"]
        server.acl_log_reset()
    assert not refused, refused


# --------------------------------------------------------------------------- keys and slots


def test_a_sessions_keys_share_one_slot(harness: Harness, target: Target) -> None:
    """What hangs off a session is hash-tagged with the session hash, and a user's credential
    entries with the user: one slot each, so DEL / MULTI over them work on a Cluster."""
    from redis.crc import key_slot

    s = harness.store
    assert isinstance(s, RedisStore)
    sid = s.create_session(session(), idle=300, absolute=3600)
    shash = hash_id(sid)
    s.put_passthrough(sid, {"kind": "saml", "value": "x"}, 300)
    s.put_upstream(shash, {"refresh_token": "r1"}, 3600)
    s.add_cli_token("t1", token(shash), 600)
    s.creds_put("u1", "e1", b"\x01a", 600)
    s.creds_put("u1", "e2", b"\x01b", 600)
    keys = sorted(k.decode() for k in target.admin.scan_iter(match=f"{s.prefix}*"))
    of_session = [k for k in keys if f"{{{shash}}}" in k]
    assert {k.split(":")[-2] for k in of_session} == {"session", "passthrough", "upstream", "session-tokens"}
    assert len({key_slot(k.encode()) for k in of_session}) == 1
    of_user = [k for k in keys if "{u1}" in k]
    assert len(of_user) == 3 and len({key_slot(k.encode()) for k in of_user}) == 1
    assert s.creds_forget("u1") == 2 and s.creds_get("u1", "e1") is None
    s.delete_session_hash(shash)
    assert s.pop_session_tokens(shash) == ["t1"]
    assert not [k for k in target.admin.scan_iter(match=f"{s.prefix}*") if f"{{{shash}}}".encode() in k]


def test_keys_written_before_the_hash_tags_are_read_and_deleted(harness: Harness, target: Target) -> None:
    """A rolling upgrade: what the previous version wrote (no braces) still serves its session, moves
    to the tagged key on first read, and goes with its session."""
    s = harness.store
    shash = hash_id("old-cookie")
    doc = {"identity": session().identity.to_json(), "csrf": "c", "created_at": T0, "expires_at": T0 + 3600}
    harness.raw_put(f"session:{shash}", doc, 300)
    harness.raw_put(f"upstream:{shash}", {"refresh_token": "r0"}, 3600)
    harness.raw_put(f"passthrough:{shash}", {"kind": "oidc", "value": "v"}, 300)
    target.admin.sadd(f"{s.prefix}session-tokens:{shash}", "t0")
    target.admin.set(f"{s.prefix}creds:e0", b"\x01old")
    target.admin.sadd(f"{s.prefix}creds-index:u0", f"{s.prefix}creds:e0")
    rec = s.get_session(shash)
    assert rec is not None and rec.csrf == "c"
    tagged, old = f"{s.prefix}session:{{{shash}}}", f"{s.prefix}session:{shash}"
    assert target.admin.exists(tagged) and not target.admin.exists(old)  # moved
    assert 0 < target.admin.ttl(tagged) <= 300  # its TTL came along
    assert s.load_session("old-cookie", idle=300) is not None
    assert s.get_upstream(shash) == {"refresh_token": "r0"} and s.get_passthrough("old-cookie") == {"kind": "oidc",
                                                                                                 "value": "v"}
    assert s.session_tokens(shash) == ["t0"]
    assert s.user_sessions("nobody") == []
    assert s.creds_forget("u0") == 1 and not target.admin.exists(f"{s.prefix}creds:e0")  # sign-out clears them
    assert s.pop_session_tokens(shash) == ["t0"]
    s.delete_session_hash(shash)
    assert not list(target.admin.scan_iter(match=f"{s.prefix}*"))


# --------------------------------------------------------------------------- the flows


@pytest.fixture
def two_instances(target: Target, make_settings: Callable[..., Any], live_bridge: Callable[..., str],
                  app_factory: Callable[..., Any]) -> Iterator[tuple[str, str, Any, Any]]:
    """A on the public port (live_bridge) and B, a second ``create_app`` on the same Redis."""
    from werkzeug.serving import make_server

    settings = make_settings(redis={**target.redis, "key_prefix": target.prefix()}, audit={"sink": "redis"},
                             cli={"poll_interval": 1}, rate_limits={"credentials_per_minute": 3})
    a = live_bridge(settings)
    app_a = live_bridge.app  # type: ignore[attr-defined]
    app_b = app_factory(settings)
    port = free_port()
    srv = make_server("127.0.0.1", port, app_b, threaded=True)
    threading.Thread(target=srv.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
    yield a, f"http://127.0.0.1:{port}", app_a, app_b
    srv.shutdown()
    srv.server_close()


def _creds(s: requests.Session, base: str, portal: dict[str, Any]) -> requests.Response:
    return s.post(f"{base}/credentials/{grant_id(portal, '/Admin')}",
                  headers={"Accept": "application/json", "X-CSRF-Token": portal["csrf_token"]}, timeout=30)


def test_flows(two_instances: tuple[str, str, Any, Any], target: Target, moto_url: str) -> None:
    a, b, app_a, app_b = two_instances
    # Sign-in starts on A, the callback is served by B; the replayed callback is refused on A.
    s = requests.Session()
    r = s.get(f"{a}/login/dev", allow_redirects=False, timeout=10)
    state = re.search(r"state=([\w-]+)", r.headers["location"])
    assert state
    r = s.post(f"{b}/callback/dev", data={"state": state[1], "user": "alice"}, allow_redirects=False, timeout=10)
    assert r.status_code == 303, r.text[:300]
    replay = requests.post(f"{a}/callback/dev", data={"state": state[1], "user": "carol"}, allow_redirects=False,
                           timeout=10)
    assert replay.status_code == 400
    portal = portal_json(s, a)
    assert portal["identity"]["email"] == "alice@example.com"
    # Credentials through the strict STS (minted on B, cached: A serves the same ones).
    while time.time() % 60 > 55:  # the rate-limit window below must not turn over half-way
        time.sleep(0.5)
    r1 = _creds(s, b, portal)
    assert r1.status_code == 200, r1.text
    assert caller_arn(moto_url, r1.json()) == WANT
    r2 = _creds(s, a, portal)
    assert r2.status_code == 200 and r2.json()["AccessKeyId"] == r1.json()["AccessKeyId"]
    # A rate limit, counted once for both instances.
    assert _creds(s, b, portal).status_code == 200
    limited = _creds(s, a, portal)
    assert limited.status_code == 429 and limited.json()["error"] == "rate_limited"
    # The replay cache (the SAML assertion-ID guard) is shared too.
    svc_a, svc_b = app_a.extensions["bridge"], app_b.extensions["bridge"]
    assert svc_a.store.remember_once("assertion-1", 60) is True
    assert svc_b.store.remember_once("assertion-1", 60) is False
    # The device flow: started on A, approved in the browser on B, polled on A; the token works on B.
    d = requests.post(f"{a}/oauth/device_authorization", data={"client_id": "bridge-cli"}, timeout=10).json()
    page = s.get(f"{b}/device", params={"user_code": d["user_code"]}, timeout=10)
    csrf = re.search(r'name="csrf_token" value="([^"]+)"', page.text)
    assert csrf, page.text[:300]
    approved = s.post(f"{b}/device", data={"csrf_token": csrf[1], "user_code": d["user_code"], "decision": "approve",
                                           "confirm": "yes"}, timeout=10)
    assert "Approved" in approved.text
    tok = None
    for _ in range(20):
        r = requests.post(f"{a}/oauth/token", data={"grant_type": "urn:ietf:params:oauth:grant-type:device_code",
                                                    "client_id": "bridge-cli", "device_code": d["device_code"]},
                          timeout=10)
        if r.status_code == 200:
            tok = r.json()["access_token"]
            break
        assert r.json()["error"] in ("authorization_pending", "slow_down"), r.text
        time.sleep(1.1 if r.json()["error"] == "authorization_pending" else 6.1)
    assert tok
    grants = requests.get(f"{b}/api/v1/grants", headers={"Authorization": f"Bearer {tok}"}, timeout=10)
    assert grants.status_code == 200 and any(g["role_arn"] == ADMIN for g in grants.json()["grants"])
    # Sign-out on B ends the session, its CLI token and the cached credentials everywhere.
    s.post(f"{b}/logout", data={"csrf_token": portal_json(s, a)["csrf_token"]}, timeout=10)
    assert requests.get(f"{a}/api/v1/grants", headers={"Authorization": f"Bearer {tok}"}, timeout=10).status_code == 401
    assert s.get(f"{a}/portal", headers={"Accept": "application/json"}, allow_redirects=False,
                 timeout=10).status_code in (302, 401)
    prefix = svc_a.settings.redis.key_prefix
    assert not list(target.admin.scan_iter(match=f"{prefix}creds:*"))
    # The audit stream (sink: redis) holds both instances' records, readable from either.
    lines = [json.loads(line) for _, line in svc_b.store.audit_read(svc_b.settings.audit.stream, count=100)]
    events = {x["type"] for x in lines}
    assert {"sign_in", "grant_decision", "credentials"} <= events, events
    assert_acl_never_refused(target)


def test_storage_migrate_moves_the_old_layout_on_every_topology(harness: Harness, target: Target) -> None:
    """``bridge storage migrate`` (bridge/storage/redis_migrate.py) as a user with the bridge's commands and SCAN
    (docs/operations.md): the old keys, spread over the Cluster's nodes, move, and a store without the legacy reads
    (as in 0.2.0) finds them."""
    from bridge.storage.redis_migrate import migrate
    from tests.redis_topologies import BRIDGE_COMMANDS

    s = harness.store
    for server in target.servers:
        add_acl_user(server, "migrator", "migrator-pw", target.prefix_root, (*BRIDGE_COMMANDS, "scan"))
    migrator = RedisStore(redis_client(RedisSettings(**{**target.redis, "url": target.redis["url"].replace(
        "bridge:bridge-pw@", "migrator:migrator-pw@")}, key_prefix=s.prefix)), s.prefix)
    shashes = [hash_id(f"old-cookie-{i}") for i in range(6)]
    doc = {"identity": session().identity.to_json(), "csrf": "c", "created_at": T0, "expires_at": T0 + 3600}
    for shash in shashes:
        harness.raw_put(f"session:{shash}", doc, 300)
        harness.raw_put(f"upstream:{shash}", {"refresh_token": "r0"}, 3600)
        target.admin.sadd(f"{s.prefix}session-tokens:{shash}", "t0")
    target.admin.set(f"{s.prefix}creds:e0", b"\x01old", ex=600)
    target.admin.sadd(f"{s.prefix}creds-index:u0", f"{s.prefix}creds:e0")
    done = migrate(migrator)
    assert done.found == done.moved == {"session": 6, "upstream": 6, "session-tokens": 6, "creds-index": 1, "creds": 1}
    s.legacy_reads = False
    assert all(s.get_session(h) is not None and s.get_upstream(h) == {"refresh_token": "r0"} for h in shashes)
    assert all(s.session_tokens(h) == ["t0"] for h in shashes) and s.creds_get("u0", "e0") == b"\x01old"
    assert migrate(migrator).total == 0
    refused = []
    for server in target.servers:
        refused += [(e["reason"], e["object"]) for e in server.acl_log()
                    if e["username"] == "migrator" and e["object"] != "client|setinfo"]
    assert not refused, refused
