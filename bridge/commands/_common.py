"""What the admin commands share: failing with a list of problems, loading a config or an identity."""

from __future__ import annotations

import json
import sys
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any, NoReturn

import click

from bridge.config import Settings, WorkloadConnectorSettings, load_settings
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


def claims_identity(settings: Settings, connector_id: str, claims: Mapping[str, Any]) -> Identity:
    """The identity the workload connector ``connector_id`` makes of a token's ``claims`` (not verified: what
    rules would see once it is); ValueError saying what is wrong."""
    cfg = next((c for c in settings.connectors if c.id == connector_id), None)
    workloads = sorted(c.id for c in settings.connectors if isinstance(c, WorkloadConnectorSettings))
    if not isinstance(cfg, WorkloadConnectorSettings):
        what = "is not a workload connector" if cfg is not None else "is not a configured connector"
        raise ValueError(f"{connector_id!r} {what}; token claims are read by a workload connector "
                         f"({', '.join(workloads) or 'none is configured'})")
    return cfg.identity_from_claims(dict(claims))


def token_claims_identity(settings: Settings, connector_id: str | None, path: str) -> Identity:
    """``--connector`` + ``--token-claims FILE``: the identity that connector makes of the claims in FILE."""
    if not connector_id:
        fail(["--token-claims needs --connector <the workload connector's id>"], f"{path}:")
    try:
        d = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError) as e:
        fail([str(e)], f"{path}: cannot read token claims JSON")
    if not isinstance(d, dict):
        fail(["expected a JSON object: the token's claims (its payload)"], f"{path}: not token claims")
    try:
        return claims_identity(settings, connector_id, d)
    except ValueError as e:
        fail([str(e)], f"{path}: not an identity of connector {connector_id!r}")


def services_from(config_path: str) -> Any:
    from bridge.web.services import build_services

    settings = settings_from(config_path)
    try:
        return build_services(settings)
    except ConfigError as e:
        fail(e.problems, f"{config_path}: {len(e.problems)} problem(s):")
