"""Issue 23, "IdP defaults that fail silently": what connecting SimpleSAMLphp / Shibboleth-style SAML IdPs
and LemonLDAP::NG-style OIDC providers by the docs ran into, through real HTTP.

SAML: the pysaml2 IdP (tests/peers/saml_idp.py) with its LDAP-speaking users ``lola`` (mail, memberOf,
displayName, uid, eduPersonPrincipalName) and ``otto`` (their urn:oid forms), whose NameID follows the
AuthnRequest's NameIDPolicy like SimpleSAMLphp's; forged signed responses (tests/peers/saml_forge.py) for
every preset and for IdP-initiated sign-ins. OIDC: the npm oidc-provider as it is, and a second one with
CLAIMS_STYLE=lemonldap (claims at userinfo only, groups as one "a; b" string, no email_verified).
"""

from __future__ import annotations

import calendar
import html
import json
import re
import time
from collections.abc import Iterator
from typing import Any

import pytest
import requests
import yaml
from click.testing import CliRunner
from lxml import etree

from bridge.upstream.saml_settings import NAMEID_PERSISTENT, SAML_PRESETS
from tests.conftest import ACCOUNT, SamlIdp, oidc_provider
from tests.conftest import SAML_CONNECTOR as CONNECTOR
from tests.integration.helpers import oidc_login, portal_json
from tests.integration.test_bad_input import assert_error_page
from tests.integration.test_saml import _begin, _post, saml_login
from tests.peers.saml_forge import Forge, b64

pytestmark = pytest.mark.integration

LLNG = "llng"
RULES = [
    {"name": "admins", "match": {"group": "aws-admins"},
     "grants": [{"role_arn": f"arn:aws:iam::{ACCOUNT}:role/Admin"}]},
    {"name": "readonly", "match": {"group": "aws-readonly"},
     "grants": [{"role_arn": f"arn:aws:iam::{ACCOUNT}:role/ReadOnly"}]},
]


def _roles(s: requests.Session, base: str) -> list[str]:
    return sorted(g["role_arn"].rsplit("/", 1)[1] for g in portal_json(s, base)["grants"])


def _why(s: requests.Session, base: str) -> tuple[str, dict[str, Any]]:
    """The Why page as a person reads it (unescaped HTML), and its JSON."""
    page = s.get(f"{base}/portal/why", timeout=10)
    doc = s.get(f"{base}/portal/why", headers={"Accept": "application/json"}, timeout=10)
    assert page.status_code == 200 and doc.status_code == 200, page.text[:300]
    return html.unescape(page.text), doc.json()


def _warnings_section(page: str) -> str:
    m = re.search(r'<section class="card" id="why-idp-warnings">(.*?)</section>', page, re.S)
    return m[1] if m else ""


def _login_warnings(logs: Any) -> list[list[str]]:
    return [json.loads(line)["warnings"] for line in logs.lines if '"event": "login_warnings"' in line]


def _saml_connector(saml_idp: SamlIdp, **kw: Any) -> dict[str, Any]:
    return {"id": CONNECTOR, "type": "saml", "name": "Corp SAML", "metadata_url": f"{saml_idp.url}/metadata", **kw}


@pytest.fixture
def forge(saml_idp: SamlIdp, bridge_port: int) -> Forge:
    base = f"http://127.0.0.1:{bridge_port}"
    return Forge(saml_idp.entity_id, f"{base}/sp/{CONNECTOR}/metadata.xml", f"{base}/callback/{CONNECTOR}",
                 saml_idp.key)


# ---- 8. LDAP attribute names: a warning where there was silence, and an ldap preset -------------


