"""Typed settings from YAML, with ``${ENV}`` interpolation and ``*_file`` secrets.

``load_settings(path)`` returns ``Settings`` or raises ``ConfigError`` listing EVERY problem
as ``path.to.option: message``. Nothing reads config at import time.

- ``${NAME}`` in any string is replaced by the environment variable (an unset variable is a
  problem); ``${NAME:-default}`` falls back to ``default``.
- For a secret option ``X`` (``client_secret``, ``secret_key``, ``bearer_token``), ``X_file: /path`` reads the
  secret from that file (trailing newline stripped). Giving both is a problem.
"""

from __future__ import annotations

import json
import os
import re
import secrets
from pathlib import Path
from typing import Annotated, Any, Literal
from urllib.parse import urlsplit

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    PrivateAttr,
    SecretStr,
    ValidationError,
    field_validator,
    model_validator,
)

from bridge.aws.arn import PARTITIONS
from bridge.aws.keys import SUPPORTED_ALGS
from bridge.errors import ConfigError
from bridge.mapping import MappingSettings, load_mapping
from bridge.mapping.compiler import gc_paused

SECRET_OPTIONS = ("client_secret", "secret_key", "password", "sentinel_password", "bearer_token")
_ENV_RE = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")
_ID_RE = r"^[a-z0-9][a-z0-9_-]{0,31}$"


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid")


class RedisSettings(_Model):
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


class AuditSettings(_Model):
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


class MetricsSettings(_Model):
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


class SessionSettings(_Model):
    cookie_name: str = Field("bridge_session", pattern=r"^[A-Za-z0-9_-]{1,64}$")
    idle_timeout: int = Field(3600, ge=60, le=86400, description="seconds without a request")
    absolute_timeout: int = Field(43200, ge=300, le=7 * 86400, description="seconds since sign-in")
    pending_login_ttl: int = Field(600, ge=30, le=3600, description="seconds to finish a sign-in")


class IssuerSettings(_Model):
    url: str | None = None
    audience: str = Field("sts.amazonaws.com", min_length=1, max_length=255)
    token_lifetime: int = Field(300, ge=30, le=300)
    keys_dir: Path = Path("keys")
    key_alg: Literal["RS256", "ES256"] = "RS256"
    keys_reload_interval: float = Field(30.0, ge=0, le=3600,
                                        description="seconds between checks of keys_dir for rotated keys")
    key_max_age_days: int = Field(180, ge=1, le=3650,
                                  description="a JWT key older than this shows as expired in metrics")


class SamlIdpSettings(_Model):
    """The bridge as the SAML IdP registered in IAM (`aws iam create-saml-provider`)."""

    entity_id: str | None = None
    sign_response: bool = False


class CredentialCacheSettings(_Model):
    """Issued credentials reused (AES-GCM encrypted in Redis) until ``refresh_window`` before expiry."""

    enabled: bool = True
    refresh_window: int = Field(900, ge=60, le=3000, description="seconds; botocore refreshes 15 min early")


class RateLimitSettings(_Model):
    """Fixed one-minute windows counted in Redis, so the limits hold across every instance (0 = off)."""

    sign_in_per_minute: int = Field(60, ge=0, description="sign-in starts and callbacks per client IP")
    credentials_per_minute: int = Field(120, ge=0, description="credential requests per user")
    # The device flow (RFC 8628): codes are short, so guessing and hammering are limited per client IP
    # on each endpoint, and per user code / device code (a CLI polling every 5 s makes 12 a minute).
    device_per_minute: int = Field(60, ge=0, description="requests to each device endpoint per client IP")
    device_code_per_minute: int = Field(30, ge=0, description="/device views and token polls per code")


