"""The strict AWS-rules validator for SAML responses (docs/aws-rules.md §1.10).

Works on any SAMLResponse — ours or another IdP's — against the IdP metadata AWS holds
(entity id + signing certificates). Returns every rule broken as a ``Problem`` (rule number,
where, what), so `bridge verify --saml` can answer "Your request included an invalid SAML response".
The checks follow the rule sections 1–13; accepted Recipients and Audiences come from the
partition table.
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
from bridge.aws.problems import Problem
from bridge.domain.partitions import NAMES, by_name

NS = {"samlp": "urn:oasis:names:tc:SAML:2.0:protocol", "saml": "urn:oasis:names:tc:SAML:2.0:assertion",
      "ds": "http://www.w3.org/2000/09/xmldsig#", "md": "urn:oasis:names:tc:SAML:2.0:metadata"}
AWS_ATTR = "https://aws.amazon.com/SAML/Attributes/"
MAX_B64 = 100_000
MAX_AGE = 300
NAMEID_FORMATS = {f"urn:oasis:names:tc:SAML:2.0:nameid-format:{x}" for x in
                  ("persistent", "transient", "kerberos", "entity")} | {
                  f"urn:oasis:names:tc:SAML:1.1:nameid-format:{x}" for x in
                  ("emailAddress", "unspecified", "X509SubjectName", "WindowsDomainQualifiedName")}
_ARN = re.compile(rf"\Aarn:({'|'.join(map(re.escape, NAMES))}):iam::(\d{{12}}):(role|saml-provider)/[\x21-\x7e]+\Z")
ALG_RSA_SHA256 = "http://www.w3.org/2001/04/xmldsig-more#rsa-sha256"
DIGEST_SHA256 = "http://www.w3.org/2001/04/xmlenc#sha256"
T_ENVELOPED = "http://www.w3.org/2000/09/xmldsig#enveloped-signature"
T_EXC_C14N = "http://www.w3.org/2001/10/xml-exc-c14n#"


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


def _signature_problems(element: etree._Element, metadata: IdpMetadata, where: str = "Assertion") -> list[Problem]:
    """Problems with the enveloped signature of ``element`` (the Assertion, or the Response)."""
    path = f"{where}/Signature"
    sigs = element.findall("ds:Signature", NS)
    if len(sigs) != 1:
        return [Problem("3", path, f"the {where} must carry exactly one enveloped ds:Signature (found {len(sigs)})")]
    sig = sigs[0]
    problems = []
    refs = sig.findall("ds:SignedInfo/ds:Reference", NS)
    aid = element.get("ID")
    if len(refs) != 1 or refs[0].get("URI") != f"#{aid}":
        problems.append(Problem("3", path, f"the signature must have one Reference to #{aid}"))
    method = sig.find("ds:SignedInfo/ds:SignatureMethod", NS)
    if method is None or method.get("Algorithm") != ALG_RSA_SHA256:
        problems.append(Problem("3", path, f"signature algorithm must be RSA-SHA256, not "
                                           f"{None if method is None else method.get('Algorithm')}"))
    if refs:
        digest = refs[0].find("ds:DigestMethod", NS)
        if digest is None or digest.get("Algorithm") != DIGEST_SHA256:
            problems.append(Problem("3", path, "digest algorithm must be SHA-256"))
        transforms = [t.get("Algorithm") for t in refs[0].findall("ds:Transforms/ds:Transform", NS)]
        if transforms != [T_ENVELOPED, T_EXC_C14N]:
            problems.append(Problem("3", path,
                                    f"transforms must be enveloped-signature then exc-c14n, not {transforms}"))
    if problems:
        return problems
    if _verifies(element, metadata):
        return []
    return [Problem("3", path, f"the {where} signature does not verify with any certificate in the IdP metadata")]


def _verifies(element: etree._Element, metadata: IdpMetadata) -> bool:
    """Whether the enveloped signature of ``element`` verifies with a certificate in ``metadata``."""
    # Verify a copy that holds only this element, so nothing outside it can be referenced.
    doc = etree.fromstring(etree.tostring(element), _parser())
    xmlsec.tree.add_ids(doc, ["ID"])
    for cert in metadata.certs_pem:
        ctx = xmlsec.SignatureContext()
        try:
            ctx.key = xmlsec.Key.from_memory(cert, xc.KeyDataFormatCertPem)
            ctx.verify(doc.find("ds:Signature", NS))
            return True
        except xmlsec.Error:
            continue
    return False


def _attributes(assertion: etree._Element) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for attr in assertion.findall("saml:AttributeStatement/saml:Attribute", NS):
        out.setdefault(str(attr.get("Name")), []).extend(_text(v) for v in attr.findall("saml:AttributeValue", NS))
    return out


# -- rules 9–13: the AWS attributes ----------------------------------------------------------

def _role_problems(roles: list[str], role_arn: str | None, principal_arn: str | None) -> list[Problem]:
    """Rule 9: the Role attribute, and the (RoleArn, PrincipalArn) pair of the API call among its values."""
    path = "Attribute:Role"
    problems: list[Problem] = []
    if not roles:
        problems.append(Problem("9", path, "the Role attribute is missing"))
    pairs = set()
    for value in roles:
        parts = [p.strip() for p in value.split(",")]
        kinds = {m[3]: (p, m[1], m[2]) for p in parts if (m := _ARN.match(p))}
        if len(parts) != 2 or set(kinds) != {"role", "saml-provider"}:
            problems.append(Problem("9", path, f"Role value {value!r} must be '<role arn>,<saml-provider arn>'"))
            continue
        (r, rp, ra), (p, pp, pa) = kinds["role"], kinds["saml-provider"]
        if (rp, ra) != (pp, pa):
            problems.append(Problem("9", path, f"role and provider in {value!r} must share partition and account"))
        pairs.add((r, p))
    if role_arn and principal_arn and roles and (role_arn, principal_arn) not in pairs:
        problems.append(Problem("9", path,
                                f"the requested pair ({role_arn}, {principal_arn}) is not in the Role attribute"))
    return problems


def _session_name_problems(attrs: dict[str, list[str]]) -> list[Problem]:
    """Rule 10."""
    names = attrs.get(AWS_ATTR + "RoleSessionName", [])
    if len(names) != 1 or not SESSION_NAME_RE.match(names[0]):
        return [Problem("10", "Attribute:RoleSessionName",
                        f"RoleSessionName must be one value matching [A-Za-z0-9_+=,.@-]{{2,64}}, got {names}")]
    return []


def _duration_problems(attrs: dict[str, list[str]], max_duration: int) -> list[Problem]:
    """Rule 11 (SessionDuration is optional)."""
    if AWS_ATTR + "SessionDuration" not in attrs:
        return []
    path = "Attribute:SessionDuration"
    d = attrs[AWS_ATTR + "SessionDuration"]
    if len(d) != 1 or not re.fullmatch(r"[0-9]{1,6}", d[0]) or not MIN_DURATION <= int(d[0]) <= MAX_DURATION:
        return [Problem("11", path, f"SessionDuration must be one integer {MIN_DURATION}..{MAX_DURATION}, got {d}")]
    if int(d[0]) > max_duration:
        return [Problem("11", path, f"SessionDuration {d[0]} exceeds the role's MaxSessionDuration {max_duration}")]
    return []


def _tag_problems(attrs: dict[str, list[str]]) -> list[Problem]:
    """Rule 12: PrincipalTag:* (one value each) and TransitiveTagKeys."""
    problems: list[Problem] = []
    tags: dict[str, str] = {}
    for name, values in attrs.items():
        if name.startswith(AWS_ATTR + "PrincipalTag:"):
            key = name.removeprefix(AWS_ATTR + "PrincipalTag:")
            if len(values) != 1:
                problems.append(Problem("12", f"Attribute:PrincipalTag:{key}",
                                        f"PrincipalTag:{key} must have exactly one value"))
            else:
                tags[key] = values[0]
    transitive = attrs.get(AWS_ATTR + "TransitiveTagKeys", [])
    return problems + [Problem("12", "Attribute:PrincipalTag", p) for p in tags_problems(tags, transitive)]


def _source_identity_problems(attrs: dict[str, list[str]]) -> list[Problem]:
    """Rule 13 (SourceIdentity is optional)."""
    if AWS_ATTR + "SourceIdentity" not in attrs:
        return []
    si = attrs[AWS_ATTR + "SourceIdentity"]
    if len(si) != 1 or not SOURCE_IDENTITY_RE.match(si[0]) or si[0].lower().startswith("aws:"):
        return [Problem("13", "Attribute:SourceIdentity",
                        f"SourceIdentity must be one value matching [A-Za-z0-9_+=,.@-]{{2,64}}, got {si}")]
    return []


def _aws_attribute_problems(attrs: dict[str, list[str]], role_arn: str | None, principal_arn: str | None,
                            max_duration: int) -> list[Problem]:
    """Rules 9–13."""
    return [*_role_problems(attrs.get(AWS_ATTR + "Role", []), role_arn, principal_arn),
            *_session_name_problems(attrs),
            *_duration_problems(attrs, max_duration),
            *_tag_problems(attrs),
            *_source_identity_problems(attrs)]


# -- rules 1–8: the document ------------------------------------------------------------------

def _parse(b64: str) -> tuple[etree._Element | None, list[Problem]]:
    """Rule 1: the parsed document, or None and why it cannot be read."""
    path = "SAMLResponse"
    if len(b64) > MAX_B64:
        return None, [Problem("1", path, f"{len(b64)} base64 characters; AWS allows {MAX_B64}")]
    try:
        raw = base64.b64decode(b64, validate=True)
    except (binascii.Error, ValueError):
        return None, [Problem("1", path, "not standard base64 (no line breaks, no URL-safe alphabet)")]
    if b"<!DOCTYPE" in raw or b"<!ENTITY" in raw:
        return None, [Problem("1", path, "DOCTYPE/entity declarations are not allowed")]
    try:
        root = etree.fromstring(raw, _parser())
    except etree.XMLSyntaxError as e:
        return None, [Problem("1", path, f"not well-formed XML ({e})")]
    docinfo = root.getroottree().docinfo
    if docinfo.doctype or docinfo.internalDTD is not None:  # e.g. hidden from the byte check by UTF-16
        return None, [Problem("1", path, "DOCTYPE/entity declarations are not allowed")]
    return root, []


def _envelope(root: etree._Element, encryption_allowed: bool) -> tuple[etree._Element | None, list[Problem]]:
    """Rule 2: the one Assertion (None if there is not exactly one, as a child) and the Response's problems."""
    if root.tag != f"{{{NS['samlp']}}}Response":
        return None, [Problem("2", "Response", f"root must be samlp:Response, not {root.tag}")]
    problems: list[Problem] = []
    code = root.find("samlp:Status/samlp:StatusCode", NS)
    if code is None or code.get("Value") != "urn:oasis:names:tc:SAML:2.0:status:Success":
        problems.append(Problem("2", "Response/Status", "Status is not Success"))
    assertions = root.findall(".//saml:Assertion", NS)
    if root.findall(".//saml:EncryptedAssertion", NS) and not encryption_allowed:
        problems.append(Problem("2", "Response/EncryptedAssertion",
                                "EncryptedAssertion is not allowed (the provider's encryption mode is off)"))
    if len(assertions) != 1 or assertions[0].getparent() is not root:
        return None, [*problems, Problem("2", "Response/Assertion", "exactly one Assertion, a child of the "
                                                                    f"Response, is required (found {len(assertions)})")]
    return assertions[0], problems


