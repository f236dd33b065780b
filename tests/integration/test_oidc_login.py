"""The walking skeleton end to end: real OIDC provider → bridge → strict STS → moto → boto3."""

from __future__ import annotations

import base64
import configparser
import html
import json
import os
import re
import secrets
import subprocess
import sys
from pathlib import Path

import boto3
import pytest
import requests

from tests.conftest import ACCOUNT, OIDC_CONNECTOR, RULES
from tests.integration.helpers import caller_arn, dev_login, grant_id, oidc_login, portal_json, redis_keys_holding

pytestmark = pytest.mark.integration


@pytest.fixture
def corp_settings(make_settings, oidc_issuer):  # type: ignore[no-untyped-def]
    return make_settings(connectors=[{"id": OIDC_CONNECTOR, "type": "oidc", "name": "Corp SSO",
                                      "issuer": oidc_issuer, "client_id": "bridge",
                                      "client_secret": "bridge-secret"}])


def _pre(page: str, element_id: str) -> str:
    m = re.search(rf'<pre id="{element_id}">(.*?)</pre>', page, re.S)
    assert m, f"no #{element_id} on the page"
    return html.unescape(m[1])


def test_oidc_login_to_working_credentials(live_bridge, corp_settings, strict_sts_peer, moto_url, tmp_path):
    base = live_bridge(corp_settings)
    s = requests.Session()
    r = oidc_login(base, OIDC_CONNECTOR, "alice", "alice-pw", session=s)
    assert r.status_code == 200 and r.url == f"{base}/portal"
    assert "Administrator" in r.text and "Read-only" in r.text and ACCOUNT in r.text
    portal = portal_json(s, base)
    assert portal["identity"] == {"email": "alice@example.com", "name": "Alice Example", "mfa": True,
                                  "connector": OIDC_CONNECTOR}

    page = s.post(f"{base}/credentials/{grant_id(portal, '/Admin')}",
                  data={"csrf_token": portal["csrf_token"], "duration": "7200"}, timeout=30)
    assert page.status_code == 200
    assert page.headers["Cache-Control"] == "no-store"
    want = f"arn:aws:sts::{ACCOUNT}:assumed-role/Admin/alice@example.com"

    # 1. The export lines, pasted into a real shell, give boto3 working credentials.
    exports = _pre(page.text, "fmt-env")
    script = (f"{exports}\n{sys.executable} -c \"import boto3; print(boto3.client('sts', "
              f"endpoint_url='{moto_url}').get_caller_identity()['Arn'])\"")
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    out = subprocess.run(["bash", "-c", script], capture_output=True, text=True, env=env, timeout=60)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip() == want

    # 2. The ~/.aws/credentials block works as a shared credentials file.
    ini = _pre(page.text, "fmt-ini")
    cp = configparser.ConfigParser()
    cp.read_string(ini)
    (profile,) = cp.sections()
    cred_file = tmp_path / "credentials"
    cred_file.write_text(ini)
    os.environ["AWS_SHARED_CREDENTIALS_FILE"] = str(cred_file)
    try:
        sess = boto3.Session(profile_name=profile)
        assert sess.client("sts", endpoint_url=moto_url, region_name="us-east-1").get_caller_identity()["Arn"] == want
    finally:
        del os.environ["AWS_SHARED_CREDENTIALS_FILE"]

    # 3. The credential_process JSON is what botocore's ProcessProvider accepts.
    doc = json.loads(_pre(page.text, "fmt-process"))
    assert doc["Version"] == 1 and isinstance(doc["Version"], int)
    proc_json = tmp_path / "creds.json"
    proc_json.write_text(json.dumps(doc))
    config = tmp_path / "config"
    config.write_text(f"[profile p]\ncredential_process = cat {proc_json}\n")
    out = subprocess.run([sys.executable, "-c", "import boto3; print(boto3.Session(profile_name='p').client("
                          f"'sts', endpoint_url='{moto_url}', region_name='us-east-1').get_caller_identity()['Arn'])"],
                         capture_output=True, text=True, timeout=60,
                         env={**env, "AWS_CONFIG_FILE": str(config), "AWS_SHARED_CREDENTIALS_FILE": "/dev/null"})
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip() == want

    # The token AWS received passed the strict validator and carried the rule's tags.
    (seen,) = strict_sts_peer.seen
    assert seen.problems == [] and seen.role_arn.endswith(":role/Admin")
    claims = json.loads(base64.urlsafe_b64decode(seen.token.split(".")[1] + "=="))
    assert claims["https://aws.amazon.com/tags"] == {
        "principal_tags": {"Email": ["alice@example.com"], "Department": ["Platform"], "bridge:mfa": ["true"]},
        "transitive_tag_keys": ["Department", "bridge:mfa"]}  # + the bridge's own (docs/step-up-mfa.md)
    assert claims["https://aws.amazon.com/source_identity"] == "alice@example.com"
    assert "alice" not in claims["sub"]  # pseudonymous, not PII