class CliSettings(_Model):
    """The CLI login (OAuth 2.0 device authorization grant, RFC 8628) the bridge serves."""

    client_ids: list[str] = Field(default_factory=lambda: ["bridge-cli"], min_length=1)
    token_lifetime: int = Field(43200, ge=300, le=7 * 86400,
                                description="seconds; never beyond the approving session's end")
    device_code_ttl: int = Field(600, ge=60, le=1800)
    poll_interval: int = Field(5, ge=1, le=60)


class AwsSettings(_Model):
    partition: Literal["aws", "aws-us-gov", "aws-cn"] = "aws"
    region: str = Field("us-east-1", pattern=r"^[a-z]{2}(-[a-z]+)+-\d$")
    sts_endpoint_url: str | None = None
    sts_timeout: float = Field(5.0, gt=0, le=60)
    sts_max_attempts: int = Field(3, ge=1, le=10)
    default_path: Literal["jwt", "saml"] = "jwt"
    signin_region: str | None = Field(None, pattern=r"^[a-z]{2}(-[a-z]+)+-\d$")
    saml_provider_name: str = Field("FederationBridge", pattern=r"^[\w._-]{1,128}$")
    # Console sign-in (README "Console sign-in"): how the Console button signs in when a grant does
    # not say (`console:` on a grant): the federation endpoint (getSigninToken + Action=login) or an
    # auto-POSTed SAMLResponse to the sign-in SAML endpoint.
    console_method: Literal["federation", "saml_post"] = "federation"
    # Overrides for tests and the demo (a local stand-in); default: the partition's AWS URLs
    # (regional when signin_region is set).
    federation_endpoint: str | None = None
    signin_saml_url: str | None = None


class _ConnectorBase(_Model):
    id: str = Field(pattern=_ID_RE)
    name: str = ""
    enabled: bool = True


class OidcConnectorSettings(_ConnectorBase):
    type: Literal["oidc"]
    issuer: str
    client_id: str = Field(min_length=1)
    client_secret: SecretStr | None = None
    token_endpoint_auth_method: Literal["client_secret_basic", "client_secret_post", "none"] = (
        "client_secret_basic")  # noqa: S105 - a method name, not a secret
    scopes: list[str] = Field(default_factory=lambda: ["openid", "email", "profile", "groups"])
    email_claim: str = "email"
    name_claim: str = "name"
    groups_claim: str = "groups"
    use_userinfo: bool = False
    mfa_amr_values: list[str] = Field(default_factory=lambda: ["mfa", "otp", "hwk", "swk", "fpt", "sc"])
    mfa_acr_values: list[str] = Field(default_factory=list)
    allowed_algs: list[str] = Field(default_factory=lambda: ["RS256", "ES256", "PS256", "EdDSA"])
    clock_skew: int = Field(60, ge=0, le=300)
    keep_claims: list[str] = Field(default_factory=list, description="extra claims kept for rules")
    http_timeout: float = Field(5.0, gt=0, le=60)
    discovery_ttl: int = Field(3600, ge=60)
    # Keep the ID token (apart from the session, until it expires, at most 1 h) so rules with
    # `path: passthrough` redeem it directly with AssumeRoleWithWebIdentity (its issuer must be
    # registered as an IAM OIDC provider with this client id as audience).
    aws_passthrough: bool = False
    # Rules and tags trust the e-mail, so one the IdP does not mark `email_verified: true` refuses the
    # sign-in. Only for IdPs that never send the claim (and verify addresses themselves).
    insecure_accept_unverified_email: bool = False
    # Continuous evaluation (README "Re-checking users with the IdP"): while a session or CLI token is
    # used, re-check the user with the IdP every `reverify_interval` seconds (refresh token, else the
    # access token at userinfo), so a user disabled or moved out of a group loses the roles within it.
    reverify_interval: int = Field(900, ge=0, le=86400, description="seconds; 0 = off")
    reverify_grace: int = Field(3600, ge=0, le=7 * 86400,
                                description="seconds since the last good check an unreachable IdP is tolerated")
    reverify_unreachable: Literal["fail_closed", "fail_open"] = "fail_closed"
    # Ask for a refresh token: adds the `offline_access` scope and (offline_access_consent) prompt=consent,
    # which OIDC Core §11 asks for and npm oidc-provider enforces (it drops offline_access without it).
    request_offline_access: bool = False
    offline_access_consent: bool = True

    @field_validator("reverify_interval")
    @classmethod
    def _interval(cls, v: int) -> int:
        if 0 < v < 60:
            raise ValueError("0 (off) or at least 60 seconds (each check is a call to the IdP)")
        return v

    @model_validator(mode="after")
    def _offline_access(self) -> OidcConnectorSettings:
        if self.request_offline_access and self.reverify_interval == 0:
            raise ValueError("request_offline_access only serves reverify: it needs reverify_interval > 0")
        return self

    def request_scopes(self) -> list[str]:
        """``scopes`` plus ``offline_access`` when a refresh token is asked for."""
        if self.request_offline_access and "offline_access" not in self.scopes:
            return [*self.scopes, "offline_access"]
        return list(self.scopes)

    @field_validator("issuer")
    @classmethod
    def _issuer(cls, v: str) -> str:
        u = urlsplit(v)
        if u.scheme not in ("https", "http") or not u.netloc:
            raise ValueError("must be an http(s) URL")
        return v

    @field_validator("scopes")
    @classmethod
    def _openid(cls, v: list[str]) -> list[str]:
        if "openid" not in v:
            raise ValueError("must include 'openid'")
        return v


