"""SAML on both sides: a real pysaml2 IdP upstream (and forged responses for the bad cases),
and the bridge as the SAML IdP AWS trusts (AssumeRoleWithSAML through the strict STS)."""

from __future__ import annotations

import base64
import html
import os
import re
import subprocess
from pathlib import Path
from urllib.parse import urljoin

import pytest
import requests
from lxml import etree

from bridge.keys.signing import generate_saml_key
from tests.conftest import ACCOUNT, SamlIdp
from tests.conftest import SAML_CONNECTOR as CONNECTOR
from tests.integration.helpers import caller_arn, grant_id, portal_json
from tests.integration.test_bad_input import assert_error_page
from tests.peers.saml_forge import Forge, b64, request_id_from_redirect

pytestmark = pytest.mark.integration


def _auto_post(page: str) -> tuple[str, dict[str, str]]:
    action = html.unescape(re.search(r'action="([^"]+)"', page)[1])  # type: ignore[index]
    fields = {html.unescape(n): html.unescape(v)
              for n, v in re.findall(r'<input[^>]*name="([^"]+)"[^>]*value="([^"]*)"', page)}
    return action, fields


def cross_site_post(s: requests.Session, action: str, fields: dict[str, str]) -> requests.Response:
    """What a browser does with an IdP's auto-POST form: that cross-site POST carries none of our
    SameSite=Lax cookies, so the bridge answers a hop page (taking nothing), which re-POSTs the same
    fields from our own origin: that POST carries the browser's cookies (``s``)."""
    hop = requests.post(action, data=fields, timeout=30)
    assert hop.status_code == 200 and hop.headers["Cache-Control"] == "no-store", hop.text[:500]
    assert 'class="autosubmit"' in hop.text and "/static/bridge.js" in hop.text and 'id="continue"' in hop.text
    hop_action, hop_fields = _auto_post(hop.text)
    assert urljoin(action, hop_action) == action and hop_fields == {**fields, "bridge_hop": "1"}
    return s.post(action, data=hop_fields, timeout=30)


def idp_answer(base: str, s: requests.Session, user: str, password: str) -> tuple[str, dict[str, str]]:
    """Start a sign-in in ``s`` and sign in at the IdP: its auto-POST form (action, fields), not posted."""
    r = s.get(f"{base}/login/{CONNECTOR}", timeout=10)
    assert 'id="username"' in r.text, r.text[:300]
    r = s.post(urljoin(r.url, "/login"), data={"username": user, "password": password}, timeout=10)
    action, fields = _auto_post(r.text)
    assert action == f"{base}/callback/{CONNECTOR}" and "SAMLResponse" in fields
    return action, fields


def saml_login(base: str, user: str, password: str, s: requests.Session | None = None) -> requests.Response:
    s = s or requests.Session()
    action, fields = idp_answer(base, s, user, password)
    return cross_site_post(s, action, fields)


@pytest.mark.parametrize("victim_signing_in", [False, True])
def test_saml_response_planted_in_another_browser_is_refused(live_bridge, saml_settings,
                                                             victim_signing_in: bool) -> None:
    """Login CSRF: the attacker signs in at the IdP, keeps the signed response, and has a page of theirs
    auto-POST it in the victim's browser. After the hop the victim's browser sends its own cookie (or
    none): refused, no session; and the response is spent, so nobody can use it any more."""
    base = live_bridge(saml_settings())
    attacker = requests.Session()
    action, fields = idp_answer(base, attacker, "alice", "alice-pw")
    victim = requests.Session()
    if victim_signing_in:
        victim.get(f"{base}/login/{CONNECTOR}", allow_redirects=False, timeout=10)
        assert victim.cookies.get("bridge_login")
    r = cross_site_post(victim, action, fields)
    assert_error_page(r, 400, "login_browser_mismatch")
    assert "bridge_session" not in victim.cookies
    assert victim.get(f"{base}/portal", headers={"Accept": "application/json"}, timeout=10).status_code == 401
    assert_error_page(attacker.post(action, data=fields, timeout=30), 400, "login_expired")
    assert attacker.get(f"{base}/portal", headers={"Accept": "application/json"}, timeout=10).status_code == 401


