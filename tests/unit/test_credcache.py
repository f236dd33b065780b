"""CredentialCache against the in-memory store: encryption, AAD binding, rotation, refresh window."""

from __future__ import annotations

import os
from datetime import UTC, datetime

import pytest

from bridge.core.credcache import CredentialCache
from bridge.domain.identity import Credentials, Grant, Identity
from bridge.storage.memory import MemoryStore

NOW = 1_800_000_000.0


def creds(expires_in: int = 3600) -> Credentials:
    return Credentials("ASIAEXAMPLE", "sekret/+=", "token/+=", datetime.fromtimestamp(NOW + expires_in, UTC),
                       "arn:aws:sts::123456789012:assumed-role/Admin/a", "arn:aws:iam::123456789012:role/Admin",
                       "a", "us-east-1")


IDENT = Identity(connector_id="c", subject="alice", issuer="https://idp")
GRANT = Grant(role_arn="arn:aws:iam::123456789012:role/Admin", account_id="123456789012", label="A",
              session_name="a", via="r", tags={"T": "v"})


@pytest.fixture
def cache() -> CredentialCache:
    return CredentialCache(MemoryStore("t:", clock=lambda: NOW), [os.urandom(32)], clock=lambda: NOW)


def blobs(cache: CredentialCache) -> dict[str, bytes]:
    """Every sealed entry the store holds (entry → blob), read through the store's interface."""
    store = cache.store
    assert isinstance(store, MemoryStore)
    return {k.removeprefix("t:creds:"): v for k, (v, _) in store._data.items() if k.startswith("t:creds:")}


def test_round_trip_and_ciphertext(cache: CredentialCache) -> None:
    cache.put(IDENT, GRANT, 3600, creds())
    assert cache.get(IDENT, GRANT, 3600) == creds()
    sealed = list(blobs(cache).values())
    assert len(sealed) == 1 and b"sekret" not in sealed[0] and b"ASIA" not in sealed[0]


def test_keyed_by_user_grant_tags_and_duration(cache: CredentialCache) -> None:
    cache.put(IDENT, GRANT, 3600, creds())
    assert cache.get(Identity(connector_id="c", subject="bob", issuer="https://idp"), GRANT, 3600) is None
    assert cache.get(IDENT, Grant(**{**GRANT.to_json(), "tags": {"T": "other"}}), 3600) is None
    assert cache.get(IDENT, GRANT, 7200) is None


def test_refresh_window(cache: CredentialCache) -> None:
    cache.put(IDENT, GRANT, 3600, creds(expires_in=899))
    assert cache.get(IDENT, GRANT, 3600) is None  # inside botocore's 15 minutes: not even stored
    cache.put(IDENT, GRANT, 3600, creds(expires_in=1000))
    assert cache.get(IDENT, GRANT, 3600) is not None
    cache.clock = lambda: NOW + 101
    assert cache.get(IDENT, GRANT, 3600) is None


def test_key_rotation_and_moved_ciphertext(cache: CredentialCache) -> None:
    old = list(cache.sealer.keys.values())
    cache.put(IDENT, GRANT, 3600, creds())
    raw_old_key = next(iter(cache.sealer.keys))
    new = CredentialCache(cache.store, [os.urandom(32)], clock=lambda: NOW)
    assert new.get(IDENT, GRANT, 3600) is None  # old key retired: a miss, not an error
    both = CredentialCache(cache.store, [os.urandom(32)], clock=lambda: NOW)
    both.sealer.keys[raw_old_key] = old[0]
    assert both.get(IDENT, GRANT, 3600) == creds()  # old key still configured: decrypts
    # A ciphertext copied under another cache key does not decrypt (the key is the AAD).
    blob = next(iter(blobs(cache).values()))
    other = cache._entry(IDENT, GRANT, 7200)
    cache.store.creds_put(cache.user_key(IDENT), other, blob, 3600)
    assert cache.store.creds_get(cache.user_key(IDENT), other) == blob
    assert cache.get(IDENT, GRANT, 7200) is None


def test_forget_user(cache: CredentialCache) -> None:
    cache.put(IDENT, GRANT, 3600, creds())
    cache.put(IDENT, GRANT, 7200, creds())
    assert cache.forget_user(IDENT) == 2
    assert cache.get(IDENT, GRANT, 3600) is None


def test_sign_out_drops_the_users_opened_credentials_from_memory(cache: CredentialCache) -> None:
    """What this worker keeps opened (plaintext secret keys) goes with the user's sign-out; another user's stays."""
    bob = Identity(connector_id="c", subject="bob", issuer="https://idp")
    for who in (IDENT, bob):
        cache.put(who, GRANT, 3600, creds())
        assert cache.get(who, GRANT, 3600) is not None
    assert cache.forget_user(IDENT) == 1
    kept = [c for _, c in cache._opened.values()]
    assert len(kept) == 1 and [u for u, _ in cache._opened.values()] == [cache.user_key(bob)]


def test_the_entry_memo_holds_no_upstream_artifact(cache: CredentialCache) -> None:
    """A pass-through grant's artifact (an upstream token) is named by its digest in the memo, never kept."""
    artifact = "eyJ-an-upstream-id-token-" + "x" * 40
    first = cache.key(IDENT, GRANT, 3600, artifact)
    assert cache.key(IDENT, GRANT, 3600, artifact) == first != cache.key(IDENT, GRANT, 3600, artifact + "y")
    assert artifact not in repr(cache._keys._kept)


def test_opened_entries_are_kept_only_while_their_key_is_held(cache: CredentialCache) -> None:
    """The same blob for the same entry opens once; a key removed since, a tampered blob or the blob under
    another entry is still a miss (what was opened before does not answer for them)."""
    cache.put(IDENT, GRANT, 3600, creds())
    first = cache.get(IDENT, GRANT, 3600)
    assert first is not None and cache.get(IDENT, GRANT, 3600) is first  # opened once
    user, entry = cache.key(IDENT, GRANT, 3600)
    blob = cache.store.creds_get(user, entry)
    assert blob is not None
    tampered = blob[:-1] + bytes([blob[-1] ^ 1])
    cache.store.creds_put(user, entry, tampered, 3600)
    assert cache.get(IDENT, GRANT, 3600) is None
    other = cache._entry(IDENT, GRANT, 7200)
    cache.store.creds_put(user, other, blob, 3600)  # moved under another entry: its AAD differs
    assert cache.get(IDENT, GRANT, 7200) is None
    cache.store.creds_put(user, entry, blob, 3600)
    assert cache.get(IDENT, GRANT, 3600) is first
    cache.use_keys([os.urandom(32)])  # the sealing key removed: its blobs open no more, kept or not
    assert cache.get(IDENT, GRANT, 3600) is None


def test_entry_names_follow_the_objects_asked_for(cache: CredentialCache) -> None:
    """The entry of an (identity, grant, duration) is named once per those objects: an equal grant with other
    tags, another duration or another identity gets its own name, never a kept one."""
    key = cache.key(IDENT, GRANT, 3600)
    assert cache.key(IDENT, GRANT, 3600) == key
    assert cache.key(IDENT, GRANT, 7200) != key
    assert cache.key(IDENT, Grant(**{**GRANT.to_json(), "tags": {"T": "other"}}), 3600) != key
    assert cache.key(Identity(connector_id="c", subject="bob", issuer="https://idp"), GRANT, 3600)[0] != key[0]
    copy = Grant(**GRANT.to_json())
    assert cache.key(IDENT, copy, 3600) == key  # an equal copy: computed again, the same name
