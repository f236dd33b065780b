"""The token exchange against real peers: npm oidc-provider issues a real ID token to a public app client
(code + PKCE), the bridge exchanges it for AWS credentials, the strict STS validates what the bridge minted (its
token, the app's session policy, the session name) and moto's GetCallerIdentity answers with the credentials."""

from __future__ import annotations

import base64
import hashlib
import json
import secrets
from collections.abc import Iterator
from typing import Any
from urllib.parse import parse_qs, urljoin, urlsplit

import pytest
import redis
import requests

from bridge.runtime.localredis import LocalRedis
from tests.conftest import ACCOUNT, OIDC_CONNECTOR, oidc_provider
from tests.dpop_proofs import ec_key, proof
from tests.integration.helpers import TestClock, caller_arn
from tests.integration.test_round_trips import round_trips

pytestmark = pytest.mark.integration
APP_CLIENT = "photos-spa"
APP_ORIGIN = "http://127.0.0.2:9"  # nothing listens there: the code is read from the redirect, not followed
APP_REDIRECT = f"{APP_ORIGIN}/callback"
EXCHANGE = "urn:ietf:params:oauth:grant-type:token-exchange"
ID_TOKEN = "urn:ietf:params:oauth:token-type:id_token"  # noqa: S105 - a token type
POLICY = {"Version": "2012-10-17", "Statement": [
    {"Effect": "Allow", "Action": "s3:GetObject", "Resource": "arn:aws:s3:::photos/{subject}/*"}]}


@pytest.fixture(scope="module")
def app_issuer(bridge_port: int) -> Iterator[str]:
    with oidc_provider({"REDIRECT_URIS": f"http://127.0.0.1:{bridge_port}/callback/{OIDC_CONNECTOR}",
                        "APP_CLIENT_ID": APP_CLIENT, "APP_REDIRECT_URIS": APP_REDIRECT}) as issuer:
        yield issuer


def app_id_token(issuer: str, user: str, password: str, scope: str = "openid email profile groups") -> str:
    """What a browser app does at the IdP: code + PKCE as a public client, then the token endpoint."""
    meta = requests.get(f"{issuer}/.well-known/openid-configuration", timeout=10).json()
    verifier = secrets.token_urlsafe(48)
    challenge = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=").decode()
    s = requests.Session()
    r = s.get(meta["authorization_endpoint"], timeout=10, params={
        "client_id": APP_CLIENT, "response_type": "code", "scope": scope,
        "redirect_uri": APP_REDIRECT, "code_challenge": challenge, "code_challenge_method": "S256",
        "state": secrets.token_urlsafe(16), "nonce": secrets.token_urlsafe(16)})
    action = r.text.split('action="', 1)[1].split('"', 1)[0]
    r = s.post(urljoin(r.url, action), data={"username": user, "password": password}, allow_redirects=False,
               timeout=10)
    for _ in range(10):
        location = urljoin(r.url, r.headers["location"])
        if location.startswith(APP_REDIRECT):
            break
        r = s.get(location, allow_redirects=False, timeout=10)
    code = parse_qs(urlsplit(location).query)["code"][0]
    tokens = s.post(meta["token_endpoint"], timeout=10, data={
        "grant_type": "authorization_code", "code": code, "redirect_uri": APP_REDIRECT, "client_id": APP_CLIENT,
        "code_verifier": verifier}).json()
    return str(tokens["id_token"])


@pytest.fixture
def bridge(live_bridge, make_settings, app_issuer):  # type: ignore[no-untyped-def]
    settings = make_settings(
        connectors=[{"id": OIDC_CONNECTOR, "type": "oidc", "issuer": app_issuer, "client_id": "bridge",
                     "client_secret": "bridge-secret"}],
        apps=[{"client_id": "photos", "idp_audiences": {OIDC_CONNECTOR: [APP_CLIENT]}, "origins": [APP_ORIGIN],
               "grants": ["sandbox/Admin"], "session_policy": POLICY}])
    return live_bridge(settings)


APP_KEY = ec_key()  # the app's DPoP key (its dpop is the default, required)