def test_sp_metadata_is_served(live_bridge, saml_settings) -> None:
    base = live_bridge(saml_settings())
    r = requests.get(f"{base}/sp/{CONNECTOR}/metadata.xml", timeout=10)
    assert r.status_code == 200 and r.headers["Content-Type"].startswith("application/samlmetadata+xml")
    root = etree.fromstring(r.content)
    assert root.get("entityID") == f"{base}/sp/{CONNECTOR}/metadata.xml"
    acs = root.find(".//{urn:oasis:names:tc:SAML:2.0:metadata}AssertionConsumerService")
    assert acs.get("Location") == f"{base}/callback/{CONNECTOR}"
    assert requests.get(f"{base}/sp/dev/metadata.xml", timeout=10).status_code == 404


def test_saml_login_both_aws_paths(live_bridge, saml_settings, strict_sts_peer, moto_url) -> None:
    base = live_bridge(saml_settings())
    s = requests.Session()
    r = saml_login(base, "alice", "alice-pw", s)
    assert r.status_code == 200 and r.url == f"{base}/portal", r.text[:500]
    portal = portal_json(s, base)
    assert portal["identity"] == {"email": "alice@example.com", "name": "Alice Example", "mfa": True,
                                  "connector": CONNECTOR}
    headers = {"Accept": "application/json", "X-CSRF-Token": portal["csrf_token"]}
    # SAML path: the bridge signs an assertion; the strict STS checks it against our IdP metadata.
    creds = s.post(f"{base}/credentials/{grant_id(portal, '/Admin')}", headers=headers,
                   data={"duration": "7200"}, timeout=30).json()
    assert caller_arn(moto_url, creds) == f"arn:aws:sts::{ACCOUNT}:assumed-role/Admin/alice@example.com"
    # Web-identity path for the other grant: same page, same shape.
    creds = s.post(f"{base}/credentials/{grant_id(portal, '/ReadOnly')}", headers=headers, timeout=30).json()
    assert caller_arn(moto_url, creds) == f"arn:aws:sts::{ACCOUNT}:assumed-role/ReadOnly/alice@example.com"
    saml_seen, jwt_seen = strict_sts_peer.seen
    assert (saml_seen.action, jwt_seen.action) == ("AssumeRoleWithSAML", "AssumeRoleWithWebIdentity")
    assert saml_seen.problems == [] and jwt_seen.problems == []
    xml = base64.b64decode(saml_seen.token)
    assert b"PrincipalTag:Department" in xml and b"Platform" in xml and b">7200<" in xml


