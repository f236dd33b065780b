"""The token exchange (RFC 8693, bridge/core/exchange.py, bridge/web/exchange.py) on MemoryStore through the app's
test client: a real OIDC connector verifying ID tokens signed here (its JWKS preset: no network), a recording
STS at the seam. Every bad parameter gets its OAuth error JSON and issues nothing; CORS only for an app's
origins; the app's session policy and name go to STS; single-use tokens are refused a second time."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from flask.testing import FlaskClient
from joserfc import jwt
from joserfc.jwk import KeySet, RSAKey

from bridge.config import ConfigError, settings_from_dict
from bridge.core.exchange import AWS_CREDENTIALS, EXCHANGE_GRANT, ID_TOKEN
from bridge.domain.errors import InvalidIdToken
from bridge.domain.identity import Credentials, Identity
from bridge.keys.signing import generate_cache_key, generate_key, generate_saml_key
from bridge.runtime.app import create_app
from bridge.storage.memory import MemoryStore
from bridge.upstream.base import ConnectorPolicy, SubjectToken
from bridge.upstream.oidc import OidcConnector
from bridge.web.services import Services, build_services

IDP = "https://idp.example.com"
ORIGIN = "https://photos.example.com"
ACCOUNT = "123456789012"
PHOTOS = f"arn:aws:iam::{ACCOUNT}:role/Photos"
KEY = RSAKey.generate_key(2048, parameters={"kid": "k1"})
OTHER_KEY = RSAKey.generate_key(2048, parameters={"kid": "k1"})
POLICY = {"Version": "2012-10-17",
          "Statement": [{"Effect": "Allow", "Action": "s3:GetObject", "Resource": "arn:aws:s3:::photos/{subject}/*"}]}


class RecordingSts:
    """AssumeRoleWithWebIdentity at the seam: what the bridge asked for, credentials back."""

    def __init__(self) -> None:
        self.calls: list[dict[str, Any]] = []

    def assume_role_with_web_identity(self, *, role_arn: str, session_name: str, token: str, duration: int,
                                      policy: str | None = None, policy_arns: tuple[str, ...] = ()) -> Credentials:
        self.calls.append({"role_arn": role_arn, "session_name": session_name, "duration": duration, "policy": policy})
        return Credentials("ASIAEXCHANGE", "secret", "session-token", datetime.now(UTC) + timedelta(seconds=duration),
                           f"arn:aws:sts::{ACCOUNT}:assumed-role/Photos/{session_name}", role_arn, session_name,
                           "us-east-1")


def config(tmp_path: Path, **apps_overrides: Any) -> dict[str, Any]:
    keys = tmp_path / "keys"
    if not keys.exists():
        generate_key(keys)
        generate_saml_key(keys, bits=2048)
        generate_cache_key(keys)
    app = {"client_id": "photos", "name": "Photo album", "idp_audiences": {"corp": ["photos-spa"]},
           "origins": [ORIGIN], "grants": ["sandbox/Photos", f"{ACCOUNT}/Admin"], "session_policy": POLICY,
           "rate_limits": {"per_user_per_minute": 5},
           "dpop": "insecure_optional", **apps_overrides}  # bearer exchanges here; DPoP: tests/unit/test_dpop.py
    return {
        "base_url": "https://bridge.example.com", "secret_key": "test",
        "redis": {"url": "redis://127.0.0.1:1/0"},
        "issuer": {"url": "https://bridge.example.com", "keys_dir": str(keys)},
        "audit": {"sink": "file", "path": str(tmp_path / "audit.jsonl")},
        "connectors": [{"id": "corp", "type": "oidc", "issuer": IDP, "client_id": "bridge", "client_secret": "x"}],
        "mapping": {"accounts": {ACCOUNT: {"alias": "sandbox", "roles": {"Photos": {}, "Admin": {}, "ReadOnly": {}}}},
                    "rules": [
                        {"name": "photo-users", "match": {"group": "photo-users"},
                         "grants": [{"account": "sandbox", "role": "Photos", "session_name": "{email}"}]},
                        {"name": "readers", "match": {"group": "readers"},
                         "grants": [{"account": "sandbox", "role": "ReadOnly"}]},
                        {"name": "admins", "match": {"group": "admins"},
                         "grants": [{"account": "sandbox", "role": "Admin", "policy": POLICY}]}]},
        "apps": [app],
    }


@dataclass
class Env:
    svc: Services
    client: FlaskClient
    sts: RecordingSts
    audit: Path


def _build(raw: dict[str, Any], tmp_path: Path) -> Env:
    settings = settings_from_dict(raw)
    sts = RecordingSts()
    svc = build_services(settings, store=MemoryStore(), sts=sts)  # type: ignore[arg-type]
    corp = svc.connectors["corp"]
    assert isinstance(corp, OidcConnector)
    corp._meta, corp._meta_at = {"issuer": IDP, "jwks_uri": f"{IDP}/jwks"}, time.time()  # no network here
    corp._jwks, corp._jwks_at = KeySet([KEY]), time.time()
    return Env(svc, create_app(settings, services=svc).test_client(), sts, tmp_path / "audit.jsonl")


@pytest.fixture
def env(tmp_path: Path) -> Iterator[Env]:
    yield _build(config(tmp_path), tmp_path)


def id_token(key: RSAKey = KEY, **claims: Any) -> str:
    now = int(time.time())
    body = {"iss": IDP, "sub": "00ualice", "aud": "photos-spa", "iat": now, "exp": now + 300,
            "email": "alice@example.com", "email_verified": True, "groups": ["photo-users", "readers", "admins"],
            **claims}
    return jwt.encode({"alg": "RS256", "kid": "k1"}, {k: v for k, v in body.items() if v is not None}, key)


def form(**overrides: Any) -> dict[str, Any]:
    f = {"grant_type": EXCHANGE_GRANT, "client_id": "photos", "subject_token": id_token(),
         "subject_token_type": ID_TOKEN, "audience": "sandbox/Photos", **overrides}
    return {k: v for k, v in f.items() if v is not None}


def post(env: Env, data: Mapping[str, Any], origin: str | None = ORIGIN) -> Any:
    return env.client.post("/oauth/token", data=data, headers={"Origin": origin} if origin else {})


def audit_lines(env: Env) -> list[dict[str, Any]]:
    return [json.loads(line) for line in env.audit.read_text().splitlines()] if env.audit.exists() else []


def test_an_apps_id_token_becomes_scoped_credentials(env: Env) -> None:
    r = post(env, form())
    assert r.status_code == 200, r.get_json()
    body = r.get_json()
    assert body["issued_token_type"] == AWS_CREDENTIALS and body["token_type"] == "N_A"
    assert json.loads(body["access_token"]) == body["credentials"]
    assert body["credentials"]["AccessKeyId"] == "ASIAEXCHANGE" and 0 < body["expires_in"] <= 900
    assert r.headers["Access-Control-Allow-Origin"] == ORIGIN and "Origin" in r.headers["Vary"]
    assert r.headers["Cache-Control"] == "no-store" and "Access-Control-Allow-Credentials" not in r.headers
    (call,) = env.sts.calls
    assert call["role_arn"] == PHOTOS and call["duration"] == 900
    assert call["session_name"] == "photos.alice@example.com"  # the app's client id first
    assert json.loads(call["policy"])["Statement"][0]["Resource"] == "arn:aws:s3:::photos/00ualice/*"
    (record,) = [a for a in audit_lines(env) if a.get("type") == "credentials"]
    assert record["app"] == "photos" and record["outcome"] == "success" and record["role_arn"] == PHOTOS
    assert id_token() not in env.audit.read_text()


def test_a_grant_is_named_by_arn_or_id_too_and_a_mobile_app_sends_no_origin(env: Env) -> None:
    r = post(env, form(audience=None, resource=PHOTOS), origin=None)
    assert r.status_code == 200 and "Access-Control-Allow-Origin" not in r.headers
    gid = env.svc.access.decide(Identity("corp", "00ualice", IDP, groups=("photo-users",))).grants[0].id
    assert post(env, form(audience=gid)).status_code == 200


def test_a_disallowed_origin_gets_no_cors_headers_and_no_credentials(env: Env) -> None:
    r = post(env, form(), origin="https://evil.example.com")
    assert r.status_code == 400 and r.get_json()["error"] == "unauthorized_client"
    assert r.get_json()["error_code"] == "exchange_origin_refused"
    assert not [h for h in r.headers if h[0].startswith("Access-Control")] and env.sts.calls == []
    pre = env.client.options("/oauth/token", headers={"Origin": "https://evil.example.com",
                                                      "Access-Control-Request-Method": "POST"})
    assert pre.status_code == 204 and not [h for h in pre.headers if h[0].startswith("Access-Control")]


def test_the_preflight_of_an_apps_origin(env: Env) -> None:
    r = env.client.options("/oauth/token", headers={"Origin": ORIGIN, "Access-Control-Request-Method": "POST",
                                                    "Access-Control-Request-Headers": "content-type"})
    assert r.status_code == 204
    assert r.headers["Access-Control-Allow-Origin"] == ORIGIN and r.headers["Access-Control-Allow-Methods"] == "POST"
    assert r.headers["Access-Control-Allow-Headers"] == "Content-Type, DPoP"
    assert r.headers["Cache-Control"] == "no-store"


BAD_PARAMETERS = [
    ({"client_id": None}, "invalid_request", "client_id is missing"),
    ({"subject_token": None}, "invalid_request", "subject_token is missing"),
    ({"subject_token": "x" * 20_000}, "invalid_request", "longer than"),
    ({"subject_token_type": "urn:ietf:params:oauth:token-type:saml2"}, "invalid_request", "not served"),
    ({"subject_token_type": None}, "invalid_request", "subject_token_type is missing"),
    ({"requested_token_type": "urn:ietf:params:oauth:token-type:access_token"}, "invalid_request", "not served"),
    ({"client_id": ["photos", "other"]}, "invalid_request", "sent 2 times"),
    ({"scope": "s3"}, "invalid_scope", "scope is not used"),
    ({"actor_token": "t", "actor_token_type": ID_TOKEN}, "invalid_request", "delegation"),
    ({"resource": f"arn:aws:iam::{ACCOUNT}:role/Admin"}, "invalid_target", "different roles"),
    ({"audience": None}, "invalid_request", "audience (or resource) is missing"),
    ({"audience": " "}, "invalid_request", "audience (or resource) is missing"),
    ({"client_id": "nobody"}, "invalid_client", "unknown client_id"),
    ({"subject_token": "not-a-jwt"}, "invalid_grant", "not from an identity provider"),
    ({"subject_token": "a.b.c"}, "invalid_grant", "not from an identity provider"),
    ({"subject_token": lambda: id_token(iss="https://other-idp.example.com")}, "invalid_grant", "not from an identity"),
    ({"subject_token": lambda: id_token(aud="someone-else")}, "invalid_grant", "for another client"),
    ({"subject_token": lambda: id_token(aud="bridge")}, "invalid_grant", "for another client"),  # the bridge's own
    ({"subject_token": lambda: id_token(aud=["photos-spa", "x"])}, "invalid_grant", "azp"),
    ({"subject_token": lambda: id_token(exp=int(time.time()) - 3600)}, "invalid_grant", "has expired"),
    ({"subject_token": lambda: id_token(OTHER_KEY)}, "invalid_grant", "signature does not verify"),
    ({"subject_token": lambda: id_token(sub=None)}, "invalid_grant", "did not verify"),
    ({"subject_token": lambda: id_token(email_verified=False)}, "invalid_grant", "did not verify"),
    ({"subject_token": lambda: id_token(groups=["readers"])}, "invalid_target", "do not give this user"),
    ({"audience": "sandbox/ReadOnly"}, "invalid_target", "may not ask for that role"),
    ({"audience": "sandbox/Nothing"}, "invalid_target", "may not ask for that role"),
    ({"audience": f"{ACCOUNT}/Admin"}, "invalid_target", "its own session policy"),
    ({"grant_type": "password"}, "unsupported_grant_type", "device_code"),
]


@pytest.mark.parametrize(("change", "error", "says"), BAD_PARAMETERS, ids=[f"{i}-{b[1]}" for i, b in
                                                                          enumerate(BAD_PARAMETERS)])
def test_every_bad_parameter_is_a_clear_oauth_error_and_issues_nothing(env: Env, change: dict[str, Any], error: str,
                                                                      says: str) -> None:
    # Tokens are minted when the test runs, not at collection: a suite slower than their 5 minutes stays green.
    change = {k: v() if callable(v) else v for k, v in change.items()}
    r = post(env, form(**change))
    assert r.status_code == (401 if error == "invalid_client" else 400), r.get_json()
    body = r.get_json()
    assert body["error"] == error and says in body["error_description"], body
    assert r.headers["Cache-Control"] == "no-store" and env.sts.calls == []
    assert not [a for a in audit_lines(env) if a.get("type") == "credentials"]
    token = form(**change).get("subject_token")
    assert not isinstance(token, str) or token[:40] not in r.get_data(as_text=True)


def test_an_unrenderable_policy_is_refused(tmp_path: Path) -> None:
    policy = {"Statement": [{"Effect": "Allow", "Action": "s3:GetObject",
                            "Resource": "arn:aws:s3:::b/{claims.team}/*"}]}
    env = _build(config(tmp_path, session_policy=policy), tmp_path)
    r = post(env, form())
    assert r.status_code == 400 and r.get_json()["error_code"] == "exchange_policy_unrenderable"
    assert "{claims.team} has no value" in r.get_json()["error_description"] and env.sts.calls == []
    wild = post(env, form(subject_token=id_token(team="*")))
    assert wild.get_json()["error_code"] == "exchange_policy_unrenderable" and env.sts.calls == []


def test_per_user_rate_limit(env: Env) -> None:
    for _ in range(5):
        assert post(env, form()).status_code == 200
    r = post(env, form())
    assert r.status_code == 429 and r.get_json()["error"] == "slow_down" and int(r.headers["Retry-After"]) > 0
    assert post(env, form(subject_token=id_token(sub="00ubob"))).status_code == 200  # another user's budget
    assert len(env.sts.calls) == 6  # 15-minute credentials are within the cache's refresh window: each is new


class SingleUse:
    """A connector whose tokens may be exchanged once (what a workload connector says)."""

    id = name = "corp"
    type = "workload"
    allows_unsolicited = False
    policy = ConnectorPolicy()

    def __init__(self, jti: str | None) -> None:
        self.jti = jti

    def verify_subject_token(self, token: str, *, audiences: tuple[str, ...]) -> SubjectToken:
        if not token.startswith("good"):
            raise InvalidIdToken("nope")
        return SubjectToken(Identity("corp", "ci", IDP, email="ci@example.com", groups=("photo-users",)),
                            expires_at=int(time.time()) + 300, token_id=self.jti, single_use=True)


def test_a_single_use_token_is_refused_the_second_time(env: Env) -> None:
    env.svc.connectors["corp"] = SingleUse("jti-1")  # type: ignore[assignment]
    assert post(env, form(subject_token="good")).status_code == 200
    again = post(env, form(subject_token="good"))
    assert again.status_code == 400 and again.get_json()["error_code"] == "exchange_token_replayed"
    env.svc.connectors["corp"] = SingleUse(None)  # type: ignore[assignment]
    r = post(env, form(subject_token="good-without-jti"))
    assert r.get_json()["error_code"] == "exchange_token_no_jti" and len(env.sts.calls) == 1


def test_bad_apps_config_fails_listing_every_problem(tmp_path: Path) -> None:
    raw = config(tmp_path, idp_audiences={"nope": ["x"]}, origins=["https://a.example.com/", "*", "HTTPS://B.example"],
                 session_policy={"Statement": [{"Resource": "{match.x}"}]})
    raw["apps"].append({**raw["apps"][0], "origins": [], "session_policy": "not json"})
    with pytest.raises(ConfigError) as exc:
        settings_from_dict(raw)
    text = "\n".join(exc.value.problems)
    assert "apps[0].origins" in text and "no path" in text and "no wildcards" in text and "lower case" in text
    raw["apps"][0]["origins"] = []
    with pytest.raises(ConfigError) as exc:
        settings_from_dict(raw)
    text = "\n".join(exc.value.problems)
    for says in ("apps[0].idp_audiences: 'nope' is not a configured connector", "apps[1].client_id: 'photos' is used",
                 "apps[0].session_policy", "{match.", "apps[1].session_policy: not JSON"):
        assert says in text, text


def test_an_app_without_a_session_policy_or_grants_is_refused(tmp_path: Path) -> None:
    raw = config(tmp_path)
    del raw["apps"][0]["session_policy"]
    raw["apps"][0]["grants"] = []
    raw["apps"][0]["max_duration"] = 600
    with pytest.raises(ConfigError) as exc:
        settings_from_dict(raw)
    text = "\n".join(exc.value.problems)
    assert "session_policy" in text and "grants" in text and "max_duration" in text


class Counting(SingleUse):
    """Counts verifications; tokens are not single use (an app's ID token)."""

    def __init__(self) -> None:
        super().__init__("jti")
        self.verified = 0

    def verify_subject_token(self, token: str, *, audiences: tuple[str, ...]) -> SubjectToken:
        self.verified += 1
        st = super().verify_subject_token(token, audiences=audiences)
        return SubjectToken(st.identity, expires_at=st.expires_at, token_id=st.token_id, single_use=False)


def test_a_token_exchanged_again_within_a_minute_is_not_verified_again(env: Env) -> None:
    now = [time.time()]
    counting = Counting()
    env.svc.connectors["corp"] = counting  # type: ignore[assignment]
    env.svc.exchange.clock = lambda: now[0]
    for _ in range(3):
        assert post(env, form(subject_token="good")).status_code == 200
    assert counting.verified == 1
    now[0] += 61  # past VERIFIED_KEEP: verified again (and never past the token's own exp)
    assert post(env, form(subject_token="good")).status_code == 200 and counting.verified == 2
    assert post(env, form(subject_token="bad")).status_code == 400 and counting.verified == 3


@pytest.mark.parametrize("origin", ["null", "https://photos.example.com.evil.example", "http://photos.example.com",
                                    "https://PHOTOS.example.com"])
def test_origins_match_exactly(env: Env, origin: str) -> None:
    r = post(env, form(), origin=origin)
    assert r.status_code == 400 and r.get_json()["error_code"] == "exchange_origin_refused"
    assert "Access-Control-Allow-Origin" not in r.headers and env.sts.calls == []


def test_the_device_grant_is_still_served_and_gets_no_cors(env: Env) -> None:
    r = post(env, {"grant_type": "urn:ietf:params:oauth:grant-type:device_code", "client_id": "bridge-cli",
                   "device_code": "nope"})
    assert r.status_code == 400 and r.get_json()["error"] in ("invalid_grant", "expired_token", "invalid_client")
    assert "Access-Control-Allow-Origin" not in r.headers


def test_a_plain_http_origin_is_warned_at_startup_unless_loopback(tmp_path: Path) -> None:
    s = settings_from_dict(config(tmp_path, origins=["http://photos.example.com", "http://127.0.0.2:8080"]))
    warned = [w for w in s.warnings() if w.startswith("apps[0].origins")]
    assert len(warned) == 1 and "http://photos.example.com is plain http" in warned[0]


def test_an_app_naming_a_connector_that_cannot_exchange_fails_at_startup(tmp_path: Path) -> None:
    raw = config(tmp_path, idp_audiences={"corp": ["photos-spa"], "dev": ["x"]})
    raw["insecure_dev_login"] = True
    raw["connectors"].append({"id": "dev", "type": "dev", "users": [{"subject": "alice"}]})
    settings = settings_from_dict(raw)
    with pytest.raises(ConfigError) as exc:
        build_services(settings, store=MemoryStore(), sts=RecordingSts())  # type: ignore[arg-type]
    assert exc.value.problems == ["apps[0].idp_audiences: connector 'dev' cannot verify tokens for an exchange "
                                  "(only OIDC connectors can, not SAML or dev ones)"]


def test_the_same_token_again_gets_the_very_same_narrowed_grant_and_another_user_their_own(env: Env) -> None:
    ex = env.svc.exchange
    assert ex is not None
    seen: list[Any] = []
    grant_of = ex._grant

    def recording(*args: Any) -> Any:
        seen.append(grant_of(*args))
        return seen[-1]

    ex._grant = recording  # type: ignore[method-assign,assignment]
    token = id_token()
    for _ in range(3):
        assert post(env, form(subject_token=token)).status_code == 200
    assert seen[0] is seen[1] is seen[2]  # kept by its objects: the issuer's memos keyed by it hit
    bob = post(env, form(subject_token=id_token(sub="00ubob", email="bob@example.com")))
    assert bob.status_code == 200 and seen[-1] is not seen[0]
    assert seen[-1].policy is not None and "photos/00ubob/*" in seen[-1].policy
    assert seen[-1].session_name.startswith("photos") and "bob@example.com" in seen[-1].session_name
    # 15-minute credentials are inside the cache's refresh window: each exchange goes to STS, with its user's policy
    assert [json.loads(c["policy"])["Statement"][0]["Resource"] for c in env.sts.calls] == [
        "arn:aws:s3:::photos/00ualice/*"] * 3 + ["arn:aws:s3:::photos/00ubob/*"]
    assert [r["outcome"] for r in audit_lines(env) if r["type"] == "credentials"] == ["success"] * 4


def test_an_unrenderable_policy_is_refused_every_time_nothing_kept(tmp_path: Path) -> None:
    policy = {"Statement": [{"Effect": "Allow", "Action": "s3:GetObject",
                            "Resource": "arn:aws:s3:::b/{claims.team}/*"}]}
    env = _build(config(tmp_path, session_policy=policy), tmp_path)
    token = id_token()
    for _ in range(2):
        r = post(env, form(subject_token=token))
        assert r.status_code == 400 and r.get_json()["error_code"] == "exchange_policy_unrenderable"
    assert env.sts.calls == [] and env.svc.exchange is not None and env.svc.exchange._narrowed._kept._kept == {}
