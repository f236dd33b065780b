"""The store itself: storage migrate."""

from __future__ import annotations

import click

from bridge.commands._common import CONFIG, fail, settings_from


@click.group("storage")
def storage_group() -> None:
    """The bridge's Redis: its key layout across versions."""


@storage_group.command("migrate")
@CONFIG
@click.option("--dry-run", is_flag=True, help="only count the old keys; change nothing")
def storage_migrate(config_path: str, dry_run: bool) -> None:
    """Rewrite keys an earlier version wrote (before the hash tags) into today's layout, in place.

    Safe while the bridge serves, and idempotent (a second run finds nothing). Prints counts only, never a
    key or a value. Needs SCAN besides the bridge's own commands (docs/operations.md, "Upgrading")."""
    from bridge.domain.errors import StoreUnavailable
    from bridge.storage.redis import RedisStore, redis_client
    from bridge.storage.redis_migrate import REMOVED_IN, migrate

    settings = settings_from(config_path)
    prefix = settings.redis.key_prefix
    failed = f"cannot migrate the keys under {prefix}:"
    try:
        store = RedisStore(redis_client(settings.redis, settings.resolve), prefix)
        done = migrate(store, dry_run=dry_run)
    except StoreUnavailable as e:
        fail([e.detail], failed)
    except Exception as e:  # noqa: BLE001 - Cluster reads its slot map at construction
        fail([f"redis: cannot reach {settings.redis.url} ({type(e).__name__})"], failed)
    click.echo(f"{'dry run: ' if dry_run else ''}keys under {prefix} in the layout before the hash tags:")
    for line in done.lines():
        click.echo(line)
    if dry_run:
        click.echo(f"{done.total} old key(s) found; nothing changed (run without --dry-run to move them).")
    else:
        click.echo(f"{done.total} old key(s) handled; none left for the legacy reads, removed in {REMOVED_IN}.")