SAML_PRESETS: dict[str, dict[str, str]] = {
    # attribute names per IdP family: email, name, groups
    "none": {"email": "email", "name": "name", "groups": "groups"},
    "adfs": {"email": "http://schemas.xmlsoap.org/ws/2005/05/identity/claims/emailaddress",
             "name": "http://schemas.xmlsoap.org/ws/2005/05/identity/claims/name",
             "groups": "http://schemas.xmlsoap.org/claims/Group"},
    "entra": {"email": "http://schemas.xmlsoap.org/ws/2005/05/identity/claims/emailaddress",
              "name": "http://schemas.microsoft.com/identity/claims/displayname",
              "groups": "http://schemas.microsoft.com/ws/2008/06/identity/claims/groups"},
    "okta": {"email": "email", "name": "displayName", "groups": "groups"},
    "google": {"email": "email", "name": "name", "groups": "groups"},
    "keycloak": {"email": "email", "name": "name", "groups": "groups"},
}


class SamlConnectorSettings(_ConnectorBase):
    """An upstream SAML 2.0 IdP; the bridge is its service provider (python3-saml, strict)."""

    type: Literal["saml"]
    # Where the IdP's metadata comes from: a URL, a file, or explicit values (exactly one way).
    metadata_url: str | None = None
    metadata_file: Path | None = None
    metadata_refresh: int = Field(86400, ge=300, description="seconds between metadata refreshes")
    idp_entity_id: str | None = None
    sso_url: str | None = None
    idp_cert_files: list[Path] = Field(default_factory=list)
    # Our side (SP). Defaults: entity id <base_url>/sp/<id>/metadata.xml, ACS <base_url>/callback/<id>.
    sp_entity_id: str | None = None
    sp_key_file: Path | None = None
    sp_cert_file: Path | None = None
    sign_authn_requests: bool = False
    want_assertions_encrypted: bool = False
    name_id_format: str = "urn:oasis:names:tc:SAML:1.1:nameid-format:unspecified"
    attribute_preset: Literal["none", "adfs", "entra", "okta", "google", "keycloak"] = "none"
    email_attribute: str | None = None
    name_attribute: str | None = None
    groups_attribute: str | None = None
    mfa_authn_contexts: list[str] = Field(default_factory=lambda: [
        "http://schemas.microsoft.com/claims/multipleauthn",
        "urn:oasis:names:tc:SAML:2.0:ac:classes:MobileTwoFactorContract",
        "urn:oasis:names:tc:SAML:2.0:ac:classes:TimeSyncToken",
        "http://schemas.microsoft.com/ws/2012/12/authmethod/phoneappnotification"])
    clock_skew: int = Field(60, ge=0, le=300)
    http_timeout: float = Field(5.0, gt=0, le=60)
    insecure_allow_idp_initiated: bool = False
    insecure_allow_response_only_signing: bool = False
    # The IdP is already wired to AWS (Okta/Entra "AWS app"): offer exactly the roles in its
    # https://aws.amazon.com/SAML/Attributes/Role attribute and redeem its response as-is
    # (within STS's 5 minutes). Accepts AWS's Audience/Recipient besides ours.
    aws_passthrough: bool = False
    # SAML has no back channel to re-check a user: a shorter session for this connector's users bounds
    # how long a user disabled at the IdP keeps access (None: session.absolute_timeout).
    max_session: int | None = Field(None, ge=300, le=7 * 86400, description="seconds since sign-in")

    def attribute(self, what: str) -> str:
        explicit = {"email": self.email_attribute, "name": self.name_attribute, "groups": self.groups_attribute}
        return explicit[what] or SAML_PRESETS[self.attribute_preset][what]

    @model_validator(mode="after")
    def _one_source(self) -> SamlConnectorSettings:
        explicit = bool(self.idp_entity_id or self.sso_url or self.idp_cert_files)
        sources = sum([self.metadata_url is not None, self.metadata_file is not None, explicit])
        problems = []
        if sources != 1:
            problems.append("give exactly one of metadata_url, metadata_file, or idp_entity_id + sso_url + "
                            "idp_cert_files")
        elif explicit and not (self.idp_entity_id and self.sso_url and self.idp_cert_files):
            problems.append("explicit IdP settings need all of idp_entity_id, sso_url and idp_cert_files")
        if (self.sp_key_file is None) != (self.sp_cert_file is None):
            problems.append("sp_key_file and sp_cert_file go together")
        if (self.sign_authn_requests or self.want_assertions_encrypted) and self.sp_key_file is None:
            problems.append("sign_authn_requests / want_assertions_encrypted need sp_key_file and sp_cert_file")
        if problems:
            raise ValueError("; ".join(problems))
        return self


