"""Upstream identity providers. ``build_connector`` is the type → class registry."""

from __future__ import annotations

from bridge.config import DevConnectorSettings, OidcConnectorSettings
from bridge.upstream.base import Connector, PendingLogin
from bridge.upstream.dev import DevConnector
from bridge.upstream.oidc import OidcConnector


def build_connector(cfg: OidcConnectorSettings | DevConnectorSettings, *, base_url: str) -> Connector:
    """Instantiate the connector for ``cfg.type`` (config validation already refused unknown types)."""
    if isinstance(cfg, OidcConnectorSettings):
        return OidcConnector(cfg)
    return DevConnector(cfg, base_url=base_url)


__all__ = ["Connector", "PendingLogin", "build_connector"]