def test_json_api_credentials_and_role_without_grant(live_bridge, corp_settings, moto_url, strict_sts_peer):
    base = live_bridge(corp_settings)
    s = requests.Session()
    oidc_login(base, OIDC_CONNECTOR, "bob", "bob-pw", session=s)
    portal = portal_json(s, base)
    assert [g["label"] for g in portal["grants"]] == ["Read-only"]
    assert portal["identity"]["mfa"] is False
    r = s.post(f"{base}/credentials/{grant_id(portal, '/ReadOnly')}",
               headers={"Accept": "application/json", "X-CSRF-Token": portal["csrf_token"]}, timeout=30)
    assert r.status_code == 200
    creds = r.json()
    assert caller_arn(moto_url, creds) == f"arn:aws:sts::{ACCOUNT}:assumed-role/ReadOnly/bob@example.com"
    # Bob asks for the Admin role by its (guessable) grant id: refused, and STS never called.
    from bridge.domain.identity import grant_id_for

    calls = strict_sts_peer.calls
    r = s.post(f"{base}/credentials/{grant_id_for(f'arn:aws:iam::{ACCOUNT}:role/Admin')}",
               headers={"Accept": "application/json", "X-CSRF-Token": portal["csrf_token"]}, timeout=30)
    assert r.status_code == 403
    assert r.json()["error"] == "not_granted" and r.json()["request_id"]
    assert strict_sts_peer.calls == calls


def test_session_cookie_flags_and_rotation(live_bridge, corp_settings):
    base = live_bridge(corp_settings)
    s = requests.Session()
    r = oidc_login(base, OIDC_CONNECTOR, "alice", "alice-pw", session=s)
    set_cookie = r.history[-1].headers["Set-Cookie"]
    assert "HttpOnly" in set_cookie and "SameSite=Lax" in set_cookie and "Secure" not in set_cookie
    first = s.cookies.get("bridge_session", domain="127.0.0.1")
    assert first and len(first) >= 40
    # Signing in again rotates the id; the old id no longer opens a session.
    s2 = requests.Session()
    s2.cookies.set("bridge_session", first, domain="127.0.0.1")
    oidc_login(base, OIDC_CONNECTOR, "alice", "alice-pw", session=s2)
    second = s2.cookies.get("bridge_session", domain="127.0.0.1")
    assert second and second != first
    stale = requests.get(f"{base}/portal", cookies={"bridge_session": first},
                         headers={"Accept": "application/json"}, timeout=10)
    assert stale.status_code == 401


