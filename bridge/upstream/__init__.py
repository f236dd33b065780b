"""Upstream identity providers, one module per connector type, its settings beside it:

- ``oidc`` / ``oidc_settings``, ``saml`` / ``saml_settings``, ``dev`` / ``dev_settings``;
- ``registry``: type → settings class (what the config accepts);
- ``build``: ``build_connector``, type → connector class (what the service runs).

This package itself imports only the connector protocol (``base``), so a settings module can be
imported — when the config loads — without authlib, requests or python3-saml.
"""

from __future__ import annotations

from bridge.upstream.base import Connector, LoginStart, PendingLogin

__all__ = ["Connector", "LoginStart", "PendingLogin"]
