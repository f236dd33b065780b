"""ONE conformance suite for every ``Store`` (bridge/storage/interface.py), dex-style: each backend's
test module provides a ``harness`` fixture and star-imports these tests.

- tests/unit/test_storage_conformance.py         MemoryStore (injected clock)
- tests/integration/test_storage_conformance.py  RedisStore against a real redis-server

A ``Harness`` gives the store, ``advance(seconds)`` (moves the store's clock; for Redis it also runs
every key's TTL down by as much, which is what the server's clock would do), and ``raw_put`` (a
document written as earlier versions wrote it: the rolling-upgrade tests).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from typing import Any

from bridge.domain.identity import Grant, Identity
from bridge.storage import (
    AccessRequest,
    Ahead,
    AheadRead,
    CliToken,
    DeviceApproval,
    DeviceCode,
    PendingLogin,
    SessionRecord,
    Store,
    hash_id,
)

T0 = 1_800_000_000  # a multiple of 60: rate-limit windows start here


@dataclass
class Harness:
    store: Store
    advance: Callable[[float], None]
    raw_put: Callable[[str, Mapping[str, Any], int], None]  # (key after the prefix, JSON document, ttl)


ALICE = Identity(connector_id="corp", subject="alice", issuer="https://idp.test", email="Alice@Example.COM",
                 groups=("aws-admins",), claims={"department": "Platform"}, mfa=True, amr=("pwd", "otp"))
GRANT = Grant(role_arn="arn:aws:iam::123456789012:role/Admin", account_id="123456789012", label="Admin",
              session_name="alice", via="admins", tags={"team": "platform"})


def pending(state: str = "s1", nonce: str = "n1") -> PendingLogin:
    return PendingLogin(state=state, connector_id="corp", nonce=nonce, code_verifier="v" * 43, return_to="/portal",
                        created_at=T0, correlation_id="c0ffee", browser_hash="b" * 64)


def session(**kw: Any) -> SessionRecord:
    return SessionRecord(identity=ALICE, csrf="csrf-1", correlation_id="c0ffee", verified_at=T0, **kw)


# --------------------------------------------------------------------------- pending logins


def test_pending_login_is_single_use(harness: Harness) -> None:
    s = harness.store
    s.put_pending(pending(), ttl=120)
    assert s.has_pending("s1")
    assert s.take_pending("s1") == pending()
    assert s.take_pending("s1") is None  # a replayed callback finds nothing
    assert not s.has_pending("s1")
    s.put_pending(pending("s2"), ttl=120)
    s.put_pending(pending("s2", nonce="overwrite?"), ttl=120)  # a state is never overwritten
    assert s.take_pending("s2") == pending("s2")


def test_pending_login_expires_after_its_ttl(harness: Harness) -> None:
    s = harness.store
    s.put_pending(pending(), ttl=120)
    harness.advance(119)
    assert s.has_pending("s1")
    harness.advance(2)
    assert not s.has_pending("s1") and s.take_pending("s1") is None


def test_browser_logins(harness: Harness) -> None:
    s = harness.store
    s.add_browser_login("b1", "s2", 600)
    s.add_browser_login("b1", "s1", 600)
    assert s.browser_logins("b1") == ["s1", "s2"] and s.browser_logins("b2") == []
    s.forget_browser("b1")
    assert s.browser_logins("b1") == []
    s.add_browser_login("b3", "s3", 60)
    harness.advance(61)
    assert s.browser_logins("b3") == []


# --------------------------------------------------------------------------- sessions


def test_session_is_stamped_and_keyed_by_the_hash_of_its_id(harness: Harness) -> None:
    s = harness.store
    sid = s.create_session(session(), idle=300, absolute=3600)
    got = s.load_session(sid, idle=300)
    assert got == session(created_at=T0, expires_at=T0 + 3600)
    assert s.get_session(hash_id(sid)) == got and s.load_session_hash(hash_id(sid), idle=300) == got
    assert s.get_session(sid) is None  # the cookie value is not the key
    for bad in ("", "nope", "x" * 1000):
        assert s.load_session(bad, idle=60) is None


def test_session_idle_timeout_is_reset_by_each_use(harness: Harness) -> None:
    s = harness.store
    sid = s.create_session(session(), idle=300, absolute=3600)
    for _ in range(3):
        harness.advance(290)
        assert s.load_session(sid, idle=300) is not None  # used: the idle timer starts again
    harness.advance(301)
    assert s.load_session(sid, idle=300) is None
    assert s.get_session(hash_id(sid)) is None


def test_session_absolute_timeout(harness: Harness) -> None:
    s = harness.store
    sid = s.create_session(session(), idle=3600, absolute=600)
    harness.advance(599)
    assert s.load_session(sid, idle=3600) is not None
    harness.advance(2)
    assert s.load_session(sid, idle=3600) is None
    assert s.get_session(hash_id(sid)) is None  # deleted, not just ignored


def test_save_rewrites_but_never_revives_a_session(harness: Harness) -> None:
    s = harness.store
    sid = s.create_session(session(), idle=300, absolute=3600)
    shash = hash_id(sid)
    current = s.load_session_hash(shash, idle=300)
    assert current is not None
    assert s.save_session_hash(shash, replace(current, verified_at=T0 + 60), idle=300) is True
    loaded = s.load_session_hash(shash, idle=300)
    assert loaded is not None and loaded.verified_at == T0 + 60
    s.delete_session(sid)
    assert s.save_session_hash(shash, current, idle=300) is False
    assert s.get_session(shash) is None


def test_the_user_index_is_never_shortened(harness: Harness) -> None:
    """A short session (SAML max_session) after a long one of the same e-mail must not expire the index."""
    s = harness.store
    long_sid = s.create_session(session(), idle=3600, absolute=7200)
    s.index_session(["email:a@example.com"], hash_id(long_sid), 7200)
    short_sid = s.create_session(session(), idle=300, absolute=300)
    s.index_session(["email:a@example.com"], hash_id(short_sid), 300)
    harness.advance(600)
    s.load_session_hash(hash_id(long_sid), idle=3600)  # still alive
    assert s.user_sessions("email:a@example.com") == [hash_id(long_sid)]


def test_ending_a_session_removes_what_hangs_off_it(harness: Harness) -> None:
    s = harness.store
    sid = s.create_session(session(), idle=300, absolute=3600)
    shash = hash_id(sid)
    s.put_passthrough(sid, {"kind": "saml", "value": "PHNhbWw+"}, 300)
    s.put_upstream(shash, {"refresh_token": "r1"}, 3600)
    assert s.get_passthrough(sid) == {"kind": "saml", "value": "PHNhbWw+"}
    assert s.get_upstream(shash) == {"refresh_token": "r1"}
    s.delete_session_hash(shash)
    assert s.get_session(shash) is None and s.get_passthrough(sid) is None and s.get_upstream(shash) is None


def test_upstream_grant_and_passthrough_expire_and_delete(harness: Harness) -> None:
    s = harness.store
    s.put_upstream("h1", {"refresh_token": "r1", "expires_at": 5}, 100)
    s.put_upstream("h1", {"refresh_token": "r2"}, 100)  # refresh tokens rotate: the new one replaces it
    assert s.get_upstream("h1") == {"refresh_token": "r2"}
    s.delete_upstream("h1")
    assert s.get_upstream("h1") is None
    s.put_passthrough("sid", {"kind": "oidc", "value": "ey.."}, 30)
    harness.advance(31)
    assert s.get_passthrough("sid") is None


def test_user_index(harness: Harness) -> None:
    s = harness.store
    a = hash_id(s.create_session(session(), idle=300, absolute=3600))
    b = hash_id(s.create_session(session(), idle=300, absolute=3600))
    s.index_session(["sub:alice", "email:alice@example.com"], a, 3600)
    s.index_session(["sub:alice"], b, 3600)
    assert s.user_sessions("sub:alice") == sorted([a, b])
    assert s.user_sessions("email:alice@example.com") == [a] and s.user_sessions("sub:bob") == []
    s.delete_session_hash(b)
    assert s.user_sessions("sub:alice") == [a]  # an ended session drops out of the index
    s.unindex_session(["sub:alice", "email:alice@example.com"], a)
    assert s.user_sessions("sub:alice") == [] and s.user_sessions("email:alice@example.com") == []


def test_locks(harness: Harness) -> None:
    s = harness.store
    assert s.try_lock("reverify:h", 30) and not s.try_lock("reverify:h", 30)
    s.unlock("reverify:h")
    assert s.try_lock("reverify:h", 30)
    harness.advance(31)
    assert s.try_lock("reverify:h", 30)  # a crashed holder's lock ends with its TTL


# --------------------------------------------------------------------------- CLI tokens


def token(shash: str, **kw: Any) -> CliToken:
    doc = {"client_id": "bridge-cli", "session": shash, "created_at": T0, "expires_at": T0 + 600,
           "client_ip": "192.0.2.1", "user_agent": "bridge/1", "correlation_id": "c0ffee", **kw}
    return CliToken(**doc)


def test_cli_tokens_are_bound_to_their_session(harness: Harness) -> None:
    s = harness.store
    s.add_cli_token("t1", token("h1"), 600)
    s.add_cli_token("t2", token("h1"), 600)
    s.add_cli_token("t3", token("h2"), 600)
    assert s.get_cli_token("t1") == token("h1")
    assert s.session_tokens("h1") == ["t1", "t2"] and s.session_tokens("h2") == ["t3"]
    s.unlink_cli_token("h1", "t2")
    s.delete_cli_token("t2")
    assert s.session_tokens("h1") == ["t1"] and s.get_cli_token("t2") is None
    assert s.pop_session_tokens("h1") == ["t1"]  # what revoking the session revokes
    assert s.session_tokens("h1") == [] and s.pop_session_tokens("h1") == []
    assert s.get_cli_token("t3") is not None  # another session's token is untouched


def test_cli_token_expires_with_its_ttl(harness: Harness) -> None:
    s = harness.store
    s.add_cli_token("t1", token("h1"), 600)
    harness.advance(601)
    assert s.get_cli_token("t1") is None and s.session_tokens("h1") == []


def test_the_session_token_index_is_never_shortened(harness: Harness) -> None:
    """A short token (an Identity Center login without refresh: 1 h) filed after a long one (a refresh token, a
    `bridge login` token: 12 h) must not end the index: sign-out, offboarding, a reused refresh token's sweep
    and the portal's *Your sign-ins* find a session's tokens through it (issue 22 item 10)."""
    s = harness.store
    s.add_cli_token("long", token("h1", expires_at=T0 + 7200), 7200)
    s.add_cli_token("short", token("h1"), 600)
    harness.advance(601)
    assert s.get_cli_token("long") is not None
    assert "long" in s.session_tokens("h1")  # (a member whose token ended may stay: readers drop it)
    assert "long" in s.pop_session_tokens("h1")


# --------------------------------------------------------------------------- device codes


def device(**kw: Any) -> DeviceCode:
    base: dict[str, Any] = {"user_code": "BCDF-GHJK", "client_id": "bridge-cli", "status": "pending",
                            "expires_at": T0 + 600, "interval": 5, "last_poll": 0, "client_ip": "192.0.2.1",
                            "user_agent": "bridge/1", "created_at": T0}
    return DeviceCode(**{**base, **kw})


def test_device_codes(harness: Harness) -> None:
    s = harness.store
    s.put_device("d1", device(), 900)
    s.put_user_code("BCDF-GHJK", "d1", 600)
    assert s.get_user_code("BCDF-GHJK") == "d1" and s.get_device("d1") == device()
    assert s.take_user_code("BCDF-GHJK") == "d1" and s.take_user_code("BCDF-GHJK") is None  # works once
    approved = device(status="approved", grant=DeviceApproval("h1", T0 + 3600, "c0ffee"))
    s.put_device("d1", approved, 900)
    assert s.get_device("d1") == approved
    assert s.take_device("d1") == approved and s.take_device("d1") is None  # single use
    s.put_device("d2", device(), 900)
    s.delete_device("d2")
    assert s.get_device("d2") is None


def test_device_codes_expire(harness: Harness) -> None:
    s = harness.store
    s.put_device("d1", device(), 900)
    s.put_user_code("BCDF-GHJK", "d1", 600)
    harness.advance(601)
    assert s.get_user_code("BCDF-GHJK") is None and s.get_device("d1") is not None
    harness.advance(300)
    assert s.get_device("d1") is None


# --------------------------------------------------------------------------- replay, rate limits


def test_remember_once(harness: Harness) -> None:
    s = harness.store
    assert s.remember_once("assertion-1", 300) is True
    assert s.remember_once("assertion-1", 300) is False  # a replay, on any instance
    assert s.remember_once("assertion-2", 300) is True
    harness.advance(301)
    assert s.remember_once("assertion-1", 300) is True


def test_rate_limit_windows(harness: Harness) -> None:
    s = harness.store
    harness.advance(10)  # 10 s into a window
    assert [s.hit("sign_in:x", 2) for _ in range(2)] == [0, 0]
    assert s.hit("sign_in:x", 2) == 50  # the seconds until the window ends (Retry-After)
    assert s.hit("sign_in:y", 2) == 0  # buckets are apart
    harness.advance(50)  # the next window
    assert s.hit("sign_in:x", 2) == 0


def test_several_buckets_counted_at_once(harness: Harness) -> None:
    s = harness.store  # buckets counted together share a hash tag (one Cluster slot: one EVAL)
    harness.advance(10)
    assert s.hits([("{t}app:a", 2), ("{t}user:a", 1)]) == [0, 0]
    assert s.hits([("{t}app:a", 2), ("{t}user:b", 1)]) == [0, 0]  # each bucket its own count
    assert s.hits([("{t}app:a", 2), ("{t}user:a", 1)]) == [50, 0]  # the first over: the next is not charged
    assert s.hit("{t}user:a", 1) == 50 and s.hits([]) == []  # the same windows as hit's; user:a counted 2
    harness.advance(50)
    assert s.hits([("{t}app:a", 2)]) == [0]


def test_a_bucket_over_its_limit_spends_nothing_of_the_next(harness: Harness) -> None:
    s = harness.store
    harness.advance(10)
    assert s.hits([("{t}user:x", 1), ("{t}app:x", 3)]) == [0, 0]
    for _ in range(5):  # the user over their budget: the app's is not touched
        assert s.hits([("{t}user:x", 1), ("{t}app:x", 3)]) == [50, 0]
    assert s.hits([("{t}user:y", 1), ("{t}app:x", 3)]) == [0, 0]  # app:x at 2 of 3
    assert s.hits([("{t}user:z", 1), ("{t}app:x", 3)]) == [0, 0]  # 3 of 3
    assert s.hits([("{t}user:w", 1), ("{t}app:x", 3)]) == [0, 50]  # the app's own limit still holds
    assert s.hits([("{t}user:x", 0), ("{t}app:x", 9)]) == [50, 0]  # a limit of 0 counted here is over


def test_counts_and_a_credential_entry_read_at_once(harness: Harness) -> None:
    s = harness.store
    harness.advance(10)
    s.creds_put("user-1", "entry-1", b"sealed", 300)
    assert s.hits_reading([("{t}app:b", 1)], ("user-1", "entry-1")) == ([0], b"sealed")
    assert s.hits_reading([("{t}app:b", 1)], ("user-1", "other")) == ([50], None)  # counted; no such entry
    assert s.hits_reading([], ("user-1", "entry-1")) == ([], b"sealed") and s.hits_reading([], None) == ([], None)
    assert s.hit("{t}app:b", 1) == 50  # the same windows as hit's
    two = [("{t}user:u", 1), ("{t}app:c", 5)]  # the user's bucket first: one over it spends nothing of the app's
    assert s.hits_reading(two, ("user-1", "entry-1")) == ([0, 0], b"sealed")
    assert s.hits_reading(two, ("user-1", "entry-1")) == ([50, 0], b"sealed")
    assert s.hits_reading(two, ("user-1", "gone")) == ([50, 0], None)
    assert s.hit("{t}app:c", 2) == 0  # charged once before (and now): 2
    assert s.hit("{t}app:c", 2) == 50


# --------------------------------------------------------------------------- preferences


def test_recent_and_favourites(harness: Harness) -> None:
    s = harness.store
    for item in ("a", "b", "a", "c"):
        s.push_recent("u1", item, keep=2)
    assert s.preferences("u1") == (["c", "a"], set())
    assert s.toggle_favourite("u1", "a") is True and s.toggle_favourite("u1", "b") is True
    assert s.toggle_favourite("u1", "a") is False
    assert s.preferences("u1") == (["c", "a"], {"b"}) and s.preferences("u2") == ([], set())


# --------------------------------------------------------------------------- sign-in notes (check-config --probe)


def test_sign_in_notes_keep_the_last_warnings_and_expire(harness: Harness) -> None:
    s = harness.store
    assert s.sign_in_note("corp") is None
    s.note_sign_in("corp", ["no `email` attribute, but `mail`"], ttl=600)
    harness.advance(10)
    s.note_sign_in("corp", [], ttl=600)  # a later sign-in without warnings keeps what the last one said
    note = s.sign_in_note("corp")
    assert note is not None and (note.last_at, note.warned_at) == (T0 + 10, T0)
    assert note.warnings == ("no `email` attribute, but `mail`",) and s.sign_in_note("other") is None
    s.note_sign_in("corp", ["transient NameID"], ttl=600)
    assert s.sign_in_note("corp").warnings == ("transient NameID",)  # type: ignore[union-attr]
    harness.advance(601)
    assert s.sign_in_note("corp") is None
    harness.raw_put("signin:bad", {"warnings": "not a note"}, 60)
    assert s.sign_in_note("bad") is None  # a document of another shape is no note


# --------------------------------------------------------------------------- credential cache


def test_credential_views(harness: Harness) -> None:
    s = harness.store
    s.put_view("v1", b"sealed", 60)
    assert s.get_view("v1") == b"sealed" and s.get_view("v2") is None
    harness.advance(61)
    assert s.get_view("v1") is None


def test_credential_cache_blobs(harness: Harness) -> None:
    s = harness.store
    s.creds_put("user1", "e1", b"\x01sealed-1", 600)
    s.creds_put("user1", "e2", b"\x01sealed-2", 60)
    s.creds_put("user2", "e3", b"\x01sealed-3", 600)
    assert s.creds_get("user1", "e1") == b"\x01sealed-1" and s.creds_get("user1", "nope") is None
    assert s.creds_get("user2", "e1") is None  # an entry is the user's
    harness.advance(61)
    assert s.creds_get("user1", "e2") is None and s.creds_get("user1", "e1") is not None
    assert s.creds_forget("user1") == 2  # every entry indexed for the user (sign-out)
    assert s.creds_get("user1", "e1") is None and s.creds_get("user2", "e3") == b"\x01sealed-3"
    assert s.creds_forget("user1") == 0


# --------------------------------------------------------------------------- audit stream


def test_audit_stream_append_and_read(harness: Harness) -> None:
    s = harness.store
    assert s.audit_read("audit", count=10) == []
    for i in range(5):
        s.audit_append("audit", f'{{"n": {i}}}', 1000)
    last = s.audit_read("audit", count=3)
    assert [line for _, line in last] == ['{"n": 2}', '{"n": 3}', '{"n": 4}']  # the last ones, oldest first
    first_id = s.audit_read("audit", count=5)[0][0]
    after = s.audit_read("audit", count=10, after=first_id)
    assert [line for _, line in after] == [f'{{"n": {i}}}' for i in range(1, 5)]
    assert s.audit_read("audit", count=10, after=last[-1][0]) == []
    assert s.audit_read("other", count=10) == []


# --------------------------------------------------------------------------- rolling upgrade


def test_a_session_written_in_todays_shape_loads(harness: Harness) -> None:
    """What main writes today (sessions.py before typed records), byte for byte in shape."""
    doc = {"identity": ALICE.to_json(), "csrf": "csrf-1", "correlation_id": "c0ffee", "verified_at": T0,
           "passthrough_grants": [GRANT.to_json()], "created_at": T0, "expires_at": T0 + 3600}
    shash = hash_id("cookie-value")
    harness.raw_put(f"session:{shash}", doc, 300)
    got = harness.store.load_session("cookie-value", idle=300)
    assert got is not None
    assert got.identity == ALICE and got.csrf == "csrf-1" and got.passthrough_grants == (GRANT,)
    assert (got.created_at, got.expires_at, got.verified_at, got.correlation_id) == (T0, T0 + 3600, T0, "c0ffee")
    assert got.to_json() == doc  # and written back unchanged, so an older worker reads it too
    # Older still: no verified_at, no correlation id, and a field this version does not know.
    old = {"identity": ALICE.to_json(), "csrf": "x", "created_at": T0, "expires_at": T0 + 60, "future": [1]}
    harness.raw_put(f"session:{hash_id('old')}", old, 60)
    rec = harness.store.load_session("old", idle=60)
    assert rec is not None and rec.verified_at is None and rec.last_verified == T0 and rec.passthrough_grants is None
    harness.store.save_session_hash(hash_id("old"), rec, idle=60)
    again = harness.store.get_session(hash_id("old"))
    assert again is not None and again.extra == {"future": [1]}  # kept for the newer worker


def test_cli_tokens_and_device_codes_written_in_todays_shape_load(harness: Harness) -> None:
    tok = {"client_id": "bridge-cli", "session": "h1", "created_at": T0, "expires_at": T0 + 600,
           "client_ip": "192.0.2.1", "user_agent": "bridge/1", "correlation_id": None}
    harness.raw_put("clitoken:t1", tok, 600)
    got = harness.store.get_cli_token("t1")
    assert got is not None and got.session == "h1" and got.to_json() == tok
    # A token from before tokens followed their session (it carried the identity): never trusted.
    harness.raw_put("clitoken:t0", {"client_id": "bridge-cli", "identity": ALICE.to_json(), "created_at": T0,
                                    "expires_at": T0 + 600}, 600)
    assert harness.store.get_cli_token("t0") is None
    dev = {"user_code": "BCDF-GHJK", "client_id": "bridge-cli", "status": "approved", "expires_at": T0 + 600,
           "interval": 10, "last_poll": T0 + 1.5, "client_ip": "", "user_agent": "", "created_at": T0,
           "grant": {"session": "h1", "session_expires_at": T0 + 3600, "correlation_id": "c0ffee"}}
    harness.raw_put("device:d1", dev, 900)
    code = harness.store.get_device("d1")
    assert code is not None and code.grant == DeviceApproval("h1", T0 + 3600, "c0ffee") and code.to_json() == dev
    harness.raw_put("usercode:BCDF-GHJK", {"device": "d1"}, 600)
    assert harness.store.get_user_code("BCDF-GHJK") == "d1"


def test_pending_login_written_in_todays_shape_loads(harness: Harness) -> None:
    doc = pending().to_json()
    assert set(doc) == {"state", "connector_id", "nonce", "code_verifier", "return_to", "created_at", "request_id",
                        "correlation_id", "browser_hash"}
    harness.raw_put("pending:s1", {k: v for k, v in doc.items() if k != "browser_hash"}, 60)  # before login CSRF
    got = harness.store.take_pending("s1")
    assert got is not None and got.browser_hash is None


def test_a_session_without_an_identity_is_not_a_session(harness: Harness) -> None:
    doc = {"csrf": "x", "created_at": T0, "expires_at": T0 + 60}
    harness.raw_put(f"session:{hash_id('broken')}", doc, 60)
    assert harness.store.get_session(hash_id("broken")) is None


# --------------------------------------------------------------------------- IAM Identity Center protocol


def test_sso_clients_and_auth_codes(harness: Harness) -> None:
    from bridge.storage import AuthCode, SsoClient

    s = harness.store
    client = SsoClient(client_id="c1", secret_hash="h" * 64, name="botocore-client-x", issued_at=T0,
                       expires_at=T0 + 900, grant_types=("authorization_code", "refresh_token"),
                       redirect_uris=("http://127.0.0.1/oauth/callback",), scopes=("sso:account:access",))
    s.put_sso_client(client, 900)
    assert s.get_sso_client("c1") == client and s.get_sso_client("c2") is None
    code = AuthCode(client_id="c1", redirect_uri="http://127.0.0.1:5000/oauth/callback", code_challenge="x" * 43,
                    approval=DeviceApproval("h1", T0 + 3600, "c0ffee"), expires_at=T0 + 300, client_ip="192.0.2.1")
    s.put_auth_code("a1", code, 300)
    assert s.take_auth_code("a1") == code and s.take_auth_code("a1") is None  # single use
    s.put_auth_code("a2", code, 300)
    harness.advance(901)
    assert s.take_auth_code("a2") is None and s.get_sso_client("c1") is None


def test_refresh_tokens_keep_their_kind_and_pair(harness: Harness) -> None:
    s = harness.store
    s.add_cli_token("r1", token("h1", kind="refresh", pair="t1"), 600)
    s.add_cli_token("t1", token("h1", pair="r1"), 600)
    assert s.get_cli_token("r1") == token("h1", kind="refresh", pair="t1")
    assert s.get_cli_token("t1") == token("h1", pair="r1")
    assert sorted(s.pop_session_tokens("h1")) == ["r1", "t1"]
    harness.raw_put("clitoken:t2", {"client_id": "bridge-cli", "session": "h1", "created_at": T0,
                                    "expires_at": T0 + 600}, 600)
    assert s.get_cli_token("t2") == CliToken(client_id="bridge-cli", session="h1", created_at=T0,
                                             expires_at=T0 + 600)  # today's shape: an access token


def sso_client(cid: str, address: str, **kw: Any) -> Any:
    from bridge.storage import SsoClient

    return SsoClient(client_id=cid, secret_hash="h" * 64, name="botocore-client-x", issued_at=T0,
                     expires_at=T0 + 86400, grant_types=("refresh_token",), address=address, use_by=T0 + 100, **kw)


def test_sso_clients_are_counted_per_address_and_in_all(harness: Harness) -> None:
    s = harness.store
    caps = {"per_address": 2, "total": 3}
    assert s.add_sso_client(sso_client("a1", "A"), 100, **caps) is None
    assert s.add_sso_client(sso_client("a2", "A"), 100, **caps) is None
    assert s.add_sso_client(sso_client("a3", "A"), 100, **caps) == "address"
    assert s.get_sso_client("a3") is None  # refused: nothing stored
    assert s.add_sso_client(sso_client("b1", "B"), 100, **caps) is None
    assert s.add_sso_client(sso_client("b2", "B"), 100, **caps) == "total"
    assert s.get_sso_client("b2") is None and s.sso_client_count() == 3
    assert s.get_sso_client("a1") == sso_client("a1", "A")
    # a1 is used: rewritten with its whole lifetime, it stays counted; the others end with their TTL
    s.put_sso_client(replace(sso_client("a1", "A"), use_by=None), 86400)
    harness.advance(101)
    assert s.sso_client_count() == 1 and s.get_sso_client("a2") is None
    assert s.get_sso_client("a1") == replace(sso_client("a1", "A"), use_by=None)
    assert s.add_sso_client(sso_client("a4", "A"), 100, **caps) is None
    assert s.add_sso_client(sso_client("a5", "A"), 100, **caps) == "address"  # a1 and a4


def test_sso_clients_written_in_todays_shape_load(harness: Harness) -> None:
    from bridge.storage import SsoClient

    harness.raw_put("ssoclient:old", {"client_id": "old", "secret_hash": "h" * 64, "name": "n", "issued_at": T0,
                                      "expires_at": T0 + 900, "grant_types": [], "redirect_uris": [], "scopes": []},
                    900)
    assert harness.store.get_sso_client("old") == SsoClient(client_id="old", secret_hash="h" * 64, name="n",
                                                            issued_at=T0, expires_at=T0 + 900)


def test_refresh_token_families_and_spent_tokens_keep_their_fields(harness: Harness) -> None:
    s = harness.store
    s.add_cli_token("r1", token("h1", kind="spent", family="f1"), 600)
    s.add_cli_token("t1", token("h1", pair="r2", family="f1"), 600)
    assert s.get_cli_token("r1") == token("h1", kind="spent", family="f1")
    assert s.get_cli_token("t1") == token("h1", pair="r2", family="f1")


def test_seen_looks_at_remember_once_without_remembering(harness: Harness) -> None:
    s = harness.store
    assert s.seen("k") is False and s.seen("k") is False
    assert s.remember_once("k", 300) is True and s.seen("k") is True
    harness.advance(301)
    assert s.seen("k") is False


# --------------------------------------------------------------------------- access requests


def access_request(rid: str = "req-1", account: str = "user:corp\0https://idp.test\0alice", **kw: Any) -> AccessRequest:
    base: dict[str, Any] = {"id": rid, "account": account, "requester": ALICE, "role_arn": GRANT.role_arn,
                            "account_id": GRANT.account_id, "label": "Admin", "rule": "prod-admin",
                            "reason": "INC-1: fix prod", "duration": 3600, "status": "pending", "created_at": T0}
    return AccessRequest(**{**base, **kw})


def test_access_requests_are_created_once_and_listed_per_account(harness: Harness) -> None:
    s = harness.store
    first = access_request()
    assert s.put_access_request(first, 600)
    assert not s.put_access_request(access_request(reason="overwrite?"), 600)  # never overwritten
    assert s.get_access_request("req-1") == first
    s.put_access_request(access_request("req-2", account="user:corp\0https://idp.test\0bob", created_at=T0 + 1), 600)
    assert [r.id for r in s.access_requests("user:corp\0https://idp.test\0alice")] == ["req-1"]
    assert [r.id for r in s.access_requests()] == ["req-1", "req-2"]
    assert s.get_access_request("nope") is None


def test_access_request_changes_only_from_the_expected_status(harness: Harness) -> None:
    s = harness.store
    s.put_access_request(access_request(), 600)
    approved = access_request(status="approved", decided_at=T0 + 5, decided_by={"subject": "carol"},
                              activated_at=T0 + 5, expires_at=T0 + 3605, comment="ok")
    assert s.replace_access_request(approved, expect="pending", ttl=7200)
    denied = access_request(status="denied", decided_by={"subject": "mallory"})
    assert not s.replace_access_request(denied, expect="pending", ttl=7200)  # the first decision won
    got = s.get_access_request("req-1")
    assert got == approved and got is not None and got.active(T0 + 10) and not got.active(T0 + 3605)
    assert got.decided_by == {"subject": "carol"}


def test_access_requests_expire_with_their_ttl(harness: Harness) -> None:
    s = harness.store
    s.put_access_request(access_request(), 60)
    s.put_access_request(access_request("req-2", created_at=T0 + 1), 600)
    harness.advance(61)
    assert s.get_access_request("req-1") is None
    assert [r.id for r in s.access_requests()] == ["req-2"]
    assert [r.id for r in s.access_requests("user:corp\0https://idp.test\0alice")] == ["req-2"]
    assert not s.replace_access_request(access_request(status="approved"), expect="pending", ttl=60)


def test_access_request_keeps_fields_it_does_not_know(harness: Harness) -> None:
    s = harness.store
    doc = {**access_request().to_json(), "future_field": {"x": 1}}
    harness.raw_put("accessrequest:req-1", doc, 600)
    got = s.get_access_request("req-1")
    assert got is not None and got.to_json()["future_field"] == {"x": 1}


# --------------------------------------------------------------------------- a request's reads in one step


def ahead_of(s: Store, sid: str, **kw: Any) -> Ahead:
    """What a cached credential request reads with its session (as the web layer asks for it)."""
    seen = s.get_session(hash_id(sid))
    assert seen is not None
    return Ahead(hash_id(sid), idle=300, expires_at=seen.expires_at, **kw)


def test_read_ahead_reads_the_session_its_count_its_cached_entry_and_preferences(harness: Harness) -> None:
    s = harness.store
    sid = s.create_session(session(), idle=300, absolute=3600)
    s.creds_put("u1", "e1", b"sealed", 600)
    s.push_recent("p1", "g1")
    s.toggle_favourite("p1", "g2")
    ahead = ahead_of(s, sid, bucket="credentials:a", limit=2, creds=("u1", "e1"), prefs="p1")
    harness.advance(290)
    for _ in range(2):
        harness.advance(2)
        got = s.read_ahead(ahead)
        assert got.complete and got.session == s.get_session(hash_id(sid)) and got.session.identity == ALICE
        assert (got.wait, got.blob, got.prefs) == (0, b"sealed", (["g1"], {"g2"}))
    assert s.read_ahead(ahead).wait == 300 - 294  # the third in the window: over the limit (counted, as hit)
    recent = s.read_ahead(Ahead(hash_id(sid), idle=300, expires_at=ahead.expires_at, recent="p1")).recent
    assert recent is not None and recent[0] == "g1" and 0 <= recent[1] <= 90 * 86400  # 0: the store cannot say
    harness.advance(290)  # each read reset the idle timer, as load_session does
    assert s.read_ahead(ahead).session is not None
    assert s.read_ahead(Ahead(hash_id(sid), idle=300, expires_at=ahead.expires_at, creds=("u1", "nope"))).blob is None
    harness.advance(301)
    assert not s.read_ahead(ahead).complete and s.get_session(hash_id(sid)) is None  # idle: ended


def test_read_ahead_of_an_ended_session_reads_and_counts_nothing(harness: Harness) -> None:
    s = harness.store
    sid = s.create_session(session(), idle=300, absolute=3600)
    s.creds_put("u1", "e1", b"sealed", 600)
    ahead = ahead_of(s, sid, bucket="credentials:a", limit=1, creds=("u1", "e1"), prefs="p1")
    s.delete_session(sid)  # revoked (sign-out, `bridge sessions revoke`, the IdP)
    got = s.read_ahead(ahead)
    assert got == AheadRead(None)  # not even the cached entry
    assert s.hit("credentials:a", 1) == 0  # and the refused request did not use the budget


def test_read_ahead_ends_a_session_at_its_absolute_timeout(harness: Harness) -> None:
    s = harness.store
    sid = s.create_session(session(), idle=3600, absolute=600)
    ahead = ahead_of(s, sid, bucket="credentials:a", limit=5, creds=("u1", "e1"))
    harness.advance(601)
    assert s.read_ahead(ahead) == AheadRead(None)
    assert s.get_session(hash_id(sid)) is None  # deleted, not just ignored
    assert s.hit("credentials:a", 1) == 0


def test_read_ahead_with_a_revoked_token_keeps_no_session_alive(harness: Harness) -> None:
    s = harness.store
    sid = s.create_session(session(), idle=300, absolute=3600)
    shash = hash_id(sid)
    s.add_cli_token("t1", token(shash), 600)
    ahead = ahead_of(s, sid, token="t1", bucket="credentials:a", limit=1, creds=("u1", "e1"))
    got = s.read_ahead(ahead)
    assert got.complete and got.token == token(shash) and got.wait == 0
    harness.advance(5)
    s.delete_cli_token("t1")  # `bridge logout`
    got = s.read_ahead(ahead)
    assert not got.complete and got.token is None and got.blob is None
    assert s.hit("credentials:a", 1) != 0  # the refused one was given back: this is the second in the window
    harness.advance(296)  # 301 s after the last use with a live token: the session idled out
    assert s.get_session(shash) is None


def test_read_ahead_finds_a_session_written_before_the_hash_tags(harness: Harness) -> None:
    doc = {"identity": ALICE.to_json(), "csrf": "csrf-1", "created_at": T0, "expires_at": T0 + 3600}
    harness.raw_put(f"session:{hash_id('cookie-value')}", doc, 300)
    got = harness.store.read_ahead(Ahead(hash_id("cookie-value"), idle=300, expires_at=T0 + 3600,
                                         bucket="credentials:a", limit=1))
    assert got.session is not None and got.session.csrf == "csrf-1"
    assert harness.store.load_session("cookie-value", idle=300) is not None  # still there (moved, on Redis)