def test_sign_out_deletes_the_session(live_bridge, corp_settings, federation_stub, oidc_issuer):
    base = live_bridge(corp_settings)
    s = requests.Session()
    oidc_login(base, OIDC_CONNECTOR, "alice", "alice-pw", session=s)
    sid = s.cookies.get("bridge_session", domain="127.0.0.1")
    portal = portal_json(s, base)
    r = s.post(f"{base}/logout", data={"csrf_token": portal["csrf_token"]}, allow_redirects=False, timeout=10)
    assert r.status_code == 303 and r.headers["Location"] == f"/signed-out?connector={OIDC_CONNECTOR}"
    r = requests.get(f"{base}/portal", cookies={"bridge_session": sid}, allow_redirects=False, timeout=10)
    assert r.status_code == 302 and "/?return_to=/portal" in r.headers["Location"]
    # The signed-out page offers the AWS console sign-out and the IdP's RP-initiated logout.
    page = s.get(f"{base}/signed-out?connector={OIDC_CONNECTOR}", timeout=10)
    links = {i: html.unescape(h) for i, h in re.findall(r'id="([\w-]+)" href="([^"]+)"', page.text)}
    assert links["console-logout"] == f"{federation_stub.url}/oauth?Action=logout"
    assert requests.get(links["console-logout"], timeout=10).status_code == 200 and federation_stub.signed_out == 1
    up = links["upstream-logout"]
    assert up.startswith(oidc_issuer) and "client_id=bridge" in up
    assert f"post_logout_redirect_uri={requests.utils.quote(base + '/', safe='')}" in up
    assert s.get(up, timeout=10).status_code == 200  # the IdP's own sign-out confirmation


def test_discovery_and_jwks_for_iam(live_bridge, corp_settings):
    base = live_bridge(corp_settings)
    disc = requests.get(f"{base}/.well-known/openid-configuration", timeout=10).json()
    assert disc["issuer"] == "https://bridge.example.com"
    assert disc["jwks_uri"] == "https://bridge.example.com/.well-known/jwks.json"
    jwks = requests.get(f"{base}/.well-known/jwks.json", timeout=10).json()
    assert jwks["keys"] and all({"kty", "kid", "alg", "use"} <= set(k) for k in jwks["keys"])
    assert all("d" not in k and "p" not in k for k in jwks["keys"])  # never a private part


def test_return_to_survives_login_but_only_same_origin(live_bridge, corp_settings):
    base = live_bridge(corp_settings)
    r = oidc_login(base, OIDC_CONNECTOR, "alice", "alice-pw", return_to="/portal?from=wiki")
    assert r.url == f"{base}/portal?from=wiki"
    for evil in ("https://evil.example/", "//evil.example/x", "/\\evil.example", "javascript:alert(1)"):
        r = oidc_login(base, OIDC_CONNECTOR, "alice", "alice-pw", return_to=evil)
        assert r.url == f"{base}/portal", evil


def test_userinfo_merge(live_bridge, make_settings, oidc_issuer):
    settings = make_settings(connectors=[{"id": OIDC_CONNECTOR, "type": "oidc", "issuer": oidc_issuer,
                                          "client_id": "bridge", "client_secret": "bridge-secret",
                                          "use_userinfo": True}])
    base = live_bridge(settings)
    s = requests.Session()
    oidc_login(base, OIDC_CONNECTOR, "alice", "alice-pw", session=s)
    assert portal_json(s, base)["identity"]["email"] == "alice@example.com"


def test_example_config_documents_a_working_shape(tmp_path: Path) -> None:
    from bridge.config import load_settings

    root = Path(__file__).resolve().parents[2]
    s = load_settings(root / "config" / "bridge.example.yaml")
    assert s.connectors and s.mapping.rules


