"""Server-side credential cache: no second STS call, nothing secret readable in Redis, gone at sign-out."""

from __future__ import annotations

import pytest
import redis

from tests.integration.helpers import caller_arn, dev_login, grant_id, portal_json

pytestmark = pytest.mark.integration


def test_cache_hit_makes_no_sts_call_and_redis_holds_no_secret(live_bridge, make_settings, strict_sts_peer,
                                                              moto_url, redis_url) -> None:
    settings = make_settings()
    base = live_bridge(settings)
    s = dev_login(base, "alice")
    portal = portal_json(s, base)
    headers = {"Accept": "application/json", "X-CSRF-Token": portal["csrf_token"]}
    url = f"{base}/credentials/{grant_id(portal, '/Admin')}"
    first = s.post(url, headers=headers, timeout=30).json()
    calls = strict_sts_peer.calls
    second = s.post(url, headers=headers, timeout=30).json()
    assert strict_sts_peer.calls == calls  # served from the cache
    assert second == first and caller_arn(moto_url, second).endswith("assumed-role/Admin/alice@example.com")
    # Another duration is another entry (the user asked for a different lifetime).
    s.post(url, headers=headers, data={"duration": "7200"}, timeout=30)
    assert strict_sts_peer.calls == calls + 1
    # Nothing secret in clear anywhere in Redis.
    r = redis.Redis.from_url(redis_url)
    dump = b"".join(r.dump(k) or b"" for k in r.scan_iter(match=f"{settings.redis.key_prefix}*"))
    for secret in (first["SecretAccessKey"], first["SessionToken"], first["AccessKeyId"]):
        assert secret.encode() not in dump
    assert list(r.scan_iter(match=f"{settings.redis.key_prefix}creds:*"))
    # Sign-out deletes the cached credentials.
    s.post(f"{base}/logout", data={"csrf_token": portal["csrf_token"]}, timeout=10)
    assert not list(r.scan_iter(match=f"{settings.redis.key_prefix}creds:*"))
    s2 = dev_login(base, "alice")
    p2 = portal_json(s2, base)
    s2.post(f"{base}/credentials/{grant_id(p2, '/Admin')}",
            headers={"Accept": "application/json", "X-CSRF-Token": p2["csrf_token"]}, timeout=30)
    assert strict_sts_peer.calls == calls + 2  # a fresh STS call after sign-out


def test_cache_can_be_disabled(live_bridge, make_settings, strict_sts_peer) -> None:
    base = live_bridge(make_settings(credential_cache={"enabled": False}))
    s = dev_login(base, "alice")
    portal = portal_json(s, base)
    headers = {"Accept": "application/json", "X-CSRF-Token": portal["csrf_token"]}
    for _ in range(2):
        s.post(f"{base}/credentials/{grant_id(portal, '/Admin')}", headers=headers, timeout=30)
    assert strict_sts_peer.calls == 2
