"""The strict AWS-rules validator for SAML responses (shared/spec/aws-federation.md §1.10).

Works on any SAMLResponse — ours or another IdP's — against the IdP metadata AWS holds
(entity id + signing certificates). Returns every rule broken, each prefixed with its rule
number, so `bridge verify --saml` can answer "Your request included an invalid SAML response".
"""

from __future__ import annotations

import base64
import binascii
import re
from dataclasses import dataclass
from datetime import UTC, datetime

import xmlsec
from lxml import etree
from xmlsec import constants as xc

from bridge.aws.limits import MAX_DURATION, MIN_DURATION, SESSION_NAME_RE, SOURCE_IDENTITY_RE, tags_problems

NS = {"samlp": "urn:oasis:names:tc:SAML:2.0:protocol", "saml": "urn:oasis:names:tc:SAML:2.0:assertion",
      "ds": "http://www.w3.org/2000/09/xmldsig#", "md": "urn:oasis:names:tc:SAML:2.0:metadata"}
AWS_ATTR = "https://aws.amazon.com/SAML/Attributes/"
MAX_B64 = 100_000
MAX_AGE = 300
NAMEID_FORMATS = {f"urn:oasis:names:tc:SAML:2.0:nameid-format:{x}" for x in
                  ("persistent", "transient", "kerberos", "entity")} | {
                  f"urn:oasis:names:tc:SAML:1.1:nameid-format:{x}" for x in
                  ("emailAddress", "unspecified", "X509SubjectName", "WindowsDomainQualifiedName")}
_RECIPIENTS = {
    "aws": re.compile(r"\Ahttps://(?:[a-z]{2}(?:-[a-z]+)+-\d\.)?signin\.aws\.amazon\.com/(?:static/)?saml\Z"),
    "aws-us-gov": re.compile(r"\Ahttps://signin\.amazonaws-us-gov\.com/saml\Z"),
    "aws-cn": re.compile(r"\Ahttps://signin\.amazonaws\.cn/saml\Z"),
}
_AUDIENCES = {"aws": re.compile(r"\A(?:urn:amazon:webservices|https://(?:[a-z]{2}(?:-[a-z]+)+-\d\.)?"
                                r"signin\.aws\.amazon\.com/(?:static/)?saml)\Z"),
              "aws-us-gov": re.compile(r"\Aurn:amazon:webservices:govcloud\Z"),
              "aws-cn": re.compile(r"\Aurn:amazon:webservices(?::cn-north-1)?\Z")}
_ARN = re.compile(r"\Aarn:(aws|aws-us-gov|aws-cn):iam::(\d{12}):(role|saml-provider)/[\x21-\x7e]+\Z")
ALG_RSA_SHA256 = "http://www.w3.org/2001/04/xmldsig-more#rsa-sha256"
DIGEST_SHA256 = "http://www.w3.org/2001/04/xmlenc#sha256"
T_ENVELOPED = "http://www.w3.org/2000/09/xmldsig#enveloped-signature"
T_EXC_C14N = "http://www.w3.org/2001/10/xml-exc-c14n#"


def is_aws_signin_saml(url: str) -> bool:
    """Whether ``url`` is an AWS sign-in SAML endpoint (any partition)."""
    return any(r.match(url) for r in _RECIPIENTS.values())


def is_aws_audience(value: str) -> bool:
    return any(r.match(value) for r in _AUDIENCES.values())


@dataclass(frozen=True)
class IdpMetadata:
    """What the IAM SAML provider holds: the IdP's entity id and signing certificates (PEM)."""

    entity_id: str
    certs_pem: tuple[bytes, ...]

    @classmethod
    def from_xml(cls, xml: bytes) -> IdpMetadata:
        """Parse SAML metadata (an EntityDescriptor with an IDPSSODescriptor); raise ValueError."""
        try:
            root = etree.fromstring(xml, _parser())
        except etree.XMLSyntaxError as e:
            raise ValueError(f"metadata is not XML: {e}") from None
        if root.tag != f"{{{NS['md']}}}EntityDescriptor" or not root.get("entityID"):
            raise ValueError("metadata root must be an md:EntityDescriptor with an entityID")
        certs = []
        for c in root.xpath("md:IDPSSODescriptor/md:KeyDescriptor[not(@use) or @use='signing']"
                            "//ds:X509Certificate/text()", namespaces=NS):
            b64 = "".join(str(c).split())
            certs.append(b"-----BEGIN CERTIFICATE-----\n" + b64.encode() + b"\n-----END CERTIFICATE-----\n")
        if not certs:
            raise ValueError("metadata has no IDPSSODescriptor signing certificate")
        return cls(str(root.get("entityID")), tuple(certs))