def test_oidc_passthrough_redeems_the_upstream_id_token(live_bridge, make_settings, oidc_issuer, strict_sts_peer,
                                                        moto_url, tmp_path) -> None:
    rules = [{"name": "direct", "group": "aws-admins", "role_arn": f"arn:aws:iam::{ACCOUNT}:role/Direct",
              "path": "passthrough"}]
    settings = make_settings(connectors=[{"id": OIDC_CONNECTOR, "type": "oidc", "issuer": oidc_issuer,
                                          "client_id": "bridge", "client_secret": "bridge-secret",
                                          "aws_passthrough": True}], mapping={"rules": rules})
    base = live_bridge(settings)
    jwks = requests.get(f"{oidc_issuer}/jwks", timeout=10).json()
    strict_sts_peer.register_oidc_provider(oidc_issuer, {"bridge"}, lambda: jwks, http_ok=True)
    s = requests.Session()
    oidc_login(base, OIDC_CONNECTOR, "alice", "alice-pw", session=s)
    portal = portal_json(s, base)
    r = s.post(f"{base}/credentials/{portal['grants'][0]['id']}",
               headers={"Accept": "application/json", "X-CSRF-Token": portal["csrf_token"]}, timeout=30)
    assert r.status_code == 200, r.text
    assert caller_arn(moto_url, r.json()) == f"arn:aws:sts::{ACCOUNT}:assumed-role/Direct/alice@example.com"
    (seen,) = strict_sts_peer.seen
    claims = json.loads(base64.urlsafe_b64decode(seen.token.split(".")[1] + "=="))
    assert claims["iss"] == oidc_issuer and claims["aud"] == "bridge"  # the IdP's own token, not one we minted
    svc = live_bridge.app.extensions["bridge"]
    assert redis_keys_holding(svc.store, seen.token) == []  # kept sealed beside the session, nowhere in clear
    # Planted beside another session (a copy of alice's sealed artifact under bob's): it does not open there.
    other = f"u{secrets.token_hex(4)}"
    r = requests.post(f"{oidc_issuer}/test-admin/users/{other}", timeout=5, data=json.dumps(
        {"password": "pw", "groups": ["aws-admins"], "email": f"{other}@example.com", "email_verified": True}))
    assert r.status_code == 200, r.text
    bob = requests.Session()
    oidc_login(base, OIDC_CONNECTOR, other, "pw", session=bob)
    cookie = settings.session_cookie
    svc.store.put_passthrough(bob.cookies[cookie], svc.store.get_passthrough(s.cookies[cookie]), 600)
    bob_portal = portal_json(bob, base)
    r = bob.post(f"{base}/credentials/{bob_portal['grants'][0]['id']}",
                 headers={"Accept": "application/json", "X-CSRF-Token": bob_portal["csrf_token"]}, timeout=30)
    assert r.status_code == 400 and r.json()["error"] == "passthrough_expired", r.text
    assert len(strict_sts_peer.seen) == 1  # STS never saw alice's token on bob's behalf
    # What can be checked at sign-in is shown: time left (the token's exp), what AWS checks that we cannot.
    info = portal["passthrough"]
    assert info["kind"] == "oidc" and info["until"] == claims["exp"] and info["not_offered"] == []
    assert 0 < info["seconds_left"] <= claims["exp"] - claims["iat"] and not info["spent"]
    assert any("must be https with no port" in w for w in info["warnings"])  # the test IdP is http://127.0.0.1:port
    # `bridge verify` checks the upstream token as AWS would, against that issuer and client id.
    from click.testing import CliRunner

    from bridge.commands.cli import main

    token_file = tmp_path / "id_token"
    token_file.write_text(seen.token)
    r = CliRunner().invoke(main, ["verify", "--jwt", str(token_file), "--issuer", oidc_issuer, "--audience", "bridge"])
    assert r.exit_code == 1 and "https" in r.output and "signature" not in r.output, r.output
    r = CliRunner().invoke(main, ["verify", "--jwt", str(token_file), "--issuer", oidc_issuer, "--audience", "other"])
    assert r.exit_code == 1 and "4:" in r.output, r.output  # aud is not the registered client id


