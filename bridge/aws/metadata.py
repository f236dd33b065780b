"""The bridge's SAML IdP metadata: what `aws iam create-saml-provider` uploads. Pure.

UTF-8 without a BOM (IAM refuses a BOM), every signing certificate (current and next during
rotation), an HTTP-POST/Redirect SSO location (required by the schema; AWS never calls it).
"""

from __future__ import annotations

from collections.abc import Sequence

from lxml import etree

from bridge.keys.signing import SamlKey

NS_MD = "urn:oasis:names:tc:SAML:2.0:metadata"
NS_DS = "http://www.w3.org/2000/09/xmldsig#"


def idp_metadata(entity_id: str, keys: Sequence[SamlKey], sso_url: str) -> bytes:
    """An EntityDescriptor with one IDPSSODescriptor listing every signing certificate."""
    if not keys:
        raise ValueError("no SAML signing certificate: run `bridge keys generate --kind saml`")
    root = etree.Element(f"{{{NS_MD}}}EntityDescriptor", nsmap={"md": NS_MD, "ds": NS_DS}, entityID=entity_id)
    idp = etree.SubElement(root, f"{{{NS_MD}}}IDPSSODescriptor", WantAuthnRequestsSigned="false",
                           protocolSupportEnumeration="urn:oasis:names:tc:SAML:2.0:protocol")
    for k in keys:
        kd = etree.SubElement(idp, f"{{{NS_MD}}}KeyDescriptor", use="signing")
        x509 = etree.SubElement(etree.SubElement(etree.SubElement(kd, f"{{{NS_DS}}}KeyInfo"),
                                                 f"{{{NS_DS}}}X509Data"), f"{{{NS_DS}}}X509Certificate")
        x509.text = k.cert_b64()
    for fmt in ("urn:oasis:names:tc:SAML:2.0:nameid-format:persistent",):
        etree.SubElement(idp, f"{{{NS_MD}}}NameIDFormat").text = fmt
    for binding in ("HTTP-Redirect", "HTTP-POST"):
        etree.SubElement(idp, f"{{{NS_MD}}}SingleSignOnService",
                         Binding=f"urn:oasis:names:tc:SAML:2.0:bindings:{binding}", Location=sso_url)
    return bytes(etree.tostring(root, xml_declaration=True, encoding="UTF-8", pretty_print=True))