def _parser() -> etree.XMLParser:
    # No DTDs, no entity expansion, no network: hostile XML stays inert.
    return etree.XMLParser(resolve_entities=False, no_network=True, load_dtd=False, huge_tree=False,
                           remove_comments=False)


_SAML_TIME = re.compile(r"\A(\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2})(?:\.\d{1,9})?Z\Z")


def _time(v: str | None) -> int | None:
    """SAML times are UTC with a Z (SAML core §1.3.3); anything else is unreadable (None)."""
    m = _SAML_TIME.match(v or "")
    if not m:
        return None
    try:
        return int(datetime.strptime(m[1], "%Y-%m-%dT%H:%M:%S").replace(tzinfo=UTC).timestamp())
    except ValueError:
        return None


def _text(el: etree._Element) -> str:
    # itertext joins text split by comments: a comment cannot shorten what we read (NameID injection).
    return "".join(el.itertext())


def _signature_problems(assertion: etree._Element, metadata: IdpMetadata, where: str = "Assertion") -> list[str]:
    """Problems with the enveloped signature of ``assertion`` (the Assertion, or the Response)."""
    sigs = assertion.findall("ds:Signature", NS)
    if len(sigs) != 1:
        return [f"3: the {where} must carry exactly one enveloped ds:Signature (found {len(sigs)})"]
    sig = sigs[0]
    problems = []
    refs = sig.findall("ds:SignedInfo/ds:Reference", NS)
    aid = assertion.get("ID")
    if len(refs) != 1 or refs[0].get("URI") != f"#{aid}":
        problems.append(f"3: the signature must have one Reference to #{aid}")
    method = sig.find("ds:SignedInfo/ds:SignatureMethod", NS)
    if method is None or method.get("Algorithm") != ALG_RSA_SHA256:
        problems.append(f"3: signature algorithm must be RSA-SHA256, not "
                        f"{None if method is None else method.get('Algorithm')}")
    if refs:
        digest = refs[0].find("ds:DigestMethod", NS)
        if digest is None or digest.get("Algorithm") != DIGEST_SHA256:
            problems.append("3: digest algorithm must be SHA-256")
        transforms = [t.get("Algorithm") for t in refs[0].findall("ds:Transforms/ds:Transform", NS)]
        if transforms != [T_ENVELOPED, T_EXC_C14N]:
            problems.append(f"3: transforms must be enveloped-signature then exc-c14n, not {transforms}")
    if problems:
        return problems
    # Verify a copy that holds only this element, so nothing outside it can be referenced.
    doc = etree.fromstring(etree.tostring(assertion), _parser())
    xmlsec.tree.add_ids(doc, ["ID"])
    for cert in metadata.certs_pem:
        ctx = xmlsec.SignatureContext()
        try:
            ctx.key = xmlsec.Key.from_memory(cert, xc.KeyDataFormatCertPem)
            ctx.verify(doc.find("ds:Signature", NS))
            return []
        except xmlsec.Error:
            continue
    return [f"3: the {where} signature does not verify with any certificate in the IdP metadata"]


def _attributes(assertion: etree._Element) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for attr in assertion.findall("saml:AttributeStatement/saml:Attribute", NS):
        out.setdefault(str(attr.get("Name")), []).extend(_text(v) for v in attr.findall("saml:AttributeValue", NS))
    return out


