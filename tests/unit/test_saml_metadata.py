"""The bridge's SAML IdP metadata (bridge/aws/metadata.py), its parser (IdpMetadata.from_xml) and the SAML keys
that ``load_keyring`` accepts or reports (bridge/keys/signing.py).

Spec: docs/aws-rules.md §1.4 (metadata UTF-8 without BOM, 1000–10,000,000 characters, every
signing certificate during rotation) and the bridge's key rules (0600, a matching .crt, RSA ≥ 2048).
"""

from __future__ import annotations

import base64
import os
from datetime import UTC, datetime
from pathlib import Path

import pytest
from cryptography import x509
from lxml import etree

from bridge.aws.assertion import SamlIssuer, mint_saml_response, signin_saml_endpoint
from bridge.aws.metadata import idp_metadata
from bridge.aws.validate_saml import IdpMetadata, validate_saml_response
from bridge.domain.identity import Grant, Identity
from bridge.keys.signing import SamlKey, generate_key, generate_saml_key, load_keyring

ENTITY_ID = "https://bridge.example.com/saml"
SSO_URL = "https://bridge.example.com/saml/sso"
NS_MD = "urn:oasis:names:tc:SAML:2.0:metadata"
NS_DS = "http://www.w3.org/2000/09/xmldsig#"
NS = {"md": NS_MD, "ds": NS_DS}
T1 = datetime(2026, 1, 1, tzinfo=UTC)
T2 = datetime(2026, 1, 2, tzinfo=UTC)


@pytest.fixture(scope="module")
def two_keys(tmp_path_factory: pytest.TempPathFactory) -> tuple[SamlKey, SamlKey]:
    d = tmp_path_factory.mktemp("md-keys")
    return generate_saml_key(d, now=T1), generate_saml_key(d, now=T2, bits=2048)


# --------------------------------------------------------------------------- idp_metadata output


def test_metadata_bytes_are_utf8_without_bom(two_keys: tuple[SamlKey, SamlKey]) -> None:
    md = idp_metadata(ENTITY_ID, [two_keys[0]], SSO_URL)
    assert not md.startswith(b"\xef\xbb\xbf")
    assert md.startswith(b"<?xml")
    assert b"encoding='UTF-8'" in md.split(b"?>", 1)[0] or b'encoding="UTF-8"' in md.split(b"?>", 1)[0]
    md.decode("utf-8")
    assert 1000 <= len(md.decode()) <= 10_000_000  # IAM CreateSAMLProvider document length


def test_metadata_structure(two_keys: tuple[SamlKey, SamlKey]) -> None:
    md = idp_metadata(ENTITY_ID, list(two_keys), SSO_URL)
    root = etree.fromstring(md)
    assert root.tag == f"{{{NS_MD}}}EntityDescriptor"
    assert root.get("entityID") == ENTITY_ID
    idps = root.findall("md:IDPSSODescriptor", NS)
    assert len(idps) == 1
    assert "urn:oasis:names:tc:SAML:2.0:protocol" in (idps[0].get("protocolSupportEnumeration") or "").split()
    kds = idps[0].findall("md:KeyDescriptor", NS)
    assert [kd.get("use") for kd in kds] == ["signing", "signing"]
    certs = ["".join((kd.findtext("ds:KeyInfo/ds:X509Data/ds:X509Certificate", namespaces=NS) or "").split())
             for kd in kds]
    assert certs == [k.cert_b64() for k in two_keys]
    for b64, key in zip(certs, two_keys, strict=True):
        assert x509.load_der_x509_certificate(base64.b64decode(b64)) == key.cert
    sso = idps[0].findall("md:SingleSignOnService", NS)
    assert sso and all(s.get("Location") == SSO_URL for s in sso)
    assert {s.get("Binding") for s in sso} >= {"urn:oasis:names:tc:SAML:2.0:bindings:HTTP-POST"}
    # schema order inside IDPSSODescriptor: KeyDescriptor*, …, NameIDFormat*, SingleSignOnService+
    names = [etree.QName(c).localname for c in idps[0]]
    assert names == sorted(names, key=["KeyDescriptor", "NameIDFormat", "SingleSignOnService"].index)


def test_metadata_one_key_descriptor_per_key(two_keys: tuple[SamlKey, SamlKey]) -> None:
    for keys in ([two_keys[0]], list(two_keys)):
        root = etree.fromstring(idp_metadata(ENTITY_ID, keys, SSO_URL))
        assert len(root.findall("md:IDPSSODescriptor/md:KeyDescriptor[@use='signing']", NS)) == len(keys)


