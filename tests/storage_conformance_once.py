"""The conformance suite's part for single-use token ids (``OnceStore.first_use``, bridge/storage/once.py):
star-imported by both backends' conformance modules (MemoryStore on its injected clock, RedisStore on a real
redis-server)."""

from __future__ import annotations

import pytest

from tests.storage_conformance import T0, Harness


def test_first_use_is_true_once_until_the_token_ends(harness: Harness) -> None:
    s = harness.store
    assert s.first_use("jti:gha", "id-1", T0 + 300) is True
    assert s.first_use("jti:gha", "id-1", T0 + 300) is False  # a replay, on any instance
    assert s.first_use("jti:gha", "id-1", T0 + 900) is False  # a later `until` does not reopen it
    assert s.first_use("jti:gha", "id-2", T0 + 300) is True  # another id
    assert s.first_use("jti:gitlab", "id-1", T0 + 300) is True  # the same id from another issuer
    harness.advance(299)
    assert s.first_use("jti:gha", "id-1", T0 + 300) is False  # still kept up to its end
    harness.advance(2)
    assert s.first_use("jti:gha", "id-1", T0 + 900) is True  # past its end: forgotten (the token is refused anyway)


def test_first_use_keeps_an_id_at_least_a_second(harness: Harness) -> None:
    s = harness.store
    assert s.first_use("jti:gha", "late", T0 - 5) is True  # until already past (clock skew): still remembered
    assert s.first_use("jti:gha", "late", T0 - 5) is False


def test_first_use_is_apart_from_remember_once(harness: Harness) -> None:
    s = harness.store
    assert s.remember_once("jti:gha:id-3", 300) is True
    assert s.first_use("jti:gha", "id-3", T0 + 300) is True  # its own keys: no collision with other replay keys


@pytest.mark.parametrize(("kind", "token_id", "until"), [
    ("", "id", T0 + 60), ("jti gha", "id", T0 + 60), ("a" * 101, "id", T0 + 60), ("jti:gha", "", T0 + 60),
    ("jti:gha", "id", "soon"), ("jti:gha", "id", True)])
def test_first_use_refuses_bad_arguments_and_remembers_nothing(harness: Harness, kind: str, token_id: str,
                                                               until: object) -> None:
    s = harness.store
    with pytest.raises(ValueError, match="first_use"):
        s.first_use(kind, token_id, until)  # type: ignore[arg-type]
    assert s.first_use("jti:gha", "id", T0 + 60) is True  # nothing was written by the refused call