def _aws_attribute_problems(attrs: dict[str, list[str]], role_arn: str | None, principal_arn: str | None,
                            max_duration: int) -> list[str]:
    problems: list[str] = []
    roles = attrs.get(AWS_ATTR + "Role", [])
    if not roles:
        problems.append("9: the Role attribute is missing")
    pairs = set()
    for value in roles:
        parts = [p.strip() for p in value.split(",")]
        kinds = {}
        for p in parts:
            m = _ARN.match(p)
            if m:
                kinds[m[3]] = (p, m[1], m[2])
        if len(parts) != 2 or set(kinds) != {"role", "saml-provider"}:
            problems.append(f"9: Role value {value!r} must be '<role arn>,<saml-provider arn>'")
            continue
        (r, rp, ra), (p, pp, pa) = kinds["role"], kinds["saml-provider"]
        if (rp, ra) != (pp, pa):
            problems.append(f"9: role and provider in {value!r} must share partition and account")
        pairs.add((r, p))
    if role_arn and principal_arn and roles and (role_arn, principal_arn) not in pairs:
        problems.append(f"9: the requested pair ({role_arn}, {principal_arn}) is not in the Role attribute")
    names = attrs.get(AWS_ATTR + "RoleSessionName", [])
    if len(names) != 1 or not SESSION_NAME_RE.match(names[0]):
        problems.append(f"10: RoleSessionName must be one value matching [A-Za-z0-9_+=,.@-]{{2,64}}, got {names}")
    if AWS_ATTR + "SessionDuration" in attrs:
        d = attrs[AWS_ATTR + "SessionDuration"]
        if len(d) != 1 or not re.fullmatch(r"[0-9]{1,6}", d[0]) or not MIN_DURATION <= int(d[0]) <= MAX_DURATION:
            problems.append(f"11: SessionDuration must be one integer {MIN_DURATION}..{MAX_DURATION}, got {d}")
        elif int(d[0]) > max_duration:
            problems.append(f"11: SessionDuration {d[0]} exceeds the role's MaxSessionDuration {max_duration}")
    tags: dict[str, str] = {}
    for name, values in attrs.items():
        if name.startswith(AWS_ATTR + "PrincipalTag:"):
            key = name.removeprefix(AWS_ATTR + "PrincipalTag:")
            if len(values) != 1:
                problems.append(f"12: PrincipalTag:{key} must have exactly one value")
            else:
                tags[key] = values[0]
    transitive = attrs.get(AWS_ATTR + "TransitiveTagKeys", [])
    problems += [f"12: {p}" for p in tags_problems(tags, transitive)]
    if AWS_ATTR + "SourceIdentity" in attrs:
        si = attrs[AWS_ATTR + "SourceIdentity"]
        if len(si) != 1 or not SOURCE_IDENTITY_RE.match(si[0]) or si[0].lower().startswith("aws:"):
            problems.append(f"13: SourceIdentity must be one value matching [A-Za-z0-9_+=,.@-]{{2,64}}, got {si}")
    return problems