class DevUser(_Model):
    subject: str = Field(min_length=1)
    email: str | None = None
    name: str | None = None
    groups: list[str] = Field(default_factory=list)
    claims: dict[str, Any] = Field(default_factory=dict)
    mfa: bool = False


class DevConnectorSettings(_ConnectorBase):
    """Pick-a-user form. Only for demos and local testing: needs ``insecure_dev_login: true``."""

    type: Literal["dev"]
    users: list[DevUser] = Field(min_length=1)


ConnectorSettings = Annotated[OidcConnectorSettings | SamlConnectorSettings | DevConnectorSettings,
                              Field(discriminator="type")]


class AdminSettings(_Model):
    """Who may use the admin pages (explain any sample identity): members of these groups."""

    groups: list[str] = Field(default_factory=list, description="empty: no admins, the admin pages are off")
    require_mfa: bool = Field(True, description="admin pages need a sign-in with MFA")


class Settings(_Model):
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
    # Where the config file lives: relative paths (keys_dir, *_file, rules_file) resolve against it.
    source_dir: Path = Field(default=Path("."), exclude=True)
    # The file it was read from (None when built from a dict): rules reload re-reads its mapping.
    source_file: Path | None = Field(default=None, exclude=True)
    _mapping_raw: Any = PrivateAttr(default=None)

    @field_validator("base_url")
    @classmethod
    def _base(cls, v: str) -> str:
        u = urlsplit(v)
        if u.scheme not in ("https", "http") or not u.netloc or u.query or u.fragment:
            raise ValueError("must be an http(s) URL with no query, e.g. https://bridge.example.com")
        return v.rstrip("/")

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

    def is_admin(self, groups: tuple[str, ...] | list[str], mfa: bool) -> bool:
        return bool(set(groups) & set(self.admin.groups)) and (mfa or not self.admin.require_mfa)

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
    def enabled_connectors(self) -> list[OidcConnectorSettings | SamlConnectorSettings | DevConnectorSettings]:
        return [c for c in self.connectors if c.enabled]

    def warnings(self) -> list[str]:
        """Insecure or unusual settings to warn about at startup (never fatal)."""
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
        if urlsplit(self.issuer_url).scheme != "https":
            out.append(f"issuer {self.issuer_url} is not https: AWS only trusts https OIDC issuers.")
        for c in self.enabled_connectors:
            if isinstance(c, OidcConnectorSettings) and urlsplit(c.issuer).scheme != "https":
                out.append(f"connector {c.id}: upstream issuer {c.issuer} is plain http.")
            if isinstance(c, OidcConnectorSettings) and c.insecure_accept_unverified_email:
                out.append(f"connector {c.id}: insecure_accept_unverified_email trusts e-mail addresses the IdP "
                           "has not verified (rules and tags on email can be fooled).")
            if isinstance(c, SamlConnectorSettings):
                if c.insecure_allow_idp_initiated:
                    out.append(f"connector {c.id}: insecure_allow_idp_initiated accepts unsolicited SAML "
                               "responses (no InResponseTo check).")
                if c.insecure_allow_response_only_signing:
                    out.append(f"connector {c.id}: insecure_allow_response_only_signing accepts assertions "
                               "that are not signed themselves.")
        m = self.metrics
        if m.enabled and m.bearer_token is None and m.listen is None:
            out.append("/metrics is open to anyone who reaches the bridge: set metrics.bearer_token_file and/or "
                       "metrics.listen (a separate, internal address).")
        if self.mapping.legacy_rules:
            names = ", ".join(self.mapping.legacy_rules[:5]) + (" …" if len(self.mapping.legacy_rules) > 5 else "")
            out.append(f"mapping: {len(self.mapping.legacy_rules)} rule(s) use the old flat form ({names}); they "
                       "still work, but write match:/grants: (README, Rules).")
        return out