def test_ldap_attribute_names_under_the_default_preset_are_named_at_sign_in_on_why_and_in_probe(
        live_bridge, make_settings, saml_idp, bridge_logs, redis_url, keys_dir, tmp_path) -> None:
    """`mail` and `memberOf` where the connector reads `email` and `groups`: the sign-in works but yields no
    e-mail and no groups (as before); now a login_warnings line, the Why page and check-config --probe say
    which attribute is missing, what the IdP sent instead, and what to set."""
    prefix = f"probe{time.monotonic_ns()}:"
    connector = _saml_connector(saml_idp)
    base = live_bridge(make_settings(connectors=[connector], redis={"key_prefix": prefix}, mapping={"rules": RULES}))
    s = requests.Session()
    r = saml_login(base, "lola", "lola-pw", s)
    assert r.url == f"{base}/portal" and _roles(s, base) == []
    assert portal_json(s, base)["identity"]["email"] is None
    (logged,) = _login_warnings(bridge_logs)
    assert any("no `email` attribute" in w and "`mail`" in w and "attribute_preset: ldap" in w for w in logged)
    assert any("no `groups` attribute" in w and "`memberOf`" in w for w in logged)
    assert "lola@example.com" not in json.dumps(logged) and "aws-admins" not in json.dumps(logged)  # names, no values
    page, doc = _why(s, base)
    section = _warnings_section(page)
    assert "set email_attribute: mail (or attribute_preset: ldap)" in section
    assert "set groups_attribute: memberOf (or attribute_preset: ldap)" in section
    assert doc["idp_warnings"] == logged

    # check-config --probe, on a config file naming the same Redis and IdP, shows what that sign-in said.
    cfg = {"base_url": base, "secret_key": "probe-secret", "redis": {"url": redis_url, "key_prefix": prefix},
           "issuer": {"url": "https://bridge.example.com", "keys_dir": str(keys_dir)},
           "connectors": [connector], "mapping": {"rules": RULES}}
    (tmp_path / "bridge.yaml").write_text(yaml.safe_dump(cfg))
    from bridge.commands.cli import main

    out = CliRunner().invoke(main, ["check-config", "--config", str(tmp_path / "bridge.yaml"), "--probe"])
    assert out.exit_code == 0, out.output
    assert f"probe: connector {CONNECTOR}: IdP metadata answers (entity id {saml_idp.entity_id}" in out.output
    assert f"probe: connector {CONNECTOR}: last sign-in " in out.output
    assert re.search(rf"warning: connector {CONNECTOR}: the sign-in of \S+Z: the assertion has no `email` "
                     r"attribute.*set email_attribute: mail", out.output), out.output
    assert out.output.rstrip().endswith("ok")


def test_probe_names_an_idp_it_cannot_reach(redis_url, keys_dir, tmp_path) -> None:
    from bridge.commands.cli import main
    from bridge.runtime.localredis import free_port

    cfg = {"base_url": "http://127.0.0.1:8000", "secret_key": "probe-secret", "redis": {"url": redis_url},
           "issuer": {"url": "https://bridge.example.com", "keys_dir": str(keys_dir)},
           "connectors": [{"id": "gone", "type": "oidc", "issuer": f"http://127.0.0.1:{free_port()}",
                           "client_id": "c", "client_secret": "s"}]}
    (tmp_path / "bridge.yaml").write_text(yaml.safe_dump(cfg))
    out = CliRunner().invoke(main, ["check-config", "--config", str(tmp_path / "bridge.yaml"), "--probe"])
    assert out.exit_code == 1 and "the probe found 1 problem(s)" in out.output
    assert "connector gone: discovery http://127.0.0.1:" in out.output and "ConnectionError" in out.output


@pytest.mark.parametrize("user, email, name, roles", [
    ("lola", "lola@example.com", "Lola Ldap", ["Admin", "ReadOnly"]),     # mail, displayName, memberOf
    ("otto", "otto@example.com", "Otto Oid", ["ReadOnly"]),               # the urn:oid forms (isMemberOf)
])
def test_ldap_preset_reads_the_real_idps_ldap_names(live_bridge, make_settings, saml_idp, bridge_logs, user: str,
                                                    email: str, name: str, roles: list[str]) -> None:
    base = live_bridge(make_settings(connectors=[_saml_connector(saml_idp, attribute_preset="ldap")],
                                     mapping={"rules": RULES}))
    s = requests.Session()
    assert saml_login(base, user, f"{user}-pw", s).url == f"{base}/portal"
    identity = portal_json(s, base)["identity"]
    assert (identity["email"], identity["name"]) == (email, name) and _roles(s, base) == roles
    assert _login_warnings(bridge_logs) == [] and _warnings_section(_why(s, base)[0]) == ""


PRESET_CASES = [(p, i) for p, names in SAML_PRESETS.items()
                for i in range(max(len(names["email"]), len(names["name"]), len(names["groups"])))]


