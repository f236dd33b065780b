"""The audit trail: audit tail."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path

import click

from bridge.commands._common import CONFIG, fail, settings_from
from bridge.config import Settings


@click.group("audit")
def audit_group() -> None:
    """The audit trail (audit.sink: file or redis)."""


def _tail_file(path: Path, lines: int, follow: bool, show: Callable[[str], None], stop: Callable[[], bool]) -> None:
    from bridge.telemetry import audit

    for line in audit.read_file(path, lines=lines):
        show(line)
    if follow:
        for line in audit.follow_file(path, stop=stop):
            show(line)


def _tail_redis(settings: Settings, lines: int, follow: bool, show: Callable[[str], None],
                stop: Callable[[], bool]) -> None:
    from bridge.domain.errors import StoreUnavailable
    from bridge.storage.redis import RedisStore, redis_client

    stream = settings.audit.stream
    store = RedisStore(redis_client(settings.redis, settings.resolve), settings.redis.key_prefix)
    try:
        rows = store.audit_read(stream, count=lines)
        for _, line in rows:
            show(line)
        last = rows[-1][0] if rows else "$"
        while follow and not stop():
            for rid, line in store.audit_read(stream, count=100, after=last, block_ms=1000):
                last = rid
                show(line)
    except StoreUnavailable as e:
        fail([e.detail], f"cannot read the audit stream {settings.redis.key_prefix}{stream}:")


@audit_group.command("tail")
@CONFIG
@click.option("-n", "--lines", default=20, show_default=True, type=click.IntRange(1, 100000))
@click.option("-f", "--follow", is_flag=True, help="keep printing new records")
@click.option("--correlation-id", "correlation", default=None, help="only records of this sign-in")
@click.option("--type", "type_", default=None,
              type=click.Choice(["sign_in", "grant_decision", "credentials_intent", "credentials", "credentials_hop",
                                 "console", "token_reuse", "scim"]))
@click.option("--max-seconds", type=float, default=None, hidden=True, help="stop following after this long")
def audit_tail(config_path: str, lines: int, follow: bool, correlation: str | None, type_: str | None,
               max_seconds: float | None) -> None:
    """Print the last audit records (JSON lines), optionally following and filtering."""
    settings = settings_from(config_path)
    deadline = None if max_seconds is None else time.monotonic() + max_seconds

    def stop() -> bool:
        return deadline is not None and time.monotonic() > deadline

    def show(line: str) -> None:
        if correlation or type_:
            try:
                doc = json.loads(line)
            except ValueError:
                return
            if (correlation and doc.get("correlation_id") != correlation) or (type_ and doc.get("type") != type_):
                return
        click.echo(line)

    a = settings.audit
    if a.sink == "file":
        assert a.path is not None
        _tail_file(settings.resolve(a.path), lines, follow, show, stop)
    elif a.sink == "redis":
        _tail_redis(settings, lines, follow, show, stop)
    else:
        fail([f"audit.sink is {a.sink}: records go to the bridge's standard output (your log collector); "
              "`audit tail` reads the file and redis sinks"], "nothing to tail:")
