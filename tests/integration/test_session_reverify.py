"""Continuous evaluation, session side: a user changed or disabled at the IdP loses roles within
``reverify_interval`` on every path (portal and CLI token), and an unreachable IdP follows the
connector's policy after ``reverify_grace``. Attacks:

- removed from a group at the IdP, keeps using a 12 h session → roles recomputed within the interval
- disabled at the IdP, keeps using a CLI token                → session and token end (401 idp_revoked)
- IdP unreachable for longer than the grace (fail_closed)    → 503, nothing issued; session kept
"""

from __future__ import annotations

import json
import os
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pytest
import requests

from bridge.config import settings_from_dict
from bridge.core.credcache import NoCache
from bridge.core.device import DeviceFlow
from bridge.core.sessions import Sessions
from bridge.domain.errors import NotSignedIn, UpstreamUnavailable
from bridge.domain.identity import Identity
from bridge.keys.sealing import Sealer
from bridge.storage.redis import RedisStore as Store
from bridge.upstream.base import ReverifyExpired, ReverifyOk, ReverifyRevoked, ReverifyUnreachable
from tests.conftest import ACCOUNT, OIDC_CONNECTOR
from tests.integration.helpers import cli_token, oidc_login, portal_json, redis_keys_holding

pytestmark = pytest.mark.integration
ADMIN = f"arn:aws:iam::{ACCOUNT}:role/Admin"


@pytest.fixture
def peer_user(oidc_issuer: str) -> tuple[str, Callable[..., None]]:
    name = f"u{secrets.token_hex(4)}"

    def change(**fields: Any) -> None:
        r = requests.post(f"{oidc_issuer}/test-admin/users/{name}", data=json.dumps(fields), timeout=5)
        assert r.status_code == 200, r.text

    change(password="pw", groups=["aws-admins", "aws-readonly"], amr=["pwd", "mfa"])
    return name, change


def test_group_change_and_disable_at_the_idp_reach_sessions_and_cli_tokens(
        live_bridge: Any, make_settings: Any, oidc_issuer: str, peer_user: Any) -> None:
    name, change = peer_user
    settings = make_settings(connectors=[{"id": OIDC_CONNECTOR, "type": "oidc", "issuer": oidc_issuer,
                                          "client_id": "bridge", "client_secret": "bridge-secret",
                                          "request_offline_access": True, "reverify_interval": 60}])
    base = live_bridge(settings)
    svc = live_bridge.app.extensions["bridge"]
    s = requests.Session()
    assert oidc_login(base, OIDC_CONNECTOR, name, "pw", session=s).url == f"{base}/portal"
    assert len(portal_json(s, base)["grants"]) == 2
    shash = Store.session_hash(s.cookies[settings.session_cookie])
    refresh = (svc.sessions._get_upstream(shash)[1] or {}).get("refresh_token")
    assert refresh and redis_keys_holding(svc.store, refresh) == []  # sealed: a Redis reader finds no refresh token
    token = cli_token(base, s)
    auth = {"Authorization": f"Bearer {token}"}
    real = svc.sessions.clock
    change(groups=["aws-readonly"])
    assert len(portal_json(s, base)["grants"]) == 2  # not due yet: no call to the IdP on every request
    svc.sessions.clock = lambda: real() + 61
    try:
        grants = requests.get(f"{base}/api/v1/grants", headers=auth, timeout=10).json()["grants"]
        assert [g["role_arn"] for g in grants] == [f"arn:aws:iam::{ACCOUNT}:role/ReadOnly"]
        assert [g["role_arn"] for g in portal_json(s, base)["grants"]] == [grants[0]["role_arn"]]
        change(disabled=True)
        svc.sessions.clock = lambda: real() + 200
        r = requests.get(f"{base}/api/v1/grants", headers=auth, timeout=10)
        assert r.status_code == 401, r.text
        r = s.get(f"{base}/portal", headers={"Accept": "application/json"}, timeout=10)
        assert r.status_code == 401
    finally:
        svc.sessions.clock = real


@dataclass
class FakeConnector:
    """Stands in for the IdP's answer (the real connector's outcomes are tested against the peer)."""

    id: str
    cfg: Any
    answer: Any
    type: str = "oidc"
    allows_unsolicited: bool = False
    calls: int = 0

    @property
    def policy(self) -> Any:  # the Connector protocol's: what its settings say
        return self.cfg.policy()

    def reverify(self, grant: Any) -> Any:
        self.calls += 1
        return self.answer


