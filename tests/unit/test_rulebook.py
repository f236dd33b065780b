"""Rules reload in one process (bridge/core/rulebook.py): on file change (checked at most every
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
from click.testing import CliRunner

from bridge.commands.cli import main
from bridge.config import load_settings, settings_from_dict
from bridge.core.rulebook import RuleBook, install_sighup, refusal
from bridge.domain.identity import Identity
from bridge.keys.signing import generate_cache_key, generate_key
from bridge.mapping import MappingSettings, evaluate
from bridge.telemetry.metrics import Metrics
from bridge.web.services import rule_book
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


# --------------------------------------------------------------------------- reloads that would wipe access


def many_rules(n: int) -> list[dict[str, Any]]:
    """``n`` rules: the first gives alice (group admins) Admin, the others give other groups ReadOnly."""
    return [{"name": "r0", "match": {"group": "admins"}, "grants": [{"role_arn": ADMIN}]}] + [
        {"name": f"r{i}", "match": {"group": f"g{i}"}, "grants": [{"role_arn": READONLY}]} for i in range(1, n)]


def guarded_book(config: Path, n: int = 10, **kw: Any) -> tuple[RuleBook, Clock, Path]:
    rules = config.parent / "rules.yaml"
    write_rules(rules, many_rules(n))
    clock = Clock()
    book = rule_book(load_settings(config), clock=clock, **kw)
    assert len(book.mapping.rules) == n
    return book, clock, rules


@pytest.mark.parametrize("text", ["", "# all rules moved elsewhere\n", "rules: []\n", "[]\n"])
def test_an_empty_rules_file_is_refused(config: Path, logs: LogCapture, text: str) -> None:
    kinds: list[str] = []
    book, clock, rules = guarded_book(config, on_failure=kinds.append)
    version = book.version
    rules.write_text(text, encoding="utf-8")
    clock.now += 11
    assert roles(book.mapping) == [ADMIN] and book.version == version and len(book.mapping.rules) == 10
    (failed,) = events(logs, "rules_reload_failed")
    assert failed["failure"] == "empty" and failed["kept_rules"] == 10 and failed["level"] == "error"
    assert failed["problems"] == ["mapping: no rules: every user would lose every role (to mean it, write "
                                  "expected_rules: 0 next to the rules)"]
    assert kinds == ["empty"]
    assert book.status() == {"version": version, "count": 10, "last_reload_failed": True, "failure": "empty",
                             "problems": failed["problems"]}


def test_a_truncated_rules_file_is_refused(config: Path, logs: LogCapture) -> None:
    kinds: list[str] = []
    book, clock, rules = guarded_book(config, on_failure=kinds.append)
    write_rules(rules, many_rules(4))  # 60 % gone: more than the default max_shrink (50 %)
    clock.now += 11
    assert roles(book.mapping) == [ADMIN] and len(book.mapping.rules) == 10
    (failed,) = events(logs, "rules_reload_failed")
    assert failed["failure"] == "shrink" and failed["problems"] == [
        "mapping: 4 rule(s) where 10 are in force: dropping 60% is more than mapping.max_shrink (50%) allows "
        "(to mean it, write expected_rules: 4 next to the rules)"]
    assert kinds == ["shrink"] and book.status()["last_reload_failed"] is True
    clock.now += 11
    book.mapping  # noqa: B018 - the same file is not retried
    assert kinds == ["shrink"]
    write_rules(rules, many_rules(5))  # exactly max_shrink: allowed, and the failure is over
    clock.now += 11
    assert len(book.mapping.rules) == 5
    assert book.status()["last_reload_failed"] is False and book.status()["problems"] == []


def test_a_file_cut_mid_rule_is_refused(config: Path, logs: LogCapture) -> None:
    book, clock, rules = guarded_book(config)
    text = rules.read_text(encoding="utf-8")
    rules.write_text(text[: len(text) // 3].rsplit("\n- ", 1)[0] + "\n", encoding="utf-8")  # a partial write
    clock.now += 11
    assert len(book.mapping.rules) == 10
    assert events(logs, "rules_reload_failed")[0]["failure"] == "shrink"


def test_expected_rules_forces_a_shrink(config: Path, logs: LogCapture) -> None:
    book, clock, rules = guarded_book(config)
    write_rules(rules, {"expected_rules": 2, "rules": many_rules(2)})
    clock.now += 11
    assert len(book.mapping.rules) == 2 and roles(book.mapping) == [ADMIN]
    assert not events(logs, "rules_reload_failed") and book.status()["last_reload_failed"] is False
    write_rules(rules, {"expected_rules": 0, "rules": []})  # even to nothing, when the file says so
    clock.now += 11
    assert book.mapping.rules == [] and roles(book.mapping) == []


def test_expected_rules_catches_a_truncated_file(config: Path, logs: LogCapture) -> None:
    """Left in a file, the marker cannot force a later accident: it must match what the file holds."""
    book, clock, rules = guarded_book(config)
    write_rules(rules, {"expected_rules": 10, "rules": many_rules(9)})  # within max_shrink, but not all there
    clock.now += 11
    assert len(book.mapping.rules) == 10
    (failed,) = events(logs, "rules_reload_failed")
    assert failed["failure"] == "invalid"
    assert failed["problems"] == ["rules.yaml:expected_rules: says 10 rule(s), found 9 (a truncated or "
                                  "half-written file?)"]


def test_max_shrink_is_read_from_the_new_config(tmp_path: Path, logs: LogCapture) -> None:
    cfg = tmp_path / "bridge.yaml"
    base = {"base_url": "https://bridge.example.com", "connectors": [
        {"id": "corp", "type": "oidc", "issuer": "https://idp.example.com", "client_id": "c", "client_secret": "s"}]}
    write_rules(cfg, {**base, "mapping": {"reload_interval": 0, "rules": many_rules(10)}})
    book = rule_book(load_settings(cfg), clock=Clock())
    write_rules(cfg, {**base, "mapping": {"reload_interval": 0, "max_shrink": 1.0, "rules": many_rules(1)}})
    assert len(book.mapping.rules) == 1
    write_rules(cfg, {**base, "mapping": {"reload_interval": 0, "max_shrink": 1.0, "rules": []}})
    assert len(book.mapping.rules) == 1  # no rules at all still needs expected_rules: 0
    assert events(logs, "rules_reload_failed")[0]["failure"] == "empty"


def test_empty_rules_may_stay_empty(tmp_path: Path) -> None:
    cfg = tmp_path / "bridge.yaml"
    base = {"base_url": "https://bridge.example.com", "connectors": [
        {"id": "corp", "type": "oidc", "issuer": "https://idp.example.com", "client_id": "c", "client_secret": "s"}]}
    write_rules(cfg, {**base, "mapping": {"reload_interval": 0}})
    book = rule_book(load_settings(cfg), clock=Clock())
    write_rules(cfg, {**base, "mapping": {"reload_interval": 0, "accounts": {"123456789012": {"alias": "sandbox"}}}})
    assert book.mapping.accounts and book.status()["last_reload_failed"] is False  # nothing to wipe


def test_reload_failures_are_counted_by_reason(config: Path) -> None:
    metrics = Metrics()
    book, clock, rules = guarded_book(config, on_failure=metrics.rules_reload_failed)
    for doc in ([], many_rules(1), "not: [valid"):
        rules.write_text(doc if isinstance(doc, str) else yaml.safe_dump(doc), encoding="utf-8")
        st = rules.stat()
        os.utime(rules, ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000_000))
        clock.now += 11
        book.mapping  # noqa: B018
    for reason in ("empty", "shrink", "invalid"):
        assert metrics.value("bridge_rules_reload_failures_total", reason=reason) == 1, reason
    text = metrics.render()[0].decode()
    assert 'bridge_rules_reload_failures_total{reason="shrink"} 1.0' in text


def test_the_metrics_show_the_rules_in_force(config: Path) -> None:
    book, clock, rules = guarded_book(config)
    metrics = Metrics(rules=book.status)
    write_rules(rules, [])
    clock.now += 11
    book.mapping  # noqa: B018
    text = metrics.render()[0].decode()
    assert f'bridge_rules_info{{version="{book.version}"}} 1.0' in text
    assert "bridge_rules_count 10.0" in text and "bridge_rules_last_reload_failed 1.0" in text


def test_a_broken_failure_callback_does_not_break_the_rules(config: Path) -> None:
    def boom(kind: str) -> None:
        raise RuntimeError(kind)

    book, clock, rules = guarded_book(config, on_failure=boom)
    write_rules(rules, [])
    clock.now += 11
    assert len(book.mapping.rules) == 10 and book.status()["failure"] == "empty"


def test_refusal_without_rules_in_force() -> None:
    """check-config has one file: it can only tell that a rule set is empty."""
    assert refusal(None, MappingSettings()) is not None
    assert refusal(None, MappingSettings(expected_rules=0)) is None
    assert refusal(0, MappingSettings()) is None


# --------------------------------------------------------------------------- check-config


def checked_config(tmp_path: Path, name: str, rules: Any) -> Path:
    keys = tmp_path / "keys"
    if not keys.is_dir():
        generate_key(keys, "ES256")
        generate_cache_key(keys)
    write_rules(tmp_path / f"{name}.rules.yaml", rules)
    cfg = tmp_path / f"{name}.yaml"
    cfg.write_text(yaml.safe_dump({
        "base_url": "https://bridge.example.com", "issuer": {"keys_dir": "keys"},
        "connectors": [{"id": "corp", "type": "oidc", "issuer": "https://idp.example.com", "client_id": "c",
                        "client_secret": "s"}],
        "metrics": {"enabled": False},  # no /metrics warning in the output compared below
        "mapping": {"rules_file": f"{name}.rules.yaml"}}), encoding="utf-8")
    return cfg


def check(*args: Path | str) -> Any:
    return CliRunner().invoke(main, ["check-config", "--config", *map(str, args)])


def test_check_config_warns_about_no_rules(tmp_path: Path) -> None:
    r = check(checked_config(tmp_path, "new", []))
    assert r.exit_code == 0 and r.stdout == "ok\n"
    assert ("warning: mapping: no rules: every user would lose every role (to mean it, write expected_rules: 0 "
            "next to the rules); a running bridge refuses to reload to this") in r.stderr
    r = check(checked_config(tmp_path, "meant", {"expected_rules": 0, "rules": []}))
    assert r.exit_code == 0 and r.stderr == ""


def test_check_config_compares_with_the_rules_in_force(tmp_path: Path) -> None:
    old = checked_config(tmp_path, "old", many_rules(10))
    r = check(checked_config(tmp_path, "new", many_rules(3)), "--previous", old)
    assert r.exit_code == 1
    assert r.stderr.splitlines() == [
        f"{tmp_path / 'new.yaml'}: a running bridge would refuse to reload to these rules:",
        "  - mapping: 3 rule(s) where 10 are in force: dropping 70% is more than mapping.max_shrink (50%) allows "
        "(to mean it, write expected_rules: 3 next to the rules)"]
    assert check(checked_config(tmp_path, "half", many_rules(5)), "--previous", old).exit_code == 0
    forced = checked_config(tmp_path, "forced", {"expected_rules": 3, "rules": many_rules(3)})
    assert check(forced, "--previous", old).exit_code == 0
    r = check(checked_config(tmp_path, "cut", {"expected_rules": 10, "rules": many_rules(9)}))
    assert r.exit_code == 1
    assert "  - cut.rules.yaml:expected_rules: says 10 rule(s), found 9 (a truncated or half-written file?)" in r.stderr


def test_a_changed_accounts_file_is_picked_up_like_the_rules_file(tmp_path: Path) -> None:
    # a grant with `where:` picks the catalog accounts (mapping.accounts_file, from `bridge accounts sync --write`)
    def catalog(*ids: str) -> dict[str, Any]:
        return {"accounts": {a: {"ou": "Root/Workloads", "roles": {"ReadOnly": {}}} for a in ids}}

    write_rules(tmp_path / "accounts.yaml", catalog("111111111111"))
    cfg = tmp_path / "bridge.yaml"
    cfg.write_text(yaml.safe_dump({
        "base_url": "https://bridge.example.com",
        "connectors": [{"id": "corp", "type": "oidc", "issuer": "https://idp.example.com", "client_id": "c",
                        "client_secret": "s"}],
        "mapping": {"accounts_file": "accounts.yaml", "reload_interval": 10, "rules": [
            {"name": "r", "match": {"group": "admins"},
             "grants": [{"where": {"account.ou": "Root/Workloads"}, "role": "ReadOnly"}]}]}}), encoding="utf-8")
    clock = Clock()
    book = rule_book(load_settings(cfg), clock=clock)
    assert roles(book.mapping) == ["arn:aws:iam::111111111111:role/ReadOnly"]
    write_rules(tmp_path / "accounts.yaml", catalog("111111111111", "222222222222"))
    clock.now += 11
    assert roles(book.mapping) == ["arn:aws:iam::111111111111:role/ReadOnly", "arn:aws:iam::222222222222:role/ReadOnly"]
    write_rules(tmp_path / "accounts.yaml", {"accounts": {"333333333333": {"alias": "Bad Alias"}}})
    clock.now += 11
    assert len(roles(book.mapping)) == 2  # a broken accounts file keeps the catalog in force
    assert book.last_problems and book.last_problems[0].startswith("accounts.yaml:accounts.333333333333.alias:")
