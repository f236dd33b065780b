"""The base of every settings model (``bridge.config`` sections and the connectors' settings).

A leaf module (pydantic only), so connector settings beside their connectors and the config
schema can share it without importing each other.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict


class SettingsModel(BaseModel):
    """Unknown keys are problems (a typo in the YAML must not be silently ignored)."""

    model_config = ConfigDict(extra="forbid")
