"""Audit records with ``shared`` fields (bridge/telemetry/audit.py ``Shared``): encoded once, written whole."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest

from bridge.telemetry import audit


class Lines:
    name = "lines"

    def __init__(self) -> None:
        self.lines: list[str] = []

    def write(self, line: str) -> None:
        self.lines.append(line)


def auditor() -> tuple[audit.Auditor, Lines]:
    sink = Lines()
    return audit.Auditor(sink, clock=lambda: datetime(2026, 1, 1, tzinfo=UTC)), sink


def test_a_record_with_shared_fields_is_the_record_with_them_inline() -> None:
    shared = audit.Shared.of({"who": {"subject": "alice", "email": "a@example.com"}, "tags": {"T": "ü"},
                              "duration": 3600})
    a, sink = auditor()
    doc = a.record("credentials", audit.Context("cid", "127.0.0.1", "ua"), shared, outcome="success")
    b, plain = auditor()
    b.record("credentials", audit.Context("cid", "127.0.0.1", "ua"), outcome="success", **shared.values)
    assert json.loads(sink.lines[0]) == json.loads(plain.lines[0]) == doc
    assert doc["who"]["subject"] == "alice" and doc["outcome"] == "success"


def test_a_field_given_twice_is_refused_and_nothing_written() -> None:
    a, sink = auditor()
    with pytest.raises(ValueError, match="outcome"):
        a.record("credentials", audit.Context(), audit.Shared.of({"outcome": "x"}), outcome="success")
    assert sink.lines == []


def test_empty_shared_fields_change_nothing() -> None:
    a, sink = auditor()
    a.record("sign_in", audit.Context(), audit.Shared.of({}), outcome="success")
    assert json.loads(sink.lines[0])["outcome"] == "success"


def test_a_shared_field_naming_a_base_one_wins_once_as_a_plain_field_does() -> None:
    """An access request's grant carries ``request_id`` (the request's id): it replaces the HTTP request id, as it
    did before the shared encoding — once in the line, never a 500."""
    a, sink = auditor()
    doc = a.record("credentials", audit.Context("cid"), audit.Shared.of({"request_id": "ar-1", "rule": "r"}),
                   outcome="success")
    b, plain = auditor()
    b.record("credentials", audit.Context("cid"), outcome="success", request_id="ar-1", rule="r")
    assert sink.lines[0].count('"request_id"') == 1
    assert json.loads(sink.lines[0]) == json.loads(plain.lines[0]) == doc and doc["request_id"] == "ar-1"