def make_sessions(redis_url: str, policy: str, answer: Any,
                  sealer: Sealer | None = None) -> tuple[Sessions, FakeConnector, list[float]]:
    settings = settings_from_dict({
        "base_url": "http://127.0.0.1:1", "insecure_dev_login": True,
        "connectors": [{"id": "corp", "type": "oidc", "issuer": "https://idp.test", "client_id": "c",
                        "client_secret": "s",
                        "reverify_interval": 60, "reverify_grace": 300, "reverify_unreachable": policy}]})
    now = [1_000_000.0]
    store = Store.from_url(redis_url, f"rv{time.monotonic_ns()}:")
    store.clock = lambda: now[0]
    conn = FakeConnector("corp", settings.connectors[0], answer)
    sealer = sealer or Sealer([os.urandom(32)])
    return Sessions(store, settings.session, {"corp": conn}, DeviceFlow(store, settings.cli), NoCache(),
                    clock=lambda: now[0], sealer=sealer), conn, now


ALICE = Identity(connector_id="corp", subject="alice", issuer="https://idp.test", groups=("a",))


@pytest.mark.parametrize("policy,ok_after_grace", [("fail_closed", False), ("insecure_fail_open", True)])
def test_unreachable_idp_follows_the_policy_after_the_grace(redis_url: str, policy: str, ok_after_grace: bool) -> None:
    sessions, conn, now = make_sessions(redis_url, policy, ReverifyUnreachable("timeout"))
    shash = Store.session_hash(sessions.start(ALICE, correlation=None, upstream={"refresh_token": "r"}))
    now[0] += 61
    assert sessions.load(shash) is not None and conn.calls == 1  # within the grace: kept
    now[0] += 300
    if ok_after_grace:
        assert sessions.load(shash) is not None
    else:
        with pytest.raises(UpstreamUnavailable):
            sessions.load(shash)
        assert sessions.store.get_session(shash) is not None  # refused now, not signed out


def test_revoked_ends_the_session_and_ok_replaces_the_identity_and_grant(redis_url: str) -> None:
    fresh = Identity(connector_id="corp", subject="alice", issuer="https://idp.test", groups=("b",))
    sessions, conn, now = make_sessions(redis_url, "fail_closed", ReverifyOk(fresh, {"refresh_token": "r2"}))
    shash = Store.session_hash(sessions.start(ALICE, correlation=None, upstream={"refresh_token": "r1"}))
    now[0] += 61
    doc = sessions.load(shash)
    assert doc is not None and doc.identity.to_json()["groups"] == ["b"]
    assert sessions._get_upstream(shash) == (True, {"refresh_token": "r2"})  # the rotated token is kept
    assert "r2" not in json.dumps(sessions.store.get_upstream(shash))  # sealed again
    assert sessions.load(shash) is not None and conn.calls == 1  # checked again only after the interval
    conn.answer = ReverifyRevoked("invalid_grant")
    now[0] += 61
    with pytest.raises(NotSignedIn):
        sessions.load(shash)
    assert sessions.store.get_session(shash) is None and sessions.store.get_upstream(shash) is None


def test_the_upstream_grant_is_sealed_and_bound_to_its_session(redis_url: str) -> None:
    """A reader of Redis (a dump, a replica, a backup) finds no refresh token; a sealed grant copied
    beside another session does not open there, and that session is not re-checked with it."""
    fresh = Identity(connector_id="corp", subject="bob", issuer="https://idp.test", groups=("b",))
    sessions, conn, now = make_sessions(redis_url, "fail_closed", ReverifyOk(fresh, {"refresh_token": "r2"}))
    alice = Store.session_hash(sessions.start(ALICE, correlation=None, upstream={"refresh_token": "alice-rt"}))
    bob = Store.session_hash(sessions.start(fresh, correlation=None, upstream={"refresh_token": "bob-rt"}))
    raw = sessions.store.get_upstream(alice)
    assert raw is not None and set(raw) == {"sealed"} and "alice-rt" not in json.dumps(raw)
    sessions.store.put_upstream(bob, raw, 3600)  # alice's sealed grant planted beside bob's session
    now[0] += 61
    assert sessions.load(bob) is not None and conn.calls == 0  # within the grace: kept, the IdP not asked
    now[0] += 300
    with pytest.raises(NotSignedIn) as e:
        sessions.load(bob)  # past the grace, nothing to re-check with: ended, as an expired grant
    assert e.value.code == "reverify_expired" and conn.calls == 0
    assert sessions.store.get_session(bob) is None
    assert sessions.load(alice) is not None and conn.calls == 1  # alice's own grant still opens


