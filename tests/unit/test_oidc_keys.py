"""The OIDC connector's sign-in path (``verify_id_token``, bridge/upstream/oidc.py) and an unknown ``kid``: the
keys are fetched again (the IdP rotated), at most once a minute (``KidRefetchGuard``, shared with the token
exchange): a flood of ID tokens naming made-up keys costs the IdP one fetch a minute, not one each. An in-process
IdP (discovery + JWKS, counting the fetches) and an injected clock: no network, no sleeping."""

from __future__ import annotations

from typing import Any

import pytest
from joserfc import jwt
from joserfc.jwk import KeySet, RSAKey

from bridge.domain.errors import InvalidIdToken
from bridge.upstream.keyguard import MIN_REFRESH
from bridge.upstream.oidc import OidcConnector
from bridge.upstream.oidc_settings import OidcConnectorSettings
from tests.clock import Clock

ISSUER = "https://idp.example.com"
NONCE = "n-0S6_WzA2Mj"


class Answer:
    def __init__(self, doc: dict[str, Any]) -> None:
        self.doc = doc

    def raise_for_status(self) -> None:
        return None

    def json(self) -> dict[str, Any]:
        return self.doc


class Idp:
    """What ``OidcConnector.http`` is asked: the discovery document and the JWKS (fetches counted)."""

    def __init__(self) -> None:
        self.keys = [RSAKey.generate_key(2048, parameters={"kid": "k-1"})]
        self.jwks_fetches = 0

    def get(self, url: str, timeout: float) -> Answer:
        if url == f"{ISSUER}/.well-known/openid-configuration":
            return Answer({"issuer": ISSUER, "jwks_uri": f"{ISSUER}/jwks", "authorization_endpoint": f"{ISSUER}/a",
                           "token_endpoint": f"{ISSUER}/t"})
        assert url == f"{ISSUER}/jwks", url
        self.jwks_fetches += 1
        return Answer(KeySet(list(self.keys)).as_dict(private=False))  # type: ignore[arg-type]


def id_token(key: RSAKey, clock: Clock, **claims: Any) -> str:
    now = int(clock())
    return jwt.encode({"alg": "RS256", "kid": key.kid}, {"iss": ISSUER, "sub": "00ualice", "aud": "bridge",
                                                          "iat": now, "exp": now + 300, "nonce": NONCE, **claims}, key)


@pytest.fixture
def clock() -> Clock:
    return Clock(1_800_000_000.0)


@pytest.fixture
def idp() -> Idp:
    return Idp()


def connector(idp: Idp, clock: Clock) -> OidcConnector:
    cfg = OidcConnectorSettings(id="corp", type="oidc", issuer=ISSUER, client_id="bridge", client_secret="x")
    return OidcConnector(cfg, http=idp, clock=clock)  # type: ignore[arg-type]


def test_a_made_up_kid_fetches_the_keys_at_most_once_a_minute(idp: Idp, clock: Clock) -> None:
    c = connector(idp, clock)
    assert c.verify_id_token(id_token(idp.keys[0], clock), nonce=NONCE)["sub"] == "00ualice"
    assert idp.jwks_fetches == 1
    with pytest.raises(InvalidIdToken):  # the first unknown kid: one fetch, and the key is not there
        c.verify_id_token(id_token(RSAKey.generate_key(2048, parameters={"kid": "made-up-0"}), clock), nonce=NONCE)
    assert idp.jwks_fetches == 2
    stranger = RSAKey.generate_key(2048, parameters={"kid": "made-up-1"})
    for _ in range(10):  # a flood within the minute: refused, each with a clear message, and no fetch
        clock.now += 1
        with pytest.raises(InvalidIdToken, match="a key the IdP does not publish .*less than a minute ago") as e:
            c.verify_id_token(id_token(stranger, clock), nonce=NONCE)
        assert "made-up" not in e.value.detail
    assert idp.jwks_fetches == 2
    # the IdP really rotates: within the minute the new key waits; once the minute is over it is fetched
    idp.keys.append(RSAKey.generate_key(2048, parameters={"kid": "k-2"}))
    with pytest.raises(InvalidIdToken, match="less than a minute ago"):
        c.verify_id_token(id_token(idp.keys[1], clock), nonce=NONCE)
    clock.now += MIN_REFRESH
    assert c.verify_id_token(id_token(idp.keys[1], clock), nonce=NONCE)["sub"] == "00ualice"
    assert idp.jwks_fetches == 3
    c.verify_id_token(id_token(idp.keys[0], clock), nonce=NONCE)  # a known key costs no fetch
    assert idp.jwks_fetches == 3


def test_the_sign_in_and_the_token_exchange_share_one_guard(idp: Idp, clock: Clock) -> None:
    c = connector(idp, clock)
    c.verify_id_token(id_token(idp.keys[0], clock), nonce=NONCE)
    stranger = RSAKey.generate_key(2048, parameters={"kid": "made-up"})
    with pytest.raises(InvalidIdToken):
        c.verify_id_token(id_token(stranger, clock), nonce=NONCE)
    assert idp.jwks_fetches == 2
    with pytest.raises(InvalidIdToken, match="less than a minute ago"):  # the exchange's unknown kid: no fetch
        c.verify_subject_token(id_token(stranger, clock), audiences=("bridge",))
    assert idp.jwks_fetches == 2


@pytest.mark.parametrize(("claims", "ok"), [({"azp": "bridge"}, True), ({"azp": "another-client"}, False),
                                            ({"aud": ["bridge", "api"], "azp": "bridge"}, True),
                                            ({"aud": ["bridge", "api"]}, False)])
def test_azp_whenever_present_must_be_this_client(idp: Idp, clock: Clock, claims: dict[str, Any], ok: bool) -> None:
    """The party a token was issued to (azp) is this client, even with one audience — as the exchange checks."""
    c = connector(idp, clock)
    token = id_token(idp.keys[0], clock, **claims)
    if ok:
        assert c.verify_id_token(token, nonce=NONCE)["sub"] == "00ualice"
    else:
        with pytest.raises(InvalidIdToken, match="azp"):
            c.verify_id_token(token, nonce=NONCE)