def _signed_problems(root: etree._Element, a: etree._Element, metadata: IdpMetadata) -> list[Problem]:
    """Rule 3: unique IDs, the Assertion's signature and, if present, the Response's."""
    problems: list[Problem] = []
    ids = [el.get("ID") for el in root.iter() if el.get("ID") is not None]
    if len(ids) != len(set(ids)):
        problems.append(Problem("3", "Response", "duplicate ID attributes (signature wrapping)"))
    problems += _signature_problems(a, metadata)
    if root.find("ds:Signature", NS) is not None:  # optional, but if present it must verify too
        problems += _signature_problems(root, metadata, "Response")
    return problems


def _issuer_problems(root: etree._Element, a: etree._Element, entity_id: str) -> list[Problem]:
    """Rule 4: both Issuers are the metadata's entity id."""
    problems = []
    for where, el in (("Response", root), ("Assertion", a)):
        issuer = el.find("saml:Issuer", NS)
        if issuer is None or _text(issuer).strip() != entity_id:
            problems.append(Problem("4", f"{where}/Issuer", f"{where} Issuer must be {entity_id!r}"))
    return problems


def _confirmation_problems(root: etree._Element, a: etree._Element, partition: str, now: int,
                           skew: int) -> list[Problem]:
    """Rule 5: one bearer SubjectConfirmation, unexpired, addressed to AWS sign-in (Recipient, Destination)."""
    path = "Assertion/Subject/SubjectConfirmation"
    scs = a.findall("saml:Subject/saml:SubjectConfirmation", NS)
    if len(scs) != 1:
        return [Problem("5", path, f"exactly one SubjectConfirmation is required (found {len(scs)})")]
    problems = []
    if scs[0].get("Method") != "urn:oasis:names:tc:SAML:2.0:cm:bearer":
        problems.append(Problem("5", f"{path}@Method", "SubjectConfirmation Method must be bearer"))
    scd = scs[0].find("saml:SubjectConfirmationData", NS)
    nooa = _time(scd.get("NotOnOrAfter")) if scd is not None else None
    recipient = scd.get("Recipient") if scd is not None else None
    if nooa is None or nooa <= now - skew:
        problems.append(Problem("5", f"{path}/SubjectConfirmationData@NotOnOrAfter",
                                "SubjectConfirmationData NotOnOrAfter is missing or past"))
    if not recipient or not by_name(partition).is_signin_saml_url(recipient):
        problems.append(Problem("5", f"{path}/SubjectConfirmationData@Recipient",
                                f"Recipient {recipient!r} is not an AWS sign-in SAML endpoint of {partition}"))
    dest = root.get("Destination")
    if dest is not None and dest != recipient:
        problems.append(Problem("5", "Response@Destination",
                                f"Response Destination {dest!r} differs from the Recipient"))
    return problems


