"""``build_connector``: the type → connector class registry (the running side of
``bridge.upstream.registry``, which maps a type to its settings class).

The one upstream module that imports every connector (authlib, requests, python3-saml): the
service builds its connectors through it; loading the config never imports it.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from bridge.upstream.base import Connector
from bridge.upstream.dev import DevConnector
from bridge.upstream.oidc import OidcConnector
from bridge.upstream.oidc_settings import OidcConnectorSettings
from bridge.upstream.registry import AnyConnectorSettings
from bridge.upstream.saml import SamlConnector
from bridge.upstream.saml_settings import SamlConnectorSettings


def build_connector(cfg: AnyConnectorSettings, *, base_url: str,
                    resolve: Callable[[Path], Path], replay_guard: Callable[[str, int], bool],
                    on_stale: Callable[[str, str], None] | None = None) -> Connector:
    """Instantiate the connector for ``cfg.type`` (config validation already refused unknown types).

    ``on_stale(connector id, document)`` is told when an IdP document could not be refreshed and
    the last good copy was used (the app counts it in a metric)."""
    stale = (lambda doc: on_stale(cfg.id, doc)) if on_stale else None
    if isinstance(cfg, OidcConnectorSettings):
        return OidcConnector(cfg, on_stale=stale)
    if isinstance(cfg, SamlConnectorSettings):
        return SamlConnector(cfg, base_url=base_url, resolve=resolve, replay_guard=replay_guard, on_stale=stale)
    return DevConnector(cfg, base_url=base_url)
