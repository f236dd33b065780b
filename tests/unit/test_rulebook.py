"""Rules reload in one process (bridge/rulebook.py): on file change (checked at most every
reload_interval seconds, on use), on request/SIGHUP; a bad reload keeps the rules in force and says why."""

from __future__ import annotations

import json
import logging
import os
import signal
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from bridge.config import load_settings, settings_from_dict
from bridge.identity import Identity
from bridge.mapping import MappingSettings, evaluate
from bridge.rulebook import RuleBook, install_sighup
from bridge.services import rule_book
from tests.conftest import LogCapture

ADMIN = "arn:aws:iam::123456789012:role/Admin"
READONLY = "arn:aws:iam::123456789012:role/ReadOnly"
ALICE = Identity(connector_id="corp", subject="alice", issuer="i", email="alice@example.com", groups=("admins",))


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def rules_doc(role: str, group: str = "admins") -> list[dict[str, Any]]:
    return [{"name": "r", "match": {"group": group}, "grants": [{"role_arn": role}]}]


def write_rules(path: Path, doc: Any) -> None:
    path.write_text(yaml.safe_dump(doc), encoding="utf-8")
    st = path.stat()  # make sure the change shows even within one mtime tick
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000_000))


def roles(m: MappingSettings) -> list[str]:
    return [g.role_arn for g in evaluate(m, ALICE, default_audience="a")]


@pytest.fixture
def config(tmp_path: Path) -> Path:
    write_rules(tmp_path / "rules.yaml", rules_doc(ADMIN))
    cfg = tmp_path / "bridge.yaml"
    cfg.write_text("base_url: https://bridge.example.com\n"
                   "connectors: [{id: corp, type: oidc, issuer: 'https://idp.example.com', client_id: c, "
                   "client_secret: s}]\n"
                   "mapping: {rules_file: rules.yaml, reload_interval: 10}\n", encoding="utf-8")
    return cfg


@pytest.fixture
def logs(bridge_logs: LogCapture) -> Iterator[LogCapture]:
    log = logging.getLogger("bridge")
    level = log.level
    log.setLevel(logging.INFO)
    yield bridge_logs
    log.setLevel(level)


def events(logs: LogCapture, name: str) -> list[dict[str, Any]]:
    return [d for d in (json.loads(line) for line in logs.lines) if d["event"] == name]


def test_a_changed_rules_file_is_picked_up_after_the_interval(config: Path, logs: LogCapture) -> None:
    clock = Clock()
    book = rule_book(load_settings(config), clock=clock)
    assert roles(book.mapping) == [ADMIN]
    write_rules(config.parent / "rules.yaml", rules_doc(READONLY))
    clock.now += 5
    assert roles(book.mapping) == [ADMIN]  # not checked yet: at most every reload_interval seconds
    clock.now += 6
    assert roles(book.mapping) == [READONLY]
    (done,) = events(logs, "rules_reloaded")
    assert done["reason"] == "file_changed" and done["rules"] == 1 and done["version"] != done["previous_version"]


def test_a_bad_reload_keeps_the_rules_and_says_why(config: Path, logs: LogCapture) -> None:
    clock = Clock()
    book = rule_book(load_settings(config), clock=clock)
    version = book.version
    write_rules(config.parent / "rules.yaml", [{"name": "r", "match": {"claim": "groups", "regex": "("},
                                               "grants": [{"role_arn": ADMIN, "tags": {"aws:x": "1"}}]}])
    clock.now += 11
    assert roles(book.mapping) == [ADMIN] and book.version == version
    (failed,) = events(logs, "rules_reload_failed")
    assert failed["level"] == "error" and failed["count"] == 2 and failed["kept_version"] == version
    assert failed["problems"] == ["rules.yaml:rules[0].match.regex: bad regex '(': missing ), unterminated "
                                  "subpattern at position 0",
                                  "rules.yaml:rules[0].grants[0].tags.aws:x: tag key 'aws:x' starts with the "
                                  "reserved prefix 'aws:'"]
    assert book.last_problems == failed["problems"]
    clock.now += 11
    book.mapping  # noqa: B018 - the same broken file is not retried
    assert len(events(logs, "rules_reload_failed")) == 1
    write_rules(config.parent / "rules.yaml", rules_doc(READONLY))
    clock.now += 11
    assert roles(book.mapping) == [READONLY] and book.last_problems == []


def test_a_missing_rules_file_keeps_the_rules(config: Path, logs: LogCapture) -> None:
    clock = Clock()
    book = rule_book(load_settings(config), clock=clock)
    (config.parent / "rules.yaml").unlink()
    clock.now += 11
    assert roles(book.mapping) == [ADMIN]
    (failed,) = events(logs, "rules_reload_failed")
    assert failed["problems"][0].startswith("mapping.rules_file: cannot read")


def test_inline_rules_reload_when_the_config_file_changes(tmp_path: Path) -> None:
    cfg = tmp_path / "bridge.yaml"
    base = {"base_url": "https://bridge.example.com", "connectors": [
        {"id": "corp", "type": "oidc", "issuer": "https://idp.example.com", "client_id": "c", "client_secret": "s"}]}
    write_rules(cfg, {**base, "mapping": {"reload_interval": 0, "rules": rules_doc(ADMIN)}})
    book = rule_book(load_settings(cfg), clock=Clock())
    assert roles(book.mapping) == [ADMIN]
    write_rules(cfg, {**base, "mapping": {"reload_interval": 0, "rules": rules_doc(READONLY)}})
    assert roles(book.mapping) == [READONLY]


def test_a_requested_reload_happens_without_a_change(config: Path, logs: LogCapture) -> None:
    book = rule_book(load_settings(config), clock=Clock())
    book.request_reload()
    book.mapping  # noqa: B018
    (done,) = events(logs, "rules_reloaded")
    assert done["reason"] == "signal" and done["version"] == done["previous_version"]
    assert book.reload() is True


def test_settings_without_files_do_not_reload() -> None:
    s = settings_from_dict({"base_url": "https://b.example.com", "connectors": [
        {"id": "corp", "type": "oidc", "issuer": "https://idp.example.com", "client_id": "c", "client_secret": "s"}],
        "mapping": {"rules": rules_doc(ADMIN)}})
    book = rule_book(s, clock=Clock())
    book.request_reload()
    assert roles(book.mapping) == [ADMIN]


def test_a_loader_bug_keeps_the_rules(logs: LogCapture) -> None:
    def broken() -> MappingSettings:
        raise RuntimeError("secret detail")

    book = RuleBook(MappingSettings(), loader=broken)
    assert book.reload() is False
    (failed,) = events(logs, "rules_reload_failed")
    assert failed["problems"] == ["unexpected RuntimeError while loading the rules"]
    assert "secret detail" not in logs.text


@pytest.fixture
def restore_sighup() -> Iterator[None]:
    old = signal.getsignal(signal.SIGHUP)
    yield
    signal.signal(signal.SIGHUP, old)


def test_sighup_reloads(config: Path, logs: LogCapture, restore_sighup: None) -> None:
    book = rule_book(load_settings(config), clock=Clock())
    install_sighup(book)
    write_rules(config.parent / "rules.yaml", rules_doc(READONLY))
    os.kill(os.getpid(), signal.SIGHUP)
    deadline = time.monotonic() + 10
    while not events(logs, "rules_reloaded") and time.monotonic() < deadline:
        time.sleep(0.02)
    assert roles(book.mapping) == [READONLY]
    assert events(logs, "rules_reloaded")[0]["reason"] == "signal"
