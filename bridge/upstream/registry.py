"""The connector types the config accepts: ``type`` → settings class (the discriminated union).

A connector type is added here (its settings class beside its connector, ``<type>_settings.py``) and
in ``build_connector`` (``bridge/upstream/build.py``). A ``type:`` not listed here fails at startup:
``connectors[0]: Input tag 'x' found using 'type' does not match any of the expected tags: …``.
"""

from __future__ import annotations

from typing import Annotated

from pydantic import Field

from bridge.upstream.base_settings import ConnectorSettingsBase
from bridge.upstream.dev_settings import DevConnectorSettings
from bridge.upstream.oidc_settings import OidcConnectorSettings
from bridge.upstream.saml_settings import SamlConnectorSettings

# In this order in the "expected tags" of the unknown-type message.
AnyConnectorSettings = OidcConnectorSettings | SamlConnectorSettings | DevConnectorSettings
ConnectorSettings = Annotated[AnyConnectorSettings, Field(discriminator="type")]

CONNECTOR_SETTINGS: dict[str, type[ConnectorSettingsBase]] = {
    "oidc": OidcConnectorSettings,
    "saml": SamlConnectorSettings,
    "dev": DevConnectorSettings,
}
CONNECTOR_TYPES = tuple(CONNECTOR_SETTINGS)