def _interpolate(node: Any, path: str, problems: list[str]) -> Any:
    if isinstance(node, dict):
        return {k: _interpolate(v, f"{path}.{k}" if path else str(k), problems) for k, v in node.items()}
    if isinstance(node, list):
        return [_interpolate(v, f"{path}[{i}]", problems) for i, v in enumerate(node)]
    if isinstance(node, str) and "${" in node:
        def sub(m: re.Match[str]) -> str:
            value = os.environ.get(m[1])
            if value is None or (value == "" and m[2] is not None):  # ":-" = unset or empty, as in sh
                if m[2] is None:
                    problems.append(f"{path}: environment variable {m[1]} is not set")
                    return ""
                return m[2]
            return value
        out = _ENV_RE.sub(sub, node)
        # A whole-value ${X} that became "true"/"123" should type like YAML would.
        if _ENV_RE.fullmatch(node) and out.lower() in ("true", "false"):
            return out.lower() == "true"
        return out
    return node


def _read_secret_files(node: Any, path: str, base: Path, problems: list[str]) -> Any:
    if isinstance(node, list):
        return [_read_secret_files(v, f"{path}[{i}]", base, problems) for i, v in enumerate(node)]
    if not isinstance(node, dict):
        return node
    out = {k: _read_secret_files(v, f"{path}.{k}" if path else k, base, problems) for k, v in node.items()}
    for name in SECRET_OPTIONS:
        file_key = f"{name}_file"
        if file_key not in out:
            continue
        where = f"{path}.{file_key}" if path else file_key
        if name in out:
            problems.append(f"{where}: give {name} or {file_key}, not both")
        p = Path(str(out.pop(file_key)))
        p = p if p.is_absolute() else base / p
        try:
            out[name] = p.read_text(encoding="utf-8").rstrip("\r\n")
        except OSError as e:
            problems.append(f"{where}: cannot read {p} ({e.strerror})")
    return out


