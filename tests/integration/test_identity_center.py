"""IAM Identity Center's protocol served by the bridge, driven by real clients: botocore's ``sso-oidc``
and ``sso`` clients exactly as AWS CLI v2 drives them, then boto3's *own* SSO credential provider and
SSO token provider (refresh) in a separate process with nothing of ours in it, and the AWS SDK for
JavaScript v3 (tests/peers/sso_sdk.mjs) as a second, independent client. Errors are checked through
the SDK's exception classes."""

from __future__ import annotations

import base64
import hashlib
import json
import os
import re
import secrets
import subprocess
import sys
import threading
import time
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

import botocore.session
import pytest
import requests
from botocore import UNSIGNED
from botocore.config import Config

from tests.conftest import ACCOUNT, ROOT, free_port
from tests.integration.helpers import dev_login, portal_json

pytestmark = pytest.mark.integration
DEVICE_GRANT = "urn:ietf:params:oauth:grant-type:device_code"
WANT = f"arn:aws:sts::{ACCOUNT}:assumed-role/Admin/alice@example.com"
SESSION = "bridge"


def oidc_client(base: str) -> Any:
    """The sso-oidc client as AWS CLI v2 makes it: unsigned, its region, the endpoint overridden."""
    return botocore.session.get_session().create_client(
        "sso-oidc", region_name="us-east-1", endpoint_url=f"{base}/sso", config=Config(signature_version=UNSIGNED))


def portal_client(base: str) -> Any:
    return botocore.session.get_session().create_client(
        "sso", region_name="us-east-1", endpoint_url=f"{base}/sso", config=Config(signature_version=UNSIGNED))


def approve_device(s: requests.Session, base: str, user_code: str, decision: str = "approve") -> str:
    page = s.get(f"{base}/device", params={"user_code": user_code}, timeout=10)
    assert 'id="device-client">botocore-client-' in page.text, page.text[:2000]
    csrf = re.search(r'name="csrf_token" value="([^"]+)"', page.text)[1]  # type: ignore[index]
    return s.post(f"{base}/device", data={"csrf_token": csrf, "user_code": user_code, "decision": decision,
                                          "confirm": "yes"}, timeout=10).text


def register(oidc: Any, grants: list[str] | None = None, **kw: Any) -> dict[str, Any]:
    args: dict[str, Any] = {"clientName": f"botocore-client-{SESSION}", "clientType": "public",
                            "scopes": ["sso:account:access"], **kw}
    if grants is not None:
        args["grantTypes"] = grants
    return dict(oidc.register_client(**args))


def device_login(base: str, browser: requests.Session) -> dict[str, Any]:
    """`aws sso login --use-device-code` for an sso-session: register, start, approve, poll; returns the
    token cache entry the CLI writes (botocore's format)."""
    oidc = oidc_client(base)
    reg = register(oidc, [DEVICE_GRANT, "refresh_token"])
    start = oidc.start_device_authorization(clientId=reg["clientId"], clientSecret=reg["clientSecret"],
                                            startUrl=f"{base}/start/#/")
    assert start["verificationUri"] == f"{base}/device" and start["interval"] >= 1
    assert start["verificationUriComplete"].endswith(f"user_code={start['userCode']}")
    with pytest.raises(oidc.exceptions.AuthorizationPendingException):
        oidc.create_token(grantType=DEVICE_GRANT, deviceCode=start["deviceCode"], clientId=reg["clientId"],
                          clientSecret=reg["clientSecret"])
    assert "Approved" in approve_device(browser, base, start["userCode"])
    token = poll(oidc, reg, start)
    return cache_entry(base, reg, token)


def poll(oidc: Any, reg: dict[str, Any], start: dict[str, Any]) -> dict[str, Any]:
    interval = start["interval"]
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        time.sleep(interval)
        try:
            return dict(oidc.create_token(grantType=DEVICE_GRANT, deviceCode=start["deviceCode"],
                                          clientId=reg["clientId"], clientSecret=reg["clientSecret"]))
        except oidc.exceptions.AuthorizationPendingException:
            continue
        except oidc.exceptions.SlowDownException:
            interval += 5
    raise AssertionError("no token")