def exchange(base: str, token: str, *, dpop: str | None = "", **extra: Any) -> requests.Response:
    """The app's exchange, with a fresh DPoP proof of ``APP_KEY`` unless ``dpop`` is given (None: no header)."""
    dpop = proof(APP_KEY, f"{base}/oauth/token") if dpop == "" else dpop
    return requests.post(f"{base}/oauth/token", timeout=30, headers={
        "Origin": APP_ORIGIN, **({"DPoP": dpop} if dpop is not None else {})}, data={
        "grant_type": EXCHANGE, "client_id": "photos", "subject_token": token, "subject_token_type": ID_TOKEN,
        "audience": "sandbox/Admin", **extra})


def test_a_real_id_token_becomes_credentials_sts_accepts(bridge, app_issuer, strict_sts_peer, moto_url):  # type: ignore[no-untyped-def]
    token = app_id_token(app_issuer, "alice", "alice-pw")
    r = exchange(bridge, token)
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["issued_token_type"] == "urn:ietf:params:aws:token-type:credentials"
    assert r.headers["Access-Control-Allow-Origin"] == APP_ORIGIN and r.headers["Cache-Control"] == "no-store"
    (seen,) = [c for c in strict_sts_peer.seen if c.action == "AssumeRoleWithWebIdentity"]
    assert seen.problems == [] and seen.role_arn == f"arn:aws:iam::{ACCOUNT}:role/Admin"
    assert seen.params["RoleSessionName"] == "photos.alice@example.com" and seen.params["DurationSeconds"] == "900"
    policy = json.loads(seen.params["Policy"])
    assert policy["Statement"][0]["Resource"] == "arn:aws:s3:::photos/00ualice/*"
    assert caller_arn(moto_url, body["credentials"]) == \
        f"arn:aws:sts::{ACCOUNT}:assumed-role/Admin/photos.alice@example.com"


def test_a_user_without_the_role_and_a_token_for_the_bridge_itself_are_refused(bridge, app_issuer,  # type: ignore[no-untyped-def]
                                                                                strict_sts_peer):
    carol = exchange(bridge, app_id_token(app_issuer, "carol", "carol-pw"))
    assert carol.status_code == 400 and carol.json()["error"] == "invalid_target"
    assert carol.json()["error_code"] == "exchange_target_not_granted"
    forged = exchange(bridge, app_id_token(app_issuer, "alice", "alice-pw")[:-4] + "AAAA")
    assert forged.status_code == 400 and forged.json()["error_code"] == "exchange_token_invalid"
    assert not [c for c in strict_sts_peer.seen if c.action == "AssumeRoleWithWebIdentity"]


def nested_token(header: dict[str, Any], depth: int) -> str:
    """A compact JWT whose payload is ``[[[[…`` ``depth`` deep (no signature checked before it is read)."""
    def b64(raw: bytes) -> str:
        return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()

    return f"{b64(json.dumps(header).encode())}.{b64(b'[' * depth)}.{b64(b'sig')}"


def test_a_deeply_nested_payload_is_a_clear_oauth_error_not_a_500(bridge, app_issuer, strict_sts_peer):  # type: ignore[no-untyped-def]
    token = nested_token({"alg": "RS256", "kid": "k1"}, 10_000)  # within the 16,384 characters a token may have
    r = exchange(bridge, token)
    assert r.status_code == 400 and r.headers["Content-Type"].startswith("application/json"), r.text[:300]
    body = r.json()
    assert (body["error"], body["error_code"]) == ("invalid_grant", "exchange_token_invalid")
    assert "nested too deeply" in body["error_description"] and token[:40] not in r.text
    assert not [c for c in strict_sts_peer.seen if c.action == "AssumeRoleWithWebIdentity"]
    assert exchange(bridge, app_id_token(app_issuer, "alice", "alice-pw")).status_code == 200  # still serving


# -- what a sign-in checks, the exchange checks too: SCIM, mfa_max_age; rate limits a stranger cannot use up --------

SCIM_TOKEN = "scim-exchange-token-" + "x" * 32
SCIM_USER = "urn:ietf:params:scim:schemas:core:2.0:User"


def scim(base: str, method: str, path: str, body: Any = None) -> dict[str, Any]:
    r = requests.request(method, f"{base}/scim/v2{path}", data=None if body is None else json.dumps(body), timeout=10,
                         headers={"Authorization": f"Bearer {SCIM_TOKEN}", "Content-Type": "application/scim+json"})
    assert r.status_code in (200, 201), r.text
    return dict(r.json())


