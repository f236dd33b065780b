"""AWS limits on names, tags and durations (bridge/aws/limits.py; docs/aws-rules.md §1.7, §2.7/9)."""

from __future__ import annotations

import re
import unicodedata

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from bridge.aws.limits import (
    MAX_TAG_VALUE,
    duration_problem,
    sanitize_session_name,
    sanitize_tag_value,
    tag_key_problem,
    tag_value_problem,
    tags_problems,
)

# What AWS documents for RoleSessionName, with Python's \w restricted to ASCII like AWS's.
AWS_SESSION_NAME = re.compile(r"[\w+=,.@-]{2,64}", re.ASCII)
# AWS's tag value pattern [\p{L}\p{Z}\p{N}_.:/=+\-@]*, spelled out independently of the module.
TAG_VALUE_CHARS = st.characters(
    categories=("Lu", "Ll", "Lt", "Lm", "Lo", "Zs", "Zl", "Zp", "Nd", "Nl", "No"),
    include_characters="_.:/=+-@",
)

PROPERTY = settings(derandomize=True, database=None)  # examples: the profile (tests/conftest.py)


# --------------------------------------------------------------------------- sanitize_session_name


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("José Müller", "Jose-Muller"),
        ("alice@example.com", "alice@example.com"),
        ("a_b+c=d,e.f@g-h", "a_b+c=d,e.f@g-h"),
        ("first last", "first-last"),
        ("Zoë/Ünal", "Zoe-Unal"),
        ("ﬁle", "file"),  # compatibility ligature folds to ASCII
        ("ab", "ab"),
    ],
)
def test_sanitize_session_name_examples(raw: str, expected: str) -> None:
    assert sanitize_session_name(raw) == expected


def test_sanitize_session_name_cuts_to_64() -> None:
    out = sanitize_session_name("x" * 100)
    assert out == "x" * 64


@pytest.mark.parametrize("raw", ["", "a", "---", "日本語", "!", " a ", "é"])
def test_sanitize_session_name_falls_back_when_too_little_remains(raw: str) -> None:
    assert sanitize_session_name(raw) == "bridge-user"


def test_sanitize_session_name_custom_fallback_is_itself_sanitized() -> None:
    assert sanitize_session_name("", fallback="svc-runner") == "svc-runner"
    assert sanitize_session_name("?", fallback="Zoë X") == "Zoe-X"
    # A fallback that cannot be used either ends in the built-in default, not a loop.
    assert sanitize_session_name("", fallback="") == "bridge-user"
    assert sanitize_session_name("!", fallback="?") == "bridge-user"


@PROPERTY
@given(st.text(), st.text(max_size=80))
@example("José Müller", "bridge-user")
@example("\n", "\n")
@example("a" * 65 + "\n", "")
def test_sanitize_session_name_always_valid_for_aws(raw: str, fallback: str) -> None:
    out = sanitize_session_name(raw, fallback=fallback)
    assert AWS_SESSION_NAME.fullmatch(out), out
    assert sanitize_session_name(out) == out  # idempotent: a valid name is left alone


@PROPERTY
@given(st.from_regex(AWS_SESSION_NAME, fullmatch=True))
def test_sanitize_session_name_keeps_valid_names(name: str) -> None:
    if len(name.strip("-")) >= 2:
        assert sanitize_session_name(name) == name


# ------------------------------------------------------------ sanitize_tag_value / tag_value_problem


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("Finance & Ops", "Finance - Ops"),
        ("a,b;c", "a-b-c"),
        ("aws:prod", "aws-prod"),
        ("AWS:prod", "AWS-prod"),
        ("Entwicklung München", "Entwicklung München"),
        ("研发 1/2 x=y+z@w_v.u:t", "研发 1/2 x=y+z@w_v.u:t"),
        ("e\u0301", "\u00e9"),  # NFC: e + combining acute becomes é (a letter, allowed)
        ("", ""),
    ],
)
def test_sanitize_tag_value_examples(raw: str, expected: str) -> None:
    assert sanitize_tag_value(raw) == expected
    assert tag_value_problem(sanitize_tag_value(raw)) is None


def test_sanitize_tag_value_cuts_to_256() -> None:
    out = sanitize_tag_value("v" * 300)
    assert out == "v" * MAX_TAG_VALUE


@PROPERTY
@given(st.text())
@example("aws:" + "x" * 300)
@example("Aws:\x00")
@example("\ud800")  # a lone surrogate is not a letter
def test_sanitize_tag_value_always_valid(raw: str) -> None:
    out = sanitize_tag_value(raw)
    assert tag_value_problem(out) is None, (raw, out)
    assert len(out) <= MAX_TAG_VALUE