ROTATED = "rotated-refresh-token-0123456789"


def test_a_grant_under_a_removed_cache_key_is_not_used_and_a_plain_one_is_resealed(redis_url: str) -> None:
    old, new = os.urandom(32), os.urandom(32)
    fresh = Identity(connector_id="corp", subject="alice", issuer="https://idp.test", groups=("b",))
    sessions, conn, now = make_sessions(redis_url, "fail_closed", ReverifyOk(fresh, {"refresh_token": ROTATED}),
                                        sealer=Sealer([old]))
    sealed = Store.session_hash(sessions.start(ALICE, correlation=None, upstream={"refresh_token": "r1"}))
    plain = Store.session_hash(sessions.start(ALICE, correlation=None))
    sessions.store.put_upstream(plain, {"refresh_token": "written-before-sealing"}, 3600)  # an upgrade
    assert sessions.sealer is not None
    sessions.sealer.use_keys([new])  # the old cache key removed from keys_dir
    now[0] += 361  # past interval and grace
    with pytest.raises(NotSignedIn):
        sessions.load(sealed)
    assert conn.calls == 0
    assert sessions.load(plain) is not None and conn.calls == 1  # read as it was, re-checked
    raw = sessions.store.get_upstream(plain)
    # (a long token: a two-letter one turns up by chance in base64 ciphertext about once in 50 runs)
    assert raw is not None and ROTATED not in json.dumps(raw) and list(raw) == ["sealed"]
    assert sessions._get_upstream(plain) == (True, {"refresh_token": ROTATED})  # resealed under the new key


def test_sealed_values_read_without_keys_open_to_nothing_not_an_error(redis_url: str) -> None:
    """Every cache key removed (and the bridge restarted), or an instance without keys in the fleet:
    what others sealed is neither used as if it were the grant nor a 500."""
    fresh = Identity(connector_id="corp", subject="alice", issuer="https://idp.test", groups=("b",))
    sessions, conn, now = make_sessions(redis_url, "fail_closed", ReverifyOk(fresh, {"refresh_token": "r2"}))
    sid = sessions.start(ALICE, correlation=None, upstream={"refresh_token": "r1"})
    sessions.put_passthrough(sid, {"kind": "oidc", "value": "upstream-id-token"}, 600)
    assert sessions.get_passthrough(sid) == {"kind": "oidc", "value": "upstream-id-token"}
    sessions.sealer = None
    assert sessions.get_passthrough(sid) is None
    now[0] += 361  # past interval and grace
    with pytest.raises(NotSignedIn) as e:
        sessions.load(Store.session_hash(sid))
    assert e.value.code == "reverify_expired" and conn.calls == 0


def test_a_saml_connectors_max_session_shortens_its_sessions(redis_url: str, saml_idp: Any) -> None:
    """SAML has no back channel: its bound is the session lifetime, which ``max_session`` shortens."""
    settings = settings_from_dict({
        "base_url": "http://127.0.0.1:1", "insecure_dev_login": True,
        "connectors": [{"id": "corpsaml", "type": "saml", "idp_entity_id": "https://idp.test", "sso_url":
                        "https://idp.test/sso", "idp_cert_files": [str(saml_idp.cert_file)], "max_session": 3600},
                       {"id": "dev", "type": "dev", "users": [{"subject": "a"}]}]})
    store = Store.from_url(redis_url, f"ms{time.monotonic_ns()}:")
    conns = {"corpsaml": FakeConnector("corpsaml", settings.connectors[0], None, type="saml"),
             "dev": FakeConnector("dev", settings.connectors[1], None, type="dev")}
    sessions = Sessions(store, settings.session, conns, DeviceFlow(store, settings.cli), NoCache(), clock=store.clock)
    for cid, want in (("corpsaml", 3600), ("dev", settings.session.absolute_timeout)):
        sid = sessions.start(Identity(connector_id=cid, subject="a", issuer="i"), correlation=None)
        doc = store.get_session(Store.session_hash(sid))
        assert doc is not None and doc.expires_at - doc.created_at == want