def test_metadata_needs_a_key() -> None:
    with pytest.raises(ValueError, match="no SAML signing certificate"):
        idp_metadata(ENTITY_ID, [], SSO_URL)


# --------------------------------------------------------------------------- IdpMetadata.from_xml


def test_from_xml_round_trip_two_keys(two_keys: tuple[SamlKey, SamlKey]) -> None:
    md = IdpMetadata.from_xml(idp_metadata(ENTITY_ID, list(two_keys), SSO_URL))
    assert md.entity_id == ENTITY_ID
    assert len(md.certs_pem) == 2
    assert [x509.load_pem_x509_certificate(c) for c in md.certs_pem] == [k.cert for k in two_keys]


def test_from_xml_wrapped_certificate_and_no_use_attribute(two_keys: tuple[SamlKey, SamlKey]) -> None:
    """Other IdPs wrap the base64 over lines and may omit use= (then the key is for signing too)."""
    b64 = two_keys[0].cert_b64()
    wrapped = "\n".join(b64[i:i + 64] for i in range(0, len(b64), 64))
    xml = f"""<md:EntityDescriptor xmlns:md="{NS_MD}" xmlns:ds="{NS_DS}" entityID="urn:idp">
      <md:IDPSSODescriptor protocolSupportEnumeration="urn:oasis:names:tc:SAML:2.0:protocol">
        <md:KeyDescriptor><ds:KeyInfo><ds:X509Data><ds:X509Certificate>
        {wrapped}
        </ds:X509Certificate></ds:X509Data></ds:KeyInfo></md:KeyDescriptor>
      </md:IDPSSODescriptor></md:EntityDescriptor>""".encode()
    md = IdpMetadata.from_xml(xml)
    assert md.entity_id == "urn:idp"
    assert [x509.load_pem_x509_certificate(c) for c in md.certs_pem] == [two_keys[0].cert]


def _md(body: str, entity: str = ' entityID="urn:idp"') -> bytes:
    return f'<md:EntityDescriptor xmlns:md="{NS_MD}" xmlns:ds="{NS_DS}"{entity}>{body}</md:EntityDescriptor>'.encode()


def test_from_xml_no_signing_cert(two_keys: tuple[SamlKey, SamlKey]) -> None:
    enc_only = (f'<md:IDPSSODescriptor protocolSupportEnumeration="urn:oasis:names:tc:SAML:2.0:protocol">'
                f'<md:KeyDescriptor use="encryption"><ds:KeyInfo><ds:X509Data><ds:X509Certificate>'
                f'{two_keys[0].cert_b64()}</ds:X509Certificate></ds:X509Data></ds:KeyInfo></md:KeyDescriptor>'
                f'</md:IDPSSODescriptor>')
    for xml in (_md(enc_only), _md("<md:IDPSSODescriptor/>"), _md("")):
        with pytest.raises(ValueError, match="no IDPSSODescriptor signing certificate"):
            IdpMetadata.from_xml(xml)


def test_from_xml_sp_descriptor_keys_do_not_count(two_keys: tuple[SamlKey, SamlKey]) -> None:
    sp = (f'<md:SPSSODescriptor protocolSupportEnumeration="urn:oasis:names:tc:SAML:2.0:protocol">'
          f'<md:KeyDescriptor use="signing"><ds:KeyInfo><ds:X509Data><ds:X509Certificate>'
          f'{two_keys[0].cert_b64()}</ds:X509Certificate></ds:X509Data></ds:KeyInfo></md:KeyDescriptor>'
          f'</md:SPSSODescriptor>')
    with pytest.raises(ValueError, match="no IDPSSODescriptor signing certificate"):
        IdpMetadata.from_xml(_md(sp))


@pytest.mark.parametrize("xml", [
    b'<EntityDescriptor entityID="urn:idp"/>',  # no namespace
    f'<md:EntitiesDescriptor xmlns:md="{NS_MD}"/>'.encode(),
    f'<md:IDPSSODescriptor xmlns:md="{NS_MD}"/>'.encode(),
    _md("", entity=""),  # no entityID
    _md("", entity=' entityID=""'),
], ids=["no-ns", "entities", "idpsso", "no-entityid", "empty-entityid"])
def test_from_xml_wrong_root(xml: bytes) -> None:
    with pytest.raises(ValueError, match="root must be an md:EntityDescriptor with an entityID"):
        IdpMetadata.from_xml(xml)


@pytest.mark.parametrize("xml", [b"", b"not xml", b"<md:EntityDescriptor", b"\xef\xbb\xbf\xef\xbb\xbf<a/>"])
def test_from_xml_not_xml(xml: bytes) -> None:
    with pytest.raises(ValueError, match="not XML"):
        IdpMetadata.from_xml(xml)


