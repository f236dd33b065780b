"""What every connector's settings have: ``id``, ``name``, ``enabled``, and startup warnings.

Connector settings modules (``*_settings.py``) import pydantic and bridge's settings base only:
loading the config never imports authlib, requests or python3-saml.
"""

from __future__ import annotations

from pydantic import Field

from bridge.domain.settings_base import SettingsModel

CONNECTOR_ID_PATTERN = r"^[a-z0-9][a-z0-9_-]{0,31}$"


class ConnectorSettingsBase(SettingsModel):
    id: str = Field(pattern=CONNECTOR_ID_PATTERN)
    name: str = ""
    enabled: bool = True

    def warnings(self) -> list[str]:
        """Insecure or unusual options of this connector, warned about at startup (never fatal)."""
        return []
