"""``scim:`` settings: off unless a bearer token is configured (``token_file``, like every ``*_file`` secret)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Literal

from pydantic import Field, SecretStr, field_validator

from bridge.domain.settings_base import SettingsModel

if TYPE_CHECKING:
    from bridge.config.schema import Settings

MIN_TOKEN = 32  # characters: a bearer token an IdP holds must not be guessable within any rate limit


class ScimSettings(SettingsModel):
    """SCIM 2.0 provisioning from the IdP (Okta, Entra ID): deactivations end sessions at once, groups pushed
    by SCIM decide access at each use (docs/scim.md)."""

    # Read from ``token_file`` at startup (like other secrets); the IdP sends ``Authorization: Bearer <token>``.
    token: SecretStr | None = Field(None, description="the bearer token the IdP sends (write token_file: a file "
                                                      "holding it); unset: /scim/v2 is off (404)")
    attribute: Literal["userName", "externalId", "emails"] = Field(
        "userName", description="the SCIM attribute that names a user to the bridge (emails: any of them)")
    claim: str = Field("email", min_length=1, max_length=128,
                       description="what it is compared with in a signed-in identity: email, subject, or the "
                                   "name of a claim/attribute (compared ignoring case)")
    connectors: dict[str, str] = Field(
        default_factory=dict, description="connector id → claim, for the connectors SCIM governs (each with its "
                                          "own claim); empty: every connector, with `claim`")
    groups: Literal["replace", "merge", "off"] = Field(
        "replace", description="a SCIM-known user's groups at each decision: replace (SCIM's groups only), merge "
                               "(SCIM's added to the IdP's), off (SCIM decides only active/inactive)")

    @field_validator("token")
    @classmethod
    def _token(cls, v: SecretStr | None) -> SecretStr | None:
        if v is not None and len(v.get_secret_value().strip()) < MIN_TOKEN:
            raise ValueError(f"must be at least {MIN_TOKEN} characters (e.g. `python -c 'import secrets; "
                             "print(secrets.token_urlsafe(32))'`)")
        return v

    @property
    def enabled(self) -> bool:
        return self.token is not None


def scim_problems(s: Settings) -> list[str]:
    """``scim.connectors`` must name configured connectors."""
    known = {c.id for c in s.connectors}
    return [f"scim.connectors: {cid!r} is not a configured connector (known: {sorted(known)})"
            for cid in s.scim.connectors if cid not in known]
