"""Settings of the ``saml`` connector (``bridge.upstream.saml``): an upstream SAML 2.0 IdP, and the
attribute-name presets per IdP family.

pydantic only (no python3-saml, no requests), so loading the config stays light.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal
from urllib.parse import urlsplit

from pydantic import Field, model_validator

from bridge.upstream.base import Connector, ConnectorPolicy
from bridge.upstream.base_settings import ConnectorEnv, ConnectorSettingsBase
from bridge.upstream.stepup_settings import StepUpSettings

# LDAP attribute names in their SAML 2.0 "uri" form (urn:oid:..., what Shibboleth and SimpleSAMLphp's
# name2oid send; eduPerson and inetOrgPerson schemas).
OID_MAIL = "urn:oid:0.9.2342.19200300.100.1.3"
OID_UID = "urn:oid:0.9.2342.19200300.100.1.1"
OID_DISPLAY_NAME = "urn:oid:2.16.840.1.113730.3.1.241"
OID_CN = "urn:oid:2.5.4.3"
OID_IS_MEMBER_OF = "urn:oid:1.3.6.1.4.1.5923.1.5.1.1"
OID_MEMBER_OF = "urn:oid:1.2.840.113556.1.2.102"
OID_EPPN = "urn:oid:1.3.6.1.4.1.5923.1.1.1.6"
OID_ENTITLEMENT = "urn:oid:1.3.6.1.4.1.5923.1.1.1.7"

# Attribute names per IdP family: for each of email, name and groups the names read, the first one the
# assertion has wins; "subject" lists stable user ids to suggest for subject_attribute (never used unasked).
SAML_PRESETS: dict[str, dict[str, tuple[str, ...]]] = {
    "none": {"email": ("email",), "name": ("name",), "groups": ("groups",), "subject": ()},
    "adfs": {"email": ("http://schemas.xmlsoap.org/ws/2005/05/identity/claims/emailaddress",),
             "name": ("http://schemas.xmlsoap.org/ws/2005/05/identity/claims/name",),
             "groups": ("http://schemas.xmlsoap.org/claims/Group",), "subject": ()},
    "entra": {"email": ("http://schemas.xmlsoap.org/ws/2005/05/identity/claims/emailaddress",),
              "name": ("http://schemas.microsoft.com/identity/claims/displayname",),
              "groups": ("http://schemas.microsoft.com/ws/2008/06/identity/claims/groups",),
              "subject": ("http://schemas.microsoft.com/identity/claims/objectidentifier",)},
    "okta": {"email": ("email",), "name": ("displayName",), "groups": ("groups",), "subject": ()},
    "google": {"email": ("email",), "name": ("name",), "groups": ("groups",), "subject": ()},
    "keycloak": {"email": ("email",), "name": ("name",), "groups": ("groups",), "subject": ()},
    # LDAP-backed IdPs (SimpleSAMLphp, Shibboleth, many ADFS setups): friendly names or urn:oid forms.
    "ldap": {"email": ("mail", OID_MAIL), "name": ("displayName", OID_DISPLAY_NAME, "cn", OID_CN),
             "groups": ("memberOf", OID_MEMBER_OF, "isMemberOf", OID_IS_MEMBER_OF),
             "subject": ("eduPersonPrincipalName", OID_EPPN, "uid", OID_UID)},
}
PresetName = Literal["none", "adfs", "entra", "okta", "google", "keycloak", "ldap"]
NAMEID_PERSISTENT = "urn:oasis:names:tc:SAML:2.0:nameid-format:persistent"
NAMEID_UNSPECIFIED = "urn:oasis:names:tc:SAML:1.1:nameid-format:unspecified"
# The vendor presets keep asking for "unspecified": their IdP pages set the NameID at the IdP, and asking
# those IdPs for persistent would change the subject of every existing user (Entra, Keycloak honour it).
_UNSPECIFIED_PRESETS = frozenset({"adfs", "entra", "okta", "google", "keycloak"})


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
    # The NameIDPolicy Format of our AuthnRequests (and the SP metadata's NameIDFormat). None: persistent
    # for the presets none and ldap, unspecified for the vendor presets.
    name_id_format: str | None = None
    attribute_preset: PresetName = "none"
    email_attribute: str | None = None
    name_attribute: str | None = None
    groups_attribute: str | None = None
    # Key users on this attribute's value instead of the NameID (an IdP that only sends transient NameIDs);
    # an assertion without exactly one value of it is refused (saml_subject_attribute).
    subject_attribute: str | None = None
    # Days the SP metadata says it is valid (validUntil); 0 = no validUntil (an IdP that enforces it would
    # stop trusting the bridge once it passed).
    sp_metadata_valid_days: int = Field(0, ge=0, le=36500)
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
    # Step-up MFA (docs/step-up-mfa.md): ForceAuthn and RequestedAuthnContext of a step-up AuthnRequest.
    step_up: StepUpSettings = Field(default_factory=StepUpSettings)

    def policy(self) -> ConnectorPolicy:
        return ConnectorPolicy(max_session=self.max_session, idp_roles=self.aws_passthrough,
                               mfa_max_age=self.step_up.mfa_max_age)

    def open(self, env: ConnectorEnv) -> Connector:
        from bridge.upstream.saml import SamlConnector  # python3-saml, xmlsec: only once the service starts

        return SamlConnector(self, base_url=env.base_url, resolve=env.resolve, replay_guard=env.replay_guard,
                             on_stale=env.stale_for(self.id))

    def attribute(self, what: str) -> tuple[str, ...]:
        """The attribute names read for ``what`` (email, name, groups), in order: the explicit one, else the
        preset's."""
        explicit = {"email": self.email_attribute, "name": self.name_attribute, "groups": self.groups_attribute}
        one = explicit[what]
        return (one,) if one else SAML_PRESETS[self.attribute_preset][what]

    def step_up_contexts(self) -> list[str]:
        """The AuthnContextClassRefs a step-up AuthnRequest asks for: ``step_up.authn_contexts``, else
        ``mfa_authn_contexts``."""
        asked = self.step_up.authn_contexts
        return list(self.mfa_authn_contexts if asked is None else asked)

    def requested_name_id_format(self) -> str:
        """The NameIDPolicy Format asked for: ``name_id_format``, else by preset (see the option)."""
        if self.name_id_format:
            return self.name_id_format
        return NAMEID_UNSPECIFIED if self.attribute_preset in _UNSPECIFIED_PRESETS else NAMEID_PERSISTENT

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
        if self.metadata_url is not None and urlsplit(self.metadata_url).scheme != "https":
            out.append(f"connector {self.id}: metadata_url {self.metadata_url} is plain http: it carries the IdP's "
                       "signing certificate, so whoever can change it in transit can sign in as anyone.")
        if self.insecure_allow_idp_initiated:
            out.append(f"connector {self.id}: insecure_allow_idp_initiated accepts unsolicited SAML "
                       "responses (no InResponseTo check).")
        if self.insecure_allow_response_only_signing:
            out.append(f"connector {self.id}: insecure_allow_response_only_signing accepts assertions "
                       "that are not signed themselves.")
        return out
