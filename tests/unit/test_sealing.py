"""bridge/keys/sealing.py: what the bridge keeps in Redis that would let a reader act as a user is sealed."""

from __future__ import annotations

import base64
import json
import os
from datetime import UTC, datetime
from pathlib import Path

import pytest

from bridge.core.keysource import KeySource
from bridge.keys.sealing import SEALED, Sealer
from bridge.keys.signing import generate_cache_key, generate_key, load_keyring

AAD = b"upstream:abc"


def test_a_sealed_value_opens_only_in_its_place_and_never_shows_in_clear() -> None:
    sealer = Sealer([os.urandom(32)])
    blob = sealer.seal(b"refresh-token-value", AAD)
    assert b"refresh-token-value" not in blob
    assert sealer.open(blob, AAD) == b"refresh-token-value"
    assert sealer.open(blob, b"upstream:other") is None  # copied beside another session
    assert sealer.seal(b"x", AAD) != sealer.seal(b"x", AAD)  # a fresh nonce each time


def test_keys_rotate_by_adding_and_a_removed_key_opens_nothing() -> None:
    old, new = os.urandom(32), os.urandom(32)
    sealer = Sealer([old])
    blob = sealer.seal(b"v", AAD)
    sealer.use_keys([old, new])
    assert sealer.open(blob, AAD) == b"v"  # the older key still opens
    assert Sealer([new]).open(sealer.seal(b"w", AAD), AAD) == b"w"  # the newest seals
    sealer.use_keys([new])
    assert sealer.open(blob, AAD) is None
    sealer.use_keys([])  # an empty list (a folder read mid-write) keeps the keys in use
    assert sealer.open(sealer.seal(b"z", AAD), AAD) == b"z"
    with pytest.raises(ValueError, match="at least one key"):
        Sealer([])


@pytest.mark.parametrize("blob", [b"", b"\x01short", b"\x02" + os.urandom(60), os.urandom(60)])
def test_anything_else_is_not_opened(blob: bytes) -> None:
    assert Sealer([os.urandom(32)]).open(blob, AAD) is None


def test_documents_seal_to_one_field_and_a_document_from_before_sealing_is_read_as_it_is() -> None:
    sealer = Sealer([os.urandom(32)])
    stored = sealer.seal_doc({"refresh_token": "rt-1"}, AAD)
    assert set(stored) == {SEALED} and "rt-1" not in json.dumps(stored)
    assert sealer.open_doc(stored, AAD) == {"refresh_token": "rt-1"}
    assert sealer.open_doc(stored, b"passthrough:abc") is None
    assert sealer.open_doc({"refresh_token": "old"}, AAD) == {"refresh_token": "old"}  # written by a version before
    for bad in ("not base64!", base64.b64encode(b"\x01" + os.urandom(40)).decode(), 7):
        assert sealer.open_doc({SEALED: bad}, AAD) is None
    not_a_dict = base64.b64encode(sealer.seal(b"[1, 2]", AAD)).decode()
    assert sealer.open_doc({SEALED: not_a_dict}, AAD) is None


def test_a_value_sealed_by_a_worker_with_a_newer_key_opens_after_a_forced_reread(tmp_path: Path) -> None:
    """Another worker may seal with a cache key just added to the folder before this one re-reads it
    (re-reads are lazy, every ``keys_reload_interval``): not knowing the key makes this one look now."""
    generate_key(tmp_path)
    generate_cache_key(tmp_path, now=datetime(2026, 1, 1, tzinfo=UTC))
    ring, problems = load_keyring(tmp_path)
    assert ring is not None and problems == []
    source = KeySource(tmp_path, ring, interval=3600, clock=lambda: 1000.0)  # no lazy re-read in this test
    sealer = Sealer(ring.cache, on_unknown_key=lambda: source.ring(force=True))
    source.on_reload = lambda r: sealer.use_keys(r.cache)
    generate_cache_key(tmp_path, now=datetime(2026, 2, 1, tzinfo=UTC))  # added while running
    newer, _ = load_keyring(tmp_path)
    assert newer is not None and len(newer.cache) == 2
    blob = Sealer(newer.cache).seal(b"refresh", AAD)  # the sibling worker, already on the new key
    assert Sealer(ring.cache).open(blob, AAD) is None  # without the re-read: nothing
    assert sealer.open(blob, AAD) == b"refresh"
    assert len(sealer.keys) == 2