def test_passthrough_grant_is_never_offered_to_a_connector_without_passthrough(live_bridge, make_settings,
                                                                               oidc_issuer) -> None:
    """The dev connector brings no upstream token: its users are not offered a `path: passthrough` grant
    (withheld, saying why), while the OIDC pass-through connector's users are."""
    rules = [{"name": "direct", "match": {"group": "aws-admins"},
              "grants": [{"role_arn": f"arn:aws:iam::{ACCOUNT}:role/Direct", "path": "passthrough"}]},
             {"name": "admins", "match": {"group": "aws-admins"},
              "grants": [{"role_arn": f"arn:aws:iam::{ACCOUNT}:role/Admin"}]}]
    dev = {"id": "dev", "type": "dev", "users": [{"subject": "alice", "email": "alice@example.com",
                                                  "groups": ["aws-admins"]}]}
    oidc = {"id": OIDC_CONNECTOR, "type": "oidc", "issuer": oidc_issuer, "client_id": "bridge",
            "client_secret": "bridge-secret", "aws_passthrough": True}
    base = live_bridge(make_settings(connectors=[dev, oidc], mapping={"rules": rules}))
    s = dev_login(base, "alice")
    assert [g["role_arn"].rsplit("/", 1)[1] for g in portal_json(s, base)["grants"]] == ["Admin"]
    why = s.get(f"{base}/portal/why", headers={"Accept": "application/json"}, timeout=10).json()
    (w,) = why["withheld"]
    assert w["code"] == "no_passthrough" and "aws_passthrough" in w["reason"]
    s = requests.Session()
    oidc_login(base, OIDC_CONNECTOR, "alice", "alice-pw", session=s)
    assert sorted(g["role_arn"].rsplit("/", 1)[1] for g in portal_json(s, base)["grants"]) == ["Admin", "Direct"]


def test_groups_from_the_idp_drive_tags_in_the_minted_token(live_bridge, make_settings, oidc_issuer,
                                                           strict_sts_peer, moto_url):
    """One rule turns the IdP's groups into roles and session tags (captures, filters, a join over all
    groups); the token AWS receives carries them and passes the strict validator."""
    rules = [{"name": "levels", "match": {"claim": "groups", "regex": "aws-(?P<level>admins|readonly)"},
              "grants": [{"role_arn": f"arn:aws:iam::{ACCOUNT}:role/{{match.level|upper}}",
                          "session_name": "{email|local_part}-{match.level}",
                          "tags": {"Level": "{match.level}", "Groups": "{groups|join(/)}",
                                   "Dept": {"value": "{claims.department}", "required": True}},
                          "transitive_tags": ["Level"]}]}]
    settings = make_settings(connectors=[{"id": OIDC_CONNECTOR, "type": "oidc", "issuer": oidc_issuer,
                                          "client_id": "bridge", "client_secret": "bridge-secret",
                                          "keep_claims": ["department"]}],
                             mapping={"rules": rules})
    base = live_bridge(settings)
    s = requests.Session()
    oidc_login(base, OIDC_CONNECTOR, "alice", "alice-pw", session=s)
    portal = portal_json(s, base)
    assert sorted(g["role_arn"].rsplit("/", 1)[1] for g in portal["grants"]) == ["ADMINS", "READONLY"]
    r = s.post(f"{base}/credentials/{grant_id(portal, '/ADMINS')}",
               headers={"Accept": "application/json", "X-CSRF-Token": portal["csrf_token"]}, timeout=30)
    assert r.status_code == 200, r.text
    assert caller_arn(moto_url, r.json()) == f"arn:aws:sts::{ACCOUNT}:assumed-role/ADMINS/alice-admins"
    (seen,) = strict_sts_peer.seen
    assert seen.problems == []
    claims = json.loads(base64.urlsafe_b64decode(seen.token.split(".")[1] + "=="))
    assert claims["https://aws.amazon.com/tags"] == {
        "principal_tags": {"Level": ["admins"], "Groups": ["aws-admins/aws-readonly"], "Dept": ["Platform"],
                           "bridge:mfa": ["true"]},
        "transitive_tag_keys": ["Level", "bridge:mfa"]}
    # bob's department, "Finance & Ops", is sanitized for AWS (& is not allowed in a tag value)
    bob = requests.Session()
    oidc_login(base, OIDC_CONNECTOR, "bob", "bob-pw", session=bob)
    why = bob.get(f"{base}/portal/why", headers={"Accept": "application/json"}, timeout=10).json()
    (grant,) = why["grants"]
    assert grant["tags"]["Dept"] == "Finance - Ops" and grant["tags"]["Level"] == "readonly"
    assert "tag 'Dept': value from {claims.department} was sanitized" in why["rules"][0]["notes"]