def _loc(loc: tuple[str | int, ...]) -> str:
    parts: list[str] = []
    for item in loc:
        if isinstance(item, int):
            parts.append(f"[{item}]")
        elif item in ("oidc", "saml", "dev") and parts and parts[-1].endswith("]"):
            continue  # discriminator tag pydantic adds; the user never wrote it
        else:
            parts.append(("." if parts else "") + str(item))
    return "".join(parts) or "(top level)"


def _semantic_problems(s: Settings) -> list[str]:
    problems = []
    ids = [c.id for c in s.connectors]
    for dup in sorted({i for i in ids if ids.count(i) > 1}):
        problems.append(f"connectors: id {dup!r} is used more than once")
    for i, c in enumerate(s.connectors):
        if isinstance(c, DevConnectorSettings) and c.enabled and not s.insecure_dev_login:
            problems.append(f"connectors[{i}]: the dev connector {c.id!r} needs insecure_dev_login: true "
                            "(it signs anyone in as any user)")
        if isinstance(c, OidcConnectorSettings):
            if c.token_endpoint_auth_method != "none" and c.client_secret is None:  # noqa: S105
                problems.append(f"connectors[{i}].client_secret: required for {c.token_endpoint_auth_method} "
                                "(or set client_secret_file)")
            bad = [a for a in c.allowed_algs if a in ("none", "HS256", "HS384", "HS512")]
            if bad:
                problems.append(f"connectors[{i}].allowed_algs: {bad} are not allowed for ID tokens")
    for i, c in enumerate(s.connectors):
        if isinstance(c, SamlConnectorSettings):
            if c.max_session is not None and c.max_session > s.session.absolute_timeout:
                problems.append(f"connectors[{i}].max_session: longer than session.absolute_timeout "
                                "(it can only shorten sessions)")
            for name in ("metadata_file", "sp_key_file", "sp_cert_file"):
                path = getattr(c, name)
                if path is not None and not s.resolve(path).is_file():
                    problems.append(f"connectors[{i}].{name}: {s.resolve(path)} does not exist")
            for j, path in enumerate(c.idp_cert_files):
                if not s.resolve(path).is_file():
                    problems.append(f"connectors[{i}].idp_cert_files[{j}]: {s.resolve(path)} does not exist")
    if s.issuer.key_alg not in SUPPORTED_ALGS:
        problems.append(f"issuer.key_alg: use one of {SUPPORTED_ALGS}")
    if s.aws.partition not in PARTITIONS:
        problems.append("aws.partition: unknown partition")
    for name in ("ssl_ca_file", "ssl_cert_file", "ssl_key_file"):
        path = getattr(s.redis, name)
        if path is not None and not s.resolve(path).is_file():
            problems.append(f"redis.{name}: {s.resolve(path)} does not exist")
    if s.audit.sink == "file" and s.audit.path is not None and not s.resolve(s.audit.path).parent.is_dir():
        problems.append(f"audit.path: folder {s.resolve(s.audit.path).parent} does not exist")
    if s.metrics.listen is not None and listen_port(s.metrics.listen) == listen_port(s.listen):
        problems.append("metrics.listen: must be another port than listen")
    if s.session.idle_timeout > s.session.absolute_timeout:
        problems.append("session.idle_timeout: longer than session.absolute_timeout")
    return problems


FileStamp = tuple[int, int, int] | None  # (mtime_ns, size, inode); None = missing