# --------------------------------------------------------------------------- load_keyring: SAML keys


def _ring_dir(tmp_path: Path) -> Path:
    d = tmp_path / "keys"
    generate_key(d)
    return d


def test_keyring_loads_saml_keys_newest_active(tmp_path: Path) -> None:
    d = _ring_dir(tmp_path)
    old = generate_saml_key(d, now=T1, bits=2048)
    new = generate_saml_key(d, now=T2, bits=2048)
    assert os.stat(old.path).st_mode & 0o777 == 0o600
    assert old.path.with_suffix(".crt").read_bytes() == old.cert_pem
    ring, problems = load_keyring(d)
    assert problems == []
    assert ring is not None
    assert [k.path for k in ring.saml] == [old.path, new.path]
    assert [k.cert for k in ring.saml] == [old.cert, new.cert]
    assert ring.saml_active is not None and ring.saml_active.path == new.path


def test_keyring_saml_key_signs_what_its_metadata_verifies(tmp_path: Path) -> None:
    d = _ring_dir(tmp_path)
    generate_saml_key(d, now=T1, bits=2048)
    ring, _ = load_keyring(d)
    assert ring is not None and ring.saml_active is not None
    md = IdpMetadata.from_xml(idp_metadata(ENTITY_ID, ring.saml, SSO_URL))
    recipient, audience = signin_saml_endpoint("aws")
    grant = Grant(role_arn="arn:aws:iam::123456789012:role/Admin", account_id="123456789012", label="Admin",
                  session_name="alice", via="admins", provider_arn="arn:aws:iam::123456789012:saml-provider/bridge")
    now = 1_800_000_000
    b64 = mint_saml_response(grant, Identity(connector_id="c", subject="alice", issuer="https://idp"),
                             ring.saml_active, SamlIssuer(ENTITY_ID, recipient, audience), now=now, duration=3600)
    assert validate_saml_response(b64, metadata=md, now=now) == []


def test_keyring_none_without_jwt_key(tmp_path: Path) -> None:
    d = tmp_path / "keys"
    generate_saml_key(d, now=T1, bits=2048)
    ring, problems = load_keyring(d)
    assert ring is None
    assert any("no signing keys" in p for p in problems)


def test_keyring_saml_key_readable_by_others(tmp_path: Path) -> None:
    d = _ring_dir(tmp_path)
    bad = generate_saml_key(d, now=T1, bits=2048)
    good = generate_saml_key(d, now=T2, bits=2048)
    bad.path.chmod(0o644)
    ring, problems = load_keyring(d)
    assert problems == [f"{bad.path}: private key is readable by others (mode 644); run chmod 600 {bad.path}"]
    assert ring is not None and [k.path for k in ring.saml] == [good.path]


def test_keyring_saml_certificate_missing(tmp_path: Path) -> None:
    d = _ring_dir(tmp_path)
    bad = generate_saml_key(d, now=T1, bits=2048)
    bad.path.with_suffix(".crt").unlink()
    ring, problems = load_keyring(d)
    assert problems == [f"{bad.path}: its certificate {bad.path.stem}.crt is missing"]
    assert ring is not None and ring.saml == ()


def test_keyring_saml_certificate_not_matching_key(tmp_path: Path) -> None:
    d = _ring_dir(tmp_path)
    bad = generate_saml_key(d, now=T1, bits=2048)
    other = generate_saml_key(tmp_path / "elsewhere", now=T2, bits=2048)
    crt = bad.path.with_suffix(".crt")
    crt.write_bytes(other.cert_pem)
    ring, problems = load_keyring(d)
    assert problems == [f"{crt}: certificate does not match the key {bad.path.name}"]
    assert ring is not None and ring.saml == ()


def test_keyring_saml_key_too_short(tmp_path: Path) -> None:
    d = _ring_dir(tmp_path)
    bad = generate_saml_key(d, now=T1, bits=1024)
    ring, problems = load_keyring(d)
    assert problems == [f"{bad.path}: SAML signing needs an RSA key of at least 2048 bits"]
    assert ring is not None and ring.saml == ()


def test_keyring_saml_garbage_files(tmp_path: Path) -> None:
    d = _ring_dir(tmp_path)
    bad = generate_saml_key(d, now=T1, bits=2048)
    bad.path.with_suffix(".crt").write_bytes(b"not a certificate")
    ring, problems = load_keyring(d)
    assert problems == [f"{bad.path}: not a usable key/certificate pair (ValueError)"]
    assert ring is not None and ring.saml == ()
