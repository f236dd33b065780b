"""The base of every settings model (``bridge.config`` sections and the connectors' settings).

A leaf module (pydantic only), so connector settings beside their connectors and the config
schema can share it without importing each other.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict


class SettingsModel(BaseModel):
    """Unknown keys are problems (a typo in the YAML must not be silently ignored)."""

    model_config = ConfigDict(extra="forbid")


def renamed(value: object, renames: dict[str, str], field: str) -> object:
    """A value spelled the old way of a setting renamed to say it weakens a check (``insecure_*``) is refused,
    naming the new spelling — never taken as the new one silently: whoever wrote it learns what it does."""
    if isinstance(value, str) and value in renames:
        raise ValueError(f"`{field}: {value}` is now spelled `{field}: {renames[value]}` (it weakens a check): "
                         "write that, or a safer value")
    return value
