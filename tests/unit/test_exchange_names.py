"""The session name of an app's credentials (bridge/aws/limits.py ``prefixed_session_name``): ``<client id>.<the
rule's session name>`` within AWS's 64 characters, the user's part kept — a long client id (up to 64) is what is
shortened, to its start and a hash of it. Unit, and through the app's test client (tests/unit/test_exchange.py)."""

from __future__ import annotations

import re
from pathlib import Path

from hypothesis import given
from hypothesis import strategies as st

from bridge.aws.limits import prefixed_session_name
from tests.unit.test_exchange import _build, config, form, id_token, post

NAME = re.compile(r"[\w+=,.@-]{2,64}", re.ASCII)


def test_a_short_client_id_is_kept_whole() -> None:
    assert prefixed_session_name("photos", "alice@example.com") == "photos.alice@example.com"


def test_a_long_client_id_is_shortened_and_the_user_kept() -> None:
    long_id, email = "a" * 64, "alice.longname@subsidiary.example.com"  # 37 characters
    name = prefixed_session_name(long_id, email)
    assert name.endswith("." + email) and len(name) == 64 and name.startswith("a" * 19 + "-")
    other = prefixed_session_name("a" * 63 + "b", email)  # the same first characters: still apart
    assert other != name and other.endswith("." + email)


def test_a_short_client_id_is_never_rewritten_even_beside_a_long_user() -> None:
    name = prefixed_session_name("photos", "u" * 60)  # rewriting "photos" to 16 characters would cut the user more
    assert name == "photos." + "u" * 57


def test_only_a_user_part_over_47_characters_is_cut() -> None:
    name = prefixed_session_name("c" * 64, "u" * 60)
    assert len(name) == 64 and name.startswith("c" * 9 + "-") and name.endswith("." + "u" * 47)


@given(st.text(alphabet="abcXYZ019._-", min_size=1, max_size=64), st.text(min_size=0, max_size=80))
def test_every_name_is_one_aws_takes(client_id: str, user: str) -> None:
    assert NAME.fullmatch(prefixed_session_name(client_id, user))


def test_an_app_with_a_64_character_client_id_still_names_the_user(tmp_path: Path) -> None:
    client_id = "com.example.photos." + "x" * 45
    env = _build(config(tmp_path, client_id=client_id), tmp_path)
    email = "alice.wonderland@example.com"
    r = post(env, form(client_id=client_id, subject_token=id_token(email=email)))
    assert r.status_code == 200, r.get_json()
    (call,) = env.sts.calls
    assert call["session_name"].endswith("." + email) and len(call["session_name"]) <= 64
    assert call["session_name"].startswith("com.example.photos")