@PROPERTY
@given(st.text(TAG_VALUE_CHARS, max_size=MAX_TAG_VALUE))
def test_valid_tag_values_are_left_alone(value: str) -> None:
    value = unicodedata.normalize("NFC", value)
    if value.lower().startswith("aws:") or len(value) > MAX_TAG_VALUE:
        return
    assert tag_value_problem(value) is None
    assert sanitize_tag_value(value) == value


@pytest.mark.parametrize(
    ("value", "text"),
    [
        ("v" * 257, "longer than 256"),
        ("aws:x", "reserved prefix 'aws:'"),
        ("a&b", "characters AWS does not allow: '&'"),
        ("a,b", "characters AWS does not allow: ','"),
        ("tab\there", "characters AWS does not allow: '\\t'"),
    ],
)
def test_tag_value_problem(value: str, text: str) -> None:
    problem = tag_value_problem(value)
    assert problem is not None and text in problem


def test_tag_value_problem_accepts_limits() -> None:
    assert tag_value_problem("") is None
    assert tag_value_problem("v" * 256) is None


# --------------------------------------------------------------------------- tag_key_problem


@pytest.mark.parametrize(
    "key", ["Department", "cost-center/team:x=y+z@w_v.u", "Abteilung Süd", "部门", "k" * 128, "x"]
)
def test_tag_key_valid(key: str) -> None:
    assert tag_key_problem(key) is None


@pytest.mark.parametrize(
    ("key", "text"),
    [
        ("", "tag key is empty"),
        ("k" * 129, "longer than 128 characters"),
        ("aws:team", "starts with the reserved prefix 'aws:'"),
        ("AWS:team", "starts with the reserved prefix 'aws:'"),
        ("a&b", "characters AWS does not allow: '&'"),
        ("a,b", "characters AWS does not allow: ','"),
        ("a$b!", "characters AWS does not allow: '!$'"),
    ],
)
def test_tag_key_problem(key: str, text: str) -> None:
    problem = tag_key_problem(key)
    assert problem is not None and text in problem


# --------------------------------------------------------------------------- tags_problems


def test_tags_problems_valid_set() -> None:
    tags = {f"Key{i}": f"value {i}" for i in range(50)}
    assert tags_problems(tags, list(tags)) == []


def test_tags_problems_51_tags() -> None:
    tags = {f"Key{i}": "v" for i in range(51)}
    assert tags_problems(tags) == ["51 session tags; AWS allows at most 50"]


def test_tags_problems_51_transitive_keys() -> None:
    tags = {f"Key{i}": "v" for i in range(50)}
    transitive = [*tags, "Key0"]
    assert tags_problems(tags, transitive) == ["51 transitive tag keys; AWS allows at most 50"]


def test_tags_problems_case_duplicates() -> None:
    assert tags_problems({"Department": "a", "department": "b"}) == [
        "tag keys 'Department' and 'department' differ only in case (AWS keys are case-insensitive)"
    ]


def test_tags_problems_transitive_not_subset() -> None:
    assert tags_problems({"Project": "x"}, ["Project", "Team"]) == [
        "transitive tag key 'Team' is not one of the session tags"
    ]
    assert tags_problems({}, ["Team"]) == ["transitive tag key 'Team' is not one of the session tags"]


def test_tags_problems_lists_every_problem() -> None:
    problems = tags_problems({"aws:k": "v", "Env": "aws:prod", "Bad": 3}, ["Nope"])  # type: ignore[dict-item]
    assert problems == [
        "tag key 'aws:k' starts with the reserved prefix 'aws:'",
        "tag 'Env': tag value starts with the reserved prefix 'aws:'",
        "tag 'Bad': value must be a string",
        "transitive tag key 'Nope' is not one of the session tags",
    ]


# --------------------------------------------------------------------------- duration_problem


@pytest.mark.parametrize(
    ("seconds", "max_duration"), [(900, 3600), (3600, 3600), (43200, 43200), (900, 43200)]
)
def test_duration_ok(seconds: int, max_duration: int) -> None:
    assert duration_problem(seconds, max_duration) is None


def test_duration_default_max_is_12_hours() -> None:
    assert duration_problem(43200) is None
    assert duration_problem(43201) == "duration 43201s is above this role's maximum of 43200s"


def test_duration_below_minimum() -> None:
    assert duration_problem(899) == "duration 899s is below AWS's minimum of 900s"


def test_duration_above_role_maximum() -> None:
    assert duration_problem(3601, 3600) == "duration 3601s is above this role's maximum of 3600s"
