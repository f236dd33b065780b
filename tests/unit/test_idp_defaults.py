"""Issue 23, "IdP defaults that fail silently": the pure parts (attribute and claim reading, the warnings
they give, the NameID request, SAML refusals by check, startup warnings). The flows through real HTTP are
in tests/integration/test_idp_defaults.py."""

from __future__ import annotations

import base64
import time
from pathlib import Path
from typing import Any

import pytest
from lxml import etree
from onelogin.saml2.errors import OneLogin_Saml2_ValidationError as V

from bridge.config import OidcConnectorSettings, SamlConnectorSettings
from bridge.domain.errors import LoginError, SamlUnsolicited
from bridge.domain.identity import Identity
from bridge.upstream.oidc_claims import claim_warnings, groups_from, missing_claims
from bridge.upstream.saml_attributes import attribute_warnings, first_present, name_id_warnings, subject_from
from bridge.upstream.saml_refusals import check_of, refused
from bridge.upstream.saml_settings import (
    NAMEID_PERSISTENT,
    NAMEID_UNSPECIFIED,
    OID_IS_MEMBER_OF,
    OID_MAIL,
    SAML_PRESETS,
)

TRANSIENT = "urn:oasis:names:tc:SAML:2.0:nameid-format:transient"


def saml(**kw: Any) -> SamlConnectorSettings:
    return SamlConnectorSettings(id="idp", type="saml", metadata_url="https://idp.example/md", **kw)


def oidc(**kw: Any) -> OidcConnectorSettings:
    return OidcConnectorSettings(**{"id": "llng", "type": "oidc", "issuer": "https://auth.example", "client_id": "c",
                                    **kw})


# ---- 8. SAML attribute names ----------------------------------------------------------------------

LDAP = {"mail": ["lola@example.com"], "displayName": ["Lola"], "memberOf": ["cn=aws-admins,ou=groups"],
        "uid": ["lola"]}


def test_ldap_names_under_the_default_preset_are_warned_about_by_name_never_value() -> None:
    warnings = attribute_warnings(saml(), LDAP)
    assert len(warnings) == 3
    email, name, groups = warnings
    assert "no `email` attribute for the email" in email and "it has `mail`" in email
    assert "set email_attribute: mail (or attribute_preset: ldap)" in email
    assert "`displayName`" in name and "set groups_attribute: memberOf (or attribute_preset: ldap)" in groups
    assert not any("lola" in w or "cn=" in w for w in warnings)


def test_ldap_preset_reads_friendly_and_oid_names_and_stays_quiet() -> None:
    assert "ldap" in SAML_PRESETS
    cfg = saml(attribute_preset="ldap")
    assert attribute_warnings(cfg, LDAP) == []
    assert first_present(LDAP, cfg.attribute("email")) == ["lola@example.com"]
    oid = {OID_MAIL: ["otto@example.com"], OID_IS_MEMBER_OF: ["aws-readonly"]}
    assert first_present(oid, cfg.attribute("email")) == ["otto@example.com"]
    assert first_present(oid, cfg.attribute("groups")) == ["aws-readonly"]
    assert attribute_warnings(cfg, oid) == []  # no name at all, and no alternative either: nothing to say


@pytest.mark.parametrize("attrs, says", [
    ({"Email": ["a@example.com"]}, "it has `Email`: set email_attribute: Email"),  # names are case-sensitive
    ({OID_MAIL: ["a@example.com"]},
     f"it has `{OID_MAIL}`: set email_attribute: {OID_MAIL} (or attribute_preset: ldap)"),
    ({"eduPersonEntitlement": ["urn:x"]}, "for the groups"),
    ({"isMemberOf": ["g"]}, "set groups_attribute: isMemberOf (or attribute_preset: ldap)"),
])
def test_well_known_alternatives(attrs: dict[str, list[str]], says: str) -> None:
    assert any(says in w for w in attribute_warnings(saml(), attrs)), attribute_warnings(saml(), attrs)


def test_an_explicit_attribute_that_is_present_gives_no_warning() -> None:
    assert attribute_warnings(saml(email_attribute="mail", name_attribute="displayName",
                                   groups_attribute="memberOf"), LDAP) == []
    assert attribute_warnings(saml(), {"email": ["a@x"], "name": ["A"], "groups": ["g"], "mail": ["b@x"]}) == []


def test_presets_are_read_in_order_and_the_explicit_name_wins() -> None:
    assert saml(attribute_preset="ldap", email_attribute="mailPrimaryAddress").attribute("email") == (
        "mailPrimaryAddress",)
    assert first_present({"cn": ["C"], "displayName": ["D"]}, saml(attribute_preset="ldap").attribute("name")) == ["D"]


# ---- 9. NameID ------------------------------------------------------------------------------------