# --------------------------------------------------------------------------- e-mail hygiene


def test_unverified_email_is_refused_with_a_clear_page(live_bridge, corp_settings, bridge_logs):
    """eve's IdP account has email_verified: false: no session, a page saying why and what to do."""
    base = live_bridge(corp_settings)
    s = requests.Session()
    r = oidc_login(base, OIDC_CONNECTOR, "eve", "eve-pw", session=s)
    assert r.status_code == 403 and r.url.startswith(f"{base}/callback/{OIDC_CONNECTOR}")
    assert 'data-code="email_unverified"' in r.text and '<code id="error-code">email_unverified</code>' in r.text
    assert "e-mail address is not verified" in r.text and "Verify your e-mail address" in r.text
    assert not any("bridge_session" in h.headers.get("Set-Cookie", "") for h in [*r.history, r])
    assert s.cookies.get("bridge_session") is None
    assert s.get(f"{base}/portal", headers={"Accept": "application/json"}, timeout=10).status_code == 401
    assert '"code": "email_unverified"' in bridge_logs.text and "eve@example.com" not in bridge_logs.text


def test_mixed_case_domain_is_normalised_and_denied_ignoring_case(live_bridge, make_settings, oidc_issuer):
    """dave's IdP spells his domain Contractor.Example.com: his e-mail comes out with the domain in lower
    case, and deny rules written with ignore_case hit him whichever spelling they look at."""
    deny = [{"name": "no-contractors", "match": {"claim": "email", "ends_with": "@contractor.example.com",
                                                 "ignore_case": True}, "deny": "all"},
            {"name": "no-contractors-raw", "match": {"claim": "claims.email", "ends_with": "@CONTRACTOR.example.com",
                                                     "ignore_case": True}, "deny": "all"}]
    settings = make_settings(connectors=[{"id": OIDC_CONNECTOR, "type": "oidc", "issuer": oidc_issuer,
                                          "client_id": "bridge", "client_secret": "bridge-secret"}],
                             mapping={"rules": [*RULES, *deny]})
    base = live_bridge(settings)
    s = requests.Session()
    oidc_login(base, OIDC_CONNECTOR, "dave", "dave-pw", session=s)
    portal = portal_json(s, base)
    assert portal["identity"]["email"] == "Dave@contractor.example.com"
    assert portal["grants"] == []
    why = s.get(f"{base}/portal/why", headers={"Accept": "application/json"}, timeout=10).json()
    outcomes = {r["rule"]: r for r in why["rules"]}
    assert outcomes["no-contractors"]["outcome"] == outcomes["no-contractors-raw"]["outcome"] == "deny"
    assert "(ignoring case)" in outcomes["no-contractors-raw"]["reason"]
    alice = requests.Session()
    oidc_login(base, OIDC_CONNECTOR, "alice", "alice-pw", session=alice)
    assert len(portal_json(alice, base)["grants"]) == 2  # the deny is about dave's domain, not everyone


def test_insecure_opt_out_signs_in_unverified_email_with_a_startup_warning(live_bridge, make_settings, oidc_issuer,
                                                                          bridge_logs):
    settings = make_settings(connectors=[{"id": OIDC_CONNECTOR, "type": "oidc", "issuer": oidc_issuer,
                                          "client_id": "bridge", "client_secret": "bridge-secret",
                                          "insecure_accept_unverified_email": True}])
    base = live_bridge(settings)
    warnings = [json.loads(line) for line in bridge_logs.lines if "config_warning" in line]
    assert any("insecure_accept_unverified_email" in w["message"] and w["level"] == "warning" for w in warnings), \
        warnings
    s = requests.Session()
    r = oidc_login(base, OIDC_CONNECTOR, "eve", "eve-pw", session=s)
    assert r.status_code == 200 and r.url == f"{base}/portal"
    assert portal_json(s, base)["identity"]["email"] == "eve@example.com"
