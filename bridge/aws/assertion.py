"""Mint the SAML Response that ``AssumeRoleWithSAML`` (and AWS sign-in) redeem. Pure: time passed in.

Follows docs/aws-rules.md §1.3–1.5: a ``samlp:Response`` whose one Assertion is
signed (enveloped, exclusive C14N, RSA-SHA256, reference to the Assertion ID); bearer
SubjectConfirmation with Recipient and NotOnOrAfter; Audience; Issuer = our entity id on
both Response and Assertion; a persistent pseudonymous NameID; AuthnStatement with
SessionNotOnOrAfter; the AWS attributes Role, RoleSessionName, SessionDuration,
PrincipalTag:*, TransitiveTagKeys, SourceIdentity.
"""

from __future__ import annotations

import base64
import hashlib
import secrets
import time
from dataclasses import dataclass

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding
from lxml import etree

from bridge.aws.token import subject_for
from bridge.domain.identity import Grant, Identity
from bridge.domain.partitions import by_name
from bridge.keys.signing import SamlKey

NS_SAMLP = "urn:oasis:names:tc:SAML:2.0:protocol"
NS_SAML = "urn:oasis:names:tc:SAML:2.0:assertion"
NS_DS = "http://www.w3.org/2000/09/xmldsig#"
NSMAP = {"samlp": NS_SAMLP, "saml": NS_SAML}
AWS_ATTR = "https://aws.amazon.com/SAML/Attributes/"
ATTR_NAME_FORMAT = "urn:oasis:names:tc:SAML:2.0:attrname-format:uri"
NAMEID_PERSISTENT = "urn:oasis:names:tc:SAML:2.0:nameid-format:persistent"
BEARER = "urn:oasis:names:tc:SAML:2.0:cm:bearer"
SUCCESS = "urn:oasis:names:tc:SAML:2.0:status:Success"
EXC_C14N = "http://www.w3.org/2001/10/xml-exc-c14n#"
ENVELOPED = "http://www.w3.org/2000/09/xmldsig#enveloped-signature"
RSA_SHA256 = "http://www.w3.org/2001/04/xmldsig-more#rsa-sha256"
SHA256 = "http://www.w3.org/2001/04/xmlenc#sha256"
ASSERTION_LIFETIME = 300  # STS redeems within 5 minutes of issuance (docs/aws-rules.md §1.3)


def signin_saml_endpoint(partition: str, region: str | None = None) -> tuple[str, str]:
    """(Recipient/ACS URL, Audience) for ``partition``; a regional ACS for ``aws`` when asked."""
    p = by_name(partition)
    return p.signin_saml_url(region), p.saml_audience


def _ts(epoch: int) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(epoch))


def _sub(parent: etree._Element, ns: str, tag: str, text: str | None = None, **attrs: str) -> etree._Element:
    el = etree.SubElement(parent, f"{{{ns}}}{tag}", attrs)
    if text is not None:
        el.text = text
    return el


def _attribute(stmt: etree._Element, name: str, values: list[str]) -> None:
    attr = _sub(stmt, NS_SAML, "Attribute", Name=name, NameFormat=ATTR_NAME_FORMAT)
    for v in values:
        _sub(attr, NS_SAML, "AttributeValue", v)


@dataclass(frozen=True)
class SamlIssuer:
    """Who we are as a SAML IdP, and where the assertion goes."""

    entity_id: str
    recipient: str
    audience: str
    sign_response: bool = False


def build_response(grant: Grant, identity: Identity, issuer: SamlIssuer, *, now: int, duration: int,
                   authn_context: str = "urn:oasis:names:tc:SAML:2.0:ac:classes:unspecified") -> etree._Element:
    """The unsigned Response element for ``grant`` (see ``sign_response``)."""
    if grant.provider_arn is None:
        raise ValueError(f"grant {grant.role_arn} has no SAML provider ARN")
    rid, aid = "_" + secrets.token_hex(20), "_" + secrets.token_hex(20)
    issued, expires = _ts(now), _ts(now + ASSERTION_LIFETIME)
    resp = etree.Element(f"{{{NS_SAMLP}}}Response", nsmap=NSMAP, ID=rid, Version="2.0", IssueInstant=issued,
                         Destination=issuer.recipient)
    _sub(resp, NS_SAML, "Issuer", issuer.entity_id)
    status = _sub(resp, NS_SAMLP, "Status")
    _sub(status, NS_SAMLP, "StatusCode", Value=SUCCESS)
    a = _sub(resp, NS_SAML, "Assertion", ID=aid, Version="2.0", IssueInstant=issued)
    _sub(a, NS_SAML, "Issuer", issuer.entity_id)
    subject = _sub(a, NS_SAML, "Subject")
    # Persistent and pseudonymous: CloudTrail records the NameID (docs/aws-rules.md §1.3).
    _sub(subject, NS_SAML, "NameID", subject_for(identity), Format=NAMEID_PERSISTENT)
    sc = _sub(subject, NS_SAML, "SubjectConfirmation", Method=BEARER)
    _sub(sc, NS_SAML, "SubjectConfirmationData", NotOnOrAfter=expires, Recipient=issuer.recipient)
    cond = _sub(a, NS_SAML, "Conditions", NotBefore=issued, NotOnOrAfter=expires)
    _sub(_sub(cond, NS_SAML, "AudienceRestriction"), NS_SAML, "Audience", issuer.audience)
    authn = _sub(a, NS_SAML, "AuthnStatement", AuthnInstant=_ts(identity.authn_time or now), SessionIndex=aid,
                 SessionNotOnOrAfter=_ts(now + duration))
    _sub(_sub(authn, NS_SAML, "AuthnContext"), NS_SAML, "AuthnContextClassRef", authn_context)
    stmt = _sub(a, NS_SAML, "AttributeStatement")
    _attribute(stmt, AWS_ATTR + "Role", [f"{grant.role_arn},{grant.provider_arn}"])
    _attribute(stmt, AWS_ATTR + "RoleSessionName", [grant.session_name])
    _attribute(stmt, AWS_ATTR + "SessionDuration", [str(duration)])
    for key, value in grant.tags.items():
        _attribute(stmt, AWS_ATTR + f"PrincipalTag:{key}", [value])
    if grant.transitive_keys:
        _attribute(stmt, AWS_ATTR + "TransitiveTagKeys", list(grant.transitive_keys))
    if grant.source_identity:
        _attribute(stmt, AWS_ATTR + "SourceIdentity", [grant.source_identity])
    return resp