def app_bridge(live_bridge, make_settings, app_issuer, *, apps=None, step_up=None, **more):  # type: ignore[no-untyped-def]
    connector = {"id": OIDC_CONNECTOR, "type": "oidc", "issuer": app_issuer, "client_id": "bridge",
                 "client_secret": "bridge-secret", **({"step_up": step_up} if step_up else {})}
    app = {"client_id": "photos", "idp_audiences": {OIDC_CONNECTOR: [APP_CLIENT]}, "origins": [APP_ORIGIN],
           "grants": ["sandbox/Admin"], "session_policy": POLICY, **(apps or {})}
    return live_bridge(make_settings(connectors=[connector], apps=[app], **more))


def sts_calls(strict_sts_peer) -> int:  # type: ignore[no-untyped-def]
    return len([c for c in strict_sts_peer.seen if c.action == "AssumeRoleWithWebIdentity"])


def test_scim_deactivation_refuses_the_exchange_and_scims_groups_decide(live_bridge, make_settings, app_issuer,  # type: ignore[no-untyped-def]
                                                                        strict_sts_peer, tmp_path):
    token_file = tmp_path / "scim-token"
    token_file.write_text(SCIM_TOKEN)
    base = app_bridge(live_bridge, make_settings, app_issuer, scim={"token_file": str(token_file)})
    alice_token = app_id_token(app_issuer, "alice", "alice-pw")
    carol_token = app_id_token(app_issuer, "carol", "carol-pw")
    alice = scim(base, "POST", "/Users", {"schemas": [SCIM_USER], "userName": "alice@example.com", "active": False})
    r = exchange(base, alice_token)  # a valid ID token of a user SCIM deactivated
    assert r.status_code == 403, r.text
    assert r.json()["error"] == "invalid_grant" and r.json()["error_code"] == "exchange_deprovisioned"
    assert "credentials" not in r.json() and sts_calls(strict_sts_peer) == 0
    # carol: no groups at the IdP; SCIM puts her (and alice, reactivated) into aws-admins — the Admin rule
    carol = scim(base, "POST", "/Users", {"schemas": [SCIM_USER], "userName": "carol@example.com"})
    scim(base, "PATCH", f"/Users/{alice['id']}", {"schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"],
                                                  "Operations": [{"op": "replace", "path": "active", "value": True}]})
    members = [{"value": carol["id"]}, {"value": alice["id"]}]
    scim(base, "POST", "/Groups", {"schemas": ["urn:ietf:params:scim:schemas:core:2.0:Group"],
                                   "displayName": "aws-admins", "members": members})
    assert exchange(base, carol_token).status_code == 200
    assert exchange(base, alice_token).status_code == 200 and sts_calls(strict_sts_peer) == 2


def test_a_token_without_the_email_scim_matches_on_is_refused_not_passed(  # type: ignore[no-untyped-def]
        live_bridge, make_settings, app_issuer, strict_sts_peer, tmp_path):
    token_file = tmp_path / "scim-token"
    token_file.write_text(SCIM_TOKEN)
    base = app_bridge(live_bridge, make_settings, app_issuer, scim={"token_file": str(token_file), "groups": "merge"})
    scim(base, "POST", "/Users", {"schemas": [SCIM_USER], "userName": "alice@example.com", "active": False})
    # the attack: alice, deactivated, asks the IdP for a token without her e-mail (scope=openid groups)
    bare = app_id_token(app_issuer, "alice", "alice-pw", scope="openid groups")
    r = exchange(base, bare)
    assert r.status_code == 403, r.text
    assert r.json()["error"] == "invalid_grant" and r.json()["error_code"] == "exchange_scim_unmatched"
    assert "credentials" not in r.json() and sts_calls(strict_sts_peer) == 0
    assert exchange(base, app_id_token(app_issuer, "alice", "alice-pw")).json()["error_code"] == \
        "exchange_deprovisioned"


