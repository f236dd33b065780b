"""Build upstream SAML Responses in tests, signed by a test IdP key generated in the run.

For the bad-input cases a real IdP will not produce (wrapping, tampering, odd times). The
happy path uses the pysaml2 peer (tests/peers/saml_idp.py).
"""

from __future__ import annotations

import base64
import secrets
import time
import zlib
from dataclasses import dataclass, field
from datetime import UTC, datetime
from urllib.parse import parse_qs, urlsplit

from lxml import etree

from bridge.aws.assertion import NS_SAML, NS_SAMLP, sign_response
from bridge.keys.signing import SamlKey

NSMAP = {"samlp": NS_SAMLP, "saml": NS_SAML}


def ts(epoch: float) -> str:
    return datetime.fromtimestamp(int(epoch), UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def request_id_from_redirect(location: str) -> tuple[str, str]:
    """(AuthnRequest ID, RelayState) from an HTTP-Redirect binding URL."""
    q = parse_qs(urlsplit(location).query)
    xml = zlib.decompress(base64.b64decode(q["SAMLRequest"][0]), -15)
    return str(etree.fromstring(xml).get("ID")), q["RelayState"][0]


@dataclass
class Forge:
    idp_entity_id: str
    sp_entity_id: str
    acs: str
    key: SamlKey
    name_id: str = "dave@example.com"
    attributes: dict[str, list[str]] = field(default_factory=lambda: {
        "email": ["dave@example.com"], "name": ["Dave"], "groups": ["aws-admins"]})

    def build(self, *, in_response_to: str | None, now: float | None = None, lifetime: int = 300,
              audience: str | None = None, recipient: str | None = None, destination: str | None = None,
              status: str = "urn:oasis:names:tc:SAML:2.0:status:Success",
              authn_context: str = "urn:oasis:names:tc:SAML:2.0:ac:classes:PasswordProtectedTransport",
              not_before: float | None = None) -> etree._Element:
        now = time.time() if now is None else now
        irt = {"InResponseTo": in_response_to} if in_response_to else {}
        r = etree.Element(f"{{{NS_SAMLP}}}Response", nsmap=NSMAP, ID="_r" + secrets.token_hex(16), Version="2.0",
                          IssueInstant=ts(now), Destination=destination or self.acs, **irt)
        etree.SubElement(r, f"{{{NS_SAML}}}Issuer").text = self.idp_entity_id
        st = etree.SubElement(r, f"{{{NS_SAMLP}}}Status")
        code = etree.SubElement(st, f"{{{NS_SAMLP}}}StatusCode", Value=status)
        if status != "urn:oasis:names:tc:SAML:2.0:status:Success":
            etree.SubElement(code, f"{{{NS_SAMLP}}}StatusCode",
                             Value="urn:oasis:names:tc:SAML:2.0:status:AuthnFailed")
            etree.SubElement(st, f"{{{NS_SAMLP}}}StatusMessage").text = "User account is locked"
            return r
        a = etree.SubElement(r, f"{{{NS_SAML}}}Assertion", ID="_a" + secrets.token_hex(16), Version="2.0",
                             IssueInstant=ts(now))
        etree.SubElement(a, f"{{{NS_SAML}}}Issuer").text = self.idp_entity_id
        subj = etree.SubElement(a, f"{{{NS_SAML}}}Subject")
        nid = etree.SubElement(subj, f"{{{NS_SAML}}}NameID",
                               Format="urn:oasis:names:tc:SAML:1.1:nameid-format:emailAddress")
        nid.text = self.name_id
        sc = etree.SubElement(subj, f"{{{NS_SAML}}}SubjectConfirmation", Method="urn:oasis:names:tc:SAML:2.0:cm:bearer")
        etree.SubElement(sc, f"{{{NS_SAML}}}SubjectConfirmationData", NotOnOrAfter=ts(now + lifetime),
                         Recipient=recipient or self.acs, **irt)
        cond = etree.SubElement(a, f"{{{NS_SAML}}}Conditions", NotBefore=ts(not_before or now - 5),
                                NotOnOrAfter=ts(now + lifetime))
        ar = etree.SubElement(cond, f"{{{NS_SAML}}}AudienceRestriction")
        etree.SubElement(ar, f"{{{NS_SAML}}}Audience").text = audience or self.sp_entity_id
        an = etree.SubElement(a, f"{{{NS_SAML}}}AuthnStatement", AuthnInstant=ts(now), SessionIndex="_s1")
        etree.SubElement(etree.SubElement(an, f"{{{NS_SAML}}}AuthnContext"),
                         f"{{{NS_SAML}}}AuthnContextClassRef").text = authn_context
        stmt = etree.SubElement(a, f"{{{NS_SAML}}}AttributeStatement")
        for name, values in self.attributes.items():
            at = etree.SubElement(stmt, f"{{{NS_SAML}}}Attribute", Name=name)
            for v in values:
                etree.SubElement(at, f"{{{NS_SAML}}}AttributeValue").text = v
        return r

    def sign(self, resp: etree._Element, key: SamlKey | None = None, *, response_too: bool = False) -> bytes:
        return sign_response(resp, key or self.key, sign_response=response_too)


def b64(xml: bytes) -> str:
    return base64.b64encode(xml).decode()


def encrypt_assertion(signed_response: bytes, sp_cert_pem: bytes) -> bytes:
    """Replace the (signed) Assertion by an EncryptedAssertion for the SP's certificate (AES-256-CBC + RSA-OAEP)."""
    import xmlsec
    from xmlsec import constants as xc

    root = etree.fromstring(signed_response)
    assertion = root.find(f"{{{NS_SAML}}}Assertion")
    holder = etree.Element(f"{{{NS_SAML}}}EncryptedAssertion")
    assertion.addprevious(holder)
    holder.append(assertion)
    enc = xmlsec.template.encrypted_data_create(root, xc.TransformAes256Cbc, type=xc.TypeEncElement, ns="xenc")
    xmlsec.template.encrypted_data_ensure_cipher_value(enc)
    key_info = xmlsec.template.encrypted_data_ensure_key_info(enc, ns="dsig")
    enc_key = xmlsec.template.add_encrypted_key(key_info, xc.TransformRsaOaep)
    xmlsec.template.encrypted_data_ensure_cipher_value(enc_key)
    manager = xmlsec.KeysManager()
    manager.add_key(xmlsec.Key.from_memory(sp_cert_pem, xc.KeyDataFormatCertPem))
    ctx = xmlsec.EncryptionContext(manager)
    ctx.key = xmlsec.Key.generate(xc.KeyDataAes, 256, xc.KeyDataTypeSession)
    ctx.encrypt_xml(enc, assertion)
    return bytes(etree.tostring(root))


def sign_sha1(resp: etree._Element, key: SamlKey) -> bytes:
    """Sign the Assertion with RSA-SHA1/SHA-1 (deprecated; a strict SP must refuse it)."""
    import xmlsec
    from xmlsec import constants as xc

    a = resp.find(f"{{{NS_SAML}}}Assertion")
    sig = xmlsec.template.create(a, xc.TransformExclC14N, xc.TransformRsaSha1, ns="ds")
    a.find(f"{{{NS_SAML}}}Issuer").addnext(sig)
    ref = xmlsec.template.add_reference(sig, xc.TransformSha1, uri="#" + a.get("ID"))
    xmlsec.template.add_transform(ref, xc.TransformEnveloped)
    xmlsec.template.add_transform(ref, xc.TransformExclC14N)
    xmlsec.template.x509_data_add_certificate(xmlsec.template.add_x509_data(xmlsec.template.ensure_key_info(sig)))
    xmlsec.tree.add_ids(a, ["ID"])
    ctx = xmlsec.SignatureContext()
    ctx.key = xmlsec.Key.from_memory(key.key_pem, xc.KeyDataFormatPem)
    ctx.sign(sig)
    return bytes(etree.tostring(resp))