def test_persistent_nameid_is_asked_for_by_default_and_configurable() -> None:
    assert saml().requested_name_id_format() == NAMEID_PERSISTENT
    assert saml(attribute_preset="ldap").requested_name_id_format() == NAMEID_PERSISTENT
    # The vendor presets keep what they asked for before (asking Entra or Keycloak for persistent would
    # give every existing user a new subject).
    for preset in ("adfs", "entra", "okta", "google", "keycloak"):
        assert saml(attribute_preset=preset).requested_name_id_format() == NAMEID_UNSPECIFIED
    assert saml(name_id_format=TRANSIENT).requested_name_id_format() == TRANSIENT


def test_transient_nameid_is_warned_about_with_a_stable_attribute_to_use() -> None:
    (w,) = name_id_warnings(saml(attribute_preset="ldap"), TRANSIENT, {"uid": ["lola"]})
    assert "NameID is transient" in w and "set subject_attribute: uid" in w and NAMEID_PERSISTENT in w
    (w,) = name_id_warnings(saml(), TRANSIENT, {})
    assert "an attribute that holds a stable user id" in w
    assert name_id_warnings(saml(), NAMEID_PERSISTENT, {}) == []
    assert name_id_warnings(saml(subject_attribute="uid"), TRANSIENT, {"uid": ["lola"]}) == []


def test_subject_attribute() -> None:
    assert subject_from(saml(), "_transient1", {"uid": ["lola"]}) == "_transient1"
    assert subject_from(saml(subject_attribute="uid"), "_transient1", {"uid": ["lola"]}) == "lola"
    for attrs in ({}, {"uid": ["a", "b"]}, {"uid": [""]}):
        with pytest.raises(LoginError) as e:
            subject_from(saml(subject_attribute="uid"), "_t", attrs)
        assert e.value.code == "saml_subject_attribute" and "uid" in e.value.hint


# ---- 10. IdP-initiated ---------------------------------------------------------------------------


def _connector(tmp_path: Path, **kw: Any) -> Any:
    from bridge.keys.signing import generate_saml_key
    from bridge.upstream.saml import SamlConnector

    key = generate_saml_key(tmp_path, bits=2048)
    cfg = SamlConnectorSettings(id="idp", type="saml", idp_entity_id="https://idp.example", sso_url="https://idp/sso",
                                idp_cert_files=[key.path.with_suffix(".crt")], **kw)
    return SamlConnector(cfg, base_url="https://bridge.example.com", resolve=lambda p: p,
                         replay_guard=lambda k, t: True, clock=lambda: 1_800_000_000.0)


def test_looks_unsolicited_reads_only_in_response_to(tmp_path: Path) -> None:
    c = _connector(tmp_path)
    ns = "urn:oasis:names:tc:SAML:2.0:protocol"

    def post(xml: str) -> dict[str, str]:
        return {"SAMLResponse": base64.b64encode(xml.encode()).decode()}

    assert c.looks_unsolicited(post(f'<samlp:Response xmlns:samlp="{ns}" ID="_1"/>'))
    assert not c.looks_unsolicited(post(f'<samlp:Response xmlns:samlp="{ns}" ID="_1" InResponseTo="_r"/>'))
    assert not c.looks_unsolicited(post('<?xml version="1.0"?><!DOCTYPE r [<!ENTITY x "y">]><r/>'))
    assert not c.looks_unsolicited({"SAMLResponse": "%%% not base64"}) and not c.looks_unsolicited({})


def test_a_callback_without_a_pending_sign_in_that_is_idp_initiated_says_so() -> None:
    from bridge.core.flow import LoginFlow
    from bridge.storage.memory import MemoryStore

    class Saml:
        id, name, type, allows_unsolicited = "idp", "IdP", "saml", False

        def looks_unsolicited(self, params: Any) -> bool:
            return True

    flow = LoginFlow(MemoryStore(), {"idp": Saml()}, base_url="https://b", ttl=60)  # type: ignore[dict-item]
    for params in ({"SAMLResponse": "x", "RelayState": "https://app.example/"}, {"SAMLResponse": "x"}):
        with pytest.raises(SamlUnsolicited) as e:
            flow.complete(Saml(), params, browser=None)  # type: ignore[arg-type]
        assert e.value.code == "saml_unsolicited" and "started at your identity provider" in e.value.message


# ---- 11 and 12. OIDC claims ------------------------------------------------------------------------


@pytest.mark.parametrize("value, delimiter, groups, warns", [
    (["a", "b"], None, ("a", "b"), None),
    ("admins", None, ("admins",), None),
    ("aws-admins; aws-readonly", None, ("aws-admins; aws-readonly",), 'set groups_delimiter: ";"'),
    ("aws-admins; aws-readonly", ";", ("aws-admins", "aws-readonly"), None),
    ("a,b,,c", ",", ("a", "b", "c"), None),
    ([1, "b", {"x": 1}, True], None, ("1", "b"), "2 item(s) that are not strings"),
    ({"a": 1}, None, (), "is a dict, not a list or a string"),
    (None, None, (), None),
    ("", None, (), None),
])
def test_groups_claim_shapes(value: Any, delimiter: str | None, groups: tuple[str, ...], warns: str | None) -> None:
    got, warnings = groups_from(oidc(groups_delimiter=delimiter), value)
    assert got == groups
    assert (warns is None and warnings == []) or (warns is not None and any(warns in w for w in warnings)), warnings