@pytest.mark.parametrize("preset, i", PRESET_CASES, ids=[f"{p}-{i}" for p, i in PRESET_CASES])
def test_every_preset_signs_in_with_a_signed_assertion_in_its_names(live_bridge, make_settings, saml_idp, forge,
                                                                   bridge_logs, preset: str, i: int) -> None:
    """Each preset, with each spelling it reads (the ldap preset's friendly and urn:oid forms)."""
    names = SAML_PRESETS[preset]
    pick = {what: names[what][min(i, len(names[what]) - 1)] for what in ("email", "name", "groups")}
    forge.attributes = {pick["email"]: ["dave@example.com"], pick["name"]: ["Dave Preset"],
                        pick["groups"]: ["aws-admins", "aws-readonly"]}
    base = live_bridge(make_settings(connectors=[_saml_connector(saml_idp, attribute_preset=preset)],
                                     mapping={"rules": RULES}))
    s = requests.Session()
    rid, relay = _begin(base, s)
    assert _post(base, s, b64(forge.sign(forge.build(in_response_to=rid))), relay).url == f"{base}/portal"
    identity = portal_json(s, base)["identity"]
    assert (identity["email"], identity["name"]) == ("dave@example.com", "Dave Preset")
    assert _roles(s, base) == ["Admin", "ReadOnly"] and _login_warnings(bridge_logs) == []


# ---- 9. NameID: persistent asked for, transient warned about, subject_attribute -----------------

# lola's attribute names, spelled out (so these tests do not depend on the ldap preset)
LOLA_NAMES = {"email_attribute": "mail", "name_attribute": "displayName", "groups_attribute": "memberOf"}


def test_authn_request_asks_for_a_persistent_nameid_so_the_subject_stays(live_bridge, make_settings, saml_idp,
                                                                        bridge_logs) -> None:
    """SimpleSAMLphp answers "no preference" (the old unspecified NameIDPolicy) with a transient NameID:
    a new user at every sign-in. The bridge now asks for persistent, and gets the same subject twice."""
    base = live_bridge(make_settings(connectors=[_saml_connector(saml_idp, **LOLA_NAMES)], mapping={"rules": RULES}))
    subjects = []
    for _ in range(2):
        s = requests.Session()
        saml_login(base, "lola", "lola-pw", s)
        assert requests.get(f"{saml_idp.url}/last-request", timeout=5).json()["name_id_policy"] == NAMEID_PERSISTENT
        subjects.append(_why(s, base)[1]["identity"]["subject"])
    assert subjects == ["lola-persistent-0001"] * 2 and _login_warnings(bridge_logs) == []
    md = requests.get(f"{base}/sp/{CONNECTOR}/metadata.xml", timeout=10).text
    assert f"<md:NameIDFormat>{NAMEID_PERSISTENT}</md:NameIDFormat>" in md


TRANSIENT = "urn:oasis:names:tc:SAML:2.0:nameid-format:transient"


def test_transient_nameid_is_warned_about(live_bridge, make_settings, saml_idp, bridge_logs) -> None:
    base = live_bridge(make_settings(connectors=[_saml_connector(saml_idp, **LOLA_NAMES, name_id_format=TRANSIENT)],
                                     mapping={"rules": RULES}))
    s = requests.Session()
    saml_login(base, "lola", "lola-pw", s)
    assert requests.get(f"{saml_idp.url}/last-request", timeout=5).json()["name_id_policy"] == TRANSIENT
    (logged,) = _login_warnings(bridge_logs)
    assert len(logged) == 1 and "NameID is transient" in logged[0]
    assert "set subject_attribute: eduPersonPrincipalName" in logged[0]
    page, _ = _why(s, base)
    assert "favourites, cached credentials and \"Your sign-ins\" do not carry over" in _warnings_section(page)


def test_subject_attribute_keys_users_on_an_attribute(live_bridge, make_settings, saml_idp, bridge_logs) -> None:
    """An IdP that only sends transient NameIDs: subject_attribute gives the same subject at every sign-in."""
    base = live_bridge(make_settings(connectors=[_saml_connector(
        saml_idp, attribute_preset="ldap", name_id_format=TRANSIENT, subject_attribute="eduPersonPrincipalName")],
        mapping={"rules": RULES}))
    for _ in range(2):
        s = requests.Session()
        saml_login(base, "lola", "lola-pw", s)
        page, doc = _why(s, base)
        assert doc["identity"]["subject"] == "lola@example.com" and _warnings_section(page) == ""
        assert _roles(s, base) == ["Admin", "ReadOnly"]
    assert _login_warnings(bridge_logs) == []


@pytest.mark.parametrize("values", [None, ["a@example.com", "b@example.com"], [""]])
def test_subject_attribute_without_one_value_is_refused(live_bridge, make_settings, saml_idp, forge,
                                                        values: list[str] | None) -> None:
    forge.attributes = {"email": ["dave@example.com"], "groups": ["aws-admins"],
                        **({"eduPersonPrincipalName": values} if values is not None else {})}
    base = live_bridge(make_settings(connectors=[_saml_connector(saml_idp, subject_attribute="eduPersonPrincipalName")],
                                     mapping={"rules": RULES}))
    s = requests.Session()
    rid, relay = _begin(base, s)
    r = _post(base, s, b64(forge.sign(forge.build(in_response_to=rid))), relay)
    assert_error_page(r, 400, "saml_subject_attribute")
    assert "did not send the attribute that identifies you" in html.unescape(r.text)
    assert "eduPersonPrincipalName" in html.unescape(r.text)
    assert s.get(f"{base}/portal", headers={"Accept": "application/json"}, timeout=10).status_code == 401