def iso(dt: datetime) -> str:
    return dt.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def cache_entry(base: str, reg: dict[str, Any], token: dict[str, Any]) -> dict[str, Any]:
    """What AWS CLI v2 writes to ~/.aws/sso/cache/<sha1 of the session name>.json."""
    entry = {"startUrl": base, "region": "us-east-1", "accessToken": token["accessToken"],
             "expiresAt": iso(datetime.now(UTC) + timedelta(seconds=token["expiresIn"])),
             "clientId": reg["clientId"], "clientSecret": reg["clientSecret"],
             "registrationExpiresAt": iso(datetime.fromtimestamp(reg["clientSecretExpiresAt"], UTC))}
    if "refreshToken" in token:
        entry["refreshToken"] = token["refreshToken"]
    return entry


@pytest.fixture
def bridge(live_bridge, make_settings) -> str:  # type: ignore[no-untyped-def]
    return str(live_bridge(make_settings(cli={"poll_interval": 1})))


@pytest.fixture
def home(tmp_path: Path, moto_url: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "XDG_", "BRIDGE_"))}
    env.update(HOME=str(tmp_path), AWS_EC2_METADATA_DISABLED="true",
               AWS_CONFIG_FILE=str(tmp_path / ".aws" / "config"),
               AWS_SHARED_CREDENTIALS_FILE=str(tmp_path / ".aws" / "credentials"))
    return env


def write_profile(home: dict[str, str], base: str, moto_url: str, role: str = "Admin") -> Path:
    """An sso-session profile; the endpoints in a ``services`` section, as docs/identity-center.md tells users."""
    cfg = Path(home["AWS_CONFIG_FILE"])
    cfg.parent.mkdir(parents=True, exist_ok=True)
    cfg.write_text(f"""[profile dev]
sso_session = {SESSION}
sso_account_id = {ACCOUNT}
sso_role_name = {role}
region = us-east-1
services = {SESSION}-endpoints

[sso-session {SESSION}]
sso_start_url = {base}
sso_region = us-east-1
sso_registration_scopes = sso:account:access

[services {SESSION}-endpoints]
sso =
  endpoint_url = {base}/sso
sso_oidc =
  endpoint_url = {base}/sso
sts =
  endpoint_url = {moto_url}
""")
    return cfg


def write_token(home: dict[str, str], entry: dict[str, Any]) -> Path:
    d = Path(home["HOME"]) / ".aws" / "sso" / "cache"
    d.mkdir(parents=True, exist_ok=True)
    path = d / f"{hashlib.sha1(SESSION.encode()).hexdigest()}.json"  # noqa: S324 - botocore's cache key
    path.write_text(json.dumps(entry))
    return path


# boto3 alone: its SSO credential provider (and SSO token provider) read the profile and the token cache.
BOTO3_CALLER = ("import boto3; print(boto3.Session(profile_name='dev').client('sts')"
                ".get_caller_identity()['Arn'])")


def boto3_caller(home: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-c", BOTO3_CALLER], env=home, capture_output=True, text=True,
                          timeout=60)


def test_device_code_login_then_boto3s_own_sso_provider_and_refresh(bridge, home, moto_url, strict_sts_peer,
                                                                    bridge_logs) -> None:
    base = bridge
    browser = dev_login(base, "alice")
    entry = device_login(base, browser)
    write_profile(home, base, moto_url)
    cache = write_token(home, entry)
    out = boto3_caller(home)
    assert out.returncode == 0 and out.stdout.strip() == WANT, out.stderr[-3000:]
    issued = bridge_logs.text.count('"credentials_issued"')
    # A second process: the same role again comes from the bridge's credential cache (no STS call).
    out = boto3_caller(home)
    assert out.returncode == 0 and out.stdout.strip() == WANT, out.stderr[-3000:]
    assert bridge_logs.text.count('"cached": true') >= 1 and bridge_logs.text.count('"credentials_issued"') > issued
    # The token is about to expire: botocore's SSO token provider refreshes it on its own.
    entry["expiresAt"] = iso(datetime.now(UTC) + timedelta(seconds=60))
    cache.write_text(json.dumps(entry))
    out = boto3_caller(home)
    assert out.returncode == 0 and out.stdout.strip() == WANT, out.stderr[-3000:]
    fresh = json.loads(cache.read_text())
    assert fresh["accessToken"] != entry["accessToken"] and fresh["refreshToken"] != entry["refreshToken"]
    assert fresh["clientId"] == entry["clientId"]
    sso = portal_client(base)
    with pytest.raises(sso.exceptions.UnauthorizedException):  # the refreshed-away token ended
        sso.list_accounts(accessToken=entry["accessToken"])
    oidc = oidc_client(base)
    with pytest.raises(oidc.exceptions.InvalidGrantException):  # refresh tokens are single use
        oidc.create_token(grantType="refresh_token", refreshToken=entry["refreshToken"],
                          clientId=entry["clientId"], clientSecret=entry["clientSecret"])
    # Signing out in the browser ends the token and its refresh token.
    csrf = portal_json(browser, base)["csrf_token"]
    browser.post(f"{base}/logout", data={"csrf_token": csrf}, timeout=10)
    with pytest.raises(sso.exceptions.UnauthorizedException):
        sso.list_accounts(accessToken=fresh["accessToken"])
    with pytest.raises(oidc.exceptions.InvalidGrantException):
        oidc.create_token(grantType="refresh_token", refreshToken=fresh["refreshToken"],
                          clientId=entry["clientId"], clientSecret=entry["clientSecret"])
    assert fresh["accessToken"] not in bridge_logs.text and fresh["refreshToken"] not in bridge_logs.text