def file_stamp(path: Path) -> FileStamp:
    """What tells a changed file from an unchanged one, cheaply. Taken *before* reading a file, so a
    change made while it is being read still shows as a change later."""
    try:
        st = os.stat(path)
    except OSError:
        return None
    return (st.st_mtime_ns, st.st_size, st.st_ino)


def _yaml(text: str) -> Any:
    # libyaml when present, and no cyclic GC while building the tree: a 10,000-rule file parses in a
    # fraction of the time (bench/bench_rules.py).
    with gc_paused():
        return yaml.load(text, Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))  # noqa: S506 - a safe loader


def _yaml_problem(where: str, e: yaml.YAMLError) -> str:
    mark = getattr(e, "problem_mark", None)
    line = f"line {mark.line + 1}" if mark else "?"
    return f"{where} ({line}): not valid YAML: {getattr(e, 'problem', e)}"


def rules_file_path(rules_file: str | None, source_dir: Path) -> Path | None:
    """``mapping.rules_file`` resolved against the config's folder."""
    if not rules_file:
        return None
    p = Path(rules_file)
    return p if p.is_absolute() else source_dir / p


def _read_rules_file(path: Path, label: str, problems: list[str]) -> dict[str, Any]:
    """The rules file (YAML, or JSON when it ends in .json — parsed faster, for generated rule sets):
    a list of rules, or a mapping with ``rules`` and/or ``accounts``."""
    try:
        text = path.read_text(encoding="utf-8")
        doc = json.loads(text) if path.suffix.lower() == ".json" else _yaml(text)
    except OSError as e:
        problems.append(f"mapping.rules_file: cannot read {path} ({e.strerror})")
        return {}
    except yaml.YAMLError as e:
        problems.append(_yaml_problem(label, e))
        return {}
    except json.JSONDecodeError as e:
        problems.append(f"{label} (line {e.lineno}): not valid JSON: {e.msg}")
        return {}
    if isinstance(doc, list):
        doc = {"rules": doc}
    if doc is None:
        doc = {}
    if not isinstance(doc, dict):
        problems.append(f"{label}: must be a list of rules, or a mapping with rules and accounts")
        return {}
    for k in [k for k in doc if k not in ("rules", "accounts", "expected_rules")]:
        problems.append(f"{label}:{k}: unknown key (a rules file holds rules, accounts and expected_rules)")
        del doc[k]
    if "${" not in text:  # nothing to interpolate: skip walking 10,000 rules
        return doc
    out: dict[str, Any] = _interpolate(doc, f"{label}:", problems)
    return out


def load_mapping_section(raw: Any, source_dir: Path, *, partition: str,
                         connectors: list[str] | None) -> tuple[MappingSettings | None, list[str]]:
    """The ``mapping:`` section plus its rules file, validated and compiled; problems prefixed with where
    they are (``mapping.rules[2]…`` or ``rules.yaml:rules[2]…``)."""
    with gc_paused():
        return _load_mapping_section(raw, source_dir, partition, connectors)


def _load_mapping_section(raw: Any, source_dir: Path, partition: str,
                          connectors: list[str] | None) -> tuple[MappingSettings | None, list[str]]:
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        return None, ["mapping: must be a mapping (rules, accounts, rules_file, reload_interval)"]
    problems: list[str] = []
    doc = dict(raw)
    origin = dict.fromkeys(doc, "mapping.")
    rules_file = doc.get("rules_file")
    stamps: dict[str, FileStamp] = {}
    if rules_file is not None and not (isinstance(rules_file, str) and rules_file):
        problems.append("mapping.rules_file: must be a file path")
    elif rules_file:
        path = rules_file_path(rules_file, source_dir)
        assert path is not None
        stamps[str(path)] = file_stamp(path)
        for k, v in _read_rules_file(path, rules_file, problems).items():
            if doc.get(k) is not None:
                problems.append(f"mapping.{k}: given here and in {rules_file}; keep one")
            doc[k] = v
            origin[k] = f"{rules_file}:"
    try:
        mapping = load_mapping(doc, partition=partition, connectors=connectors)
        mapping.file_stamps.update(stamps)
    except ConfigError as e:
        for p in e.problems:
            key = re.match(r"[A-Za-z_]+", p)
            if p.startswith("(top level)"):
                problems.append("mapping" + p.removeprefix("(top level)"))
            else:
                problems.append(origin.get(key[0] if key else "", "mapping.") + p)
        return None, problems
    return (mapping if not problems else None), problems


