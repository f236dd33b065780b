"""Settings of the ``saml`` connector (``bridge.upstream.saml``): an upstream SAML 2.0 IdP, and the
attribute-name presets per IdP family.

pydantic only (no python3-saml, no requests), so loading the config stays light.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, model_validator

from bridge.upstream.base_settings import ConnectorSettingsBase

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


class SamlConnectorSettings(ConnectorSettingsBase):
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


    def warnings(self) -> list[str]:
        out = []
        if self.insecure_allow_idp_initiated:
            out.append(f"connector {self.id}: insecure_allow_idp_initiated accepts unsolicited SAML "
                       "responses (no InResponseTo check).")
        if self.insecure_allow_response_only_signing:
            out.append(f"connector {self.id}: insecure_allow_response_only_signing accepts assertions "
                       "that are not signed themselves.")
        return out
