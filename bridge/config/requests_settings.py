"""``requests:`` settings: just-in-time access requests and the webhooks that tell approvers."""

from __future__ import annotations

from typing import Literal
from urllib.parse import urlsplit

from pydantic import Field, SecretStr, ValidationInfo, field_validator, model_validator

from bridge.domain.settings_base import SettingsModel
from bridge.domain.webhook_address import blocked_host, is_loopback


class WebhookSecretHeader(SettingsModel):
    """A header sent with every notification, so the receiver can tell the bridge's calls apart."""

    name: str = Field(pattern=r"^[A-Za-z0-9-]{1,64}$", description="the header's name, e.g. X-Bridge-Secret")
    value: SecretStr = Field(description="the header's value (a secret: write it as ${ENV_VAR})")


class WebhookSettings(SettingsModel):
    """Where access-request notifications go: ``json`` (the event as it is), ``slack`` (an incoming
    webhook's ``{"text": …}`` payload, which Slack-compatible chats accept) or ``teams`` (an Adaptive Card
    for a Teams incoming webhook). Never followed through a redirect; never to a link-local address."""

    # Declared before url, whose check reads it.
    insecure_allow_http: bool = Field(False, description="allow a plain http receiver outside loopback (the "
                                                         "secret header and reasons travel unencrypted; warned)")
    url: str = Field(description="where to POST each access-request event (https; http only to loopback)")
    format: Literal["json", "slack", "teams"] = Field("json", description="json: the event as it is; slack: a "
                                                      "{text, blocks} payload for Slack-compatible chats; teams: "
                                                      "an Adaptive Card for a Teams incoming webhook")
    secret_header: WebhookSecretHeader | None = None

    @field_validator("url")
    @classmethod
    def _url(cls, v: str, info: ValidationInfo) -> str:
        u = urlsplit(v)
        try:
            host = u.hostname
            u.port  # noqa: B018 - raises on a port that is not a number
        except ValueError:
            host = None
        if u.scheme not in ("https", "http") or not host:
            raise ValueError("must be an http(s) URL, e.g. https://hooks.slack.com/services/…")
        if (why := blocked_host(host)) is not None:
            raise ValueError(f"{host} is {why}: webhooks are never sent there (link-local and metadata "
                             "addresses are refused)")
        if u.scheme == "http" and not is_loopback(host) and not info.data.get("insecure_allow_http"):
            raise ValueError(f"{host} would be reached over plain http: use https (plain http only to loopback, "
                             "or with insecure_allow_http: true on this webhook)")
        return v

    @model_validator(mode="after")
    def _header(self) -> WebhookSettings:
        if self.secret_header is not None and self.secret_header.name.lower() in (
                "host", "content-type", "content-length", "user-agent", "connection", "transfer-encoding"):
            raise ValueError(f"secret_header.name {self.secret_header.name!r} is a header the bridge sets itself")
        return self


class RequestsSettings(SettingsModel):
    """Access requests (docs/access-requests.md): how long they wait, are kept, and who is told."""

    pending_ttl: int = Field(86400, ge=300, le=30 * 86400, description="seconds a request waits for a decision")
    retention: int = Field(7 * 86400, ge=3600, le=90 * 86400,
                           description="seconds a decided or ended request stays listed")
    webhooks: list[WebhookSettings] = Field(default_factory=list)
    webhook_attempts: int = Field(3, ge=1, le=10, description="tries per notification (bounded retries)")
    webhook_timeout: float = Field(5.0, gt=0, le=30, description="seconds per webhook call")
    webhook_backoff: float = Field(1.0, ge=0, le=60, description="seconds before the 2nd try; doubles after")