# ---- 10. IdP-initiated sign-in: the unsolicited page, not "expired" -----------------------------


@pytest.mark.parametrize("relay", ["https://app.example.com/aws", "ss:mem:4b6f1a", None])
def test_idp_initiated_sign_in_shows_the_unsolicited_page(live_bridge, make_settings, saml_idp, forge,
                                                          relay: str | None) -> None:
    """From the IdP's app dashboard: a signed response with no InResponseTo, often with a RelayState of the
    IdP's own. Not "expired, already used or interrupted": the sign-in page, saying to start here."""
    base = live_bridge(make_settings(connectors=[_saml_connector(saml_idp)], mapping={"rules": RULES}))
    r = _post(base, requests.Session(), b64(forge.sign(forge.build(in_response_to=None))), relay)
    assert_error_page(r, 400, "saml_unsolicited")
    page = html.unescape(r.text)
    assert "started at your identity provider" in page and "expired" not in page
    assert f'id="idp-{CONNECTOR}"' in page  # the sign-in page: the button to start here is right there
    assert requests.get(f"{base}/portal", headers={"Accept": "application/json"}, timeout=10).status_code == 401


# ---- 11 and 12. LemonLDAP::NG-style OIDC: userinfo-only claims, string groups, no email_verified ----


@pytest.fixture(scope="module")
def llng_issuer(bridge_port: int) -> Iterator[str]:
    with oidc_provider({"CLAIMS_STYLE": "lemonldap",
                        "REDIRECT_URIS": f"http://127.0.0.1:{bridge_port}/callback/{LLNG}"}) as issuer:
        yield issuer


def _llng(make_settings: Any, issuer: str, **kw: Any) -> Any:
    return make_settings(connectors=[{"id": LLNG, "type": "oidc", "name": "LemonLDAP::NG", "issuer": issuer,
                                      "client_id": "bridge", "client_secret": "bridge-secret", **kw}],
                         mapping={"rules": RULES})


def test_idp_that_sends_no_email_verified_gets_a_page_for_the_administrator(live_bridge, make_settings,
                                                                           llng_issuer) -> None:
    base = live_bridge(_llng(make_settings, llng_issuer))
    s = requests.Session()
    r = oidc_login(base, LLNG, "alice", "alice-pw", s)
    assert_error_page(r, 403, "email_verified_missing")
    page = html.unescape(r.text)
    assert "sends no email_verified claim" in page and "There is nothing to verify on your side" in page
    assert "insecure_accept_unverified_email" in page
    assert s.get(f"{base}/portal", headers={"Accept": "application/json"}, timeout=10).status_code == 401


def test_userinfo_only_claims_and_delimited_string_groups_give_the_roles(live_bridge, make_settings, llng_issuer,
                                                                         bridge_logs) -> None:
    base = live_bridge(_llng(make_settings, llng_issuer, insecure_accept_unverified_email=True,
                             groups_delimiter=";"))
    s = requests.Session()
    assert oidc_login(base, LLNG, "alice", "alice-pw", s).url == f"{base}/portal"
    assert portal_json(s, base)["identity"]["email"] == "alice@example.com"
    assert _roles(s, base) == ["Admin", "ReadOnly"]
    page, doc = _why(s, base)
    assert doc["identity"]["groups"] == ["aws-admins", "aws-readonly"] and _warnings_section(page) == ""
    assert _login_warnings(bridge_logs) == []


def test_string_groups_without_a_delimiter_are_warned_about(live_bridge, make_settings, llng_issuer,
                                                            bridge_logs) -> None:
    """The same IdP without groups_delimiter: one group "aws-admins; aws-readonly" (nothing dropped, nothing
    guessed), no role, and the warning says what to set; bob's single group needs no delimiter."""
    base = live_bridge(_llng(make_settings, llng_issuer, insecure_accept_unverified_email=True))
    s = requests.Session()
    oidc_login(base, LLNG, "alice", "alice-pw", s)
    assert _roles(s, base) == []
    page, doc = _why(s, base)
    assert doc["identity"]["groups"] == ["aws-admins; aws-readonly"]
    assert "The `groups` claim is one string containing `;`" in _warnings_section(page)
    assert 'set groups_delimiter: ";"' in _warnings_section(page)
    assert _login_warnings(bridge_logs) == [doc["idp_warnings"]]
    bob = requests.Session()
    oidc_login(base, LLNG, "bob", "bob-pw", bob)
    assert _roles(bob, base) == ["ReadOnly"] and len(_login_warnings(bridge_logs)) == 1


