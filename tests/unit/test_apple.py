"""Sign in with Apple (``preset: apple``): its settings, the minted client secret, its claim spellings, the
``user`` form field. The whole sign-in against a real OP is tests/integration/test_apple_login.py."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from joserfc import jws, jwt
from joserfc.jwk import ECKey

from bridge.config import OidcConnectorSettings, settings_from_dict
from bridge.domain.errors import ConfigError, EmailUnverified
from bridge.upstream.apple import (
    AppleConnector,
    ClientSecret,
    apple_bool,
    name_from_user_field,
    with_apple_booleans,
)
from bridge.upstream.apple_settings import APPLE_ISSUER, SECRET_LIFETIME, SECRET_RENEW_BEFORE, AppleSettings
from bridge.upstream.oidc import OidcConnector, check_email_verified, open_oidc


def p8(key: Any = None) -> str:
    key = key or ec.generate_private_key(ec.SECP256R1())
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption()).decode()


KEY = p8()
APPLE = {"team_id": "TEAM123456", "key_id": "KEY1234567", "private_key": KEY}


def apple(**kw: Any) -> OidcConnectorSettings:
    base: dict[str, Any] = {"id": "apple", "type": "oidc", "preset": "apple", "issuer": APPLE_ISSUER,
                            "client_id": "com.example.bridge", "apple": APPLE}
    return OidcConnectorSettings(**{**base, **kw})


def config(tmp_path: Path, connector: dict[str, Any]) -> Any:
    return settings_from_dict({"base_url": "https://bridge.example.com", "secret_key": "k",
                               "issuer": {"url": "https://bridge.example.com", "keys_dir": str(tmp_path)},
                               "connectors": [connector], "mapping": {"rules": []}}, source_dir=tmp_path)


# ---- settings ------------------------------------------------------------------------------------

def test_preset_apple_defaults_and_what_the_config_gives_wins() -> None:
    s = apple()
    assert s.scopes == ["openid", "email", "name"] and s.token_endpoint_auth_method == "client_secret_post"
    assert s.reverify_interval == 86400 and s.client_secret is None
    assert apple(scopes=["openid", "email"], reverify_interval=0).scopes == ["openid", "email"]
    plain = OidcConnectorSettings(id="x", type="oidc", issuer="https://idp.example", client_id="c")
    assert plain.preset == "generic" and plain.scopes == ["openid", "email", "profile", "groups"]
    assert "preset apple with issuer" in " ".join(apple(issuer="https://other.example").warnings())
    assert apple().warnings() == []


def test_the_p8_file_is_read_through_private_key_file(tmp_path: Path) -> None:
    (tmp_path / "AuthKey_KEY1234567.p8").write_text(KEY + "\n")
    s = config(tmp_path, {"id": "apple", "type": "oidc", "preset": "apple", "issuer": APPLE_ISSUER,
                          "client_id": "com.example.bridge",
                          "apple": {"team_id": "TEAM123456", "key_id": "KEY1234567",
                                    "private_key_file": "AuthKey_KEY1234567.p8"}})
    (c,) = s.connectors
    assert c.apple.private_key.get_secret_value() == KEY.rstrip("\n")
    assert KEY.splitlines()[1] not in repr(c) and KEY.splitlines()[1] not in str(s.model_dump())


@pytest.mark.parametrize(("change", "problem"), [
    ({"apple": None}, "preset: apple needs an apple section"),
    ({"client_secret": "s"}, "remove client_secret"),
    ({"token_endpoint_auth_method": "none"}, "cannot be none"),
    ({"preset": "generic"}, "the apple section is only for preset: apple"),
    ({"apple": {**APPLE, "team_id": "short"}}, "apple.team_id"),
    ({"apple": {**APPLE, "private_key": "not a key"}}, "is not a .p8 file"),
    ({"apple": {**APPLE, "private_key": "-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----"}},
     "does not hold a readable private key"),
    ({"apple": {**APPLE, "private_key": p8(rsa.generate_private_key(65537, 2048))}}, "not an EC P-256 key"),
    ({"apple": {**APPLE, "private_key": p8(ec.generate_private_key(ec.SECP384R1()))}}, "not an EC P-256 key"),
])
def test_bad_apple_settings_fail_at_startup_saying_what(tmp_path: Path, change: dict[str, Any], problem: str) -> None:
    raw = {"id": "apple", "type": "oidc", "preset": "apple", "issuer": APPLE_ISSUER, "client_id": "com.example.b",
           "apple": APPLE, **change}
    if raw["apple"] is None:
        del raw["apple"]
    with pytest.raises(ConfigError) as e:
        config(tmp_path, raw)
    text = "\n".join(e.value.problems)
    assert problem in text, text
    assert "BEGIN PRIVATE KEY" not in text and KEY.splitlines()[1] not in text  # never the key


def test_missing_p8_file_is_a_problem(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as e:
        config(tmp_path, {"id": "apple", "type": "oidc", "preset": "apple", "issuer": APPLE_ISSUER,
                          "client_id": "c", "apple": {"team_id": "TEAM123456", "key_id": "KEY1234567",
                                                      "private_key_file": "nope.p8"}})
    assert any("apple.private_key_file: cannot read" in p for p in e.value.problems), e.value.problems


def test_the_preset_opens_the_apple_connector() -> None:
    assert type(open_oidc(apple())) is AppleConnector
    assert type(open_oidc(OidcConnectorSettings(id="x", type="oidc", issuer="https://i.example",
                                                client_id="c"))) is OidcConnector
    assert AppleConnector.response_mode == "form_post" and OidcConnector.response_mode is None


# ---- the client secret ---------------------------------------------------------------------------

def test_client_secret_is_an_es256_jwt_with_apples_claims_cached_until_near_expiry() -> None:
    now = [1_700_000_000.0]
    secret = ClientSecret(AppleSettings(**APPLE), client_id="com.example.bridge", audience=APPLE_ISSUER,
                          clock=lambda: now[0])
    first = secret.value()
    public = ECKey.import_key(KEY).as_dict(private=False)
    token = jwt.decode(first, ECKey.import_key(public), algorithms=["ES256"])
    assert token.header == {"alg": "ES256", "kid": "KEY1234567", "typ": "JWT"} or \
        {k: token.header[k] for k in ("alg", "kid")} == {"alg": "ES256", "kid": "KEY1234567"}
    assert token.claims == {"iss": "TEAM123456", "sub": "com.example.bridge", "aud": APPLE_ISSUER,
                            "iat": 1_700_000_000, "exp": 1_700_000_000 + SECRET_LIFETIME}
    now[0] += SECRET_LIFETIME - SECRET_RENEW_BEFORE - 1
    assert secret.value() == first                      # reused while it has time left
    now[0] += 1
    second = secret.value()
    assert second != first and jwt.decode(second, ECKey.import_key(public)).claims["iat"] == int(now[0])
    assert KEY.splitlines()[1] not in repr(secret) and first not in repr(secret)


def test_client_secret_signed_by_another_key_does_not_verify() -> None:
    secret = ClientSecret(AppleSettings(**APPLE), client_id="c", audience=APPLE_ISSUER, clock=lambda: 1.0)
    other = ECKey.import_key(p8()).as_dict(private=False)
    with pytest.raises(Exception, match="signature"):
        jws.deserialize_compact(secret.value(), ECKey.import_key(other))


def test_the_connector_sends_the_minted_secret_with_client_secret_post() -> None:
    c = AppleConnector(apple(), clock=lambda: 1_700_000_000.0)
    client = c._client("https://bridge.example.com/callback/apple")
    assert client.client_secret == c.secret.value() and client.token_endpoint_auth_method == "client_secret_post"
    assert jwt.decode(client.client_secret, ECKey.import_key(KEY)).claims["sub"] == "com.example.bridge"


# ---- claims --------------------------------------------------------------------------------------

@pytest.mark.parametrize(("raw", "want"), [
    (True, True), (False, False), ("true", True), ("false", False),
    ("True", "True"), ("yes", "yes"), ("1", "1"), (1, 1), (None, None), (" true", " true"),
])
def test_apple_booleans_take_exactly_two_spellings(raw: Any, want: Any) -> None:
    got = apple_bool(raw)
    assert got == want and type(got) is type(want)


def test_string_booleans_pass_the_email_check_for_apple_only() -> None:
    claims = {"sub": "001", "email": "x@privaterelay.appleid.com", "email_verified": "true",
              "is_private_email": "true", "other": "true"}
    apple_claims = with_apple_booleans(claims)
    assert apple_claims == {**claims, "email_verified": True, "is_private_email": True}  # only those two
    check_email_verified(apple_claims, apple())
    generic = OidcConnectorSettings(id="corp", type="oidc", issuer="https://idp.example", client_id="c")
    with pytest.raises(EmailUnverified):
        check_email_verified(claims, generic)  # a string "true" elsewhere is refused, as before
    for bad in ("false", "True", "yes", 1):
        with pytest.raises(EmailUnverified):
            check_email_verified(with_apple_booleans({**claims, "email_verified": bad}), apple())


def test_private_relay_flag_is_a_claim_rules_can_match() -> None:
    c = AppleConnector(apple())
    ident = c._identity(with_apple_booleans({"iss": APPLE_ISSUER, "sub": "001.abc", "email_verified": "true",
                                             "email": "x@privaterelay.appleid.com", "is_private_email": "true"}))
    assert ident.claims["is_private_email"] is True and ident.email == "x@privaterelay.appleid.com"
    from bridge.mapping import load_mapping

    ms = load_mapping({"accounts": {"123456789012": {"roles": {"Relay": {}}}},
                       "rules": [{"name": "relay", "match": {"claim": "claims.is_private_email", "equals": "true"},
                                  "grants": [{"role_arn": "arn:aws:iam::123456789012:role/Relay"}]}]})
    from bridge.mapping import evaluate

    assert [g.role_arn for g in evaluate(ms, ident, default_audience="sts.amazonaws.com")] == [
        "arn:aws:iam::123456789012:role/Relay"]
    assert evaluate(ms, replace(ident, claims={**ident.claims, "is_private_email": False}),
                    default_audience="sts.amazonaws.com") == []


@pytest.mark.parametrize(("raw", "want"), [
    ('{"name": {"firstName": "Ada", "lastName": "Lovelace"}, "email": "x@y"}', "Ada Lovelace"),
    ('{"name": {"firstName": "Ada"}}', "Ada"),
    ('{"name": {"firstName": " Ada\\u0000\\n", "lastName": 7}}', "Ada"),
    ('{"email": "x@y"}', None), ('{"name": "Ada"}', None), ("[1]", None), ("not json", None), ("", None),
    (None, None), ('{"name": {"firstName": "' + "A" * 3000 + '"}}', None),
    ('{"name": {"firstName": "' + "A" * 300 + '"}}', "A" * 128),
])
def test_name_from_the_user_field(raw: str | None, want: str | None) -> None:
    assert name_from_user_field(raw) == want


def test_the_demo_apple_config_loads(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from bridge.config import load_settings

    (tmp_path / "AuthKey.p8").write_text(KEY)
    for k, v in {"APPLE_BASE_URL": "https://bridge.example.com", "APPLE_SERVICES_ID": "com.example.bridge",
                 "APPLE_TEAM_ID": "TEAM123456", "APPLE_KEY_ID": "KEY1234567",
                 "APPLE_KEY_FILE": str(tmp_path / "AuthKey.p8"), "DEMO_KEYS_DIR": str(tmp_path)}.items():
        monkeypatch.setenv(k, v)
    s = load_settings(Path(__file__).resolve().parents[2] / "config" / "demo-apple.yaml")
    (c,) = s.connectors
    assert c.preset == "apple" and c.apple.team_id == "TEAM123456" and c.scopes == ["openid", "email", "name"]
    monkeypatch.delenv("APPLE_KEY_FILE")
    with pytest.raises(ConfigError, match="APPLE_KEY_FILE is not set"):
        load_settings(Path(__file__).resolve().parents[2] / "config" / "demo-apple.yaml")


# ---- the token exchange ----------------------------------------------------------------------------

def test_an_apple_id_token_is_exchanged_and_its_string_booleans_arrive_as_booleans(tmp_path: Path) -> None:
    """An iOS app's Sign in with Apple token at POST /oauth/token: verified as any subject token, then Apple's
    "true"/"false" strings read as at sign-in; any other spelling is refused (the e-mail check), as at sign-in."""
    import time

    from joserfc.jwk import KeySet

    from bridge.runtime.app import create_app
    from bridge.storage.memory import MemoryStore
    from bridge.web.services import build_services
    from tests.unit.test_exchange import KEY as IDP_KEY
    from tests.unit.test_exchange import ORIGIN, RecordingSts, form
    from tests.unit.test_exchange import config as exchange_config

    raw = exchange_config(tmp_path, idp_audiences={"apple": ["com.example.photos"]})
    raw["connectors"] = [{"id": "apple", "type": "oidc", "preset": "apple", "issuer": APPLE_ISSUER,
                          "client_id": "com.example.bridge", "apple": APPLE}]
    raw["mapping"]["rules"].append({"name": "relay-users", "connectors": ["apple"],
                                    "match": {"claim": "claims.is_private_email", "equals": "true"},
                                    "grants": [{"account": "sandbox", "role": "Photos"}]})
    settings = settings_from_dict(raw)
    sts = RecordingSts()
    svc = build_services(settings, store=MemoryStore(), sts=sts)  # type: ignore[arg-type]
    c = svc.connectors["apple"]
    assert isinstance(c, AppleConnector)
    c._meta, c._meta_at = {"issuer": APPLE_ISSUER, "jwks_uri": f"{APPLE_ISSUER}/auth/keys"}, time.time()  # no network
    c._jwks, c._jwks_at = KeySet([IDP_KEY]), time.time()
    client = create_app(settings, services=svc).test_client()

    def apple_token(**claims: Any) -> str:
        now = int(time.time())
        body = {"iss": APPLE_ISSUER, "sub": "001234.abcdef.1234", "aud": "com.example.photos", "iat": now,
                "exp": now + 300, "email": "x7@privaterelay.appleid.com", "email_verified": "true",
                "is_private_email": "true", "auth_time": now, "nonce_supported": True, **claims}
        return jwt.encode({"alg": "RS256", "kid": "k1"}, body, IDP_KEY)

    subject = c.verify_subject_token(apple_token(), audiences=("com.example.photos",))
    assert subject.identity.email == "x7@privaterelay.appleid.com"  # vouched for: email_verified read as true
    assert subject.identity.claims["email_verified"] is True and subject.identity.claims["is_private_email"] is True
    assert c.verify_subject_token(apple_token(is_private_email="false"),
                                  audiences=("com.example.photos",)).identity.claims["is_private_email"] is False

    def post(token: str) -> Any:
        return client.post("/oauth/token", data=form(subject_token=token), headers={"Origin": ORIGIN})

    r = post(apple_token())
    assert r.status_code == 200, r.get_json()
    assert [call["role_arn"] for call in sts.calls] == ["arn:aws:iam::123456789012:role/Photos"]
    for bad in ("false", "True", "yes"):  # only the two spellings; the e-mail is then not vouched for
        r = post(apple_token(email_verified=bad))
        assert r.status_code == 400 and r.get_json()["error"] == "invalid_grant", r.get_json()
    assert len(sts.calls) == 1