def test_minted_assertion_verifies_independently(live_bridge, saml_settings, strict_sts_peer, tmp_path) -> None:
    """signxml and the xmlsec1 CLI both verify what the bridge minted, against its published metadata."""
    from signxml import XMLVerifier

    base = live_bridge(saml_settings())
    s = requests.Session()
    saml_login(base, "alice", "alice-pw", s)
    portal = portal_json(s, base)
    s.post(f"{base}/credentials/{grant_id(portal, '/Admin')}",
           headers={"Accept": "application/json", "X-CSRF-Token": portal["csrf_token"]}, timeout=30)
    xml = base64.b64decode(strict_sts_peer.seen[0].token)
    md = etree.fromstring(requests.get(f"{base}/idp/metadata.xml", timeout=10).content)
    cert_b64 = md.findtext(".//{http://www.w3.org/2000/09/xmldsig#}X509Certificate")
    pem = f"-----BEGIN CERTIFICATE-----\n{cert_b64}\n-----END CERTIFICATE-----\n"
    assertion = etree.fromstring(xml).find("{urn:oasis:names:tc:SAML:2.0:assertion}Assertion")
    XMLVerifier().verify(etree.tostring(assertion), x509_cert=pem)
    (tmp_path / "r.xml").write_bytes(xml)
    (tmp_path / "c.pem").write_text(pem)
    out = subprocess.run(["xmlsec1", "--verify", "--pubkey-cert-pem", str(tmp_path / "c.pem"), "--id-attr:ID",
                          "urn:oasis:names:tc:SAML:2.0:assertion:Assertion", str(tmp_path / "r.xml")],
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr


def test_wrong_password_at_the_idp_stays_there(live_bridge, saml_settings, saml_idp) -> None:
    base = live_bridge(saml_settings())
    s = requests.Session()
    s.get(f"{base}/login/{CONNECTOR}", timeout=10)
    r = s.post(f"{saml_idp.url}/login", data={"username": "alice", "password": "nope"}, timeout=10)
    assert r.status_code == 401


# ---- forged responses: every bad input is a clear 4xx, never a 500 -------------------------


@pytest.fixture
def forge(saml_idp: SamlIdp, bridge_port: int) -> Forge:
    base = f"http://127.0.0.1:{bridge_port}"
    return Forge(saml_idp.entity_id, f"{base}/sp/{CONNECTOR}/metadata.xml", f"{base}/callback/{CONNECTOR}",
                 saml_idp.key)


def _begin(base: str, s: requests.Session) -> tuple[str, str]:
    r = s.get(f"{base}/login/{CONNECTOR}", allow_redirects=False, timeout=10)
    return request_id_from_redirect(r.headers["Location"])


def _post(base: str, s: requests.Session, saml_response: str, relay: str | None) -> requests.Response:
    data = {"SAMLResponse": saml_response, **({"RelayState": relay} if relay else {})}
    return s.post(f"{base}/callback/{CONNECTOR}", data=data, timeout=30)


def test_forged_good_response_is_accepted(live_bridge, saml_settings, forge) -> None:
    base = live_bridge(saml_settings())
    s = requests.Session()
    rid, relay = _begin(base, s)
    r = _post(base, s, b64(forge.sign(forge.build(in_response_to=rid))), relay)
    assert r.url == f"{base}/portal" and f"arn:aws:iam::{ACCOUNT}:role/Admin" in r.text


def _wrapped(forge: Forge, rid: str) -> bytes:
    """A second, unsigned Assertion (attacker's) placed before the signed one."""
    signed = etree.fromstring(forge.sign(forge.build(in_response_to=rid)))
    evil = Forge(forge.idp_entity_id, forge.sp_entity_id, forge.acs, forge.key, name_id="admin@example.com")
    evil_a = evil.build(in_response_to=rid).find("{urn:oasis:names:tc:SAML:2.0:assertion}Assertion")
    signed.insert(2, evil_a)
    return etree.tostring(signed)


def _tampered(forge: Forge, rid: str) -> bytes:
    return forge.sign(forge.build(in_response_to=rid)).replace(b"aws-admins", b"aws-rootzz")


def _comment_in_nameid(forge: Forge, rid: str) -> bytes:
    f = Forge(forge.idp_entity_id, forge.sp_entity_id, forge.acs, forge.key, name_id="admin@example.com.evil.test")
    return f.sign(f.build(in_response_to=rid)).replace(b"admin@example.com.evil.test",
                                                      b"admin@example.com<!---->.evil.test")


@pytest.mark.parametrize("case, code, check", [
    ("unsigned", "saml_invalid", "signature"),
    ("other_key", "saml_invalid", "signature"),
    ("tampered", "saml_invalid", "signature"),
    ("wrapped", "saml_invalid", "structure"),
    ("doctype", "saml_invalid", "structure"),
    ("expired", "saml_expired", "expiry"),
    ("not_yet_valid", "saml_not_yet_valid", "validity start"),
    ("wrong_audience", "saml_audience", "audience"),
    ("wrong_recipient", "saml_recipient", "recipient"),
    ("wrong_destination", "saml_destination", "destination"),
    ("unknown_in_response_to", "saml_in_response_to", "request"),
    ("unsolicited", "saml_unsolicited", None),
    ("responder", "idp_denied", None),
    ("not_base64", "saml_invalid", "structure"),
    ("prefix_recipient", "saml_recipient", "recipient"),
])
def test_bad_saml_responses(live_bridge, saml_settings, forge, bridge_logs, case: str, code: str,
                            check: str | None) -> None:
    """Each bad response: a 4xx page whose code and words name the check that failed (issue 23 item 14:
    "which check", never a value from the response), nothing signed in, nothing of it logged."""
    import time

    base = live_bridge(saml_settings())
    s = requests.Session()
    rid, relay = _begin(base, s)
    now = time.time()
    other = generate_saml_key(Path(os.environ.get("TMPDIR", "/tmp")) / f"k{os.getpid()}{case}", bits=2048)
    build = {
        "unsigned": lambda: etree.tostring(forge.build(in_response_to=rid)),
        "other_key": lambda: forge.sign(forge.build(in_response_to=rid), other),
        "tampered": lambda: _tampered(forge, rid),
        "wrapped": lambda: _wrapped(forge, rid),
        "doctype": lambda: b'<?xml version="1.0"?><!DOCTYPE r [<!ENTITY x "y">]>' +
                           forge.sign(forge.build(in_response_to=rid)).split(b"?>", 1)[1],
        "expired": lambda: forge.sign(forge.build(in_response_to=rid, now=now - 900)),
        "not_yet_valid": lambda: forge.sign(forge.build(in_response_to=rid, not_before=now + 240)),
        "wrong_audience": lambda: forge.sign(forge.build(in_response_to=rid, audience="https://other.example/sp")),
        "wrong_recipient": lambda: forge.sign(forge.build(in_response_to=rid, recipient="https://other.example/acs")),
        "wrong_destination": lambda: forge.sign(forge.build(in_response_to=rid,
                                                            destination="https://other.example/acs")),
        "unknown_in_response_to": lambda: forge.sign(forge.build(in_response_to="_not_ours")),
        "unsolicited": lambda: forge.sign(forge.build(in_response_to=None)),
        "responder": lambda: etree.tostring(forge.build(in_response_to=rid,
                                                        status="urn:oasis:names:tc:SAML:2.0:status:Responder")),
        "not_base64": None,
        "prefix_recipient": lambda: forge.sign(forge.build(in_response_to=rid, recipient=forge.acs + "-and-more",
                                                           destination=forge.acs)),
    }[case]
    payload = "%%%not base64%%%" if build is None else b64(build())
    r = _post(base, s, payload, relay)
    assert_error_page(r, 403 if code == "idp_denied" else 400, code)
    if check is not None:
        assert f"failed the bridge&#39;s {check} check" in r.text, r.text[:1500]
    if case == "responder":
        assert "Responder" in r.text and "User account is locked" in r.text  # the IdP's reason is shown
    assert s.get(f"{base}/portal", headers={"Accept": "application/json"}, timeout=10).status_code == 401
    assert payload[:60] not in bridge_logs.text and "PHNhbWxw" not in bridge_logs.text  # no raw response logged


def test_comment_injected_in_nameid_reads_whole_value(live_bridge, saml_settings, forge) -> None:
    base = live_bridge(saml_settings(email_attribute="none-such"))
    s = requests.Session()
    rid, relay = _begin(base, s)
    r = _post(base, s, b64(_comment_in_nameid(forge, rid)), relay)
    assert r.url == f"{base}/portal"
    # email comes from the NameID (emailAddress format): the whole value, not the part before the comment
    assert portal_json(s, base)["identity"]["email"] == "admin@example.com.evil.test"


def test_replayed_assertion_refused_even_when_unsolicited_allowed(live_bridge, saml_settings, forge) -> None:
    base = live_bridge(saml_settings(insecure_allow_idp_initiated=True))
    signed = b64(forge.sign(forge.build(in_response_to=None)))
    first = requests.Session()
    assert _post(base, first, signed, "/portal").url == f"{base}/portal"
    assert_error_page(_post(base, requests.Session(), signed, "/portal"), 400, "saml_replayed")
    assert first.get(f"{base}/portal", timeout=10).status_code == 200  # nothing lost


def test_response_only_signing_refused_unless_configured(live_bridge, saml_settings, forge, saml_idp) -> None:
    from bridge.aws.assertion import _sign

    def response_signed_only(rid: str) -> str:
        resp = forge.build(in_response_to=rid)
        _sign(resp, saml_idp.key, after=resp.find("{urn:oasis:names:tc:SAML:2.0:assertion}Issuer"))
        return b64(etree.tostring(resp))

    base = live_bridge(saml_settings())
    s = requests.Session()
    rid, relay = _begin(base, s)
    assert_error_page(_post(base, s, response_signed_only(rid), relay), 400, "saml_invalid")


def test_over_one_megabyte_is_a_413_page(live_bridge, saml_settings) -> None:
    base = live_bridge(saml_settings())
    r = requests.post(f"{base}/callback/{CONNECTOR}", data={"SAMLResponse": "A" * 1_100_000}, timeout=30)
    assert r.status_code == 413 and "Traceback" not in r.text and "request-id" in r.text


def test_idp_metadata_for_iam(live_bridge, saml_settings) -> None:
    base = live_bridge(saml_settings())
    r = requests.get(f"{base}/idp/metadata.xml", timeout=10)
    assert r.status_code == 200 and not r.content.startswith(b"\xef\xbb\xbf")
    root = etree.fromstring(r.content)
    assert root.get("entityID") == f"{base}/idp/metadata.xml"
    assert root.findall(".//{urn:oasis:names:tc:SAML:2.0:metadata}KeyDescriptor")


# ---- aws_passthrough: IdPs already wired to AWS ---------------------------------------------

UPSTREAM_ROLE = f"arn:aws:iam::{ACCOUNT}:role/OktaAdmin"
UPSTREAM_PROVIDER = f"arn:aws:iam::{ACCOUNT}:saml-provider/UpstreamIdP"


def test_saml_passthrough_redeems_the_upstream_response(live_bridge, saml_settings, forge, saml_idp, strict_sts_peer,
                                                       moto_url, redis_url) -> None:
    base = live_bridge(saml_settings(aws_passthrough=True))
    strict_sts_peer.register_saml_provider("UpstreamIdP",
                                           lambda: requests.get(f"{saml_idp.url}/metadata", timeout=10).content)
    forge.attributes = {"email": ["dave@example.com"],
                        "https://aws.amazon.com/SAML/Attributes/Role": [f"{UPSTREAM_PROVIDER},{UPSTREAM_ROLE}"],
                        "https://aws.amazon.com/SAML/Attributes/RoleSessionName": ["dave@example.com"]}
    s = requests.Session()
    rid, relay = _begin(base, s)
    aws_acs = "https://signin.aws.amazon.com/saml"
    upstream = b64(forge.sign(forge.build(in_response_to=rid, audience="urn:amazon:webservices", recipient=aws_acs,
                                          destination=aws_acs)))
    assert _post(base, s, upstream, relay).url == f"{base}/portal"
    portal = portal_json(s, base)
    assert [g["role_arn"] for g in portal["grants"]] == [UPSTREAM_ROLE]  # exactly what the IdP asserted
    r = s.post(f"{base}/credentials/{portal['grants'][0]['id']}",
               headers={"Accept": "application/json", "X-CSRF-Token": portal["csrf_token"]}, timeout=30)
    assert r.status_code == 200, r.text
    assert caller_arn(moto_url, r.json()) == f"arn:aws:sts::{ACCOUNT}:assumed-role/OktaAdmin/dave@example.com"
    (seen,) = strict_sts_peer.seen
    assert seen.action == "AssumeRoleWithSAML" and seen.token == upstream and seen.problems == []
    # After STS's 5-minute window the artifact is gone: a clear answer, not a 500.
    import redis as redis_lib

    rc = redis_lib.Redis.from_url(redis_url)
    for k in rc.scan_iter(match="*passthrough:*"):
        rc.delete(k)
    r = s.post(f"{base}/credentials/{portal['grants'][0]['id']}", data={"duration": "900"},  # not cached
               headers={"Accept": "application/json", "X-CSRF-Token": portal["csrf_token"]}, timeout=30)
    assert r.status_code == 400 and r.json()["error"] == "passthrough_expired"


def test_saml_passthrough_still_checks_signature_and_audience(live_bridge, saml_settings, forge) -> None:
    base = live_bridge(saml_settings(aws_passthrough=True))
    s = requests.Session()
    rid, relay = _begin(base, s)
    bad = b64(forge.sign(forge.build(in_response_to=rid, audience="https://someone-else.example/")))
    assert_error_page(_post(base, s, bad, relay), 400, "saml_audience")
    rid, relay = _begin(base, s)
    assert_error_page(_post(base, s, b64(_tampered(forge, rid)), relay), 400, "saml_invalid")


def test_encrypted_assertion_is_decrypted_with_the_sp_key(live_bridge, saml_settings, forge, tmp_path) -> None:
    from tests.peers.saml_forge import encrypt_assertion

    sp = generate_saml_key(tmp_path / "sp", bits=2048)
    base = live_bridge(saml_settings(sp_key_file=str(sp.path), sp_cert_file=str(sp.path.with_suffix(".crt")),
                                     want_assertions_encrypted=True))
    md = requests.get(f"{base}/sp/{CONNECTOR}/metadata.xml", timeout=10).text
    assert 'use="encryption"' in md  # the IdP learns our encryption certificate from our metadata
    s = requests.Session()
    rid, relay = _begin(base, s)
    encrypted = encrypt_assertion(forge.sign(forge.build(in_response_to=rid)), sp.cert_pem)
    assert b"EncryptedAssertion" in encrypted and b"dave@example.com" not in encrypted
    assert _post(base, s, b64(encrypted), relay).url == f"{base}/portal"
    assert portal_json(s, base)["identity"]["email"] == "dave@example.com"
    # With encryption required, a plain assertion is refused.
    rid, relay = _begin(base, s)
    assert_error_page(_post(base, s, b64(forge.sign(forge.build(in_response_to=rid))), relay), 400, "saml_invalid")


def test_metadata_refresh_keeps_last_good_copy(saml_idp, tmp_path) -> None:
    """Metadata from a URL: fetched at start, refreshed on schedule, last good copy kept on failure."""
    from werkzeug.serving import make_server
    from werkzeug.wrappers import Response

    from bridge.config import SamlConnectorSettings
    from bridge.domain.errors import UpstreamUnavailable
    from bridge.upstream.saml import SamlConnector

    good = requests.get(f"{saml_idp.url}/metadata", timeout=10).text
    state = {"up": True, "hits": 0}

    def app(environ, start_response):  # type: ignore[no-untyped-def]
        state["hits"] += 1
        resp = Response(good, content_type="application/xml") if state["up"] else Response("down", status=503)
        return resp(environ, start_response)

    srv = make_server("127.0.0.1", 0, app, threaded=True)
    import threading

    threading.Thread(target=srv.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
    now = [1000.0]
    stale: list[str] = []
    try:
        cfg = SamlConnectorSettings(id="m", type="saml", metadata_url=f"http://127.0.0.1:{srv.server_port}/md",
                                    metadata_refresh=600)
        c = SamlConnector(cfg, base_url="http://127.0.0.1:1", resolve=lambda p: p, replay_guard=lambda k, t: True,
                          clock=lambda: now[0], on_stale=stale.append)
        assert state["hits"] == 1 and c.idp_settings()["entityId"] == saml_idp.entity_id  # fetched at start
        now[0] += 300
        c.idp_settings()
        assert state["hits"] == 1  # cached
        state["up"] = False
        now[0] += 400
        assert stale == []
        assert c.idp_settings()["entityId"] == saml_idp.entity_id  # refresh failed: last good copy
        assert state["hits"] == 2 and stale == ["saml_metadata"]  # ... and the warning metric is told
        state["up"] = True
        now[0] += 61
        c.idp_settings()
        assert state["hits"] == 3  # retried a minute later
        # No good copy at all: a clear 503, not a crash.
        state["up"] = False
        fresh = SamlConnector(cfg, base_url="http://127.0.0.1:1", resolve=lambda p: p,
                              replay_guard=lambda k, t: True, clock=lambda: now[0])
        with pytest.raises(UpstreamUnavailable):
            fresh.idp_settings()
    finally:
        srv.shutdown()


def test_deprecated_sha1_signature_is_refused(live_bridge, saml_settings, forge, bridge_logs) -> None:
    from tests.peers.saml_forge import sign_sha1

    base = live_bridge(saml_settings())
    s = requests.Session()
    rid, relay = _begin(base, s)
    assert_error_page(_post(base, s, b64(sign_sha1(forge.build(in_response_to=rid), forge.key)), relay), 400,
                      "saml_invalid")
    assert "Deprecated signature algorithm" in bridge_logs.text


def test_two_saml_idps_side_by_side(live_bridge, make_settings, saml_idp, tmp_path) -> None:
    """Each connector has its own SP entity id (and keys if wanted); both metadata documents are served."""
    sp = generate_saml_key(tmp_path / "sp2", bits=2048)
    settings = make_settings(connectors=[
        {"id": "idp-a", "type": "saml", "metadata_url": f"{saml_idp.url}/metadata"},
        {"id": "idp-b", "type": "saml", "metadata_url": f"{saml_idp.url}/metadata",
         "sp_entity_id": "urn:bridge:idp-b", "sp_key_file": str(sp.path),
         "sp_cert_file": str(sp.path.with_suffix(".crt")), "sign_authn_requests": True}])
    base = live_bridge(settings)
    a = etree.fromstring(requests.get(f"{base}/sp/idp-a/metadata.xml", timeout=10).content)
    b = etree.fromstring(requests.get(f"{base}/sp/idp-b/metadata.xml", timeout=10).content)
    assert a.get("entityID") == f"{base}/sp/idp-a/metadata.xml" and b.get("entityID") == "urn:bridge:idp-b"
    assert b"AuthnRequestsSigned=\"true\"" in etree.tostring(b)
    r = requests.get(f"{base}/login/idp-b", allow_redirects=False, timeout=10)
    assert "Signature=" in r.headers["Location"] and "SigAlg=" in r.headers["Location"]  # signed AuthnRequest


# ---- aws_passthrough that tells the truth: AWS's rules at sign-in -------------------------------

AWS_ACS = "https://signin.aws.amazon.com/saml"
ROLE_ATTR = "https://aws.amazon.com/SAML/Attributes/Role"
OTHER_ACCOUNT = "210987654321"


def _upstream_signin(base: str, forge: Forge, s: requests.Session, roles: list[str] | None, *,
                     recipient: str = AWS_ACS, now: float | None = None, lifetime: int = 300) -> str:
    """Sign in with an upstream response the IdP (the suite's IdP key and entity id) addressed as given."""
    forge.attributes = {"email": ["dave@example.com"],
                        "https://aws.amazon.com/SAML/Attributes/RoleSessionName": ["dave@example.com"],
                        **({ROLE_ATTR: roles} if roles is not None else {})}
    rid, relay = _begin(base, s)
    upstream = b64(forge.sign(forge.build(in_response_to=rid, audience="urn:amazon:webservices", recipient=recipient,
                                          destination=recipient, now=now, lifetime=lifetime)))
    r = _post(base, s, upstream, relay)
    assert r.status_code == 200 and r.url == f"{base}/portal", r.text[:500]  # signed in: the identity is good
    return upstream


@pytest.mark.parametrize("case, offered, codes, says", [
    ("recipient_is_the_bridge", [], ["aws_rule_5"], "Recipient and Destination must be AWS's"),
    ("issued_6_minutes_ago", [], ["aws_rule_8"], "within 5 minutes of its IssueInstant"),
    ("role_and_provider_in_two_accounts", [], ["role_provider_mismatch"], "different accounts"),
    ("no_role_attribute", [], ["role_attribute_missing"], "has no Role attribute"),
    ("malformed_role_value", [], ["role_value_malformed"], "is not '<role arn>,<saml-provider arn>'"),
    # One bad value spoils the assertion for every role (AWS, §1.10 rule 9): the good one is not offered either.
    ("a_bad_value_beside_a_good_one", [], ["role_provider_mismatch", "aws_rule_9"], "AWS refuses the whole assertion"),
    ("good", ["OktaAdmin"], [], ""),
])
def test_saml_passthrough_offers_only_what_aws_accepts(live_bridge, saml_settings, forge, saml_idp, strict_sts_peer,
                                                       moto_url, bridge_logs, case: str, offered: list[str],
                                                       codes: list[str], says: str) -> None:
    """Each broken upstream assertion: signed in, the portal offers only roles AWS would take and says
    why the others are not offered (what to fix at the IdP); what is offered works at the strict STS."""
    import time

    base = live_bridge(saml_settings(aws_passthrough=True))
    strict_sts_peer.register_saml_provider("UpstreamIdP",
                                           lambda: requests.get(f"{saml_idp.url}/metadata", timeout=10).content)
    good = f"{UPSTREAM_ROLE},{UPSTREAM_PROVIDER}"
    cross = f"arn:aws:iam::{ACCOUNT}:role/Other,arn:aws:iam::{OTHER_ACCOUNT}:saml-provider/UpstreamIdP"
    roles, kw = {
        "recipient_is_the_bridge": ([good], {"recipient": forge.acs}),
        "issued_6_minutes_ago": ([good], {"now": time.time() - 360, "lifetime": 900}),
        "role_and_provider_in_two_accounts": ([cross], {}),
        "no_role_attribute": (None, {}),
        "malformed_role_value": ([f"arn:aws:iam::{ACCOUNT}:role/NoProvider"], {}),
        "a_bad_value_beside_a_good_one": ([good, cross], {}),
        "good": ([good], {}),
    }[case]
    s = requests.Session()
    _upstream_signin(base, forge, s, roles, **kw)  # type: ignore[arg-type]
    portal = portal_json(s, base)
    assert [g["role_arn"].rsplit("/", 1)[1] for g in portal["grants"]] == offered
    not_offered = portal["passthrough"]["not_offered"]
    assert [w["code"] for w in not_offered] == codes and all(says in w["reason"] for w in not_offered[-1:]), not_offered
    page = html.unescape(s.get(f"{base}/portal", timeout=10).text)
    assert "rules for your groups" not in page
    if codes:
        assert 'id="not-offered"' in page and says in page
        assert "passthrough_withheld" in bridge_logs.text and codes[0] in bridge_logs.text  # logged, for the admin
    assert "PHNhbWxw" not in bridge_logs.text  # never the assertion
    for g in portal["grants"]:  # what is offered, AWS takes
        r = s.post(f"{base}/credentials/{g['id']}",
                   headers={"Accept": "application/json", "X-CSRF-Token": portal["csrf_token"]}, timeout=30)
        assert r.status_code == 200, r.text
        assert caller_arn(moto_url, r.json()).endswith("/OktaAdmin/dave@example.com")
    assert [x.problems for x in strict_sts_peer.seen] == [[] for _ in portal["grants"]]


def test_saml_passthrough_redeem_time_counts_from_issue_instant(live_bridge, saml_settings, forge, saml_idp,
                                                                 strict_sts_peer) -> None:
    """The portal shows the time left (IssueInstant + 5 minutes, not sign-in + 5); once it has passed
    the role is no longer offered and "sign in again" is what the user reads (and really helps)."""
    import time

    base = live_bridge(saml_settings(aws_passthrough=True))
    s = requests.Session()
    issued = time.time() - 296
    _upstream_signin(base, forge, s, [f"{UPSTREAM_ROLE},{UPSTREAM_PROVIDER}"], now=issued, lifetime=900)
    portal = portal_json(s, base)
    left = portal["passthrough"]["seconds_left"]
    assert portal["passthrough"]["until"] == int(issued) + 300 and 0 < left <= 5, portal["passthrough"]
    assert [g["role_arn"] for g in portal["grants"]] == [UPSTREAM_ROLE]
    assert 'id="passthrough-left"' in s.get(f"{base}/portal", timeout=10).text
    gid = portal["grants"][0]["id"]
    time.sleep(left + 1.5)
    portal = portal_json(s, base)
    assert portal["grants"] == [] and portal["passthrough"]["spent"] is True
    page = s.get(f"{base}/portal", timeout=10).text
    assert 'id="passthrough-spent"' in page and "Sign in again" in page and "rules for your groups" not in page
    r = s.post(f"{base}/credentials/{gid}", headers={"Accept": "application/json",
                                                     "X-CSRF-Token": portal["csrf_token"]}, timeout=30)
    assert r.status_code == 400 and r.json()["error"] == "passthrough_expired" and "Sign in again" in r.json()["hint"]
    assert strict_sts_peer.seen == []  # nothing AWS would refuse was sent


@pytest.mark.parametrize("aws_code, says", [
    ("InvalidIdentityToken", "hold that identity provider's current metadata"),
    ("ExpiredTokenException", "check the identity provider's clock"),
    ("AccessDenied", "IAM SAML provider of your identity provider"),
])
def test_saml_passthrough_sts_hints_point_at_the_upstream_idp(live_bridge, saml_settings, forge, strict_sts_peer,
                                                               aws_code: str, says: str) -> None:
    base = live_bridge(saml_settings(aws_passthrough=True))
    s = requests.Session()
    _upstream_signin(base, forge, s, [f"{UPSTREAM_ROLE},{UPSTREAM_PROVIDER}"])
    portal = portal_json(s, base)
    strict_sts_peer.fail_next(403 if aws_code == "AccessDenied" else 400, aws_code, f"injected {aws_code}")
    r = s.post(f"{base}/credentials/{portal['grants'][0]['id']}",
               headers={"Accept": "application/json", "X-CSRF-Token": portal["csrf_token"]}, timeout=30)
    body = r.json()
    assert body["error"] == f"sts_{aws_code}" and says in body["hint"], body
    assert "bridge's" not in body["hint"] + body["message"]  # not the bridge's token or metadata


def test_saml_passthrough_new_assertion_is_redeemed_and_catalog_applies(live_bridge, make_settings, saml_idp, forge,
                                                                         strict_sts_peer) -> None:
    """A second sign-in's assertion reaches STS (the cache is keyed by the artifact); the accounts
    catalog labels pass-through grants like rule grants."""
    c = {"id": CONNECTOR, "type": "saml", "metadata_url": f"{saml_idp.url}/metadata", "aws_passthrough": True}
    catalog = {ACCOUNT: {"alias": "sandbox", "label": "Sandbox", "roles": {"OktaAdmin": {"label": "Okta admin"}}}}
    base = live_bridge(make_settings(connectors=[c], mapping={"accounts": catalog, "rules": []}))
    strict_sts_peer.register_saml_provider("UpstreamIdP",
                                           lambda: requests.get(f"{saml_idp.url}/metadata", timeout=10).content)
    s = requests.Session()
    sent = []
    for _ in range(2):
        sent.append(_upstream_signin(base, forge, s, [f"{UPSTREAM_ROLE},{UPSTREAM_PROVIDER}"]))
        portal = portal_json(s, base)
        (g,) = portal["grants"]
        assert (g["account_label"], g["account_alias"], g["label"]) == ("Sandbox", "sandbox", "Okta admin")
        r = s.post(f"{base}/credentials/{g['id']}",
                   headers={"Accept": "application/json", "X-CSRF-Token": portal["csrf_token"]}, timeout=30)
        assert r.status_code == 200, r.text
    assert [x.token for x in strict_sts_peer.seen] == sent  # each sign-in's own assertion was redeemed
    assert "Sandbox" in s.get(f"{base}/portal", timeout=10).text
