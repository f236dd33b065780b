"""What the admin commands share: failing with a list of problems, loading a config or an identity."""

from __future__ import annotations

import json
import sys
from collections.abc import Iterable
from pathlib import Path
from typing import Any, NoReturn

import click

from bridge.config import Settings, load_settings
from bridge.domain.errors import ConfigError
from bridge.domain.identity import Identity, identity_from_sample

CONFIG = click.option("--config", "config_path", required=True, type=click.Path(exists=True, dir_okay=False))


def fail(lines: Iterable[object], header: str) -> NoReturn:
    click.echo(header, err=True)
    for line in lines:
        click.echo(f"  - {line}", err=True)
    sys.exit(1)


def settings_from(path: str) -> Settings:
    try:
        return load_settings(path)
    except ConfigError as e:
        fail(e.problems, f"{path}: {len(e.problems)} problem(s):")


def identity_from(path: str) -> Identity:
    try:
        d = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError) as e:
        fail([str(e)], f"{path}: cannot read identity JSON")
    try:
        return identity_from_sample(d)
    except ValueError as e:
        fail([str(e)], f"{path}: not an identity document")


def services_from(config_path: str) -> Any:
    from bridge.web.services import build_services

    settings = settings_from(config_path)
    try:
        return build_services(settings)
    except ConfigError as e:
        fail(e.problems, f"{config_path}: {len(e.problems)} problem(s):")