def reload_mapping(settings: Settings) -> MappingSettings:
    """Read the mapping again (the config file's ``mapping:`` and its rules file); raise ConfigError
    listing every problem. Only the mapping changes: other settings need a restart."""
    raw: Any = settings._mapping_raw
    problems: list[str] = []
    stamps: dict[str, FileStamp] = {}
    if settings.source_file is not None:
        stamps[str(settings.source_file)] = file_stamp(settings.source_file)
        try:
            doc = _yaml(settings.source_file.read_text(encoding="utf-8"))
        except OSError as e:
            raise ConfigError([f"{settings.source_file}: cannot read config ({e.strerror})"]) from None
        except yaml.YAMLError as e:
            raise ConfigError([_yaml_problem(str(settings.source_file), e)]) from None
        raw = _interpolate(doc.get("mapping") if isinstance(doc, dict) else None, "mapping", problems)
    mapping, more = load_mapping_section(raw, settings.source_dir, partition=settings.aws.partition,
                                         connectors=[c.id for c in settings.connectors])
    problems += more
    if problems or mapping is None:
        raise ConfigError(problems)
    mapping.file_stamps.update(stamps)
    return mapping


def settings_from_dict(raw: Any, *, source_dir: Path = Path("."), source_file: Path | None = None) -> Settings:
    """Build and validate settings from a parsed YAML document; raise ConfigError with every problem."""
    problems: list[str] = []
    if not isinstance(raw, dict):
        raise ConfigError(["(top level): the config must be a YAML mapping"])
    data = _interpolate(raw, "", problems)
    data = _read_secret_files(data, "", source_dir, problems)
    data["source_dir"] = source_dir
    data["source_file"] = source_file
    raw_mapping = data.pop("mapping", None)
    settings: Settings | None = None
    try:
        settings = Settings.model_validate(data)
    except ValidationError as e:
        problems += [f"{_loc(err['loc'])}: {err['msg'].removeprefix('Value error, ')}" for err in e.errors()]
    # The mapping is checked even when other sections are broken, so every problem shows at once.
    aws = data.get("aws") if isinstance(data.get("aws"), dict) else {}
    connectors = data.get("connectors") if isinstance(data.get("connectors"), list) else []
    mapping, more = load_mapping_section(
        raw_mapping, source_dir, partition=str(aws.get("partition", "aws")),
        connectors=[str(c.get("id")) for c in connectors if isinstance(c, dict) and "id" in c])
    problems += more
    if settings is None or mapping is None:
        raise ConfigError(problems)
    settings.mapping = mapping
    settings._mapping_raw = raw_mapping
    problems += _semantic_problems(settings)
    if problems:
        raise ConfigError(problems)
    return settings


def load_settings(path: str | os.PathLike[str]) -> Settings:
    """Read ``path`` (YAML) into Settings; raise ConfigError listing every problem."""
    p = Path(path)
    stamp = file_stamp(p.resolve())
    try:
        text = p.read_text(encoding="utf-8")
    except OSError as e:
        raise ConfigError([f"{p}: cannot read config ({e.strerror})"]) from None
    try:
        raw = _yaml(text)
    except yaml.YAMLError as e:
        raise ConfigError([_yaml_problem(str(p), e)]) from None
    settings = settings_from_dict(raw, source_dir=p.resolve().parent, source_file=p.resolve())
    settings.mapping.file_stamps[str(p.resolve())] = stamp
    return settings