def test_an_mfa_sign_in_older_than_mfa_max_age_no_longer_counts(live_bridge, make_settings, app_issuer,  # type: ignore[no-untyped-def]
                                                                 strict_sts_peer):
    rules = [{"name": "admins", "match": {"group": "aws-admins"},
              "grants": [{"role_arn": f"arn:aws:iam::{ACCOUNT}:role/Admin", "mfa_required": True}]}]
    base = app_bridge(live_bridge, make_settings, app_issuer, step_up={"mfa_max_age": 600},
                      mapping={"accounts": {ACCOUNT: {"alias": "sandbox", "roles": {"Admin": {}}}}, "rules": rules})
    clock = TestClock()
    live_bridge.app.extensions["bridge"].exchange.clock = clock
    token = app_id_token(app_issuer, "alice", "alice-pw")  # amr [pwd, mfa]: MFA now
    assert exchange(base, token).status_code == 200
    clock.advance(601)  # the ID token still valid; its MFA sign-in now older than mfa_max_age
    r = exchange(base, token, dpop=proof(APP_KEY, f"{base}/oauth/token", iat=clock()))  # a proof of the app's now
    assert r.status_code == 400 and r.json()["error_code"] == "exchange_mfa_required"
    assert sts_calls(strict_sts_peer) == 1


def test_garbage_tokens_use_only_their_addresss_budget(live_bridge, make_settings, app_issuer,  # type: ignore[no-untyped-def]
                                                       strict_sts_peer):
    base = app_bridge(live_bridge, make_settings, app_issuer, apps={"rate_limits": {"per_app_per_minute": 2}},
                      rate_limits={"exchange_per_minute": 6})
    token = app_id_token(app_issuer, "alice", "alice-pw")
    forged = token[:-4] + "AAAA"
    for _ in range(3):  # anyone's garbage: refused at verification, the app's budget untouched (Redis)
        assert exchange(base, forged).json()["error_code"] == "exchange_token_invalid"
    assert [exchange(base, token).status_code for _ in range(3)] == [200, 200, 429]  # the app's 2, once verified
    r = exchange(base, token)  # the seventh from this address: refused before anything is verified
    assert r.status_code == 429 and r.json()["error_code"] == "exchange_rate_limited" and r.headers["Retry-After"]
    assert sts_calls(strict_sts_peer) <= 2


@pytest.fixture
def own_redis(tmp_path):  # type: ignore[no-untyped-def]
    with LocalRedis(tmp_path / "redis") as rd:
        yield rd


def test_a_cached_exchange_is_one_redis_round_trip(live_bridge, make_settings, app_issuer, strict_sts_peer,  # type: ignore[no-untyped-def]
                                                   own_redis):
    # the bearer exchange (dpop: insecure_off): with DPoP, each proof's jti is one more round trip (a write, SET NX)
    base = app_bridge(live_bridge, make_settings, app_issuer, apps={"max_duration": 3600, "dpop": "insecure_off"},
                      redis={"url": own_redis.url, "key_prefix": "xrt:"})  # 1 h: beyond the refresh window
    token = app_id_token(app_issuer, "alice", "alice-pw")
    first = exchange(base, token, dpop=None).json()["credentials"]  # verified, minted, cached
    r = redis.Redis.from_url(own_redis.url)

    def cached() -> None:  # verified a moment ago: address, app and user counted with the cache read, at once
        assert exchange(base, token, dpop=None).json()["credentials"] == first

    def garbage() -> None:  # not verified yet, and never: only the address counted
        assert exchange(base, token[:-4] + "AAAA", dpop=None).json()["error_code"] == "exchange_token_invalid"

    assert round_trips(r, cached, 10) == 1
    assert round_trips(r, garbage, 5) == 1
    assert sts_calls(strict_sts_peer) == 1


def test_one_users_valid_token_cannot_lock_the_app_out(live_bridge, make_settings, app_issuer,  # type: ignore[no-untyped-def]
                                                       strict_sts_peer, own_redis):
    base = app_bridge(live_bridge, make_settings, app_issuer, redis={"url": own_redis.url, "key_prefix": "xrl:"},
                      apps={"rate_limits": {"per_app_per_minute": 3, "per_user_per_minute": 2}})
    token = app_id_token(app_issuer, "alice", "alice-pw")
    assert [exchange(base, token).status_code for _ in range(8)] == [200, 200] + [429] * 6
    r = redis.Redis.from_url(own_redis.url)
    (app_key,) = r.keys("xrl:rl:{exchange}:app:photos:*")  # the user's bucket decided first: the app's untouched
    assert int(r.get(app_key) or 0) == 2
    other = exchange(base, app_id_token(app_issuer, "dave", "dave-pw"))  # another user of the app still gets in
    assert other.status_code == 200, other.text
    assert sts_calls(strict_sts_peer) == 3
