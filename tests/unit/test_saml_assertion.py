"""Minted SAML Responses (bridge/aws/assertion.py) and the strict SAML validator (bridge/aws/validate_saml.py).

Spec: docs/aws-rules.md §1.3–1.5 (what AWS needs) and §1.10 (validator rules 1–13);
signatures are also checked independently with signxml and the ``xmlsec1`` CLI.

Responses are minted with the real code and real keys. A rule test builds the unsigned Response
with ``build_response``, breaks one thing with lxml, signs it with the real ``sign_response`` and
checks that the validator reports that rule, and only that rule. Signature tests sign by hand with
python-xmlsec templates where the bridge's signer would not produce the bad shape (SHA-1 etc.).
"""

from __future__ import annotations

import base64
import copy
import re
import shutil
import subprocess
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import pytest
import xmlsec
from lxml import etree
from signxml import XMLVerifier
from signxml.exceptions import InvalidSignature
from xmlsec import constants as xc

from bridge.aws import validate_saml
from bridge.aws.assertion import (
    AWS_ATTR,
    NS_DS,
    NS_SAML,
    NS_SAMLP,
    SamlIssuer,
    build_response,
    mint_saml_response,
    sign_response,
    signin_saml_endpoint,
)
from bridge.aws.metadata import idp_metadata
from bridge.aws.problems import Problem
from bridge.aws.token import subject_for
from bridge.aws.validate_saml import IdpMetadata, validate_saml_response
from bridge.domain.identity import Grant, Identity
from bridge.keys.signing import SamlKey, generate_saml_key

NOW = 1_800_000_000
ENTITY_ID = "https://bridge.example.com/saml"
SSO_URL = "https://bridge.example.com/saml/sso"
ACCOUNT = "123456789012"
OTHER_ACCOUNT = "210987654321"
XMLSEC1 = shutil.which("xmlsec1") or "/usr/bin/xmlsec1"
ASSERTION_ID_ATTR = "urn:oasis:names:tc:SAML:2.0:assertion:Assertion"
RESPONSE_ID_ATTR = "urn:oasis:names:tc:SAML:2.0:protocol:Response"
ASSERTION_SIG_XPATH = "//*[local-name()='Assertion']/*[local-name()='Signature']"
NS = {"samlp": NS_SAMLP, "saml": NS_SAML, "ds": NS_DS}

ALG_RSA_SHA256 = "http://www.w3.org/2001/04/xmldsig-more#rsa-sha256"
DIGEST_SHA256 = "http://www.w3.org/2001/04/xmlenc#sha256"
T_ENVELOPED = "http://www.w3.org/2000/09/xmldsig#enveloped-signature"
T_EXC_C14N = "http://www.w3.org/2001/10/xml-exc-c14n#"

IDENTITY = Identity(connector_id="corp", subject="alice-upstream-id", issuer="https://idp.example.com",
                    email="alice@example.com", name="Alice Example", authn_time=NOW - 42)
TAGS = {"Project": "Automation", "CostCenter": "987654", "Team": "Platform"}
TRANSITIVE = ("Project", "Team")


def role_arn(partition: str = "aws", account: str = ACCOUNT, name: str = "Admin") -> str:
    return f"arn:{partition}:iam::{account}:role/{name}"


def provider_arn(partition: str = "aws", account: str = ACCOUNT, name: str = "bridge") -> str:
    return f"arn:{partition}:iam::{account}:saml-provider/{name}"


def make_grant(partition: str = "aws", **kw: object) -> Grant:
    base: dict[str, object] = {
        "role_arn": role_arn(partition), "account_id": ACCOUNT, "label": "Admin", "session_name": "alice",
        "via": "admins", "provider_arn": provider_arn(partition), "source_identity": "alice@example.com",
        "tags": dict(TAGS), "transitive_keys": TRANSITIVE, "max_duration": 43200, "path": "saml",
    }
    base.update(kw)
    return Grant(**base)  # type: ignore[arg-type]


GRANT = make_grant()


def make_issuer(partition: str = "aws", region: str | None = None, *, sign_response: bool = False) -> SamlIssuer:
    recipient, audience = signin_saml_endpoint(partition, region)
    return SamlIssuer(ENTITY_ID, recipient, audience, sign_response=sign_response)


def b64(xml: bytes) -> str:
    return base64.b64encode(xml).decode()


def assertion_of(resp: etree._Element) -> etree._Element:
    a = resp.find("saml:Assertion", NS)
    assert a is not None
    return a


def attribute(resp: etree._Element, short: str) -> etree._Element:
    found = [a for a in resp.iter(f"{{{NS_SAML}}}Attribute") if a.get("Name") == AWS_ATTR + short]
    assert len(found) == 1, f"{short}: {len(found)} attributes"
    return found[0]


def values(resp: etree._Element, short: str) -> list[str]:
    return [v.text or "" for v in attribute(resp, short).findall("saml:AttributeValue", NS)]


def set_values(resp: etree._Element, short: str, new: list[str]) -> None:
    attr = attribute(resp, short)
    for v in attr.findall("saml:AttributeValue", NS):
        attr.remove(v)
    for text in new:
        etree.SubElement(attr, f"{{{NS_SAML}}}AttributeValue").text = text


def add_attribute(resp: etree._Element, short: str, new: list[str]) -> None:
    stmt = assertion_of(resp).find("saml:AttributeStatement", NS)
    assert stmt is not None
    attr = etree.SubElement(stmt, f"{{{NS_SAML}}}Attribute", Name=AWS_ATTR + short,
                            NameFormat="urn:oasis:names:tc:SAML:2.0:attrname-format:uri")
    for text in new:
        etree.SubElement(attr, f"{{{NS_SAML}}}AttributeValue").text = text


def remove(el: etree._Element | None) -> None:
    assert el is not None
    parent = el.getparent()
    assert parent is not None
    parent.remove(el)


def find(resp: etree._Element, path: str) -> etree._Element:
    el = resp.find(path, NS)
    assert el is not None, path
    return el


