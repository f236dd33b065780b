"""The settings schema: ``Settings`` and its sections, as pydantic models (field-level validation).

Connector settings live beside their connectors (``bridge/upstream/*_settings.py``) and are
composed here through the registry (``bridge.upstream.registry``). Checks across sections are in
``bridge.config.checks``; reading files into these models is ``bridge.config.loading``.
"""

from __future__ import annotations

import re
import secrets
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlsplit

from pydantic import Field, PrivateAttr, SecretStr, field_validator, model_validator

from bridge.config.apps import AppSettings, apps_warnings
from bridge.config.requests_settings import RequestsSettings
from bridge.config.scim import ScimSettings
from bridge.config.sources import rules_file_path
from bridge.domain.settings_base import SettingsModel
from bridge.domain.webhook_address import is_loopback
from bridge.mapping import MappingSettings
from bridge.upstream.apple_settings import apple_name_warnings
from bridge.upstream.registry import AnyConnectorSettings, ConnectorSettings
from bridge.upstream.workload_settings import unruled_warnings


class RedisSettings(SettingsModel):
    """One Redis, TLS (``rediss://``), Sentinel or Cluster, all through redis-py.

    ``single``: ``url`` is the server (``redis://`` or ``rediss://``, db in the path).
    ``sentinel``: ``sentinels`` are asked for the master named ``sentinel_master``; ``url`` only
    carries the scheme (``rediss`` = TLS to the master), credentials and db.
    ``cluster``: ``url`` is any node (db 0 only); redis-py discovers the others.
    """

    mode: Literal["single", "sentinel", "cluster"] = "single"
    url: str = "redis://127.0.0.1:6379/0"
    key_prefix: str = Field("bridge:", min_length=1, max_length=64, pattern=r"^[A-Za-z0-9:_.{}-]+$")
    socket_timeout: float = Field(2.0, gt=0, le=30)
    password: SecretStr | None = None
    sentinels: list[str] = Field(default_factory=list, description="host:port of each Sentinel")
    sentinel_master: str | None = None
    sentinel_password: SecretStr | None = None
    ssl_ca_file: Path | None = None
    ssl_cert_file: Path | None = None
    ssl_key_file: Path | None = None
    max_connections: int = Field(50, ge=1, le=10000)

    @field_validator("url")
    @classmethod
    def _url(cls, v: str) -> str:
        u = urlsplit(v)
        if u.scheme not in ("redis", "rediss", "unix"):
            raise ValueError("must be a redis://, rediss:// or unix:// URL")
        if u.scheme != "unix" and not u.hostname:
            raise ValueError("must name a host, e.g. redis://redis.internal:6379/0")
        return v

    @field_validator("sentinels")
    @classmethod
    def _hostports(cls, v: list[str]) -> list[str]:
        for item in v:
            host, _, port = item.rpartition(":")
            if not host or not port.isascii() or not port.isdigit() or not 0 < int(port) < 65536:
                raise ValueError(f"{item!r} is not host:port")
        return v

    @model_validator(mode="after")
    def _topology(self) -> RedisSettings:
        problems = []
        u = urlsplit(self.url)
        if self.mode == "sentinel":
            if not self.sentinels:
                problems.append("mode sentinel needs sentinels: [host:port, ...]")
            if not self.sentinel_master:
                problems.append("mode sentinel needs sentinel_master (the master's name)")
        elif self.sentinels or self.sentinel_master:
            problems.append("sentinels / sentinel_master are only used with mode: sentinel")
        if self.mode == "cluster":
            if u.scheme == "unix":
                problems.append("mode cluster needs a redis:// or rediss:// node URL")
            if u.path.strip("/") not in ("", "0"):
                problems.append("mode cluster has only database 0")
        if (self.ssl_ca_file or self.ssl_cert_file or self.ssl_key_file) and u.scheme != "rediss":
            problems.append("ssl_* files need a rediss:// url (TLS)")
        if (self.ssl_cert_file is None) != (self.ssl_key_file is None):
            problems.append("ssl_cert_file and ssl_key_file go together (client certificate)")
        if problems:
            raise ValueError("; ".join(problems))
        return self

    @property
    def tls(self) -> bool:
        return urlsplit(self.url).scheme == "rediss"