def test_configure_sso_then_aws_sso_login_and_boto3s_own_provider(bridge, home, moto_url, strict_sts_peer,
                                                                  monkeypatch) -> None:
    """`bridge configure --sso` writes the config (into a file of the user's), the portal's AWS CLI page
    shows the same text, and with nothing else — no hand-written profile, no endpoint variables for
    sso/sso-oidc — the Identity Center login and boto3's own SSO provider use the written profiles."""
    import html

    from tests.integration.test_cli_login import BIN, cli_login

    base = bridge
    env = {**home, "PATH": f"{BIN}:{home.get('PATH', '')}"}
    cli_login(base, env)
    cfg = Path(env["AWS_CONFIG_FILE"])
    cfg.parent.mkdir(parents=True, exist_ok=True)
    mine = "# my settings\n[default]\nregion = eu-west-1\n\n[profile dev]\nregion = us-west-2\n"
    cfg.write_text(mine)
    r = subprocess.run([str(BIN / "bridge"), "configure", "--sso", "--url", base], env=env, capture_output=True,
                       text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    assert "added profile sandbox-Admin" in r.stdout and "added profile sandbox-ReadOnly" in r.stdout
    # the stand-in STS is named in the hint (a first command must not go to real AWS)
    assert r.stderr.strip().endswith(f"sts get-caller-identity --endpoint-url {strict_sts_peer.url}"), r.stderr
    written = cfg.read_text()
    assert written.startswith(mine + "\n[sso-session bridge]\n")
    # the portal's page: the same text, generated by the same function from the same grants (signed in only)
    anonymous = requests.get(f"{base}/portal/aws-cli", allow_redirects=False, timeout=10)
    assert anonymous.status_code != 200 and "sso-config" not in anonymous.text
    browser = dev_login(base, "alice")
    page = browser.get(f"{base}/portal/aws-cli", timeout=10)
    assert page.status_code == 200
    snippet = html.unescape(re.search(r'<pre id="sso-config">(.*?)</pre>', page.text, re.S)[1])  # type: ignore[index]
    assert snippet == written[len(mine) + 1:]
    assert f"export AWS_ENDPOINT_URL_SSO_OIDC={base}/sso" in page.text and "sso:account:access" in page.text
    commands = html.unescape(re.search(r'<pre id="sso-commands">(.*?)</pre>', page.text, re.S)[1])  # type: ignore[index]
    assert commands.endswith(f"sts get-caller-identity --endpoint-url {strict_sts_peer.url}"), commands
    assert 'id="to-aws-cli"' in browser.get(f"{base}/portal", timeout=10).text
    # `aws sso login --use-device-code --sso-session bridge`, with the endpoints botocore reads from the file
    import boto3

    monkeypatch.setenv("AWS_CONFIG_FILE", str(cfg))
    for k in ("AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_SSO_OIDC", "AWS_PROFILE"):
        monkeypatch.delenv(k, raising=False)
    session = boto3.Session(profile_name="sandbox-Admin")
    oidc_url = session.client("sso-oidc", config=Config(signature_version=UNSIGNED)).meta.endpoint_url
    assert oidc_url == f"{base}/sso"
    entry = device_login(base, browser)
    write_token(home, entry)
    for profile, role in (("sandbox-Admin", "Admin"), ("sandbox-ReadOnly", "ReadOnly")):
        code = (f"import boto3; print(boto3.Session(profile_name={profile!r}).client('sts')"
                ".get_caller_identity()['Arn'])")
        out = subprocess.run([sys.executable, "-c", code], env={**env, "AWS_ENDPOINT_URL_STS": moto_url},
                             capture_output=True, text=True, timeout=60)
        assert out.returncode == 0, out.stderr[-3000:]
        assert out.stdout.strip() == f"arn:aws:sts::{ACCOUNT}:assumed-role/{role}/alice@example.com"


def test_portal_api_paging_and_errors(bridge, moto_url, strict_sts_peer) -> None:
    base = bridge
    token = device_login(base, dev_login(base, "alice"))["accessToken"]
    sso = portal_client(base)
    accounts = sso.list_accounts(accessToken=token)["accountList"]
    assert accounts == [{"accountId": ACCOUNT, "accountName": "Sandbox"}]
    page1 = sso.list_account_roles(accessToken=token, accountId=ACCOUNT, maxResults=1)
    assert len(page1["roleList"]) == 1 and page1["nextToken"]
    page2 = sso.list_account_roles(accessToken=token, accountId=ACCOUNT, maxResults=1, nextToken=page1["nextToken"])
    assert "nextToken" not in page2
    roles = [r["roleName"] for r in page1["roleList"] + page2["roleList"]]
    assert roles == ["Admin", "ReadOnly"]
    # botocore's own paginator walks the pages
    paged = [r["roleName"] for p in sso.get_paginator("list_account_roles").paginate(
        accessToken=token, accountId=ACCOUNT, PaginationConfig={"PageSize": 1}) for r in p["roleList"]]
    assert paged == roles
    creds = sso.get_role_credentials(accessToken=token, accountId=ACCOUNT, roleName="Admin")["roleCredentials"]
    assert creds["expiration"] > time.time() * 1000 + 600_000  # milliseconds, as IC answers
    from tests.integration.helpers import caller_arn

    assert caller_arn(moto_url, {"AccessKeyId": creds["accessKeyId"], "SecretAccessKey": creds["secretAccessKey"],
                                 "SessionToken": creds["sessionToken"]}) == WANT
    # errors, through botocore's exception classes
    with pytest.raises(sso.exceptions.InvalidRequestException):
        sso.list_accounts(accessToken=token, nextToken="bm90LWEtdG9rZW4")
    with pytest.raises(sso.exceptions.ResourceNotFoundException):
        sso.list_account_roles(accessToken=token, accountId="999999999999")
    with pytest.raises(sso.exceptions.ClientError) as forbidden:
        sso.get_role_credentials(accessToken=token, accountId=ACCOUNT, roleName="Nope")
    assert forbidden.value.response["Error"]["Code"] == "ForbiddenException"
    assert forbidden.value.response["ResponseMetadata"]["HTTPStatusCode"] == 403
    with pytest.raises(sso.exceptions.UnauthorizedException):
        sso.list_accounts(accessToken="made-up")
    sso.logout(accessToken=token)
    with pytest.raises(sso.exceptions.UnauthorizedException):
        sso.get_role_credentials(accessToken=token, accountId=ACCOUNT, roleName="Admin")
    with pytest.raises(sso.exceptions.UnauthorizedException):
        sso.logout(accessToken=token)


def test_oidc_error_types(bridge, live_bridge, strict_sts_peer) -> None:
    base = bridge
    oidc = oidc_client(base)
    ex = oidc.exceptions
    with pytest.raises(ex.InvalidClientMetadataException):
        oidc.register_client(clientName="x", clientType="confidential")
    with pytest.raises(ex.UnsupportedGrantTypeException):
        register(oidc, ["password"])
    with pytest.raises(ex.InvalidScopeException):
        register(oidc, scopes=["codewhisperer:completions"])
    with pytest.raises(ex.InvalidRedirectUriException):
        register(oidc, ["authorization_code"], redirectUris=["https://evil.example/cb"])
    reg = register(oidc, [DEVICE_GRANT])
    cid, secret = reg["clientId"], reg["clientSecret"]
    with pytest.raises(ex.InvalidClientException):
        oidc.start_device_authorization(clientId=cid, clientSecret="wrong", startUrl=base)
    with pytest.raises(ex.InvalidRequestException):
        oidc.start_device_authorization(clientId=cid, clientSecret=secret, startUrl="https://elsewhere.example")
    start = oidc.start_device_authorization(clientId=cid, clientSecret=secret, startUrl=f"{base}/")
    args = {"grantType": DEVICE_GRANT, "deviceCode": start["deviceCode"], "clientId": cid, "clientSecret": secret}
    with pytest.raises(ex.AuthorizationPendingException):
        oidc.create_token(**args)
    with pytest.raises(ex.SlowDownException):
        oidc.create_token(**args)  # at once again: too fast
    with pytest.raises(ex.UnauthorizedClientException):  # not registered for refresh_token
        oidc.create_token(grantType="refresh_token", refreshToken="x", clientId=cid, clientSecret=secret)
    with pytest.raises(ex.UnsupportedGrantTypeException):
        oidc.create_token(grantType="password", clientId=cid, clientSecret=secret)
    with pytest.raises(ex.InvalidGrantException):
        oidc.create_token(**{**args, "deviceCode": "made-up"})
    s = dev_login(base, "alice")
    assert "Denied" in approve_device(s, base, start["userCode"], "deny")
    with pytest.raises(ex.AccessDeniedException):
        oidc.create_token(**args)
    # an expired device code
    start = oidc.start_device_authorization(clientId=cid, clientSecret=secret, startUrl=base)
    svc = live_bridge.app.extensions["bridge"]
    from bridge.storage import hash_id

    dkey = hash_id(start["deviceCode"])
    code = svc.store.get_device(dkey)
    from dataclasses import replace

    svc.store.put_device(dkey, replace(code, expires_at=int(time.time()) - 1), 300)
    with pytest.raises(ex.ExpiredTokenException):
        oidc.create_token(**{**args, "deviceCode": start["deviceCode"]})


# ---- the authorization code grant with PKCE, as AWS CLI v2 (>= 2.22) runs it --------------------


class Loopback:
    """The CLI's loopback redirect server: one request to /oauth/callback, its query kept."""

    def __init__(self) -> None:
        self.port = free_port()
        self.query: dict[str, list[str]] = {}
        outer = self

        class H(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802
                outer.query = parse_qs(urlsplit(self.path).query)
                self.send_response(200)
                self.end_headers()
                self.wfile.write(b"done")

            def log_message(self, *a: Any) -> None:
                pass

        self.srv = HTTPServer(("127.0.0.1", self.port), H)
        threading.Thread(target=self.srv.handle_request, daemon=True).start()

    @property
    def uri(self) -> str:
        return f"http://127.0.0.1:{self.port}/oauth/callback"


def test_authorization_code_with_pkce(bridge, home, moto_url, strict_sts_peer) -> None:
    base = bridge
    oidc = oidc_client(base)
    loop = Loopback()
    # CLI v2 registers the loopback URI without the port it will use (RFC 8252 §7.3)
    reg = register(oidc, ["authorization_code", "refresh_token"], redirectUris=["http://127.0.0.1/oauth/callback"],
                   issuerUrl=base)
    assert reg["authorizationEndpoint"] == f"{base}/sso/authorize"
    verifier = secrets.token_urlsafe(64)
    challenge = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=").decode()
    state = secrets.token_urlsafe(16)
    url = f"{oidc.meta.endpoint_url}/authorize?" + urlencode({
        "response_type": "code", "client_id": reg["clientId"], "redirect_uri": loop.uri, "state": state,
        "code_challenge_method": "S256", "scopes": "sso:account:access", "code_challenge": challenge})
    s = dev_login(base, "alice")
    page = s.get(url, timeout=10)
    assert 'id="device-client">botocore-client-' in page.text and 'id="device-confirm"' in page.text
    assert f"form-action 'self' http://127.0.0.1:{loop.port}" in page.headers["Content-Security-Policy"]
    csrf = re.search(r'name="csrf_token" value="([^"]+)"', page.text)[1]  # type: ignore[index]
    action = re.search(r'<form method="post" action="([^"]+)"', page.text)[1].replace("&amp;", "&")  # type: ignore[index]
    r = s.post(f"{base}{action}", data={"csrf_token": csrf, "decision": "approve"}, timeout=10)
    assert r.status_code == 400  # no tick, no code
    r = s.post(f"{base}{action}", data={"csrf_token": csrf, "decision": "approve", "confirm": "yes"}, timeout=10)
    assert r.status_code == 200 and loop.query["state"] == [state], r.text[:500]
    code = loop.query["code"][0]
    args = {"grantType": "authorization_code", "clientId": reg["clientId"], "clientSecret": reg["clientSecret"],
            "redirectUri": loop.uri, "code": code}
    with pytest.raises(oidc.exceptions.InvalidGrantException):
        oidc.create_token(**args, codeVerifier=secrets.token_urlsafe(64))  # wrong verifier: and the code is spent
    loop2 = Loopback()
    s.get(url.replace(str(loop.port), str(loop2.port)).replace(challenge, challenge), timeout=10)
    r = s.post(f"{base}{action.replace(str(loop.port), str(loop2.port))}",
               data={"csrf_token": csrf, "decision": "approve", "confirm": "yes"}, timeout=10)
    code = loop2.query["code"][0]
    token = oidc.create_token(**{**args, "code": code, "redirectUri": loop2.uri}, codeVerifier=verifier)
    assert token["refreshToken"] and token["tokenType"] == "Bearer"
    write_profile(home, base, moto_url, role="ReadOnly")
    write_token(home, cache_entry(base, reg, dict(token)))
    out = boto3_caller(home)
    assert out.returncode == 0 and out.stdout.strip().endswith(":assumed-role/ReadOnly/alice@example.com"), \
        out.stderr[-3000:]
    with pytest.raises(oidc.exceptions.InvalidGrantException) as e:  # single use: and a replay ends what it gave
        oidc.create_token(**{**args, "code": code, "redirectUri": loop2.uri}, codeVerifier=verifier)
    assert "revoked" in e.value.response["error_description"]
    sso = portal_client(base)
    with pytest.raises(sso.exceptions.UnauthorizedException):
        sso.list_accounts(accessToken=token["accessToken"])


def test_a_role_removed_from_the_user_is_forbidden_at_once(bridge, live_bridge, strict_sts_peer) -> None:
    base = bridge
    token = device_login(base, dev_login(base, "alice"))["accessToken"]
    sso = portal_client(base)
    assert sso.get_role_credentials(accessToken=token, accountId=ACCOUNT, roleName="ReadOnly")
    # alice leaves aws-readonly at the IdP: the stored identity changes, the next call is re-decided
    svc = live_bridge.app.extensions["bridge"]
    from dataclasses import replace

    from bridge.storage import hash_id

    doc = svc.device.token(token)
    rec = svc.store.get_session(doc.session)
    svc.store.save_session_hash(doc.session, replace(rec, identity=replace(rec.identity, groups=("aws-admins",))),
                                idle=3600)
    with pytest.raises(sso.exceptions.ClientError) as e:
        sso.get_role_credentials(accessToken=token, accountId=ACCOUNT, roleName="ReadOnly")
    assert e.value.response["Error"]["Code"] == "ForbiddenException"
    assert [r["roleName"] for r in sso.list_account_roles(accessToken=token, accountId=ACCOUNT)["roleList"]] == [
        "Admin"]
    assert hash_id(token) != token


# ---- the AWS SDK for JavaScript v3: a second, independent client ------------------------------------

PEERS = ROOT / "tests" / "peers"


def test_javascript_sdk_fromsso_reads_the_same_cache(bridge, home, moto_url, strict_sts_peer) -> None:
    if not (PEERS / "node_modules" / "@aws-sdk" / "credential-providers").is_dir():
        pytest.fail("npm @aws-sdk/credential-providers is not installed: run `npm ci` in tests/peers")
    base = bridge
    entry = device_login(base, dev_login(base, "alice"))
    write_profile(home, base, moto_url)
    write_token(home, entry)
    env = {**home, "AWS_PROFILE": "dev", "AWS_ENDPOINT_URL_SSO": f"{base}/sso",
           "AWS_ENDPOINT_URL_SSO_OIDC": f"{base}/sso", "STS_URL": moto_url}
    out = subprocess.run(["node", "sso_sdk.mjs"], cwd=PEERS, env=env, capture_output=True, text=True, timeout=90)
    assert out.returncode == 0, out.stderr[-3000:]
    doc = json.loads(out.stdout.strip().splitlines()[-1])
    assert doc["arn"] == WANT and doc["forbidden"] == "ForbiddenException"
    assert doc["unauthorized"] == "UnauthorizedException"
