"""Settings of the ``dev`` connector (``bridge.upstream.dev``): a form to pick a test user."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field

from bridge.settings_base import SettingsModel
from bridge.upstream.base_settings import ConnectorSettingsBase


class DevUser(SettingsModel):
    subject: str = Field(min_length=1)
    email: str | None = None
    name: str | None = None
    groups: list[str] = Field(default_factory=list)
    claims: dict[str, Any] = Field(default_factory=dict)
    mfa: bool = False


class DevConnectorSettings(ConnectorSettingsBase):
    """Pick-a-user form. Only for demos and local testing: needs ``insecure_dev_login: true``."""

    type: Literal["dev"]
    users: list[DevUser] = Field(min_length=1)