class AuditSettings(SettingsModel):
    """Where the audit trail goes: one JSON object per sign-in, grant decision and issuance."""

    sink: Literal["stdout", "file", "redis", "none"] = "stdout"
    path: Path | None = Field(None, description="file sink: the JSON-lines file (appended)")
    stream: str = Field("audit", pattern=r"^[A-Za-z0-9:_.-]{1,64}$",
                        description="redis sink: stream name under the key prefix")
    maxlen: int = Field(1_000_000, ge=1000, description="redis sink: entries kept (approximate trim)")
    fail_closed: bool = Field(True, description="refuse to hand out credentials when the record cannot be written")

    @model_validator(mode="after")
    def _path(self) -> AuditSettings:
        if self.sink == "file" and self.path is None:
            raise ValueError("sink file needs path")
        return self


class MetricsSettings(SettingsModel):
    """``GET /metrics``: open (the default, for demos), behind a bearer token, and/or on its own listener."""

    enabled: bool = True
    # Read from ``bearer_token_file`` at startup (like other secrets): scrapes must send
    # ``Authorization: Bearer <token>``.
    bearer_token: SecretStr | None = None
    listen: str | None = Field(None, description="host:port served by `bridge serve` for /metrics only; "
                                                 "the main listener then answers 404 there")

    @field_validator("bearer_token")
    @classmethod
    def _token(cls, v: SecretStr | None) -> SecretStr | None:
        if v is not None and not v.get_secret_value().strip():
            raise ValueError("is empty")
        return v

    @field_validator("listen")
    @classmethod
    def _listen(cls, v: str | None) -> str | None:
        if v is not None and listen_port(v) is None:
            raise ValueError(f"{v!r} is not host:port")
        return v


def listen_port(hostport: str) -> int | None:
    """The port of ``host:port`` (``[::1]:9100`` too), or None when it is not one."""
    host, _, port = hostport.rpartition(":")
    if not host or not port.isascii() or not port.isdigit() or not 0 < int(port) < 65536:
        return None
    return int(port)


class SessionSettings(SettingsModel):
    cookie_name: str = Field("bridge_session", pattern=r"^[A-Za-z0-9_-]{1,64}$")
    idle_timeout: int = Field(3600, ge=60, le=86400, description="seconds without a request")
    absolute_timeout: int = Field(43200, ge=300, le=7 * 86400, description="seconds since sign-in")
    pending_login_ttl: int = Field(600, ge=30, le=3600, description="seconds to finish a sign-in")


class IssuerSettings(SettingsModel):
    url: str | None = None
    audience: str = Field("sts.amazonaws.com", min_length=1, max_length=255)
    token_lifetime: int = Field(300, ge=30, le=300)
    keys_dir: Path = Path("keys")
    key_alg: Literal["RS256", "ES256"] = "RS256"
    keys_reload_interval: float = Field(30.0, ge=0, le=3600,
                                        description="seconds between checks of keys_dir for rotated keys")
    key_max_age_days: int = Field(180, ge=1, le=3650,
                                  description="a JWT key older than this shows as expired in metrics")


class SamlIdpSettings(SettingsModel):
    """The bridge as the SAML IdP registered in IAM (`aws iam create-saml-provider`)."""

    entity_id: str | None = None
    sign_response: bool = False


class CredentialCacheSettings(SettingsModel):
    """Issued credentials reused (AES-GCM encrypted in Redis) until ``refresh_window`` before expiry."""

    enabled: bool = True
    refresh_window: int = Field(900, ge=60, le=3000, description="seconds; botocore refreshes 15 min early")


class RateLimitSettings(SettingsModel):
    """Fixed one-minute windows counted in Redis, so the limits hold across every instance (0 = off)."""

    sign_in_per_minute: int = Field(60, ge=0, description="sign-in starts and callbacks per client address "
                                    "(IPv6: per /64)")
    credentials_per_minute: int = Field(120, ge=0, description="credential requests per user")
    # The device flow (RFC 8628): codes are short, so guessing and hammering are limited per client IP
    # on each endpoint, and per user code / device code (a CLI polling every 5 s makes 12 a minute).
    device_per_minute: int = Field(60, ge=0, description="requests to each device endpoint per client address "
                                   "(IPv6: per /64)")
    device_code_per_minute: int = Field(30, ge=0, description="/device views and token polls per code")
    sso_register_per_minute: int = Field(10, ge=0, description="IAM Identity Center RegisterClient calls per "
                                         "client address (IPv6: per /64)")
    # Each access-request step notifies every webhook: asking and withdrawing in a loop must not flood the
    # approvers' chat (nor fill the notification queue, so that a real request or break-glass alert is dropped).
    requests_per_minute: int = Field(10, ge=0, description="access requests asked per user")
    scim_per_minute: int = Field(600, ge=0, description="SCIM requests per client address (IPv6: per /64), "
                                 "counted before the bearer token is checked")
    exchange_per_minute: int = Field(300, ge=0, description="token exchanges (`POST /oauth/token`) per client "
                                     "address (IPv6: per /64), counted before the subject token is verified")


