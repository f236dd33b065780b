"""Upstream identity providers, one module per connector type, its settings beside it:

- ``oidc`` / ``oidc_settings``, ``saml`` / ``saml_settings``, ``dev`` / ``dev_settings``, ``workload`` /
  ``workload_settings`` (CI jobs and workloads, for the token exchange; their claims: ``workload_claims``);
- ``registry``: type → settings class (what the config accepts), the one registry: each settings
  class's ``open(env)`` gives its running connector, its ``policy()`` what the core applies.

This package itself imports only the connector protocol (``base``), so a settings module can be
imported — when the config loads — without authlib, requests or python3-saml.
"""

from __future__ import annotations

from bridge.upstream.base import Connector, LoginStart, PendingLogin

__all__ = ["Connector", "LoginStart", "PendingLogin"]
