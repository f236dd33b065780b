"""The one connector registry: ``type`` → settings class (the discriminated union the config accepts).

Each settings class owns its connector: ``policy()`` is what the core applies to its users, ``open(env)``
the running connector (its module — authlib, python3-saml — imported only then). A connector type is
added here, its settings class beside its connector (``<type>_settings.py``). A ``type:`` not listed
here fails at startup: ``connectors[0]: Input tag 'x' found using 'type' does not match any of the
expected tags: …``.
"""

from __future__ import annotations

from typing import Annotated

from pydantic import Field

from bridge.upstream.base_settings import ConnectorSettingsBase
from bridge.upstream.dev_settings import DevConnectorSettings
from bridge.upstream.github_settings import GithubConnectorSettings
from bridge.upstream.oidc_settings import OidcConnectorSettings
from bridge.upstream.saml_settings import SamlConnectorSettings
from bridge.upstream.workload_settings import WorkloadConnectorSettings

# In this order in the "expected tags" of the unknown-type message.
AnyConnectorSettings = (OidcConnectorSettings | SamlConnectorSettings | DevConnectorSettings
                        | WorkloadConnectorSettings | GithubConnectorSettings)
ConnectorSettings = Annotated[AnyConnectorSettings, Field(discriminator="type")]

CONNECTOR_SETTINGS: dict[str, type[ConnectorSettingsBase]] = {
    "oidc": OidcConnectorSettings,
    "saml": SamlConnectorSettings,
    "dev": DevConnectorSettings,
    "workload": WorkloadConnectorSettings,
    "github": GithubConnectorSettings,
}
CONNECTOR_TYPES = tuple(CONNECTOR_SETTINGS)