class CliSettings(SettingsModel):
    """The CLI login (OAuth 2.0 device authorization grant, RFC 8628) the bridge serves."""

    client_ids: list[str] = Field(default_factory=lambda: ["bridge-cli"], min_length=1)
    token_lifetime: int = Field(43200, ge=300, le=7 * 86400,
                                description="seconds; never beyond the approving session's end")
    device_code_ttl: int = Field(600, ge=60, le=1800)
    poll_interval: int = Field(5, ge=1, le=60)
    # IAM Identity Center protocol (`aws sso login`, the SDKs' SSO providers; docs/identity-center.md)
    sso_token_lifetime: int = Field(3600, ge=300, le=7 * 86400,
                                    description="seconds an sso-oidc access token lives (refreshed by the SDKs)")
    refresh_token_lifetime: int = Field(43200, ge=0, le=90 * 86400,
                                        description="seconds; 0: no refresh tokens; never beyond the session's end")
    sso_client_lifetime: int = Field(90 * 86400, ge=3600, le=365 * 86400,
                                     description="seconds a RegisterClient registration (client secret) is valid")
    # RegisterClient needs no sign-in: what one address, and everyone together, can keep stored is bounded.
    sso_client_unused_lifetime: int = Field(3600, ge=300, le=7 * 86400,
                                            description="seconds a registration is kept until it is first used "
                                            "for a token (then sso_client_lifetime)")
    sso_clients_per_address: int = Field(500, ge=1, le=1_000_000,
                                         description="live registrations made from one client address (IPv6: "
                                         "one /64); raise it for many users behind one NAT")
    sso_clients_max: int = Field(50_000, ge=1, le=10_000_000, description="live registrations in all")

    @model_validator(mode="after")
    def _unused_lifetime(self) -> CliSettings:
        if self.sso_client_unused_lifetime > self.sso_client_lifetime:
            raise ValueError("sso_client_unused_lifetime must not be longer than sso_client_lifetime")
        return self


AWS_DOMAINS = ("amazonaws.com", "amazonaws.com.cn", "api.aws")  # STS endpoints (regional, FIPS, VPC) live here


class AwsSettings(SettingsModel):
    partition: Literal["aws", "aws-us-gov", "aws-cn"] = "aws"
    region: str = Field("us-east-1", pattern=r"^[a-z]{2}(-[a-z]+)+-\d$")
    sts_endpoint_url: str | None = None
    sts_timeout: float = Field(5.0, gt=0, le=60)
    sts_max_attempts: int = Field(3, ge=1, le=10)
    # The bulkhead: STS calls in flight at once per process (gunicorn worker). Keep it below the
    # worker's threads (BRIDGE_THREADS, 8 by default; `bridge serve` checks) so a silent STS never
    # holds every thread: health checks, the JWKS and sign-in keep answering, the excess gets 503.
    sts_max_concurrency: int = Field(4, ge=1, le=1000)
    default_path: Literal["jwt", "saml"] = "jwt"
    signin_region: str | None = Field(None, pattern=r"^[a-z]{2}(-[a-z]+)+-\d$")
    saml_provider_name: str = Field("FederationBridge", pattern=r"^[\w._-]{1,128}$")
    # Console sign-in (docs/console.md): how the Console button signs in when a grant does
    # not say (`console:` on a grant): the federation endpoint (getSigninToken + Action=login) or an
    # auto-POSTed SAMLResponse to the sign-in SAML endpoint.
    console_method: Literal["federation", "saml_post"] = "federation"
    # Overrides for tests and the demo (a local stand-in); default: the partition's AWS URLs
    # (regional when signin_region is set).
    federation_endpoint: str | None = None
    signin_saml_url: str | None = None
    # docs/step-up-mfa.md: every issuance carries the session tag bridge:mfa (true|false), transitive, which
    # trust policies may require. Each role's trust policy then needs sts:TagSession.
    mfa_tag: bool = Field(True, description="send the session tag bridge:mfa (true|false) with every issuance; "
                                            "trust policies need sts:TagSession — turn off only until they have it")

    @property
    def local_sts_endpoint(self) -> str | None:
        """``sts_endpoint_url`` when it is not AWS's own (a demo's or a test's stand-in): the hints the
        bridge prints then name it, so a first command does not go to real AWS."""
        host = (urlsplit(self.sts_endpoint_url).hostname or "").lower() if self.sts_endpoint_url else ""
        if not host or any(host == d or host.endswith("." + d) for d in AWS_DOMAINS):
            return None
        return self.sts_endpoint_url

