"""What every connector's settings have: ``id``, ``name``, ``enabled``, startup warnings, the policy the
core applies to the connector's users (``policy()``), and ``open(env)``, the running connector.

Connector settings modules (``*_settings.py``) import pydantic and bridge's settings base only:
loading the config never imports authlib, requests or python3-saml. ``open`` imports its connector's
module when it is called (the service starting), never before.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from pydantic import Field

from bridge.domain.settings_base import SettingsModel
from bridge.upstream.base import NO_POLICY, Connector, ConnectorPolicy

CONNECTOR_ID_PATTERN = r"^[a-z0-9][a-z0-9_-]{0,31}$"


@dataclass(frozen=True)
class ConnectorEnv:
    """What a running connector may use of the service: its public URL, how config paths resolve, the
    replay guard (SAML assertion ids: ``(key, ttl) → first time?``), and ``on_stale(connector id,
    document)``, told when an IdP document could not be refreshed and the last good copy was used."""

    base_url: str
    resolve: Callable[[Path], Path]
    replay_guard: Callable[[str, int], bool]
    on_stale: Callable[[str, str], None] | None = None

    def stale_for(self, connector_id: str) -> Callable[[str], None] | None:
        """``on_stale`` for one connector (it names only the document)."""
        on_stale = self.on_stale
        return None if on_stale is None else (lambda document: on_stale(connector_id, document))


class ConnectorSettingsBase(SettingsModel):
    id: str = Field(pattern=CONNECTOR_ID_PATTERN)
    name: str = ""
    enabled: bool = True

    def warnings(self) -> list[str]:
        """Insecure or unusual options of this connector, warned about at startup (never fatal)."""
        return []

    def policy(self) -> ConnectorPolicy:
        """What the core applies to this connector's users (session lifetime, re-checks, pass-through)."""
        return NO_POLICY

    def open(self, env: ConnectorEnv) -> Connector:
        """The running connector for these settings (config validation already refused unknown types)."""
        raise NotImplementedError(f"connector type of {self.id!r} cannot be opened")