def _name_id_problems(a: etree._Element) -> list[Problem]:
    """Rule 6."""
    name_id = a.find("saml:Subject/saml:NameID", NS)
    if name_id is None or not _text(name_id).strip():
        return [Problem("6", "Assertion/Subject/NameID", "NameID is missing")]
    if name_id.get("Format") not in NAMEID_FORMATS:
        return [Problem("6", "Assertion/Subject/NameID@Format",
                        f"NameID Format {name_id.get('Format')!r} is not one AWS supports")]
    return []


def _conditions_problems(a: etree._Element, partition: str, now: int, skew: int) -> list[Problem]:
    """Rule 7: the validity window and an AWS Audience of the partition."""
    path = "Assertion/Conditions"
    cond = a.find("saml:Conditions", NS)
    if cond is None:
        return [Problem("7", path, "Conditions are missing")]
    problems = []
    nb, na = _time(cond.get("NotBefore")), _time(cond.get("NotOnOrAfter"))
    for name, parsed in (("NotBefore", nb), ("NotOnOrAfter", na)):
        if cond.get(name) is not None and parsed is None:
            problems.append(Problem("7", f"{path}@{name}", f"Conditions {name} {cond.get(name)!r} "
                                                           "is not a UTC time like 2026-01-01T00:00:00Z"))
    if nb is not None and nb > now + skew:
        problems.append(Problem("7", f"{path}@NotBefore", "Conditions NotBefore is in the future"))
    if na is not None and na <= now - skew:
        problems.append(Problem("7", f"{path}@NotOnOrAfter", "Conditions NotOnOrAfter has passed"))
    auds = [_text(x).strip() for x in cond.findall("saml:AudienceRestriction/saml:Audience", NS)]
    if not any(by_name(partition).is_saml_audience(x) for x in auds):
        problems.append(Problem("7", f"{path}/AudienceRestriction/Audience",
                                f"Audience {auds} includes no AWS audience for {partition}"))
    return problems


