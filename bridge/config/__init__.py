"""Typed settings from YAML, with ``${ENV}`` interpolation and ``*_file`` secrets.

``load_settings(path)`` returns ``Settings`` or raises ``ConfigError`` listing EVERY problem
as ``path.to.option: message``. Nothing reads config at import time.

- ``schema``: ``Settings`` and its sections (pydantic models). Connector settings live beside
  their connectors (``bridge/upstream/<type>_settings.py``, registry in ``bridge.upstream.registry``).
- ``sources``: the raw document: YAML, ``${VAR}`` / ``${VAR:-default}``, ``*_file`` secrets, file stamps.
- ``loading``: ``load_settings``, ``settings_from_dict``, the ``mapping:`` section and its rules
  file, ``reload_mapping``.
- ``checks``: semantic problems across options and sections.

Import from ``bridge.config``; the names below are its public interface.
"""

from __future__ import annotations

from bridge.config.checks import deployment_problems, semantic_problems, startup_warnings
from bridge.config.loading import load_mapping_section, load_settings, reload_mapping, settings_from_dict
from bridge.config.requests_settings import RequestsSettings, WebhookSettings
from bridge.config.schema import (
    AdminSettings,
    AuditSettings,
    AwsSettings,
    CliSettings,
    CredentialCacheSettings,
    IssuerSettings,
    MetricsSettings,
    RateLimitSettings,
    RedisSettings,
    SamlIdpSettings,
    SessionSettings,
    Settings,
    listen_port,
)
from bridge.config.sources import SECRET_OPTIONS, FileStamp, file_stamp, rules_file_path
from bridge.domain.errors import ConfigError
from bridge.upstream.dev_settings import DevConnectorSettings, DevUser
from bridge.upstream.oidc_settings import OidcConnectorSettings
from bridge.upstream.registry import AnyConnectorSettings, ConnectorSettings
from bridge.upstream.saml_settings import SAML_PRESETS, SamlConnectorSettings
from bridge.upstream.workload_settings import WorkloadConnectorSettings

__all__ = [
    "SAML_PRESETS",
    "SECRET_OPTIONS",
    "AdminSettings",
    "AnyConnectorSettings",
    "AuditSettings",
    "AwsSettings",
    "CliSettings",
    "ConfigError",
    "ConnectorSettings",
    "CredentialCacheSettings",
    "DevConnectorSettings",
    "DevUser",
    "FileStamp",
    "IssuerSettings",
    "MetricsSettings",
    "OidcConnectorSettings",
    "RateLimitSettings",
    "RedisSettings",
    "RequestsSettings",
    "SamlConnectorSettings",
    "SamlIdpSettings",
    "SessionSettings",
    "Settings",
    "deployment_problems",
    "WebhookSettings",
    "WorkloadConnectorSettings",
    "file_stamp",
    "listen_port",
    "load_mapping_section",
    "load_settings",
    "reload_mapping",
    "rules_file_path",
    "semantic_problems",
    "settings_from_dict",
    "startup_warnings",
]