def test_a_grant_that_can_no_longer_be_checked_ends_the_session_after_the_grace(redis_url: str) -> None:
    """Without a refresh token the access token expires: re-checking is impossible, not 'fine'."""
    sessions, conn, now = make_sessions(redis_url, "fail_closed", ReverifyExpired("access token expired"))
    shash = Store.session_hash(sessions.start(ALICE, correlation=None, upstream={"access_token": "a"}))
    now[0] += 61
    assert sessions.load(shash) is not None  # within the grace
    now[0] += 300
    with pytest.raises(NotSignedIn) as e:
        sessions.load(shash)
    assert e.value.code == "reverify_expired" and sessions.store.get_session(shash) is None


def test_a_claim_left_out_of_the_refresh_keeps_its_sign_in_value_but_groups_are_replaced(redis_url: str) -> None:
    """Attack: a refresh answer without the e-mail (or a custom claim) must not make a deny stop matching."""
    signed_in = Identity(connector_id="corp", subject="alice", issuer="https://idp.test",
                         email="dave@contractor.example.com", groups=("contractors",), claims={"dept": "ext"})
    refreshed = Identity(connector_id="corp", subject="alice", issuer="https://idp.test")
    sessions, _, now = make_sessions(redis_url, "fail_closed", ReverifyOk(refreshed, {"refresh_token": "r2"}))
    shash = Store.session_hash(sessions.start(signed_in, correlation=None, upstream={"refresh_token": "r1"}))
    now[0] += 61
    got = sessions.load(shash)
    assert got is not None
    assert got.identity.email == "dave@contractor.example.com" and got.identity.claims["dept"] == "ext"
    assert got.identity.groups == ()


def test_one_re_check_at_a_time_and_its_outcome_stored_before_the_next(redis_url: str) -> None:
    """A second request during a re-check must not refresh again with the token being rotated."""
    fresh = Identity(connector_id="corp", subject="alice", issuer="https://idp.test", groups=("b",))
    sessions, conn, now = make_sessions(redis_url, "fail_closed", None)
    shash = Store.session_hash(sessions.start(ALICE, correlation=None, upstream={"refresh_token": "r1"}))
    seen: list[Any] = []

    def answer(grant: Any) -> Any:
        conn.calls += 1
        seen.append(dict(grant))
        inner = sessions.load(shash)  # a concurrent request while the IdP answers: deferred, no 2nd call
        assert inner is not None and inner.identity.groups == ("a",)
        return ReverifyOk(fresh, {"refresh_token": "r2"})

    conn.reverify = answer  # type: ignore[method-assign]
    now[0] += 61
    assert sessions.load(shash) is not None
    assert conn.calls == 1 and seen == [{"refresh_token": "r1"}]
    assert sessions._get_upstream(shash) == (True, {"refresh_token": "r2"})


def test_sign_out_works_while_the_idp_cannot_be_reached(live_bridge: Any, make_settings: Any, oidc_issuer: str,
                                                       peer_user: Any) -> None:
    name, _ = peer_user
    settings = make_settings(connectors=[{"id": OIDC_CONNECTOR, "type": "oidc", "issuer": oidc_issuer,
                                          "client_id": "bridge", "client_secret": "bridge-secret",
                                          "request_offline_access": True, "reverify_interval": 60,
                                          "reverify_grace": 0}])
    base = live_bridge(settings)
    svc = live_bridge.app.extensions["bridge"]
    s = requests.Session()
    assert oidc_login(base, OIDC_CONNECTOR, name, "pw", session=s).url == f"{base}/portal"
    csrf = portal_json(s, base)["csrf_token"]
    svc.connectors[OIDC_CONNECTOR].reverify = lambda grant: ReverifyUnreachable("down")
    real = svc.sessions.clock
    svc.sessions.clock = lambda: real() + 61
    try:
        assert s.get(f"{base}/portal", headers={"Accept": "application/json"}, timeout=10).status_code == 503
        r = s.post(f"{base}/logout", data={"csrf_token": csrf}, allow_redirects=False, timeout=10)
        assert r.status_code == 303, r.text[:300]
        assert s.get(f"{base}/portal", headers={"Accept": "application/json"}, timeout=10).status_code == 401
    finally:
        svc.sessions.clock = real
