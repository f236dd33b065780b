"""One Redis round trip per cached request (``Store.read_ahead``, bridge/web/ahead.py), counted by the
Redis server itself (``total_writes_processed``: each batch of replies it writes to a client is one
round trip), and what the combined call keeps: a revoked session gets nothing, not even from the cache;
a Redis that stops answering mid-request is a 503 and nothing is issued."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest
import redis
import requests

from bridge.runtime.localredis import LocalRedis
from tests.integration.helpers import cli_token, dev_login, grant_id, portal_json

pytestmark = pytest.mark.integration


def round_trips(r: redis.Redis, call: Callable[[], None], times: int) -> float:
    before = int(r.info("stats")["total_writes_processed"])
    for _ in range(times):
        call()
    # the first INFO's own reply is written after it read the counter: one write that is not a request's
    return (int(r.info("stats")["total_writes_processed"]) - before - 1) / times


@pytest.fixture
def own_redis(tmp_path: Path):  # type: ignore[no-untyped-def]
    with LocalRedis(tmp_path / "redis") as rd:
        yield rd


def test_a_cached_request_is_one_round_trip(live_bridge, make_settings, strict_sts_peer, own_redis) -> None:
    base = live_bridge(make_settings(redis={"url": own_redis.url, "key_prefix": "rt:"}))
    s = dev_login(base, "alice")
    portal = portal_json(s, base)
    headers = {"Accept": "application/json", "X-CSRF-Token": portal["csrf_token"]}
    gid = grant_id(portal, "/Admin")
    url = f"{base}/credentials/{gid}"
    first = s.post(url, headers=headers, timeout=30).json()  # minted, cached; the role is now the most recent
    calls = strict_sts_peer.calls
    bearer = {"Authorization": f"Bearer {cli_token(base, s)}"}
    api = requests.Session()
    assert api.post(f"{base}/api/v1/credentials/{gid}", headers=bearer, timeout=30).status_code == 200
    r = redis.Redis.from_url(own_redis.url)

    def cached() -> None:
        assert s.post(url, headers=headers, timeout=30).json() == first

    def api_cached() -> None:
        assert api.post(f"{base}/api/v1/credentials/{gid}", headers=bearer, timeout=30).json()["SessionToken"] \
            == first["SessionToken"]

    assert round_trips(r, cached, 10) == 1
    assert round_trips(r, api_cached, 10) == 1
    assert round_trips(r, lambda: portal_json(s, base) and None, 5) == 1
    assert strict_sts_peer.calls == calls  # all of them from the cache
    assert portal_json(s, base)["recent"][0] == gid


def test_a_revoked_session_gets_nothing_from_the_combined_read(live_bridge, make_settings, strict_sts_peer,
                                                               own_redis) -> None:
    base = live_bridge(make_settings(redis={"url": own_redis.url, "key_prefix": "rv:"}))
    s = dev_login(base, "alice")
    portal = portal_json(s, base)
    headers = {"Accept": "application/json", "X-CSRF-Token": portal["csrf_token"]}
    url = f"{base}/credentials/{grant_id(portal, '/Admin')}"
    assert s.post(url, headers=headers, timeout=30).status_code == 200  # cached, and the session known here
    calls = strict_sts_peer.calls
    r = redis.Redis.from_url(own_redis.url)
    buckets = {k: r.get(k) for k in r.scan_iter(match="rv:rl:credentials:*")}
    assert r.delete(*r.scan_iter(match="rv:session:*")) == 1  # ended elsewhere (another instance)
    resp = s.post(url, headers=headers, timeout=30)
    assert resp.status_code == 401 and "SessionToken" not in resp.text and resp.json()["error"]
    assert strict_sts_peer.calls == calls
    assert {k: r.get(k) for k in r.scan_iter(match="rv:rl:credentials:*")} == buckets  # the refusal used no budget


@pytest.mark.parametrize("how", ["stalls", "dies"])
def test_redis_failing_mid_request_is_a_503_and_nothing_is_issued(live_bridge, make_settings, strict_sts_peer,
                                                                  own_redis, how) -> None:
    settings = make_settings(redis={"url": own_redis.url, "key_prefix": "rf:", "socket_timeout": 0.2})
    base = live_bridge(settings)
    s = dev_login(base, "alice")
    portal = portal_json(s, base)
    headers = {"Accept": "application/json", "X-CSRF-Token": portal["csrf_token"]}
    url = f"{base}/credentials/{grant_id(portal, '/Admin')}"
    assert s.post(url, headers=headers, timeout=30).status_code == 200  # the next one reads ahead
    calls = strict_sts_peer.calls
    if how == "stalls":  # the pipeline goes out, no answer comes back within the socket timeout
        redis.Redis.from_url(own_redis.url).execute_command("CLIENT", "PAUSE", "3000", "ALL")
    else:
        own_redis.crash()
    resp = s.post(url, headers=headers, timeout=30)
    assert resp.status_code == 503 and resp.headers["Retry-After"]
    assert "SessionToken" not in resp.text and json.loads(resp.text)["error"]
    html = s.post(url, headers={"X-CSRF-Token": portal["csrf_token"]}, allow_redirects=False, timeout=30)
    assert html.status_code == 503 and "<html" in html.text.lower() and "Traceback" not in html.text
    assert strict_sts_peer.calls == calls  # nothing issued


def test_identity_center_listings_are_one_round_trip_and_a_revoked_token_gets_nothing(
        live_bridge, make_settings, own_redis) -> None:
    """ListAccounts and ListAccountRoles read the token and its session together (bridge/web/sso.py), once
    this process has seen them live; a token revoked elsewhere is refused from that same read."""
    from tests.integration.test_identity_center import device_login, portal_client

    base = live_bridge(make_settings(redis={"url": own_redis.url, "key_prefix": "ic:"}))
    token = device_login(base, dev_login(base, "alice"))["accessToken"]
    sso = portal_client(base)
    accounts = sso.list_accounts(accessToken=token)["accountList"]  # seen live here from now on
    account = accounts[0]["accountId"]
    r = redis.Redis.from_url(own_redis.url)
    assert round_trips(r, lambda: sso.list_accounts(accessToken=token) and None, 5) == 1
    assert round_trips(r, lambda: sso.list_account_roles(accessToken=token, accountId=account) and None, 5) == 1
    assert r.delete(*r.scan_iter(match="ic:*clitoken*")) >= 1  # revoked elsewhere (another instance)
    with pytest.raises(sso.exceptions.UnauthorizedException):
        sso.list_accounts(accessToken=token)