class AdminSettings(SettingsModel):
    """Who may use the admin pages (explain any sample identity): members of these groups."""

    groups: list[str] = Field(default_factory=list, description="empty: no admins, the admin pages are off")
    require_mfa: bool = Field(True, description="admin pages need a sign-in with MFA")

    def allows(self, groups: tuple[str, ...] | list[str], mfa: bool) -> bool:
        """Whether a sign-in in ``groups`` (with or without MFA) has admin rights, before any ``deny: all``."""
        return bool(set(groups) & set(self.groups)) and (mfa or not self.require_mfa)


class Settings(SettingsModel):
    """The whole configuration. See config/bridge.example.yaml for every option, commented."""

    base_url: str
    listen: str = "127.0.0.1:8000"
    secret_key: SecretStr = Field(default_factory=lambda: SecretStr(secrets.token_urlsafe(32)))
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    templates_dir: Path | None = None
    trusted_proxies: int = Field(0, ge=0, le=5)
    insecure_dev_login: bool = False
    redis: RedisSettings = Field(default_factory=RedisSettings)
    session: SessionSettings = Field(default_factory=SessionSettings)
    issuer: IssuerSettings = Field(default_factory=IssuerSettings)
    aws: AwsSettings = Field(default_factory=AwsSettings)
    saml_idp: SamlIdpSettings = Field(default_factory=SamlIdpSettings)
    credential_cache: CredentialCacheSettings = Field(default_factory=CredentialCacheSettings)
    cli: CliSettings = Field(default_factory=CliSettings)
    rate_limits: RateLimitSettings = Field(default_factory=RateLimitSettings)
    connectors: list[ConnectorSettings] = Field(min_length=1)
    mapping: MappingSettings = Field(default_factory=MappingSettings)
    audit: AuditSettings = Field(default_factory=AuditSettings)
    metrics: MetricsSettings = Field(default_factory=MetricsSettings)
    admin: AdminSettings = Field(default_factory=AdminSettings)
    support: str = Field("", description="where users get help (an https:// URL or an e-mail address), shown on "
                                         "the portal when no role is granted and on refusals; empty: not shown")
    requests: RequestsSettings = Field(default_factory=RequestsSettings)
    scim: ScimSettings = Field(default_factory=ScimSettings)
    apps: list[AppSettings] = Field(default_factory=list, description="apps registered for the token exchange "
                                    "(docs/apps-and-workloads.md)")
    # Where the config file lives: relative paths (keys_dir, *_file, rules_file) resolve against it.
    source_dir: Path = Field(default=Path("."), exclude=True)
    # The file it was read from (None when built from a dict): rules reload re-reads its mapping.
    source_file: Path | None = Field(default=None, exclude=True)
    _mapping_raw: Any = PrivateAttr(default=None)

    @field_validator("listen")
    @classmethod
    def _listen(cls, v: str) -> str:
        if listen_port(v) is None:
            host, sep, port = v.rpartition(":")
            why = ("has no port" if not sep else "has no host (0.0.0.0: every interface)" if not host
                   else f"port {port!r} is not a number from 1 to 65535")
            raise ValueError(f"{v!r} {why}: write host:port, e.g. 127.0.0.1:8000 or 0.0.0.0:8000")
        return v

    @field_validator("base_url")
    @classmethod
    def _base(cls, v: str) -> str:
        u = urlsplit(v)
        if u.scheme not in ("https", "http") or not u.netloc or u.query or u.fragment:
            raise ValueError("must be an http(s) URL with no query, e.g. https://bridge.example.com")
        return v.rstrip("/")

    @field_validator("support")
    @classmethod
    def _support(cls, v: str) -> str:
        v = v.strip()
        if v and not (re.fullmatch(r"[^@\s/:]+@[^@\s/]+\.[^@\s/]+", v) or re.fullmatch(r"https?://\S+", v)
                      or re.fullmatch(r"mailto:[^@\s]+@\S+", v)):
            raise ValueError("must be an http(s) URL or an e-mail address, e.g. https://help.example.com/aws")
        return v

    @property
    def support_href(self) -> str:
        """``support`` as a link target (an e-mail address becomes a mailto: link); "" when unset."""
        plain_email = self.support and not self.support.startswith(("http://", "https://", "mailto:"))
        return f"mailto:{self.support}" if plain_email else self.support

    @property
    def issuer_url(self) -> str:
        return self.issuer.url or self.base_url

    @property
    def saml_entity_id(self) -> str:
        return self.saml_idp.entity_id or f"{self.base_url}/idp/metadata.xml"

    def grant_defaults(self) -> dict[str, str]:
        """Keyword arguments for ``mapping.evaluate``/``explain``: what rules leave unsaid."""
        return {"default_audience": self.issuer.audience, "default_path": self.aws.default_path,
                "saml_provider": self.aws.saml_provider_name}

    @property
    def rules_path(self) -> Path | None:
        """The rules file, resolved against the config's folder (None when rules are inline)."""
        return rules_file_path(self.mapping.rules_file, self.source_dir)

    @property
    def secure_cookies(self) -> bool:
        return urlsplit(self.base_url).scheme == "https"

    @property
    def session_cookie(self) -> str:
        """The session cookie's name: ``__Host-`` on https, so a sibling subdomain cannot plant one
        (a planted session would sign the victim's console sign-ins in as the attacker)."""
        name = self.session.cookie_name
        return f"__Host-{name}" if self.secure_cookies else name

    def resolve(self, path: Path) -> Path:
        """A path from the config, relative to the config file's folder."""
        return path if path.is_absolute() else self.source_dir / path

    @property
    def keys_dir(self) -> Path:
        return self.resolve(self.issuer.keys_dir)

    @property
    def enabled_connectors(self) -> list[AnyConnectorSettings]:
        return [c for c in self.connectors if c.enabled]

    def warnings(self) -> list[str]:
        """Insecure or unusual settings to warn about at startup (never fatal): the deployment's, each
        enabled connector's own (``<type>_settings.py``), /metrics and the rules'."""
        out = self._deployment_warnings()
        for c in self.enabled_connectors:
            out += c.warnings()
        return (out + self._metrics_warnings() + self._mapping_warnings() + self._requests_warnings()
                + apps_warnings(self.apps))

    def _requests_warnings(self) -> list[str]:
        out = []
        for i, w in enumerate(self.requests.webhooks):
            host = urlsplit(w.url).hostname or ""
            if urlsplit(w.url).scheme == "http" and not is_loopback(host):
                out.append(f"requests.webhooks[{i}]: insecure_allow_http is on: {host} is reached over plain http, "
                           "so the secret header, requests and reasons travel unencrypted.")
        on_request = any(g.request is not None for r in self.mapping.rules for g in r.grants or [])
        if on_request and not self.requests.webhooks:
            out.append("mapping: roles are given on request, but requests.webhooks is empty: approvers are told "
                       "of nothing (they see pending requests on /requests/approve).")
        return out

    def _deployment_warnings(self) -> list[str]:
        out = []
        if self.insecure_dev_login:
            out.append("insecure_dev_login is on: anyone who can reach the sign-in page can pick a user. "
                       "Never use it in production.")
        if not self.secure_cookies:
            out.append(f"base_url {self.base_url} is plain http: session cookies are not marked Secure.")
        host = urlsplit(self.redis.url).hostname or ""
        if not self.redis.tls and self.redis.mode != "sentinel" and host not in ("127.0.0.1", "localhost", "::1", ""):
            out.append(f"redis {host} is reached without TLS: use rediss:// unless the network is private.")
        if self.audit.sink == "none":
            out.append("audit.sink is none: sign-ins and credential issuance leave no audit trail.")
        elif not self.audit.fail_closed:
            out.append(f"audit.fail_closed is false: the audit trail is fail-open. When the {self.audit.sink} sink "
                       "cannot take a record, credentials are still handed out and the record goes to stderr only.")
        if urlsplit(self.issuer_url).scheme != "https":
            out.append(f"issuer {self.issuer_url} is not https: AWS only trusts https OIDC issuers.")
        return out

    def _metrics_warnings(self) -> list[str]:
        m = self.metrics
        if m.enabled and m.bearer_token is None and m.listen is None:
            return ["/metrics is open to anyone who reaches the bridge: set metrics.bearer_token_file and/or "
                    "metrics.listen (a separate, internal address)."]
        return []

    def _mapping_warnings(self) -> list[str]:
        out = []
        legacy = self.mapping.legacy_rules
        if legacy:
            names = ", ".join(legacy[:5]) + (" …" if len(legacy) > 5 else "")
            out.append(f"mapping: {len(legacy)} rule(s) use the old flat form ({names}); they "
                       "still work, but write match:/grants: (docs/rules.md).")
        out += self.mapping.scanned_warnings()
        out += unruled_warnings(self.enabled_connectors, self.mapping.rules)
        out += apple_name_warnings(self.enabled_connectors, self.mapping.rules, self.apps)  # Apple's name: unsigned
        return out