def test_missing_claims_and_their_warnings() -> None:
    cfg = oidc()
    assert missing_claims(cfg, {"sub": "s"}) == ["email", "name", "groups"]
    assert missing_claims(cfg, {"email": "a@x", "name": "A", "groups": []}) == []
    warnings = claim_warnings(cfg, {"sub": "s", "mail": "a@example.com"}, userinfo="read")
    assert "the IdP sent no `email` claim in the ID token or at userinfo" in warnings[0]
    assert "it sends `mail`: set email_claim: mail" in warnings[0]
    assert "no `groups` claim" in warnings[1] and "set groups_claim" in warnings[1]
    assert "userinfo could not be read" in claim_warnings(cfg, {"sub": "s"}, userinfo="failed")[0]
    # preferred_username without an @ is not offered as the e-mail
    assert "set email_claim" in claim_warnings(cfg, {"preferred_username": "alice"}, userinfo="read")[0]
    assert "preferred_username" not in claim_warnings(cfg, {"preferred_username": "alice"}, userinfo="read")[0]


def test_an_idp_without_groups_that_the_config_knows_about_stays_quiet() -> None:
    google = oidc(scopes=["openid", "email", "profile"])
    assert claim_warnings(google, {"email": "a@example.com"}, userinfo="read") == []
    assert claim_warnings(oidc(scopes=["openid"], groups_claim="roles"), {}, userinfo="read")[0].startswith(
        "the IdP sent no `roles` claim")


def test_groups_delimiter_must_not_be_empty() -> None:
    with pytest.raises(ValueError, match="groups_delimiter"):
        oidc(groups_delimiter="")


# ---- 13. SAML metadata over http -----------------------------------------------------------------


def test_saml_metadata_url_over_plain_http_is_warned_about_like_the_oidc_issuer() -> None:
    (w,) = SamlConnectorSettings(id="s", type="saml", metadata_url="http://idp.example/md").warnings()
    assert "metadata_url http://idp.example/md is plain http" in w and "signing certificate" in w
    assert saml().warnings() == []
    assert any("plain http" in w for w in oidc(issuer="http://auth.example").warnings())


# ---- 14. refusals by check, SP metadata validUntil, startup warnings -------------------------------


@pytest.mark.parametrize("code, check, error", [
    (V.INVALID_SIGNATURE, "signature", "saml_invalid"),
    (V.NO_SIGNED_ASSERTION, "signature", "saml_invalid"),
    (V.DEPRECATED_SIGNATURE_METHOD, "algorithm", "saml_invalid"),
    (V.WRONG_AUDIENCE, "audience", "saml_audience"),
    (V.WRONG_DESTINATION, "destination", "saml_destination"),
    (V.WRONG_SUBJECTCONFIRMATION, "recipient", "saml_recipient"),
    (V.ASSERTION_EXPIRED, "expiry", "saml_expired"),
    (V.ASSERTION_TOO_EARLY, "validity start", "saml_not_yet_valid"),
    (V.WRONG_ISSUER, "issuer", "saml_issuer"),
    (V.WRONG_INRESPONSETO, "request", "saml_in_response_to"),
    (V.NO_ENCRYPTED_ASSERTION, "encryption", "saml_invalid"),
    (V.MISSING_CONDITIONS, "structure", "saml_invalid"),
])
def test_each_python3_saml_check_has_its_words(code: int, check: str, error: str) -> None:
    e = V("The response was received at https://evil.example/ instead of https://bridge/acs", code)
    assert check_of(e) == check
    err = refused(check, f"SAMLResponse rejected: {e}")
    assert err.code == error and f"failed the bridge's {check} check" in err.message
    assert "evil.example" not in err.message and "evil.example" not in str(err.public())  # the reason stays in the log
    assert check_of(ValueError("x")) == "structure"


@pytest.mark.parametrize("days", [0, 365])
def test_sp_metadata_valid_until(tmp_path: Path, days: int) -> None:
    root = etree.fromstring(_connector(tmp_path, sp_metadata_valid_days=days).sp_metadata())
    if days == 0:
        assert root.get("validUntil") is None  # python3-saml's default was now + 2 days
    else:
        expected = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(1_800_000_000 + 365 * 86400))
        assert root.get("validUntil") == expected  # the connector's clock + 365 days
    assert root.get("entityID") == "https://bridge.example.com/sp/idp/metadata.xml"


def test_identity_warnings_survive_the_session_json_and_leave_other_identities_alone() -> None:
    plain = Identity(connector_id="c", subject="s", issuer="i")
    assert "warnings" not in plain.to_json()  # stored sessions and the rules memo see the same JSON as before
    warned = Identity(connector_id="c", subject="s", issuer="i", warnings=("no `email` attribute",))
    assert Identity.from_json(warned.to_json()).warnings == ("no `email` attribute",)
    assert warned == plain  # warnings are notes, not part of who the user is