def validate_saml_response(b64: str, *, metadata: IdpMetadata, now: int, partition: str = "aws",
                           role_arn: str | None = None, principal_arn: str | None = None,
                           max_duration: int = MAX_DURATION, skew: int = 60,
                           encryption_allowed: bool = False) -> list[str]:
    """Every §1.10 rule the base64 SAMLResponse breaks (empty list = AWS should accept it)."""
    if len(b64) > MAX_B64:
        return [f"1: {len(b64)} base64 characters; AWS allows {MAX_B64}"]
    try:
        raw = base64.b64decode(b64, validate=True)
    except (binascii.Error, ValueError):
        return ["1: not standard base64 (no line breaks, no URL-safe alphabet)"]
    if b"<!DOCTYPE" in raw or b"<!ENTITY" in raw:
        return ["1: DOCTYPE/entity declarations are not allowed"]
    try:
        root = etree.fromstring(raw, _parser())
    except etree.XMLSyntaxError as e:
        return [f"1: not well-formed XML ({e})"]
    docinfo = root.getroottree().docinfo
    if docinfo.doctype or docinfo.internalDTD is not None:  # e.g. hidden from the byte check by UTF-16
        return ["1: DOCTYPE/entity declarations are not allowed"]
    problems: list[str] = []
    if root.tag != f"{{{NS['samlp']}}}Response":
        return [f"2: root must be samlp:Response, not {root.tag}"]
    code = root.find("samlp:Status/samlp:StatusCode", NS)
    if code is None or code.get("Value") != "urn:oasis:names:tc:SAML:2.0:status:Success":
        problems.append("2: Status is not Success")
    assertions = root.findall(".//saml:Assertion", NS)
    if root.findall(".//saml:EncryptedAssertion", NS) and not encryption_allowed:
        problems.append("2: EncryptedAssertion is not allowed (the provider's encryption mode is off)")
    if len(assertions) != 1 or assertions[0].getparent() is not root:
        return [*problems, f"2: exactly one Assertion, a child of the Response, is required (found {len(assertions)})"]
    a = assertions[0]
    ids = [el.get("ID") for el in root.iter() if el.get("ID") is not None]
    if len(ids) != len(set(ids)):
        problems.append("3: duplicate ID attributes (signature wrapping)")
    problems += _signature_problems(a, metadata)
    if root.find("ds:Signature", NS) is not None:  # optional, but if present it must verify too
        problems += _signature_problems(root, metadata, "Response")
    for where, el in (("Response", root), ("Assertion", a)):
        issuer = el.find("saml:Issuer", NS)
        if issuer is None or _text(issuer).strip() != metadata.entity_id:
            problems.append(f"4: {where} Issuer must be {metadata.entity_id!r}")
    scs = a.findall("saml:Subject/saml:SubjectConfirmation", NS)
    if len(scs) != 1:
        problems.append(f"5: exactly one SubjectConfirmation is required (found {len(scs)})")
    else:
        if scs[0].get("Method") != "urn:oasis:names:tc:SAML:2.0:cm:bearer":
            problems.append("5: SubjectConfirmation Method must be bearer")
        scd = scs[0].find("saml:SubjectConfirmationData", NS)
        nooa = _time(scd.get("NotOnOrAfter")) if scd is not None else None
        recipient = scd.get("Recipient") if scd is not None else None
        if nooa is None or nooa <= now - skew:
            problems.append("5: SubjectConfirmationData NotOnOrAfter is missing or past")
        if not recipient or not _RECIPIENTS[partition].match(recipient):
            problems.append(f"5: Recipient {recipient!r} is not an AWS sign-in SAML endpoint of {partition}")
        dest = root.get("Destination")
        if dest is not None and dest != recipient:
            problems.append(f"5: Response Destination {dest!r} differs from the Recipient")
    name_id = a.find("saml:Subject/saml:NameID", NS)
    if name_id is None or not _text(name_id).strip():
        problems.append("6: NameID is missing")
    elif name_id.get("Format") not in NAMEID_FORMATS:
        problems.append(f"6: NameID Format {name_id.get('Format')!r} is not one AWS supports")
    cond = a.find("saml:Conditions", NS)
    if cond is None:
        problems.append("7: Conditions are missing")
    else:
        nb, na = _time(cond.get("NotBefore")), _time(cond.get("NotOnOrAfter"))
        for name, parsed in (("NotBefore", nb), ("NotOnOrAfter", na)):
            if cond.get(name) is not None and parsed is None:
                problems.append(f"7: Conditions {name} {cond.get(name)!r} is not a UTC time like 2026-01-01T00:00:00Z")
        if nb is not None and nb > now + skew:
            problems.append("7: Conditions NotBefore is in the future")
        if na is not None and na <= now - skew:
            problems.append("7: Conditions NotOnOrAfter has passed")
        auds = [_text(x).strip() for x in cond.findall("saml:AudienceRestriction/saml:Audience", NS)]
        if not any(_AUDIENCES[partition].match(x) for x in auds):
            problems.append(f"7: Audience {auds} includes no AWS audience for {partition}")
    issued = _time(a.get("IssueInstant"))
    if issued is None or issued > now + skew or issued < now - MAX_AGE:
        problems.append("8: Assertion IssueInstant must be within the last 5 minutes")
    problems += _aws_attribute_problems(_attributes(a), role_arn, principal_arn, max_duration)
    return problems
