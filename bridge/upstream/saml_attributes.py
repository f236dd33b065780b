"""What the SAML connector takes from an assertion's attributes and NameID, and what it warns about.

Pure (no python3-saml): the attributes come in as ``{name: [values]}``. An IdP that sends the e-mail
as ``mail`` while the connector reads ``email`` is not an error the bridge can see — the user simply has
no e-mail and no groups. So when a configured attribute is absent and a well-known spelling of the same
thing is present, a warning names both (never a value): logged at sign-in, on the Why page, and in
``bridge check-config --probe``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from bridge.domain.errors import LoginError
from bridge.upstream.saml_settings import (
    OID_CN,
    OID_DISPLAY_NAME,
    OID_ENTITLEMENT,
    OID_EPPN,
    OID_IS_MEMBER_OF,
    OID_MAIL,
    OID_MEMBER_OF,
    OID_UID,
    SAML_PRESETS,
    SamlConnectorSettings,
)

NAMEID_TRANSIENT = "urn:oasis:names:tc:SAML:2.0:nameid-format:transient"
_XMLSOAP = "http://schemas.xmlsoap.org/ws/2005/05/identity/claims/"
# Other names IdPs use for the same thing (besides every preset's), most common first.
WELL_KNOWN: dict[str, tuple[str, ...]] = {
    "email": ("mail", OID_MAIL, "email", "emailAddress", "urn:oid:1.2.840.113549.1.9.1", f"{_XMLSOAP}emailaddress",
              "http://schemas.xmlsoap.org/claims/EmailAddress", f"{_XMLSOAP}upn"),
    "name": ("displayName", OID_DISPLAY_NAME, "cn", OID_CN, "name", f"{_XMLSOAP}name",
             "http://schemas.microsoft.com/identity/claims/displayname"),
    "groups": ("memberOf", OID_MEMBER_OF, "isMemberOf", OID_IS_MEMBER_OF, "eduPersonEntitlement", OID_ENTITLEMENT,
               "groups", "http://schemas.xmlsoap.org/claims/Group",
               "http://schemas.microsoft.com/ws/2008/06/identity/claims/groups",
               "http://schemas.microsoft.com/ws/2008/06/identity/claims/role"),
}
# Attributes that carry a stable user id: what to suggest for subject_attribute.
STABLE_IDS = ("eduPersonPrincipalName", OID_EPPN, "uid", OID_UID, "urn:oasis:names:tc:SAML:attribute:subject-id",
              "eduPersonUniqueId", "urn:oid:1.3.6.1.4.1.5923.1.1.1.13",
              "http://schemas.microsoft.com/identity/claims/objectidentifier")
_OPTION = {"email": "email_attribute", "name": "name_attribute", "groups": "groups_attribute"}


def first_present(attrs: Mapping[str, Sequence[str]], names: Sequence[str]) -> list[str]:
    """The values of the first of ``names`` the assertion has (an empty list when it has none)."""
    for name in names:
        if attrs.get(name):
            return list(attrs[name])
    return []


def _alternative(attrs: Mapping[str, Sequence[str]], what: str, configured: Sequence[str]) -> str | None:
    """A present attribute that is probably what ``configured`` meant: the same name in another case,
    else a well-known or preset name for ``what``."""
    lowered = {c.lower() for c in configured}
    for name in attrs:
        if name.lower() in lowered and attrs[name]:
            return name
    candidates = list(WELL_KNOWN[what]) + [n for p in SAML_PRESETS.values() for n in p[what]]
    return next((n for n in candidates if n not in configured and attrs.get(n)), None)


def _preset_for(name: str, what: str) -> str | None:
    """A preset that reads ``name`` for ``what`` (ldap first: the LDAP spellings are the usual miss)."""
    order = ["ldap", *[p for p in SAML_PRESETS if p != "ldap"]]
    return next((p for p in order if name in SAML_PRESETS[p][what]), None)


def attribute_warnings(cfg: SamlConnectorSettings, attrs: Mapping[str, Sequence[str]]) -> list[str]:
    """One warning per field (email, name, groups) whose configured attributes are all absent while a
    well-known alternative is present: names only, never values."""
    out = []
    for what in ("email", "name", "groups"):
        configured = cfg.attribute(what)
        if first_present(attrs, configured):
            continue
        alt = _alternative(attrs, what, configured)
        if alt is None:
            continue
        preset = _preset_for(alt, what)
        fix = f"set {_OPTION[what]}: {alt}" + (f" (or attribute_preset: {preset})" if preset
                                                 and preset != cfg.attribute_preset else "")
        shown = " / ".join(f"`{n}`" for n in configured)
        out.append(f"the assertion has no {shown} attribute for the {what}, which the connector reads "
                   f"(attribute_preset: {cfg.attribute_preset}), but it has `{alt}`: {fix}.")
    return out


def name_id_warnings(cfg: SamlConnectorSettings, name_id_format: str | None,
                     attrs: Mapping[str, Sequence[str]]) -> list[str]:
    """A transient NameID keys the user (no subject_attribute): a new subject at every sign-in."""
    if name_id_format != NAMEID_TRANSIENT or cfg.subject_attribute:
        return []
    stable = next((n for n in (*SAML_PRESETS[cfg.attribute_preset]["subject"], *STABLE_IDS) if attrs.get(n)), None)
    instead = (f"set subject_attribute: {stable}" if stable else
               "set subject_attribute to an attribute that holds a stable user id")
    return [f"the NameID is transient (a new one at every sign-in), so favourites, cached credentials and "
            f"\"Your sign-ins\" do not carry over between sign-ins. Have the IdP release a persistent NameID "
            f"(the bridge asks for {cfg.requested_name_id_format()}), or {instead}."]


def subject_from(cfg: SamlConnectorSettings, name_id: str, attrs: Mapping[str, Sequence[str]]) -> str:
    """The user's subject: the NameID, or exactly one non-empty value of ``subject_attribute``
    (refused otherwise: keying users on the NameID instead would silently make them someone new)."""
    name = cfg.subject_attribute
    if not name:
        return name_id
    values = [v for v in attrs.get(name) or () if v]
    if len(values) != 1:
        seen = "absent" if not values else f"{len(values)} values"
        raise LoginError(f"subject_attribute {name!r}: {seen}", code="saml_subject_attribute",
                         message="Your identity provider did not send the attribute that identifies you to the "
                                 "bridge.",
                         hint=f"Ask your administrator: the identity provider must release exactly one value of "
                              f"{name} to the bridge (the connector's subject_attribute).")
    return values[0]