def test_reverify_reads_userinfo_too_so_the_roles_survive_the_recheck(llng_issuer, bridge_port) -> None:
    """A refreshed ID token from such an IdP has no claims either: the re-check reads userinfo as the
    sign-in did, or the user would lose every group at the first re-check."""
    from bridge.upstream.base import ReverifyOk
    from bridge.upstream.oidc import OidcConnector
    from bridge.upstream.oidc_settings import OidcConnectorSettings
    from tests.integration.test_oidc_reverify import sign_in

    cfg = OidcConnectorSettings(id=LLNG, type="oidc", issuer=llng_issuer, client_id="bridge",
                                client_secret="bridge-secret", groups_delimiter=";",
                                insecure_accept_unverified_email=True, request_offline_access=True)
    conn = OidcConnector(cfg)
    identity = sign_in(conn, f"http://127.0.0.1:{bridge_port}/callback/{LLNG}", "alice", "alice-pw")
    assert identity.groups == ("aws-admins", "aws-readonly") and identity.upstream is not None
    assert identity.upstream["refresh_token"]
    result = conn.reverify(identity.upstream)
    assert isinstance(result, ReverifyOk) and result.identity is not None
    assert result.identity.groups == ("aws-admins", "aws-readonly") and result.identity.email == "alice@example.com"
    assert result.identity.warnings == ()


def test_a_claim_the_idp_does_not_send_is_named(live_bridge, make_settings, oidc_issuer, bridge_logs) -> None:
    """groups_claim names a claim the IdP does not have: the page says so, and which claim it does send."""
    base = live_bridge(make_settings(connectors=[{"id": "corp", "type": "oidc", "issuer": oidc_issuer,
                                                  "client_id": "bridge", "client_secret": "bridge-secret",
                                                  "groups_claim": "roles"}], mapping={"rules": RULES}))
    s = requests.Session()
    oidc_login(base, "corp", "alice", "alice-pw", s)
    assert _roles(s, base) == []
    section = _warnings_section(_why(s, base)[0])
    assert "The IdP sent no `roles` claim in the ID token or at userinfo" in section
    assert "it sends `groups`: set groups_claim: groups" in section
    assert len(_login_warnings(bridge_logs)) == 1


# ---- 14. SP metadata validUntil; startup warnings once per server --------------------------------


@pytest.mark.parametrize("days", [None, 365])
def test_sp_metadata_does_not_expire_two_days_after_import(live_bridge, make_settings, saml_idp,
                                                           days: int | None) -> None:
    extra = {} if days is None else {"sp_metadata_valid_days": days}
    base = live_bridge(make_settings(connectors=[_saml_connector(saml_idp, **extra)]))
    root = etree.fromstring(requests.get(f"{base}/sp/{CONNECTOR}/metadata.xml", timeout=10).content)
    assert root.get("entityID") == f"{base}/sp/{CONNECTOR}/metadata.xml"
    if days is None:
        assert root.get("validUntil") is None
    else:
        until = calendar.timegm(time.strptime(root.get("validUntil"), "%Y-%m-%dT%H:%M:%SZ"))
        assert abs(until - (time.time() + days * 86400)) < 120


def test_startup_warnings_are_logged_once_by_bridge_serve(tmp_path, redis_url, keys_dir) -> None:
    """`bridge serve --workers 2`: each warning once (the master), not once per worker."""
    from bridge.runtime.localredis import free_port
    from tests.integration.test_web_hardening import _serve_config, served

    port = free_port()
    cfg = {**_serve_config(redis_url, keys_dir, {"bearer_token": "scrape-me"}, f"http://127.0.0.1:{port}"),
           "log_level": "INFO"}
    log = tmp_path / "serve.log"
    with served(tmp_path, cfg, f"127.0.0.1:{port}",
                lambda: log.read_text().count('"event": "app_started"') == 2, workers=2):
        lines = [json.loads(x) for x in log.read_text().splitlines() if '"event": "config_warning"' in x]
    messages = [x["message"] for x in lines]
    assert any("insecure_dev_login is on" in m for m in messages)
    assert len(messages) == len(set(messages)), messages