def _issue_instant_problems(a: etree._Element, now: int, skew: int) -> list[Problem]:
    """Rule 8."""
    issued = _time(a.get("IssueInstant"))
    if issued is None or issued > now + skew or issued < now - MAX_AGE:
        return [Problem("8", "Assertion@IssueInstant", "Assertion IssueInstant must be within the last 5 minutes")]
    return []


def redeem_deadline(b64: str) -> int | None:
    """Until when AWS would take the response (epoch seconds): the Assertion's IssueInstant plus 5
    minutes (rule 8), or an earlier NotOnOrAfter (rules 5, 7). None when that cannot be read."""
    root, _ = _parse(b64)
    if root is None:
        return None
    a, _ = _envelope(root, encryption_allowed=True)
    issued = None if a is None else _time(a.get("IssueInstant"))
    if a is None or issued is None:
        return None
    ends = [issued + MAX_AGE]
    for el in (a.find("saml:Conditions", NS),
               *a.findall("saml:Subject/saml:SubjectConfirmation/saml:SubjectConfirmationData", NS)):
        end = None if el is None else _time(el.get("NotOnOrAfter"))
        if end is not None:
            ends.append(end - 1)  # NotOnOrAfter is the first second it is refused
    return min(ends)


def validate_saml_response(b64: str, *, metadata: IdpMetadata, now: int, partition: str = "aws",
                           role_arn: str | None = None, principal_arn: str | None = None,
                           max_duration: int = MAX_DURATION, skew: int = 60,
                           encryption_allowed: bool = False) -> list[Problem]:
    """Every §1.10 rule the base64 SAMLResponse breaks (empty list = AWS should accept it)."""
    root, problems = _parse(b64)
    if root is None:
        return problems
    a, problems = _envelope(root, encryption_allowed)
    if a is None:
        return problems
    return [*problems,
            *_signed_problems(root, a, metadata),
            *_issuer_problems(root, a, metadata.entity_id),
            *_confirmation_problems(root, a, partition, now, skew),
            *_name_id_problems(a),
            *_conditions_problems(a, partition, now, skew),
            *_issue_instant_problems(a, now, skew),
            *_aws_attribute_problems(_attributes(a), role_arn, principal_arn, max_duration)]
