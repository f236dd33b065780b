"""Settings of the ``oidc`` connector (``bridge.upstream.oidc``): an upstream OpenID Connect provider.

pydantic only (no authlib, no requests), so loading the config stays light.
"""

from __future__ import annotations

from typing import Literal
from urllib.parse import urlsplit

from pydantic import Field, SecretStr, field_validator, model_validator

from bridge.domain.settings_base import renamed
from bridge.upstream.apple_settings import APPLE_ISSUER, AppleSettings, apple_defaults, apple_problems
from bridge.upstream.base import Connector, ConnectorPolicy
from bridge.upstream.base_settings import ConnectorEnv, ConnectorSettingsBase
from bridge.upstream.stepup_settings import StepUpSettings


class OidcConnectorSettings(ConnectorSettingsBase):
    type: Literal["oidc"]
    # apple: Sign in with Apple (docs/idps/apple.md): a minted client secret, form-POST callback, string booleans.
    preset: Literal["generic", "apple"] = "generic"
    apple: AppleSettings | None = None
    issuer: str
    client_id: str = Field(min_length=1)
    client_secret: SecretStr | None = None
    token_endpoint_auth_method: Literal["client_secret_basic", "client_secret_post", "none"] = (
        "client_secret_basic")  # noqa: S105 - a method name, not a secret
    scopes: list[str] = Field(default_factory=lambda: ["openid", "email", "profile", "groups"])
    email_claim: str = "email"
    name_claim: str = "name"
    groups_claim: str = "groups"
    # The groups claim is one string listing several groups (LemonLDAP::NG: "admins; users"): split it here.
    groups_delimiter: str | None = Field(None, min_length=1)
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
    # Continuous evaluation (docs/configuration.md "Re-checking users with the IdP"): while a session or CLI token is
    # used, re-check the user with the IdP every `reverify_interval` seconds (refresh token, else the
    # access token at userinfo), so a user disabled or moved out of a group loses the roles within it.
    reverify_interval: int = Field(900, ge=0, le=86400, description="seconds; 0 = off")
    reverify_grace: int = Field(3600, ge=0, le=7 * 86400,
                                description="seconds since the last good check an unreachable IdP is tolerated")
    reverify_unreachable: Literal["fail_closed", "insecure_fail_open"] = "fail_closed"
    # Ask for a refresh token: adds the `offline_access` scope and (offline_access_consent) prompt=consent,
    # which OIDC Core §11 asks for and npm oidc-provider enforces (it drops offline_access without it).
    request_offline_access: bool = False
    offline_access_consent: bool = True
    # Step-up MFA (docs/step-up-mfa.md): prompt=login, max_age, acr_values of a step-up sign-in.
    step_up: StepUpSettings = Field(default_factory=StepUpSettings)

    @field_validator("reverify_interval")
    @classmethod
    def _interval(cls, v: int) -> int:
        if 0 < v < 60:
            raise ValueError("0 (off) or at least 60 seconds (each check is a call to the IdP)")
        return v

    @field_validator("reverify_unreachable", mode="before")
    @classmethod
    def _renamed(cls, v: object) -> object:
        return renamed(v, {"fail_open": "insecure_fail_open"}, "reverify_unreachable")

    @model_validator(mode="after")
    def _offline_access(self) -> OidcConnectorSettings:
        if problems := apple_problems(self):
            raise ValueError("; ".join(problems))
        for k, v in (apple_defaults(self.model_fields_set) if self.preset == "apple" else {}).items():
            object.__setattr__(self, k, v)
        if self.request_offline_access and self.reverify_interval == 0:
            raise ValueError("request_offline_access only serves reverify: it needs reverify_interval > 0")
        return self

    def policy(self) -> ConnectorPolicy:
        return ConnectorPolicy(reverify_interval=self.reverify_interval, reverify_grace=self.reverify_grace,
                               reverify_fail_closed=self.reverify_unreachable == "fail_closed",
                               groups_claim=self.groups_claim, passthrough_token=self.aws_passthrough,
                               mfa_max_age=self.step_up.mfa_max_age)

    def open(self, env: ConnectorEnv) -> Connector:
        from bridge.upstream.oidc import open_oidc  # authlib, requests: only once the service starts

        return open_oidc(self, on_stale=env.stale_for(self.id))

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

    def warnings(self) -> list[str]:
        out = []
        if urlsplit(self.issuer).scheme != "https":
            out.append(f"connector {self.id}: upstream issuer {self.issuer} is plain http.")
        if self.reverify_unreachable == "insecure_fail_open" and self.reverify_interval:
            out.append(f"connector {self.id}: reverify_unreachable: insecure_fail_open keeps a user's roles while the "
                       "IdP cannot be reached past reverify_grace: a user disabled at the IdP meanwhile keeps them.")
        u = urlsplit(self.issuer)
        if self.aws_passthrough and (u.scheme != "https" or u.port is not None or u.query):
            out.append(f"connector {self.id}: aws_passthrough redeems the IdP's ID token at AWS, which registers "
                       f"only https issuers without a port as IAM OIDC providers; {self.issuer} is not one.")
        if self.preset == "apple" and self.issuer != APPLE_ISSUER:
            out.append(f"connector {self.id}: preset apple with issuer {self.issuer}, not {APPLE_ISSUER}.")
        if self.insecure_accept_unverified_email:
            out.append(f"connector {self.id}: insecure_accept_unverified_email trusts e-mail addresses the IdP "
                       "has not verified (rules and tags on email can be fooled).")
        return out