def ts(epoch: int) -> str:
    return datetime.fromtimestamp(epoch, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def texts(problems: list[Problem]) -> list[str]:
    """Problems as `bridge verify` prints them (``str(p)``); the tests compare that text."""
    assert all(isinstance(p, Problem) for p in problems), problems
    return [str(p) for p in problems]


def only_rule(problems: list[str], rule: int, fragment: str) -> None:
    """``problems`` are all rule ``rule`` and one of them says ``fragment``."""
    assert problems, f"expected a rule {rule} problem, got none"
    assert all(p.startswith(f"{rule}: ") for p in problems), problems
    assert any(fragment in p for p in problems), problems


def sign_custom(resp: etree._Element, key: SamlKey, *, method: object = xc.TransformRsaSha256,
                digest: object = xc.TransformSha256, transforms: tuple[object, ...] = (xc.TransformEnveloped,
                                                                                       xc.TransformExclC14N),
                uri: str | None = None) -> bytes:
    """Sign the Assertion like the bridge does, but with the algorithms/reference chosen by the test."""
    a = assertion_of(resp)
    sig = xmlsec.template.create(a, xc.TransformExclC14N, method, ns="ds")
    find(a, "saml:Issuer").addnext(sig)
    ref = xmlsec.template.add_reference(sig, digest, uri=uri if uri is not None else "#" + a.get("ID"))
    for t in transforms:
        xmlsec.template.add_transform(ref, t)
    xmlsec.tree.add_ids(resp, ["ID"])
    ctx = xmlsec.SignatureContext()
    ctx.key = xmlsec.Key.from_memory(key.key_pem, xc.KeyDataFormatPem)
    ctx.sign(sig)
    return bytes(etree.tostring(resp, xml_declaration=True, encoding="UTF-8"))


@dataclass(frozen=True)
class Kit:
    key: SamlKey
    other: SamlKey
    metadata: IdpMetadata

    def build(self, grant: Grant = GRANT, *, partition: str = "aws", region: str | None = None,
              duration: int = 3600, now: int = NOW) -> etree._Element:
        return build_response(grant, IDENTITY, make_issuer(partition, region), now=now, duration=duration)

    def sign(self, resp: etree._Element, key: SamlKey | None = None, *, both: bool = False) -> bytes:
        return sign_response(resp, key or self.key, sign_response=both)

    def problems(self, xml: bytes | str, *, grant: Grant = GRANT, partition: str = "aws",
                 **kw: object) -> list[Problem]:
        data = xml if isinstance(xml, str) else b64(xml)
        kw.setdefault("role_arn", grant.role_arn)
        kw.setdefault("principal_arn", grant.provider_arn)
        return validate_saml_response(data, metadata=self.metadata, now=NOW, partition=partition,
                                      **kw)  # type: ignore[arg-type]

    def check(self, xml: bytes | str, *, grant: Grant = GRANT, partition: str = "aws",
              **kw: object) -> list[str]:
        return texts(self.problems(xml, grant=grant, partition=partition, **kw))

    def mutated(self, mutate: Callable[[etree._Element], object], *, grant: Grant = GRANT,
                duration: int = 3600, **kw: object) -> list[str]:
        """Build, mutate, sign with the real signer, validate."""
        resp = self.build(grant, duration=duration)
        mutate(resp)
        return self.check(self.sign(resp), grant=grant, **kw)


@pytest.fixture(scope="module")
def kit(tmp_path_factory: pytest.TempPathFactory) -> Kit:
    d = tmp_path_factory.mktemp("saml-keys")
    key = generate_saml_key(d, now=datetime(2026, 1, 1, tzinfo=UTC), days=36500)
    other = generate_saml_key(d, now=datetime(2026, 1, 2, tzinfo=UTC), days=36500, bits=2048)
    metadata = IdpMetadata.from_xml(idp_metadata(ENTITY_ID, [key], SSO_URL))
    return Kit(key, other, metadata)


def xmlsec1_verify(xml_file: Path, crt: Path, *, node_xpath: str | None = None) -> subprocess.CompletedProcess[str]:
    cmd = [XMLSEC1, "--verify", "--pubkey-cert-pem", str(crt), "--id-attr:ID", ASSERTION_ID_ATTR,
           "--id-attr:ID", RESPONSE_ID_ATTR]
    if node_xpath:
        cmd += ["--node-xpath", node_xpath]
    return subprocess.run([*cmd, str(xml_file)], capture_output=True, text=True, timeout=30, check=False)


def crt_of(key: SamlKey) -> Path:
    crt = key.path.with_suffix(".crt")
    assert crt.is_file()
    return crt


# --------------------------------------------------------------------------- 1. minted responses validate

PARTITIONS = [("aws", None), ("aws", "eu-west-1"), ("aws-us-gov", None), ("aws-cn", None)]


@pytest.mark.parametrize("both", [False, True], ids=["assertion-signed", "both-signed"])
@pytest.mark.parametrize(("partition", "region"), PARTITIONS, ids=["aws", "aws-eu-west-1", "aws-us-gov", "aws-cn"])
def test_minted_response_validates_and_both_signatures_verify(kit: Kit, tmp_path: Path, partition: str,
                                                              region: str | None, both: bool) -> None:
    grant = make_grant(partition)
    issuer = make_issuer(partition, region, sign_response=both)
    minted = mint_saml_response(grant, IDENTITY, kit.key, issuer, now=NOW, duration=3600)

    assert kit.check(minted, grant=grant, partition=partition) == []

    xml = base64.b64decode(minted, validate=True)
    root = etree.fromstring(xml)
    a = assertion_of(root)
    recipient = find(root, "saml:Assertion/saml:Subject/saml:SubjectConfirmation/saml:SubjectConfirmationData")
    assert recipient.get("Recipient") == issuer.recipient
    if region:
        assert issuer.recipient == f"https://{region}.signin.aws.amazon.com/saml"
    assert values(root, "Role") == [f"{role_arn(partition)},{provider_arn(partition)}"]

    # How many signatures, and where: the Assertion's always; the Response's only when asked.
    assert len(a.findall("ds:Signature", NS)) == 1
    assert len(root.findall("ds:Signature", NS)) == (1 if both else 0)

    # Independent checks: signxml on the Assertion alone, xmlsec1 on each signature.
    verified = XMLVerifier().verify(etree.tostring(a), x509_cert=kit.key.cert_pem.decode())
    assert verified.signed_xml is not None and verified.signed_xml.get("ID") == a.get("ID")
    f = tmp_path / "resp.xml"
    f.write_bytes(xml)
    res = xmlsec1_verify(f, crt_of(kit.key), node_xpath=ASSERTION_SIG_XPATH)
    assert res.returncode == 0, res.stderr
    if both:
        whole = XMLVerifier().verify(xml, x509_cert=kit.key.cert_pem.decode())
        assert whole.signed_xml is not None and whole.signed_xml.tag == f"{{{NS_SAMLP}}}Response"
        res = xmlsec1_verify(f, crt_of(kit.key))  # no --node-*: the first Signature, the Response's
        assert res.returncode == 0, res.stderr
        assert find(root, "ds:Signature/ds:SignedInfo/ds:Reference").get("URI") == "#" + root.get("ID")


@pytest.mark.parametrize(("partition", "region"), PARTITIONS[1:], ids=["aws-eu-west-1", "aws-us-gov", "aws-cn"])
def test_response_for_one_partition_fails_validation_for_another(kit: Kit, partition: str,
                                                                 region: str | None) -> None:
    grant = make_grant(partition)
    minted = mint_saml_response(grant, IDENTITY, kit.key, make_issuer(partition, region), now=NOW, duration=3600)
    other = "aws-cn" if partition == "aws" else "aws"
    problems = kit.check(minted, grant=grant, partition=other)
    assert any(p.startswith("5: Recipient") for p in problems), problems


def test_rotation_metadata_with_two_keys_accepts_either_signer(kit: Kit) -> None:
    md = IdpMetadata.from_xml(idp_metadata(ENTITY_ID, [kit.key, kit.other], SSO_URL))
    for key in (kit.key, kit.other):
        minted = mint_saml_response(GRANT, IDENTITY, key, make_issuer(), now=NOW, duration=3600)
        assert validate_saml_response(minted, metadata=md, now=NOW) == []
    only_md = IdpMetadata.from_xml(idp_metadata(ENTITY_ID, [kit.key], SSO_URL))
    minted = mint_saml_response(GRANT, IDENTITY, kit.other, make_issuer(), now=NOW, duration=3600)
    only_rule(texts(validate_saml_response(minted, metadata=only_md, now=NOW)), 3, "does not verify")


@pytest.mark.parametrize(("partition", "region", "recipient", "audience"), [
    ("aws", None, "https://signin.aws.amazon.com/saml", "urn:amazon:webservices"),
    ("aws", "us-east-1", "https://signin.aws.amazon.com/saml", "urn:amazon:webservices"),
    ("aws", "eu-west-1", "https://eu-west-1.signin.aws.amazon.com/saml", "urn:amazon:webservices"),
    ("aws-us-gov", "us-gov-west-1", "https://signin.amazonaws-us-gov.com/saml", "urn:amazon:webservices:govcloud"),
    ("aws-cn", "cn-north-1", "https://signin.amazonaws.cn/saml", "urn:amazon:webservices:cn-north-1"),
])
def test_signin_saml_endpoint_per_partition(partition: str, region: str | None, recipient: str,
                                            audience: str) -> None:
    assert signin_saml_endpoint(partition, region) == (recipient, audience)


def test_build_response_needs_a_provider_arn() -> None:
    with pytest.raises(ValueError, match="no SAML provider ARN"):
        build_response(make_grant(provider_arn=None), IDENTITY, make_issuer(), now=NOW, duration=3600)


def test_escaping_and_non_ascii_survive_signing(kit: Kit, tmp_path: Path) -> None:
    """Characters C14N escapes or encodes (``&`` in the entity id, non-ASCII tag values) sign and verify."""
    entity = "https://bridge.example.com/saml?tenant=acme&env=prod"
    grant = make_grant(tags={"City": "Z\u00fcrich Ost", "Name": "\u5c71\u7530 \u592a\u90ce"}, transitive_keys=("City",))
    recipient, audience = signin_saml_endpoint("aws")
    minted = mint_saml_response(grant, IDENTITY, kit.key, SamlIssuer(entity, recipient, audience, sign_response=True),
                                now=NOW, duration=3600)
    md = IdpMetadata.from_xml(idp_metadata(entity, [kit.key], SSO_URL))
    assert md.entity_id == entity
    assert validate_saml_response(minted, metadata=md, now=NOW, role_arn=grant.role_arn,
                                  principal_arn=grant.provider_arn) == []
    xml = base64.b64decode(minted)
    root = etree.fromstring(xml)
    assert values(root, "PrincipalTag:City") == ["Z\u00fcrich Ost"]
    assert find(root, "saml:Issuer").text == entity
    XMLVerifier().verify(etree.tostring(assertion_of(root)), x509_cert=kit.key.cert_pem.decode())
    XMLVerifier().verify(xml, x509_cert=kit.key.cert_pem.decode())
    f = tmp_path / "resp.xml"
    f.write_bytes(xml)
    assert xmlsec1_verify(f, crt_of(kit.key)).returncode == 0
    assert xmlsec1_verify(f, crt_of(kit.key), node_xpath=ASSERTION_SIG_XPATH).returncode == 0


# --------------------------------------------------------------------------- 2. independent signature checks


def test_assertion_signature_shape(kit: Kit) -> None:
    root = etree.fromstring(kit.sign(kit.build()))
    a = assertion_of(root)
    sig = find(a, "ds:Signature")
    # SAML schema order: the Signature comes right after the Issuer.
    assert [etree.QName(c).localname for c in a][:3] == ["Issuer", "Signature", "Subject"]
    si = find(sig, "ds:SignedInfo")
    assert find(si, "ds:CanonicalizationMethod").get("Algorithm") == T_EXC_C14N
    assert find(si, "ds:SignatureMethod").get("Algorithm") == ALG_RSA_SHA256
    refs = si.findall("ds:Reference", NS)
    assert len(refs) == 1 and refs[0].get("URI") == "#" + a.get("ID")
    assert find(refs[0], "ds:DigestMethod").get("Algorithm") == DIGEST_SHA256
    assert [t.get("Algorithm") for t in refs[0].findall("ds:Transforms/ds:Transform", NS)] == [T_ENVELOPED,
                                                                                               T_EXC_C14N]
    cert_b64 = "".join((find(sig, "ds:KeyInfo/ds:X509Data/ds:X509Certificate").text or "").split())
    assert cert_b64 == kit.key.cert_b64()


def test_signxml_and_xmlsec1_verify_and_reject_tampering(kit: Kit, tmp_path: Path) -> None:
    xml = kit.sign(kit.build())
    a_bytes = etree.tostring(assertion_of(etree.fromstring(xml)))
    assert XMLVerifier().verify(a_bytes, x509_cert=kit.key.cert_pem.decode()).signed_xml is not None

    good = tmp_path / "good.xml"
    good.write_bytes(xml)
    res = subprocess.run([XMLSEC1, "--verify", "--pubkey-cert-pem", str(crt_of(kit.key)),
                          "--id-attr:ID", ASSERTION_ID_ATTR, str(good)], capture_output=True, text=True,
                         timeout=30, check=False)
    assert res.returncode == 0, res.stderr

    tampered_xml = xml.replace(b">alice<", b">mallory<")
    assert tampered_xml != xml
    with pytest.raises(InvalidSignature):
        XMLVerifier().verify(etree.tostring(assertion_of(etree.fromstring(tampered_xml))),
                             x509_cert=kit.key.cert_pem.decode())
    bad = tmp_path / "tampered.xml"
    bad.write_bytes(tampered_xml)
    res = subprocess.run([XMLSEC1, "--verify", "--pubkey-cert-pem", str(crt_of(kit.key)),
                          "--id-attr:ID", ASSERTION_ID_ATTR, str(bad)], capture_output=True, text=True,
                         timeout=30, check=False)
    assert res.returncode != 0
    # And the right document against the wrong certificate fails too (the embedded cert is not trusted).
    assert xmlsec1_verify(good, crt_of(kit.other)).returncode != 0
    with pytest.raises(InvalidSignature):
        XMLVerifier().verify(a_bytes, x509_cert=kit.other.cert_pem.decode())


def test_both_signed_each_signature_covers_its_own_element(kit: Kit, tmp_path: Path) -> None:
    xml = kit.sign(kit.build(), both=True)
    root = etree.fromstring(xml)
    assert [etree.QName(c).localname for c in root] == ["Issuer", "Signature", "Status", "Assertion"]
    # Change the Response (outside the Assertion): the Response signature breaks, the Assertion's holds.
    root.set("Destination", "https://eu-west-1.signin.aws.amazon.com/saml")
    f = tmp_path / "dest.xml"
    f.write_bytes(etree.tostring(root))
    assert xmlsec1_verify(f, crt_of(kit.key)).returncode != 0
    assert xmlsec1_verify(f, crt_of(kit.key), node_xpath=ASSERTION_SIG_XPATH).returncode == 0
    with pytest.raises(InvalidSignature):
        XMLVerifier().verify(etree.tostring(root), x509_cert=kit.key.cert_pem.decode())


# --------------------------------------------------------------------------- 3. content of the minted XML


@pytest.fixture(scope="module")
def minted(kit: Kit) -> tuple[str, etree._Element]:
    b = mint_saml_response(GRANT, IDENTITY, kit.key, make_issuer(), now=NOW, duration=7200)
    return b, etree.fromstring(base64.b64decode(b))


def test_minted_base64_and_declaration(minted: tuple[str, etree._Element]) -> None:
    b, _ = minted
    assert "\n" not in b and "\r" not in b
    assert re.fullmatch(r"[A-Za-z0-9+/]+={0,2}", b)
    raw = base64.b64decode(b, validate=True)
    assert re.match(rb"<\?xml version=['\"]1\.0['\"] encoding=['\"]UTF-8['\"]\?>", raw)
    raw.decode("utf-8")
    assert b"<!DOCTYPE" not in raw


def test_minted_wrapper_issuers_and_ids(minted: tuple[str, etree._Element]) -> None:
    _, root = minted
    a = assertion_of(root)
    assert root.tag == f"{{{NS_SAMLP}}}Response"
    assert root.get("Version") == a.get("Version") == "2.0"
    assert root.get("IssueInstant") == a.get("IssueInstant") == ts(NOW)
    assert root.get("Destination") == "https://signin.aws.amazon.com/saml"
    assert find(root, "samlp:Status/samlp:StatusCode").get("Value") == "urn:oasis:names:tc:SAML:2.0:status:Success"
    assert find(root, "saml:Issuer").text == ENTITY_ID
    assert find(a, "saml:Issuer").text == ENTITY_ID
    assert root.xpath("//@InResponseTo") == []
    assert len(root.findall(".//saml:Assertion", NS)) == 1
    ids = [root.get("ID"), a.get("ID")]
    assert ids[0] != ids[1] and all(re.fullmatch(r"_[0-9a-f]{40}", i or "") for i in ids)


def test_minted_nameid_is_persistent_and_pseudonymous(kit: Kit, minted: tuple[str, etree._Element]) -> None:
    _, root = minted
    name_id = find(root, "saml:Assertion/saml:Subject/saml:NameID")
    assert name_id.get("Format") == "urn:oasis:names:tc:SAML:2.0:nameid-format:persistent"
    value = name_id.text or ""
    assert value == subject_for(IDENTITY)
    for pii in ("alice", "example.com", IDENTITY.subject, IDENTITY.email, IDENTITY.name):
        assert pii and pii not in value
    # Stable for the same user, different for another.
    again = etree.fromstring(kit.sign(kit.build()))
    assert find(again, "saml:Assertion/saml:Subject/saml:NameID").text == value
    bob = build_response(GRANT, Identity(connector_id="corp", subject="bob", issuer=IDENTITY.issuer), make_issuer(),
                         now=NOW, duration=3600)
    assert find(bob, "saml:Assertion/saml:Subject/saml:NameID").text != value


def test_minted_subject_confirmation_conditions_authn(minted: tuple[str, etree._Element]) -> None:
    _, root = minted
    a = assertion_of(root)
    scs = a.findall("saml:Subject/saml:SubjectConfirmation", NS)
    assert len(scs) == 1 and scs[0].get("Method") == "urn:oasis:names:tc:SAML:2.0:cm:bearer"
    scd = scs[0].findall("saml:SubjectConfirmationData", NS)
    assert len(scd) == 1
    assert scd[0].get("Recipient") == "https://signin.aws.amazon.com/saml"
    assert scd[0].get("InResponseTo") is None
    nooa = int(datetime.strptime(scd[0].get("NotOnOrAfter") or "", "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC)
               .timestamp())
    assert NOW < nooa <= NOW + 300
    cond = find(a, "saml:Conditions")
    assert cond.get("NotBefore") == ts(NOW)
    assert cond.get("NotOnOrAfter") == ts(nooa)
    assert [x.text for x in cond.findall("saml:AudienceRestriction/saml:Audience", NS)] == ["urn:amazon:webservices"]
    authn = a.findall("saml:AuthnStatement", NS)
    assert len(authn) == 1
    assert authn[0].get("SessionNotOnOrAfter") == ts(NOW + 7200)
    assert authn[0].get("AuthnInstant") == ts(NOW - 42)
    assert find(authn[0], "saml:AuthnContext/saml:AuthnContextClassRef").text
    # Schema order of the Assertion's children.
    assert [etree.QName(c).localname for c in a] == ["Issuer", "Signature", "Subject", "Conditions",
                                                     "AuthnStatement", "AttributeStatement"]


def test_minted_aws_attributes(minted: tuple[str, etree._Element]) -> None:
    _, root = minted
    attrs = root.findall("saml:Assertion/saml:AttributeStatement/saml:Attribute", NS)
    names = [a.get("Name") for a in attrs]
    assert len(names) == len(set(names)), "one Attribute element per name"
    assert all(a.get("NameFormat") == "urn:oasis:names:tc:SAML:2.0:attrname-format:uri" for a in attrs)
    assert values(root, "Role") == [f"{GRANT.role_arn},{GRANT.provider_arn}"]
    assert values(root, "RoleSessionName") == ["alice"]
    assert values(root, "SessionDuration") == ["7200"]
    tag_attrs = {n.removeprefix(AWS_ATTR + "PrincipalTag:") for n in names if n.startswith(AWS_ATTR + "PrincipalTag:")}
    assert tag_attrs == set(TAGS)
    for k, v in TAGS.items():
        assert values(root, f"PrincipalTag:{k}") == [v]
    assert values(root, "TransitiveTagKeys") == list(TRANSITIVE)
    assert values(root, "SourceIdentity") == ["alice@example.com"]
    assert set(names) == {AWS_ATTR + s for s in ("Role", "RoleSessionName", "SessionDuration", "TransitiveTagKeys",
                                                "SourceIdentity")} | {AWS_ATTR + f"PrincipalTag:{k}" for k in TAGS}


def test_minted_without_tags_or_source_identity_omits_those_attributes(kit: Kit) -> None:
    grant = make_grant(tags={}, transitive_keys=(), source_identity=None)
    root = etree.fromstring(kit.sign(kit.build(grant)))
    names = [a.get("Name") for a in root.iter(f"{{{NS_SAML}}}Attribute")]
    assert names == [AWS_ATTR + "Role", AWS_ATTR + "RoleSessionName", AWS_ATTR + "SessionDuration"]
    assert kit.check(kit.sign(kit.build(grant)), grant=grant) == []


def test_minted_ids_are_fresh_each_time(kit: Kit) -> None:
    r1, r2 = kit.build(), kit.build()
    assert {r1.get("ID"), assertion_of(r1).get("ID")}.isdisjoint({r2.get("ID"), assertion_of(r2).get("ID")})


# --------------------------------------------------------------------------- 4. validator rules
# Rule 1: size, base64, DOCTYPE, XML


def test_rule1_too_long(kit: Kit) -> None:
    problems = kit.check("A" * 100_004)
    only_rule(problems, 1, "100000")
    # the limit is on the base64 text, inclusive
    assert not any(p.startswith("1: 100000") for p in kit.check("A" * 100_000))


@pytest.mark.parametrize("mangle", [
    lambda s: "not base64!!",
    lambda s: base64.encodebytes(base64.b64decode(s)).decode(),  # MIME style: line breaks every 76 chars
    lambda s: base64.urlsafe_b64encode(base64.b64decode(s)).decode().replace("=", ""),
], ids=["garbage", "line-breaks", "urlsafe-unpadded"])
def test_rule1_not_standard_base64(kit: Kit, mangle: Callable[[str], str]) -> None:
    good = b64(kit.sign(kit.build()))
    assert kit.check(good) == []
    assert kit.check(mangle(good)) == ["1: not standard base64 (no line breaks, no URL-safe alphabet)"]


@pytest.mark.parametrize("doctype", [
    b"<!DOCTYPE samlp:Response>",
    b'<!DOCTYPE r [<!ENTITY x "y">]>',
], ids=["doctype", "entity"])
def test_rule1_doctype_or_entity(kit: Kit, doctype: bytes) -> None:
    xml = kit.sign(kit.build())
    decl, rest = xml.split(b"?>", 1)
    assert kit.check(decl + b"?>" + doctype + rest) == ["1: DOCTYPE/entity declarations are not allowed"]


def test_rule1_doctype_in_utf16_document(kit: Kit) -> None:
    body = etree.tostring(etree.fromstring(kit.sign(kit.build())), encoding="unicode")
    doc = '<?xml version="1.0" encoding="UTF-16"?>\n<!DOCTYPE r [<!ENTITY x "y">]>\n' + body
    raw = doc.encode("utf-16")
    assert etree.fromstring(raw).getroottree().docinfo.internalDTD is not None  # it really has a DTD
    only_rule(kit.check(raw), 1, "DOCTYPE")


@pytest.mark.parametrize("raw", [b"<samlp:Response", b"plain text", b"<a></b>"])
def test_rule1_not_xml(kit: Kit, raw: bytes) -> None:
    only_rule(kit.check(raw), 1, "not well-formed XML")


# Rule 2: root, Status, Assertion count, EncryptedAssertion


def test_rule2_wrong_root_bare_assertion(kit: Kit) -> None:
    a = assertion_of(etree.fromstring(kit.sign(kit.build())))
    problems = kit.check(etree.tostring(a))
    assert problems == [f"2: root must be samlp:Response, not {{{NS_SAML}}}Assertion"]


def test_rule2_status_not_success(kit: Kit) -> None:
    def mutate(r: etree._Element) -> None:
        find(r, "samlp:Status/samlp:StatusCode").set("Value", "urn:oasis:names:tc:SAML:2.0:status:Requester")

    assert kit.mutated(mutate) == ["2: Status is not Success"]


def test_rule2_status_missing(kit: Kit) -> None:
    assert kit.mutated(lambda r: remove(r.find("samlp:Status", NS))) == ["2: Status is not Success"]


def _add_encrypted_assertion(r: etree._Element) -> None:
    enc = etree.Element(f"{{{NS_SAML}}}EncryptedAssertion")
    etree.SubElement(enc, "{http://www.w3.org/2001/04/xmlenc#}EncryptedData")
    assertion_of(r).addnext(enc)


def test_rule2_encrypted_assertion(kit: Kit) -> None:
    only_rule(kit.mutated(_add_encrypted_assertion), 2, "EncryptedAssertion is not allowed")
    # With the provider's encryption mode on, its presence alone is not a problem.
    assert kit.mutated(_add_encrypted_assertion, encryption_allowed=True) == []


def _evil_copy(a: etree._Element) -> etree._Element:
    evil = copy.deepcopy(a)
    evil.set("ID", "_evil")
    for sig in evil.findall("ds:Signature", NS):
        evil.remove(sig)
    for v in evil.iter(f"{{{NS_SAML}}}AttributeValue"):
        if v.text == "alice":
            v.text = "mallory"
    return evil


def _second_assertion_after(xml: bytes) -> bytes:
    root = etree.fromstring(xml)
    a = assertion_of(root)
    a.addnext(_evil_copy(a))
    return bytes(etree.tostring(root))


def _second_assertion_before(xml: bytes) -> bytes:
    root = etree.fromstring(xml)
    a = assertion_of(root)
    a.addprevious(_evil_copy(a))
    return bytes(etree.tostring(root))


def _signed_moved_into_extensions(xml: bytes) -> bytes:
    root = etree.fromstring(xml)
    a = assertion_of(root)
    evil = _evil_copy(a)
    ext = etree.Element(f"{{{NS_SAMLP}}}Extensions")
    find(root, "saml:Issuer").addnext(ext)
    a.addprevious(evil)
    ext.append(a)
    return bytes(etree.tostring(root))


def _only_signed_in_extensions(xml: bytes) -> bytes:
    root = etree.fromstring(xml)
    a = assertion_of(root)
    ext = etree.Element(f"{{{NS_SAMLP}}}Extensions")
    find(root, "saml:Issuer").addnext(ext)
    ext.append(a)
    return bytes(etree.tostring(root))


def _nested_in_assertion(xml: bytes) -> bytes:
    root = etree.fromstring(xml)
    a = assertion_of(root)
    advice = etree.Element(f"{{{NS_SAML}}}Advice")
    advice.append(_evil_copy(a))
    find(a, "saml:Conditions").addnext(advice)
    return bytes(etree.tostring(root))


@pytest.mark.parametrize(("wrap", "found"), [
    (_second_assertion_after, 2),
    (_second_assertion_before, 2),
    (_signed_moved_into_extensions, 2),
    (_only_signed_in_extensions, 1),
    (_nested_in_assertion, 2),
], ids=["unsigned-after", "unsigned-before", "signed-in-extensions", "only-signed-in-extensions", "in-advice"])
def test_rule2_signature_wrapping(kit: Kit, wrap: Callable[[bytes], bytes], found: int) -> None:
    xml = kit.sign(kit.build())
    assert kit.check(xml) == []
    problems = kit.check(wrap(xml))
    assert problems == [f"2: exactly one Assertion, a child of the Response, is required (found {found})"]


# Rule 3: signature


def test_rule3_duplicate_ids(kit: Kit) -> None:
    def mutate(r: etree._Element) -> None:
        r.set("ID", assertion_of(r).get("ID"))

    assert kit.mutated(mutate) == ["3: duplicate ID attributes (signature wrapping)"]


def test_rule3_unsigned_assertion(kit: Kit) -> None:
    xml = etree.tostring(kit.build(), xml_declaration=True, encoding="UTF-8")
    assert kit.check(xml) == ["3: the Assertion must carry exactly one enveloped ds:Signature (found 0)"]


def test_rule3_only_the_response_signed(kit: Kit) -> None:
    root = etree.fromstring(kit.sign(kit.build(), both=True))
    remove(assertion_of(root).find("ds:Signature", NS))
    only_rule(kit.check(etree.tostring(root)), 3, "exactly one enveloped ds:Signature (found 0)")


def test_rule3_two_signatures_in_assertion(kit: Kit) -> None:
    root = etree.fromstring(kit.sign(kit.build()))
    sig = find(root, "saml:Assertion/ds:Signature")
    sig.addnext(copy.deepcopy(sig))
    only_rule(kit.check(etree.tostring(root)), 3, "(found 2)")


def test_rule3_signed_by_another_key(kit: Kit) -> None:
    xml = kit.sign(kit.build(), kit.other)
    assert kit.check(xml) == ["3: the Assertion signature does not verify with any certificate in the IdP metadata"]


@pytest.mark.parametrize(("old", "new"), [
    (b">alice<", b">mallory<"),                          # RoleSessionName
    (b"role/Admin,", b"role/Owner,"),                    # Role
    (b">Automation<", b">Everything<"),                  # a PrincipalTag value
])
def test_rule3_tampered_after_signing(kit: Kit, old: bytes, new: bytes) -> None:
    xml = kit.sign(kit.build())
    assert xml.count(old) == 1
    tampered = xml.replace(old, new)
    grant = make_grant(role_arn=role_arn(name="Owner")) if b"Owner" in new else GRANT
    assert kit.check(tampered, grant=grant) == [
        "3: the Assertion signature does not verify with any certificate in the IdP metadata"]


def test_rule3_tampered_signed_info(kit: Kit) -> None:
    root = etree.fromstring(kit.sign(kit.build()))
    dv = find(root, "saml:Assertion/ds:Signature/ds:SignedInfo/ds:Reference/ds:DigestValue")
    dv.text = base64.b64encode(b"\0" * 32).decode()
    only_rule(kit.check(etree.tostring(root)), 3, "does not verify")


def test_rule3_sha1_signature_method(kit: Kit) -> None:
    xml = sign_custom(kit.build(), kit.key, method=xc.TransformRsaSha1)
    assert b"xmldsig#rsa-sha1" in xml
    assert kit.check(xml) == ["3: signature algorithm must be RSA-SHA256, not http://www.w3.org/2000/09/xmldsig#rsa-sha1"]


def test_rule3_sha1_digest(kit: Kit) -> None:
    xml = sign_custom(kit.build(), kit.key, digest=xc.TransformSha1)
    assert kit.check(xml) == ["3: digest algorithm must be SHA-256"]


def test_rule3_transforms_not_enveloped_then_exc_c14n(kit: Kit) -> None:
    xml = sign_custom(kit.build(), kit.key, transforms=(xc.TransformEnveloped,))
    only_rule(kit.check(xml), 3, "transforms must be enveloped-signature then exc-c14n")


def test_rule3_reference_to_another_element(kit: Kit) -> None:
    resp = kit.build()
    xml = sign_custom(resp, kit.key, uri="#" + resp.get("ID"))
    only_rule(kit.check(xml), 3, "one Reference to #" + assertion_of(resp).get("ID"))


def test_rule3_custom_signer_control(kit: Kit) -> None:
    """The hand signer used above produces a valid signature with the right algorithms (so the tests above fail
    for the algorithm, not for the signer)."""
    assert kit.check(sign_custom(kit.build(), kit.key)) == []


# Rule 4: Issuer


@pytest.mark.parametrize("where", ["Response", "Assertion"])
def test_rule4_wrong_issuer(kit: Kit, where: str) -> None:
    def mutate(r: etree._Element) -> None:
        el = r if where == "Response" else assertion_of(r)
        find(el, "saml:Issuer").text = "https://evil.example.com/saml"

    assert kit.mutated(mutate) == [f"4: {where} Issuer must be {ENTITY_ID!r}"]


def test_rule4_missing_response_issuer(kit: Kit) -> None:
    assert kit.mutated(lambda r: remove(r.find("saml:Issuer", NS))) == [f"4: Response Issuer must be {ENTITY_ID!r}"]


def test_rule4_comment_inside_issuer_is_read_whole(kit: Kit) -> None:
    """A comment inserted after signing does not change the canonical form, and the validator reads the text
    around it as one value (itertext), so a split Issuer still equals the entity id."""
    xml = kit.sign(kit.build())
    marked = xml.replace(b"<saml:Issuer>https://bridge.", b"<saml:Issuer>https://bridge.<!---->")
    assert marked.count(b"<!---->") == 2
    assert kit.check(marked) == []


# Rule 5: SubjectConfirmation


def _scd(r: etree._Element) -> etree._Element:
    return find(r, "saml:Assertion/saml:Subject/saml:SubjectConfirmation/saml:SubjectConfirmationData")


def test_rule5_two_subject_confirmations(kit: Kit) -> None:
    def mutate(r: etree._Element) -> None:
        sc = find(r, "saml:Assertion/saml:Subject/saml:SubjectConfirmation")
        sc.addnext(copy.deepcopy(sc))

    assert kit.mutated(mutate) == ["5: exactly one SubjectConfirmation is required (found 2)"]


def test_rule5_no_subject_confirmation(kit: Kit) -> None:
    problems = kit.mutated(lambda r: remove(r.find("saml:Assertion/saml:Subject/saml:SubjectConfirmation", NS)))
    assert problems == ["5: exactly one SubjectConfirmation is required (found 0)"]


def test_rule5_not_bearer(kit: Kit) -> None:
    def mutate(r: etree._Element) -> None:
        find(r, "saml:Assertion/saml:Subject/saml:SubjectConfirmation").set(
            "Method", "urn:oasis:names:tc:SAML:2.0:cm:holder-of-key")

    assert kit.mutated(mutate) == ["5: SubjectConfirmation Method must be bearer"]


@pytest.mark.parametrize("nooa", [ts(NOW - 120), None, "not-a-time"], ids=["expired", "missing", "garbage"])
def test_rule5_subject_confirmation_expired_or_missing(kit: Kit, nooa: str | None) -> None:
    def mutate(r: etree._Element) -> None:
        if nooa is None:
            del _scd(r).attrib["NotOnOrAfter"]
        else:
            _scd(r).set("NotOnOrAfter", nooa)

    assert kit.mutated(mutate) == ["5: SubjectConfirmationData NotOnOrAfter is missing or past"]


def test_rule5_expiry_allows_the_skew_only(kit: Kit) -> None:
    assert kit.mutated(lambda r: _scd(r).set("NotOnOrAfter", ts(NOW - 30))) == []
    assert kit.mutated(lambda r: _scd(r).set("NotOnOrAfter", ts(NOW - 30)), skew=0) == [
        "5: SubjectConfirmationData NotOnOrAfter is missing or past"]


@pytest.mark.parametrize("recipient", [
    "https://evil.example.com/saml",
    "https://signin.aws.amazon.com/saml/",
    "http://signin.aws.amazon.com/saml",
    "https://signin.amazonaws-us-gov.com/saml",
    "https://signin.aws.amazon.com.evil.example/saml",
])
def test_rule5_wrong_recipient(kit: Kit, recipient: str) -> None:
    def mutate(r: etree._Element) -> None:
        _scd(r).set("Recipient", recipient)
        r.set("Destination", recipient)

    assert kit.mutated(mutate) == [f"5: Recipient {recipient!r} is not an AWS sign-in SAML endpoint of aws"]


@pytest.mark.parametrize("recipient", ["https://signin.aws.amazon.com/static/saml",
                                       "https://ap-southeast-2.signin.aws.amazon.com/saml"])
def test_rule5_other_documented_recipients_accepted(kit: Kit, recipient: str) -> None:
    def mutate(r: etree._Element) -> None:
        _scd(r).set("Recipient", recipient)
        r.set("Destination", recipient)

    assert kit.mutated(mutate) == []


def test_rule5_missing_recipient(kit: Kit) -> None:
    def mutate(r: etree._Element) -> None:
        del _scd(r).attrib["Recipient"]
        del r.attrib["Destination"]

    assert kit.mutated(mutate) == ["5: Recipient None is not an AWS sign-in SAML endpoint of aws"]


def test_rule5_destination_differs_from_recipient(kit: Kit) -> None:
    other = "https://eu-west-1.signin.aws.amazon.com/saml"
    assert kit.mutated(lambda r: r.set("Destination", other)) == [
        f"5: Response Destination {other!r} differs from the Recipient"]
    # Destination is optional.
    assert kit.mutated(lambda r: r.attrib.pop("Destination")) == []


# Rule 6: NameID


def test_rule6_missing_nameid(kit: Kit) -> None:
    assert kit.mutated(lambda r: remove(r.find("saml:Assertion/saml:Subject/saml:NameID", NS))) == [
        "6: NameID is missing"]


def test_rule6_empty_nameid(kit: Kit) -> None:
    def mutate(r: etree._Element) -> None:
        find(r, "saml:Assertion/saml:Subject/saml:NameID").text = "  "

    assert kit.mutated(mutate) == ["6: NameID is missing"]


@pytest.mark.parametrize("fmt", ["urn:example:custom", "urn:oasis:names:tc:SAML:2.0:nameid-format:encrypted", None])
def test_rule6_unsupported_nameid_format(kit: Kit, fmt: str | None) -> None:
    def mutate(r: etree._Element) -> None:
        n = find(r, "saml:Assertion/saml:Subject/saml:NameID")
        if fmt is None:
            del n.attrib["Format"]
        else:
            n.set("Format", fmt)

    assert kit.mutated(mutate) == [f"6: NameID Format {fmt!r} is not one AWS supports"]


SPEC_NAMEID_FORMATS = [f"urn:oasis:names:tc:SAML:2.0:nameid-format:{x}" for x in
                       ("persistent", "transient", "kerberos", "entity")] + [
                       f"urn:oasis:names:tc:SAML:1.1:nameid-format:{x}" for x in
                       ("emailAddress", "unspecified", "X509SubjectName", "WindowsDomainQualifiedName")]


@pytest.mark.parametrize("fmt", SPEC_NAMEID_FORMATS)
def test_rule6_every_documented_format_accepted(kit: Kit, fmt: str) -> None:
    """The eight Formats of docs/aws-rules.md §1.3 are accepted."""
    assert kit.mutated(lambda r: find(r, "saml:Assertion/saml:Subject/saml:NameID").set("Format", fmt)) == []


def test_rule6_nameid_comment_injection_reads_whole_value(kit: Kit) -> None:
    """``alice<!---->.evil``: exclusive C14N drops comments, so the signature still verifies after the comment is
    injected; what counts is that the validator reads ``alice.evil`` (what was signed), not ``alice``."""
    resp = kit.build()
    find(resp, "saml:Assertion/saml:Subject/saml:NameID").text = "alice.evil"
    xml = kit.sign(resp)
    injected = xml.replace(b">alice.evil<", b">alice<!---->.evil<")
    assert injected != xml
    assert kit.check(injected) == []  # signature intact, NameID present
    name_id = find(etree.fromstring(injected), "saml:Assertion/saml:Subject/saml:NameID")
    assert name_id.text == "alice"  # what a naive .text reader would see
    assert validate_saml._text(name_id) == "alice.evil"  # what the validator reads
    # signxml's view of the signed content agrees with the validator's.
    signed = XMLVerifier().verify(etree.tostring(assertion_of(etree.fromstring(injected))),
                                  x509_cert=kit.key.cert_pem.decode()).signed_xml
    assert signed is not None
    assert "".join(find(signed, "saml:Subject/saml:NameID").itertext()) == "alice.evil"
    # A comment-only NameID is empty.
    resp = kit.build()
    nid = find(resp, "saml:Assertion/saml:Subject/saml:NameID")
    nid.text = None
    nid.append(etree.Comment("alice"))
    assert kit.check(kit.sign(resp)) == ["6: NameID is missing"]


# Rule 7: Conditions


def _cond(r: etree._Element) -> etree._Element:
    return find(r, "saml:Assertion/saml:Conditions")


def test_rule7_not_before_in_future(kit: Kit) -> None:
    assert kit.mutated(lambda r: _cond(r).set("NotBefore", ts(NOW + 120))) == [
        "7: Conditions NotBefore is in the future"]
    assert kit.mutated(lambda r: _cond(r).set("NotBefore", ts(NOW + 30))) == []  # within the 60 s skew


def test_rule7_not_on_or_after_past(kit: Kit) -> None:
    assert kit.mutated(lambda r: _cond(r).set("NotOnOrAfter", ts(NOW - 120))) == [
        "7: Conditions NotOnOrAfter has passed"]


def test_rule7_conditions_missing(kit: Kit) -> None:
    assert kit.mutated(lambda r: remove(r.find("saml:Assertion/saml:Conditions", NS))) == ["7: Conditions are missing"]


@pytest.mark.parametrize(("attr", "value"), [("NotOnOrAfter", "2020-01-01T00:00:00+00:00"),
                                             ("NotBefore", "2099-01-01T00:00:00+00:00"),
                                             ("NotOnOrAfter", "yesterday")])
def test_rule7_unreadable_condition_time(kit: Kit, attr: str, value: str) -> None:
    only_rule(kit.mutated(lambda r: _cond(r).set(attr, value)), 7, "Conditions")


@pytest.mark.parametrize("audiences", [["https://evil.example.com"], [], ["urn:amazon:webservices:govcloud"],
                                       ["urn:amazon:webservices:cn-north-1"], ["urn:amazon:webservice"]])
def test_rule7_no_aws_audience(kit: Kit, audiences: list[str]) -> None:
    def mutate(r: etree._Element) -> None:
        ar = find(r, "saml:Assertion/saml:Conditions/saml:AudienceRestriction")
        for a in list(ar):
            ar.remove(a)
        for text in audiences:
            etree.SubElement(ar, f"{{{NS_SAML}}}Audience").text = text

    only_rule(kit.mutated(mutate), 7, "includes no AWS audience for aws")


def test_rule7_one_aws_audience_among_others_is_enough(kit: Kit) -> None:
    def mutate(r: etree._Element) -> None:
        aud = find(r, "saml:Assertion/saml:Conditions/saml:AudienceRestriction/saml:Audience")
        aud.addprevious(etree.Element(f"{{{NS_SAML}}}Audience"))
        aud.getprevious().text = "https://other.example.com"

    assert kit.mutated(mutate) == []


# Rule 8: IssueInstant


@pytest.mark.parametrize("issued", [NOW - 360, NOW + 120], ids=["6-minutes-ago", "future"])
def test_rule8_issue_instant(kit: Kit, issued: int) -> None:
    assert kit.mutated(lambda r: assertion_of(r).set("IssueInstant", ts(issued))) == [
        "8: Assertion IssueInstant must be within the last 5 minutes"]


def test_rule8_issue_instant_4_minutes_ago_ok(kit: Kit) -> None:
    assert kit.mutated(lambda r: assertion_of(r).set("IssueInstant", ts(NOW - 240))) == []


def test_rule8_issue_instant_with_fraction_and_offset(kit: Kit) -> None:
    local = datetime.fromtimestamp(NOW, UTC).strftime("%Y-%m-%dT%H:%M:%S") + ".0+06:00"  # == NOW - 6 h
    only_rule(kit.mutated(lambda r: assertion_of(r).set("IssueInstant", local)), 8, "IssueInstant")


# Rule 9: Role


def test_rule9_role_missing(kit: Kit) -> None:
    assert kit.mutated(lambda r: remove(attribute(r, "Role"))) == ["9: the Role attribute is missing"]


@pytest.mark.parametrize("value", [
    role_arn(),
    f"{role_arn()},{role_arn(name='Other')}",
    f"{role_arn()},{provider_arn()},{provider_arn(name='x')}",
    f"{role_arn()};{provider_arn()}",
    f"arn:aws:iam::12345:role/Admin,{provider_arn()}",
    f"{role_arn()},arn:aws:iam::{ACCOUNT}:user/bridge",
])
def test_rule9_role_malformed(kit: Kit, value: str) -> None:
    problems = kit.mutated(lambda r: set_values(r, "Role", [value]))
    only_rule(problems, 9, f"Role value {value!r} must be '<role arn>,<saml-provider arn>'")


def test_rule9_provider_in_another_account(kit: Kit) -> None:
    value = f"{role_arn()},{provider_arn(account=OTHER_ACCOUNT)}"
    problems = kit.mutated(lambda r: set_values(r, "Role", [value]), principal_arn=provider_arn(account=OTHER_ACCOUNT))
    assert problems == [f"9: role and provider in {value!r} must share partition and account"]


def test_rule9_provider_in_another_partition(kit: Kit) -> None:
    value = f"{role_arn()},{provider_arn('aws-cn')}"
    problems = kit.mutated(lambda r: set_values(r, "Role", [value]), principal_arn=provider_arn("aws-cn"))
    assert problems == [f"9: role and provider in {value!r} must share partition and account"]


def test_rule9_requested_pair_not_among_values(kit: Kit) -> None:
    other = role_arn(name="ReadOnly")
    problems = kit.check(kit.sign(kit.build()), role_arn=other)
    assert problems == [f"9: the requested pair ({other}, {GRANT.provider_arn}) is not in the Role attribute"]
    problems = kit.check(kit.sign(kit.build()), principal_arn=provider_arn(name="other"))
    only_rule(problems, 9, "is not in the Role attribute")


def test_rule9_several_roles_and_provider_first_order(kit: Kit) -> None:
    ro = role_arn(name="ReadOnly")
    vals = [f"{role_arn()},{provider_arn()}", f"{provider_arn()},{ro}"]
    assert kit.mutated(lambda r: set_values(r, "Role", vals), role_arn=ro) == []
    assert kit.mutated(lambda r: set_values(r, "Role", vals), role_arn=None, principal_arn=None) == []


# Rule 10: RoleSessionName


def test_rule10_missing(kit: Kit) -> None:
    problems = kit.mutated(lambda r: remove(attribute(r, "RoleSessionName")))
    assert problems == ["10: RoleSessionName must be one value matching [A-Za-z0-9_+=,.@-]{2,64}, got []"]


def test_rule10_two_values(kit: Kit) -> None:
    only_rule(kit.mutated(lambda r: set_values(r, "RoleSessionName", ["alice", "bob"])), 10, "got ['alice', 'bob']")


def test_rule10_two_attributes(kit: Kit) -> None:
    only_rule(kit.mutated(lambda r: add_attribute(r, "RoleSessionName", ["bob"])), 10, "got ['alice', 'bob']")


@pytest.mark.parametrize("name", ["alice smith", "a", "x" * 65, "alice\n", "alice/ops", "jos\u00e9", ""])
def test_rule10_bad_chars_or_length(kit: Kit, name: str) -> None:
    only_rule(kit.mutated(lambda r: set_values(r, "RoleSessionName", [name])), 10, "RoleSessionName must be")


def test_rule10_boundaries_accepted(kit: Kit) -> None:
    for name in ("ab", "x" * 64, "a_b+c=d,e.f@g-h"):
        assert kit.mutated(lambda r, n=name: set_values(r, "RoleSessionName", [n])) == [], name


# Rule 11: SessionDuration


@pytest.mark.parametrize("value", ["899", "43201", "3600s", "abc", "-900", "", "3600.0"])
def test_rule11_session_duration_invalid(kit: Kit, value: str) -> None:
    only_rule(kit.mutated(lambda r: set_values(r, "SessionDuration", [value])), 11,
              "SessionDuration must be one integer 900..43200")


def test_rule11_two_values(kit: Kit) -> None:
    only_rule(kit.mutated(lambda r: set_values(r, "SessionDuration", ["900", "3600"])), 11, "one integer")


def test_rule11_bounds_accepted(kit: Kit) -> None:
    for value in ("900", "43200"):
        assert kit.mutated(lambda r, v=value: set_values(r, "SessionDuration", [v])) == [], value


def test_rule11_above_role_max_duration(kit: Kit) -> None:
    problems = kit.mutated(lambda r: None, duration=7200, max_duration=3600)
    assert problems == ["11: SessionDuration 7200 exceeds the role's MaxSessionDuration 3600"]
    assert kit.mutated(lambda r: None, duration=3600, max_duration=3600) == []


def test_rule11_optional(kit: Kit) -> None:
    assert kit.mutated(lambda r: remove(attribute(r, "SessionDuration"))) == []


def test_rule11_superscript_digit_is_a_problem_not_a_crash(kit: Kit) -> None:
    only_rule(kit.mutated(lambda r: set_values(r, "SessionDuration", ["\u00b2"])), 11, "one integer")


def test_rule11_non_ascii_digits_rejected(kit: Kit) -> None:
    only_rule(kit.mutated(lambda r: set_values(r, "SessionDuration", ["\uff13\uff16\uff10\uff10"])), 11,
              "one integer")


# Rule 12: PrincipalTag / TransitiveTagKeys


def test_rule12_tag_with_two_values(kit: Kit) -> None:
    only_rule(kit.mutated(lambda r: set_values(r, "PrincipalTag:CostCenter", ["1", "2"])), 12,
              "PrincipalTag:CostCenter must have exactly one value")


def test_rule12_tag_repeated_as_two_attributes(kit: Kit) -> None:
    only_rule(kit.mutated(lambda r: add_attribute(r, "PrincipalTag:CostCenter", ["2"])), 12,
              "PrincipalTag:CostCenter must have exactly one value")


def test_rule12_aws_prefix_key(kit: Kit) -> None:
    grant = make_grant(tags={**TAGS, "aws:Owner": "x"})
    only_rule(kit.check(kit.sign(kit.build(grant)), grant=grant), 12, "reserved prefix 'aws:'")


def test_rule12_aws_prefix_value(kit: Kit) -> None:
    grant = make_grant(tags={**TAGS, "Owner": "aws:x"})
    only_rule(kit.check(kit.sign(kit.build(grant)), grant=grant), 12, "tag value starts with the reserved prefix")


@pytest.mark.parametrize("dup", ["project", "PROJECT", "pRoJeCt"])
def test_rule12_case_duplicate_keys(kit: Kit, dup: str) -> None:
    grant = make_grant(tags={**TAGS, dup: "other"})
    only_rule(kit.check(kit.sign(kit.build(grant)), grant=grant), 12, "differ only in case")


def test_rule12_fifty_one_tags(kit: Kit) -> None:
    ok = make_grant(tags={f"k{i}": "v" for i in range(50)}, transitive_keys=())
    assert kit.check(kit.sign(kit.build(ok)), grant=ok) == []
    grant = make_grant(tags={f"k{i}": "v" for i in range(51)}, transitive_keys=())
    assert kit.check(kit.sign(kit.build(grant)), grant=grant) == ["12: 51 session tags; AWS allows at most 50"]


def test_rule12_transitive_key_not_a_tag(kit: Kit) -> None:
    grant = make_grant(transitive_keys=("Project", "Missing"))
    assert kit.check(kit.sign(kit.build(grant)), grant=grant) == [
        "12: transitive tag key 'Missing' is not one of the session tags"]


@pytest.mark.parametrize(("key", "value", "fragment"), [
    ("", "v", "tag key is empty"),
    ("k" * 129, "v", "longer than 128"),
    ("Team", "v" * 257, "longer than 256"),
    ("Bad<key>", "v", "characters AWS does not allow"),
    ("Team", "a&b", "characters AWS does not allow"),
])
def test_rule12_key_and_value_patterns(kit: Kit, key: str, value: str, fragment: str) -> None:
    def mutate(r: etree._Element) -> None:
        if key == "Team":
            set_values(r, "PrincipalTag:Team", [value])
        else:
            add_attribute(r, f"PrincipalTag:{key}", [value])

    only_rule(kit.mutated(mutate), 12, fragment)


def test_rule12_empty_tag_value_allowed(kit: Kit) -> None:
    assert kit.mutated(lambda r: set_values(r, "PrincipalTag:Team", [""])) == []


# Rule 13: SourceIdentity


@pytest.mark.parametrize("value", ["a", "alice smith", "x" * 65, "aws:alice", "alice/ops", ""])
def test_rule13_source_identity_bad(kit: Kit, value: str) -> None:
    only_rule(kit.mutated(lambda r: set_values(r, "SourceIdentity", [value])), 13, "SourceIdentity must be")


def test_rule13_two_values(kit: Kit) -> None:
    only_rule(kit.mutated(lambda r: set_values(r, "SourceIdentity", ["alice", "bob"])), 13, "SourceIdentity must be")


def test_rule13_optional(kit: Kit) -> None:
    assert kit.mutated(lambda r: remove(attribute(r, "SourceIdentity"))) == []


# Several rules at once: every broken rule is reported, not just the first.


def test_several_rules_reported_together(kit: Kit) -> None:
    def mutate(r: etree._Element) -> None:
        find(r, "saml:Issuer").text = "https://evil.example.com"
        set_values(r, "RoleSessionName", ["bad name"])
        set_values(r, "SourceIdentity", ["aws:x"])

    rules = sorted({int(p.split(":")[0]) for p in kit.mutated(mutate)})
    assert rules == [4, 10, 13]


# Problems are data: which rule, where, what (str() is the text above)


def _mutations() -> list[tuple[str, Callable[[etree._Element], object], tuple[str, str]]]:
    a = "saml:Assertion"
    return [
        ("status", lambda r: find(r, "samlp:Status/samlp:StatusCode").set("Value", "x"), ("2", "Response/Status")),
        ("issuer", lambda r: setattr(find(r, f"{a}/saml:Issuer"), "text", "https://evil.example.com"),
         ("4", "Assertion/Issuer")),
        ("method", lambda r: find(r, f"{a}/saml:Subject/saml:SubjectConfirmation").set("Method", "x"),
         ("5", "Assertion/Subject/SubjectConfirmation@Method")),
        ("recipient", lambda r: (_scd(r).set("Recipient", "https://evil.example.com/saml"),
                                 r.set("Destination", "https://evil.example.com/saml")),
         ("5", "Assertion/Subject/SubjectConfirmation/SubjectConfirmationData@Recipient")),
        ("destination", lambda r: r.set("Destination", "https://evil.example.com/saml"), ("5", "Response@Destination")),
        ("nameid", lambda r: find(r, f"{a}/saml:Subject/saml:NameID").set("Format", "x"),
         ("6", "Assertion/Subject/NameID@Format")),
        ("audience", lambda r: setattr(find(r, f"{a}/saml:Conditions/saml:AudienceRestriction/saml:Audience"),
                                       "text", "urn:example"),
         ("7", "Assertion/Conditions/AudienceRestriction/Audience")),
        ("issued", lambda r: find(r, a).set("IssueInstant", ts(NOW - 600)), ("8", "Assertion@IssueInstant")),
        ("role", lambda r: set_values(r, "Role", ["arn:aws:iam::123456789012:role/X"]), ("9", "Attribute:Role")),
        ("session-name", lambda r: set_values(r, "RoleSessionName", ["a b"]), ("10", "Attribute:RoleSessionName")),
        ("duration", lambda r: set_values(r, "SessionDuration", ["60"]), ("11", "Attribute:SessionDuration")),
    ]


@pytest.mark.parametrize(("mutate", "expected"), [(m, e) for _, m, e in _mutations()],
                         ids=[name for name, _, _ in _mutations()])
def test_problem_fields_say_which_rule_and_where(kit: Kit, mutate: Callable[[etree._Element], object],
                                                 expected: tuple[str, str]) -> None:
    resp = kit.build()
    mutate(resp)
    problems = kit.problems(kit.sign(resp))
    assert problems and {(p.rule, p.path) for p in problems} == {expected}, problems
    assert all(str(p) == f"{p.rule}: {p.message}" for p in problems)


def test_problem_fields_for_undecodable_and_unsigned_responses(kit: Kit) -> None:
    assert kit.problems("not base64!") == [
        Problem("1", "SAMLResponse", "not standard base64 (no line breaks, no URL-safe alphabet)")]
    unsigned = etree.tostring(kit.build())
    assert kit.problems(unsigned) == [
        Problem("3", "Assertion/Signature", "the Assertion must carry exactly one enveloped ds:Signature (found 0)")]
