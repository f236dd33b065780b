"""Settings of the ``dev`` connector (``bridge.upstream.dev``): a form to pick a test user."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field

from bridge.domain.settings_base import SettingsModel
from bridge.upstream.base import Connector
from bridge.upstream.base_settings import ConnectorEnv, ConnectorSettingsBase


class DevUser(SettingsModel):
    subject: str = Field(min_length=1, description="the user's subject, as an IdP's `sub`")
    email: str | None = Field(None, description="the user's e-mail (taken as verified)")
    name: str | None = Field(None, description="display name")
    groups: list[str] = Field(default_factory=list, description="group names, for rules")
    claims: dict[str, Any] = Field(default_factory=dict, description="further claims, for rules (`claims.<name>`)")
    mfa: bool = Field(False, description="the sign-in counts as MFA")


class DevConnectorSettings(ConnectorSettingsBase):
    """Pick-a-user form. Only for demos and local testing: needs ``insecure_dev_login: true``."""

    type: Literal["dev"]
    users: list[DevUser] = Field(min_length=1)

    def open(self, env: ConnectorEnv) -> Connector:
        from bridge.upstream.dev import DevConnector

        return DevConnector(self, base_url=env.base_url)