def _c14n(el: etree._Element) -> bytes:
    return bytes(etree.tostring(el, method="c14n", exclusive=True, with_comments=False))


def _sign(element: etree._Element, key: SamlKey, after: etree._Element) -> None:
    """Enveloped XML-DSig over ``element`` (by ID), placed right after ``after`` (its Issuer).

    Exclusive C14N comes from lxml and RSA-SHA256 from ``cryptography``; only the assembly of
    the ds:Signature element is ours. Why not python-xmlsec here: its wheel's bundled OpenSSL
    signs about 4x slower than the system's, and signing is the minting hot path. Every test
    verifies the result with python-xmlsec, signxml and the xmlsec1 CLI.
    """
    # Enveloped transform: the digest covers the element without its Signature, i.e. as it is now.
    digest = base64.b64encode(hashlib.sha256(_c14n(element)).digest()).decode()
    sig = etree.Element(f"{{{NS_DS}}}Signature", nsmap={"ds": NS_DS})
    info = etree.SubElement(sig, f"{{{NS_DS}}}SignedInfo")
    etree.SubElement(info, f"{{{NS_DS}}}CanonicalizationMethod", Algorithm=EXC_C14N)
    etree.SubElement(info, f"{{{NS_DS}}}SignatureMethod", Algorithm=RSA_SHA256)
    ref = etree.SubElement(info, f"{{{NS_DS}}}Reference", URI="#" + str(element.get("ID")))
    transforms = etree.SubElement(ref, f"{{{NS_DS}}}Transforms")
    etree.SubElement(transforms, f"{{{NS_DS}}}Transform", Algorithm=ENVELOPED)
    etree.SubElement(transforms, f"{{{NS_DS}}}Transform", Algorithm=EXC_C14N)
    etree.SubElement(ref, f"{{{NS_DS}}}DigestMethod", Algorithm=SHA256)
    etree.SubElement(ref, f"{{{NS_DS}}}DigestValue").text = digest
    value = etree.SubElement(sig, f"{{{NS_DS}}}SignatureValue")
    cert = etree.SubElement(etree.SubElement(etree.SubElement(sig, f"{{{NS_DS}}}KeyInfo"), f"{{{NS_DS}}}X509Data"),
                            f"{{{NS_DS}}}X509Certificate")
    cert.text = key.cert_b64()
    after.addnext(sig)
    # SignedInfo is canonicalized in place, inside the document, as a verifier will see it.
    signature = key.private_key.sign(_c14n(info), padding.PKCS1v15(), hashes.SHA256())
    value.text = base64.b64encode(signature).decode()


def sign_response(resp: etree._Element, key: SamlKey, *, sign_response: bool = False) -> bytes:
    """Sign the Assertion (always) and the Response (optionally); return the serialized XML."""
    assertion = resp.find(f"{{{NS_SAML}}}Assertion")
    if assertion is None:
        raise ValueError("no Assertion to sign")
    _sign(assertion, key, after=assertion.find(f"{{{NS_SAML}}}Issuer"))
    if sign_response:
        _sign(resp, key, after=resp.find(f"{{{NS_SAML}}}Issuer"))
    return bytes(etree.tostring(resp, xml_declaration=True, encoding="UTF-8"))


def mint_saml_response(grant: Grant, identity: Identity, key: SamlKey, issuer: SamlIssuer, *, now: int,
                       duration: int) -> str:
    """Signed Response, base64 (standard alphabet, no line breaks): the ``SAMLAssertion`` parameter."""
    resp = build_response(grant, identity, issuer, now=now, duration=duration)
    return base64.b64encode(sign_response(resp, key, sign_response=issuer.sign_response)).decode()
